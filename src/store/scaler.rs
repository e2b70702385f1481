//! The microscaler's inputs and history: each web instance's published load, and every
//! decision the supervisor made.
//!
//! - `scaler_loads (instance PK, service, in_flight, requests_total, latency_micros_total,
//!   updated_at)`: one row per running instance, rewritten once a second by
//!   [`crate::scaler::demand::publish_web_load`] and read by
//!   [`crate::scaler::demand::DemandReader`]. The totals are monotonic for one instance id
//!   (a restarted process has a new id), so rates are differences between two readings of the
//!   same row. Latency is kept as whole microseconds, so both engines store an integer and
//!   give back the same value.
//! - `scaler_decisions (id PK, at, decision)`: the JSON of [`Decision`], read back whole by
//!   `/v1/scaler` and `/scaler`. Nothing filters on its contents, so a document is simpler than
//!   a table per clamp, and a field added to [`Decision`] needs no migration.
//!
//! Both tables prune themselves on write: decisions older than [`DECISIONS_KEPT`] before the
//! one written, and load rows not rewritten for [`LOADS_KEPT`] (an instance that crashed
//! without deleting its row). See `migrations/*/0003_scaler.sql`.

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

use super::db::Row;
use super::{Store, StoreError};
use crate::scaler::Decision;

/// How long decisions are kept (the dashboard charts the last hour).
pub const DECISIONS_KEPT: TimeDelta = TimeDelta::hours(1);
/// How long an instance's load row outlives its last write. Longer than any staleness
/// threshold the reader uses, so the reader can tell "stale" (held) from "gone" (ignored).
pub const LOADS_KEPT: TimeDelta = TimeDelta::seconds(60);

/// One instance's load as it last published it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceLoad {
    /// `hostname:pid` (plus `#n` for a second server in one process).
    pub instance: String,
    /// The service the instance belongs to (`web`).
    pub service: String,
    /// Requests being served at `updated_at`.
    pub in_flight: u64,
    /// Requests finished since the instance started (monotonic).
    pub requests_total: u64,
    /// Their summed latency, seconds (monotonic; whole microseconds).
    pub latency_seconds_total: f64,
    /// When the instance wrote this row (its clock; microsecond precision).
    pub updated_at: DateTime<Utc>,
}

impl InstanceLoad {
    fn from_row(row: &Row) -> Result<Self, StoreError> {
        let instance = row.text("instance")?;
        let count = |col: &str| -> Result<u64, StoreError> {
            let v = row.int(col)?;
            u64::try_from(v).map_err(|_| {
                StoreError::Corrupt(format!("load of {instance:?}: negative {col} {v}"))
            })
        };
        Ok(InstanceLoad {
            service: row.text("service")?,
            in_flight: count("in_flight")?,
            requests_total: count("requests_total")?,
            latency_seconds_total: count("latency_micros_total")? as f64 / 1e6,
            updated_at: row.time("updated_at")?,
            instance,
        })
    }
}

/// A count as a SQL integer (saturating: no counter here gets near `i64::MAX`).
fn sql_count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Unix seconds as a timestamp, truncated to microseconds.
fn timestamp(at: f64) -> Result<DateTime<Utc>, StoreError> {
    if !at.is_finite() {
        return Err(StoreError::Invalid(format!(
            "decision time {at} is not finite"
        )));
    }
    DateTime::from_timestamp_micros((at * 1e6).floor() as i64)
        .ok_or_else(|| StoreError::Invalid(format!("decision time {at} is out of range")))
}

impl Store {
    /// Writes an instance's load (replacing its previous row) and prunes the rows of
    /// instances silent for [`LOADS_KEPT`] before `load.updated_at`.
    pub async fn publish_load(&self, load: &InstanceLoad) -> Result<(), StoreError> {
        if load.instance.is_empty() || load.instance.len() > 256 {
            return Err(StoreError::Invalid(
                "an instance id must be 1 to 256 bytes".into(),
            ));
        }
        if load.service.is_empty() || load.service.len() > 64 {
            return Err(StoreError::Invalid(
                "a service name must be 1 to 64 bytes".into(),
            ));
        }
        let latency = load.latency_seconds_total;
        let latency_micros = if latency.is_finite() && latency > 0.0 {
            (latency * 1e6).round().min(i64::MAX as f64) as i64
        } else {
            0
        };
        let at = load.updated_at.trunc_subsecs(6);
        let mut conn = self.pool.acquire().await?;
        conn.exec()
            .execute(
                "INSERT INTO scaler_loads \
                   (instance, service, in_flight, requests_total, latency_micros_total, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (instance) DO UPDATE SET \
                   service = excluded.service, in_flight = excluded.in_flight, \
                   requests_total = excluded.requests_total, \
                   latency_micros_total = excluded.latency_micros_total, \
                   updated_at = excluded.updated_at",
                &[
                    load.instance.as_str().into(),
                    load.service.as_str().into(),
                    sql_count(load.in_flight).into(),
                    sql_count(load.requests_total).into(),
                    latency_micros.into(),
                    at.into(),
                ],
            )
            .await?;
        conn.exec()
            .execute(
                "DELETE FROM scaler_loads WHERE updated_at < $1",
                &[(at - LOADS_KEPT).into()],
            )
            .await?;
        Ok(())
    }

    /// Deletes an instance's row (it is stopping); `false` when there was none.
    pub async fn remove_load(&self, instance: &str) -> Result<bool, StoreError> {
        let n = self
            .pool
            .acquire()
            .await?
            .exec()
            .execute(
                "DELETE FROM scaler_loads WHERE instance = $1",
                &[instance.into()],
            )
            .await?;
        Ok(n > 0)
    }

    /// The loads of `service`'s instances written at or after `since`, by instance id.
    pub async fn loads(
        &self,
        service: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<InstanceLoad>, StoreError> {
        let rows = self
            .pool
            .acquire()
            .await?
            .exec()
            .fetch_all(
                "SELECT instance, service, in_flight, requests_total, latency_micros_total, \
                        updated_at \
                 FROM scaler_loads WHERE service = $1 AND updated_at >= $2 ORDER BY instance",
                &[service.into(), since.into()],
            )
            .await?;
        rows.iter().map(InstanceLoad::from_row).collect()
    }

    /// Records a decision and prunes those more than [`DECISIONS_KEPT`] older than it.
    pub async fn record_decision(&self, d: &Decision) -> Result<(), StoreError> {
        let at = timestamp(d.at)?;
        let json = serde_json::to_string(d)
            .map_err(|e| StoreError::Invalid(format!("decision is not JSON: {e}")))?;
        let mut conn = self.pool.acquire().await?;
        conn.exec()
            .execute(
                "INSERT INTO scaler_decisions (at, decision) VALUES ($1, $2)",
                &[at.into(), json.as_str().into()],
            )
            .await?;
        conn.exec()
            .execute(
                "DELETE FROM scaler_decisions WHERE at < $1",
                &[(at - DECISIONS_KEPT).into()],
            )
            .await?;
        Ok(())
    }

    /// Decisions made at or after `since` (unix seconds), oldest first (ties in the order
    /// they were recorded).
    pub async fn decisions_since(&self, since: f64) -> Result<Vec<Decision>, StoreError> {
        let since = if since.is_finite() {
            timestamp(since.max(0.0))?
        } else {
            DateTime::UNIX_EPOCH
        };
        let rows = self
            .pool
            .acquire()
            .await?
            .exec()
            .fetch_all(
                "SELECT id, decision FROM scaler_decisions WHERE at >= $1 ORDER BY at, id",
                &[since.into()],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let json = row.text("decision")?;
                serde_json::from_str(&json).map_err(|e| {
                    let id = row.int("id").unwrap_or(-1);
                    StoreError::Corrupt(format!("decision {id}: {e}"))
                })
            })
            .collect()
    }
}
