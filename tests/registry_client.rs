//! The registry client against the real CNCF distribution registry (started per test on a
//! free port), fixture images built by `umoci` and pushed by `skopeo`, and `skopeo inspect` as
//! the independent reference for what an image contains.

mod support;

use std::collections::BTreeMap;

use microbadger::config::RegistryConfig;
use microbadger::inspect::{ImageVersion, KeyStatus};
use microbadger::reference::ImageRef;
use microbadger::registry::{
    CheckResult, Credential, Credentials, PlatformChoice, RegistryClient, RegistryError,
};
use support::{Auth, Fixture, Format, MultiArch, TestRegistry, skopeo_inspect};

/// A client that may talk plain HTTP to this test registry and nothing else.
fn client_for(reg: &TestRegistry) -> RegistryClient {
    client_with(reg, |_| {})
}

fn client_with(reg: &TestRegistry, edit: impl FnOnce(&mut RegistryConfig)) -> RegistryClient {
    let mut cfg = RegistryConfig {
        allow: vec![],
        insecure: vec![reg.host()],
        retries: 1,
        ..RegistryConfig::default()
    };
    edit(&mut cfg);
    let mut creds = Credentials::default();
    if let Some(c) = reg.creds() {
        creds.insert(
            &reg.host(),
            Credential {
                username: c.user.clone(),
                password: c.password.clone(),
            },
        );
    }
    RegistryClient::with_credentials(cfg, creds).expect("client")
}

/// A client allowed to speak plain HTTP to `host` only, with exactly these credentials (the
/// anonymous and wrong-password cases need a client that does not get the registry's own).
fn plain_client(host: &str, creds: Credentials) -> RegistryClient {
    RegistryClient::with_credentials(
        RegistryConfig {
            allow: vec![],
            insecure: vec![host.to_string()],
            ..RegistryConfig::default()
        },
        creds,
    )
    .unwrap()
}

fn image_ref(s: &str) -> ImageRef {
    ImageRef::parse(s).expect("valid reference")
}

/// Labels as `skopeo inspect` reports them.
fn skopeo_labels(v: &serde_json::Value) -> BTreeMap<String, String> {
    v["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The labels, layer digests and sizes we report equal what skopeo reports. skopeo 1.9 (Debian
/// 12) has no `LayersData`, so sizes come from the manifest as `skopeo inspect --raw` reads it.
fn assert_matches_skopeo(ours: &ImageVersion, skopeo: &serde_json::Value, repo: &str) {
    assert_eq!(ours.labels, skopeo_labels(skopeo), "labels");
    let digests: Vec<&str> = skopeo["Layers"]
        .as_array()
        .expect("Layers")
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    let ours_digests: Vec<&str> = ours.layers.iter().map(|l| l.digest.as_str()).collect();
    assert_eq!(ours_digests, digests, "layer digests");
    let raw = support::skopeo_inspect_raw(&format!("{repo}@{}", ours.digest), None);
    let manifest: serde_json::Value = serde_json::from_slice(&raw).expect("manifest JSON");
    let sizes: Vec<u64> = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .collect();
    let ours_sizes: Vec<u64> = ours.layers.iter().map(|l| l.size).collect();
    assert_eq!(ours_sizes, sizes, "layer sizes");
    assert_eq!(ours.download_size, sizes.iter().sum::<u64>());
    assert_eq!(ours.layer_count, digests.len());
    let plat = ours.platform.as_ref().expect("platform");
    assert_eq!(plat.os, skopeo["Os"].as_str().unwrap());
    assert_eq!(plat.architecture, skopeo["Architecture"].as_str().unwrap());
}

/// `name:tag` -> `name` (the repository part of a pushed reference).
fn repo_of(reference: &str) -> String {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo.to_string(),
        _ => reference.to_string(),
    }
}

/// `skopeo inspect` of one platform of a multi-platform image (`--override-*` are global
/// flags, so they go before the subcommand).
fn skopeo_for_platform(reference: &str, arch: &str, variant: Option<&str>) -> serde_json::Value {
    let mut cmd = std::process::Command::new("skopeo");
    cmd.args(["--override-os", "linux", "--override-arch", arch]);
    if let Some(v) = variant {
        cmd.args(["--override-variant", v]);
    }
    cmd.args(["inspect", "--tls-verify=false", "--no-creds"])
        .arg(format!("docker://{reference}"));
    let out = support::run_tool(&mut cmd);
    serde_json::from_slice(&out.stdout).expect("skopeo JSON")
}

fn labelled_app(tag: &str) -> Fixture {
    Fixture::new("team/app", tag)
        .label("org.opencontainers.image.title", "app")
        .label(
            "org.opencontainers.image.source",
            "https://github.com/team/app",
        )
        .label("org.opencontainers.image.revision", "0123456789abcdef")
        .label("org.opencontainers.image.licenses", "Apache-2.0 OR MIT")
        .label("org.opencontainers.image.created", "2024-05-01T10:00:00Z")
        .label("org.label-schema.schema-version", "1.0")
        .label("org.label-schema.vcs-url", "git@github.com:team/app.git")
        .author("Team <team@example.com>")
        .created("2024-05-01T10:00:00Z")
        .layer_with_file(
            "etc/app.conf",
            "port=80\n",
            "/bin/sh -c #(nop) COPY file:abc in /etc/",
        )
        .empty_step("/bin/sh -c #(nop)  ENV PATH=/usr/bin")
        .layer_with_file("usr/bin/app", vec![7u8; 4096], "/bin/sh -c make install")
}

#[tokio::test]
async fn oci_and_docker_images_match_skopeo_and_cost_two_requests() {
    let reg = TestRegistry::start(Auth::None);
    for (format, tag) in [(Format::Oci, "oci"), (Format::DockerV2, "docker")] {
        let pushed = labelled_app(tag).push(&reg, format);
        let client = client_for(&reg);
        let r = image_ref(&pushed.reference);

        let mark = reg.mark();
        let inspection = client.inspect(&r, &PlatformChoice::Default).await.unwrap();
        let log = reg.access_log_since(mark);
        let ours: Vec<_> = log.iter().filter(|e| !e.is_harness()).collect();
        assert_eq!(
            ours.len(),
            2,
            "first inspection = manifest + config: {ours:?}"
        );
        assert!(ours.iter().all(|e| e.method == "GET"));
        assert_eq!(client.stats().registry_requests(), 2);

        assert_eq!(inspection.digest, pushed.digest);
        assert_eq!(inspection.media_type, pushed.media_type);
        let v = &inspection.images[0];
        assert_matches_skopeo(
            v,
            &skopeo_inspect(&pushed.reference, None),
            &repo_of(&pushed.reference),
        );
        assert_eq!(
            v.config_digest.as_deref(),
            Some(pushed.config_digest.as_str())
        );
        assert_eq!(v.author.as_deref(), Some("Team <team@example.com>"));
        assert_eq!(v.created.as_deref(), Some("2024-05-01T10:00:00Z"));
        // History aligned to layers, skipping the empty ENV step.
        let commands: Vec<_> = v
            .layers
            .iter()
            .map(|l| l.command.clone().unwrap_or_default())
            .collect();
        assert_eq!(commands.len(), 2);
        assert!(commands[0].contains("COPY"), "{commands:?}");
        assert!(commands[1].contains("make install"), "{commands:?}");
        // Derived fields.
        assert_eq!(v.derived.name.as_deref(), Some("app"));
        assert_eq!(v.derived.commit.as_deref(), Some("0123456789abcdef"));
        assert_eq!(
            v.derived.source.as_deref(),
            Some("https://github.com/team/app")
        );
        let lic = v.derived.license.as_ref().unwrap();
        assert!(lic.valid);
        assert_eq!(lic.licenses.len(), 2);

        // An unchanged re-check is exactly one HEAD.
        let mark = reg.mark();
        let check = client.check(&r, Some(&pushed.digest)).await.unwrap();
        assert_eq!(
            check,
            CheckResult::Unchanged {
                digest: pushed.digest.clone()
            }
        );
        let log: Vec<_> = reg
            .access_log_since(mark)
            .into_iter()
            .filter(|e| !e.is_harness())
            .collect();
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(log[0].method, "HEAD");
        assert!(log[0].is_manifest());
        assert!(matches!(
            client
                .check(
                    &r,
                    Some("sha256:0000000000000000000000000000000000000000000000000000000000000000")
                )
                .await
                .unwrap(),
            CheckResult::Changed { .. }
        ));

        // By digest too.
        let by_digest = image_ref(&pushed.reference_by_digest());
        let again = client
            .inspect(&by_digest, &PlatformChoice::Default)
            .await
            .unwrap();
        assert_eq!(again.images[0].labels, v.labels);
    }
}

#[tokio::test]
async fn label_variants_get_the_right_compliance() {
    let reg = TestRegistry::start(Auth::None);
    let client = client_for(&reg);
    let none = Fixture::new("labels/none", "1")
        .layer_with_file("a", "a", "ADD a /")
        .push(&reg, Format::Oci);
    let ls_only = Fixture::new("labels/ls", "1")
        .label("org.label-schema.schema-version", "1.0")
        .label("org.label-schema.name", "ls")
        .label("org.label-schema.build-date", "2024-01-01T00:00:00Z")
        .layer_with_file("a", "a", "ADD a /")
        .push(&reg, Format::Oci);
    let oci_only = Fixture::new("labels/oci", "1")
        .label("org.opencontainers.image.title", "oci")
        .label("org.opencontainers.image.version", "1.2.3")
        .layer_with_file("a", "a", "ADD a /")
        .push(&reg, Format::Oci);
    let invalid = Fixture::new("labels/invalid", "1")
        .label("org.label-schema.schema-version", "2.0")
        .label("org.label-schema.build-date", "last tuesday")
        .label("org.label-schema.url", "not a url")
        .label(
            "org.opencontainers.image.licenses",
            "Totally-Made-Up-License",
        )
        .label("org.opencontainers.image.source", "ftp//broken")
        .layer_with_file("a", "a", "ADD a /")
        .push(&reg, Format::Oci);

    let get = |p: &support::PushedImage| {
        let r = image_ref(&p.reference);
        let client = client.clone();
        async move {
            client
                .inspect(&r, &PlatformChoice::Default)
                .await
                .unwrap()
                .images
                .remove(0)
        }
    };
    let status = |v: &ImageVersion, key: &str| {
        v.compliance
            .label_schema
            .keys
            .iter()
            .chain(v.compliance.oci.keys.iter())
            .find(|k| k.key == key)
            .map(|k| k.status)
            .unwrap_or_else(|| panic!("no check for {key}"))
    };

    let v = get(&none).await;
    assert!(v.labels.is_empty());
    assert_eq!(v.compliance.score, 0);
    assert_eq!(v.compliance.oci.present, 0);
    assert!(
        !v.compliance.oci.fix.dockerfile.is_empty(),
        "fix lines for an unlabelled image"
    );

    let v = get(&ls_only).await;
    assert_eq!(status(&v, "org.label-schema.name"), KeyStatus::Present);
    assert_eq!(
        status(&v, "org.opencontainers.image.title"),
        KeyStatus::Missing
    );
    assert!(
        v.compliance
            .oci
            .fix
            .dockerfile
            .iter()
            .any(|l| l == "LABEL org.opencontainers.image.title=\"ls\""),
        "the OCI fix reuses the label-schema value: {:?}",
        v.compliance.oci.fix.dockerfile
    );

    let v = get(&oci_only).await;
    assert_eq!(
        status(&v, "org.opencontainers.image.version"),
        KeyStatus::Present
    );
    assert_eq!(v.derived.version.as_deref(), Some("1.2.3"));
    assert_eq!(status(&v, "org.label-schema.name"), KeyStatus::Missing);

    let v = get(&invalid).await;
    for key in [
        "org.label-schema.schema-version",
        "org.label-schema.build-date",
        "org.label-schema.url",
        "org.opencontainers.image.licenses",
        "org.opencontainers.image.source",
    ] {
        assert_eq!(status(&v, key), KeyStatus::Invalid, "{key}");
    }
    assert!(!v.derived.license.as_ref().unwrap().valid);
}

#[tokio::test]
async fn multi_arch_index_and_manifest_list() {
    let reg = TestRegistry::start(Auth::None);
    let client = client_for(&reg);
    for (format, tag) in [(Format::Oci, "oci"), (Format::DockerV2, "docker")] {
        let pushed = MultiArch::new("team/multi", tag)
            .add(
                Fixture::for_platform("linux", "amd64", None)
                    .label("org.opencontainers.image.title", "multi-amd64")
                    .layer_with_file("arch", "amd64", "ADD arch /"),
            )
            .add(
                Fixture::for_platform("linux", "arm64", Some("v8"))
                    .label("org.opencontainers.image.title", "multi-arm64")
                    .layer_with_file("arch", "arm64 is bigger", "ADD arch /"),
            )
            .push(&reg, format);
        let r = image_ref(&pushed.reference);

        let mark = reg.mark();
        let i = client.inspect(&r, &PlatformChoice::Default).await.unwrap();
        let requests = reg
            .access_log_since(mark)
            .into_iter()
            .filter(|e| !e.is_harness())
            .count();
        assert_eq!(requests, 3, "index + platform manifest + config");
        assert_eq!(i.digest, pushed.digest);
        assert_eq!(i.media_type, pushed.media_type);
        let names: Vec<String> = i.platforms.iter().map(|p| p.platform.to_string()).collect();
        assert_eq!(names, ["linux/amd64", "linux/arm64/v8"]);
        assert_eq!(i.images.len(), 1);
        assert_eq!(i.images[0].derived.name.as_deref(), Some("multi-amd64"));
        assert_matches_skopeo(
            &i.images[0],
            &skopeo_for_platform(&pushed.reference, "amd64", None),
            &repo_of(&pushed.reference),
        );

        let arm = client
            .inspect(&r, &"linux/arm64/v8".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(arm.images[0].derived.name.as_deref(), Some("multi-arm64"));
        assert_matches_skopeo(
            &arm.images[0],
            &skopeo_for_platform(&pushed.reference, "arm64", Some("v8")),
            &repo_of(&pushed.reference),
        );

        let all = client.inspect(&r, &PlatformChoice::All).await.unwrap();
        assert_eq!(all.images.len(), 2);

        let missing = client.inspect(&r, &"linux/s390x".parse().unwrap()).await;
        match missing {
            Err(RegistryError::NoMatchingPlatform { wanted, available }) => {
                assert_eq!(wanted, "linux/s390x");
                assert!(available.contains("linux/arm64/v8"));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn tag_lists_follow_pagination_up_to_the_cap() {
    let reg = TestRegistry::start(Auth::None);
    let pushed = Fixture::new("team/many", "t000")
        .layer_with_file("a", "a", "ADD a /")
        .push(&reg, Format::Oci);
    let extra: Vec<String> = (1..=260).map(|n| format!("t{n:03}")).collect();
    reg.add_tags("team/many", "t000", &extra);
    let r = image_ref(&pushed.reference);

    let client = client_for(&reg);
    let tags = client.list_tags(&r).await.unwrap();
    assert_eq!(tags.len(), 261);
    assert_eq!(tags, reg.list_tags("team/many"));

    let capped = client_with(&reg, |c| c.max_tags = 150);
    assert_eq!(capped.list_tags(&r).await.unwrap().len(), 150);
}

/// distribution 2.8 answers every tag in one page whatever `n` says, so `Link` pagination is
/// checked against a server that pages the way the spec (and Docker Hub, GHCR) do.
#[tokio::test]
async fn tag_lists_follow_link_headers() {
    use support::http::{HttpServer, Response};
    let all: Vec<String> = (0..261).map(|n| format!("v{n:03}")).collect();
    let served = all.clone();
    let server = HttpServer::start(move |req| {
        if req.path() != "/v2/team/paged/tags/list" {
            return Response::new(404);
        }
        let q = req.query();
        let n: usize = q
            .iter()
            .find(|(k, _)| k == "n")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(50);
        let start = q
            .iter()
            .find(|(k, _)| k == "last")
            .and_then(|(_, last)| served.iter().position(|t| t == last).map(|p| p + 1))
            .unwrap_or(0);
        let page: Vec<&String> = served.iter().skip(start).take(n).collect();
        let mut resp = Response::json(
            200,
            &serde_json::json!({"name": "team/paged", "tags": page}),
        );
        if start + n < served.len() {
            let last = page.last().unwrap();
            resp = resp.header(
                "Link",
                format!("</v2/team/paged/tags/list?last={last}&n={n}>; rel=\"next\""),
            );
        }
        resp
    });
    let host = format!("127.0.0.1:{}", server.port());
    let client = plain_client(&host, Credentials::default());
    let r = image_ref(&format!("{host}/team/paged"));
    assert_eq!(client.list_tags(&r).await.unwrap(), all);
    assert_eq!(client.stats().list_tags, 3, "pages of 100");

    let capped = RegistryClient::with_credentials(
        RegistryConfig {
            allow: vec![],
            insecure: vec![host],
            max_tags: 150,
            ..RegistryConfig::default()
        },
        Credentials::default(),
    )
    .unwrap();
    assert_eq!(capped.list_tags(&r).await.unwrap(), all[..150]);
    assert_eq!(capped.stats().list_tags, 2);
}

#[tokio::test]
async fn htpasswd_registry_needs_the_right_credentials() {
    let reg = TestRegistry::start(Auth::htpasswd("alice", "s3cret"));
    let pushed = labelled_app("1").push(&reg, Format::Oci);
    let r = image_ref(&pushed.reference);

    let client = client_for(&reg);
    let i = client.inspect(&r, &PlatformChoice::Default).await.unwrap();
    assert_eq!(
        i.images[0].labels,
        skopeo_labels(&skopeo_inspect(&pushed.reference, reg.creds().as_ref()))
    );

    let anonymous = plain_client(&reg.host(), Credentials::default());
    assert!(matches!(
        anonymous.inspect(&r, &PlatformChoice::Default).await,
        Err(RegistryError::Unauthorized { .. })
    ));

    let mut wrong = Credentials::default();
    wrong.insert(
        &reg.host(),
        Credential {
            username: "alice".into(),
            password: "nope".into(),
        },
    );
    let wrong = plain_client(&reg.host(), wrong);
    match wrong.inspect(&r, &PlatformChoice::Default).await {
        Err(RegistryError::Unauthorized { reason, .. }) => {
            assert!(reason.contains("refused"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn docker_config_json_credentials_are_used() {
    let reg = TestRegistry::start(Auth::htpasswd("bob", "pw"));
    let pushed = labelled_app("1").push(&reg, Format::DockerV2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let auth = base64_encode(b"bob:pw");
    std::fs::write(
        &path,
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host()),
    )
    .unwrap();
    let client = RegistryClient::new(RegistryConfig {
        allow: vec![],
        insecure: vec![reg.host()],
        docker_config: Some(path),
        ..RegistryConfig::default()
    })
    .unwrap();
    let i = client
        .inspect(&image_ref(&pushed.reference), &PlatformChoice::Default)
        .await
        .unwrap();
    assert_eq!(i.digest, pushed.digest);
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test]
async fn token_auth_flow_caches_tokens_per_scope() {
    let reg = TestRegistry::start(Auth::Token);
    let issuer = reg.token_issuer().expect("token issuer");
    let a = labelled_app("1").push(&reg, Format::Oci);
    let b = Fixture::new("team/other", "1")
        .layer_with_file("b", "b", "ADD b /")
        .push(&reg, Format::Oci);
    let anonymous = plain_client(&reg.host(), Credentials::default());

    let before = issuer.token_requests();
    let i = anonymous
        .inspect(&image_ref(&a.reference), &PlatformChoice::Default)
        .await
        .unwrap();
    assert_eq!(
        issuer.token_requests() - before,
        1,
        "one token for the first inspection"
    );
    let last = issuer.token_request_log().pop().unwrap();
    assert!(
        last.scopes.iter().any(|s| s == "repository:team/app:pull"),
        "{last:?}"
    );
    // skopeo asks the issuer for its own token; count ours before calling it.
    assert_eq!(
        i.images[0].labels,
        skopeo_labels(&skopeo_inspect(&a.reference, None))
    );

    // Cached: a re-check is one HEAD and no token request.
    let mark = reg.mark();
    let before = issuer.token_requests();
    let check = anonymous
        .check(&image_ref(&a.reference), Some(&a.digest))
        .await
        .unwrap();
    assert!(matches!(check, CheckResult::Unchanged { .. }));
    assert_eq!(issuer.token_requests(), before);
    let log: Vec<_> = reg
        .access_log_since(mark)
        .into_iter()
        .filter(|e| !e.is_harness())
        .collect();
    assert_eq!(log.len(), 1, "{log:?}");

    // Another repository is another scope: one new token, asked for directly (no 401 first,
    // because the challenge is cached), then manifest + config.
    let mark = reg.mark();
    anonymous
        .inspect(&image_ref(&b.reference), &PlatformChoice::Default)
        .await
        .unwrap();
    assert_eq!(issuer.token_requests(), before + 1);
    let log: Vec<_> = reg
        .access_log_since(mark)
        .into_iter()
        .filter(|e| !e.is_harness())
        .collect();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log.iter().all(|e| e.status == 200), "{log:?}");
}

#[tokio::test]
async fn expired_token_is_refreshed_once() {
    let reg = TestRegistry::start(Auth::Token);
    let issuer = reg.token_issuer().unwrap();
    let a = labelled_app("1").push(&reg, Format::Oci);
    let client = plain_client(&reg.host(), Credentials::default());
    // The issuer hands out tokens that are already expired but claims they last 300 s; the
    // registry rejects them, and the client must refresh once and then give up cleanly.
    issuer.set_issue_expired(true);
    let r = image_ref(&a.reference);
    let before = issuer.token_requests();
    let err = client
        .inspect(&r, &PlatformChoice::Default)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    let asked = issuer.token_requests() - before;
    assert!(asked <= 2, "token requests bounded, got {asked}");

    // Once the issuer behaves, the next request refreshes the token and succeeds.
    issuer.set_issue_expired(false);
    let i = client.inspect(&r, &PlatformChoice::Default).await.unwrap();
    assert_eq!(i.digest, a.digest);
}

#[tokio::test]
async fn token_registry_refuses_anonymous_when_issuer_does() {
    let reg = TestRegistry::start(Auth::Token);
    let issuer = reg.token_issuer().unwrap();
    let a = labelled_app("1").push(&reg, Format::Oci);
    issuer.set_anonymous_pull(false);
    let client = plain_client(&reg.host(), Credentials::default());
    let err = client
        .inspect(&image_ref(&a.reference), &PlatformChoice::Default)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
}

#[tokio::test]
async fn labels_inherited_from_a_labelled_base_are_flagged() {
    let reg = TestRegistry::start(Auth::None);
    let base = Fixture::labelled_base("library/centos", "7").push(&reg, Format::DockerV2);
    let derived = Fixture::labelled_derived("team/derived", "2.1").push(&reg, Format::DockerV2);
    let client = client_for(&reg);

    let b = client
        .inspect(&image_ref(&base.reference), &PlatformChoice::Default)
        .await
        .unwrap();
    let d = client
        .inspect(&image_ref(&derived.reference), &PlatformChoice::Default)
        .await
        .unwrap();
    let (b, d) = (&b.images[0], &d.images[0]);
    assert_matches_skopeo(
        d,
        &skopeo_inspect(&derived.reference, None),
        &repo_of(&derived.reference),
    );
    assert_eq!(
        d.labels, b.labels,
        "the derived image carries the base's labels"
    );
    assert!(
        b.compliance.inherited.is_empty(),
        "the base's own labels are not inherited: {:?}",
        b.compliance.inherited
    );
    let flagged: Vec<&str> = d
        .compliance
        .inherited
        .iter()
        .map(|f| f.key.as_str())
        .collect();
    assert!(flagged.contains(&"org.label-schema.name"), "{flagged:?}");
    assert!(d.compliance.inherited.iter().all(|f| !f.reason.is_empty()));
}

#[tokio::test]
async fn missing_repository_and_tag_are_not_found() {
    let reg = TestRegistry::start(Auth::None);
    labelled_app("1").push(&reg, Format::Oci);
    let client = client_for(&reg);
    for r in [
        format!("{}/team/app:nope", reg.host()),
        format!("{}/team/nothing:1", reg.host()),
    ] {
        let err = client
            .inspect(&image_ref(&r), &PlatformChoice::Default)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::NotFound { .. }),
            "{r}: {err:?}"
        );
        let err = client.check(&image_ref(&r), None).await.unwrap_err();
        assert!(
            matches!(err, RegistryError::NotFound { .. }),
            "{r}: {err:?}"
        );
    }
}

#[tokio::test]
async fn registries_off_the_allow_list_or_on_private_addresses_are_refused() {
    let reg = TestRegistry::start(Auth::None);
    let pushed = labelled_app("1").push(&reg, Format::Oci);
    let r = image_ref(&pushed.reference);

    // Not on the allow-list: refused before any request.
    let strict =
        RegistryClient::with_credentials(RegistryConfig::default(), Credentials::default())
            .unwrap();
    let mark = reg.mark();
    assert!(matches!(
        strict.inspect(&r, &PlatformChoice::Default).await,
        Err(RegistryError::NotAllowed { .. })
    ));
    assert!(matches!(
        strict.check(&r, None).await,
        Err(RegistryError::NotAllowed { .. })
    ));
    assert!(matches!(
        strict.list_tags(&r).await,
        Err(RegistryError::NotAllowed { .. })
    ));
    assert_eq!(reg.access_log_since(mark).len(), 0);
    assert_eq!(strict.stats().registry_requests(), 0);

    // Allowed by name but resolving to loopback, and not explicitly allowed as private.
    let localhost = image_ref(&format!("localhost:{}/team/app:1", reg.port()));
    let named = RegistryClient::with_credentials(
        RegistryConfig {
            allow: vec![format!("localhost:{}", reg.port())],
            ..RegistryConfig::default()
        },
        Credentials::default(),
    )
    .unwrap();
    let err = named
        .inspect(&localhost, &PlatformChoice::Default)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::PrivateAddress { .. }),
        "{err:?}"
    );
    assert_eq!(
        reg.access_log_since(mark).len(),
        0,
        "nothing reached the registry"
    );
}
