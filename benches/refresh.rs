//! Refreshing 1,000 known, unchanged tags: how many registry requests it costs and how close
//! it gets to the registry's own `HEAD` capacity.
//!
//! In one run, against the real distribution registry on loopback:
//! 1. one image pushed with skopeo and tagged 1,000 times (the same manifest under each tag);
//! 2. a first refresh so the store knows every tag;
//! 3. the measured refresh (`Worker::refresh`, whole repository): wall time and the registry's
//!    access log (target: one tag listing plus 1,000 `HEAD`s, nothing else);
//! 4. the registry's own `HEAD` capacity, measured with ApacheBench (`ab -k -i`, keep-alive
//!    `HEAD`s on a tag's manifest) at the worker's concurrency; the ratio ours/registry is
//!    printed (target >= 60%). Not `wrk`: wrk's response parser waits for the body that a
//!    `HEAD` response announces in `Content-Length` but never sends, so it measures nothing.
//!
//! Run with `scripts/bench-refresh` (release build). Not a timed test.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use microbadger::config::{RegistryConfig, WorkerConfig};
use microbadger::queue::{Queue, QueueOptions};
use microbadger::registry::{Credentials, RegistryClient};
use microbadger::store::Store;
use microbadger::worker::Worker;
use support::{Auth, Fixture, Format, TestRegistry};

const TAGS: usize = 1000;
/// Connections for ab: the worker HEADs 16 tags at once.
const CONNECTIONS: usize = 16;
const ROUNDS: usize = 3;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("refresh benchmark: skipped (run it with scripts/bench-refresh)");
        return;
    }
    let ok = tokio::runtime::Runtime::new().unwrap().block_on(run());
    if !ok {
        std::process::exit(1);
    }
}

async fn run() -> bool {
    let reg = TestRegistry::start(Auth::None);
    let pushed = Fixture::new("bench/refresh", "t0000")
        .layer_with_file("f", "refresh bench", "ADD f /")
        .push(&reg, Format::Oci);
    let tags: Vec<String> = (1..TAGS).map(|n| format!("t{n:04}")).collect();
    reg.add_tags("bench/refresh", "t0000", &tags);

    let dir = support::scratch_dir("bench-refresh-");
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("mb.db").display()))
        .await
        .unwrap();
    let queue = Queue::embedded(
        store.sqlite_pool().unwrap().clone(),
        QueueOptions::default(),
    )
    .await
    .unwrap();
    let registry = RegistryClient::with_credentials(
        RegistryConfig {
            allow: vec![],
            insecure: vec![reg.host()],
            max_tags: 2000,
            ..RegistryConfig::default()
        },
        Credentials::default(),
    )
    .unwrap();
    let worker = Worker {
        store: store.clone(),
        queue,
        registry,
        config: WorkerConfig {
            concurrency: 1,
            lease: Duration::from_secs(60),
            max_attempts: 3,
            refresh_period: Duration::from_secs(3600),
            shutdown_grace: Duration::from_secs(5),
            dead_job_retention: None,
        },
        id: "bench".into(),
    };
    let image = format!("{}/bench/refresh", reg.host());
    let first = worker.refresh(&image, None).await.unwrap();
    assert_eq!(first.inspected, TAGS, "first refresh inspects every tag");
    println!(
        "refresh bench: {TAGS} tags of {} on {}",
        pushed.digest,
        reg.host()
    );

    let mut best_ours = 0.0f64;
    let mut best_registry = 0.0f64;
    let mut request_counts = (0usize, 0usize, 0usize);
    for round in 1..=ROUNDS {
        let mark = reg.mark();
        let started = Instant::now();
        let report = worker.refresh(&image, None).await.unwrap();
        let wall = started.elapsed();
        assert_eq!(report.unchanged, TAGS);
        let log: Vec<_> = reg
            .access_log_since(mark)
            .into_iter()
            .filter(|e| !e.is_harness())
            .collect();
        let heads = log
            .iter()
            .filter(|e| e.method == "HEAD" && e.is_manifest())
            .count();
        let lists = log
            .iter()
            .filter(|e| e.path().ends_with("/tags/list"))
            .count();
        let other = log.len() - heads - lists;
        request_counts = (heads, lists, other);
        let ours = TAGS as f64 / wall.as_secs_f64();
        best_ours = best_ours.max(ours);
        let registry_rate = ab_heads(&reg);
        best_registry = best_registry.max(registry_rate);
        println!(
            "round {round}: refresh {:.3} s = {ours:.0} HEAD/s ({heads} HEAD, {lists} tag list, {other} other); registry (ab) {registry_rate:.0} HEAD/s",
            wall.as_secs_f64()
        );
    }
    let ratio = best_ours / best_registry;
    let requests_ok = request_counts == (TAGS, 1, 0);
    let ratio_ok = ratio >= 0.6;
    println!(
        "requests per refresh: {} HEAD + {} tag list + {} other (target: {TAGS} HEAD + 1 list, nothing else): {}",
        request_counts.0,
        request_counts.1,
        request_counts.2,
        if requests_ok { "PASS" } else { "FAIL" }
    );
    println!(
        "best: ours {best_ours:.0} HEAD/s, registry (ab, {CONNECTIONS} conns) {best_registry:.0} HEAD/s, ratio {:.0}% (target >= 60%): {}",
        ratio * 100.0,
        if ratio_ok { "PASS" } else { "FAIL" }
    );
    requests_ok && ratio_ok
}

/// ApacheBench for 5,000 keep-alive `HEAD`s of one tag's manifest: requests per second.
fn ab_heads(reg: &TestRegistry) -> f64 {
    let out = std::process::Command::new("ab")
        .args(["-q", "-k", "-i", "-n", "5000", "-c"])
        .arg(CONNECTIONS.to_string())
        .args([
            "-H",
            &format!("Accept: {}", support::media::ACCEPT_ALL_MANIFESTS),
        ])
        .arg(format!("{}/v2/bench/refresh/manifests/t0500", reg.url()))
        .output()
        .expect("ab (apache2-utils; scripts/setup installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests per second:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no 'Requests per second' in ab output:\n{text}"))
}
