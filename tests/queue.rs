//! The queue's behaviour, written once and run against every backend (house style 9): the
//! embedded queue on a temporary SQLite file, and the Redis queue on a real `redis-server`
//! started per test with append-only persistence. Backend-specific tests follow: Redis
//! restarted (gracefully and by SIGKILL) mid-run, and two SQLite pools sharing one file as two
//! worker processes would.
//!
//! Leases, backoffs and lock TTLs are real but short (at most about two seconds per test).

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use microbadger::queue::{
    ClaimedJob, EnqueueOutcome, FailOutcome, JobKind, Priority, Queue, QueueError, QueueOptions,
};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use support::TestRedis;
use tokio::sync::Mutex;

use Priority::{Background, Normal, Urgent};

/// One backend, isolated for one test: its own SQLite file or its own redis-server.
struct Env {
    sqlite: Option<(tempfile::TempDir, PathBuf)>,
    redis: Option<TestRedis>,
}

impl Env {
    fn embedded() -> Env {
        let dir = support::scratch_dir("microbadger-queue-test-");
        let path = dir.path().join("microbadger.db");
        Env {
            sqlite: Some((dir, path)),
            redis: None,
        }
    }

    fn redis() -> Env {
        Env {
            sqlite: None,
            redis: Some(TestRedis::start()),
        }
    }

    /// A new handle on this backend: a new SQLite pool on the same file (as another process
    /// would open it), or a new Redis connection.
    async fn queue(&self, opts: QueueOptions) -> Queue {
        match (&self.sqlite, &self.redis) {
            (Some((_, path)), _) => Queue::embedded(sqlite_pool(path).await, opts)
                .await
                .expect("embedded queue"),
            (_, Some(redis)) => Queue::redis(&redis.url(), opts).await.expect("redis queue"),
            _ => unreachable!(),
        }
    }

    fn redis_server(&mut self) -> &mut TestRedis {
        self.redis.as_mut().expect("a Redis test")
    }
}

/// A pool as the store opens it: WAL, a busy timeout, several connections.
async fn sqlite_pool(path: &std::path::Path) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10));
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .expect("open the SQLite file")
}

/// Defaults for tests: a lease longer than any test, quick backoff.
fn opts() -> QueueOptions {
    QueueOptions {
        lease: Duration::from_secs(30),
        max_attempts: 5,
        backoff_base: Duration::from_millis(200),
        backoff_cap: Duration::from_secs(1),
    }
}

fn short_lease() -> QueueOptions {
    QueueOptions {
        lease: Duration::from_secs(1),
        ..opts()
    }
}

fn image(name: &str) -> JobKind {
    JobKind::Refresh {
        image: format!("docker.io/test/{name}"),
        tag: None,
    }
}

fn tagged(name: &str, tag: &str) -> JobKind {
    JobKind::Refresh {
        image: format!("docker.io/test/{name}"),
        tag: Some(tag.to_string()),
    }
}

fn image_of(job: &ClaimedJob) -> String {
    match &job.kind {
        JobKind::Refresh { image, .. } => image.trim_start_matches("docker.io/test/").into(),
    }
}

async fn claim_image(q: &Queue, worker: &str) -> Option<String> {
    let job = q.claim(worker).await.unwrap()?;
    q.ack(&job).await.unwrap();
    Some(image_of(&job))
}

async fn sleep_until(at: DateTime<Utc>) {
    let wait = (at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(30)).await;
}

fn is_lease_lost<T: std::fmt::Debug>(r: Result<T, QueueError>) -> bool {
    matches!(r, Err(QueueError::LeaseLost { .. }))
}

// ---------------------------------------------------------------------------------------
// The suite: every function below runs once per backend (see `for_each_backend!` at the end).

async fn priority_order(env: Env) {
    let q = env.queue(opts()).await;
    for (name, p) in [("bg", Background), ("normal", Normal), ("urgent", Urgent)] {
        assert_eq!(
            q.enqueue(&image(name), p).await.unwrap(),
            EnqueueOutcome::Added
        );
    }
    let first = q.claim("w").await.unwrap().unwrap();
    assert_eq!(
        (image_of(&first).as_str(), first.priority),
        ("urgent", Urgent)
    );
    assert_eq!(first.attempt, 1);
    let age = Utc::now() - first.enqueued_at;
    assert!(age >= chrono::Duration::zero() && age < chrono::Duration::seconds(10));
    assert_eq!(claim_image(&q, "w").await.as_deref(), Some("normal"));
    assert_eq!(claim_image(&q, "w").await.as_deref(), Some("bg"));
    assert!(q.claim("w").await.unwrap().is_none());
}

async fn fifo_within_priority(env: Env) {
    let q = env.queue(opts()).await;
    let names: Vec<String> = (0..20).map(|i| format!("app{i:02}")).collect();
    for n in &names {
        q.enqueue(&image(n), Normal).await.unwrap();
    }
    let mut got = Vec::new();
    let mut ids = HashSet::new();
    while let Some(job) = q.claim("w").await.unwrap() {
        assert!(ids.insert(job.id.clone()), "ids are unique");
        got.push(image_of(&job));
    }
    assert_eq!(got, names);
}

async fn dedup_raises_priority_and_widens_the_job(env: Env) {
    let q = env.queue(opts()).await;
    use EnqueueOutcome::*;
    assert_eq!(q.enqueue(&image("x"), Background).await.unwrap(), Added);
    assert_eq!(
        q.enqueue(&image("x"), Background).await.unwrap(),
        AlreadyQueued
    );
    assert_eq!(q.enqueue(&image("y"), Urgent).await.unwrap(), Added);
    assert_eq!(q.enqueue(&image("x"), Urgent).await.unwrap(), Raised);
    // A lower priority never lowers it.
    assert_eq!(q.enqueue(&image("x"), Normal).await.unwrap(), AlreadyQueued);
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.depth[&Urgent], 2);
    assert_eq!(stats.depth[&Background], 0);
    assert_eq!(stats.enqueued_total, 2, "dedup hits are not arrivals");
    // x was queued first, so among the urgent jobs it comes first, at its new priority.
    let x = q.claim("w").await.unwrap().unwrap();
    assert_eq!((image_of(&x).as_str(), x.priority), ("x", Urgent));
    assert_eq!(x.kind, image("x"));
    assert_eq!(claim_image(&q, "w").await.as_deref(), Some("y"));

    // One pending job per image: two tags fold into a refresh of the whole repository...
    assert_eq!(q.enqueue(&tagged("z", "1"), Normal).await.unwrap(), Added);
    assert_eq!(
        q.enqueue(&tagged("z", "2"), Normal).await.unwrap(),
        AlreadyQueued
    );
    let z = q.claim("w").await.unwrap().unwrap();
    assert_eq!(z.kind, image("z"));
    // ...while the same tag twice stays a one-tag refresh.
    q.enqueue(&tagged("t", "1"), Normal).await.unwrap();
    q.enqueue(&tagged("t", "1"), Urgent).await.unwrap();
    let t = q.claim("w").await.unwrap().unwrap();
    assert_eq!((t.kind, t.priority), (tagged("t", "1"), Urgent));
}

async fn a_running_job_may_have_a_pending_twin(env: Env) {
    let q = env.queue(opts()).await;
    q.enqueue(&image("x"), Normal).await.unwrap();
    let running = q.claim("w1").await.unwrap().unwrap();
    // A push arrives while the refresh runs: it must not be swallowed by the running job.
    assert_eq!(
        q.enqueue(&image("x"), Normal).await.unwrap(),
        EnqueueOutcome::Added
    );
    assert_eq!(
        q.enqueue(&image("x"), Normal).await.unwrap(),
        EnqueueOutcome::AlreadyQueued
    );
    let twin = q.claim("w2").await.unwrap().unwrap();
    assert_eq!(image_of(&twin), "x");
    assert_ne!(twin.id, running.id);
    q.ack(&running).await.unwrap();
    q.ack(&twin).await.unwrap();
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.enqueued_total, stats.completed_total), (2, 2));
    assert_eq!(stats.in_flight, 0);
}

async fn delayed_jobs_wait_and_enqueue_takes_the_earlier_time(env: Env) {
    let q = env.queue(opts()).await;
    let soon = Utc::now() + chrono::Duration::milliseconds(400);
    let later = Utc::now() + chrono::Duration::minutes(10);
    q.enqueue_at(&image("x"), Normal, soon).await.unwrap();
    assert_eq!(
        q.enqueue_at(&image("x"), Normal, later).await.unwrap(),
        EnqueueOutcome::AlreadyQueued
    );
    q.enqueue_at(&image("z"), Background, later).await.unwrap();
    assert!(q.claim("w").await.unwrap().is_none(), "nothing is due yet");
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.delayed, stats.total_depth()), (2, 0));
    assert_eq!(stats.oldest_age_secs, None);

    // Enqueueing z now (at a higher priority) makes it due now.
    assert_eq!(
        q.enqueue(&image("z"), Normal).await.unwrap(),
        EnqueueOutcome::Raised
    );
    assert_eq!(claim_image(&q, "w").await.as_deref(), Some("z"));
    assert!(q.claim("w").await.unwrap().is_none());
    sleep_until(soon).await;
    assert_eq!(claim_image(&q, "w").await.as_deref(), Some("x"));
}

async fn an_expired_lease_lets_another_worker_claim(env: Env) {
    let a = env.queue(short_lease()).await;
    let b = env.queue(short_lease()).await;
    a.enqueue(&image("x"), Normal).await.unwrap();
    let t0 = tokio::time::Instant::now();
    let held = a.claim("a").await.unwrap().unwrap();
    assert!(b.claim("b").await.unwrap().is_none());
    // Renewing keeps it: at 0.6 s the lease moves to 1.6 s.
    tokio::time::sleep_until(t0 + Duration::from_millis(600)).await;
    assert!(a.renew(&held).await.unwrap());
    tokio::time::sleep_until(t0 + Duration::from_millis(1200)).await;
    assert!(b.claim("b").await.unwrap().is_none(), "renewed lease holds");
    assert_eq!(b.stats().await.unwrap().in_flight, 1);
    // Worker a "dies": once the lease has expired, b takes the job as attempt 2.
    tokio::time::sleep_until(t0 + Duration::from_millis(1750)).await;
    let taken = b
        .claim("b")
        .await
        .unwrap()
        .expect("expired job is reclaimed");
    assert_eq!(taken.id, held.id);
    assert_eq!(taken.attempt, 2, "an expired lease counts as an attempt");
    b.ack(&taken).await.unwrap();
}

async fn a_stale_ack_does_not_delete_the_reclaimed_job(env: Env) {
    let a = env.queue(short_lease()).await;
    let b = env.queue(short_lease()).await;
    a.enqueue(&image("x"), Normal).await.unwrap();
    let stale = a.claim("a").await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = b.claim("b").await.unwrap().unwrap();
    assert_eq!(fresh.id, stale.id);
    // Worker a wakes up and tries everything with its old claim: nothing changes.
    assert!(is_lease_lost(a.ack(&stale).await));
    assert!(!a.renew(&stale).await.unwrap());
    assert!(is_lease_lost(a.release(&stale).await));
    assert!(is_lease_lost(a.fail(&stale, "late").await));
    assert!(is_lease_lost(
        a.retry_at(&stale, Utc::now() + chrono::Duration::seconds(5))
            .await
    ));
    let stats = b.stats().await.unwrap();
    assert_eq!((stats.in_flight, stats.completed_total), (1, 0));
    assert!(b.renew(&fresh).await.unwrap());
    b.ack(&fresh).await.unwrap();
    let stats = b.stats().await.unwrap();
    assert_eq!((stats.in_flight, stats.completed_total), (0, 1));
    // A second ack of the same claim is stale too.
    assert!(is_lease_lost(b.ack(&fresh).await));
}

async fn leases_that_keep_expiring_end_in_the_dead_letter(env: Env) {
    let q = env
        .queue(QueueOptions {
            max_attempts: 2,
            ..short_lease()
        })
        .await;
    q.enqueue(&image("poison"), Urgent).await.unwrap();
    let first = q.claim("w").await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let second = q.claim("w").await.unwrap().unwrap();
    assert_eq!((second.id.as_str(), second.attempt), (first.id.as_str(), 2));
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.in_flight, stats.dead, stats.total_depth()),
        (0, 1, 0)
    );
    let dead = q.dead_jobs(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].attempts, dead[0].priority), (2, Urgent));
    assert!(
        dead[0].reason.contains("lease expired on attempt 2"),
        "{}",
        dead[0].reason
    );
}

async fn an_expired_job_folds_into_its_pending_twin(env: Env) {
    let q = env.queue(short_lease()).await;
    q.enqueue(&tagged("x", "1"), Normal).await.unwrap();
    let _lost = q.claim("w").await.unwrap().unwrap();
    q.enqueue(&tagged("x", "2"), Background).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.in_flight, 0);
    assert_eq!(stats.total_depth(), 1, "still one pending job per image");
    assert_eq!(stats.depth[&Normal], 1, "the twin took the higher priority");
    let job = q.claim("w").await.unwrap().unwrap();
    assert_eq!(job.kind, image("x"), "and covers both tags");
}

async fn release_puts_the_job_back_without_counting(env: Env) {
    let q = env.queue(opts()).await;
    q.enqueue(&image("x"), Normal).await.unwrap();
    let x = q.claim("w").await.unwrap().unwrap();
    q.enqueue(&image("y"), Normal).await.unwrap();
    q.release(&x).await.unwrap();
    assert!(is_lease_lost(q.ack(&x).await), "released means let go");
    let again = q.claim("w").await.unwrap().unwrap();
    assert_eq!(again.id, x.id, "a released job keeps its place in line");
    assert_eq!(again.attempt, 1, "release does not count the attempt");

    // Released while a twin is pending: folded into the twin, priority kept.
    q.enqueue(&image("x"), Background).await.unwrap();
    q.release(&again).await.unwrap();
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.depth[&Normal], 2, "x (folded, normal) and y");
    assert_eq!((stats.in_flight, stats.total_depth()), (0, 2));
    assert_eq!(claim_image(&q, "w").await.as_deref(), Some("x"));
    assert_eq!(claim_image(&q, "w").await.as_deref(), Some("y"));
    assert!(q.claim("w").await.unwrap().is_none());
}

async fn failures_back_off_then_dead_letter_with_the_reason(env: Env) {
    let q = env
        .queue(QueueOptions {
            max_attempts: 3,
            ..opts()
        })
        .await;
    q.enqueue(&image("x"), Normal).await.unwrap();
    for attempt in 1..=2u32 {
        let job = q.claim("w").await.unwrap().unwrap();
        assert_eq!(job.attempt, attempt);
        let before = Utc::now();
        let FailOutcome::Retry { at } = q.fail(&job, &format!("boom {attempt}")).await.unwrap()
        else {
            panic!("attempt {attempt} should be retried");
        };
        // base 200 ms * 2^(attempt-1), jittered between half and all of it.
        let nominal = 200 * 2i64.pow(attempt - 1);
        let delay = (at - before).num_milliseconds();
        assert!(
            (nominal / 2 - 20..=nominal + 50).contains(&delay),
            "attempt {attempt}: retry after {delay} ms"
        );
        assert!(q.claim("w").await.unwrap().is_none(), "not before {at}");
        let stats = q.stats().await.unwrap();
        assert_eq!((stats.delayed, stats.in_flight), (1, 0));
        sleep_until(at).await;
    }
    let last = q.claim("w").await.unwrap().unwrap();
    assert_eq!(last.attempt, 3);
    assert_eq!(
        q.fail(&last, "manifest unknown").await.unwrap(),
        FailOutcome::Dead
    );
    assert!(q.claim("w").await.unwrap().is_none());
    let dead = q.dead_jobs(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(
        (d.id.as_str(), &d.kind, d.priority, d.attempts),
        (last.id.as_str(), &image("x"), Normal, 3)
    );
    assert_eq!(d.reason, "manifest unknown");
    assert!((Utc::now() - d.failed_at).num_seconds() < 10);
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.dead, stats.delayed, stats.completed_total),
        (1, 0, 0)
    );
    // A dead job does not block a new one for the same image.
    assert_eq!(
        q.enqueue(&image("x"), Normal).await.unwrap(),
        EnqueueOutcome::Added
    );
    assert_eq!(q.dead_jobs(0).await.unwrap().len(), 0);
}

/// Dead letters older than the retention go; recent ones, pending and running jobs stay.
async fn old_dead_letters_are_purged_and_recent_ones_kept(env: Env) {
    let q = env
        .queue(QueueOptions {
            max_attempts: 1,
            ..opts()
        })
        .await;
    let kill = |name: &'static str| {
        let q = q.clone();
        async move {
            q.enqueue(&image(name), Normal).await.unwrap();
            let job = q.claim("w").await.unwrap().unwrap();
            assert_eq!(q.fail(&job, "gone").await.unwrap(), FailOutcome::Dead);
        }
    };
    kill("old").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    kill("recent").await;
    q.enqueue(&image("running"), Normal).await.unwrap();
    let running = q.claim("w").await.unwrap().unwrap();
    q.enqueue(&image("pending"), Normal).await.unwrap();

    assert_eq!(q.purge_dead(Duration::from_secs(3600)).await.unwrap(), 0);
    assert_eq!(q.purge_dead(Duration::from_millis(400)).await.unwrap(), 1);
    let dead = q.dead_jobs(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].kind, image("recent"));
    assert_eq!(q.stats().await.unwrap().dead, 1);

    assert_eq!(q.purge_dead(Duration::ZERO).await.unwrap(), 1);
    assert!(q.dead_jobs(10).await.unwrap().is_empty());
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.dead, stats.in_flight), (0, 1));
    // The running job can still be acknowledged, and the pending one claimed.
    q.ack(&running).await.unwrap();
    assert_eq!(claim_image(&q, "w").await.as_deref(), Some("pending"));
}

async fn retry_at_reschedules_without_counting_a_failure(env: Env) {
    let q = env
        .queue(QueueOptions {
            max_attempts: 1,
            ..opts()
        })
        .await;
    q.enqueue(&image("x"), Urgent).await.unwrap();
    let job = q.claim("w").await.unwrap().unwrap();
    let at = Utc::now() + chrono::Duration::milliseconds(300);
    q.retry_at(&job, at).await.unwrap();
    assert!(q.claim("w").await.unwrap().is_none());
    assert_eq!(q.stats().await.unwrap().delayed, 1);
    sleep_until(at).await;
    let again = q.claim("w").await.unwrap().unwrap();
    assert_eq!((again.id.as_str(), again.attempt), (job.id.as_str(), 1));
    assert_eq!(again.priority, Urgent);
    // With max_attempts 1 a real failure is final.
    assert_eq!(q.fail(&again, "gone").await.unwrap(), FailOutcome::Dead);
}

async fn stats_report_what_the_microscaler_needs(env: Env) {
    let q = env.queue(opts()).await;
    let empty = q.stats().await.unwrap();
    assert_eq!(empty.depth, Priority::ALL.iter().map(|p| (*p, 0)).collect());
    assert_eq!(
        (
            empty.delayed,
            empty.in_flight,
            empty.dead,
            empty.oldest_age_secs
        ),
        (0, 0, 0, None)
    );
    assert_eq!((empty.enqueued_total, empty.completed_total), (0, 0));

    q.enqueue(&image("a"), Background).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    for n in ["b", "c"] {
        q.enqueue(&image(n), Normal).await.unwrap();
    }
    q.enqueue(&image("d"), Urgent).await.unwrap();
    q.enqueue_at(
        &image("e"),
        Background,
        Utc::now() + chrono::Duration::hours(1),
    )
    .await
    .unwrap();
    q.enqueue(&image("a"), Background).await.unwrap(); // a dedup hit: not an arrival
    assert_eq!(claim_image(&q, "w").await.as_deref(), Some("d"));
    let b = q.claim("w").await.unwrap().unwrap();
    assert_eq!(image_of(&b), "b");
    let fragile = env
        .queue(QueueOptions {
            max_attempts: 1,
            ..opts()
        })
        .await;
    let c = fragile.claim("w").await.unwrap().unwrap();
    assert_eq!(fragile.fail(&c, "nope").await.unwrap(), FailOutcome::Dead);

    let s = q.stats().await.unwrap();
    let depth: BTreeMap<Priority, u64> = [(Urgent, 0), (Normal, 0), (Background, 1)].into();
    assert_eq!(s.depth, depth);
    assert_eq!((s.delayed, s.in_flight, s.dead), (1, 1, 1));
    assert_eq!((s.enqueued_total, s.completed_total), (5, 1));
    let age = s.oldest_age_secs.expect("a is due");
    assert!((0.15..30.0).contains(&age), "oldest age {age}");
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["depth"]["background"], 1);
    assert_eq!(json["in_flight"], 1);
}

async fn try_lock_is_exclusive_and_expires(env: Env) {
    let q = env.queue(opts()).await;
    let other = env.queue(opts()).await;
    let ttl = Duration::from_secs(5);
    assert!(q.try_lock("scheduler", "a", ttl).await.unwrap());
    assert!(!other.try_lock("scheduler", "b", ttl).await.unwrap());
    assert!(q.try_lock("scheduler", "a", ttl).await.unwrap(), "renewal");
    assert!(other.try_lock("another-lock", "b", ttl).await.unwrap());
    other.unlock("scheduler", "b").await.unwrap(); // not b's: ignored
    assert!(!other.try_lock("scheduler", "b", ttl).await.unwrap());
    q.unlock("scheduler", "a").await.unwrap();
    assert!(
        other
            .try_lock("scheduler", "b", Duration::from_millis(300))
            .await
            .unwrap()
    );
    assert!(!q.try_lock("scheduler", "a", ttl).await.unwrap());
    // b stops renewing (its process died): the lock is free once its TTL has passed.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(q.try_lock("scheduler", "a", ttl).await.unwrap());
    assert!(!other.try_lock("scheduler", "b", ttl).await.unwrap());
}

/// Every job claimed exactly once by `loops` concurrent claim loops over `queues` (round
/// robin); all jobs are enqueued first, so a loop stops at its first empty claim.
async fn claim_concurrently(queues: &[Queue], loops: usize, jobs: usize) {
    let producer = &queues[0];
    for i in 0..jobs {
        let p = Priority::ALL[i % 3];
        producer
            .enqueue(&image(&format!("job{i}")), p)
            .await
            .unwrap();
    }
    let seen = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for l in 0..loops {
        let q = queues[l % queues.len()].clone();
        let seen = seen.clone();
        tasks.spawn(async move {
            let worker = format!("w{l}");
            let mut mine = 0;
            while let Some(job) = q.claim(&worker).await.unwrap() {
                *seen.lock().await.entry(image_of(&job)).or_default() += 1;
                q.ack(&job).await.unwrap();
                mine += 1;
            }
            mine
        });
    }
    let per_loop: Vec<usize> = tasks.join_all().await;
    let seen = seen.lock().await;
    assert_eq!(seen.len(), jobs, "every job claimed");
    assert!(seen.values().all(|n| *n == 1), "no job claimed twice");
    assert_eq!(per_loop.iter().sum::<usize>(), jobs);
    let stats = producer.stats().await.unwrap();
    assert_eq!((stats.completed_total, stats.in_flight), (jobs as u64, 0));
}

async fn concurrent_claimers_never_share_a_job(env: Env) {
    let q = env.queue(opts()).await;
    claim_concurrently(&[q], 4, 200).await;
}

macro_rules! for_each_backend {
    ($($test:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(super::Env::embedded()).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(super::Env::redis()).await
                }
            )*
        }
    };
}

for_each_backend!(
    priority_order,
    fifo_within_priority,
    dedup_raises_priority_and_widens_the_job,
    a_running_job_may_have_a_pending_twin,
    delayed_jobs_wait_and_enqueue_takes_the_earlier_time,
    an_expired_lease_lets_another_worker_claim,
    a_stale_ack_does_not_delete_the_reclaimed_job,
    leases_that_keep_expiring_end_in_the_dead_letter,
    an_expired_job_folds_into_its_pending_twin,
    release_puts_the_job_back_without_counting,
    failures_back_off_then_dead_letter_with_the_reason,
    old_dead_letters_are_purged_and_recent_ones_kept,
    retry_at_reschedules_without_counting_a_failure,
    stats_report_what_the_microscaler_needs,
    try_lock_is_exclusive_and_expires,
    concurrent_claimers_never_share_a_job,
);

// ---------------------------------------------------------------------------------------
// Embedded only.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_two_pools_on_one_file_never_double_claim() {
    let env = Env::embedded();
    // Two pools on the same file, as two worker processes would have, two loops each.
    let queues = [env.queue(opts()).await, env.queue(opts()).await];
    claim_concurrently(&queues, 4, 300).await;
}

// ---------------------------------------------------------------------------------------
// Redis only.

/// Retries `op` until Redis answers (it fails while the server is down or reconnecting),
/// counting the failures in `errors`.
async fn until_ok<T, F, Fut>(errors: &AtomicUsize, what: &str, mut op: F) -> Result<T, QueueError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, QueueError>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match op().await {
            Err(QueueError::Redis(_)) if tokio::time::Instant::now() < deadline => {
                errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(QueueError::Redis(e)) => panic!("{what}: Redis still failing: {e}"),
            other => return other,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_graceful_restart_loses_no_job() {
    let mut env = Env::redis();
    let q = env.queue(opts()).await;
    for i in 0..100 {
        q.enqueue(&image(&format!("job{i}")), Priority::ALL[i % 3])
            .await
            .unwrap();
    }
    let mut done = HashSet::new();
    for _ in 0..10 {
        done.insert(claim_image(&q, "w").await.unwrap());
    }
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(q.claim("w").await.unwrap().unwrap());
    }

    env.redis_server().restart();
    assert_eq!(env.redis_server().starts(), 2);
    let errors = AtomicUsize::new(0);

    // The same handle reconnects by itself; claims held across the restart are still valid.
    for job in &held {
        until_ok(&errors, "ack", || q.ack(job)).await.unwrap();
        assert!(done.insert(image_of(job)));
    }
    while let Some(job) = until_ok(&errors, "claim", || q.claim("w")).await.unwrap() {
        q.ack(&job).await.unwrap();
        assert!(done.insert(image_of(&job)), "claimed twice: {}", job.id);
    }
    assert_eq!(done.len(), 100);
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.enqueued_total, stats.completed_total), (100, 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_and_restarted_mid_run_loses_no_acknowledged_job() {
    const JOBS: usize = 300;
    let mut env = Env::redis();
    let producer = env.queue(short_lease()).await;
    let consumer = env.queue(short_lease()).await;
    let enqueued = Arc::new(Mutex::new(HashSet::<String>::new()));
    let acked = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let errors = Arc::new(AtomicUsize::new(0));

    // A producer enqueues JOBS jobs, each retried until Redis acknowledges it.
    let produce = {
        let enqueued = enqueued.clone();
        let errors = errors.clone();
        tokio::spawn(async move {
            for i in 0..JOBS {
                let name = format!("job{i}");
                let kind = image(&name);
                until_ok(&errors, "enqueue", || producer.enqueue(&kind, Normal))
                    .await
                    .unwrap();
                enqueued.lock().await.insert(name);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    // A consumer claims and acks until every job is acked. A claim whose reply was lost in
    // the crash comes back when its (1 s) lease expires; an ack whose reply was lost is
    // retried and finds the lease gone, which means it was done.
    let consume = {
        let acked = acked.clone();
        let errors = errors.clone();
        tokio::spawn(async move {
            loop {
                if acked.lock().await.len() == JOBS {
                    break;
                }
                let Some(job) = until_ok(&errors, "claim", || consumer.claim("c"))
                    .await
                    .unwrap()
                else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                match until_ok(&errors, "ack", || consumer.ack(&job)).await {
                    Ok(()) | Err(QueueError::LeaseLost { .. }) => {}
                    Err(e) => panic!("ack: {e}"),
                }
                *acked.lock().await.entry(image_of(&job)).or_default() += 1;
            }
        })
    };

    // Crash Redis once a third of the jobs are in, then bring it back.
    while enqueued.lock().await.len() < JOBS / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    env.redis_server().kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    env.redis_server().restart();

    tokio::time::timeout(Duration::from_secs(30), produce)
        .await
        .expect("producer finishes")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), consume)
        .await
        .expect("consumer finishes")
        .unwrap();
    let enqueued = enqueued.lock().await;
    let acked = acked.lock().await;
    assert_eq!(enqueued.len(), JOBS);
    assert!(
        errors.load(Ordering::Relaxed) > 0,
        "the crash happened while the producer was running"
    );
    assert!(
        enqueued.iter().all(|n| acked.contains_key(n)),
        "every acknowledged enqueue was processed"
    );
    // Queue still healthy after the crash.
    let q = env.queue(opts()).await;
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.in_flight, stats.total_depth(), stats.delayed),
        (0, 0, 0)
    );
    assert!(
        env.redis_server()
            .log()
            .contains("DB loaded from append only file")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_prefixes_isolate_queues_and_keys_stay_under_them() {
    let env = Env::redis();
    let url = env.redis.as_ref().unwrap().url();
    let a = Queue::redis_with_prefix(&url, "test:a:", opts())
        .await
        .unwrap();
    let b = Queue::redis_with_prefix(&url, "test:b:", opts())
        .await
        .unwrap();
    assert_eq!(a.backend_name(), "redis");
    a.enqueue(&image("x"), Normal).await.unwrap();
    assert!(b.claim("w").await.unwrap().is_none());
    assert!(a.try_lock("l", "h", Duration::from_secs(5)).await.unwrap());
    assert!(
        b.try_lock("l", "other", Duration::from_secs(5))
            .await
            .unwrap()
    );
    let keys = env.redis.as_ref().unwrap().command(&["KEYS", "*"]).unwrap();
    let support::redis::Reply::Array(keys) = keys else {
        panic!("KEYS answered {keys:?}")
    };
    assert!(!keys.is_empty());
    for k in keys {
        let k = k.text();
        assert!(k.starts_with("test:a:") || k.starts_with("test:b:"), "{k}");
    }
}

#[tokio::test]
async fn redis_connection_errors_do_not_reveal_the_password() {
    let port = support::free_port();
    let err = Queue::redis(&format!("redis://:hunter2@127.0.0.1:{port}/"), opts())
        .await
        .expect_err("nothing listens there");
    assert!(matches!(err, QueueError::Redis(_)), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let err = Queue::redis("http://user:hunter2@[bad/", opts())
        .await
        .expect_err("not a Redis URL");
    assert!(matches!(err, QueueError::InvalidRedisUrl), "{err:?}");
    assert!(!err.to_string().contains("hunter2"));
}

#[tokio::test]
async fn embedded_backend_is_named() {
    let env = Env::embedded();
    assert_eq!(env.queue(opts()).await.backend_name(), "embedded");
}
