//! Sharing one capacity between services by priority ("hot bunking").
//!
//! Pure. Capacity is counted in units (`ServiceSpec::units` per instance; 1 when capacity is
//! counted in instances) and, when the [`Capacity`] has them, in CPU millicores and memory
//! MiB (`ServiceSpec::cpu_millis`, `memory_mib` per instance, like Kubernetes resource
//! requests): an instance fits only where every counted dimension has room. One pass:
//!
//! 1. **Entitlements by water-filling.** Every service is first entitled to its minimum
//!    (highest priority first if even the minimums do not fit). What is left is handed out by
//!    priority tier (lower number first), one instance at a time round-robin within a tier, in
//!    three passes: first up to each service's *essential* count (`Request::essential`: what
//!    keeps a queue up with its arrivals, web's mean in flight with a little headroom), then
//!    up to its *need* (`Request::needed`), then up to its desired count (the rest is
//!    instances its controller holds against churn). So a higher priority takes from a lower
//!    one only what it needs, and its headroom never from what the lower one needs to keep
//!    up; a held instance yields to any service's need; the lowest priorities fill whatever
//!    is left.
//! 2. **Shrinking is immediate.** A service entitled to fewer than its live instances gets
//!    that lower target now (clamp `preempted` when it wanted more: a higher priority's
//!    desired count, any service's need beyond what is held, or any service's essential
//!    count took the units).
//! 3. **Growth only into units free now.** Free = capacity minus the units of every ready,
//!    starting and stopping instance of every service. A stopping instance still holds its
//!    units until it is gone, so a higher priority that preempts a lower one starts its own
//!    instances only after the victims have drained (clamp `waiting_for_stop`) and the
//!    capacity is never exceeded in between. (The original Microscaling counted requested
//!    instances and ran over capacity on 41% of ticks in a re-simulation.) Free units go to
//!    growing services in priority order.
//!
//! Guarantees (property-tested below): what is held after the grants are applied
//! (`max(target, live) + stopping` instances per service) never exceeds the capacity, in any
//! dimension it counts, unless it already did before; no grant is below a service's minimum unless it is growing towards it; every
//! grant is at most the service's maximum; a service's essential count is never shrunk or left
//! ungrown while a unit is free, except for the essential counts of its own or higher
//! priorities; its need beyond that only for a higher priority's need or any service's
//! essential count; its held instances only for another service's need.

use super::{Capacity, Clamp, ServiceSpec, within_bounds};

/// Capacity dimensions: units, CPU millicores, memory MiB.
type Amount = [u64; 3];

fn amount(capacity: &Capacity) -> Amount {
    [
        u64::from(capacity.units),
        capacity.cpu_millis.unwrap_or(u64::MAX),
        capacity.memory_mib.unwrap_or(u64::MAX),
    ]
}

/// What one instance of `spec` occupies in the dimensions `capacity` counts.
fn per_instance(spec: &ServiceSpec, capacity: &Capacity) -> Amount {
    [
        u64::from(spec.units.max(1)),
        if capacity.cpu_millis.is_some() {
            spec.cpu_millis
        } else {
            0
        },
        if capacity.memory_mib.is_some() {
            spec.memory_mib
        } else {
            0
        },
    ]
}

/// How many instances of `per` fit in `budget` (units are at least 1, so this is finite).
fn fitting(budget: &Amount, per: &Amount) -> u64 {
    (0..3)
        .filter(|&d| per[d] > 0)
        .map(|d| budget[d] / per[d])
        .min()
        .unwrap_or(u64::MAX)
}

/// Take `k` instances of `per` out of `budget` (which must hold them).
fn take(budget: &mut Amount, per: &Amount, k: u64) {
    for d in 0..3 {
        budget[d] = budget[d].saturating_sub(per[d].saturating_mul(k));
    }
}

/// What is free, in the words of a clamp: `2 units, 500m CPU` (dimensions counted only).
fn describe(free: &Amount, capacity: &Capacity) -> String {
    Capacity {
        units: free[0].min(u64::from(u32::MAX)) as u32,
        cpu_millis: capacity.cpu_millis.map(|_| free[1]),
        memory_mib: capacity.memory_mib.map(|_| free[2]),
    }
    .to_string()
}

/// One service's request to the allocator.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub spec: &'a ServiceSpec,
    /// What the control law wants (after its own damping).
    pub desired: u32,
    /// The part of `desired` needed now (see `control::Proposal::needed`); the rest is held
    /// against churn and yields to any service's need. `needed >= desired` means all of it.
    pub needed: u32,
    /// The part of `needed` the service cannot do without (see
    /// `control::Proposal::essential`), served for every service before any need beyond it.
    /// `essential >= needed` means all of the need; 0, none of it.
    pub essential: u32,
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

/// `capacity` in units (ServiceSpec::units per instance), or a [`Capacity`] that also counts
/// CPU and memory. Returns one Grant per request, in
/// the same order. `target` is the count of live (ready + starting) instances the orchestrator
/// must keep. Guarantees: minimums kept; higher priority (lower number) takes from lower only
/// what it needs; a service grows only into units that are free NOW, counting ready, starting
/// and stopping instances of every service (so capacity is never exceeded while victims
/// drain); lower priority fills what is left.
pub fn allocate(capacity: impl Into<Capacity>, requests: &[Request]) -> Vec<Grant> {
    let capacity: Capacity = capacity.into();
    let n = requests.len();
    let per: Vec<Amount> = requests
        .iter()
        .map(|r| per_instance(r.spec, &capacity))
        .collect();
    let live: Vec<u32> = requests
        .iter()
        .map(|r| r.ready.saturating_add(r.starting))
        .collect();
    let mut clamps: Vec<Vec<Clamp>> = vec![Vec::new(); n];

    // What each service asks for, inside its own bounds.
    let want: Vec<u32> = requests
        .iter()
        .zip(clamps.iter_mut())
        .map(|(r, clamps)| within_bounds(r.desired, r.spec, clamps))
        .collect();

    // Priority order, stable for equal priorities (input order).
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| requests[i].spec.priority);

    // 1. Entitlements: minimums first, then water-filling by tier.
    let mut budget = amount(&capacity);
    let mut entitled = vec![0u32; n];
    for &i in &order {
        let min = requests[i].spec.min;
        let fits = fitting(&budget, &per[i]).min(u64::from(min));
        entitled[i] = fits as u32;
        take(&mut budget, &per[i], fits);
    }
    // Essentials first, by priority; then needs, by priority; then what each service holds
    // beyond its need, by priority.
    let need: Vec<u32> = (0..n).map(|i| requests[i].needed.min(want[i])).collect();
    let essential: Vec<u32> = (0..n).map(|i| requests[i].essential.min(need[i])).collect();
    for cap in [&essential, &need, &want] {
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
                    if entitled[i] < cap[i] && fitting(&budget, &per[i]) >= 1 {
                        entitled[i] += 1;
                        take(&mut budget, &per[i], 1);
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

    // What every instance holds now, stopping ones included, comes off the capacity.
    let mut free = amount(&capacity);
    for i in 0..n {
        let instances = u64::from(live[i]) + u64::from(requests[i].stopping);
        take(&mut free, &per[i], instances);
    }
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
                        "capacity {capacity}: {e} left after higher priorities and every service's need, {} of its instances are stopped",
                        live[i] - e
                    ),
                )
            } else {
                (
                    "capacity",
                    format!(
                        "capacity {capacity}: {e} left after higher priorities and every service's need"
                    ),
                )
            };
            clamps[i].push(Clamp::new(kind, want[i], e, why));
        }
        if e <= live[i] {
            target[i] = e;
            continue;
        }
        let grow = u64::from(e - live[i]);
        let free_before = free;
        let can = fitting(&free, &per[i]).min(grow);
        take(&mut free, &per[i], can);
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
                    format!("only {} free now", describe(&free_before, &capacity)),
                )
            };
            clamps[i].push(Clamp::new(kind, e, target[i], why));
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
            cpu_millis: 0,
            memory_mib: 0,
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
            essential: desired,
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

    fn sized(name: &str, priority: u32, cpu_millis: u64, memory_mib: u64) -> ServiceSpec {
        ServiceSpec {
            cpu_millis,
            memory_mib,
            ..spec(name, priority, 1, 10, 1)
        }
    }

    #[test]
    fn every_counted_dimension_must_fit() {
        // 10 units but 2000m CPU and 4096 MiB: web asks 500m and 256 MiB an instance, the
        // worker 1000m and 512 MiB.
        let web = sized("web", 1, 500, 256);
        let worker = sized("worker", 2, 1000, 512);
        let capacity = Capacity {
            units: 10,
            cpu_millis: Some(2000),
            memory_mib: Some(4096),
        };
        // Minimums: 500m + 1000m; web's 3 more would need 1500m, only 500m are left.
        let g = allocate(capacity, &[req(&web, 4, 1, 0, 0), req(&worker, 1, 1, 0, 0)]);
        assert_eq!((g[0].target, g[1].target), (2, 1));
        assert_eq!(kinds(&g[0]), ["capacity"]);
        assert!(
            g[0].clamps[0].why.contains("2000m CPU"),
            "{:?}",
            g[0].clamps
        );
        // Memory binds instead: 4096 MiB hold 4 workers of 512 and 8 web of 256 at most.
        let capacity = Capacity {
            units: 20,
            cpu_millis: None,
            memory_mib: Some(4096),
        };
        let g = allocate(capacity, &[req(&web, 8, 1, 0, 0), req(&worker, 6, 1, 0, 0)]);
        assert_eq!(g[0].target, 8, "8 x 256 = 2048 MiB");
        assert_eq!(g[1].target, 4, "the 2048 MiB left hold 4 workers");
        // Growth into what is free now: the clamp says what is free.
        let g = allocate(capacity, &[req(&web, 8, 8, 0, 0), req(&worker, 6, 3, 0, 0)]);
        assert_eq!(g[1].target, 4);
        // A dimension the capacity does not count is ignored, however large the request.
        let g = allocate(10, &[req(&web, 4, 1, 0, 0), req(&worker, 6, 1, 0, 0)]);
        assert_eq!((g[0].target, g[1].target), (4, 6));
    }

    #[test]
    fn growth_waits_for_stopping_instances_to_free_cpu() {
        // Web needs 2 more (1000m); the worker's 2 stopping instances still hold 2000m.
        let web = sized("web", 1, 500, 0);
        let worker = sized("worker", 2, 1000, 0);
        let capacity = Capacity {
            units: 10,
            cpu_millis: Some(3000),
            memory_mib: None,
        };
        let g = allocate(capacity, &[req(&web, 3, 1, 0, 0), req(&worker, 1, 1, 0, 2)]);
        assert_eq!(g[0].target, 1, "nothing free until the stops complete");
        assert_eq!(kinds(&g[0]), ["waiting_for_stop"]);
        let g = allocate(capacity, &[req(&web, 3, 1, 0, 0), req(&worker, 1, 1, 0, 0)]);
        assert_eq!(g[0].target, 3);
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

    /// A request with a need below its desired count (the rest is held).
    fn held(
        spec: &ServiceSpec,
        desired: u32,
        needed: u32,
        ready: u32,
        stopping: u32,
    ) -> Request<'_> {
        Request {
            needed,
            ..req(spec, desired, ready, 0, stopping)
        }
    }

    fn from_to(g: &Grant, k: usize) -> (u32, u32) {
        (g.clamps[k].from, g.clamps[k].to)
    }

    #[test]
    fn a_lower_prioritys_need_comes_before_a_higher_prioritys_hold() {
        let web = spec("web", 1, 1, 10, 1);
        let worker = spec("worker", 2, 1, 10, 1);
        // Capacity 10 full: web 6 (only 2 needed, 4 held by its damping), worker 4 of the 8
        // it needs.
        let g = allocate(10, &[held(&web, 6, 2, 6, 0), held(&worker, 8, 8, 4, 0)]);
        // Web's held instances yield now ...
        assert_eq!(g[0].target, 2);
        assert_eq!(kinds(&g[0]), ["preempted"]);
        assert_eq!(from_to(&g[0], 0), (6, 2));
        // ... and the worker grows only once they are gone.
        assert_eq!(g[1].target, 4);
        assert_eq!(kinds(&g[1]), ["waiting_for_stop"]);
        assert_eq!(from_to(&g[1], 0), (8, 4));
        // Next tick: web's 4 are stopping and still hold their units.
        let g = allocate(10, &[held(&web, 6, 2, 2, 4), held(&worker, 8, 8, 4, 0)]);
        assert_eq!((g[0].target, g[1].target), (2, 4));
        assert_eq!(kinds(&g[1]), ["waiting_for_stop"]);
        // Gone: the worker has all it needs; web's hold is what capacity does not give.
        let g = allocate(10, &[held(&web, 6, 2, 2, 0), held(&worker, 8, 8, 4, 0)]);
        assert_eq!((g[0].target, g[1].target), (2, 8));
        assert_eq!(kinds(&g[0]), ["capacity"]);
        assert_eq!(from_to(&g[0], 0), (6, 2));
        assert!(g[1].clamps.is_empty(), "{:?}", g[1].clamps);
    }

    #[test]
    fn a_higher_prioritys_need_still_comes_first() {
        let web = spec("web", 1, 1, 10, 1);
        let worker = spec("worker", 2, 1, 10, 1);
        // Web needs 3 of its 6: it keeps 3, the worker gets the 7 left of the 8 it needs.
        let g = allocate(10, &[held(&web, 6, 3, 6, 0), held(&worker, 8, 8, 4, 0)]);
        assert_eq!(g[0].target, 3);
        assert_eq!(kinds(&g[0]), ["preempted"]);
        assert_eq!(from_to(&g[0], 0), (6, 3));
        assert_eq!(g[1].target, 4);
        assert_eq!(kinds(&g[1]), ["capacity", "waiting_for_stop"]);
        assert_eq!(from_to(&g[1], 0), (8, 7));
        assert_eq!(from_to(&g[1], 1), (7, 4));
    }

    #[test]
    fn a_hold_yields_to_a_need_not_to_another_hold() {
        let web = spec("web", 1, 1, 10, 1);
        let worker = spec("worker", 2, 1, 10, 1);
        // The worker needs only the 4 it has: web keeps everything it holds.
        let g = allocate(10, &[held(&web, 6, 2, 6, 0), held(&worker, 8, 4, 4, 0)]);
        assert_eq!((g[0].target, g[1].target), (6, 4));
        assert!(g[0].clamps.is_empty(), "{:?}", g[0].clamps);
        assert_eq!(kinds(&g[1]), ["capacity"]);
        assert_eq!(from_to(&g[1], 0), (8, 4));
        // Needing one more takes exactly one of web's held instances.
        let g = allocate(10, &[held(&web, 6, 2, 6, 0), held(&worker, 8, 5, 4, 0)]);
        assert_eq!((g[0].target, g[1].target), (5, 4));
        assert_eq!(kinds(&g[0]), ["preempted"]);
        assert_eq!(from_to(&g[1], 0), (8, 5));
    }

    #[test]
    fn needed_equal_to_desired_never_yields_to_a_lower_priority() {
        let web = spec("web", 1, 1, 10, 1);
        let worker = spec("worker", 2, 1, 10, 1);
        // The same situation as above, but web needs all 6: the worker gets nothing of it.
        let all = allocate(10, &[held(&web, 6, 6, 6, 0), held(&worker, 8, 8, 4, 0)]);
        assert_eq!((all[0].target, all[1].target), (6, 4));
        assert!(all[0].clamps.is_empty(), "{:?}", all[0].clamps);
        assert_eq!(kinds(&all[1]), ["capacity"]);
        assert_eq!(from_to(&all[1], 0), (8, 4));
        // `needed` above `desired` means all of it too.
        let more = allocate(
            10,
            &[held(&web, 6, u32::MAX, 6, 0), held(&worker, 8, 9, 4, 0)],
        );
        assert_eq!(more, all);
        // And the preemption example of the single-pass allocator is unchanged.
        let web = spec("web", 1, 1, 6, 1);
        let worker = spec("worker", 2, 1, 6, 1);
        let g = allocate(6, &[held(&web, 5, 5, 2, 0), held(&worker, 4, 4, 4, 0)]);
        assert_eq!((g[0].target, g[1].target), (2, 1));
        assert_eq!(kinds(&g[0]), ["waiting_for_stop"]);
        assert_eq!(kinds(&g[1]), ["preempted"]);
    }

    #[test]
    fn a_need_below_the_minimum_keeps_the_minimum() {
        let web = spec("web", 1, 3, 10, 1);
        let worker = spec("worker", 2, 0, 10, 1);
        // Web needs none of its 5 but its minimum is 3: the worker's need takes only 2.
        let g = allocate(8, &[held(&web, 5, 0, 5, 0), held(&worker, 8, 8, 3, 0)]);
        assert_eq!(g[0].target, 3);
        assert_eq!(kinds(&g[0]), ["preempted"]);
        assert_eq!(g[1].target, 3);
        assert_eq!(from_to(&g[1], 0), (8, 5));
    }

    #[test]
    fn equal_priorities_serve_needs_before_holds() {
        let a = spec("a", 1, 0, 10, 1);
        let b = spec("b", 1, 0, 10, 1);
        let g = allocate(8, &[held(&a, 6, 2, 6, 0), held(&b, 6, 6, 2, 0)]);
        assert_eq!(g[0].target, 2);
        assert_eq!(kinds(&g[0]), ["preempted"]);
        assert_eq!(g[1].target, 2);
        assert_eq!(kinds(&g[1]), ["waiting_for_stop"]);
        assert_eq!(from_to(&g[1], 0), (6, 2));
    }

    #[test]
    fn a_lower_prioritys_essential_count_comes_before_a_higher_prioritys_headroom() {
        let web = spec("web", 1, 1, 16, 1);
        let worker = spec("worker", 2, 1, 16, 1);
        // Both peak on a capacity of 16: web needs 10 (7 essential: its mean in flight
        // with a little headroom), the worker 8, all of which it needs to keep up.
        let web_at = |essential, ready, stopping| Request {
            essential,
            ..held(&web, 10, 10, ready, stopping)
        };
        let need = |essential| web_at(essential, 10, 0);
        let worker_req = Request {
            essential: 8,
            ..held(&worker, 8, 8, 6, 0)
        };
        let g = allocate(16, &[need(7), worker_req]);
        // Web's headroom yields two instances; the worker grows once they are gone.
        assert_eq!((g[0].target, g[1].target), (8, 6));
        assert_eq!(kinds(&g[0]), ["preempted"]);
        assert_eq!(from_to(&g[0], 0), (10, 8));
        assert_eq!(kinds(&g[1]), ["waiting_for_stop"]);
        let g = allocate(16, &[web_at(7, 8, 2), worker_req]);
        assert_eq!((g[0].target, g[1].target), (8, 6), "{g:?}");
        let g = allocate(16, &[web_at(7, 8, 0), worker_req]);
        assert_eq!((g[0].target, g[1].target), (8, 8));
        // Web's essential count is still served first: at 9 essential the worker gets 7.
        let g = allocate(16, &[need(9), worker_req]);
        assert_eq!((g[0].target, g[1].target), (9, 6));
        assert_eq!(
            allocate(
                16,
                &[
                    need(9),
                    Request {
                        ready: 7,
                        ..worker_req
                    }
                ]
            )[1]
            .target,
            7
        );
        // With all of web's need essential (the two-pass allocator), web keeps its 10.
        let g = allocate(16, &[need(10), worker_req]);
        assert_eq!((g[0].target, g[1].target), (10, 6));
        assert_eq!(kinds(&g[1]), ["capacity"]);
    }

    prop_compose! {
        /// A service and its request: `needed` anywhere in `0..=desired`.
        fn service()(priority in 1u32..4, min in 0u32..3, extra in 0u32..8, units in 1u32..4,
                     desired in 0u32..12, short in 0u32..13, below in 0u32..13,
                     ready in 0u32..8, starting in 0u32..3, stopping in 0u32..3)
            -> Svc {
            let needed = desired.saturating_sub(short);
            (spec("s", priority, min, min + extra, units), desired, needed,
             needed.saturating_sub(below), ready, starting, stopping)
        }
    }

    /// The allocator's guarantees for one set of requests.
    fn check_grants(capacity: u32, requests: &[Request]) -> Result<(), TestCaseError> {
        let grants = allocate(capacity, requests);
        prop_assert_eq!(grants.len(), requests.len());
        let cap = u64::from(capacity);
        let units = |r: &Request| u64::from(r.spec.units);
        let held_before: u64 = requests
            .iter()
            .map(|r| u64::from(r.ready + r.starting + r.stopping) * units(r))
            .sum();
        // Units held once the grants are applied: a shrunk service's stopped instances
        // still hold their units.
        let held_after: u64 = requests
            .iter()
            .zip(&grants)
            .map(|(r, g)| u64::from(g.target.max(r.ready + r.starting) + r.stopping) * units(r))
            .sum();
        prop_assert!(
            held_after <= cap.max(held_before),
            "held {} -> {} of {}",
            held_before,
            held_after,
            capacity
        );
        // Granted targets alone never exceed the capacity.
        let granted: u64 = requests
            .iter()
            .zip(&grants)
            .map(|(r, g)| u64::from(g.target) * units(r))
            .sum();
        let live: u64 = requests
            .iter()
            .map(|r| u64::from(r.ready + r.starting) * units(r))
            .sum();
        prop_assert!(granted <= cap.max(live));

        let want = |r: &Request| r.desired.clamp(r.spec.min, r.spec.max);
        let need = |r: &Request| r.needed.min(want(r));
        let essential = |r: &Request| r.essential.min(need(r));
        let minimums: u64 = requests
            .iter()
            .map(|r| u64::from(r.spec.min) * units(r))
            .sum();
        for (i, (r, g)) in requests.iter().zip(&grants).enumerate() {
            let live = r.ready + r.starting;
            prop_assert!(g.target <= r.spec.max, "service {} over max", i);
            // Minimums kept: never shrunk below its minimum when the minimums fit.
            if minimums <= cap {
                prop_assert!(
                    g.target >= r.spec.min.min(live),
                    "service {} shrunk below its minimum",
                    i
                );
            }
            // Units asked for when this tier and the higher ones ask `own` and the lower
            // tiers `lower`.
            let asked = |own: &dyn Fn(&Request) -> u32, lower: &dyn Fn(&Request) -> u32| -> u64 {
                requests
                    .iter()
                    .map(|o| {
                        let w = if o.spec.priority <= r.spec.priority {
                            own(o)
                        } else {
                            lower(o)
                        };
                        u64::from(w) * units(o)
                    })
                    .sum()
            };
            let at_min = |o: &Request| o.spec.min;
            let essential_or_min = |o: &Request| essential(o).max(o.spec.min);
            let need_or_min = |o: &Request| need(o).max(o.spec.min);
            // The essential counts of this tier and the higher ones, with the lower tiers at
            // their minimums: only this can keep a service from its essential count.
            let essentials_up_to_here = asked(&essential_or_min, &at_min);
            // What the services of this tier and the higher ones need, with the lower tiers
            // at their essential counts: only this can keep a service from its own need.
            let needs_up_to_here = asked(&need_or_min, &essential_or_min);
            // Everything this tier and the higher ones want, with every lower tier at its
            // need: only this can take a held instance.
            let holds_up_to_here = asked(&want, &need_or_min);
            // No unit is free for this service once the grants are applied.
            let full = held_after + units(r) > cap;
            // An essential count is never stopped for another service's need or hold, nor
            // left ungrown for them while a unit is free.
            if g.target < essential(r).min(live) {
                prop_assert!(
                    essentials_up_to_here > cap,
                    "service {} shrunk below its essential {} to {}",
                    i,
                    essential(r),
                    g.target
                );
            }
            if g.target < essential(r) {
                prop_assert!(
                    essentials_up_to_here > cap || full,
                    "service {} below its essential {} at {} with units free",
                    i,
                    essential(r),
                    g.target
                );
            }
            // A need is never stopped for a lower priority's need beyond its essential
            // count, nor for any hold.
            if g.target < need(r).min(live) {
                prop_assert!(
                    needs_up_to_here > cap,
                    "service {} shrunk below its need of {} to {} by a lower priority's need or hold",
                    i,
                    need(r),
                    g.target
                );
            }
            // A need is never left ungrown for a lower priority's hold, only while no unit
            // is free.
            if g.target < need(r) {
                prop_assert!(
                    needs_up_to_here > cap || full,
                    "service {} below its need of {} at {} with units free",
                    i,
                    need(r),
                    g.target
                );
            }
            // A held instance is stopped only for a need or for a higher priority.
            if g.target < want(r).min(live) {
                prop_assert!(
                    holds_up_to_here > cap,
                    "service {} preempted without need",
                    i
                );
            }
            if g.target < want(r) {
                prop_assert!(holds_up_to_here > cap || full, "service {} not grown", i);
            }
            // `preempted` is recorded exactly when live instances are stopped for others.
            prop_assert_eq!(
                g.clamps.iter().any(|c| c.kind == "preempted"),
                g.target < want(r).min(live),
                "service {}: {:?}",
                i,
                &g.clamps
            );
        }
        Ok(())
    }

    /// A generated service: spec, desired, needed, essential, ready, starting, stopping.
    type Svc = (ServiceSpec, u32, u32, u32, u32, u32, u32);

    fn requests(services: &[Svc]) -> Vec<Request<'_>> {
        services
            .iter()
            .map(|(s, d, n, e, r, st, sp)| Request {
                needed: *n,
                essential: *e,
                ..req(s, *d, *r, *st, *sp)
            })
            .collect()
    }

    proptest! {
        #[test]
        fn capacity_and_minimums_hold(capacity in 0u32..30,
                                      services in proptest::collection::vec(service(), 1..5)) {
            // Everything needed: the single-pass allocator's guarantees (a lower priority
            // never takes from a higher one's desired count).
            let all: Vec<Request> = requests(&services)
                .into_iter()
                .map(|r| Request { needed: r.desired, essential: r.desired, ..r })
                .collect();
            check_grants(capacity, &all)?;
            // `needed` beyond `desired` is the same as all of it.
            let beyond: Vec<Request> = all
                .iter()
                .map(|r| Request { needed: r.desired.saturating_add(3), ..*r })
                .collect();
            prop_assert_eq!(allocate(capacity, &beyond), allocate(capacity, &all));
        }

        #[test]
        fn needs_come_before_holds(capacity in 0u32..30,
                                   services in proptest::collection::vec(service(), 1..5)) {
            check_grants(capacity, &requests(&services))?;
        }

        #[test]
        fn no_counted_dimension_is_exceeded(
            units in 0u32..30, cpu in 0u64..8000, memory in 0u64..8000,
            services in proptest::collection::vec(
                (service(), 0u64..3000, 0u64..3000), 1..5),
        ) {
            let specs: Vec<Svc> = services
                .iter()
                .map(|((s, d, n, e, r, st, sp), c, m)| {
                    (ServiceSpec { cpu_millis: *c, memory_mib: *m, ..s.clone() }, *d, *n, *e, *r, *st, *sp)
                })
                .collect();
            let reqs = requests(&specs);
            let capacity = Capacity { units, cpu_millis: Some(cpu), memory_mib: Some(memory) };
            let grants = allocate(capacity, &reqs);
            type PerInstance = fn(&ServiceSpec) -> u64;
            let dims: [(u64, PerInstance); 3] = [
                (u64::from(units), |s| u64::from(s.units)),
                (cpu, |s| s.cpu_millis),
                (memory, |s| s.memory_mib),
            ];
            for (cap, per) in dims {
                let held = |count: &dyn Fn(&Request, &Grant) -> u32| -> u64 {
                    reqs.iter()
                        .zip(&grants)
                        .map(|(r, g)| u64::from(count(r, g)) * per(r.spec))
                        .sum()
                };
                let before = held(&|r, _| r.ready + r.starting + r.stopping);
                let after = held(&|r, g| g.target.max(r.ready + r.starting) + r.stopping);
                prop_assert!(after <= cap.max(before), "held {} -> {} of {}", before, after, cap);
            }
            for (r, g) in reqs.iter().zip(&grants) {
                prop_assert!(g.target <= r.spec.max);
            }
        }
    }
}
