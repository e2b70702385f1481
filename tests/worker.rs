//! The worker and scheduler against the real registry, the SQLite store and both queue
//! backends; worker processes killed with SIGKILL and stopped with SIGTERM.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use microbadger::config::{RegistryConfig, WorkerConfig};
use microbadger::queue::{JobKind, Priority, Queue, QueueOptions};
use microbadger::registry::{Credentials, RegistryClient};
use microbadger::scheduler::Scheduler;
use microbadger::store::{EventKind, RepoStatus, Store};
use microbadger::worker::{JobError, Worker};
use support::http::{HttpServer, Response};
use support::{Auth, Fixture, Format, TestRegistry};

fn worker_config() -> WorkerConfig {
    WorkerConfig {
        concurrency: 2,
        lease: Duration::from_secs(2),
        max_attempts: 3,
        refresh_period: Duration::from_secs(3600),
        shutdown_grace: Duration::from_secs(2),
        dead_job_retention: None,
    }
}

fn registry_client(hosts: &[String]) -> RegistryClient {
    RegistryClient::with_credentials(
        RegistryConfig {
            allow: vec![],
            insecure: hosts.to_vec(),
            retries: 0,
            request_timeout: Duration::from_secs(5),
            ..RegistryConfig::default()
        },
        Credentials::default(),
    )
    .unwrap()
}

/// A store and embedded queue in a fresh SQLite file.
async fn embedded(dir: &tempfile::TempDir) -> (Store, Queue) {
    let url = format!("sqlite://{}", dir.path().join("mb.db").display());
    let store = Store::connect(&url).await.unwrap();
    let opts = QueueOptions {
        lease: Duration::from_secs(2),
        max_attempts: 3,
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_secs(1),
    };
    let queue = Queue::embedded(store.sqlite_pool().unwrap().clone(), opts)
        .await
        .unwrap();
    (store, queue)
}

fn worker(store: &Store, queue: &Queue, hosts: &[String]) -> Worker {
    Worker {
        store: store.clone(),
        queue: queue.clone(),
        registry: registry_client(hosts),
        config: worker_config(),
        id: "test-worker".into(),
    }
}

fn push(reg: &TestRegistry, name: &str, tag: &str, content: &str) -> support::PushedImage {
    Fixture::new(name, tag)
        .label("org.opencontainers.image.version", content)
        .layer_with_file("content", content, "ADD content /")
        .push(reg, Format::Oci)
}

#[tokio::test]
async fn refresh_records_new_moved_and_deleted_tags_cheaply() {
    let reg = TestRegistry::start(Auth::None);
    let dir = tempfile::tempdir().unwrap();
    let (store, queue) = embedded(&dir).await;
    let w = worker(&store, &queue, &[reg.host()]);
    let image = format!("{}/team/app", reg.host());
    let one = push(&reg, "team/app", "1", "one");
    let two = push(&reg, "team/app", "2", "two");

    let report = w.refresh(&image, None).await.unwrap();
    assert_eq!(
        (report.inspected, report.unchanged, report.deleted),
        (2, 0, 0)
    );
    let repo = store
        .repository(&reg.host(), "team/app")
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(repo.status, RepoStatus::Inspected),
        "{:?}",
        repo.status
    );
    let tags = store.tags(repo.id).await.unwrap();
    assert_eq!(
        tags.iter()
            .map(|t| (t.tag.as_str(), t.digest.as_str()))
            .collect::<Vec<_>>(),
        [("1", one.digest.as_str()), ("2", two.digest.as_str())]
    );
    let events = store.events_since(0, 100).await.unwrap();
    assert_eq!(
        events.iter().filter(|e| e.kind == EventKind::Added).count(),
        2
    );
    let v = store.version(&one.digest).await.unwrap().unwrap();
    assert_eq!(v.image.derived.version.as_deref(), Some("one"));

    // Unchanged: one tag listing and one HEAD per tag, nothing else.
    let mark = reg.mark();
    let seq = store.latest_seq().await.unwrap();
    let report = w.refresh(&image, None).await.unwrap();
    assert_eq!((report.inspected, report.unchanged), (0, 2));
    let log: Vec<_> = reg
        .access_log_since(mark)
        .into_iter()
        .filter(|e| !e.is_harness())
        .collect();
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log.iter().filter(|e| e.method == "HEAD").count(), 2);
    assert_eq!(
        store.latest_seq().await.unwrap(),
        seq,
        "no events for an unchanged repository"
    );

    // Tag 2 moves, tag 1 is deleted, tag 3 appears.
    let two_b = push(&reg, "team/app", "2", "two-b");
    let three = push(&reg, "team/app", "3", "three");
    let del = reg.admin_request(
        "DELETE",
        &format!("/v2/team/app/manifests/{}", one.digest),
        &[],
        &[],
    );
    assert_eq!(del.status, 202, "registry deleted the manifest");
    let report = w.refresh(&image, None).await.unwrap();
    assert_eq!(
        (report.inspected, report.unchanged, report.deleted),
        (2, 0, 1)
    );
    let events = store.events_since(seq, 100).await.unwrap();
    let kinds: Vec<(Option<&str>, EventKind)> =
        events.iter().map(|e| (e.tag.as_deref(), e.kind)).collect();
    assert!(
        kinds.contains(&(Some("1"), EventKind::Deleted)),
        "{kinds:?}"
    );
    assert!(kinds.contains(&(Some("2"), EventKind::Moved)), "{kinds:?}");
    assert!(kinds.contains(&(Some("3"), EventKind::Added)), "{kinds:?}");
    let moved = events.iter().find(|e| e.kind == EventKind::Moved).unwrap();
    assert_eq!(moved.old_digest.as_deref(), Some(two.digest.as_str()));
    assert_eq!(moved.new_digest.as_deref(), Some(two_b.digest.as_str()));
    let tags: Vec<String> = store
        .tags(repo.id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.tag)
        .collect();
    assert_eq!(tags, ["2", "3"]);
    assert!(store.version(&three.digest).await.unwrap().is_some());

    // A single-tag refresh (a person waiting, or a webhook) is one HEAD when unchanged.
    let mark = reg.mark();
    let report = w.refresh(&image, Some("3")).await.unwrap();
    assert_eq!(report.unchanged, 1);
    let log: Vec<_> = reg
        .access_log_since(mark)
        .into_iter()
        .filter(|e| !e.is_harness())
        .collect();
    assert_eq!(log.len(), 1, "{log:?}");
}

#[tokio::test]
async fn a_missing_repository_is_marked_and_not_retried_hourly() {
    let reg = TestRegistry::start(Auth::None);
    let dir = tempfile::tempdir().unwrap();
    let (store, queue) = embedded(&dir).await;
    let w = worker(&store, &queue, &[reg.host()]);
    let report = w
        .refresh(&format!("{}/team/ghost", reg.host()), None)
        .await
        .unwrap();
    assert!(report.status.is_some());
    let repo = store
        .repository(&reg.host(), "team/ghost")
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(repo.status, RepoStatus::Missing { .. }),
        "{:?}",
        repo.status
    );
    assert!(repo.next_refresh_at > Utc::now() + chrono::TimeDelta::hours(23));
}

#[tokio::test]
async fn a_429_reschedules_instead_of_failing() {
    let server = support::MisbehavingServer::start(support::Behaviour::TooManyRequests {
        retry_after_secs: 120,
        times: 1000,
    });
    let dir = tempfile::tempdir().unwrap();
    let (store, queue) = embedded(&dir).await;
    let w = worker(&store, &queue, &[server.host()]);
    let before = Utc::now();
    match w
        .refresh(&format!("{}/test/app", server.host()), Some("latest"))
        .await
    {
        Err(JobError::RateLimited(at)) => {
            assert!(at >= before + chrono::TimeDelta::seconds(119), "{at}");
        }
        other => panic!("{other:?}"),
    }

    // Through the queue: the job is rescheduled, not failed; it is not claimable yet.
    let kind = JobKind::Refresh {
        image: format!("{}/test/app", server.host()),
        tag: Some("latest".into()),
    };
    queue.enqueue(&kind, Priority::Normal).await.unwrap();
    let job = queue.claim("w").await.unwrap().unwrap();
    w.process(job).await;
    let stats = queue.stats().await.unwrap();
    assert_eq!(
        (stats.delayed, stats.dead, stats.in_flight),
        (1, 0, 0),
        "{stats:?}"
    );
    assert!(queue.claim("w").await.unwrap().is_none());
}

#[tokio::test]
async fn worker_runs_queued_jobs_by_priority_and_stops_cleanly() {
    let reg = TestRegistry::start(Auth::None);
    let dir = tempfile::tempdir().unwrap();
    let (store, queue) = embedded(&dir).await;
    push(&reg, "team/a", "1", "a");
    push(&reg, "team/b", "1", "b");
    queue
        .enqueue(
            &JobKind::Refresh {
                image: format!("{}/team/a", reg.host()),
                tag: None,
            },
            Priority::Background,
        )
        .await
        .unwrap();
    queue
        .enqueue(
            &JobKind::Refresh {
                image: format!("{}/team/b", reg.host()),
                tag: Some("1".into()),
            },
            Priority::Urgent,
        )
        .await
        .unwrap();
    let w = worker(&store, &queue, &[reg.host()]);
    let q = queue.clone();
    let done = w
        .run(async move {
            loop {
                let s = q.stats().await.unwrap();
                if s.completed_total >= 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    assert_eq!(done, 2);
    for name in ["team/a", "team/b"] {
        let repo = store.repository(&reg.host(), name).await.unwrap().unwrap();
        assert_eq!(store.tags(repo.id).await.unwrap().len(), 1, "{name}");
    }
}

#[tokio::test]
async fn the_scheduler_queues_each_repository_once_per_period_with_one_leader() {
    let dir = tempfile::tempdir().unwrap();
    let (store, queue) = embedded(&dir).await;
    let now = Utc::now();
    for n in 0..20 {
        store
            .add_repository(
                "docker.io",
                &format!("team/app{n}"),
                now - chrono::TimeDelta::seconds(1),
            )
            .await
            .unwrap();
    }
    store
        .add_repository(
            "docker.io",
            "team/later",
            now + chrono::TimeDelta::minutes(30),
        )
        .await
        .unwrap();
    let a = Scheduler {
        store: store.clone(),
        queue: queue.clone(),
        period: Duration::from_secs(3600),
        holder: "a".into(),
        dead_job_retention: None,
    };
    let b = Scheduler {
        store: store.clone(),
        queue: queue.clone(),
        period: Duration::from_secs(3600),
        holder: "b".into(),
        dead_job_retention: None,
    };

    assert_eq!(a.tick(now).await.unwrap(), Some(20));
    assert_eq!(b.tick(now).await.unwrap(), None, "b is not the leader");
    assert_eq!(a.tick(now).await.unwrap(), Some(0), "nothing due twice");
    // A restarted scheduler (same store) queues nothing new either.
    let a2 = Scheduler {
        store: store.clone(),
        queue: queue.clone(),
        period: Duration::from_secs(3600),
        holder: "a".into(),
        dead_job_retention: None,
    };
    assert_eq!(a2.tick(now).await.unwrap(), Some(0));
    let stats = queue.stats().await.unwrap();
    assert_eq!(
        stats.depth.get(&Priority::Background).copied().unwrap_or(0),
        20
    );
    // Next period: each is due again exactly one period later.
    let later = now + chrono::TimeDelta::hours(1);
    assert_eq!(a.tick(later).await.unwrap(), Some(21));
    let repo = store
        .repository("docker.io", "team/app0")
        .await
        .unwrap()
        .unwrap();
    assert!(repo.next_refresh_at > later);
}

/// The active scheduler deletes dead letters older than the retention when it starts leading
/// (and hourly after); without a retention it keeps them.
#[tokio::test]
async fn the_active_scheduler_purges_old_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let (store, queue) = embedded(&dir).await;
    let job_kind = JobKind::Refresh {
        image: "docker.io/team/gone".into(),
        tag: None,
    };
    queue.enqueue(&job_kind, Priority::Normal).await.unwrap();
    for _ in 0..3 {
        let job = loop {
            if let Some(job) = queue.claim("w").await.unwrap() {
                break job;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        queue.fail(&job, "manifest unknown").await.unwrap();
    }
    assert_eq!(queue.stats().await.unwrap().dead, 1);
    let scheduler = |retention| Scheduler {
        store: store.clone(),
        queue: queue.clone(),
        period: Duration::from_secs(3600),
        holder: "a".into(),
        dead_job_retention: retention,
    };
    assert_eq!(scheduler(None).purge_dead_jobs().await.unwrap(), None);
    assert_eq!(
        scheduler(Some(Duration::from_secs(86_400)))
            .purge_dead_jobs()
            .await
            .unwrap(),
        Some(0),
        "a day's retention keeps a job that died just now"
    );
    assert_eq!(queue.stats().await.unwrap().dead, 1);

    // The loop purges at its first tick as leader.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(scheduler(Some(Duration::ZERO)).run(async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while queue.stats().await.unwrap().dead > 0 {
        assert!(std::time::Instant::now() < deadline, "not purged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send(true).unwrap();
    run.await.unwrap();
    assert!(queue.dead_jobs(10).await.unwrap().is_empty());
}

// ---- worker processes -------------------------------------------------------------------

/// A proxy in front of a real registry that can hang requests or play dead, so a worker
/// process can be caught mid-job.
struct Proxy {
    server: HttpServer,
    hang_next_manifest_get: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
    hung: Arc<AtomicUsize>,
    hang_for: Arc<std::sync::Mutex<Option<Duration>>>,
}

impl Proxy {
    fn start(reg: &TestRegistry) -> Proxy {
        let upstream = reg.url();
        let hang_next = Arc::new(AtomicBool::new(false));
        let down = Arc::new(AtomicBool::new(false));
        let hung = Arc::new(AtomicUsize::new(0));
        let hang_for: Arc<std::sync::Mutex<Option<Duration>>> = Arc::default();
        let (h, d, c, f) = (
            hang_next.clone(),
            down.clone(),
            hung.clone(),
            hang_for.clone(),
        );
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .new_agent();
        let server = HttpServer::start(move |req| {
            if d.load(Ordering::SeqCst) {
                return Response::new(503);
            }
            if req.method == "GET"
                && req.path().contains("/manifests/")
                && h.swap(false, Ordering::SeqCst)
            {
                c.fetch_add(1, Ordering::SeqCst);
                match *f.lock().unwrap() {
                    Some(delay) => std::thread::sleep(delay),
                    None => return Response::raw(|stream, stop| stop.hang(stream)),
                }
            }
            let mut b = ureq::http::Request::builder()
                .method(req.method.as_str())
                .uri(format!("{upstream}{}", req.target));
            for (k, v) in &req.headers {
                if k.eq_ignore_ascii_case("accept") || k.eq_ignore_ascii_case("authorization") {
                    b = b.header(k.as_str(), v.as_str());
                }
            }
            let mut resp = agent
                .run(b.body(req.body.clone()).unwrap())
                .expect("upstream");
            let mut out = Response::new(resp.status().as_u16());
            for (k, v) in resp.headers() {
                let k = k.as_str();
                if [
                    "content-type",
                    "docker-content-digest",
                    "link",
                    "www-authenticate",
                ]
                .contains(&k)
                    || (req.method == "HEAD" && k == "content-length")
                {
                    out = out.header(k, v.to_str().unwrap_or_default());
                }
            }
            let body = resp.body_mut().read_to_vec().unwrap_or_default();
            out.body(body)
        });
        Proxy {
            server,
            hang_next_manifest_get: hang_next,
            down,
            hung,
            hang_for,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.server.port())
    }
}

fn spawn_worker(db: &str, insecure: &str, grace_secs: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_microbadger"))
        .arg("worker")
        .env("MICROBADGER_DATABASE_URL", db)
        .env_remove("MICROBADGER_REDIS_URL")
        .env("MICROBADGER_INSECURE_REGISTRIES", insecure)
        .env("MICROBADGER_DOCKER_CONFIG", "")
        .env("MICROBADGER_JOB_LEASE_SECS", "1")
        .env("MICROBADGER_REGISTRY_RETRIES", "0")
        .env("MICROBADGER_SHUTDOWN_GRACE_SECS", grace_secs.to_string())
        .env("MICROBADGER_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start worker")
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_loses_nothing() {
    let reg = TestRegistry::start(Auth::None);
    let pushed = push(&reg, "team/app", "1", "one");
    let proxy = Proxy::start(&reg);
    let dir = tempfile::tempdir().unwrap();
    let (store, queue) = embedded(&dir).await;
    let db = format!("sqlite://{}", dir.path().join("mb.db").display());
    let image = format!("{}/team/app", proxy.host());
    queue
        .enqueue(
            &JobKind::Refresh {
                image: image.clone(),
                tag: Some("1".into()),
            },
            Priority::Urgent,
        )
        .await
        .unwrap();

    proxy.hang_next_manifest_get.store(true, Ordering::SeqCst);
    let mut first = spawn_worker(&db, &proxy.host(), 5);
    wait_until(
        "the first worker to be mid-job",
        Duration::from_secs(20),
        || proxy.hung.load(Ordering::SeqCst) == 1,
    );
    signal(&first, "-KILL");
    first.wait().unwrap();

    let mut second = spawn_worker(&db, &proxy.host(), 5);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if queue.stats().await.unwrap().completed_total == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the job was not taken over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(&second, "-TERM");
    assert!(second.wait().unwrap().success());
    let repo = store
        .repository(&proxy.host(), "team/app")
        .await
        .unwrap()
        .unwrap();
    let tags = store.tags(repo.id).await.unwrap();
    assert_eq!(tags.len(), 1);
    assert_eq!(tags[0].digest, pushed.digest);
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.in_flight, stats.dead), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_jobs_in_hand_or_releases_them() {
    let reg = TestRegistry::start(Auth::None);
    push(&reg, "team/app", "1", "one");
    push(&reg, "team/app", "2", "two");
    let proxy = Proxy::start(&reg);
    let dir = tempfile::tempdir().unwrap();
    let (store, queue) = embedded(&dir).await;
    let db = format!("sqlite://{}", dir.path().join("mb.db").display());
    let kind = JobKind::Refresh {
        image: format!("{}/team/app", proxy.host()),
        tag: Some("1".into()),
    };

    // A job that takes 1 s finishes within a 5 s grace period.
    *proxy.hang_for.lock().unwrap() = Some(Duration::from_secs(1));
    proxy.hang_next_manifest_get.store(true, Ordering::SeqCst);
    queue.enqueue(&kind, Priority::Urgent).await.unwrap();
    let mut w = spawn_worker(&db, &proxy.host(), 5);
    wait_until("the job to start", Duration::from_secs(20), || {
        proxy.hung.load(Ordering::SeqCst) == 1
    });
    signal(&w, "-TERM");
    assert!(w.wait().unwrap().success());
    let stats = queue.stats().await.unwrap();
    assert_eq!(
        (stats.completed_total, stats.in_flight),
        (1, 0),
        "{stats:?}"
    );
    let repo = store
        .repository(&proxy.host(), "team/app")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.tags(repo.id).await.unwrap().len(), 1);

    // A job stuck past a 1 s grace period is released, not lost, and not counted as a failure.
    *proxy.hang_for.lock().unwrap() = None;
    proxy.hang_next_manifest_get.store(true, Ordering::SeqCst);
    let other = JobKind::Refresh {
        image: format!("{}/team/app", proxy.host()),
        tag: Some("2".into()),
    };
    queue.enqueue(&other, Priority::Urgent).await.unwrap();
    let mut w = spawn_worker(&db, &proxy.host(), 1);
    wait_until("the job to hang", Duration::from_secs(20), || {
        proxy.hung.load(Ordering::SeqCst) == 2
    });
    let stopped = Instant::now();
    signal(&w, "-TERM");
    assert!(w.wait().unwrap().success());
    assert!(
        stopped.elapsed() < Duration::from_secs(4),
        "stopped within the grace period"
    );
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.in_flight, stats.dead), (0, 0), "{stats:?}");
    let job = queue
        .claim("check")
        .await
        .unwrap()
        .expect("the released job is pending again");
    assert_eq!(job.kind, other);
    assert_eq!(job.attempt, 1, "a release is not a failed attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_goes_away_and_comes_back() {
    let reg = TestRegistry::start(Auth::None);
    let pushed = push(&reg, "team/app", "1", "one");
    let proxy = Proxy::start(&reg);
    let dir = tempfile::tempdir().unwrap();
    let (store, queue) = embedded(&dir).await;
    let w = worker(&store, &queue, &[proxy.host()]);
    proxy.down.store(true, Ordering::SeqCst);
    queue
        .enqueue(
            &JobKind::Refresh {
                image: format!("{}/team/app", proxy.host()),
                tag: None,
            },
            Priority::Normal,
        )
        .await
        .unwrap();
    let job = queue.claim("w").await.unwrap().unwrap();
    w.process(job).await;
    let stats = queue.stats().await.unwrap();
    assert_eq!(
        (stats.delayed, stats.dead),
        (1, 0),
        "retried later, not lost: {stats:?}"
    );

    proxy.down.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    let job = loop {
        if let Some(job) = queue.claim("w").await.unwrap() {
            break job;
        }
        assert!(Instant::now() < deadline, "the retry never became due");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(job.attempt, 2);
    w.process(job).await;
    let repo = store
        .repository(&proxy.host(), "team/app")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.tags(repo.id).await.unwrap()[0].digest, pushed.digest);
    assert!(matches!(repo.status, RepoStatus::Inspected));
}

#[test]
fn import_adds_many_images_and_explains_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("images.txt");
    std::fs::write(
        &list,
        "nginx\nuser/app:1.2\n# comment\n\nBad/Name\nevil.example.com/x\nnginx\n",
    )
    .unwrap();
    let db = format!("sqlite://{}", dir.path().join("sub/mb.db").display());
    let out = Command::new(env!("CARGO_BIN_EXE_microbadger"))
        .args(["import", list.to_str().unwrap()])
        .env("MICROBADGER_DATABASE_URL", &db)
        .env_remove("MICROBADGER_REDIS_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "rejections make a non-zero exit: {stdout}"
    );
    assert!(
        stdout.contains("2 added, 0 already known, 2 rejected"),
        "{stdout}"
    );
    assert!(stdout.contains("line 5: Bad/Name"), "{stdout}");
    assert!(
        stdout.contains("line 6: evil.example.com/x") && stdout.contains("allow-list"),
        "{stdout}"
    );

    // Importing again: already known.
    let out = Command::new(env!("CARGO_BIN_EXE_microbadger"))
        .args(["import", list.to_str().unwrap()])
        .env("MICROBADGER_DATABASE_URL", &db)
        .env_remove("MICROBADGER_REDIS_URL")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 added, 2 already known"));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::connect(&db).await.unwrap();
        assert_eq!(store.count_repositories().await.unwrap(), 2);
        let queue = Queue::embedded(
            store.sqlite_pool().unwrap().clone(),
            QueueOptions::default(),
        )
        .await
        .unwrap();
        let stats = queue.stats().await.unwrap();
        assert_eq!(
            stats.depth.get(&Priority::Background).copied().unwrap_or(0),
            2
        );
    });
}
