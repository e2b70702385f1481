//! The job queue: typed jobs with three priorities, one pending job per image, leases,
//! retries with backoff and jitter, a dead-letter state, and the figures the microscaler reads.
//!
//! Two backends behind one [`Queue`] with the same semantics (one test suite,
//! `tests/queue.rs`, runs against both):
//!
//! - [`Queue::embedded`]: tables in the SQLite store's file (`queue_jobs`, `queue_counters`,
//!   `queue_locks`, created here with `IF NOT EXISTS`). Every state change is one statement or
//!   one `BEGIN IMMEDIATE` transaction, so several worker *processes* sharing the file never
//!   claim the same job.
//! - [`Queue::redis`]: hashes and sorted sets under a key prefix, every operation one Lua
//!   script (atomic on the server, clocked by the server's `TIME`), over a
//!   [`redis::aio::ConnectionManager`] that reconnects after a Redis restart. No blocking
//!   commands: workers poll [`Queue::claim`].
//!
//! # Semantics
//! - **Order.** [`Queue::claim`] takes the highest priority first ([`Priority::Urgent`], then
//!   `Normal`, then `Background`; strict), and within a priority the job due first
//!   (`not_before`, then enqueue order). Delayed jobs are invisible until due.
//! - **Dedup.** At most one *pending* job per [`JobKind::dedup_key`] (one per image).
//!   Enqueueing it again raises its priority and takes the earlier `not_before`; if the two
//!   kinds differ, the pending job becomes [`JobKind::covering`] (a whole-repository refresh
//!   covers any one tag). A job that is *running* does not block a new pending twin: a push
//!   that arrives while its image is being refreshed must not be lost.
//! - **Leases.** A claim holds the job until `now + lease`; [`Queue::renew`] extends it. The
//!   operations that end a lease ([`Queue::ack`], [`Queue::release`], [`Queue::fail`],
//!   [`Queue::retry_at`]) check the claim's private lease token and return
//!   [`QueueError::LeaseLost`] when someone else holds the job now, so a stale ack never
//!   deletes the new holder's job. A lease that expired but was not yet taken over still
//!   counts as held.
//! - **Expired leases count as an attempt.** The claim that took the job counted it; when the
//!   lease expires (worker killed or stuck) the job goes back to pending with its attempt
//!   count unchanged, and the next claim is the next attempt. A job that kills its worker
//!   every time therefore reaches the dead-letter state ("lease expired on attempt N")
//!   instead of taking workers down forever. Graceful shutdown uses [`Queue::release`], which
//!   does not count the attempt. Expired leases are reclaimed by [`Queue::claim`] and
//!   [`Queue::stats`] (no separate reaper process).
//! - **Back to pending.** A released, retried or reclaimed job whose key has a pending twin is
//!   folded into the twin exactly as an enqueue would be (higher priority, earlier
//!   `not_before`), so the one-pending-job-per-key rule always holds.
//! - **Failures.** [`Queue::fail`] reschedules after `backoff_base * 2^(attempt-1)`, capped at
//!   `backoff_cap`, with "equal jitter" (uniformly between half and all of that), and
//!   dead-letters the job with its reason once `max_attempts` attempts have failed.
//!   [`Queue::retry_at`] reschedules without counting a failure (a registry's 429
//!   `Retry-After`).
//! - **At-least-once.** A job is deleted only by an ack with a valid lease token; jobs are
//!   typed, idempotent work (a refresh), so a rare second run is harmless.

mod embedded;
mod redis;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How urgent a job is. `Urgent` sorts first and is always taken first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// A person is waiting (an image asked for that is not known yet).
    Urgent,
    /// A registry webhook said the image changed.
    Normal,
    /// The hourly refresh.
    Background,
}

impl Priority {
    /// Every priority, in the order they are served.
    pub const ALL: [Priority; 3] = [Priority::Urgent, Priority::Normal, Priority::Background];

    /// 0 (urgent) to 2 (background), as stored by both backends.
    pub(crate) fn index(self) -> i64 {
        match self {
            Priority::Urgent => 0,
            Priority::Normal => 1,
            Priority::Background => 2,
        }
    }

    pub(crate) fn from_index(i: i64) -> Result<Priority, QueueError> {
        match i {
            0 => Ok(Priority::Urgent),
            1 => Ok(Priority::Normal),
            2 => Ok(Priority::Background),
            other => Err(QueueError::Corrupt(format!("priority {other}"))),
        }
    }

    /// `urgent`, `normal` or `background`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Urgent => "urgent",
            Priority::Normal => "normal",
            Priority::Background => "background",
        }
    }
}

/// What a job does. Serialized as JSON with a `type` tag, e.g.
/// `{"type":"refresh","image":"docker.io/library/nginx","tag":null}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobKind {
    /// Refresh one repository: every tag (`tag: None`) or one tag that a webhook named.
    Refresh {
        /// `registry/repository`, e.g. `docker.io/library/nginx`.
        image: String,
        tag: Option<String>,
    },
}

impl JobKind {
    /// The deduplication key: at most one pending job per key. One per image, whatever the
    /// tag, so the hourly refresh and a webhook for the same image never queue twice.
    pub fn dedup_key(&self) -> String {
        match self {
            JobKind::Refresh { image, .. } => format!("refresh:{image}"),
        }
    }

    /// The job that does the work of every kind sharing this [`dedup_key`](Self::dedup_key):
    /// what a pending job becomes when a different kind with the same key is folded into it.
    pub fn covering(&self) -> JobKind {
        match self {
            JobKind::Refresh { image, .. } => JobKind::Refresh {
                image: image.clone(),
                tag: None,
            },
        }
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a JobKind always serializes")
    }

    pub(crate) fn from_json(s: &str) -> Result<JobKind, QueueError> {
        serde_json::from_str(s).map_err(|e| QueueError::Corrupt(format!("job kind {s:?}: {e}")))
    }
}

/// Lease, retry and backoff settings (from [`crate::config::WorkerConfig`] in production).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOptions {
    /// How long a claim holds a job before another worker may take it (renew while working).
    pub lease: Duration,
    /// Attempts before a job is dead-lettered (an expired lease counts as an attempt).
    pub max_attempts: u32,
    /// Delay before the first retry; doubles with each failed attempt.
    pub backoff_base: Duration,
    /// Longest delay between retries.
    pub backoff_cap: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            lease: Duration::from_secs(60),
            max_attempts: 5,
            backoff_base: Duration::from_secs(5),
            backoff_cap: Duration::from_secs(3600),
        }
    }
}

impl QueueOptions {
    /// The options from the worker configuration; backoff keeps its defaults.
    pub fn from_config(worker: &crate::config::WorkerConfig) -> Self {
        QueueOptions {
            lease: worker.lease,
            max_attempts: worker.max_attempts.max(1),
            ..QueueOptions::default()
        }
    }

    /// Delay after failed attempt number `attempt` (1-based): `backoff_base * 2^(attempt-1)`,
    /// capped at `backoff_cap`, then "equal jitter": `jitter` in `[0, 1]` picks a point
    /// between half and all of it, so retries of jobs that failed together spread out while
    /// each still waits at least half the nominal delay. Pure, so it is unit-tested directly.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        let nominal = self
            .backoff_base
            .saturating_mul(1u32 << doublings)
            .min(self.backoff_cap);
        nominal.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    fn lease_ms(&self) -> i64 {
        duration_ms(self.lease).max(1)
    }

    fn max_attempts_i64(&self) -> i64 {
        i64::from(self.max_attempts.max(1))
    }

    /// The backoff for a failed attempt with a fresh random jitter, in milliseconds.
    fn jittered_backoff_ms(&self, attempt: u32) -> i64 {
        duration_ms(self.backoff(attempt, rand::random::<f64>()))
    }
}

/// A job a worker holds. Pass it back to [`Queue::renew`], [`Queue::ack`], [`Queue::release`],
/// [`Queue::fail`] or [`Queue::retry_at`]; they check its private lease token.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: String,
    pub kind: JobKind,
    pub priority: Priority,
    /// 1 on the first claim; a released or `retry_at` claim is not counted, an expired lease is.
    pub attempt: u32,
    /// When the job was first enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// Proves this claim still holds the lease.
    token: i64,
}

/// What [`Queue::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// A new pending job.
    Added,
    /// A pending job with the same key existed; it now has the higher priority given.
    Raised,
    /// A pending job with the same key and at least this priority existed (its `not_before`
    /// may have moved earlier).
    AlreadyQueued,
}

/// What [`Queue::fail`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// The job is pending again, due at `at` (earlier if it was folded into a pending twin).
    Retry { at: DateTime<Utc> },
    /// That was the last attempt: the job is in the dead-letter state with the reason.
    Dead,
}

/// The queue's figures for the microscaler and the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueStats {
    /// Pending jobs that are due, per priority (every priority present, zero included).
    pub depth: BTreeMap<Priority, u64>,
    /// Pending jobs not due yet (backoff, Retry-After, scheduled).
    pub delayed: u64,
    /// Jobs held by a worker under a live lease.
    pub in_flight: u64,
    /// Jobs in the dead-letter state.
    pub dead: u64,
    /// Seconds since the longest-waiting due job became due (`None` when nothing is due).
    pub oldest_age_secs: Option<f64>,
    /// Jobs ever added (monotonic; dedup hits are not counted): the arrival rate's source.
    pub enqueued_total: u64,
    /// Jobs ever acked (monotonic): the completion rate's source.
    pub completed_total: u64,
}

impl QueueStats {
    /// Due pending jobs over all priorities.
    pub fn total_depth(&self) -> u64 {
        self.depth.values().sum()
    }
}

/// A dead-lettered job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadJob {
    pub id: String,
    pub kind: JobKind,
    pub priority: Priority,
    pub attempts: u32,
    pub reason: String,
    pub failed_at: DateTime<Utc>,
}

/// Everything that can go wrong talking to the queue. Messages never carry URLs or passwords.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The SQLite file (embedded backend).
    #[error("queue database: {0}")]
    Database(#[from] sqlx::Error),
    /// Redis refused, timed out, or the connection dropped (it reconnects on the next call).
    #[error("queue redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// `MICROBADGER_REDIS_URL` could not be understood (the URL itself is not repeated).
    #[error("queue redis URL is not valid (expected redis://[user:password@]host[:port][/db])")]
    InvalidRedisUrl,
    /// The claim no longer holds the job: its lease expired and another worker took it, or
    /// it was already acked, released or failed. Nothing was changed.
    #[error("lease lost on job {id}: another worker holds it or it is finished")]
    LeaseLost { id: String },
    /// A stored job could not be read back (should not happen; names the bad value).
    #[error("queue data is corrupt: {0}")]
    Corrupt(String),
}

/// The job queue. Cheap to clone (a pool or a connection manager inside).
#[derive(Clone)]
pub struct Queue {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Embedded(embedded::Embedded),
    Redis(redis::RedisQueue),
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("backend", &self.backend_name())
            .finish_non_exhaustive()
    }
}

/// Key prefix of the Redis backend unless [`Queue::redis_with_prefix`] says otherwise.
pub const DEFAULT_REDIS_PREFIX: &str = "microbadger:queue:";

macro_rules! dispatch {
    ($self:ident, $b:ident => $e:expr) => {
        match &$self.backend {
            Backend::Embedded($b) => $e,
            Backend::Redis($b) => $e,
        }
    };
}

impl Queue {
    /// The queue in a SQLite file, beside the store. Creates its tables if missing. The pool
    /// should be in WAL mode with a busy timeout (as the store opens it).
    pub async fn embedded(pool: sqlx::SqlitePool, opts: QueueOptions) -> Result<Queue, QueueError> {
        Ok(Queue {
            backend: Backend::Embedded(embedded::Embedded::open(pool, opts).await?),
        })
    }

    /// The queue in Redis (`redis://[user:password@]host[:port][/db]`), keys under
    /// [`DEFAULT_REDIS_PREFIX`]. Connects now, and reconnects by itself later.
    pub async fn redis(url: &str, opts: QueueOptions) -> Result<Queue, QueueError> {
        Self::redis_with_prefix(url, DEFAULT_REDIS_PREFIX, opts).await
    }

    /// [`Queue::redis`] with another key prefix (several queues or test runs in one Redis).
    pub async fn redis_with_prefix(
        url: &str,
        prefix: &str,
        opts: QueueOptions,
    ) -> Result<Queue, QueueError> {
        Ok(Queue {
            backend: Backend::Redis(redis::RedisQueue::connect(url, prefix, opts).await?),
        })
    }

    /// `"embedded"` or `"redis"`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Embedded(_) => "embedded",
            Backend::Redis(_) => "redis",
        }
    }

    /// The lease, retry and backoff settings (a worker renews every `lease / 3` or so).
    pub fn options(&self) -> &QueueOptions {
        dispatch!(self, b => b.options())
    }

    /// Adds a job due now (or raises the pending one with the same key).
    pub async fn enqueue(
        &self,
        kind: &JobKind,
        priority: Priority,
    ) -> Result<EnqueueOutcome, QueueError> {
        dispatch!(self, b => b.enqueue(kind, priority, None).await)
    }

    /// Adds a job due at `not_before`. For an already pending key: the higher priority and
    /// the earlier `not_before` win.
    pub async fn enqueue_at(
        &self,
        kind: &JobKind,
        priority: Priority,
        not_before: DateTime<Utc>,
    ) -> Result<EnqueueOutcome, QueueError> {
        let at = not_before.timestamp_millis();
        dispatch!(self, b => b.enqueue(kind, priority, Some(at)).await)
    }

    /// Takes the next due job, or `None` at once when there is none (workers poll with a short
    /// sleep). Reclaims jobs whose lease expired first.
    pub async fn claim(&self, worker: &str) -> Result<Option<ClaimedJob>, QueueError> {
        dispatch!(self, b => b.claim(worker).await)
    }

    /// Extends the lease to `now + lease`; `false` when the lease is lost.
    pub async fn renew(&self, job: &ClaimedJob) -> Result<bool, QueueError> {
        dispatch!(self, b => b.renew(job).await)
    }

    /// The job is done: deletes it. [`QueueError::LeaseLost`] (and nothing deleted) if another
    /// claim holds it now.
    pub async fn ack(&self, job: &ClaimedJob) -> Result<(), QueueError> {
        dispatch!(self, b => b.ack(job).await)
    }

    /// Graceful shutdown: the job goes back to pending, due as before (so ahead of newer jobs
    /// of its priority), and this attempt is not counted.
    pub async fn release(&self, job: &ClaimedJob) -> Result<(), QueueError> {
        dispatch!(self, b => b.finish(job, Finish::Release).await).map(|_| ())
    }

    /// The attempt failed: retry after a jittered exponential backoff, or dead-letter the job
    /// with `reason` when this was attempt `max_attempts`.
    pub async fn fail(&self, job: &ClaimedJob, reason: &str) -> Result<FailOutcome, QueueError> {
        let finish = Finish::Fail {
            reason,
            backoff_ms: self.options().jittered_backoff_ms(job.attempt),
        };
        dispatch!(self, b => b.finish(job, finish).await)
    }

    /// Reschedules the job for `at` without counting a failure (e.g. a registry's 429
    /// `Retry-After`).
    pub async fn retry_at(&self, job: &ClaimedJob, at: DateTime<Utc>) -> Result<(), QueueError> {
        let finish = Finish::RetryAt(at.timestamp_millis());
        dispatch!(self, b => b.finish(job, finish).await).map(|_| ())
    }

    /// Depth per priority, delayed, in-flight and dead counts, oldest due age and the
    /// monotonic totals. Reclaims expired leases first, so a crashed worker's jobs show as
    /// depth, not in flight.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        dispatch!(self, b => b.stats().await)
    }

    /// The most recently dead-lettered jobs, newest first.
    pub async fn dead_jobs(&self, limit: i64) -> Result<Vec<DeadJob>, QueueError> {
        let limit = limit.max(0);
        if limit == 0 {
            return Ok(Vec::new());
        }
        dispatch!(self, b => b.dead_jobs(limit).await)
    }

    /// Deletes dead-lettered jobs that died more than `older_than` ago (by the backend's
    /// clock); returns how many. The scheduler calls it hourly with
    /// `MICROBADGER_DEAD_JOB_RETENTION_DAYS`, so dead letters are kept long enough to read
    /// (`dead_jobs`, the stats) without growing forever.
    pub async fn purge_dead(&self, older_than: Duration) -> Result<u64, QueueError> {
        let older_ms = duration_ms(older_than);
        dispatch!(self, b => b.purge_dead(older_ms).await)
    }

    /// A named lease-based lock so exactly one scheduler is active: true if `holder` now
    /// holds `name` until now+ttl (re-acquiring your own lock renews it).
    pub async fn try_lock(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, QueueError> {
        let ttl_ms = duration_ms(ttl).max(1);
        dispatch!(self, b => b.try_lock(name, holder, ttl_ms).await)
    }

    /// Lets go of `name` if `holder` holds it (otherwise does nothing).
    pub async fn unlock(&self, name: &str, holder: &str) -> Result<(), QueueError> {
        dispatch!(self, b => b.unlock(name, holder).await)
    }

    /// Announce that a repository (`registry/name`) changed, so web instances drop their cached
    /// renders of it at once: Redis pub/sub. With the embedded backend this does nothing; web
    /// instances follow the store's change sequence instead (they do with Redis too, as a
    /// safety net for a lost message).
    pub async fn publish_change(&self, repository: &str) -> Result<(), QueueError> {
        match &self.backend {
            Backend::Embedded(_) => Ok(()),
            Backend::Redis(r) => r.publish_change(repository).await,
        }
    }

    /// Where to subscribe for change announcements: (Redis URL, channel); `None` for the
    /// embedded backend.
    pub fn change_subscription(&self) -> Option<(String, String)> {
        match &self.backend {
            Backend::Embedded(_) => None,
            Backend::Redis(r) => Some((r.url().to_string(), r.change_channel())),
        }
    }
}

/// How a lease ends when the job is not done (shared by both backends).
#[derive(Debug, Clone, Copy)]
enum Finish<'a> {
    /// Back to pending with its old `not_before`; the attempt is not counted.
    Release,
    /// Back to pending due at this time (ms); the attempt is not counted.
    RetryAt(i64),
    /// A failed attempt: back to pending after `backoff_ms`, or dead after the last attempt.
    Fail { reason: &'a str, backoff_ms: i64 },
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn ms_to_datetime(ms: i64) -> Result<DateTime<Utc>, QueueError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| QueueError::Corrupt(format!("time {ms}")))
}

fn to_u32(v: i64, what: &str) -> Result<u32, QueueError> {
    u32::try_from(v).map_err(|_| QueueError::Corrupt(format!("{what} {v}")))
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nginx(tag: Option<&str>) -> JobKind {
        JobKind::Refresh {
            image: "docker.io/library/nginx".into(),
            tag: tag.map(str::to_string),
        }
    }

    #[test]
    fn jobs_are_tagged_json() {
        let json = nginx(Some("1.27")).to_json();
        assert_eq!(
            json,
            r#"{"type":"refresh","image":"docker.io/library/nginx","tag":"1.27"}"#
        );
        assert_eq!(JobKind::from_json(&json).unwrap(), nginx(Some("1.27")));
        assert!(matches!(
            JobKind::from_json(r#"{"type":"explode"}"#),
            Err(QueueError::Corrupt(_))
        ));
    }

    #[test]
    fn one_key_per_image_and_the_covering_job_refreshes_every_tag() {
        assert_eq!(nginx(None).dedup_key(), nginx(Some("1")).dedup_key());
        assert_eq!(nginx(Some("1")).covering(), nginx(None));
        let other = JobKind::Refresh {
            image: "ghcr.io/org/app".into(),
            tag: None,
        };
        assert_ne!(other.dedup_key(), nginx(None).dedup_key());
    }

    #[test]
    fn priorities_sort_urgent_first_and_serialize_lowercase() {
        let mut p = vec![Priority::Background, Priority::Urgent, Priority::Normal];
        p.sort();
        assert_eq!(p, Priority::ALL);
        assert_eq!(
            serde_json::to_string(&Priority::Background).unwrap(),
            "\"background\""
        );
        for p in Priority::ALL {
            assert_eq!(Priority::from_index(p.index()).unwrap(), p);
        }
        assert!(Priority::from_index(3).is_err());
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered_between_half_and_all() {
        let o = QueueOptions {
            backoff_base: Duration::from_secs(5),
            backoff_cap: Duration::from_secs(60),
            ..QueueOptions::default()
        };
        assert_eq!(o.backoff(1, 1.0), Duration::from_secs(5));
        assert_eq!(o.backoff(2, 1.0), Duration::from_secs(10));
        assert_eq!(o.backoff(4, 1.0), Duration::from_secs(40));
        assert_eq!(o.backoff(5, 1.0), Duration::from_secs(60));
        assert_eq!(o.backoff(1000, 1.0), Duration::from_secs(60));
        assert_eq!(o.backoff(1, 0.0), Duration::from_millis(2500));
        assert_eq!(o.backoff(3, 0.5), Duration::from_secs(15));
        // Out-of-range jitter is clamped; attempt 0 behaves like attempt 1.
        assert_eq!(o.backoff(0, 7.0), Duration::from_secs(5));
        for _ in 0..1000 {
            let ms = o.jittered_backoff_ms(3);
            assert!((10_000..=20_000).contains(&ms), "{ms}");
        }
    }

    #[test]
    fn stats_serialize_depth_by_priority_name() {
        let stats = QueueStats {
            depth: Priority::ALL.iter().map(|p| (*p, 1)).collect(),
            delayed: 0,
            in_flight: 2,
            dead: 0,
            oldest_age_secs: None,
            enqueued_total: 5,
            completed_total: 3,
        };
        let v = serde_json::to_value(&stats).unwrap();
        assert_eq!(v["depth"]["urgent"], 1);
        assert_eq!(v["depth"]["background"], 1);
        assert_eq!(stats.total_depth(), 3);
    }

    #[test]
    fn options_follow_the_worker_config() {
        let c = crate::config::Config::from_lookup(|_| None).unwrap();
        let o = QueueOptions::from_config(&c.worker);
        assert_eq!(o.lease, Duration::from_secs(60));
        assert_eq!(o.max_attempts, 5);
        assert_eq!(o, QueueOptions::default());
    }
}
