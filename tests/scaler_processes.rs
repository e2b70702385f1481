//! The microscaler on real processes: `microbadger up` with a capacity of 6 starting and
//! stopping real `web` and `worker` children, against the real registry behind a proxy that
//! makes every registry request slow (so jobs take real time), with the embedded store and
//! queue in one SQLite file.
//!
//! Every 100 ms a sampler counts `up`'s child processes from `/proc` (never more than the
//! capacity). Assertions are about what happened (instances added, removed, replaced; the
//! queue drained; nothing left behind), never about how fast.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use microbadger::queue::{Queue, QueueOptions, QueueStats};
use microbadger::store::Store;
use support::procs::{alive, children_of, slow_registry_proxy};
use support::{Auth, Fixture, Format, TestRegistry};

const CAPACITY: usize = 6;
const JOBS: usize = 300;
/// Added to every registry request (a refresh makes about four).
const REGISTRY_DELAY: Duration = Duration::from_millis(150);

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    web: usize,
    worker: usize,
    total: usize,
}

/// Samples `up`'s children every 100 ms until dropped.
struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    seen: Arc<Mutex<BTreeSet<u32>>>,
    started: Instant,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(parent: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let seen: Arc<Mutex<BTreeSet<u32>>> = Arc::default();
        let started = Instant::now();
        let thread = {
            let (stop, samples, seen) = (stop.clone(), samples.clone(), seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let children = children_of(parent);
                    let count = |role: &str| children.iter().filter(|p| p.role == role).count();
                    samples.lock().unwrap().push(Sample {
                        at: started.elapsed(),
                        web: count("web"),
                        worker: count("worker"),
                        total: children.len(),
                    });
                    seen.lock().unwrap().extend(children.iter().map(|p| p.pid));
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Sampler {
            stop,
            samples,
            seen,
            started,
            thread: Some(thread),
        }
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn samples_since(&self, from: Duration) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.at >= from)
            .copied()
            .collect()
    }

    fn latest(&self) -> Option<Sample> {
        self.samples.lock().unwrap().last().copied()
    }

    fn finish(mut self) -> (Vec<Sample>, BTreeSet<u32>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let samples = std::mem::take(&mut *self.samples.lock().unwrap());
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        (samples, seen)
    }
}

/// The environment `up` and `import` share.
fn base_env(cmd: &mut Command, db: &str, proxy_host: &str) {
    cmd.env("MICROBADGER_DATABASE_URL", db)
        .env_remove("MICROBADGER_REDIS_URL")
        .env("MICROBADGER_INSECURE_REGISTRIES", proxy_host)
        .env("MICROBADGER_ALLOW_REGISTRIES", "")
        .env("MICROBADGER_DOCKER_CONFIG", "")
        .env("MICROBADGER_REGISTRY_RETRIES", "0")
        .env("MICROBADGER_JOB_LEASE_SECS", "10");
}

/// A started process that is stopped when the test ends, even by a failed assertion: SIGTERM
/// (so `up` stops its children), then SIGKILL after 30 s.
struct Stopped(Child);

impl std::ops::Deref for Stopped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Stopped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn start_up(dir: &Path, db: &str, proxy_host: &str, port: u16, scaler_toml: &str) -> Stopped {
    let config = dir.join("scaler.toml");
    std::fs::write(&config, scaler_toml).unwrap();
    let log = std::fs::File::create(dir.join("up.log")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_microbadger"));
    cmd.arg("up");
    base_env(&mut cmd, db, proxy_host);
    cmd.env("MICROBADGER_LISTEN", format!("127.0.0.1:{port}"))
        .env("MICROBADGER_CAPACITY", CAPACITY.to_string())
        .env("MICROBADGER_SCALER_CONFIG", &config)
        .env("MICROBADGER_WORKER_CONCURRENCY", "2")
        .env("MICROBADGER_SHUTDOWN_GRACE_SECS", "2")
        .env("MICROBADGER_LOG", "info,sqlx=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(Stopped)
        .expect("start up")
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

fn wait_until(what: &str, timeout: Duration, f: impl FnMut() -> bool) {
    assert!(waited(timeout, f), "timed out waiting for {what}");
}

/// Polls `f` every 100 ms until it holds (true) or `timeout` passes (false).
fn waited(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "up did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("up.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    // MB_LOG_LINES=3000 shows every decision of a failed run.
    let keep: usize = std::env::var("MB_LOG_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    lines[lines.len().saturating_sub(keep)..].join("\n")
}

/// The queue in the same SQLite file, for its figures.
fn queue_stats(rt: &tokio::runtime::Runtime, queue: &Queue) -> QueueStats {
    rt.block_on(queue.stats()).expect("queue stats")
}

#[test]
fn up_scales_workers_and_web_within_capacity_replaces_crashes_and_leaves_nothing() {
    let reg = TestRegistry::start(Auth::None);
    Fixture::new("team/app", "1")
        .label("org.opencontainers.image.version", "1")
        .layer_with_file("content", "one", "ADD content /")
        .push(&reg, Format::Oci);
    let proxy = slow_registry_proxy(&reg, REGISTRY_DELAY);
    let proxy_host = format!("127.0.0.1:{}", proxy.port());

    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("mb.db").display());
    let port = support::free_port();
    // Short windows so the test sees scale-down within seconds: a 4 s stabilization window
    // and a scale-down at most every 5 s (with the default 30 s, 5 -> 3 -> 1 takes 30 s more).
    let toml = "[control]\nscale_down_window = 4.0\nmin_lifetime = 1.0\nscale_down_rate = 1.0\n\
                scale_down_period = 5.0\n\
                [services.worker]\ntarget = 10.0\n";
    let mut up = start_up(dir.path(), &db, &proxy_host, port, toml);
    let up_pid = up.id();
    let sampler = Sampler::start(up_pid);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let queue = rt.block_on(async {
        let store = Store::connect(&db).await.unwrap();
        Queue::embedded(
            store.sqlite_pool().unwrap().clone(),
            QueueOptions::default(),
        )
        .await
        .unwrap()
    });

    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let base = format!("http://127.0.0.1:{port}");
    wait_until("up to serve /readyz", Duration::from_secs(30), || {
        agent
            .get(format!("{base}/readyz"))
            .call()
            .is_ok_and(|r| r.status() == 200)
    });
    wait_until("one web and one worker", Duration::from_secs(10), || {
        sampler
            .latest()
            .is_some_and(|s| s.web == 1 && s.worker == 1)
    });

    // 1. A surge of 300 jobs: workers are added.
    let list = dir.path().join("images.txt");
    let mut f = std::fs::File::create(&list).unwrap();
    for n in 0..JOBS {
        writeln!(f, "{proxy_host}/team/app{n}:1").unwrap();
    }
    drop(f);
    let mut import = Command::new(env!("CARGO_BIN_EXE_microbadger"));
    import.arg("import").arg(&list);
    base_env(&mut import, &db, &proxy_host);
    let out = import.output().unwrap();
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let surge = sampler.now();
    wait_until(
        "the worker pool to fill the capacity",
        Duration::from_secs(30),
        || sampler.latest().is_some_and(|s| s.worker >= CAPACITY - 1),
    );
    let depth = queue_stats(&rt, &queue);
    assert!(
        depth.total_depth() + depth.in_flight > 0,
        "the surge was still being worked on: {depth:?}"
    );

    // 2. A burst of web traffic while the workers hold the capacity: web instances are
    // added, and workers yield their slots (web has the higher priority).
    let burst = sampler.now();
    let wrk = Command::new("wrk")
        .args(["-t2", "-c96", "-d10s", &format!("{base}/readyz")])
        .output()
        .expect("wrk");
    assert!(wrk.status.success(), "wrk failed");
    let during: Vec<Sample> = sampler.samples_since(burst);
    let max_web = during.iter().map(|s| s.web).max().unwrap_or(0);
    assert!(
        max_web >= 2,
        "web instances were added during the burst: {:?}\n{}",
        during.iter().map(|s| (s.web, s.worker)).collect::<Vec<_>>(),
        log_tail(dir.path())
    );
    let min_worker_with_web = during
        .iter()
        .filter(|s| s.web >= 2)
        .map(|s| s.worker)
        .min()
        .unwrap();
    assert!(
        min_worker_with_web < CAPACITY - 1,
        "workers yielded slots to web (fewest workers while web was scaled out: {min_worker_with_web})"
    );

    // 3. The queue drains, then the workers and web instances are removed after the
    // stabilization window, down to the minimums.
    wait_until("the queue to drain", Duration::from_secs(120), || {
        let s = queue_stats(&rt, &queue);
        s.total_depth() == 0 && s.in_flight == 0
    });
    let stats = queue_stats(&rt, &queue);
    assert_eq!(stats.dead, 0, "no job failed for good: {stats:?}");
    assert!(
        stats.completed_total >= JOBS as u64,
        "every job completed: {stats:?}"
    );
    let drained = sampler.now();
    assert!(
        waited(Duration::from_secs(40), || sampler
            .latest()
            .is_some_and(|s| s.web == 1 && s.worker == 1)),
        "back to one web and one worker: {:?}\n{}",
        sampler
            .samples_since(drained)
            .iter()
            .step_by(5)
            .map(|s| (s.web, s.worker))
            .collect::<Vec<_>>(),
        log_tail(dir.path())
    );
    let peak_workers = sampler
        .samples_since(surge)
        .iter()
        .map(|s| s.worker)
        .max()
        .unwrap();
    assert!(peak_workers >= 3, "workers were added: peak {peak_workers}");

    // 4. A crashed child is replaced.
    let victim = children_of(up_pid)
        .into_iter()
        .find(|p| p.role == "worker")
        .expect("a worker");
    signal(victim.pid, "-KILL");
    wait_until(
        "the killed worker to be replaced",
        Duration::from_secs(15),
        || {
            let now = children_of(up_pid);
            now.iter()
                .any(|p| p.role == "worker" && p.pid != victim.pid)
                && !now.iter().any(|p| p.pid == victim.pid)
        },
    );

    // 5. Stopping up stops every child; nothing is left behind.
    signal(up_pid, "-TERM");
    let status = wait_exit(&mut up, Duration::from_secs(30));
    let (samples, seen) = sampler.finish();
    assert!(
        status.success(),
        "up exited with {status}\n{}",
        log_tail(dir.path())
    );
    let left: Vec<u32> = seen.iter().copied().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");

    // Throughout: never more children than the capacity.
    let worst = samples.iter().max_by_key(|s| s.total).unwrap();
    assert!(
        worst.total <= CAPACITY,
        "{} children at {:?} (capacity {CAPACITY})",
        worst.total,
        worst.at
    );
    assert!(
        samples.len() > 100,
        "the sampler ran: {} samples",
        samples.len()
    );
    let log = std::fs::read_to_string(dir.path().join("up.log")).unwrap();
    assert!(
        log.contains("instance exited unasked"),
        "the crash was logged"
    );
}

/// Children exit by themselves when `up` dies without a chance to stop them (SIGKILL).
#[test]
fn children_of_a_killed_up_exit_by_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("mb.db").display());
    let port = support::free_port();
    let mut up = start_up(dir.path(), &db, "127.0.0.1:1", port, "");
    let up_pid = up.id();
    wait_until("a web and a worker child", Duration::from_secs(30), || {
        let c = children_of(up_pid);
        c.iter().any(|p| p.role == "web") && c.iter().any(|p| p.role == "worker")
    });
    let children: Vec<u32> = children_of(up_pid).iter().map(|p| p.pid).collect();
    signal(up_pid, "-KILL");
    let _ = wait_exit(&mut up, Duration::from_secs(5));
    wait_until(
        "the orphaned children to exit",
        Duration::from_secs(15),
        || children.iter().all(|&p| !alive(p)),
    );
}

/// `up` under a supervisor of its own (MICROBADGER_SUPERVISOR_PID, as the scaler benchmark
/// starts it): when that process is SIGKILLed, `up` stops its children and exits.
#[test]
fn up_whose_own_supervisor_dies_stops_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("mb.db").display());
    let port = support::free_port();
    let config = dir.path().join("scaler.toml");
    std::fs::write(&config, "").unwrap();
    let log = std::fs::File::create(dir.path().join("up.log")).unwrap();
    // A shell stands in for the supervising process: it starts `up` with its own pid as
    // MICROBADGER_SUPERVISOR_PID, prints `up`'s pid and waits.
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        r#"MICROBADGER_SUPERVISOR_PID=$$ "$0" up & echo $!; wait"#,
        env!("CARGO_BIN_EXE_microbadger"),
    ]);
    base_env(&mut cmd, &db, "127.0.0.1:1");
    let mut shell = cmd
        .env("MICROBADGER_LISTEN", format!("127.0.0.1:{port}"))
        .env("MICROBADGER_CAPACITY", CAPACITY.to_string())
        .env("MICROBADGER_SCALER_CONFIG", &config)
        .env("MICROBADGER_SHUTDOWN_GRACE_SECS", "2")
        .env("MICROBADGER_LOG", "info,sqlx=warn")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map(Stopped)
        .expect("start sh");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(shell.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let up_pid: u32 = line.trim().parse().expect("up's pid");
    // `up` stops what it started: make sure it is also stopped if this test fails.
    struct Reap(u32);
    impl Drop for Reap {
        fn drop(&mut self) {
            if alive(self.0) {
                let _ = Command::new("kill")
                    .args(["-KILL", &self.0.to_string()])
                    .status();
            }
        }
    }
    let _reap = Reap(up_pid);
    wait_until("a web and a worker child", Duration::from_secs(30), || {
        let c = children_of(up_pid);
        c.iter().any(|p| p.role == "web") && c.iter().any(|p| p.role == "worker")
    });
    let children: Vec<u32> = children_of(up_pid).iter().map(|p| p.pid).collect();
    signal(shell.id(), "-KILL");
    let _ = wait_exit(&mut shell, Duration::from_secs(5));
    wait_until(
        "up and its children to exit",
        Duration::from_secs(40),
        || !alive(up_pid) && children.iter().all(|&p| !alive(p)),
    );
    let log = std::fs::read_to_string(dir.path().join("up.log")).unwrap();
    assert!(
        log.contains("the supervising process is gone"),
        "{}",
        log_tail(dir.path())
    );
}

/// "Full circle": a service's priority comes from a label on its own image, read with
/// microbadger's registry client from the real registry; a priority set in the configuration
/// wins; an image that cannot be read keeps the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_come_from_image_labels_unless_configured() {
    use microbadger::config::{Config, RegistryConfig};
    use microbadger::registry::{Credentials, RegistryClient};
    use microbadger::scaler::services::{PrioritySource, Services};

    let reg = TestRegistry::start(Auth::None);
    Fixture::new("team/worker", "1")
        .label("org.microbadger.scaler.priority", "0")
        .layer_with_file("content", "worker", "ADD content /")
        .push(&reg, Format::Oci);
    Fixture::new("team/web", "1")
        .label("com.microscaling.priority", "7")
        .layer_with_file("content", "web", "ADD content /")
        .push(&reg, Format::Oci);
    Fixture::new("team/thumbs", "1")
        .label("com.microscaling.priority", "3")
        .layer_with_file("content", "thumbs", "ADD content /")
        .push(&reg, Format::Oci);
    let host = reg.host();
    let client = RegistryClient::with_credentials(
        RegistryConfig {
            allow: vec![],
            insecure: vec![host.clone()],
            retries: 0,
            ..RegistryConfig::default()
        },
        Credentials::default(),
    )
    .unwrap();
    let toml = format!(
        r#"
        [services.worker]
        image = "{host}/team/worker:1"
        [services.web]
        image = "{host}/team/web:1"
        priority = 1
        [services.thumbs]
        command = ["/bin/true"]
        image = "{host}/team/missing:1"
        [services.labelled]
        command = ["/bin/true"]
        image = "{host}/team/thumbs:1"
        "#
    );
    let config = Config::from_lookup(|_| None).unwrap();
    let mut services = Services::from_parts(
        &config,
        Some((Path::new("scaler.toml"), &toml)),
        |_| false,
        "/usr/bin/microbadger",
    )
    .unwrap();
    services.resolve_priorities(&client).await;
    let got: Vec<(&str, u32, &PrioritySource)> = services
        .services
        .iter()
        .map(|d| (d.spec.name.as_str(), d.spec.priority, &d.priority_source))
        .collect();
    assert_eq!(
        got,
        [
            (
                "worker",
                0,
                &PrioritySource::Label("org.microbadger.scaler.priority".into())
            ),
            ("web", 1, &PrioritySource::Config),
            (
                "labelled",
                3,
                &PrioritySource::Label("com.microscaling.priority".into())
            ),
            ("thumbs", 10, &PrioritySource::Default),
        ],
        "sorted by priority; the label read, the configuration winning, a missing image harmless"
    );
}

/// The local backend on its own, with shell commands as services: a child that ignores
/// SIGTERM is killed after the grace period; a start that never reports ready is killed after
/// the ready timeout and replaced; shutdown leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_processes_escalate_stops_and_give_up_on_starts_that_never_get_ready() {
    use microbadger::scaler::orchestrator::{
        Counts, LocalOptions, LocalProcesses, Orchestrator, READY_LINE, child_environment,
    };
    use microbadger::scaler::{MetricKind, ServiceSpec};

    let spec = |name: &str, script: &str| ServiceSpec {
        name: name.into(),
        priority: 1,
        min: 0,
        max: 2,
        metric: MetricKind::QueueDepth,
        target: 1.0,
        units: 1,
        cpu_millis: 0,
        memory_mib: 0,
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
    };
    let stubborn = spec(
        "stubborn",
        &format!("trap '' TERM; echo '{READY_LINE}'; while :; do sleep 1; done"),
    );
    let mute = spec("mute", "exec sleep 60");
    let local = LocalProcesses::new(
        &[stubborn, mute],
        LocalOptions {
            stop_grace: Duration::from_secs(1),
            ready_timeout: Duration::from_secs(1),
            env: child_environment(std::env::vars()),
            ..LocalOptions::default()
        },
    );
    local.scale("stubborn", 1).await.unwrap();
    eventually("the stubborn child to be ready", || {
        local.counts("stubborn").ready == 1
    })
    .await;
    let pid = local.pids("stubborn")[0];
    local.scale("stubborn", 0).await.unwrap();
    assert_eq!(
        local.counts("stubborn"),
        Counts {
            ready: 0,
            starting: 0,
            stopping: 1
        }
    );
    eventually("SIGKILL after the grace period", || {
        local.counts("stubborn") == Counts::default()
    })
    .await;
    assert!(!alive(pid), "the stubborn child is gone");

    local.scale("mute", 1).await.unwrap();
    let first = local.pids("mute")[0];
    eventually("the never-ready start to be replaced", || {
        local.restarts("mute") >= 1 && local.pids("mute").iter().any(|&p| p != first)
    })
    .await;
    assert!(!alive(first), "the never-ready child was killed");
    assert_eq!(local.counts("mute").ready, 0);

    let pids = local.pids("mute");
    local.shutdown().await;
    assert_eq!(local.counts("mute"), Counts::default());
    assert!(pids.iter().all(|&p| !alive(p)), "shutdown left {pids:?}");
    assert!(
        local.scale("nothing", 1).await.is_err(),
        "an unknown service is an error"
    );
}

async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `microbadger scaler` is a dry run: it records decisions and starts no process.
#[test]
fn scaler_command_records_decisions_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("mb.db").display());
    let mut scaler = Command::new(env!("CARGO_BIN_EXE_microbadger"))
        .arg("scaler")
        .env("MICROBADGER_DATABASE_URL", &db)
        .env_remove("MICROBADGER_REDIS_URL")
        .env("MICROBADGER_SCALER_TICK_MS", "100")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Stopped)
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(Store::connect(&db)).unwrap();
    wait_until("a few decisions", Duration::from_secs(30), || {
        rt.block_on(store.decisions_since(0.0))
            .is_ok_and(|d| d.len() >= 2)
    });
    assert!(
        children_of(scaler.id()).is_empty(),
        "a dry run starts nothing"
    );
    let decisions = rt.block_on(store.decisions_since(0.0)).unwrap();
    let last = decisions.last().unwrap();
    let names: Vec<&str> = last.services.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(names, ["web", "worker"]);
    assert!(last.services.iter().all(|s| s.granted >= 1), "{last:?}");
    signal(scaler.id(), "-TERM");
    assert!(wait_exit(&mut scaler, Duration::from_secs(20)).success());
}
