//! The microscaler on real processes: the time from a queue surge crossing the worker target
//! to a *new* worker process taking its first job, median over 20 trials (issue target: under
//! 1 s; Microscaling reported 4 s for containers in 2016).
//!
//! In one run:
//! 1. the real registry (`docker-registry`) with one pushed image, behind a proxy that adds
//!    200 ms to every request, so a job (about four requests) keeps a worker busy for about a
//!    second and the one running worker cannot absorb the surge;
//! 2. **baseline**: no supervisor; 3 jobs queued, then `microbadger worker` started directly by
//!    this process: the time from spawning it to its first claim. This is the floor (process
//!    start, store and queue connection, one claim) that any scaler adds its detection to;
//! 3. **scaler**: `microbadger up` (capacity 6, worker target 10 jobs, tick 500 ms) with its one
//!    minimum worker; per trial, jobs for fresh images are queued one by one and t0 is taken
//!    when the due depth passes the target (the 11th job), then 19 more; t1 is the first claim
//!    made by a worker process that did not exist before the surge began, read from the
//!    queue's own lease (`lease_until - lease`, wall clock, ms). Each trial starts at a random
//!    phase of the tick. Between trials the queue drains and the pool
//!    returns to one worker (short stabilization window via `MICROBADGER_SCALER_CONFIG`).
//!
//! Prints both medians, their ratio, and every trial. Not a timed test; run it with
//! `scripts/bench-scaler` or `cargo bench --bench scaler` (release build).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use microbadger::queue::{JobKind, Priority, Queue, QueueOptions};
use microbadger::store::Store;
use support::{Auth, Fixture, Format, TestRegistry};

const TRIALS: usize = 20;
const TARGET: usize = 10;
const SURGE: usize = 30;
const LEASE_SECS: i64 = 30;
const REGISTRY_DELAY: Duration = Duration::from_millis(200);

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("scaler benchmark: skipped (run it with scripts/bench-scaler)");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().join("../microbadger");
    assert!(
        bin.exists(),
        "{} missing: cargo build --release --bin microbadger",
        bin.display()
    );

    let reg = TestRegistry::start(Auth::None);
    Fixture::new("team/app", "1")
        .label("org.opencontainers.image.version", "1")
        .layer_with_file("content", "one", "ADD content /")
        .push(&reg, Format::Oci);
    let proxy = support::procs::slow_registry_proxy(&reg, REGISTRY_DELAY);
    let proxy_host = format!("127.0.0.1:{}", proxy.port());

    let dir = support::scratch_dir("bench-scaler-");
    let db = format!("sqlite://{}", dir.path().join("mb.db").display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (store, queue) = rt.block_on(async {
        let store = Store::connect(&db).await.unwrap();
        let queue = Queue::embedded(
            store.sqlite_pool().unwrap().clone(),
            QueueOptions::default(),
        )
        .await
        .unwrap();
        (store, queue)
    });
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let mut image_no = 0usize;
    let mut enqueue = |n: usize| {
        for _ in 0..n {
            image_no += 1;
            let name = format!("team/app{image_no}");
            rt.block_on(async {
                store
                    .add_repository(&proxy_host, &name, Utc::now() + chrono::Duration::hours(1))
                    .await
                    .unwrap();
                queue
                    .enqueue(
                        &JobKind::Refresh {
                            image: format!("{proxy_host}/{name}"),
                            tag: Some("1".into()),
                        },
                        Priority::Normal,
                    )
                    .await
                    .unwrap();
            });
        }
    };
    let idle = |rt: &tokio::runtime::Runtime| {
        let s = rt.block_on(queue.stats()).unwrap();
        s.total_depth() == 0 && s.in_flight == 0
    };
    let first_claim_by = |rt: &tokio::runtime::Runtime, not: &BTreeSet<String>| -> Option<i64> {
        rt.block_on(async {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT worker, lease_until FROM queue_jobs WHERE state = 'running' AND worker IS NOT NULL",
            )
            .fetch_all(store.sqlite_pool().unwrap())
            .await
            .unwrap_or_default();
            rows.into_iter()
                .filter(|(w, _)| !not.contains(w))
                .map(|(_, until)| until - LEASE_SECS * 1000)
                .min()
        })
    };

    let env = |cmd: &mut Command| {
        cmd.env("MICROBADGER_DATABASE_URL", &db)
            .env_remove("MICROBADGER_REDIS_URL")
            .env("MICROBADGER_INSECURE_REGISTRIES", &proxy_host)
            .env("MICROBADGER_ALLOW_REGISTRIES", "")
            .env("MICROBADGER_DOCKER_CONFIG", "")
            .env("MICROBADGER_REGISTRY_RETRIES", "0")
            .env("MICROBADGER_JOB_LEASE_SECS", LEASE_SECS.to_string())
            .env("MICROBADGER_WORKER_CONCURRENCY", "2")
            .env("MICROBADGER_SHUTDOWN_GRACE_SECS", "2")
            .env("MICROBADGER_LOG", "warn")
            .stdout(Stdio::null());
    };

    // 2. Baseline: a worker started directly, spawn to first claim.
    let mut baseline = Vec::new();
    for _ in 0..TRIALS {
        enqueue(3);
        let mut cmd = Command::new(&bin);
        cmd.arg("worker");
        env(&mut cmd);
        let t0 = Utc::now().timestamp_millis();
        let mut child = cmd.stderr(Stdio::null()).spawn().unwrap();
        let id = format!("{host}:{}", child.id());
        let claimed = poll(Duration::from_secs(20), || {
            rt.block_on(async {
                let rows: Vec<(i64,)> = sqlx::query_as(
                    "SELECT lease_until FROM queue_jobs WHERE state = 'running' AND worker = ?1",
                )
                .bind(&id)
                .fetch_all(store.sqlite_pool().unwrap())
                .await
                .unwrap_or_default();
                rows.into_iter().map(|(u,)| u - LEASE_SECS * 1000).min()
            })
        })
        .expect("the worker claimed a job");
        baseline.push((claimed - t0) as f64 / 1000.0);
        poll(Duration::from_secs(60), || idle(&rt).then_some(())).expect("jobs done");
        stop(&mut child);
    }

    // 3. The scaler.
    let config = dir.path().join("scaler.toml");
    std::fs::write(
        &config,
        format!(
            "[control]\nscale_down_window = 3.0\nmin_lifetime = 1.0\nscale_down_rate = 2.0\n\
             [services.worker]\ntarget = {TARGET}.0\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("up.log")).unwrap();
    let mut cmd = Command::new(&bin);
    cmd.arg("up");
    env(&mut cmd);
    let port = support::free_port();
    let mut up = cmd
        .env("MICROBADGER_LISTEN", format!("127.0.0.1:{port}"))
        .env("MICROBADGER_CAPACITY", "6")
        // If this benchmark is killed, `up` stops its children and exits instead of running on.
        .env("MICROBADGER_SUPERVISOR_PID", std::process::id().to_string())
        .env("MICROBADGER_SCALER_CONFIG", &config)
        .env("MICROBADGER_LOG", "info,sqlx=warn,microbadger::web=warn")
        .stderr(log)
        .spawn()
        .unwrap();
    let up_pid = up.id();
    let workers = || -> BTreeSet<String> {
        children_of(up_pid, "worker")
            .into_iter()
            .map(|p| format!("{host}:{p}"))
            .collect()
    };
    poll(Duration::from_secs(30), || {
        (workers().len() == 1).then_some(())
    })
    .expect("one worker");
    std::thread::sleep(Duration::from_secs(2));

    let mut scaler = Vec::new();
    let mut crossing = Vec::new();
    for trial in 0..TRIALS {
        poll(Duration::from_secs(60), || {
            (idle(&rt) && workers().len() == 1).then_some(())
        })
        .unwrap_or_else(|| panic!("trial {trial}: the pool did not return to one worker"));
        // A random phase against the supervisor's tick: the pool shrinks on a tick, so a
        // fixed pause here would start every trial at the same point of the tick.
        std::thread::sleep(Duration::from_millis(700 + rand::random_range(0..500)));
        let before = workers();
        let surge_start = Instant::now();
        enqueue(TARGET + 1);
        let t0 = Utc::now().timestamp_millis();
        crossing.push(surge_start.elapsed().as_secs_f64());
        enqueue(SURGE - TARGET - 1);
        let claimed = poll(Duration::from_secs(30), || first_claim_by(&rt, &before))
            .unwrap_or_else(|| panic!("trial {trial}: no new worker took a job"));
        let secs = (claimed - t0) as f64 / 1000.0;
        scaler.push(secs);
        eprintln!("trial {trial}: {secs:.3} s");
    }
    stop(&mut up);

    let b = median(&mut baseline);
    let s = median(&mut scaler);
    println!(
        "command: cargo bench --bench scaler (release; {} cores)",
        num_cpus()
    );
    println!(
        "registry delay {} ms per request; worker target {TARGET} due jobs; surge {SURGE} jobs; tick 500 ms; {TRIALS} trials",
        REGISTRY_DELAY.as_millis()
    );
    println!(
        "baseline: worker process started directly, spawn -> first claim: median {b:.3} s (min {:.3}, max {:.3})",
        baseline.first().unwrap(),
        baseline.last().unwrap()
    );
    println!(
        "scaler:   surge crosses target -> a new worker's first claim:    median {s:.3} s (min {:.3}, max {:.3})",
        scaler.first().unwrap(),
        scaler.last().unwrap()
    );
    println!(
        "queueing the {} jobs that cross the target took a median {:.3} s (the law also sees their arrival rate)",
        TARGET + 1,
        median(&mut crossing)
    );
    println!(
        "ratio scaler/baseline: {:.2}; target < 1 s: {}; Microscaling (2016, containers): 4 s",
        s / b,
        if s < 1.0 { "met" } else { "MISSED" }
    );
    println!(
        "scaler trials (s, sorted): {}",
        scaler
            .iter()
            .map(|v| format!("{v:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Calls `f` every 5 ms until it returns a value or `timeout` passes.
fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGTERM, then wait (SIGKILL after 30 s).
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Live children of `parent` whose last argument is `role`.
fn children_of(parent: u32, role: &str) -> Vec<u32> {
    support::procs::children_of(parent)
        .into_iter()
        .filter(|p| p.role == role)
        .map(|p| p.pid)
        .collect()
}
