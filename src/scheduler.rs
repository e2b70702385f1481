//! The scheduler: every known repository is refreshed once per period (an hour by default),
//! spread evenly over the period, by exactly one active scheduler.
//!
//! Each repository carries its own `next_refresh_at` in the store. A new repository's first
//! slot is `now + offset`, where the offset is a hash of its name modulo the period, so a
//! thousand repositories added at once still spread over the hour. After a repository is
//! queued, its slot moves on by whole periods (keeping its phase), and that is written to the
//! store: a restarted scheduler continues where the old one stopped and never enqueues a
//! repository twice for one slot (and the queue's dedup absorbs the one crash window between
//! enqueueing and saving the slot).
//!
//! The active scheduler also deletes dead-lettered jobs older than the retention
//! (`MICROBADGER_DEAD_JOB_RETENTION_DAYS`), at its first tick as leader and hourly after.
//!
//! One active scheduler: a lease-based lock held through the queue backend (a row in the
//! SQLite file, or a key in Redis), renewed every tick; another scheduler takes over when the
//! holder stops renewing.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::queue::{JobKind, Priority, Queue};
use crate::store::Store;

/// The lock's name.
pub const LOCK_NAME: &str = "scheduler";
/// How often the scheduler looks for due repositories.
const TICK: Duration = Duration::from_secs(1);
/// The lock outlives a tick several times over, so one slow tick does not lose it.
const LOCK_TTL: Duration = Duration::from_secs(15);
/// Repositories queued per tick at most (the rest wait for the next tick).
const BATCH: i64 = 500;
/// How often the active scheduler purges old dead letters.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// The first refresh slot of a repository: `now` plus a stable offset within the period.
pub fn first_slot(
    registry: &str,
    name: &str,
    now: DateTime<Utc>,
    period: Duration,
) -> DateTime<Utc> {
    // FNV-1a: stable across processes and Rust versions, unlike the std hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in registry.bytes().chain([b'/']).chain(name.bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let period_ms = period.as_millis().max(1) as u64;
    now + TimeDelta::milliseconds((hash % period_ms) as i64)
}

/// The slot after `due`: whole periods later, strictly after `now`.
pub fn next_slot(due: DateTime<Utc>, now: DateTime<Utc>, period: Duration) -> DateTime<Utc> {
    let period = TimeDelta::from_std(period)
        .unwrap_or(TimeDelta::hours(1))
        .max(TimeDelta::milliseconds(1));
    let behind = (now - due).max(TimeDelta::zero());
    let periods = behind.num_milliseconds() / period.num_milliseconds() + 1;
    due + period * periods as i32
}

/// The scheduler loop.
pub struct Scheduler {
    pub store: Store,
    pub queue: Queue,
    pub period: Duration,
    /// Identifies this scheduler as the lock holder.
    pub holder: String,
    /// Dead-lettered jobs older than this are deleted; `None` keeps them.
    pub dead_job_retention: Option<Duration>,
}

impl Scheduler {
    /// Queue every due repository once; returns how many were queued. Does nothing (and
    /// returns `None`) when another scheduler holds the lock.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<Option<usize>, String> {
        let locked = self
            .queue
            .try_lock(LOCK_NAME, &self.holder, LOCK_TTL)
            .await
            .map_err(|e| e.to_string())?;
        if !locked {
            return Ok(None);
        }
        let due = self
            .store
            .repositories_due(now, BATCH)
            .await
            .map_err(|e| e.to_string())?;
        for repo in &due {
            let job = JobKind::Refresh {
                image: format!("{}/{}", repo.registry, repo.name),
                tag: None,
            };
            self.queue
                .enqueue(&job, Priority::Background)
                .await
                .map_err(|e| e.to_string())?;
            self.store
                .set_next_refresh(repo.id, next_slot(repo.next_refresh_at, now, self.period))
                .await
                .map_err(|e| e.to_string())?;
        }
        if !due.is_empty() {
            tracing::info!(queued = due.len(), "scheduled refreshes");
        }
        Ok(Some(due.len()))
    }

    /// Deletes dead-lettered jobs older than the retention; returns how many (`None` when
    /// the retention keeps them all).
    pub async fn purge_dead_jobs(&self) -> Result<Option<u64>, String> {
        let Some(retention) = self.dead_job_retention else {
            return Ok(None);
        };
        let purged = self
            .queue
            .purge_dead(retention)
            .await
            .map_err(|e| e.to_string())?;
        if purged > 0 {
            tracing::info!(
                purged,
                retention_secs = retention.as_secs(),
                "deleted old dead-lettered jobs"
            );
        }
        Ok(Some(purged))
    }

    /// Tick until `shutdown` resolves; then give the lock up so a successor starts at once.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut was_leader = false;
        let mut purged_at: Option<std::time::Instant> = None;
        loop {
            let ticked = self.tick(Utc::now()).await;
            if matches!(ticked, Ok(Some(_))) && purged_at.is_none_or(|t| t.elapsed() >= PURGE_EVERY)
            {
                purged_at = Some(std::time::Instant::now());
                if let Err(e) = self.purge_dead_jobs().await {
                    tracing::warn!(error = %e, "purging dead-lettered jobs failed");
                }
            }
            match ticked {
                Ok(Some(_)) if !was_leader => {
                    tracing::info!(holder = %self.holder, "this scheduler is active");
                    was_leader = true;
                }
                Ok(None) if was_leader => {
                    tracing::warn!(holder = %self.holder, "lost the scheduler lock");
                    was_leader = false;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "scheduler tick failed"),
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(TICK) => {}
            }
        }
        if was_leader {
            let _ = self.queue.unlock(LOCK_NAME, &self.holder).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn first_slots_spread_over_the_period() {
        let now = t("2026-01-01T00:00:00Z");
        let period = Duration::from_secs(3600);
        let mut buckets = [0usize; 4];
        for n in 0..1000 {
            let slot = first_slot("docker.io", &format!("team/app{n}"), now, period);
            let offset = (slot - now).num_seconds();
            assert!((0..3600).contains(&offset));
            buckets[(offset / 900) as usize] += 1;
        }
        // Each quarter hour gets roughly a quarter of the repositories.
        for b in buckets {
            assert!((200..300).contains(&b), "{buckets:?}");
        }
        assert_eq!(
            first_slot("docker.io", "a/b", now, period),
            first_slot("docker.io", "a/b", now, period),
            "stable"
        );
    }

    #[test]
    fn next_slot_keeps_phase_and_is_in_the_future() {
        let period = Duration::from_secs(3600);
        let due = t("2026-01-01T00:10:00Z");
        assert_eq!(
            next_slot(due, t("2026-01-01T00:10:00Z"), period),
            t("2026-01-01T01:10:00Z")
        );
        assert_eq!(
            next_slot(due, t("2026-01-01T00:10:01Z"), period),
            t("2026-01-01T01:10:00Z")
        );
        // Down for three hours: the next slot is the next one in phase, not three at once.
        assert_eq!(
            next_slot(due, t("2026-01-01T03:30:00Z"), period),
            t("2026-01-01T04:10:00Z")
        );
    }
}
