//! The scaling policies the simulator compares. Each gives a desired count per service; every
//! one of them then goes through our allocator on the shared capacity.
//!
//! - `ours`: the real [`Controller`] with [`ControlParams::default`] (or `simulate --config`'s
//!   `[control]` table), every 0.5 s tick.
//! - `hpa`: Kubernetes HPA (autoscaling/v2) defaults: a sync every 15 s,
//!   `desired = ceil(current × metric / target)` skipped when within the 0.1 tolerance, the
//!   scale-down stabilization window of 300 s (highest recommendation; the count at the first
//!   sync is its first recommendation, as `recordInitialRecommendation` does), the scale-up policy
//!   `max(100 %, 4 pods)` per 15 s, min/max. Web's metric is in-flight requests per instance
//!   against the service's target; the worker's is the backlog as an `AverageValue`
//!   external metric with [`QUEUE_TARGET_PER_REPLICA`] jobs per replica (KEDA's default
//!   `listLength`), i.e. `desired = ceil(backlog / 5)`.
//! - `keda`: the same HPA fed by KEDA: the metric is polled every 30 s and the HPA acts on the
//!   last polled value; `desired = ceil(metric / target per replica)`; a 300 s cooldown
//!   before going to zero (our minimums are 1, so it does not bind here).
//! - `microscaling`: the original Microscaling Engine's Queue rule (reference notes 4.1-4.3):
//!   `ideal = running + ⌊kP·(q − T) + kD·(q − q_prev) + 0.5⌋` with kP 0.04 and kD 1.25 per
//!   0.5 s sample, scale-up only when `q > T`, scale-down only when `q ≤ ⌊0.7·T⌋`, MaxDelta =
//!   max − min, min/max, and no action while `running != requested` (act only when settled;
//!   `running` is the ready instances). Web's `q` is total in-flight and its `T` is target ×
//!   requested instances. Its own allocation pass is replaced by ours.
//! - `schedule`: a fixed plan of counts read from a CSV ([`super::schedule`]), whatever the
//!   load: KEDA's cron scaler, an operator's plan, or a schedule written knowing the demand
//!   (a bound on what any policy could do). Not part of `--policy all`: it needs its file.

use std::collections::VecDeque;

use serde::Serialize;

use crate::scaler::control::{ControlParams, Controller};
use crate::scaler::{MetricKind, Observation, ServiceSpec};

use super::schedule::{Schedule, count_at};

/// HPA/KEDA target per replica for the queue (KEDA's default `listLength`).
pub const QUEUE_TARGET_PER_REPLICA: f64 = 5.0;
/// HPA sync period, seconds.
pub const HPA_SYNC: f64 = 15.0;
/// HPA tolerance.
pub const HPA_TOLERANCE: f64 = 0.1;
/// HPA default scale-down stabilization window, seconds.
pub const HPA_DOWN_WINDOW: f64 = 300.0;
/// KEDA polling interval, seconds.
pub const KEDA_POLL: f64 = 30.0;
/// KEDA cooldown before scaling to zero, seconds.
pub const KEDA_COOLDOWN: f64 = 300.0;
/// Microscaling's proportional gain per sample.
pub const MICRO_KP: f64 = 0.04;
/// Microscaling's derivative gain per sample.
pub const MICRO_KD: f64 = 1.25;

/// A scaling policy by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    Ours,
    Hpa,
    Keda,
    Microscaling,
    Schedule,
}

impl Policy {
    pub const ALL: [Policy; 4] = [
        Policy::Ours,
        Policy::Hpa,
        Policy::Keda,
        Policy::Microscaling,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Policy::Ours => "ours",
            Policy::Hpa => "hpa",
            Policy::Keda => "keda",
            Policy::Microscaling => "microscaling",
            Policy::Schedule => "schedule",
        }
    }

    /// A policy by name; `schedule` too, which [`Policy::ALL`] leaves out.
    pub fn parse(name: &str) -> Option<Policy> {
        Policy::ALL
            .into_iter()
            .chain([Policy::Schedule])
            .find(|p| p.name() == name)
    }
}

/// One service's policy state.
#[derive(Debug)]
pub enum ServicePolicy {
    Ours(Box<Controller>),
    Hpa(Hpa),
    Micro(Micro),
    /// The service's steps from a schedule (none: it keeps the count it starts with).
    Scheduled(Vec<(f64, u32)>),
}

impl ServicePolicy {
    pub fn new(
        policy: Policy,
        spec: &ServiceSpec,
        control: &ControlParams,
        schedule: Option<&Schedule>,
    ) -> ServicePolicy {
        match policy {
            Policy::Schedule => ServicePolicy::Scheduled(
                schedule
                    .and_then(|s| s.steps(&spec.name))
                    .map(<[_]>::to_vec)
                    .unwrap_or_default(),
            ),
            Policy::Ours => ServicePolicy::Ours(Box::new(Controller::new(spec, control.clone()))),
            Policy::Hpa => ServicePolicy::Hpa(Hpa::new(spec, None)),
            Policy::Keda => ServicePolicy::Hpa(Hpa::new(spec, Some(KEDA_POLL))),
            Policy::Microscaling => ServicePolicy::Micro(Micro::new(spec)),
        }
    }

    /// The desired count at this supervisor tick, the part of it needed now and the part of
    /// that which is essential (see [`crate::scaler::control::Proposal::needed`] and
    /// `essential`; the other policies have no such distinction: all they want is needed and
    /// essential); `target` is the count currently applied.
    pub fn desired(&mut self, obs: &Observation, target: u32) -> (u32, u32, u32) {
        match self {
            ServicePolicy::Ours(c) => {
                let p = c.propose(obs);
                (p.desired, p.needed, p.essential)
            }
            ServicePolicy::Hpa(h) => {
                let d = h.desired(obs, target);
                (d, d, d)
            }
            ServicePolicy::Micro(m) => {
                let d = m.desired(obs, target);
                (d, d, d)
            }
            ServicePolicy::Scheduled(steps) => {
                let d = count_at(steps, obs.now).unwrap_or(target);
                (d, d, d)
            }
        }
    }

    /// What the allocator granted and the orchestrator was asked for.
    pub fn applied(&mut self, now: f64, target: u32) {
        match self {
            ServicePolicy::Ours(c) => c.applied(now, target),
            ServicePolicy::Hpa(_) | ServicePolicy::Scheduled(_) => {}
            ServicePolicy::Micro(m) => m.requested = target,
        }
    }
}

/// The HPA loop, optionally fed by a KEDA poll.
#[derive(Debug)]
pub struct Hpa {
    min: u32,
    max: u32,
    per_replica: f64,
    poll: Option<f64>,
    polled: Option<(f64, f64)>,
    next_sync: f64,
    desired: Option<u32>,
    recommendations: VecDeque<(f64, u32)>,
    last_active: f64,
}

impl Hpa {
    fn new(spec: &ServiceSpec, poll: Option<f64>) -> Hpa {
        let per_replica = match spec.metric {
            MetricKind::InFlight => spec.target,
            MetricKind::QueueDepth => QUEUE_TARGET_PER_REPLICA,
        };
        Hpa {
            min: spec.min,
            max: spec.max.max(spec.min),
            per_replica,
            poll,
            polled: None,
            next_sync: 0.0,
            desired: None,
            recommendations: VecDeque::new(),
            last_active: f64::NEG_INFINITY,
        }
    }

    fn desired(&mut self, obs: &Observation, current: u32) -> u32 {
        let now = obs.now;
        // KEDA's poll: the metric the HPA sees is the last polled one.
        let metric = match self.poll {
            None => obs.backlog,
            Some(every) => match self.polled {
                Some((at, value)) if now < at + every => value,
                _ => {
                    self.polled = Some((now, obs.backlog));
                    obs.backlog
                }
            },
        };
        if metric > 0.0 {
            self.last_active = now;
        }
        if now + 1e-9 < self.next_sync {
            return self.desired.unwrap_or(current);
        }
        self.next_sync = now + HPA_SYNC;
        let ideal = (metric.max(0.0) / self.per_replica - 1e-9).ceil().max(0.0) as u32;
        let mut rec = if current > 0 {
            let ratio = metric / (self.per_replica * f64::from(current));
            if (ratio - 1.0).abs() <= HPA_TOLERANCE {
                current
            } else {
                ideal
            }
        } else {
            ideal
        };
        rec = rec.clamp(self.min, self.max);
        // KEDA's cooldown: not to zero while there was activity within it.
        if self.poll.is_some() && rec == 0 && now - self.last_active < KEDA_COOLDOWN {
            rec = 1;
        }
        if self.desired.is_none() {
            // The controller's `recordInitialRecommendation`: the current count is the first
            // recommendation, so nothing is scaled down before one window has passed.
            self.recommendations.push_back((now, current));
        }
        while let Some(&(t, _)) = self.recommendations.front() {
            if t < now - HPA_DOWN_WINDOW {
                self.recommendations.pop_front();
            } else {
                break;
            }
        }
        self.recommendations.push_back((now, rec));
        let mut desired = rec;
        if desired < current {
            let highest = self
                .recommendations
                .iter()
                .map(|&(_, r)| r)
                .max()
                .unwrap_or(desired);
            desired = highest.min(current);
        } else if desired > current {
            let limit = (current * 2).max(current + 4);
            desired = desired.min(limit);
        }
        self.desired = Some(desired);
        desired
    }
}

/// The original Microscaling Queue rule with its settle guard.
#[derive(Debug)]
pub struct Micro {
    min: u32,
    max: u32,
    metric: MetricKind,
    target: f64,
    q_prev: Option<f64>,
    requested: u32,
}

impl Micro {
    fn new(spec: &ServiceSpec) -> Micro {
        Micro {
            min: spec.min,
            max: spec.max.max(spec.min),
            metric: spec.metric,
            target: spec.target,
            q_prev: None,
            requested: 0,
        }
    }

    fn desired(&mut self, obs: &Observation, current: u32) -> u32 {
        self.requested = current;
        let q = obs.backlog;
        let t = match self.metric {
            MetricKind::QueueDepth => self.target,
            MetricKind::InFlight => self.target * f64::from(self.requested.max(1)),
        };
        // The controller state advances every tick, even when the task is skipped.
        let mut delta = MICRO_KP * (q - t);
        if let Some(prev) = self.q_prev {
            delta += MICRO_KD * (q - prev);
        }
        self.q_prev = Some(q);
        let delta = (delta + 0.5).floor() as i64;
        let running = obs.ready;
        if running != self.requested {
            return self.requested;
        }
        let ideal = i64::from(running) + delta;
        let requested = i64::from(self.requested);
        let (min, max) = (i64::from(self.min), i64::from(self.max));
        let max_delta = max - min;
        let d = if q > t {
            let mut d = (ideal - requested).max(0);
            if requested + d < min {
                d = min - requested;
            }
            if requested + d > max {
                d = max - requested;
            }
            d.min(max_delta)
        } else if q <= (0.7 * t).floor() {
            let mut d = (ideal - requested).min(0);
            if requested + d < min {
                d = min - requested;
            }
            if requested + d > max {
                d = max - requested;
            }
            d.max(-max_delta)
        } else {
            0
        };
        (requested + d).clamp(0, max) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> ServiceSpec {
        crate::scaler::simulate::web_spec(16)
    }

    fn obs(now: f64, in_flight: f64, ready: u32) -> Observation {
        Observation {
            now,
            backlog: in_flight,
            in_service: in_flight,
            arrival_rate: None,
            completion_rate: None,
            ready,
            starting: 0,
            stopping: 0,
            fresh: true,
        }
    }

    #[test]
    fn hpa_counts_the_starting_replicas_as_its_first_recommendation() {
        // Nothing in flight at the first sync: HPA recommends the minimum, but the window
        // holds the 4 it found (Kubernetes' recordInitialRecommendation) for 300 s.
        let mut h = Hpa::new(&web(), None);
        assert_eq!(h.desired(&obs(0.0, 0.0, 4), 4), 4);
        assert_eq!(h.desired(&obs(15.0, 0.0, 4), 4), 4);
        assert_eq!(h.desired(&obs(285.0, 0.0, 4), 4), 4);
        assert_eq!(h.desired(&obs(300.0, 0.0, 4), 4), 4);
        assert_eq!(h.desired(&obs(315.0, 0.0, 4), 4), 1);
    }

    #[test]
    fn hpa_syncs_every_15_s_with_its_tolerance_and_scale_up_limit() {
        let mut h = Hpa::new(&web(), None);
        // 3.2 per replica against 3: within 10%, no change.
        assert_eq!(h.desired(&obs(0.0, 6.4, 2), 2), 2);
        // Between syncs the last answer stands.
        assert_eq!(h.desired(&obs(7.0, 60.0, 2), 2), 2);
        // 60 in flight wants 20: at most max(2 × 2, 2 + 4) = 6 in one sync.
        assert_eq!(h.desired(&obs(15.0, 60.0, 2), 2), 6);
        // Then 12 (2 × 6), then the maximum of 16.
        assert_eq!(h.desired(&obs(30.0, 60.0, 6), 6), 12);
        assert_eq!(h.desired(&obs(45.0, 60.0, 12), 12), 16);
    }
}
