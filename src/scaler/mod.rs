//! The microscaler: sizes the `web` and `worker` pools by demand, with priorities on a shared
//! capacity ("hot bunking").
//!
//! Every tick the supervisor reads each service's demand ([`Observation`]), asks the control
//! law for a desired count ([`control`]), shares the capacity by priority ([`allocate`]), has
//! the orchestrator apply the counts ([`orchestrator`]) and records the [`Decision`] with its
//! inputs and every clamp applied. [`simulate`] runs the same control law and allocator, and
//! the HPA, KEDA and original Microscaling policies, in a deterministic closed loop.
//!
//! - [`control`] and [`allocate`] are pure (no I/O, no clock: time is passed in as seconds).
//! - [`simulate`] is pure and seeded.
//! - [`services`]: the service declarations (defaults, TOML file, environment).
//! - [`demand`]: reading observations from the queue and from web instances' published load.
//! - [`orchestrator`]: the trait, and the local-process backend used by `microbadger up`.
//! - [`supervisor`]: the loop, and the decision history behind `/v1/scaler` and `/scaler`.
//!
//! Units: every rate is per second and every duration is in seconds (`f64`), independent of
//! the tick length.

pub mod allocate;
pub mod control;
pub mod demand;
pub mod kubernetes;
pub mod orchestrator;
pub mod services;
pub mod simulate;
pub mod supervisor;

use serde::{Deserialize, Serialize};

/// What a service's demand is measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// In-flight requests per instance (the web tier). `target` is in-flight requests per
    /// instance.
    InFlight,
    /// Queue depth weighted by priority plus in-flight jobs (the worker tier). `target` is the
    /// backlog the service may carry (jobs waiting) before it is "over target".
    QueueDepth,
}

/// One scalable service, as declared in configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    /// Lower number wins.
    pub priority: u32,
    pub min: u32,
    pub max: u32,
    pub metric: MetricKind,
    pub target: f64,
    /// Capacity units one instance occupies (1 when capacity is counted in instances).
    pub units: u32,
    /// CPU one instance asks for, in millicores (0: not counted), when the capacity has CPU.
    #[serde(default)]
    pub cpu_millis: u64,
    /// Memory one instance asks for, in MiB (0: not counted), when the capacity has memory.
    #[serde(default)]
    pub memory_mib: u64,
    /// How to start one instance: program and arguments (`["microbadger", "web"]`).
    pub command: Vec<String>,
}

/// What the services share: capacity units and, optionally, CPU and memory. Instances are
/// counted by what they ask for (like Kubernetes resource requests); every dimension the
/// capacity has must fit. Nothing here limits what a process actually uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub units: u32,
    /// Millicores (None: CPU is not counted).
    pub cpu_millis: Option<u64>,
    /// MiB (None: memory is not counted).
    pub memory_mib: Option<u64>,
}

impl From<u32> for Capacity {
    /// A capacity counted in units only.
    fn from(units: u32) -> Capacity {
        Capacity {
            units,
            cpu_millis: None,
            memory_mib: None,
        }
    }
}

impl std::fmt::Display for Capacity {
    /// `6 units`, `6 units, 4000m CPU, 8192 MiB memory`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} units", self.units)?;
        if let Some(cpu) = self.cpu_millis {
            write!(f, ", {cpu}m CPU")?;
        }
        if let Some(mem) = self.memory_mib {
            write!(f, ", {mem} MiB memory")?;
        }
        Ok(())
    }
}

/// One service's state as seen at one tick: demand and instance counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Seconds since the supervisor (or simulation) started.
    pub now: f64,
    /// Demand metric now: total in-flight requests (web) or weighted due backlog (worker).
    pub backlog: f64,
    /// Work being served on instances, the part of `backlog` not waiting: jobs in progress
    /// for the worker, requests holding a slot for web (the web tier has no wait for a slot
    /// and publishes its in-flight count here too).
    pub in_service: f64,
    /// Arrivals per second over the last interval, if measured.
    pub arrival_rate: Option<f64>,
    /// Completions per second over the last interval, over all ready instances, if measured.
    pub completion_rate: Option<f64>,
    /// Instances serving.
    pub ready: u32,
    /// Instances started but not ready yet (count against capacity, not as service rate).
    pub starting: u32,
    /// Instances asked to stop and not gone yet (count against capacity).
    pub stopping: u32,
    /// False when the metric read failed or is stale: the controller holds.
    pub fresh: bool,
}

/// A limit applied between the raw control output and the count that was applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clamp {
    /// Short machine name: `tolerance`, `up_period`, `step`, `stabilization`, `down_minimum`,
    /// `rate`, `min`, `max`,
    /// `lifetime`, `capacity`, `preempted`, `waiting_for_stop`, `stale_hold`, `fallback`.
    pub kind: String,
    /// The count before this clamp.
    pub from: u32,
    /// The count after it.
    pub to: u32,
    /// One human sentence.
    pub why: String,
}

impl Clamp {
    pub fn new(kind: &str, from: u32, to: u32, why: String) -> Clamp {
        Clamp {
            kind: kind.to_string(),
            from,
            to,
            why,
        }
    }
}

/// `count` within the service's `min` and `max` (a `max` below the `min` counts as the
/// `min`), with the clamp applied recorded.
pub fn within_bounds(count: u32, spec: &ServiceSpec, clamps: &mut Vec<Clamp>) -> u32 {
    let (min, max) = (spec.min, spec.max.max(spec.min));
    if count < min {
        clamps.push(Clamp::new(
            "min",
            count,
            min,
            format!("the service's minimum is {min}"),
        ));
        min
    } else if count > max {
        clamps.push(Clamp::new(
            "max",
            count,
            max,
            format!("the service's maximum is {max}"),
        ));
        max
    } else {
        count
    }
}

/// One service's decision at one tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceDecision {
    pub service: String,
    pub observation: Observation,
    /// The control law's unclamped output (fractional instances).
    pub raw: f64,
    /// What the control law wants after its own damping.
    pub desired: u32,
    /// The part of `desired` needed now; the rest is held against churn and yields to other
    /// services' needs (`control::Proposal::needed`). `None` in records made before it
    /// existed.
    #[serde(default)]
    pub needed: Option<u32>,
    /// The part of `needed` the service cannot do without, served for every service before
    /// any need beyond it (`control::Proposal::essential`). `None` in records made before it
    /// existed.
    #[serde(default)]
    pub essential: Option<u32>,
    /// What the allocator granted (the orchestrator's new target).
    pub granted: u32,
    pub clamps: Vec<Clamp>,
}

/// Everything decided at one tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Unix seconds (wall clock) when it was made.
    pub at: f64,
    /// Capacity units.
    pub capacity: u32,
    /// CPU capacity in millicores, when counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_cpu_millis: Option<u64>,
    /// Memory capacity in MiB, when counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_memory_mib: Option<u64>,
    pub services: Vec<ServiceDecision>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decisions recorded before `needed` existed still load (it reads as unknown).
    #[test]
    fn a_decision_recorded_without_needed_still_loads() {
        let old = r#"{"service":"web","observation":{"now":1.0,"backlog":2.0,"in_service":1.0,
            "arrival_rate":null,"completion_rate":null,"ready":1,"starting":0,"stopping":0,
            "fresh":true},"raw":1.2,"desired":2,"granted":2,"clamps":[]}"#;
        let d: ServiceDecision = serde_json::from_str(old).unwrap();
        assert_eq!((d.desired, d.needed, d.granted), (2, None, 2));
        assert_eq!(d.essential, None);
        let again: ServiceDecision = serde_json::from_str(
            &serde_json::to_string(&ServiceDecision {
                needed: Some(1),
                essential: Some(1),
                ..d
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!((again.needed, again.essential), (Some(1), Some(1)));
    }
}
