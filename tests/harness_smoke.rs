//! Proves the test harness (tests/support) works, using only the harness, plain HTTP and
//! skopeo: no microbadger code.

mod support;

use base64::Engine as _;
use std::time::{Duration, Instant};
use support::{
    Auth, Behaviour, Fixture, Format, MisbehavingServer, MultiArch, TestRegistry, media,
    skopeo_inspect, skopeo_inspect_config, skopeo_inspect_raw,
};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn app_fixture(tag: &str) -> Fixture {
    Fixture::new("team/app", tag)
        .label("org.opencontainers.image.title", "app")
        .label("org.label-schema.vcs-ref", "abc1234")
        .author("Test Author <test@example.com>")
        .created("2023-05-06T07:08:09Z")
        .empty_step("/bin/sh -c #(nop)  ENV A=1")
        .layer_with_file("app/hello.txt", "hello\n", "COPY hello.txt /app/")
        .layer_with_file("app/bin/run", "#!/bin/sh\n", "COPY run /app/bin/")
}

#[test]
fn open_registry_push_and_skopeo_inspect() {
    let reg = TestRegistry::start(Auth::None);
    let pushed = app_fixture("1.0").push(&reg, Format::Oci);
    assert_eq!(pushed.media_type, media::OCI_MANIFEST);
    assert_eq!(pushed.layer_digests().len(), 2);

    let info = skopeo_inspect(&pushed.reference, None);
    assert_eq!(info["Labels"]["org.opencontainers.image.title"], "app");
    assert_eq!(info["Labels"]["org.label-schema.vcs-ref"], "abc1234");
    assert_eq!(info["Digest"], pushed.digest.as_str());
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Created"], "2023-05-06T07:08:09Z");

    let config = skopeo_inspect_config(&pushed.reference_by_digest(), None);
    let history = config["history"].as_array().expect("history");
    assert_eq!(history.len(), 3);
    assert_eq!(history[0]["empty_layer"], true);
    assert_eq!(history[1]["created_by"], "COPY hello.txt /app/");
    assert_eq!(config["author"], "Test Author <test@example.com>");
    assert_eq!(skopeo_inspect_raw(&pushed.reference, None), pushed.manifest);
    assert!(
        reg.storage_dir()
            .join("docker/registry/v2/repositories/team/app")
            .is_dir()
    );

    // Same fixture, same bytes: builds are deterministic.
    let again = app_fixture("1.0-again").push(&reg, Format::Oci);
    assert_eq!(again.digest, pushed.digest);
}

#[test]
fn access_log_counts_each_request_once() {
    let reg = TestRegistry::start(Auth::None);
    let pushed = Fixture::new("team/app", "1.0").push(&reg, Format::DockerV2);
    assert_eq!(pushed.media_type, media::DOCKER_MANIFEST);
    assert!(reg.request_count() > 0, "the push is in the log");

    let mark = reg.mark();
    let url = format!("{}/v2/team/app/manifests/1.0", reg.url());
    let resp = agent()
        .head(&url)
        .header("Accept", media::DOCKER_MANIFEST)
        .call()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["docker-content-digest"].to_str().unwrap(),
        pushed.digest
    );
    let entries = reg.access_log_since(mark);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].method, "HEAD");
    assert_eq!(entries[0].path(), "/v2/team/app/manifests/1.0");
    assert_eq!(entries[0].status, 200);
    assert!(entries[0].is_manifest() && !entries[0].is_harness());
    assert_eq!(reg.count_since(mark, Some("GET"), "/manifests/"), 0);

    reg.clear_log();
    assert_eq!(reg.request_count(), 0);
    // Without a Docker/OCI Accept header, registry 2.8 tries to down-convert to schema 1
    // (400 for this layerless image): always send Accept.
    for _ in 0..2 {
        let get = agent().get(&url).header("Accept", media::DOCKER_MANIFEST);
        assert_eq!(get.call().unwrap().status(), 200);
    }
    let log = reg.access_log();
    assert_eq!(log.len(), 2);
    assert!(
        log.iter().all(|e| e.method == "GET" && e.status == 200),
        "{log:?}"
    );
}

#[test]
fn htpasswd_registry_requires_and_accepts_credentials() {
    let reg = TestRegistry::start(Auth::htpasswd("alice", "s3cret"));
    let creds = reg.creds().expect("creds");
    let pushed = app_fixture("2.0").push(&reg, Format::DockerV2);

    let resp = agent()
        .get(&format!("{}/v2/team/app/manifests/2.0", reg.url()))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Basic "), "{challenge}");

    let info = skopeo_inspect(&pushed.reference, Some(&creds));
    assert_eq!(info["Labels"]["org.opencontainers.image.title"], "app");
    assert_eq!(info["Digest"], pushed.digest.as_str());
}

#[test]
fn token_registry_anonymous_pull_through_issuer() {
    let reg = TestRegistry::start(Auth::Token);
    let issuer = reg.token_issuer().expect("issuer");
    let pushed = app_fixture("3.0").push(&reg, Format::Oci);
    let after_push = issuer.token_requests();
    assert!(after_push > 0, "skopeo got a push token from the issuer");

    // Anonymous: 401 with a Bearer challenge, then a pull token, then the manifest.
    let resp = agent()
        .get(&format!("{}/v2/team/app/manifests/3.0", reg.url()))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.contains(&issuer.realm()), "{challenge}");
    assert!(
        challenge.contains("service=\"test-registry\""),
        "{challenge}"
    );

    let info = skopeo_inspect(&pushed.reference, None);
    assert_eq!(info["Labels"]["org.label-schema.vcs-ref"], "abc1234");
    let log = issuer.token_request_log();
    assert!(log.len() > after_push);
    let anon = log.last().unwrap();
    assert_eq!(anon.user, None);
    assert_eq!(anon.service.as_deref(), Some("test-registry"));
    assert!(anon.scopes.iter().any(|s| s == "repository:team/app:pull"));
    assert_eq!(anon.granted[0].actions, ["pull"]);

    // The token itself: ES256 with x5c, the claims the registry checks, the chosen lifetime.
    issuer.set_expiry(Duration::from_secs(2));
    let resp = agent()
        .get(&format!(
            "{}?service=test-registry&scope=repository:team/app:pull",
            issuer.realm()
        ))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(body["expires_in"], 2);
    let token = body["token"].as_str().unwrap();
    let part = |i: usize| -> serde_json::Value {
        let raw = token.split('.').nth(i).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(raw)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(part(0)["alg"], "ES256");
    assert_eq!(part(0)["x5c"].as_array().unwrap().len(), 1);
    let claims = part(1);
    assert_eq!(claims["iss"], "test-issuer");
    assert_eq!(claims["aud"], "test-registry");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        2
    );
    assert_eq!(claims["access"][0]["name"], "team/app");
    // The registry accepts it.
    let resp = agent()
        .get(&format!("{}/v2/team/app/manifests/3.0", reg.url()))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Accept", media::OCI_MANIFEST)
        .call()
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Tokens issued already expired are rejected by the registry at once.
    issuer.set_issue_expired(true);
    let body: serde_json::Value = serde_json::from_str(
        &agent()
            .get(&format!(
                "{}?service=test-registry&scope=repository:team/app:pull",
                issuer.realm()
            ))
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    let resp = agent()
        .get(&format!("{}/v2/team/app/manifests/3.0", reg.url()))
        .header(
            "Authorization",
            &format!("Bearer {}", body["token"].as_str().unwrap()),
        )
        .header("Accept", media::OCI_MANIFEST)
        .call()
        .unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    issuer.set_issue_expired(false);

    // The OAuth2 form (POST) works too, and fixed credentials reject others.
    issuer.set_credentials(Some(support::Creds::new("carol", "right")));
    let post = |password: &str| {
        agent()
            .post(&issuer.realm())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(format!(
                "grant_type=password&username=carol&password={password}&service=test-registry\
                 &scope=repository%3Ateam%2Fapp%3Apull%2Cpush&client_id=tests"
            ))
            .unwrap()
    };
    assert_eq!(post("wrong").status(), 401);
    let body: serde_json::Value =
        serde_json::from_str(&post("right").into_body().read_to_string().unwrap()).unwrap();
    assert!(body["access_token"].is_string() && body["refresh_token"].is_string());
    let last = issuer.token_request_log().pop().unwrap();
    assert_eq!(
        (last.method.as_str(), last.user.as_deref()),
        ("POST", Some("carol"))
    );
    assert_eq!(last.granted[0].actions, ["pull", "push"]);
    issuer.set_credentials(None);

    // Pull can be made private.
    issuer.set_anonymous_pull(false);
    let denied = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--no-creds",
            "--retry-times=0",
        ])
        .arg(format!("docker://{}", pushed.reference))
        .output()
        .unwrap();
    assert!(!denied.status.success());
    let creds = reg.creds().unwrap();
    assert_eq!(
        skopeo_inspect(&pushed.reference, Some(&creds))["Digest"],
        pushed.digest.as_str()
    );
}

#[test]
fn multi_arch_index_and_manifest_list() {
    let reg = TestRegistry::start(Auth::htpasswd("bob", "pw"));
    let multi = MultiArch::new("team/multi", "1.0")
        .add(Fixture::for_platform("linux", "amd64", None).label("arch", "amd64"))
        .add(
            Fixture::for_platform("linux", "arm64", Some("v8"))
                .label("arch", "arm64")
                .layer_with_file("etc/arch", "arm64", "COPY arch /etc/"),
        );
    let oci = multi.push(&reg, Format::Oci);
    assert_eq!(oci.media_type, media::OCI_INDEX);
    assert_eq!(oci.platforms.len(), 2);
    assert_eq!(oci.platforms[1].architecture, "arm64");
    assert_eq!(oci.platforms[1].variant.as_deref(), Some("v8"));
    assert_eq!(oci.platforms[1].media_type, media::OCI_MANIFEST);

    let docker = MultiArch::new("team/multi", "1.0-docker")
        .add(Fixture::for_platform("linux", "amd64", None))
        .add(Fixture::for_platform("linux", "arm64", Some("v8")))
        .push(&reg, Format::DockerV2);
    assert_eq!(docker.media_type, media::DOCKER_MANIFEST_LIST);
    assert_eq!(docker.platforms[0].media_type, media::DOCKER_MANIFEST);
    assert_eq!(docker.platforms[1].variant.as_deref(), Some("v8"));

    let creds = reg.creds().unwrap();
    let arm = reg.reference(&format!("team/multi@{}", oci.platforms[1].digest));
    let config = skopeo_inspect_config(&arm, Some(&creds));
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["variant"], "v8");
    assert_eq!(config["config"]["Labels"]["arch"], "arm64");
}

#[test]
fn many_tags_and_labelled_base() {
    let reg = TestRegistry::start(Auth::None);
    let derived = Fixture::labelled_derived("team/derived", "2.1").push(&reg, Format::DockerV2);
    let info = skopeo_inspect(&derived.reference, None);
    assert_eq!(info["Labels"]["org.label-schema.name"], "CentOS Base Image");
    assert_eq!(info["Labels"]["org.label-schema.build-date"], "20181205");
    assert_eq!(info["Created"], "2024-03-01T12:00:00Z");
    assert_eq!(info["Layers"].as_array().unwrap().len(), 3);
    let config = skopeo_inspect_config(&derived.reference, None);
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["/app/hello.sh"])
    );
    assert_eq!(config["history"].as_array().unwrap().len(), 6);
    // The base pushed on its own has the same layer as the derived image's first one.
    let base = Fixture::labelled_base("library/centos", "7").push(&reg, Format::DockerV2);
    assert_eq!(base.layer_digests()[..], derived.layer_digests()[..1]);
    let base_config = skopeo_inspect_config(&base.reference, None);
    assert_eq!(base_config["created"], "2018-12-05T01:20:35Z");
    assert_eq!(
        base_config["config"]["Cmd"],
        serde_json::json!(["/bin/bash"])
    );

    // Manifest annotations survive an OCI push and are dropped by the v2s2 conversion.
    let annotated = Fixture::new("team/annotated", "1")
        .annotation("org.opencontainers.image.source", "https://example.com/src");
    let oci = annotated.push(&reg, Format::Oci).manifest_json();
    assert_eq!(
        oci["annotations"]["org.opencontainers.image.source"],
        "https://example.com/src"
    );
    let docker = annotated.push(&reg, Format::DockerV2).manifest_json();
    assert!(docker.get("annotations").is_none(), "{docker}");

    let started = Instant::now();
    let tags: Vec<String> = (0..300).map(|i| format!("v{i:03}")).collect();
    reg.add_tags("team/derived", "2.1", &tags);
    eprintln!("300 tags in {:?}", started.elapsed());
    let listed = reg.list_tags("team/derived");
    assert_eq!(listed.len(), 301);
    let head = reg.admin_request(
        "HEAD",
        "/v2/team/derived/manifests/v299",
        &[("Accept", media::DOCKER_MANIFEST)],
        &[],
    );
    assert_eq!(
        head.header("Docker-Content-Digest"),
        Some(derived.digest.as_str())
    );
}

fn get(url: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut resp = agent().get(url).call().unwrap();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_vec().unwrap_or_default();
    (status, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn misbehaving_server_behaviours() {
    let manifest_path = "/v2/test/app/manifests/latest";

    let ok = MisbehavingServer::start(Behaviour::Normal);
    let (status, headers, body) = get(&format!("{}{manifest_path}", ok.url()));
    assert_eq!(status, 200);
    assert_eq!(body, ok.manifest_bytes());
    assert_eq!(
        header(&headers, "docker-content-digest"),
        Some(ok.manifest_digest())
    );
    let (_, _, config) = get(&format!(
        "{}/v2/test/app/blobs/{}",
        ok.url(),
        ok.config_digest()
    ));
    assert_eq!(support::sha256_digest(&config), ok.config_digest());
    assert_eq!(get(&format!("{}/v2/", ok.url())).0, 200);
    assert_eq!(ok.request_count(), 3);

    let flaky = MisbehavingServer::start(Behaviour::ServerError { times: 2 });
    let url = format!("{}{manifest_path}", flaky.url());
    assert_eq!([get(&url).0, get(&url).0, get(&url).0], [500, 500, 200]);

    let limited = MisbehavingServer::start(Behaviour::TooManyRequests {
        retry_after_secs: 7,
        times: 1,
    });
    let (status, headers, _) = get(&format!("{}{manifest_path}", limited.url()));
    assert_eq!(status, 429);
    assert_eq!(header(&headers, "retry-after"), Some("7"));

    let wrong = MisbehavingServer::start(Behaviour::WrongDigest);
    let (_, _, config) = get(&format!(
        "{}/v2/test/app/blobs/{}",
        wrong.url(),
        wrong.config_digest()
    ));
    assert_ne!(support::sha256_digest(&config), wrong.config_digest());

    let unauthorized = MisbehavingServer::start(Behaviour::UnauthorizedNoChallenge);
    let (status, headers, _) = get(&format!("{}{manifest_path}", unauthorized.url()));
    assert_eq!(status, 401);
    assert_eq!(header(&headers, "www-authenticate"), None);

    let redirect = MisbehavingServer::start(Behaviour::RedirectPingPong);
    let (status, headers, _) = get(&format!("{}{manifest_path}", redirect.url()));
    assert_eq!(status, 302);
    assert!(header(&headers, "location").unwrap().ends_with("?hop=1"));

    let big = MisbehavingServer::start(Behaviour::OversizedManifest(3_000_000));
    let mut resp = agent()
        .get(&format!("{}{manifest_path}", big.url()))
        .call()
        .unwrap();
    assert_eq!(resp.headers()["content-length"], "3000000");
    let body = resp
        .body_mut()
        .with_config()
        .limit(10_000_000)
        .read_to_vec()
        .unwrap();
    assert_eq!(body.len(), 3_000_000);
    assert!(body.starts_with(b"{\"schemaVersion\":2"));

    // A client that neither reads nor hangs up does not block the server's shutdown.
    let huge = MisbehavingServer::start(Behaviour::OversizedManifest(1 << 30));
    let unread = agent()
        .get(&format!("{}{manifest_path}", huge.url()))
        .call()
        .unwrap();
    let started = Instant::now();
    drop(huge);
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(unread);

    let chunked = MisbehavingServer::start(Behaviour::OversizedManifestChunked(200_000));
    let mut resp = agent()
        .get(&format!("{}{manifest_path}", chunked.url()))
        .call()
        .unwrap();
    assert!(resp.headers().get("content-length").is_none());
    assert_eq!(resp.body_mut().read_to_vec().unwrap().len(), 200_000);

    let lie = MisbehavingServer::start(Behaviour::ContentLengthLie {
        declared: 5_000,
        actual: 100,
    });
    let result = agent()
        .get(&format!("{}{manifest_path}", lie.url()))
        .call()
        .and_then(|mut r| r.body_mut().read_to_vec());
    assert!(result.is_err(), "a short body is an error");

    let garbage = MisbehavingServer::start(Behaviour::GarbageJson);
    let (status, headers, body) = get(&format!("{}{manifest_path}", garbage.url()));
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some(media::OCI_MANIFEST));
    assert!(serde_json::from_slice::<serde_json::Value>(&body).is_err());

    let (_, headers, body) = get(&format!("{}{manifest_path}", wrong.url()));
    assert_eq!(body, wrong.manifest_bytes());
    assert_ne!(
        header(&headers, "docker-content-digest"),
        Some(wrong.manifest_digest())
    );
    let (_, headers, body) = get(&format!(
        "{}/v2/test/app/manifests/{}",
        wrong.url(),
        wrong.manifest_digest()
    ));
    assert_eq!(
        header(&headers, "docker-content-digest"),
        Some(wrong.manifest_digest())
    );
    assert_ne!(support::sha256_digest(&body), wrong.manifest_digest());

    let looping = MisbehavingServer::start(Behaviour::RedirectLoop);
    let url = format!("{}{manifest_path}", looping.url());
    let (status, headers, _) = get(&url);
    assert_eq!(
        (status, header(&headers, "location")),
        (302, Some(url.as_str()))
    );

    // A stalled body times out on the client side, and dropping the server releases it.
    let stall = MisbehavingServer::start(Behaviour::Stall);
    let timed: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(300)))
        .build()
        .into();
    let started = Instant::now();
    let result = timed
        .get(&format!("{}{manifest_path}", stall.url()))
        .call()
        .and_then(|mut r| r.body_mut().read_to_vec());
    assert!(result.is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
    let started = Instant::now();
    drop(stall);
    assert!(started.elapsed() < Duration::from_secs(2));

    let silent = MisbehavingServer::start(Behaviour::StallBeforeHeaders);
    let started = Instant::now();
    assert!(
        timed
            .get(&format!("{}{manifest_path}", silent.url()))
            .call()
            .is_err()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        get(&format!("{}/v2/", silent.url())).0,
        200,
        "/v2/ still answers"
    );
}
