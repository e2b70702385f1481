//! The embedded backend: three tables in the SQLite store's file.
//!
//! `queue_jobs` holds every job that is not finished: `state` is `pending` (due when
//! `not_before` has passed), `running` (held until `lease_until` by `lease_token`) or `dead`
//! (kept with its reason). Times are milliseconds since the Unix epoch. A partial unique index
//! on `dedup_key` over pending rows is the one-pending-job-per-key rule; a partial index on
//! `(priority, not_before, id)` over pending rows is the claim order, so a claim reads one
//! index entry. Triggers keep the monotonic totals in `queue_counters` in the same statement
//! as the insert or the ack. `queue_locks` holds the named leases of [`Queue::try_lock`].
//!
//! Concurrency: a claim is one `UPDATE ... WHERE id = (SELECT ... LIMIT 1) RETURNING`, which
//! SQLite runs under its single write lock, so claimers in other connections, pools or
//! processes never take the same row; multi-statement changes run in `BEGIN IMMEDIATE`
//! transactions (the write lock is taken up front, so the busy timeout applies instead of a
//! deadlock error on upgrade).
//!
//! [`Queue::try_lock`]: super::Queue::try_lock

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::Utc;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use super::{
    ClaimedJob, DeadJob, EnqueueOutcome, FailOutcome, Finish, JobKind, Priority, QueueError,
    QueueOptions, QueueStats, ms_to_datetime, to_u32, to_u64,
};

/// Creates the queue's tables, indexes and triggers when missing (idempotent; safe to run
/// from several processes at once).
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS queue_jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_key   TEXT    NOT NULL,
    kind        TEXT    NOT NULL,   -- JobKind as JSON
    cover_kind  TEXT    NOT NULL,   -- JobKind::covering() as JSON, used when kinds are folded
    priority    INTEGER NOT NULL,   -- 0 urgent, 1 normal, 2 background
    state       TEXT    NOT NULL,   -- pending | running | dead (| merged, transiently)
    not_before  INTEGER NOT NULL,   -- ms since the epoch
    enqueued_at INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    lease_token INTEGER,
    lease_until INTEGER,
    worker      TEXT,
    reason      TEXT,
    failed_at   INTEGER
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS queue_jobs_pending_key
    ON queue_jobs (dedup_key) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS queue_jobs_ready
    ON queue_jobs (priority, not_before, id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS queue_jobs_leases
    ON queue_jobs (lease_until) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS queue_jobs_dead
    ON queue_jobs (failed_at) WHERE state = 'dead';
CREATE TABLE IF NOT EXISTS queue_counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;
INSERT OR IGNORE INTO queue_counters (name, value) VALUES ('enqueued', 0), ('completed', 0);
CREATE TRIGGER IF NOT EXISTS queue_jobs_count_enqueued AFTER INSERT ON queue_jobs
BEGIN
    UPDATE queue_counters SET value = value + 1 WHERE name = 'enqueued';
END;
CREATE TRIGGER IF NOT EXISTS queue_jobs_count_completed AFTER DELETE ON queue_jobs
    WHEN OLD.state = 'running'
BEGIN
    UPDATE queue_counters SET value = value + 1 WHERE name = 'completed';
END;
CREATE TABLE IF NOT EXISTS queue_locks (
    name       TEXT PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
"#;

#[derive(Clone)]
pub(super) struct Embedded {
    pool: SqlitePool,
    opts: QueueOptions,
    /// Earliest time (ms) this handle looks for expired leases again; a cheap throttle so a
    /// busy claim loop does not probe on every call.
    next_reap_ms: Arc<AtomicI64>,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl Embedded {
    pub(super) async fn open(pool: SqlitePool, opts: QueueOptions) -> Result<Self, QueueError> {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::raw_sql(SCHEMA).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Embedded {
            pool,
            opts,
            next_reap_ms: Arc::new(AtomicI64::new(0)),
        })
    }

    pub(super) fn options(&self) -> &QueueOptions {
        &self.opts
    }

    pub(super) async fn enqueue(
        &self,
        kind: &JobKind,
        priority: Priority,
        not_before: Option<i64>,
    ) -> Result<EnqueueOutcome, QueueError> {
        let now = now_ms();
        let not_before = not_before.unwrap_or(now);
        let key = kind.dedup_key();
        let json = kind.to_json();
        let cover = kind.covering().to_json();
        let p = priority.index();
        // Each statement is atomic on its own; if the pending twin is claimed between two of
        // them, the next round inserts.
        loop {
            let inserted = sqlx::query(
                "INSERT INTO queue_jobs (dedup_key, kind, cover_kind, priority, state, not_before, \
                 enqueued_at) VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6) \
                 ON CONFLICT (dedup_key) WHERE state = 'pending' DO NOTHING",
            )
            .bind(&key)
            .bind(&json)
            .bind(&cover)
            .bind(p)
            .bind(not_before)
            .bind(now)
            .execute(&self.pool)
            .await?;
            if inserted.rows_affected() == 1 {
                return Ok(EnqueueOutcome::Added);
            }
            let raised = sqlx::query(
                "UPDATE queue_jobs SET priority = ?2, not_before = min(not_before, ?3), \
                 kind = CASE WHEN kind = ?4 THEN kind ELSE cover_kind END \
                 WHERE dedup_key = ?1 AND state = 'pending' AND priority > ?2",
            )
            .bind(&key)
            .bind(p)
            .bind(not_before)
            .bind(&json)
            .execute(&self.pool)
            .await?;
            if raised.rows_affected() == 1 {
                return Ok(EnqueueOutcome::Raised);
            }
            let kept = sqlx::query(
                "UPDATE queue_jobs SET not_before = min(not_before, ?2), \
                 kind = CASE WHEN kind = ?3 THEN kind ELSE cover_kind END \
                 WHERE dedup_key = ?1 AND state = 'pending'",
            )
            .bind(&key)
            .bind(not_before)
            .bind(&json)
            .execute(&self.pool)
            .await?;
            if kept.rows_affected() == 1 {
                return Ok(EnqueueOutcome::AlreadyQueued);
            }
        }
    }

    pub(super) async fn claim(&self, worker: &str) -> Result<Option<ClaimedJob>, QueueError> {
        let now = now_ms();
        self.reap(now, false).await?;
        let token: i64 = rand::random();
        let row = sqlx::query(
            "UPDATE queue_jobs SET state = 'running', attempts = attempts + 1, \
             lease_token = ?1, lease_until = ?2, worker = ?3 \
             WHERE id = (SELECT id FROM queue_jobs WHERE state = 'pending' AND not_before <= ?4 \
                         ORDER BY priority, not_before, id LIMIT 1) \
             RETURNING id, kind, priority, attempts, enqueued_at",
        )
        .bind(token)
        .bind(now + self.opts.lease_ms())
        .bind(worker)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| claimed(&r, token)).transpose()
    }

    /// Takes back jobs whose lease expired: dead-letters those that used their last attempt,
    /// returns the others to pending (folding them into a pending twin when their key has
    /// one). `force` skips the throttle (for stats).
    async fn reap(&self, now: i64, force: bool) -> Result<(), QueueError> {
        if !force && now < self.next_reap_ms.load(Ordering::Relaxed) {
            return Ok(());
        }
        let interval = (self.opts.lease_ms() / 10).clamp(1, 500);
        self.next_reap_ms.store(now + interval, Ordering::Relaxed);
        let any = sqlx::query(
            "SELECT 1 FROM queue_jobs WHERE state = 'running' AND lease_until < ?1 LIMIT 1",
        )
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        if any.is_none() {
            return Ok(());
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "UPDATE queue_jobs SET state = 'dead', \
             reason = 'lease expired on attempt ' || attempts || ' (worker lost or stuck)', \
             failed_at = ?1, lease_token = NULL, lease_until = NULL \
             WHERE state = 'running' AND lease_until < ?1 AND attempts >= ?2",
        )
        .bind(now)
        .bind(self.opts.max_attempts_i64())
        .execute(&mut *tx)
        .await?;
        // One expired job per key without a pending twin becomes pending...
        sqlx::query(
            "UPDATE queue_jobs SET state = 'pending', lease_token = NULL, lease_until = NULL, \
             worker = NULL \
             WHERE id IN (SELECT min(e.id) FROM queue_jobs AS e \
                          WHERE e.state = 'running' AND e.lease_until < ?1 \
                          AND NOT EXISTS (SELECT 1 FROM queue_jobs AS t \
                                          WHERE t.state = 'pending' AND t.dedup_key = e.dedup_key) \
                          GROUP BY e.dedup_key)",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // ...and every other expired job now has a pending twin to fold into.
        sqlx::query(
            "UPDATE queue_jobs AS t SET priority = min(t.priority, e.p), \
             not_before = min(t.not_before, e.nb), \
             kind = CASE WHEN e.kmin = t.kind AND e.kmax = t.kind THEN t.kind ELSE t.cover_kind END \
             FROM (SELECT dedup_key, min(priority) AS p, min(not_before) AS nb, \
                          min(kind) AS kmin, max(kind) AS kmax \
                   FROM queue_jobs WHERE state = 'running' AND lease_until < ?1 \
                   GROUP BY dedup_key) AS e \
             WHERE t.state = 'pending' AND t.dedup_key = e.dedup_key",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE queue_jobs SET state = 'merged' WHERE state = 'running' AND lease_until < ?1",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM queue_jobs WHERE state = 'merged'")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn renew(&self, job: &ClaimedJob) -> Result<bool, QueueError> {
        let id = row_id(job)?;
        let done = sqlx::query(
            "UPDATE queue_jobs SET lease_until = ?3 \
             WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
        )
        .bind(id)
        .bind(job.token)
        .bind(now_ms() + self.opts.lease_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn ack(&self, job: &ClaimedJob) -> Result<(), QueueError> {
        let id = row_id(job)?;
        // The completed counter is bumped by a trigger in the same statement.
        let done = sqlx::query(
            "DELETE FROM queue_jobs WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
        )
        .bind(id)
        .bind(job.token)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(lost(job))
        }
    }

    pub(super) async fn finish(
        &self,
        job: &ClaimedJob,
        how: Finish<'_>,
    ) -> Result<FailOutcome, QueueError> {
        let id = row_id(job)?;
        let now = now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(row) = sqlx::query(
            "SELECT dedup_key, kind, priority, not_before, attempts FROM queue_jobs \
             WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
        )
        .bind(id)
        .bind(job.token)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Err(lost(job));
        };
        let key: String = row.try_get(0)?;
        let kind: String = row.try_get(1)?;
        let priority: i64 = row.try_get(2)?;
        let old_not_before: i64 = row.try_get(3)?;
        let attempts: i64 = row.try_get(4)?;
        let (not_before, uncount) = match how {
            Finish::Release => (old_not_before, 1),
            Finish::RetryAt(at) => (at, 1),
            Finish::Fail { reason, .. } if attempts >= self.opts.max_attempts_i64() => {
                sqlx::query(
                    "UPDATE queue_jobs SET state = 'dead', reason = ?2, failed_at = ?3, \
                     lease_token = NULL, lease_until = NULL WHERE id = ?1",
                )
                .bind(id)
                .bind(reason)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(FailOutcome::Dead);
            }
            Finish::Fail { backoff_ms, .. } => (now + backoff_ms, 0),
        };
        // Fold into a pending twin when the key has one (as an enqueue would)...
        let twin = sqlx::query(
            "UPDATE queue_jobs SET priority = min(priority, ?2), not_before = min(not_before, ?3), \
             kind = CASE WHEN kind = ?4 THEN kind ELSE cover_kind END \
             WHERE dedup_key = ?1 AND state = 'pending' RETURNING not_before",
        )
        .bind(&key)
        .bind(priority)
        .bind(not_before)
        .bind(&kind)
        .fetch_optional(&mut *tx)
        .await?;
        let due = if let Some(twin) = twin {
            sqlx::query("UPDATE queue_jobs SET state = 'merged' WHERE id = ?1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM queue_jobs WHERE id = ?1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            twin.try_get(0)?
        } else {
            // ...or go back to pending itself.
            sqlx::query(
                "UPDATE queue_jobs SET state = 'pending', not_before = ?2, \
                 attempts = attempts - ?3, lease_token = NULL, lease_until = NULL, worker = NULL \
                 WHERE id = ?1",
            )
            .bind(id)
            .bind(not_before)
            .bind(uncount)
            .execute(&mut *tx)
            .await?;
            not_before
        };
        tx.commit().await?;
        Ok(FailOutcome::Retry {
            at: ms_to_datetime(due)?,
        })
    }

    pub(super) async fn stats(&self) -> Result<QueueStats, QueueError> {
        let now = now_ms();
        self.reap(now, true).await?;
        let row = sqlx::query(
            "SELECT \
             (SELECT count(*) FROM queue_jobs WHERE state = 'pending' AND priority = 0 AND not_before <= ?1), \
             (SELECT count(*) FROM queue_jobs WHERE state = 'pending' AND priority = 1 AND not_before <= ?1), \
             (SELECT count(*) FROM queue_jobs WHERE state = 'pending' AND priority = 2 AND not_before <= ?1), \
             (SELECT count(*) FROM queue_jobs WHERE state = 'pending' AND not_before > ?1), \
             (SELECT count(*) FROM queue_jobs WHERE state = 'running'), \
             (SELECT count(*) FROM queue_jobs WHERE state = 'dead'), \
             (SELECT min(not_before) FROM queue_jobs WHERE state = 'pending' AND not_before <= ?1), \
             (SELECT value FROM queue_counters WHERE name = 'enqueued'), \
             (SELECT value FROM queue_counters WHERE name = 'completed')",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        let n = |i: usize| -> Result<u64, QueueError> { Ok(to_u64(row.try_get::<i64, _>(i)?)) };
        let oldest: Option<i64> = row.try_get(6)?;
        Ok(QueueStats {
            depth: Priority::ALL
                .iter()
                .enumerate()
                .map(|(i, p)| Ok((*p, n(i)?)))
                .collect::<Result<_, QueueError>>()?,
            delayed: n(3)?,
            in_flight: n(4)?,
            dead: n(5)?,
            oldest_age_secs: oldest.map(|t| (now - t).max(0) as f64 / 1000.0),
            enqueued_total: n(7)?,
            completed_total: n(8)?,
        })
    }

    pub(super) async fn dead_jobs(&self, limit: i64) -> Result<Vec<DeadJob>, QueueError> {
        let rows = sqlx::query(
            "SELECT id, kind, priority, attempts, reason, failed_at FROM queue_jobs \
             WHERE state = 'dead' ORDER BY failed_at DESC, id DESC LIMIT ?1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeadJob {
                    id: r.try_get::<i64, _>(0)?.to_string(),
                    kind: JobKind::from_json(r.try_get(1)?)?,
                    priority: Priority::from_index(r.try_get(2)?)?,
                    attempts: to_u32(r.try_get(3)?, "attempts")?,
                    reason: r.try_get::<Option<String>, _>(4)?.unwrap_or_default(),
                    failed_at: ms_to_datetime(r.try_get::<Option<i64>, _>(5)?.unwrap_or(0))?,
                })
            })
            .collect()
    }

    pub(super) async fn purge_dead(&self, older_ms: i64) -> Result<u64, QueueError> {
        let cutoff = now_ms().saturating_sub(older_ms);
        let done = sqlx::query("DELETE FROM queue_jobs WHERE state = 'dead' AND failed_at < ?1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    pub(super) async fn try_lock(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<bool, QueueError> {
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO queue_locks (name, holder, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at \
             WHERE queue_locks.holder = excluded.holder OR queue_locks.expires_at <= ?4",
        )
        .bind(name)
        .bind(holder)
        .bind(now.saturating_add(ttl_ms))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn unlock(&self, name: &str, holder: &str) -> Result<(), QueueError> {
        sqlx::query("DELETE FROM queue_locks WHERE name = ?1 AND holder = ?2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn claimed(r: &SqliteRow, token: i64) -> Result<ClaimedJob, QueueError> {
    Ok(ClaimedJob {
        id: r.try_get::<i64, _>(0)?.to_string(),
        kind: JobKind::from_json(r.try_get(1)?)?,
        priority: Priority::from_index(r.try_get(2)?)?,
        attempt: to_u32(r.try_get(3)?, "attempts")?,
        enqueued_at: ms_to_datetime(r.try_get(4)?)?,
        token,
    })
}

/// The row id of a job this backend handed out (anything else cannot hold a lease here).
fn row_id(job: &ClaimedJob) -> Result<i64, QueueError> {
    job.id.parse().map_err(|_| lost(job))
}

fn lost(job: &ClaimedJob) -> QueueError {
    QueueError::LeaseLost { id: job.id.clone() }
}
