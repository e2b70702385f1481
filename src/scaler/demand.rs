//! Demand: what the `web` and `worker` services are being asked to do, read once a tick.
//!
//! - **Web.** Every web instance publishes its load once a second ([`publish_web_load`], spawned
//!   by [`crate::web::serve`]): requests in flight and two monotonic totals (requests finished,
//!   their summed latency), one row per instance in the store. The web observation is the sum
//!   of in-flight requests over the instances (the backlog; all of it is in service), the
//!   completion rate from each instance's `requests_total` differences, and the arrival rate
//!   as completions plus the change in in-flight requests (started = finished + in flight). Rates
//!   are computed per instance between two of its own rows, using the times the instance wrote
//!   them, so an instance joining or leaving never shows as a burst or a drop, and a read that
//!   lands between two writes changes nothing.
//! - **Worker.** The queue's own statistics: due jobs weighted by priority
//!   ([`PRIORITY_WEIGHTS`]) plus the jobs held by workers, the arrival rate from
//!   `enqueued_total` and the completion rate from `completed_total` differences between two
//!   reads (at the supervisor's `now`).
//!
//! A failed read, or a web instance whose row has not been rewritten for [`STALE_AFTER`],
//! gives an observation with `fresh == false` carrying the last good demand: the controller
//! holds, and never reads a missing metric as zero. An instance silent for [`GONE_AFTER`]
//! crashed without deleting its row (a stopping instance deletes it) and is no longer counted.
//! Staleness compares the rows' times with this process's clock, so instances on other
//! machines need synchronised clocks (NTP), as any metrics pipeline does.
//!
//! The rate arithmetic ([`CounterRate`], [`web_demand`], [`worker_demand`]) is pure and takes
//! time as a value; [`DemandReader`] adds the reads.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::Observation;
use crate::queue::{Priority, Queue, QueueStats};
use crate::store::{InstanceLoad, Store};
use crate::web::metrics::Metrics;

/// The web service's name, in observations and in the load rows its instances publish.
pub const WEB: &str = "web";
/// The worker service's name.
pub const WORKER: &str = "worker";

/// How often a web instance publishes its load.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);
/// A load row older than this (four missed publishes, or one write stuck behind SQLite's 5 s
/// busy timeout) is stale: the web observation is not fresh, and the controller holds.
pub const STALE_AFTER: TimeDelta = TimeDelta::seconds(5);
/// A load row older than this belongs to an instance that is gone (crashed without deleting
/// its row); it is ignored. Shorter than [`crate::store::LOADS_KEPT`], after which the store
/// prunes it.
pub const GONE_AFTER: TimeDelta = TimeDelta::seconds(30);

/// Weights of due jobs in the worker's backlog, per queue priority.
///
/// An URGENT job has a person waiting on an "inspecting" page, so it counts double and a
/// handful of them is enough to add a worker; NORMAL (webhook) jobs count once; BACKGROUND
/// jobs are the hourly refresh, spread over the hour and due whenever, so they count half and
/// a refresh wave fills idle workers rather than starting new ones. In-flight jobs count once.
pub const PRIORITY_WEIGHTS: [(Priority, f64); 3] = [
    (Priority::Urgent, 2.0),
    (Priority::Normal, 1.0),
    (Priority::Background, 0.5),
];

/// The weight of a due job of `priority` in the worker's backlog.
pub fn priority_weight(priority: Priority) -> f64 {
    PRIORITY_WEIGHTS
        .iter()
        .find(|(p, _)| *p == priority)
        .map_or(1.0, |(_, w)| *w)
}

/// This process's web instance id: `hostname:pid`, with `#2`, `#3`… for further servers in the
/// same process (tests run several).
pub fn instance_id() -> String {
    static SERVERS: AtomicU32 = AtomicU32::new(0);
    let n = SERVERS.fetch_add(1, Ordering::Relaxed);
    let base = crate::worker::worker_id();
    if n == 0 {
        base
    } else {
        format!("{base}#{}", n + 1)
    }
}

/// Publishes this web instance's load (`load.load.snapshot()`) as `instance` once a second,
/// until `stop` resolves; then deletes the instance's row, so the supervisor stops counting it
/// at once instead of seeing it go stale. A failed write is logged once per run of failures
/// and retried on the next second (the reader sees the row go stale and holds).
pub async fn publish_web_load(
    store: Store,
    instance: String,
    load: Arc<Metrics>,
    stop: impl Future,
) {
    let mut tick = tokio::time::interval(PUBLISH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = std::pin::pin!(stop);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        let snapshot = load.load.snapshot();
        let row = InstanceLoad {
            instance: instance.clone(),
            service: WEB.to_string(),
            in_flight: snapshot.in_flight,
            requests_total: snapshot.requests_total,
            latency_seconds_total: snapshot.latency_seconds_total,
            updated_at: Utc::now(),
        };
        match store.publish_load(&row).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!(%instance, "publishing web load again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(%instance, error = %e, "cannot publish web load; the microscaler holds web until it can");
            }
            Err(_) => {}
        }
    }
    if let Err(e) = store.remove_load(&instance).await {
        tracing::warn!(%instance, error = %e, "cannot remove this instance's load row; it goes stale and is ignored after {}s", GONE_AFTER.num_seconds());
    }
}

/// The rate of a monotonic counter between two readings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CounterRate {
    /// The last reading: (seconds, total).
    last: Option<(f64, u64)>,
    /// The rate computed from the last two readings that were apart in time.
    rate: Option<f64>,
}

impl CounterRate {
    /// Takes a reading of `total` at `t` seconds and returns the rate per second since the
    /// previous reading.
    ///
    /// - First reading: `None` (nothing to compare with).
    /// - Same time as the previous reading (the counter was not rewritten since): the previous
    ///   rate stands.
    /// - The counter went down, or time went back (a restarted counter, a clock step): the
    ///   reading becomes the new baseline and the rate is unknown (`None`) until the next one.
    pub fn update(&mut self, t: f64, total: u64) -> Option<f64> {
        match self.last {
            Some((t0, v0)) if t == t0 && total == v0 => self.rate,
            Some((t0, v0)) if t > t0 && total >= v0 => {
                let rate = (total - v0) as f64 / (t - t0);
                self.last = Some((t, total));
                self.rate = Some(rate);
                self.rate
            }
            _ => {
                self.last = Some((t, total));
                self.rate = None;
                None
            }
        }
    }

    /// The rate from the last update.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }
}

/// Rate state of one web instance: its previous row, and the rates from its last two rows
/// that were apart in time.
#[derive(Debug, Clone, Default)]
struct InstanceRates {
    /// (seconds, requests_total, in_flight).
    last: Option<(f64, u64, u64)>,
    /// (arrivals, completions) per second.
    rates: Option<(f64, f64)>,
}

impl InstanceRates {
    /// Completions are `requests_total` differences; arrivals are completions plus the change
    /// in in-flight requests (requests started = finished + in flight). The sum is not
    /// differenced as one counter because the instance reads its two counters one after the
    /// other: a request finishing between the reads is counted in both, so the sum can step
    /// back by one. Arrivals are therefore floored at zero, and only `requests_total` going
    /// back means a restarted counter.
    fn update(&mut self, t: f64, requests: u64, in_flight: u64) -> Option<(f64, f64)> {
        match self.last {
            Some((t0, r0, f0)) if t == t0 && requests == r0 && in_flight == f0 => self.rates,
            Some((t0, r0, f0)) if t > t0 && requests >= r0 => {
                let dt = t - t0;
                let done = (requests - r0) as f64;
                let started = (done + in_flight as f64 - f0 as f64).max(0.0);
                self.last = Some((t, requests, in_flight));
                self.rates = Some((started / dt, done / dt));
                self.rates
            }
            _ => {
                self.last = Some((t, requests, in_flight));
                self.rates = None;
                None
            }
        }
    }
}

/// The web service's rate state: one per instance seen at the last read.
#[derive(Debug, Clone, Default)]
pub struct WebRates {
    instances: BTreeMap<String, InstanceRates>,
}

/// Seconds since the Unix epoch, with microseconds.
fn unix_seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

/// The web observation from the load rows read at wall-clock time `wall` (the rows written
/// since `wall - GONE_AFTER`). Instance counts are left 0 for the caller.
///
/// `backlog` and `in_service` are the summed in-flight requests; the rates are the sums of the
/// instances' rates, and `None` while any counted instance has no rate yet (its first row, or
/// a restarted counter), because a partial sum would read as a drop in demand. `fresh` is
/// false when any row is older than [`STALE_AFTER`]: that instance's in-flight count may be
/// out of date (its last value is still counted).
pub fn web_demand(
    rates: &mut WebRates,
    rows: &[InstanceLoad],
    now: f64,
    wall: DateTime<Utc>,
) -> Observation {
    let live: Vec<&InstanceLoad> = rows
        .iter()
        .filter(|r| r.updated_at >= wall - GONE_AFTER)
        .collect();
    rates
        .instances
        .retain(|id, _| live.iter().any(|r| &r.instance == id));
    let mut backlog = 0u64;
    let mut arrival = Some(0.0);
    let mut completion = Some(0.0);
    let mut fresh = true;
    for row in &live {
        backlog += row.in_flight;
        if row.updated_at < wall - STALE_AFTER {
            fresh = false;
        }
        let t = unix_seconds(row.updated_at);
        let measured = rates
            .instances
            .entry(row.instance.clone())
            .or_default()
            .update(t, row.requests_total, row.in_flight);
        arrival = arrival.zip(measured).map(|(x, (a, _))| x + a);
        completion = completion.zip(measured).map(|(x, (_, c))| x + c);
    }
    if live.is_empty() {
        // No instance serving: nothing arrives at the web tier, and nothing completes.
        arrival = None;
        completion = None;
    }
    Observation {
        now,
        backlog: backlog as f64,
        in_service: backlog as f64,
        arrival_rate: arrival,
        completion_rate: completion,
        fresh,
        ..Observation::default()
    }
}

/// The worker service's rate state.
#[derive(Debug, Clone, Default)]
pub struct WorkerRates {
    enqueued: CounterRate,
    completed: CounterRate,
}

/// The worker observation from queue statistics read at `now` (seconds): due jobs weighted by
/// [`PRIORITY_WEIGHTS`] plus in-flight jobs as the backlog, in-flight jobs in service, and the
/// arrival and completion rates from the queue's monotonic totals. Instance counts are left 0.
pub fn worker_demand(rates: &mut WorkerRates, stats: &QueueStats, now: f64) -> Observation {
    let waiting: f64 = stats
        .depth
        .iter()
        .map(|(p, n)| priority_weight(*p) * *n as f64)
        .sum();
    Observation {
        now,
        backlog: waiting + stats.in_flight as f64,
        in_service: stats.in_flight as f64,
        arrival_rate: rates.enqueued.update(now, stats.enqueued_total),
        completion_rate: rates.completed.update(now, stats.completed_total),
        fresh: true,
        ..Observation::default()
    }
}

/// The last good observation, held (not fresh) at `now` after a failed read. Before any good
/// read there is nothing to hold: zero demand, not fresh, so the controller keeps what runs.
fn held(last: Option<&Observation>, now: f64) -> Observation {
    Observation {
        now,
        fresh: false,
        ..last.cloned().unwrap_or_default()
    }
}

/// Reads both services' demand each tick (see the module documentation).
pub struct DemandReader {
    store: Store,
    queue: Queue,
    web: WebRates,
    worker: WorkerRates,
    last_web: Option<Observation>,
    last_worker: Option<Observation>,
}

impl DemandReader {
    pub fn new(store: Store, queue: Queue) -> DemandReader {
        DemandReader {
            store,
            queue,
            web: WebRates::default(),
            worker: WorkerRates::default(),
            last_web: None,
            last_worker: None,
        }
    }

    /// One observation per service ([`WEB`], [`WORKER`]) at `now` (the supervisor's seconds),
    /// staleness judged by this process's clock. Instance counts are left 0 for the caller.
    pub async fn read(&mut self, now: f64) -> BTreeMap<String, Observation> {
        self.read_at(now, Utc::now()).await
    }

    /// [`read`](Self::read) with the wall clock given (tests).
    pub async fn read_at(
        &mut self,
        now: f64,
        wall: DateTime<Utc>,
    ) -> BTreeMap<String, Observation> {
        let (loads, stats) =
            tokio::join!(self.store.loads(WEB, wall - GONE_AFTER), self.queue.stats());
        let web = match loads {
            Ok(rows) => {
                let obs = web_demand(&mut self.web, &rows, now, wall);
                if obs.fresh {
                    self.last_web = Some(obs.clone());
                }
                obs
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read web load; holding web");
                held(self.last_web.as_ref(), now)
            }
        };
        let worker = match stats {
            Ok(stats) => {
                let obs = worker_demand(&mut self.worker, &stats, now);
                self.last_worker = Some(obs.clone());
                obs
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read queue statistics; holding worker");
                held(self.last_worker.as_ref(), now)
            }
        };
        BTreeMap::from([(WEB.to_string(), web), (WORKER.to_string(), worker)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wall(seconds: f64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(1_714_564_800_000_000 + (seconds * 1e6) as i64).unwrap()
    }

    fn row(instance: &str, in_flight: u64, requests: u64, written: f64) -> InstanceLoad {
        InstanceLoad {
            instance: instance.into(),
            service: WEB.into(),
            in_flight,
            requests_total: requests,
            latency_seconds_total: 0.0,
            updated_at: wall(written),
        }
    }

    fn stats(
        urgent: u64,
        normal: u64,
        background: u64,
        in_flight: u64,
        enq: u64,
        done: u64,
    ) -> QueueStats {
        QueueStats {
            depth: BTreeMap::from([
                (Priority::Urgent, urgent),
                (Priority::Normal, normal),
                (Priority::Background, background),
            ]),
            delayed: 9,
            in_flight,
            dead: 4,
            oldest_age_secs: Some(3.0),
            enqueued_total: enq,
            completed_total: done,
        }
    }

    #[test]
    fn counter_rate_differences_over_time() {
        let mut c = CounterRate::default();
        assert_eq!(c.update(10.0, 100), None, "first reading");
        assert_eq!(c.update(12.0, 110), Some(5.0));
        // Read again before the counter was rewritten: the rate stands.
        assert_eq!(c.update(12.0, 110), Some(5.0));
        assert_eq!(c.update(12.5, 110), Some(0.0), "idle is a real zero");
        assert_eq!(c.update(13.0, 111), Some(2.0));
        // A counter that went back (restarted) re-baselines: unknown, then measured again.
        assert_eq!(c.update(14.0, 3), None);
        assert_eq!(c.rate(), None);
        assert_eq!(c.update(15.0, 7), Some(4.0));
        // Time that went back (a clock step) re-baselines too.
        assert_eq!(c.update(1.0, 8), None);
        assert_eq!(c.update(3.0, 12), Some(2.0));
        // Same time, different total: not a rate (division by zero); re-baseline.
        assert_eq!(c.update(3.0, 13), None);
    }

    #[test]
    fn web_demand_sums_instances_and_rates_per_instance() {
        let mut rates = WebRates::default();
        let first = web_demand(
            &mut rates,
            &[row("a", 2, 100, 0.0), row("b", 1, 50, 0.5)],
            7.0,
            wall(1.0),
        );
        assert_eq!(first.now, 7.0);
        assert_eq!(first.backlog, 3.0);
        assert_eq!(first.in_service, 3.0);
        assert_eq!(first.arrival_rate, None, "no instance has two rows yet");
        assert_eq!(first.completion_rate, None);
        assert!(first.fresh);
        assert_eq!((first.ready, first.starting, first.stopping), (0, 0, 0));

        // a: 2 s later, 20 finished, in-flight 2 -> 5: 23 started in 2 s.
        // b: 1 s later, 3 finished, in-flight 1 -> 0: 2 started in 1 s.
        let second = web_demand(
            &mut rates,
            &[row("a", 5, 120, 2.0), row("b", 0, 53, 1.5)],
            8.0,
            wall(2.1),
        );
        assert_eq!(second.backlog, 5.0);
        assert_eq!(second.completion_rate, Some(10.0 + 3.0));
        assert_eq!(second.arrival_rate, Some(11.5 + 2.0));

        // A new instance joins: its totals are not a burst; the sum is unknown for one read
        // rather than partial.
        let third = web_demand(
            &mut rates,
            &[
                row("a", 5, 130, 3.0),
                row("b", 0, 53, 2.5),
                row("c", 1, 9000, 3.0),
            ],
            9.0,
            wall(3.1),
        );
        assert_eq!(third.backlog, 6.0);
        assert_eq!(third.completion_rate, None);
        let fourth = web_demand(
            &mut rates,
            &[
                row("a", 5, 140, 4.0),
                row("b", 0, 53, 3.5),
                row("c", 0, 9002, 4.0),
            ],
            10.0,
            wall(4.1),
        );
        assert_eq!(fourth.completion_rate, Some(10.0 + 0.0 + 2.0));
        assert_eq!(fourth.arrival_rate, Some(10.0 + 0.0 + 1.0));

        // Counters read one after the other: a request finishing between the two reads is
        // in both (in-flight 5 -> 3 while 1 finished): arrivals are floored at zero, not a
        // reset.
        let jitter = web_demand(
            &mut rates,
            &[
                row("a", 3, 141, 5.0),
                row("b", 0, 53, 4.5),
                row("c", 0, 9002, 5.0),
            ],
            10.5,
            wall(5.1),
        );
        assert_eq!(jitter.arrival_rate, Some(0.0));
        assert_eq!(jitter.completion_rate, Some(1.0));
        // An instance that left (its row deleted) is forgotten: no drop is computed from it,
        // and if it comes back with the same id its counters start over.
        let fifth = web_demand(&mut rates, &[row("a", 1, 151, 6.0)], 11.0, wall(6.1));
        assert_eq!(fifth.backlog, 1.0);
        assert_eq!(fifth.completion_rate, Some(10.0));
        assert_eq!(fifth.arrival_rate, Some(8.0));
        assert!(!rates.instances.contains_key("b"));
    }

    #[test]
    fn a_restarted_instance_counter_is_a_new_baseline() {
        let mut r = InstanceRates::default();
        assert_eq!(r.update(0.0, 10, 1), None);
        assert_eq!(r.update(1.0, 14, 2), Some((5.0, 4.0)));
        assert_eq!(
            r.update(1.0, 14, 2),
            Some((5.0, 4.0)),
            "same row read twice"
        );
        assert_eq!(r.update(2.0, 3, 0), None, "requests_total went back");
        assert_eq!(r.update(4.0, 7, 2), Some((3.0, 2.0)));
    }

    #[test]
    fn stale_rows_make_web_not_fresh_and_gone_rows_are_ignored() {
        let mut rates = WebRates::default();
        // Written 5 s ago: still fresh (the limit is inclusive).
        let ok = web_demand(&mut rates, &[row("a", 4, 10, 0.0)], 1.0, wall(5.0));
        assert!(ok.fresh);
        // 6 s: stale. Its last in-flight count is still counted, never zero.
        let stale = web_demand(
            &mut rates,
            &[row("a", 4, 10, 0.0), row("b", 1, 1, 5.5)],
            2.0,
            wall(6.0),
        );
        assert!(!stale.fresh);
        assert_eq!(stale.backlog, 5.0);
        // 31 s: gone (crashed without deleting its row): ignored, and fresh again.
        let gone = web_demand(
            &mut rates,
            &[row("a", 4, 10, 0.0), row("b", 1, 2, 30.5)],
            3.0,
            wall(31.0),
        );
        assert!(gone.fresh);
        assert_eq!(gone.backlog, 1.0);
        assert!(!rates.instances.contains_key("a"));
    }

    #[test]
    fn no_web_instances_is_fresh_zero_demand_with_unknown_rates() {
        let obs = web_demand(&mut WebRates::default(), &[], 4.0, wall(0.0));
        assert!(obs.fresh);
        assert_eq!(obs.backlog, 0.0);
        assert_eq!(obs.arrival_rate, None);
        assert_eq!(obs.completion_rate, None);
    }

    #[test]
    fn worker_backlog_is_weighted_by_priority_plus_in_flight() {
        assert_eq!(priority_weight(Priority::Urgent), 2.0);
        assert_eq!(priority_weight(Priority::Normal), 1.0);
        assert_eq!(priority_weight(Priority::Background), 0.5);
        let mut rates = WorkerRates::default();
        let first = worker_demand(&mut rates, &stats(3, 4, 10, 2, 100, 80), 10.0);
        // 3*2 + 4*1 + 10*0.5 + 2 in flight; delayed and dead jobs are not demand.
        assert_eq!(first.backlog, 17.0);
        assert_eq!(first.in_service, 2.0);
        assert_eq!(first.arrival_rate, None);
        assert_eq!(first.completion_rate, None);
        assert!(first.fresh);
        assert_eq!(first.now, 10.0);
        let second = worker_demand(&mut rates, &stats(0, 0, 0, 0, 130, 120), 14.0);
        assert_eq!(second.backlog, 0.0);
        assert_eq!(second.arrival_rate, Some(7.5));
        assert_eq!(second.completion_rate, Some(10.0));
        // The tick length does not matter: the same traffic over 2 s is the same rate.
        let third = worker_demand(&mut rates, &stats(0, 0, 0, 0, 145, 140), 16.0);
        assert_eq!(third.arrival_rate, Some(7.5));
        assert_eq!(third.completion_rate, Some(10.0));
    }

    #[test]
    fn held_observations_keep_the_last_demand_and_are_not_fresh() {
        let last = Observation {
            now: 1.0,
            backlog: 12.0,
            in_service: 3.0,
            arrival_rate: Some(2.0),
            completion_rate: Some(1.0),
            fresh: true,
            ..Observation::default()
        };
        let h = held(Some(&last), 9.0);
        assert_eq!(h.now, 9.0);
        assert!(!h.fresh);
        assert_eq!(h.backlog, 12.0);
        assert_eq!(h.arrival_rate, Some(2.0));
        let nothing = held(None, 9.0);
        assert!(!nothing.fresh);
        assert_eq!(nothing.backlog, 0.0);
    }

    #[test]
    fn instance_ids_are_unique_in_one_process() {
        let a = instance_id();
        let b = instance_id();
        assert_ne!(a, b);
        assert!(a.contains(&format!(":{}", std::process::id())));
    }
}
