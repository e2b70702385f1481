//! Hostile and broken registries: each failure gives one typed error, quickly and without
//! reading unbounded data. The misbehaving server is a deliberate fake (DESIGN.md allows it
//! for exactly this); everything else about the client is the production code path.

mod support;

use std::time::{Duration, Instant};

use microbadger::config::RegistryConfig;
use microbadger::reference::ImageRef;
use microbadger::registry::{Credentials, PlatformChoice, RegistryClient, RegistryError};
use support::http::{HttpServer, Response};
use support::{Behaviour, MisbehavingServer};

fn client(host: &str, edit: impl FnOnce(&mut RegistryConfig)) -> RegistryClient {
    let mut cfg = RegistryConfig {
        allow: vec![],
        insecure: vec![host.to_string()],
        retries: 0,
        request_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        ..RegistryConfig::default()
    };
    edit(&mut cfg);
    RegistryClient::with_credentials(cfg, Credentials::default()).unwrap()
}

async fn inspect(
    server: &MisbehavingServer,
    edit: impl FnOnce(&mut RegistryConfig),
) -> Result<(), RegistryError> {
    let c = client(&server.host(), edit);
    let r = ImageRef::parse(&server.image_ref()).unwrap();
    c.inspect(&r, &PlatformChoice::Default).await.map(|_| ())
}

#[tokio::test]
async fn a_well_behaved_server_works() {
    let s = MisbehavingServer::start(Behaviour::Normal);
    inspect(&s, |_| {}).await.unwrap();
}

#[tokio::test]
async fn garbage_json_is_an_invalid_manifest() {
    let s = MisbehavingServer::start(Behaviour::GarbageJson);
    let err = inspect(&s, |_| {}).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::InvalidManifest { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn wrong_digests_are_caught() {
    let s = MisbehavingServer::start(Behaviour::WrongDigest);
    let err = inspect(&s, |_| {}).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{err:?}"
    );
    // By digest: another manifest claiming the requested digest.
    let c = client(&s.host(), |_| {});
    let by_digest =
        ImageRef::parse(&format!("{}/test/app@{}", s.host(), s.manifest_digest())).unwrap();
    let err = c
        .inspect(&by_digest, &PlatformChoice::Default)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn oversized_manifests_are_refused_without_reading_them() {
    for behaviour in [
        Behaviour::OversizedManifest(50 * 1024 * 1024),
        Behaviour::OversizedManifestChunked(50 * 1024 * 1024),
    ] {
        let s = MisbehavingServer::start(behaviour.clone());
        let started = Instant::now();
        let err = inspect(&s, |c| c.max_manifest_bytes = 64 * 1024)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::TooLarge { limit: 65536, .. }),
            "{behaviour:?}: {err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "stopped early: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn a_config_over_the_limit_is_refused() {
    let s = MisbehavingServer::start(Behaviour::Normal);
    let err = inspect(&s, |c| c.max_config_bytes = 16).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::TooLarge { limit: 16, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_content_length_lie_is_a_broken_connection_not_a_hang() {
    let s = MisbehavingServer::start(Behaviour::ContentLengthLie {
        declared: 5000,
        actual: 100,
    });
    let err = inspect(&s, |_| {}).await.unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Unreachable { .. } | RegistryError::InvalidManifest { .. }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_401_without_challenge_is_unauthorized() {
    let s = MisbehavingServer::start(Behaviour::UnauthorizedNoChallenge);
    match inspect(&s, |_| {}).await.unwrap_err() {
        RegistryError::Unauthorized { reason, .. } => {
            assert!(reason.contains("challenge"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn redirect_loops_end() {
    for behaviour in [Behaviour::RedirectLoop, Behaviour::RedirectPingPong] {
        let s = MisbehavingServer::start(behaviour.clone());
        let err = inspect(&s, |_| {}).await.unwrap_err();
        assert!(
            matches!(err, RegistryError::Redirect { .. }),
            "{behaviour:?}: {err:?}"
        );
        assert!(
            s.request_count() <= 6,
            "{behaviour:?}: {} requests",
            s.request_count()
        );
    }
}

#[tokio::test]
async fn stalls_time_out() {
    for behaviour in [Behaviour::Stall, Behaviour::StallBeforeHeaders] {
        let s = MisbehavingServer::start(behaviour.clone());
        let started = Instant::now();
        let err = inspect(&s, |c| c.request_timeout = Duration::from_millis(700))
            .await
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::Timeout { .. }),
            "{behaviour:?}: {err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn retry_after_is_honoured_within_the_bound() {
    let s = MisbehavingServer::start(Behaviour::TooManyRequests {
        retry_after_secs: 1,
        times: 1,
    });
    let started = Instant::now();
    inspect(&s, |c| c.retries = 2).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );

    // A Retry-After longer than the bound is not slept through: the job is rescheduled instead.
    let s = MisbehavingServer::start(Behaviour::TooManyRequests {
        retry_after_secs: 3600,
        times: 5,
    });
    let started = Instant::now();
    match inspect(&s, |c| c.retries = 2).await.unwrap_err() {
        RegistryError::RateLimited { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(3600)))
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));

    // No retries left: rate limited.
    let s = MisbehavingServer::start(Behaviour::TooManyRequests {
        retry_after_secs: 1,
        times: 5,
    });
    let err = inspect(&s, |c| c.retries = 0).await.unwrap_err();
    assert!(err.is_transient());
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let s = MisbehavingServer::start(Behaviour::ServerError { times: 2 });
    let c = client(&s.host(), |c| c.retries = 3);
    let r = ImageRef::parse(&s.image_ref()).unwrap();
    c.inspect(&r, &PlatformChoice::Default).await.unwrap();
    assert_eq!(c.stats().retries, 2);

    let s = MisbehavingServer::start(Behaviour::ServerError { times: 10 });
    let err = inspect(&s, |c| c.retries = 1).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::Server { status: 500, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_registry_that_is_down_is_unreachable() {
    let port = support::free_port();
    let host = format!("127.0.0.1:{port}");
    let c = client(&host, |_| {});
    let r = ImageRef::parse(&format!("{host}/test/app:latest")).unwrap();
    let err = c.inspect(&r, &PlatformChoice::Default).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err:?}");
}

#[tokio::test]
async fn a_token_realm_on_a_private_address_is_refused() {
    // A public-looking registry must not be able to point us at an internal token service.
    for realm in [
        "https://169.254.169.254/latest/meta-data",
        "https://localhost:1/token",
    ] {
        let challenge = format!(r#"Bearer realm="{realm}",service="x""#);
        let server = HttpServer::start(move |_req| {
            Response::new(401).header("WWW-Authenticate", challenge.clone())
        });
        let host = format!("127.0.0.1:{}", server.port());
        let c = client(&host, |_| {});
        let r = ImageRef::parse(&format!("{host}/test/app:latest")).unwrap();
        let err = c.inspect(&r, &PlatformChoice::Default).await.unwrap_err();
        assert!(
            matches!(err, RegistryError::PrivateAddress { .. }),
            "{realm}: {err:?}"
        );
    }
    // Plain HTTP to a host the operator did not list is refused too.
    let server = HttpServer::start(|_req| {
        Response::new(401).header(
            "WWW-Authenticate",
            r#"Bearer realm="http://auth.example/token""#,
        )
    });
    let host = format!("127.0.0.1:{}", server.port());
    let r = ImageRef::parse(&format!("{host}/test/app:latest")).unwrap();
    let err = client(&host, |_| {})
        .inspect(&r, &PlatformChoice::Default)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Protocol { .. }), "{err:?}");
}

/// Legacy schema-1 manifests: labels come from `v1Compatibility`; garbage there is reported,
/// never a crash. distribution 2.8 no longer accepts schema-1 pushes, so a small server serves
/// the manifest as old registries did.
#[tokio::test]
async fn schema1_manifests_are_read_as_legacy() {
    let v1 = serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2016-01-01T00:00:00Z",
        "config": {"Labels": {"org.label-schema.name": "old", "org.label-schema.vcs-ref": "abc123"}},
        "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) LABEL org.label-schema.name=old"]}
    });
    let manifest = serde_json::json!({
        "schemaVersion": 1, "name": "test/old", "tag": "latest", "architecture": "amd64",
        "fsLayers": [{"blobSum": "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"},
                     {"blobSum": "sha256:1111111111111111111111111111111111111111111111111111111111111111"}],
        "history": [{"v1Compatibility": v1.to_string()}, {"v1Compatibility": "{not json"}]
    });
    let body = serde_json::to_vec(&manifest).unwrap();
    let server = HttpServer::start(move |req| {
        if req.path() == "/v2/test/old/manifests/latest" {
            Response::new(200)
                .header(
                    "Content-Type",
                    "application/vnd.docker.distribution.manifest.v1+prettyjws",
                )
                .body(body.clone())
        } else {
            Response::new(404)
        }
    });
    let host = format!("127.0.0.1:{}", server.port());
    let c = client(&host, |_| {});
    let i = c
        .inspect(
            &ImageRef::parse(&format!("{host}/test/old")).unwrap(),
            &PlatformChoice::Default,
        )
        .await
        .unwrap();
    let v = &i.images[0];
    assert!(v.legacy_schema1);
    assert_eq!(
        v.labels.get("org.label-schema.name").map(String::as_str),
        Some("old")
    );
    assert_eq!(v.derived.commit.as_deref(), Some("abc123"));
    assert_eq!(v.layer_count, 2);
    assert!(
        v.warnings.iter().any(|w| w.contains("unreadable")),
        "{:?}",
        v.warnings
    );
}
