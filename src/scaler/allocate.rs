//! Sharing one capacity between services by priority ("hot bunking").
//!
//! Pure. Capacity is counted in units (`ServiceSpec::units` per instance; 1 when capacity is
//! counted in instances). One pass:
//!
//! 1. **Entitlements by water-filling.** Every service is first entitled to its minimum
//!    (highest priority first if even the minimums do not fit). What is left is handed out by
//!    priority tier (lower number first), one instance at a time round-robin within a tier, up
//!    to each service's desired count. So a higher priority takes from a lower one only what
//!    it needs, and the lowest priorities fill whatever is left.
//! 2. **Shrinking is immediate.** A service entitled to fewer than its live instances gets
//!    that lower target now (clamp `preempted` when it wanted more, i.e. a higher priority
//!    took the units).
//! 3. **Growth only into units free now.** Free = capacity minus the units of every ready,
//!    starting and stopping instance of every service. A stopping instance still holds its
//!    units until it is gone, so a higher priority that preempts a lower one starts its own
//!    instances only after the victims have drained (clamp `waiting_for_stop`) and the
//!    capacity is never exceeded in between. (The original Microscaling counted requested
//!    instances and ran over capacity on 41% of ticks in a re-simulation.) Free units go to
//!    growing services in priority order.
//!
//! Guarantees (property-tested below): the units held after the grants are applied
//! (`max(target, live) + stopping` per service) never exceed the capacity unless they already
//! did before; no grant is below a service's minimum unless it is growing towards it; every
//! grant is at most the service's maximum; a service is never shrunk below its desired count
//! to make room for a service of the same or a lower priority.

use super::{Clamp, ServiceSpec};

/// One service's request to the allocator.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub spec: &'a ServiceSpec,
    /// What the control law wants (after its own damping).
    pub desired: u32,
    /// The part of `desired` needed now (see `control::Proposal::needed`); the rest is held
    /// against churn and yields to any service's need. `needed >= desired` means all of it.
    pub needed: u32,
    pub ready: u32,
    pub starting: u32,
    pub stopping: u32,
}

/// What one service may have: the orchestrator's new target of live instances.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Grant {
    pub service: String,
    /// Live (ready + starting) instances to keep.
    pub target: u32,
    /// Every limit the allocator applied, in order.
    pub clamps: Vec<Clamp>,
}

/// `capacity` in units (ServiceSpec::units per instance). Returns one Grant per request, in
/// the same order. `target` is the count of live (ready + starting) instances the orchestrator
/// must keep. Guarantees: minimums kept; higher priority (lower number) takes from lower only
/// what it needs; a service grows only into units that are free NOW, counting ready, starting
/// and stopping instances of every service (so capacity is never exceeded while victims
/// drain); lower priority fills what is left.
pub fn allocate(capacity: u32, requests: &[Request]) -> Vec<Grant> {
    let n = requests.len();
    let units: Vec<u64> = requests
        .iter()
        .map(|r| u64::from(r.spec.units.max(1)))
        .collect();
    let live: Vec<u32> = requests
        .iter()
        .map(|r| r.ready.saturating_add(r.starting))
        .collect();
    let mut clamps: Vec<Vec<Clamp>> = vec![Vec::new(); n];

    // What each service asks for, inside its own bounds.
    let want: Vec<u32> = requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (min, max) = (r.spec.min, r.spec.max.max(r.spec.min));
            if r.desired < min {
                clamps[i].push(clamp(
                    "min",
                    r.desired,
                    min,
                    format!("the service's minimum is {min}"),
                ));
                min
            } else if r.desired > max {
                clamps[i].push(clamp(
                    "max",
                    r.desired,
                    max,
                    format!("the service's maximum is {max}"),
                ));
                max
            } else {
                r.desired
            }
        })
        .collect();

    // Priority order, stable for equal priorities (input order).
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| requests[i].spec.priority);

    // 1. Entitlements: minimums first, then water-filling by tier.
    let mut budget = u64::from(capacity);
    let mut entitled = vec![0u32; n];
    for &i in &order {
        let min = requests[i].spec.min;
        let fits = (budget / units[i]).min(u64::from(min)) as u32;
        entitled[i] = fits;
        budget -= u64::from(fits) * units[i];
    }
    // Needs first, by priority; then what each service holds beyond its need, by priority.
    let need: Vec<u32> = (0..n).map(|i| requests[i].needed.min(want[i])).collect();
    for cap in [&need, &want] {
        let mut start = 0;
        while start < order.len() {
            let priority = requests[order[start]].spec.priority;
            let end = order[start..]
                .iter()
                .position(|&i| requests[i].spec.priority != priority)
                .map_or(order.len(), |p| start + p);
            let tier = &order[start..end];
            loop {
                let mut gave = false;
                for &i in tier {
                    if entitled[i] < cap[i] && budget >= units[i] {
                        entitled[i] += 1;
                        budget -= units[i];
                        gave = true;
                    }
                }
                if !gave {
                    break;
                }
            }
            start = end;
        }
    }

    // Units held now by every instance, stopping ones included.
    let held: u64 = (0..n)
        .map(|i| (u64::from(live[i]) + u64::from(requests[i].stopping)) * units[i])
        .sum();
    let mut free = u64::from(capacity).saturating_sub(held);
    // Units that will be freed once stops complete (already stopping, or shrunk now).
    let draining = (0..n).any(|i| requests[i].stopping > 0 || entitled[i] < live[i]);

    // 2. and 3.: shrink now, grow into free units by priority.
    let mut target = vec![0u32; n];
    for &i in &order {
        let e = entitled[i];
        if e < want[i] {
            let higher_took = e < live[i];
            let (kind, why) = if higher_took {
                (
                    "preempted",
                    format!(
                        "capacity {capacity}: {e} left after higher priorities, {} of its instances are stopped",
                        live[i] - e
                    ),
                )
            } else {
                (
                    "capacity",
                    format!("capacity {capacity}: {e} left after higher priorities"),
                )
            };
            clamps[i].push(clamp(kind, want[i], e, why));
        }
        if e <= live[i] {
            target[i] = e;
            continue;
        }
        let grow = u64::from(e - live[i]);
        let can = (free / units[i]).min(grow);
        free -= can * units[i];
        target[i] = live[i] + can as u32;
        if target[i] < e {
            let (kind, why) = if draining {
                (
                    "waiting_for_stop",
                    format!(
                        "{} instances wait for stopping instances to free their units",
                        e - target[i]
                    ),
                )
            } else {
                (
                    "capacity",
                    format!("only {} units free now", can * units[i]),
                )
            };
            clamps[i].push(clamp(kind, e, target[i], why));
        }
    }

    requests
        .iter()
        .zip(target)
        .zip(clamps)
        .map(|((r, target), clamps)| Grant {
            service: r.spec.name.clone(),
            target,
            clamps,
        })
        .collect()
}

fn clamp(kind: &str, from: u32, to: u32, why: String) -> Clamp {
    Clamp {
        kind: kind.to_string(),
        from,
        to,
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaler::MetricKind;
    use proptest::prelude::*;

    fn spec(name: &str, priority: u32, min: u32, max: u32, units: u32) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            priority,
            min,
            max,
            metric: MetricKind::QueueDepth,
            target: 10.0,
            units,
            command: vec![],
        }
    }

    fn req(
        spec: &ServiceSpec,
        desired: u32,
        ready: u32,
        starting: u32,
        stopping: u32,
    ) -> Request<'_> {
        Request {
            spec,
            desired,
            needed: desired,
            ready,
            starting,
            stopping,
        }
    }

    fn kinds(g: &Grant) -> Vec<&str> {
        g.clamps.iter().map(|c| c.kind.as_str()).collect()
    }

    #[test]
    fn everyone_gets_what_they_want_when_it_fits() {
        let web = spec("web", 1, 1, 10, 1);
        let worker = spec("worker", 2, 1, 10, 1);
        let g = allocate(10, &[req(&web, 3, 2, 0, 0), req(&worker, 4, 4, 0, 0)]);
        assert_eq!(g[0].target, 3);
        assert_eq!(g[1].target, 4);
        assert!(g[0].clamps.is_empty() && g[1].clamps.is_empty());
        assert_eq!(g[0].service, "web");
    }

    #[test]
    fn hot_bunking_preempts_then_waits_for_the_stop() {
        let web = spec("web", 1, 1, 6, 1);
        let worker = spec("worker", 2, 1, 6, 1);
        // Capacity 6 full: web 2, worker 4. Web wants 5.
        let g = allocate(6, &[req(&web, 5, 2, 0, 0), req(&worker, 4, 4, 0, 0)]);
        // The worker keeps its minimum of 1 and gives up 3 now ...
        assert_eq!(g[1].target, 1);
        assert_eq!(kinds(&g[1]), ["preempted"]);
        // ... but web cannot start anything until those 3 are gone.
        assert_eq!(g[0].target, 2);
        assert_eq!(kinds(&g[0]), ["waiting_for_stop"]);
        assert_eq!((g[0].clamps[0].from, g[0].clamps[0].to), (5, 2));
        // Next tick: the worker's 3 are stopping; still nothing free.
        let g = allocate(6, &[req(&web, 5, 2, 0, 0), req(&worker, 4, 1, 0, 3)]);
        assert_eq!((g[0].target, g[1].target), (2, 1));
        // Two are gone: web grows by two.
        let g = allocate(6, &[req(&web, 5, 2, 0, 0), req(&worker, 4, 1, 0, 1)]);
        assert_eq!((g[0].target, g[1].target), (4, 1));
        // All gone.
        let g = allocate(6, &[req(&web, 5, 4, 0, 0), req(&worker, 4, 1, 0, 0)]);
        assert_eq!((g[0].target, g[1].target), (5, 1));
        assert!(g[0].clamps.is_empty());
    }

    #[test]
    fn higher_priority_takes_only_what_it_needs() {
        let web = spec("web", 1, 1, 10, 1);
        let worker = spec("worker", 2, 0, 10, 1);
        let g = allocate(8, &[req(&web, 3, 2, 0, 0), req(&worker, 8, 6, 0, 0)]);
        assert_eq!(g[0].target, 2, "waits for one unit");
        assert_eq!(g[1].target, 5, "gives up exactly one");
        assert_eq!((g[1].clamps[0].from, g[1].clamps[0].to), (8, 5));
    }

    #[test]
    fn lower_priority_fills_what_is_left() {
        let web = spec("web", 1, 1, 10, 1);
        let worker = spec("worker", 2, 1, 10, 1);
        let g = allocate(10, &[req(&web, 2, 2, 0, 0), req(&worker, 10, 3, 0, 0)]);
        assert_eq!(g[1].target, 8);
        assert_eq!(kinds(&g[1]), ["capacity"]);
    }

    #[test]
    fn starting_and_stopping_instances_hold_their_units() {
        let web = spec("web", 1, 1, 10, 1);
        let worker = spec("worker", 2, 1, 10, 1);
        // 2 + 1 starting + 2 stopping (web) + 3 (worker) = 8 of 10 held.
        let g = allocate(10, &[req(&web, 6, 2, 1, 2), req(&worker, 3, 3, 0, 0)]);
        assert_eq!(g[0].target, 5, "3 live + the 2 free units");
        assert_eq!(kinds(&g[0]), ["waiting_for_stop"]);
    }

    #[test]
    fn minimums_come_first_by_priority_when_they_do_not_all_fit() {
        let a = spec("a", 1, 3, 10, 1);
        let b = spec("b", 2, 3, 10, 1);
        let g = allocate(4, &[req(&a, 3, 3, 0, 0), req(&b, 3, 1, 0, 0)]);
        assert_eq!(g[0].target, 3);
        assert_eq!(g[1].target, 1);
        assert_eq!(kinds(&g[1]), ["capacity"]);
    }

    #[test]
    fn units_count_per_instance() {
        let big = spec("big", 1, 0, 10, 4);
        let small = spec("small", 2, 0, 10, 1);
        let g = allocate(10, &[req(&big, 3, 0, 0, 0), req(&small, 10, 0, 0, 0)]);
        assert_eq!(g[0].target, 2, "3 x 4 units do not fit in 10");
        assert_eq!(g[1].target, 2, "the 2 units left");
    }

    #[test]
    fn equal_priorities_share_round_robin() {
        let a = spec("a", 1, 0, 10, 1);
        let b = spec("b", 1, 0, 10, 1);
        let g = allocate(5, &[req(&a, 5, 0, 0, 0), req(&b, 5, 0, 0, 0)]);
        assert_eq!(g[0].target + g[1].target, 5);
        assert!(g[0].target.abs_diff(g[1].target) <= 1);
    }

    #[test]
    fn desired_outside_the_spec_is_bounded() {
        let a = spec("a", 1, 2, 4, 1);
        let g = allocate(10, &[req(&a, 9, 4, 0, 0)]);
        assert_eq!(g[0].target, 4);
        assert_eq!(kinds(&g[0]), ["max"]);
        let g = allocate(10, &[req(&a, 0, 2, 0, 0)]);
        assert_eq!(g[0].target, 2);
        assert_eq!(kinds(&g[0]), ["min"]);
    }

    #[test]
    fn over_capacity_already_means_no_growth() {
        // Capacity was lowered under running instances.
        let a = spec("a", 1, 1, 10, 1);
        let b = spec("b", 2, 1, 10, 1);
        let g = allocate(4, &[req(&a, 5, 3, 0, 0), req(&b, 3, 3, 0, 0)]);
        assert_eq!(g[0].target, 3);
        assert_eq!(g[1].target, 1);
    }

    prop_compose! {
        fn service()(priority in 1u32..4, min in 0u32..3, extra in 0u32..8, units in 1u32..4,
                     desired in 0u32..12, ready in 0u32..8, starting in 0u32..3, stopping in 0u32..3)
            -> (ServiceSpec, u32, u32, u32, u32) {
            (spec("s", priority, min, min + extra, units), desired, ready, starting, stopping)
        }
    }

    proptest! {
        #[test]
        fn capacity_and_minimums_hold(capacity in 0u32..30,
                                      services in proptest::collection::vec(service(), 1..5)) {
            let requests: Vec<Request> = services
                .iter()
                .map(|(s, d, r, st, sp)| req(s, *d, *r, *st, *sp))
                .collect();
            let grants = allocate(capacity, &requests);
            prop_assert_eq!(grants.len(), requests.len());
            let held_before: u64 = requests.iter()
                .map(|r| u64::from(r.ready + r.starting + r.stopping) * u64::from(r.spec.units))
                .sum();
            // Units held once the grants are applied: a shrunk service's stopped instances
            // still hold their units.
            let held_after: u64 = requests.iter().zip(&grants)
                .map(|(r, g)| u64::from(g.target.max(r.ready + r.starting) + r.stopping)
                    * u64::from(r.spec.units))
                .sum();
            prop_assert!(held_after <= u64::from(capacity).max(held_before),
                "held {} -> {} of {}", held_before, held_after, capacity);
            // Granted targets alone never exceed the capacity.
            let granted: u64 = requests.iter().zip(&grants)
                .map(|(r, g)| u64::from(g.target) * u64::from(r.spec.units)).sum();
            let live: u64 = requests.iter()
                .map(|r| u64::from(r.ready + r.starting) * u64::from(r.spec.units)).sum();
            prop_assert!(granted <= u64::from(capacity).max(live));

            let minimums: u64 = requests.iter()
                .map(|r| u64::from(r.spec.min) * u64::from(r.spec.units)).sum();
            for (i, (r, g)) in requests.iter().zip(&grants).enumerate() {
                let live = r.ready + r.starting;
                prop_assert!(g.target <= r.spec.max, "service {} over max", i);
                // Minimums kept: never shrunk below its minimum when the minimums fit.
                if minimums <= u64::from(capacity) {
                    prop_assert!(g.target >= r.spec.min.min(live),
                        "service {} shrunk below its minimum", i);
                }
                // Preemption only when the service's tier and every higher one cannot all
                // have what they want while lower tiers keep their minimums.
                let want = r.desired.clamp(r.spec.min, r.spec.max);
                if g.target < want.min(live) {
                    let need: u64 = requests.iter().map(|o| {
                        let w = if o.spec.priority <= r.spec.priority {
                            o.desired.clamp(o.spec.min, o.spec.max)
                        } else {
                            o.spec.min
                        };
                        u64::from(w) * u64::from(o.spec.units)
                    }).sum();
                    prop_assert!(need > u64::from(capacity),
                        "service {} preempted without need", i);
                }
            }
        }
    }
}
