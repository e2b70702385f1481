//! The `microbadger` binary as a user runs it: readable report, `--json`, one-line errors
//! with distinct exit codes, never a panic.

mod support;

use std::process::{Command, Output};

use support::http::{HttpServer, Response};
use support::{Auth, Fixture, Format, MultiArch, TestRegistry};

fn microbadger(args: &[&str], insecure: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_microbadger"))
        .args(args)
        .env("MICROBADGER_INSECURE_REGISTRIES", insecure)
        .env("MICROBADGER_DOCKER_CONFIG", "")
        .env("MICROBADGER_REGISTRY_RETRIES", "0")
        .env("MICROBADGER_CONNECT_TIMEOUT_SECS", "2")
        .env("NO_COLOR", "1")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run microbadger")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn report_and_json_for_a_real_image() {
    let reg = TestRegistry::start(Auth::None);
    let pushed = Fixture::new("team/app", "1.0")
        .label("org.opencontainers.image.title", "app")
        .label("org.opencontainers.image.licenses", "MIT")
        .label("org.label-schema.vcs-url", "https://github.com/team/app")
        .label("org.label-schema.vcs-ref", "abc1234")
        .layer_with_file("app", "x", "/bin/sh -c #(nop) COPY app /")
        .push(&reg, Format::Oci);

    let out = microbadger(&["inspect", &pushed.reference], &reg.host());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        &format!("{}:1.0", pushed.reference.trim_end_matches(":1.0")),
        pushed.digest.as_str(),
        "linux/amd64",
        "org.opencontainers.image.title",
        "Compliance:",
        "Add to your Dockerfile:",
        "LABEL org.opencontainers.image.source=\"https://github.com/team/app\"",
        "COPY app /",
        "license      MIT",
    ] {
        assert!(text.contains(needle), "report lacks {needle:?}:\n{text}");
    }
    assert!(
        !text.contains('\x1b'),
        "no colour codes when not a terminal"
    );

    let out = microbadger(&["inspect", &pushed.reference, "--json"], &reg.host());
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["ImageName"], format!("{}/team/app", reg.host()));
    assert_eq!(doc["Tag"], "1.0");
    assert_eq!(doc["Digest"], pushed.digest);
    assert_eq!(doc["Platforms"], serde_json::json!(["linux/amd64"]));
    assert_eq!(doc["Labels"]["org.opencontainers.image.title"], "app");
    assert_eq!(doc["LayerCount"], 1);
    assert_eq!(doc["Layers"][0]["Digest"], pushed.layer_digests()[0]);
    assert!(doc["DownloadSize"].as_u64().unwrap() > 0);
    assert_eq!(doc["License"]["Valid"], true);
    assert_eq!(doc["VersionControl"]["Commit"], "abc1234");
    assert_eq!(doc["VersionControl"]["Url"], "https://github.com/team/app");
    assert!(doc["Compliance"]["Oci"]["Keys"].is_array());
    for key in ["Created", "Author", "Compliance"] {
        assert!(doc.get(key).is_some(), "{key}");
    }
}

#[test]
fn platform_all_lists_every_image() {
    let reg = TestRegistry::start(Auth::None);
    let pushed = MultiArch::new("team/multi", "1")
        .add(Fixture::for_platform("linux", "amd64", None).layer_with_file("a", "a", "ADD a /"))
        .add(
            Fixture::for_platform("linux", "arm64", Some("v8"))
                .layer_with_file("b", "b", "ADD b /"),
        )
        .push(&reg, Format::Oci);
    let out = microbadger(
        &["inspect", &pushed.reference, "--platform", "all", "--json"],
        &reg.host(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["Platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64/v8"])
    );
    assert_eq!(doc["Images"].as_array().unwrap().len(), 2);

    let out = microbadger(
        &["inspect", &pushed.reference, "--platform", "linux/arm64"],
        &reg.host(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("== linux/arm64/v8"),
        "{}",
        stdout(&out)
    );
}

/// Each failure: one line on stderr, a distinct exit code, nothing on stdout, no panic.
#[test]
fn failures_are_one_line_with_distinct_exit_codes() {
    let reg = TestRegistry::start(Auth::None);
    Fixture::new("team/app", "1")
        .layer_with_file("a", "a", "ADD a /")
        .push(&reg, Format::Oci);
    let down = format!("127.0.0.1:{}", support::free_port());
    let unauthorized = TestRegistry::start(Auth::htpasswd("u", "p"));
    Fixture::new("team/app", "1")
        .layer_with_file("a", "a", "ADD a /")
        .push(&unauthorized, Format::Oci);
    let insecure = format!("{},{},{}", reg.host(), down, unauthorized.host());
    let cases: Vec<(String, i32, &str)> = vec![
        ("Bad/Name".into(), 2, "bad image name"),
        ("nginx:bad tag".into(), 2, "bad image name"),
        (format!("{}/team/app:nope", reg.host()), 3, "not found"),
        (
            format!("{}/team/app:1", unauthorized.host()),
            4,
            "unauthorized",
        ),
        ("evil.example.com/x/y".into(), 5, "not on the allow-list"),
        (format!("{down}/team/app:1"), 6, "unreachable"),
    ];
    for (image, code, needle) in cases {
        let out = microbadger(&["inspect", &image], &insecure);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{image}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{image}: one line, got {err:?}"
        );
        assert!(err.contains(needle), "{image}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
        assert!(out.stdout.is_empty());
    }
    let out = microbadger(&["inspect", "nginx", "--platform", "linux"], &insecure);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Docker Hub's web API is a fake here (Hub cannot be reached); its shape follows the API.
#[test]
fn hub_information_is_shown_and_its_failure_is_harmless() {
    use microbadger::config::RegistryConfig;
    use microbadger::reference::ImageRef;
    use microbadger::registry::{Credentials, RegistryClient};

    let hub = HttpServer::start(|req| {
        if req.path() == "/v2/repositories/library/nginx/" {
            Response::json(
                200,
                &serde_json::json!({
                    "namespace": "library", "name": "nginx",
                    "description": "Official build of Nginx.",
                    "star_count": 20543, "pull_count": 1_000_000_000u64,
                    "last_updated": "2026-11-20T10:00:00Z"
                }),
            )
        } else {
            Response::new(500)
        }
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = RegistryClient::with_credentials(
        RegistryConfig {
            hub_api_url: hub.base_url(),
            ..RegistryConfig::default()
        },
        Credentials::default(),
    )
    .unwrap();
    let info = rt
        .block_on(client.hub_info(&ImageRef::parse("nginx").unwrap()))
        .expect("hub info");
    assert_eq!(info.star_count, Some(20543));
    assert_eq!(info.pull_count, Some(1_000_000_000));
    assert!(info.is_official);
    assert_eq!(
        rt.block_on(client.hub_info(&ImageRef::parse("someone/else").unwrap())),
        None
    );
    assert_eq!(
        rt.block_on(client.hub_info(&ImageRef::parse("ghcr.io/a/b").unwrap())),
        None
    );
}

#[test]
fn env_lists_every_variable() {
    let out = microbadger(&["env"], "");
    assert!(out.status.success());
    let text = stdout(&out);
    for (name, _, _) in microbadger::config::VARIABLES {
        assert!(text.contains(name), "{name}");
    }
}

/// `microbadger up` serves the site with a worker and the scheduler, and stops cleanly on
/// SIGTERM.
#[test]
fn up_serves_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_microbadger"))
        .arg("up")
        .env(
            "MICROBADGER_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("data/mb.db").display()),
        )
        .env_remove("MICROBADGER_REDIS_URL")
        .env("MICROBADGER_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let url = format!("http://127.0.0.1:{port}");
    let ready = support::wait_for(
        "up to serve /readyz",
        std::time::Duration::from_secs(20),
        || {
            agent
                .get(format!("{url}/readyz"))
                .call()
                .ok()
                .filter(|r| r.status() == 200)
        },
    );
    assert_eq!(ready.status(), 200);
    let mut home = agent.get(format!("{url}/")).call().unwrap();
    assert_eq!(home.status(), 200);
    assert!(home.body_mut().read_to_string().unwrap().contains("<form"));
    let mut metrics = agent.get(format!("{url}/metrics")).call().unwrap();
    assert!(
        metrics
            .body_mut()
            .read_to_string()
            .unwrap()
            .contains("microbadger_http_requests")
    );
    // An unknown image is queued for the worker (which cannot reach Docker Hub from here).
    let resp = agent
        .get(format!("{url}/v1/images/library/nginx:1.27"))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 202);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "up exited with {status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "up did not stop");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    // `microbadger simulate ... | head`: stdout closes while output is still being written.
    let mut child = Command::new(env!("CARGO_BIN_EXE_microbadger"))
        .args(["simulate", "--scenario", "all", "--policy", "all", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start microbadger");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{:?}: {err}", out.status);
}

/// Logs written to a file or a pipe are plain text: no terminal colour codes, even without
/// NO_COLOR (a log collector would store the escape sequences).
#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_microbadger"))
        .arg("migrate")
        .env(
            "MICROBADGER_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("mb.db").display()),
        )
        .env("MICROBADGER_LOG", "debug")
        .env_remove("NO_COLOR")
        .output()
        .expect("run microbadger");
    assert!(out.status.success(), "{out:?}");
    let log = stderr(&out);
    assert!(log.contains("DEBUG"), "the debug log is on: {log}");
    assert!(!log.contains('\u{1b}'), "escape codes in the log: {log:?}");
}
