//! The microscaler's loop: every tick, read demand, fill in instance counts from the
//! orchestrator, ask each service's [`Controller`] for a desired count, share the capacity
//! with [`allocate`], have the orchestrator apply the grants, and record the [`Decision`]
//! with its inputs and every clamp.
//!
//! Time: `Observation::now` is seconds since the supervisor started (tokio's clock, so tests
//! may pause it); `Decision::at` is wall-clock unix seconds for the history.
//!
//! The history is written when a grant changed, and otherwise at most once a second (the
//! dashboard charts an hour; a row per 0.5 s tick would double the writes for no detail).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::allocate::{Request, allocate};
use super::control::{ControlParams, Controller};
use super::orchestrator::{BoxFuture, Orchestrator};
use super::services::{ControlOverrides, Services};
use super::{Decision, Observation, ServiceDecision};
use crate::store::Store;

/// Where observations come from: [`super::demand::DemandReader`] in production.
pub trait DemandSource: Send {
    /// One observation per service name; a service missing from the map is treated as a
    /// failed read (`fresh == false`: the controller holds).
    fn read(&mut self, now: f64) -> BoxFuture<'_, BTreeMap<String, Observation>>;
}

impl DemandSource for super::demand::DemandReader {
    fn read(&mut self, now: f64) -> BoxFuture<'_, BTreeMap<String, Observation>> {
        Box::pin(super::demand::DemandReader::read(self, now))
    }
}

/// The control parameters with the configuration's overrides applied.
pub fn control_params(o: &ControlOverrides) -> ControlParams {
    let mut p = ControlParams::default();
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = o.$field { p.$field = v; } )* };
    }
    set!(
        tolerance,
        drain_time,
        scale_down_window,
        max_step_up,
        scale_down_rate,
        scale_down_period,
        scale_up_period,
        min_lifetime,
        ewma_half_life,
        initial_service_rate,
        ready_timeout,
        fallback_after,
        in_flight_z,
        queue_over_target,
        scale_down_min_fraction,
        up_hysteresis,
        drain_aim,
        yield_after,
        essential_z,
        essential_over_target,
        essential_window
    );
    if o.fallback.is_some() {
        p.fallback = o.fallback;
    }
    p
}

/// The loop's state.
pub struct Supervisor {
    services: Services,
    controllers: Vec<Controller>,
    orchestrator: Arc<dyn Orchestrator>,
    store: Store,
    started: tokio::time::Instant,
    last_recorded: Option<tokio::time::Instant>,
    last_grants: Vec<u32>,
}

impl Supervisor {
    pub fn new(
        services: Services,
        orchestrator: Arc<dyn Orchestrator>,
        store: Store,
    ) -> Supervisor {
        let params = control_params(&services.control);
        let controllers = services
            .services
            .iter()
            .map(|d| Controller::new(&d.spec, params.clone()))
            .collect();
        Supervisor {
            services,
            controllers,
            orchestrator,
            store,
            started: tokio::time::Instant::now(),
            last_recorded: None,
            last_grants: Vec::new(),
        }
    }

    /// Seconds since the supervisor started.
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Start every service's minimum at once (the first tick would too, but only after a
    /// demand read).
    pub async fn start_minimums(&mut self) {
        let now = self.now();
        for (d, c) in self.services.services.iter().zip(&mut self.controllers) {
            if let Err(e) = self.orchestrator.scale(&d.spec.name, d.spec.min).await {
                tracing::error!(service = %d.spec.name, error = %e, "starting the minimum failed");
            }
            c.applied(now, d.spec.min);
        }
    }

    /// One decision: read, decide, allocate, apply, record. Returns what was decided.
    pub async fn tick(&mut self, demand: &mut dyn DemandSource) -> Decision {
        let now = self.now();
        let mut observed = demand.read(now).await;
        let mut observations = Vec::with_capacity(self.services.services.len());
        let mut proposals = Vec::with_capacity(self.services.services.len());
        for (d, c) in self.services.services.iter().zip(&mut self.controllers) {
            let mut obs = observed.remove(&d.spec.name).unwrap_or(Observation {
                fresh: false,
                ..Observation::default()
            });
            let counts = self.orchestrator.counts(&d.spec.name);
            obs.now = now;
            obs.ready = counts.ready;
            obs.starting = counts.starting;
            obs.stopping = counts.stopping;
            proposals.push(c.propose(&obs));
            observations.push(obs);
        }
        let requests: Vec<Request> = self
            .services
            .services
            .iter()
            .zip(&observations)
            .zip(&proposals)
            .map(|((d, o), p)| Request {
                spec: &d.spec,
                desired: p.desired,
                needed: p.needed,
                essential: p.essential,
                ready: o.ready,
                starting: o.starting,
                stopping: o.stopping,
            })
            .collect();
        let grants = allocate(self.services.shared(), &requests);
        let mut decided = Vec::with_capacity(grants.len());
        for (((d, c), obs), (proposal, grant)) in self
            .services
            .services
            .iter()
            .zip(&mut self.controllers)
            .zip(observations)
            .zip(proposals.into_iter().zip(grants))
        {
            if let Err(e) = self.orchestrator.scale(&d.spec.name, grant.target).await {
                tracing::error!(service = %d.spec.name, target = grant.target, error = %e, "scaling failed");
            }
            c.applied(now, grant.target);
            let mut clamps = proposal.clamps;
            clamps.extend(grant.clamps);
            decided.push(ServiceDecision {
                service: d.spec.name.clone(),
                observation: obs,
                raw: proposal.raw,
                desired: proposal.desired,
                needed: Some(proposal.needed),
                essential: Some(proposal.essential),
                granted: grant.target,
                clamps,
            });
        }
        let decision = Decision {
            at: unix_now(),
            capacity: self.services.capacity,
            capacity_cpu_millis: self.services.cpu_millis,
            capacity_memory_mib: self.services.memory_mib,
            services: decided,
        };
        self.record(&decision).await;
        decision
    }

    async fn record(&mut self, decision: &Decision) {
        let grants: Vec<u32> = decision.services.iter().map(|s| s.granted).collect();
        let due = self
            .last_recorded
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if grants == self.last_grants && !due {
            return;
        }
        if grants != self.last_grants {
            let summary: Vec<String> = decision
                .services
                .iter()
                .map(|s| {
                    let clamps: Vec<&str> = s.clamps.iter().map(|c| c.kind.as_str()).collect();
                    format!(
                        "{}: backlog {:.1}, raw {:.2}, desired {}, granted {} {:?}",
                        s.service, s.observation.backlog, s.raw, s.desired, s.granted, clamps
                    )
                })
                .collect();
            tracing::info!(decision = %summary.join("; "), "scaler decision");
        }
        self.last_grants = grants;
        self.last_recorded = Some(tokio::time::Instant::now());
        if let Err(e) = self.store.record_decision(decision).await {
            tracing::warn!(error = %e, "recording the scaler decision failed");
        }
    }

    /// Tick until `stop` resolves, then stop every instance (drain, kill after grace).
    pub async fn run(mut self, demand: &mut dyn DemandSource, stop: impl Future<Output = ()>) {
        tracing::info!(
            orchestrator = self.orchestrator.name(),
            capacity = %self.services.shared(),
            tick_ms = self.services.tick.as_millis() as u64,
            services = ?self.services.services.iter().map(|d| (&d.spec.name, d.spec.priority, d.spec.min, d.spec.max)).collect::<Vec<_>>(),
            "microscaler started"
        );
        tokio::pin!(stop);
        self.start_minimums().await;
        let mut interval = tokio::time::interval(self.services.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = interval.tick() => {
                    self.tick(demand).await;
                }
            }
        }
        tracing::info!("microscaler stopping every instance");
        self.orchestrator.shutdown().await;
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_what_they_set() {
        let o = ControlOverrides {
            scale_down_window: Some(5.0),
            max_step_up: Some(2),
            fallback: Some(1),
            scale_up_period: Some(7.0),
            scale_down_period: Some(9.0),
            ..ControlOverrides::default()
        };
        let p = control_params(&o);
        let d = ControlParams::default();
        assert_eq!(p.scale_down_window, 5.0);
        assert_eq!(p.max_step_up, 2);
        assert_eq!(p.fallback, Some(1));
        assert_eq!((p.scale_up_period, p.scale_down_period), (7.0, 9.0));
        assert_eq!(p.tolerance, d.tolerance);
        assert_eq!(p.min_lifetime, d.min_lifetime);
    }
}
