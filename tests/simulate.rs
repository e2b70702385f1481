//! The simulator as a regression suite: every built-in scenario, start-up delays of 1 s and
//! 10 s, every policy under our allocator. Also determinism, trace parsing and the CLI.
//!
//! Issue 5's targets against HPA (ours at most half of HPA's time over target, no more
//! scaling actions, at most 110% of its instance-seconds; hot-bunking: priority 1 at target
//! 99% of the time with utilisation of 80% or more) are NOT all met by the current control
//! law; `docs/BENCHMARKS.md` ("Scaler") has the table and says which are. The assertions
//! here are the targets that are met and, for the rest, the margins measured (seed 1), so a
//! regression shows.

use std::process::Command;

use microbadger::scaler::control::ControlParams;
use microbadger::scaler::simulate::{
    Policy, Report, SCENARIOS, Scenario, SimConfig, parse_schedule, parse_trace, run,
};

fn sim(scenario: &str, policy: Policy, delay: f64) -> Report {
    let s = Scenario::builtin(scenario, 1).expect("built-in scenario");
    run(&SimConfig::new(s, policy, delay, 1))
}

/// Every scenario x delay, with ours and HPA side by side.
fn pairs() -> Vec<(Report, Report)> {
    let mut out = Vec::new();
    for delay in [1.0, 10.0] {
        for name in SCENARIOS {
            out.push((
                sim(name, Policy::Ours, delay),
                sim(name, Policy::Hpa, delay),
            ));
        }
    }
    out
}

#[test]
fn no_policy_ever_exceeds_capacity_under_our_allocator() {
    for delay in [1.0, 10.0] {
        for name in SCENARIOS {
            for policy in Policy::ALL {
                let r = sim(name, policy, delay);
                assert_eq!(
                    r.capacity_violations,
                    0,
                    "{name} {} start {delay}s",
                    policy.name()
                );
                for s in &r.services {
                    assert!(
                        s.max_instances <= r.capacity,
                        "{name} {}: {} peaked at {}",
                        policy.name(),
                        s.name,
                        s.max_instances
                    );
                }
            }
        }
    }
}

#[test]
fn ours_against_hpa_on_every_scenario() {
    let mut lines = Vec::new();
    for (ours, hpa) in pairs() {
        let id = format!("{} start {}s", ours.scenario, ours.start_delay_s);
        let (ow, hw) = (&ours.services[0], &hpa.services[0]);
        assert_eq!(ow.name, "web");
        // The priority-1 service: ours keeps it at target more of the time than HPA (web
        // over target at most 0.50x HPA's), except on bursty at 10 s, where a start-up is as
        // long as a burst and no reactive policy can follow: there web is at target 88.7%
        // of the time against HPA's 89.8% (over target 11.4% against 10.2%), which holds
        // more instances between bursts.
        let slack = if ours.scenario == "bursty" && ours.start_delay_s == 10.0 {
            (1.5, 1.15)
        } else {
            (0.0, 1.0)
        };
        assert!(
            ours.p1_sla_met_pct >= hpa.p1_sla_met_pct - slack.0,
            "{id}: p1 at target {} vs HPA {}",
            ours.p1_sla_met_pct,
            hpa.p1_sla_met_pct
        );
        assert!(
            ow.time_over_target_pct <= slack.1 * hw.time_over_target_pct,
            "{id}: web over target {} vs HPA {}",
            ow.time_over_target_pct,
            hw.time_over_target_pct
        );
        // Cost: measured at most 1.20x HPA's instance-seconds (step, 1 s start-up).
        assert!(
            ours.instance_seconds <= 1.3 * hpa.instance_seconds,
            "{id}: instance-seconds {} vs HPA {}",
            ours.instance_seconds,
            hpa.instance_seconds
        );
        // Actions: at most HPA's only on step at 10 s (issue 5); measured at most 13.6x
        // (bursty, 1 s: 68 to HPA's 5), 1.0x-9.7x elsewhere.
        assert!(
            ours.scaling_actions <= 14 * hpa.scaling_actions,
            "{id}: actions {} vs HPA {}",
            ours.scaling_actions,
            hpa.scaling_actions
        );
        lines.push(format!(
            "{id}: over {:.1}% vs {:.1}%, actions {} vs {}, inst-s {:.0} vs {:.0}",
            ours.time_over_target_pct,
            hpa.time_over_target_pct,
            ours.scaling_actions,
            hpa.scaling_actions,
            ours.instance_seconds,
            hpa.instance_seconds
        ));
    }
    println!("{}", lines.join("\n"));
}

#[test]
fn the_time_over_target_is_at_most_half_of_hpas_except_on_bursty() {
    // Ours at most half of HPA's time over target, measured at 1 s / 10 s start-up: step
    // 0.04x / 0.11x, ramp 0.24x / 0.08x, spike 0.39x / 0.21x, diurnal 0.18x / 0.47x,
    // hot-bunking 0.08x / 0.17x. Not met on seed 1: bursty (1.23x, 0.84x: see
    // `on_bursty_no_fixed_split_reaches_half_of_hpas_time_over_target`). Over seeds 1-10 the
    // count met is in BENCHMARKS.
    let both = &[1.0, 10.0][..];
    for (name, delays) in [
        ("step", both),
        ("ramp", both),
        ("spike", both),
        ("diurnal", both),
        ("hot-bunking", both),
    ] {
        for &delay in delays {
            let (ours, hpa) = (
                sim(name, Policy::Ours, delay),
                sim(name, Policy::Hpa, delay),
            );
            assert!(
                ours.time_over_target_pct <= 0.5 * hpa.time_over_target_pct,
                "{name} start {delay}s: {} vs {}",
                ours.time_over_target_pct,
                hpa.time_over_target_pct
            );
            assert!(ours.peak_queue_over_target < hpa.peak_queue_over_target);
            assert!(ours.p95_wait_s <= hpa.p95_wait_s);
        }
    }
}

#[test]
fn hot_bunking_favours_priority_one_and_keeps_capacity_busy() {
    for delay in [1.0, 10.0] {
        let ours = sim("hot-bunking", Policy::Ours, delay);
        for policy in [Policy::Hpa, Policy::Keda, Policy::Microscaling] {
            let other = sim("hot-bunking", policy, delay);
            assert!(
                ours.p1_sla_met_pct > other.p1_sla_met_pct,
                "start {delay}s vs {}: p1 {} vs {}",
                policy.name(),
                ours.p1_sla_met_pct,
                other.p1_sla_met_pct
            );
            assert!(
                ours.time_over_target_pct < other.time_over_target_pct,
                "start {delay}s vs {}: over target {} vs {}",
                policy.name(),
                ours.time_over_target_pct,
                other.time_over_target_pct
            );
        }
        // Issue 5: utilisation (instance-seconds doing work / capacity x duration) at least
        // 80%: measured 83.4% (1 s) and 81.7% (10 s).
        assert!(ours.utilization_pct >= 80.0, "{}", ours.utilization_pct);
        // The stricter slot utilisation is reported too (web instances keep spare slots).
        assert!(ours.slot_utilization_pct < ours.utilization_pct);
        // The worker fills what web leaves: together they hold the capacity.
        let held: f64 = ours.services.iter().map(|s| s.mean_instances).sum();
        assert!(held > 0.95 * f64::from(ours.capacity), "{held}");
    }
    // Issue 5: priority 1 at target at least 99% of the time. Not met: 98.8% with a 1 s
    // start-up, 97.9% with 10 s, asserted as measured so a regression shows. The worker's
    // essential count comes before web's headroom beyond its own essential count, so web
    // runs closer to its need (it was 99.0% and 98.4% when web took all it wanted first,
    // with the worker over target 50% and 54% of the run; now 4.2% and 11.1%).
    let p1 = |delay| sim("hot-bunking", Policy::Ours, delay).p1_sla_met_pct;
    assert!(p1(1.0) >= 98.5, "{}", p1(1.0));
    assert!(p1(10.0) >= 97.5, "{}", p1(10.0));
    for delay in [1.0, 10.0] {
        let worker = &sim("hot-bunking", Policy::Ours, delay).services[1];
        assert!(
            worker.time_over_target_pct < 15.0,
            "{delay}: {}",
            worker.time_over_target_pct
        );
    }
}

/// `P(N <= k)` for a Poisson count with mean `mean`.
fn poisson_cdf(mean: f64, k: u32) -> f64 {
    let mut term = (-mean).exp();
    let mut sum = term;
    for i in 1..=k {
        term *= mean / f64::from(i);
        sum += term;
    }
    sum
}

/// The hot-bunking targets are reachable at all: at every second, web's 99th percentile of
/// requests in flight fits its target per instance on the capacity the worker's minimum
/// leaves, and both services' mean loads fit the capacity together. (The first version of the
/// scenario, web at 70 + 50 sin, failed this: at its peak no policy could keep web at target
/// more than ~95% of the time.)
#[test]
fn hot_bunking_is_feasible_for_a_perfect_policy() {
    let s = Scenario::builtin("hot-bunking", 1).unwrap();
    let (web, worker) = (&s.services[0], &s.services[1]);
    let web_room = s.capacity - worker.spec.min;
    let in_flight_cap = (web.spec.target * f64::from(web_room)).floor() as u32;
    let mut at_target = 0.0;
    let seconds = s.duration as u32;
    for t in 0..seconds {
        let t = f64::from(t);
        let web_load = web.rate.at(t) * web.service_time;
        let worker_load = worker.rate.at(t) * worker.service_time / f64::from(worker.slots);
        at_target += poisson_cdf(web_load, in_flight_cap);
        // Web at its target per instance plus the worker's busy instances fit the capacity.
        let web_instances = web_load / web.spec.target;
        assert!(
            web_instances + worker_load <= f64::from(s.capacity) * 0.9,
            "t {t}: web {web_instances:.2} + worker {worker_load:.2} instances"
        );
    }
    let bound = 100.0 * at_target / f64::from(seconds);
    assert!(bound >= 99.9, "best possible p1 at target {bound:.3}%");
    let ours = sim("hot-bunking", Policy::Ours, 1.0);
    assert!(ours.p1_sla_met_pct <= bound);
}

#[test]
fn microscaling_churns_and_ours_does_not() {
    for delay in [1.0, 10.0] {
        for name in SCENARIOS {
            let ours = sim(name, Policy::Ours, delay);
            let micro = sim(name, Policy::Microscaling, delay);
            assert!(
                ours.scaling_actions * 2 < micro.scaling_actions,
                "{name} {delay}s: {} vs {}",
                ours.scaling_actions,
                micro.scaling_actions
            );
            assert!(
                ours.time_over_target_pct < micro.time_over_target_pct
                    || micro.time_over_target_pct == 100.0
            );
        }
    }
}

#[test]
fn same_seed_same_report_and_seeds_matter() {
    let a = serde_json::to_string(&sim("bursty", Policy::Ours, 1.0)).unwrap();
    let b = serde_json::to_string(&sim("bursty", Policy::Ours, 1.0)).unwrap();
    assert_eq!(a, b);
    let s = Scenario::builtin("bursty", 2).unwrap();
    let c = serde_json::to_string(&run(&SimConfig::new(s, Policy::Ours, 1.0, 2))).unwrap();
    assert_ne!(a, c);
}

#[test]
fn report_has_the_issue_fields() {
    let v = serde_json::to_value(sim("spike", Policy::Keda, 10.0)).unwrap();
    for key in [
        "time_over_target_pct",
        "peak_queue_over_target",
        "p95_wait_s",
        "scaling_actions",
        "instance_seconds",
        "capacity_violations",
        "p1_sla_met_pct",
        "utilization_pct",
        "services",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["policy"], "keda");
    assert_eq!(v["services"][0]["name"], "web");
    assert_eq!(v["services"][1]["name"], "worker");
    assert!(v["services"][1]["completed"].as_u64().unwrap() > 1000);
}

#[test]
fn trace_parsing() {
    let t = parse_trace("# a comment\nsecond,arrivals\n0,4\n10, 12.5\n\n30,3\n").unwrap();
    assert_eq!(t.worker, vec![(0.0, 4.0), (10.0, 12.5), (30.0, 3.0)]);
    assert_eq!(t.web, None);
    assert_eq!(t.duration, 31.0);

    let t = parse_trace("second,web_arrivals,worker_arrivals\n0,40,2\n5,80,9\n").unwrap();
    assert_eq!(t.web, Some(vec![(0.0, 40.0), (5.0, 80.0)]));
    assert_eq!(t.worker, vec![(0.0, 2.0), (5.0, 9.0)]);

    let err = |text: &str| parse_trace(text).unwrap_err();
    assert_eq!(err("").line, 1);
    let e = err("time,arrivals\n0,1\n");
    assert_eq!(e.line, 1);
    assert!(e.to_string().starts_with("line 1: "), "{e}");
    assert_eq!(err("second,arrivals\n0,1\n1,2,3\n").line, 3);
    assert_eq!(err("second,arrivals\n0,1\n\n0,2\n").line, 4);
    assert_eq!(err("second,arrivals\n0,-1\n").line, 2);
    assert_eq!(err("second,arrivals\n0,abc\n").line, 2);
    assert_eq!(err("second,arrivals\n").line, 1);
    assert_eq!(err("second,arrivals,worker_arrivals\n0,1,2\n").line, 1);
    assert_eq!(err("second,bogus\n0,1\n").line, 1);
}

#[test]
fn trace_drives_the_simulation() {
    let t = parse_trace("second,arrivals\n0,2\n60,14\n120,2\n179,2\n").unwrap();
    let s = Scenario::from_trace("surge.csv", &t);
    assert_eq!(s.duration, 180.0);
    let r = run(&SimConfig::new(s, Policy::Ours, 1.0, 1));
    let worker = &r.services[1];
    // 2/s for 119 s and 14/s for 60 s: about 1078 jobs.
    assert!((950..1200).contains(&worker.arrived), "{}", worker.arrived);
    assert!(worker.max_instances >= 7, "{}", worker.max_instances);
}

fn scheduled(scenario: &str, delay: f64, csv: &str) -> Report {
    let s = Scenario::builtin(scenario, 1).expect("built-in scenario");
    run(&SimConfig {
        schedule: Some(parse_schedule(csv).unwrap()),
        ..SimConfig::new(s, Policy::Schedule, delay, 1)
    })
}

#[test]
fn a_schedule_is_followed_whatever_the_load() {
    // Step starts warm with web 2 and worker 2; the plan moves the worker only.
    let r = scheduled("step", 1.0, "second,worker\n0,3\n60,10\n300,4\n");
    assert_eq!(r.policy, "schedule");
    let (web, worker) = (&r.services[0], &r.services[1]);
    assert!(web.actions.is_empty(), "{:?}", web.actions);
    let moves: Vec<(f64, u32, u32)> = worker.actions.iter().map(|a| (a.t, a.from, a.to)).collect();
    assert_eq!(moves, [(0.0, 2, 3), (60.0, 3, 10), (300.0, 10, 4)]);
    assert_eq!(r.scaling_actions, 3);
}

#[test]
fn a_schedule_over_capacity_is_cut_by_priority_and_never_exceeds_it() {
    for delay in [1.0, 10.0] {
        let r = scheduled(
            "spike",
            delay,
            "second,web,worker\n0,12,12\n200,16,16\n400,1,\n",
        );
        assert_eq!(r.capacity_violations, 0, "start {delay}s");
        let (web, worker) = (&r.services[0], &r.services[1]);
        // Web, priority 1, gets its 12 and then all but the worker's minimum of 1; the worker
        // what is left (4 of its 12 at first).
        assert_eq!(web.max_instances, 15, "start {delay}s");
        assert_eq!(
            worker.actions.first().map(|a| a.to),
            Some(4),
            "{:?}",
            worker.actions
        );
        // Once web is down to 1, the worker's 16 of the second row is cut to the 15 left.
        assert_eq!(
            worker.actions.last().map(|a| a.to),
            Some(15),
            "{:?}",
            worker.actions
        );
        assert_eq!(worker.max_instances, 15);
    }
}

/// `docs/BENCHMARKS.md` ("What a schedule written with foresight can do"). On bursty, bursts
/// of 10 s come and go about as fast as instances can be moved, and a standing split of the
/// capacity, scaled once, is over target less of the time than every policy that follows the
/// load (seed 1, 1 s / 10 s start-up: 18.8% / 17.8%; ours 33.9% / 37.7%, HPA 27.4% / 45.1%,
/// KEDA 60.5% / 58.0%). At 10 s it meets all three of issue 5's targets against HPA. At 1 s
/// it does not (see `on_bursty_no_fixed_split_reaches_half_of_hpas_time_over_target`), and
/// the best schedule `scripts/scaler-oracle` finds within HPA's 5 actions misses too.
#[test]
fn on_bursty_a_standing_split_meets_the_targets_at_10_s_and_no_schedule_found_does_at_1_s() {
    let split = scheduled("bursty", 10.0, "second,web,worker\n0,8,8\n");
    let hpa = sim("bursty", Policy::Hpa, 10.0);
    assert_eq!(split.scaling_actions, 1);
    assert!(split.time_over_target_pct <= 0.5 * hpa.time_over_target_pct);
    assert!(split.instance_seconds <= 1.1 * hpa.instance_seconds);
    for policy in Policy::ALL {
        let r = sim("bursty", policy, 10.0);
        assert!(
            split.time_over_target_pct < r.time_over_target_pct,
            "{}: {}",
            policy.name(),
            r.time_over_target_pct
        );
    }
    // Measured 16.5% over target with 5 actions, against HPA's 27.4% (half: 13.7%).
    let best = scheduled("bursty", 1.0, "second,web,worker\n0,7,9\n310,8,\n580,,3\n");
    let hpa = sim("bursty", Policy::Hpa, 1.0);
    assert!(best.scaling_actions <= hpa.scaling_actions);
    assert!(best.time_over_target_pct > 0.5 * hpa.time_over_target_pct);
    assert!(
        best.time_over_target_pct < 16.6,
        "{}",
        best.time_over_target_pct
    );
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_microbadger"))
}

#[test]
fn cli_json_table_and_svg() {
    let out = bin()
        .args([
            "simulate",
            "--scenario",
            "step",
            "--policy",
            "hpa",
            "--json",
        ])
        .args(["--start-delay", "10", "--seed", "3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["scenario"], "step");
    assert_eq!(v["policy"], "hpa");
    assert_eq!(v["seed"], 3);
    assert_eq!(v["start_delay_s"], 10.0);

    let out = bin()
        .args(["simulate", "--scenario", "spike"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("policy ours"), "{text}");
    assert!(text.contains("capacity violations 0"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("a<b>&c.csv");
    std::fs::write(
        &trace,
        "second,web_arrivals,worker_arrivals\n0,40,2\n30,120,10\n59,40,2\n",
    )
    .unwrap();
    let svg = dir.path().join("out.svg");
    let out = bin()
        .args(["simulate", "--trace"])
        .arg(&trace)
        .args(["--policy", "keda", "--svg"])
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(drawn.starts_with("<svg"));
    assert!(drawn.contains("a&lt;b&gt;&amp;c.csv"), "title escaped");
    assert!(!drawn.contains("a<b>"));
    assert_eq!(
        drawn.matches("<polyline").count(),
        4,
        "2 panels x 2 services"
    );
}

/// `--config`: ours runs with the file's `[control]` table, the same file `up` reads.
#[test]
fn cli_config_changes_our_control_parameters() {
    let json = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["simulate", "--scenario", "diurnal", "--json"];
        args.extend_from_slice(extra);
        let out = bin().args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let same = dir.path().join("same.toml");
    std::fs::write(&same, "capacity = 6\n[control]\nscale_down_window = 60.0\n").unwrap();
    let longer = dir.path().join("longer.toml");
    std::fs::write(&longer, "[control]\nscale_down_window = 300.0\n").unwrap();
    let default = json(&[]);
    assert_eq!(json(&["--config", same.to_str().unwrap()]), default);
    let held = json(&["--config", longer.to_str().unwrap()]);
    assert!(
        held["scaling_actions"].as_u64() < default["scaling_actions"].as_u64(),
        "a 300 s window scales down less often: {} vs {}",
        held["scaling_actions"],
        default["scaling_actions"]
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[control]\nscale_down_window = 60.0\nwindow = 5\n").unwrap();
    let e = bad_input(&[
        "simulate",
        "--scenario",
        "step",
        "--config",
        bad.to_str().unwrap(),
    ]);
    assert!(e.contains("bad.toml") && e.contains("line 3"), "{e}");
    assert!(e.contains("unknown field `window`"), "{e}");
}

#[test]
fn cli_matrix_prints_ratios() {
    let out = bin()
        .args(["simulate", "--scenario", "step", "--policy", "all"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for p in ["ours", "hpa", "keda", "microscaling"] {
        assert!(text.contains(p), "{text}");
    }
    assert!(text.contains('x'), "ratios: {text}");
}

fn bad_input(args: &[&str]) -> String {
    let out = bin().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn cli_bad_input_is_one_line_and_exit_2() {
    let e = bad_input(&["simulate", "--scenario", "tsunami"]);
    assert!(e.contains("unknown scenario \"tsunami\""), "{e}");
    let e = bad_input(&["simulate", "--scenario", "step", "--policy", "pid"]);
    assert!(e.contains("unknown policy \"pid\""), "{e}");
    let e = bad_input(&["simulate", "--scenario", "step", "--start-delay=-1"]);
    assert!(e.contains("--start-delay"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("bad.csv");
    std::fs::write(&trace, "second,arrivals\n0,4\n5,four\n").unwrap();
    let e = bad_input(&["simulate", "--trace", trace.to_str().unwrap()]);
    assert!(e.contains("line 3"), "{e}");
    let missing = dir.path().join("missing.csv");
    let e = bad_input(&["simulate", "--trace", missing.to_str().unwrap()]);
    assert!(e.contains("missing.csv"), "{e}");

    let step = ["simulate", "--scenario", "step"];
    let e = bad_input(&[&step[..], &["--policy", "schedule"]].concat());
    assert!(e.contains("needs --schedule"), "{e}");
    let plan = dir.path().join("plan.csv");
    std::fs::write(&plan, "second,web,db\n0,2,2\n").unwrap();
    let plan = plan.to_str().unwrap();
    let e = bad_input(&[&step[..], &["--schedule", plan]].concat());
    assert!(e.contains("only by --policy schedule"), "{e}");
    let e = bad_input(&[&step[..], &["--policy", "schedule", "--schedule", plan]].concat());
    assert!(e.contains("\"db\" names no service of step"), "{e}");
    let bad = dir.path().join("bad-plan.csv");
    std::fs::write(&bad, "second,web\n0,2\n10,lots\n").unwrap();
    let e = bad_input(
        &[
            &step[..],
            &["--policy", "schedule", "--schedule", bad.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(e.contains("line 3") && e.contains("whole count"), "{e}");
}

#[test]
fn every_action_is_logged_with_its_time_and_counts() {
    let r = sim("bursty", Policy::Ours, 1.0);
    for s in &r.services {
        assert_eq!(s.actions.len() as u32, s.scaling_actions, "{}", s.name);
        assert!(s.scaling_actions > 0, "{}", s.name);
        for a in &s.actions {
            assert_ne!(a.from, a.to, "{}: {a:?}", s.name);
            assert!(a.to <= r.capacity && a.t >= 0.0 && a.t < r.duration_s);
        }
        // Each action starts from where the one before ended, in time order.
        for w in s.actions.windows(2) {
            assert_eq!(w[0].to, w[1].from, "{}: {w:?}", s.name);
            assert!(w[0].t <= w[1].t, "{}: {w:?}", s.name);
        }
    }
    // In the JSON report too.
    let json = serde_json::to_value(&r).unwrap();
    let web = &json["services"][0];
    assert_eq!(
        web["actions"].as_array().unwrap().len() as u64,
        web["scaling_actions"].as_u64().unwrap()
    );
    assert!(web["actions"][0]["t"].is_number() && web["actions"][0]["from"].is_number());
}

/// Why the actions target and the time-over-target target pull apart (issue 5): on bursty at
/// a 1 s start-up HPA makes 5 actions in 600 s, so ours may make 5 too: close to a fixed
/// split of the 16 instances. No fixed split (web n, worker m, no action at all) gets the
/// time over target to half of HPA's: the best, 8 and 8, is measured at 18.9% against
/// HPA's 27.4% (half: 13.7%). Web and worker bursts that coincide need more than 16.
#[test]
fn on_bursty_no_fixed_split_reaches_half_of_hpas_time_over_target() {
    let base = Scenario::builtin("bursty", 1).unwrap();
    let hpa = sim("bursty", Policy::Hpa, 1.0);
    assert!(hpa.scaling_actions <= 5, "{}", hpa.scaling_actions);
    let mut best = (f64::MAX, 0, 0);
    for web in 1..base.capacity {
        for worker in 1..=(base.capacity - web) {
            let mut s = base.clone();
            for (model, n) in s.services.iter_mut().zip([web, worker]) {
                model.spec.min = n;
                model.spec.max = n;
                model.initial_instances = n;
            }
            // Any policy holds a service whose minimum is its maximum.
            let r = run(&SimConfig::new(s, Policy::Hpa, 1.0, 1));
            assert_eq!(r.scaling_actions, 0);
            if r.time_over_target_pct < best.0 {
                best = (r.time_over_target_pct, web, worker);
            }
        }
    }
    assert!(
        best.0 > 0.5 * hpa.time_over_target_pct,
        "a fixed split {best:?} reaches half of HPA's {}",
        hpa.time_over_target_pct
    );
    assert_eq!((best.1, best.2), (8, 8), "{best:?}");
}

/// The README's profile for fewer scaling actions (longer hold, wider bands) does what the
/// README says, read the way `simulate --config` and `up` read it: on seed 1 it makes less
/// than half of the defaults' actions (measured 159 against 419; HPA 122) and meets the
/// actions target on more runs (5 of 12 against 1), and it pays in time over target (half
/// of HPA's on 8 of 12 against 10). `docs/BENCHMARKS.md`, "the damping frontier", has the
/// sweep this profile comes from.
#[test]
fn the_readmes_fewer_actions_profile_trades_time_over_target_for_actions() {
    let readme = include_str!("../README.md");
    let block = readme
        .split("```toml\n")
        .skip(1)
        .map(|b| &b[..b.find("```").unwrap()])
        .find(|b| b.contains("up_hysteresis"))
        .expect("README has the fewer-actions profile");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fewer.toml");
    std::fs::write(&path, block).unwrap();
    let overrides = microbadger::scaler::services::control_from_file(&path).unwrap();
    let fewer = microbadger::scaler::supervisor::control_params(&overrides);
    assert_eq!(
        (
            fewer.tolerance,
            fewer.scale_down_window,
            fewer.up_hysteresis
        ),
        (0.2, 600.0, 1.0)
    );

    let (mut actions, mut over_met, mut actions_met) = ([0u32; 2], [0; 2], [0; 2]);
    for delay in [1.0, 10.0] {
        for name in SCENARIOS {
            let hpa = sim(name, Policy::Hpa, delay);
            let profiles = [
                sim(name, Policy::Ours, delay),
                run(&SimConfig {
                    control: fewer.clone(),
                    ..SimConfig::new(Scenario::builtin(name, 1).unwrap(), Policy::Ours, delay, 1)
                }),
            ];
            for (i, r) in profiles.iter().enumerate() {
                assert_eq!(r.capacity_violations, 0, "{name} {delay}s");
                actions[i] += r.scaling_actions;
                over_met[i] += u32::from(r.time_over_target_pct <= 0.5 * hpa.time_over_target_pct);
                actions_met[i] += u32::from(r.scaling_actions <= hpa.scaling_actions);
            }
        }
    }
    assert!(
        2 * actions[1] < actions[0],
        "fewer-actions profile: {} actions against the defaults' {}",
        actions[1],
        actions[0]
    );
    assert!(actions_met[1] > actions_met[0], "{actions_met:?}");
    assert!(over_met[1] < over_met[0], "{over_met:?}");
}

fn ours_with(scenario: &str, delay: f64, in_flight_z: f64, essential_z: f64) -> Report {
    let s = Scenario::builtin(scenario, 1).expect("built-in scenario");
    run(&SimConfig {
        control: ControlParams {
            in_flight_z,
            essential_z,
            ..ControlParams::default()
        },
        ..SimConfig::new(s, Policy::Ours, delay, 1)
    })
}

/// Two of issue 5's targets pull web's headroom opposite ways: step asks for at most 1.1x
/// HPA's instance-seconds, and step holds web at 40 requests/s for the whole run, where HPA
/// keeps 3 instances (the mean of 8 in flight at 3 each) and a headroom for the 99th
/// percentile keeps 5; hot-bunking asks for web at target 99% of the time, which takes that
/// headroom and more. No setting of web's headroom (`in_flight_z`) and essential headroom
/// (`essential_z`) meets both on seed 1 (`scripts/scaler-headroom`, `docs/BENCHMARKS.md`):
/// step's instance-seconds need `in_flight_z` below 1.64, hot-bunking's 99% at both
/// start-ups needs 3.0 or more with `essential_z` 2.0. Each target alone is reachable; the
/// defaults (2.33, 1.0) meet neither of these two fully and keep the time-over target (the
/// setting that meets hot-bunking's meets that on 4 runs of 12 instead of 10).
#[test]
fn no_web_headroom_meets_both_steps_instance_seconds_and_hot_bunkings_99_percent() {
    let hpa_step = sim("step", Policy::Hpa, 1.0);
    let step_ok = |r: &Report| r.instance_seconds <= 1.1 * hpa_step.instance_seconds;
    let hot_ok = |z: f64, ez: f64| {
        [1.0, 10.0].iter().all(|&d| {
            let r = ours_with("hot-bunking", d, z, ez);
            r.p1_sla_met_pct >= 99.0 && r.utilization_pct >= 80.0
        })
    };
    for (z, ez) in [
        (1.64, 1.0),
        (2.0, 2.0),
        (2.33, 1.0),
        (2.33, 2.0),
        (3.0, 2.0),
    ] {
        let step = ours_with("step", 1.0, z, ez);
        assert!(
            !(step_ok(&step) && hot_ok(z, ez)),
            "in_flight_z {z}, essential_z {ez} meets both: issue 5 can have its targets"
        );
    }
    // Each alone is reachable.
    assert!(step_ok(&ours_with("step", 1.0, 1.0, 1.0)));
    assert!(hot_ok(3.0, 2.0));
    // What hot-bunking's setting costs elsewhere: the time-over target, seed 1.
    let runs: Vec<(&str, f64, Report)> = [1.0, 10.0]
        .iter()
        .flat_map(|&d| SCENARIOS.map(|name| (name, d, sim(name, Policy::Hpa, d))))
        .collect();
    let over_met = |z: f64, ez: f64| {
        runs.iter()
            .filter(|(name, delay, hpa)| {
                ours_with(name, *delay, z, ez).time_over_target_pct
                    <= 0.5 * hpa.time_over_target_pct
            })
            .count()
    };
    let (defaults, hot) = (over_met(2.33, 1.0), over_met(3.0, 2.0));
    assert!(
        hot + 5 <= defaults,
        "time over target met on {hot} runs with hot-bunking's setting, {defaults} with the defaults"
    );
}
