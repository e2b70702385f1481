//! The microscaler's web side and demand inputs, on real components:
//! - `/v1/scaler` and `/scaler` through the real router over a real SQLite store, with
//!   decisions seeded through [`Store::record_decision`]: the JSON's shape (an insta snapshot,
//!   and its OpenAPI schema), the page (CSS selectors), escaping, an empty history;
//! - a real served web instance publishing its load, and [`DemandReader`] reading it and the
//!   embedded queue.

mod support;

use std::time::{Duration, Instant};

use chrono::Utc;
use microbadger::queue::{JobKind, Priority};
use microbadger::scaler::demand::{DemandReader, WEB, WORKER};
use microbadger::scaler::{Clamp, Decision, Observation, ServiceDecision};
use microbadger::store::Store;
use scraper::{Html, Selector};
use serde_json::{Value, json};
use support::openapi::Validator;
use support::web::{TestApp, TestResponse};

// ---- fixtures ------------------------------------------------------------------------------

fn unix_now() -> f64 {
    Utc::now().timestamp_micros() as f64 / 1e6
}

/// The start of the current 15-second interval, so seeded decisions fall in known intervals.
fn aligned_now() -> f64 {
    (unix_now() / 15.0).floor() * 15.0
}

fn observation(backlog: f64, ready: u32, fresh: bool) -> Observation {
    Observation {
        now: 12.5,
        backlog,
        in_service: backlog.min(ready as f64),
        arrival_rate: Some(backlog / 4.0),
        completion_rate: if fresh { Some(1.25) } else { None },
        ready,
        starting: 1,
        stopping: 0,
        fresh,
    }
}

fn service(name: &str, backlog: f64, ready: u32, clamps: Vec<Clamp>) -> ServiceDecision {
    ServiceDecision {
        service: name.into(),
        observation: observation(backlog, ready, true),
        raw: backlog / 2.0,
        desired: ready + clamps.len() as u32,
        needed: Some(ready),
        essential: Some(ready.saturating_sub(1)),
        granted: ready,
        clamps,
    }
}

fn clamp(kind: &str, from: u32, to: u32, why: &str) -> Clamp {
    Clamp {
        kind: kind.into(),
        from,
        to,
        why: why.into(),
    }
}

/// A decision at `at` with a web and a worker service.
fn decision(at: f64, web_backlog: f64, worker_backlog: f64, web_ready: u32) -> Decision {
    Decision {
        at,
        capacity: 6,
        capacity_cpu_millis: None,
        capacity_memory_mib: None,
        services: vec![
            service(
                "web",
                web_backlog,
                web_ready,
                vec![clamp(
                    "capacity",
                    web_ready + 1,
                    web_ready,
                    "capacity is full: 6 of 6 units in use",
                )],
            ),
            service("worker", worker_backlog, 2, vec![]),
        ],
    }
}

async fn seed(store: &Store, decisions: &[Decision]) {
    for d in decisions {
        store.record_decision(d).await.expect("record decision");
    }
}

fn assert_json(resp: &TestResponse) -> Value {
    assert_eq!(resp.status.as_u16(), 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    resp.json()
}

/// Validates a `/v1/scaler` response against the OpenAPI document.
fn assert_documented(resp: &TestResponse) {
    let doc = microbadger::web::api::openapi_document();
    Validator { doc: &doc }.response("get", "/v1/scaler", resp);
}

/// Replaces the clock-dependent times with placeholders.
fn redact(mut v: Value) -> Value {
    v["now"] = json!("[now]");
    if v["latest"].is_object() {
        v["latest"]["at"] = json!("[at]");
    }
    if let Some(points) = v["history"]["points"].as_array_mut() {
        for (i, p) in points.iter_mut().enumerate() {
            p["at"] = json!(format!("[interval {i}]"));
        }
    }
    v
}

fn page(resp: &TestResponse) -> Html {
    assert_eq!(resp.status.as_u16(), 200, "{}", resp.text());
    assert_eq!(
        resp.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    Html::parse_document(&resp.text())
}

fn texts(html: &Html, selector: &str) -> Vec<String> {
    let sel = Selector::parse(selector).unwrap();
    html.select(&sel)
        .map(|e| e.text().collect::<String>().trim().to_string())
        .collect()
}

fn count(html: &Html, selector: &str) -> usize {
    html.select(&Selector::parse(selector).unwrap()).count()
}

fn attr(html: &Html, selector: &str, name: &str) -> Option<String> {
    html.select(&Selector::parse(selector).unwrap())
        .next()
        .and_then(|e| e.value().attr(name))
        .map(str::to_string)
}

// ---- /v1/scaler ----------------------------------------------------------------------------

#[tokio::test]
async fn json_has_the_latest_decision_and_the_hour_in_intervals() {
    let app = TestApp::new(|_| {}).await;
    let base = aligned_now();
    let mut last = decision(base - 15.0 + 4.0, 7.0, 40.0, 3);
    last.services[1].observation.fresh = false;
    last.services[1].observation.arrival_rate = None;
    last.services[1].raw = 5.0;
    last.services[1].clamps = vec![clamp(
        "stale_hold",
        5,
        2,
        "queue statistics unreadable for 2 ticks: holding 2",
    )];
    seed(
        &app.store,
        &[
            // More than an hour old: not shown.
            decision(base - 3700.0, 99.0, 99.0, 5),
            // Two in one interval: the peak and the last counts are kept.
            decision(base - 3000.0 + 1.0, 2.0, 10.0, 1),
            decision(base - 3000.0 + 7.0, 1.0, 30.0, 2),
            decision(base - 1500.0 + 2.0, 4.0, 0.0, 2),
            last,
        ],
    )
    .await;
    let resp = app.get("/v1/scaler").await;
    let v = assert_json(&resp);
    assert_documented(&resp);
    assert_eq!(v["history"]["points"].as_array().unwrap().len(), 3);
    assert_eq!(
        v["history"]["points"][0]["services"][1]["backlog_max"],
        json!(30.0)
    );
    assert_eq!(v["history"]["points"][0]["decisions"], json!(2));
    // Times are RFC 3339 UTC.
    let at = v["latest"]["at"].as_str().unwrap();
    let parsed = chrono::DateTime::parse_from_rfc3339(at).unwrap();
    assert!((parsed.timestamp() as f64 - (base - 11.0)).abs() < 1.0);
    // The needed part of desired is recorded and served (seeded as the granted count).
    let web = &v["latest"]["services"][0];
    assert!(web["needed"].is_u64(), "{web}");
    assert_eq!(web["needed"], web["granted"]);
    // So is its essential part (seeded as one less).
    assert_eq!(
        web["essential"].as_u64(),
        web["needed"].as_u64().map(|n| n.saturating_sub(1))
    );
    insta::assert_json_snapshot!("scaler_status", redact(v));
}

#[tokio::test]
async fn json_with_no_decisions_is_empty_not_an_error() {
    let app = TestApp::new(|_| {}).await;
    let resp = app.get("/v1/scaler").await;
    let v = assert_json(&resp);
    assert_documented(&resp);
    assert_eq!(v["latest"], Value::Null);
    assert_eq!(v["history"]["points"], json!([]));
    assert_eq!(v["history"]["window_seconds"], json!(3600));
    // Decisions older than the window count as none.
    seed(&app.store, &[decision(unix_now() - 4000.0, 1.0, 1.0, 1)]).await;
    let v = assert_json(&app.get("/v1/scaler").await);
    assert_eq!(v["latest"], Value::Null);
}

#[test]
fn scaler_is_in_the_openapi_document_with_its_tag() {
    let doc = microbadger::web::api::openapi_document();
    let op = &doc["paths"]["/v1/scaler"]["get"];
    assert_eq!(op["operationId"], "scaler");
    assert_eq!(op["tags"], json!(["scaler"]));
    assert!(
        doc["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "scaler")
    );
    for name in [
        "ScalerStatus",
        "ScalerDecision",
        "ScalerService",
        "ScalerInputs",
        "ScalerClamp",
        "ScalerHistory",
        "ScalerPoint",
        "ScalerPointService",
    ] {
        assert!(doc["components"]["schemas"][name].is_object(), "{name}");
    }
}

// ---- /scaler -------------------------------------------------------------------------------

#[tokio::test]
async fn dashboard_charts_the_hour_and_lists_the_latest_clamps() {
    let app = TestApp::new(|_| {}).await;
    let base = aligned_now();
    let decisions: Vec<Decision> = (0..20)
        .map(|i| {
            decision(
                base - 1200.0 + f64::from(i) * 60.0,
                f64::from(i % 5),
                f64::from(i * 3),
                1 + i % 3,
            )
        })
        .collect();
    seed(&app.store, &decisions).await;
    let html = page(&app.get("/scaler").await);

    assert_eq!(
        attr(&html, r#"meta[http-equiv="refresh"]"#, "content").as_deref(),
        Some("10")
    );
    assert_eq!(texts(&html, "h1"), ["Microscaler"]);
    // The site navigation links the dashboard.
    assert_eq!(count(&html, r#"nav.site-nav a[href="/scaler"]"#), 1);

    // The latest decision, one row per service.
    assert_eq!(
        texts(&html, "#services tr.service th.name"),
        ["web", "worker"]
    );
    assert_eq!(texts(&html, "#services tr.service td.backlog"), ["4", "57"]);
    assert_eq!(texts(&html, "#services tr.service td.ready"), ["2", "2"]);
    assert_eq!(texts(&html, "#services tr.service td.granted"), ["2", "2"]);
    assert_eq!(texts(&html, "#services tr.service td.desired"), ["3", "2"]);
    assert_eq!(texts(&html, "#services tr.service td.needed"), ["2", "2"]);
    assert_eq!(
        texts(&html, "#services tr.service td.essential"),
        ["1", "1"]
    );
    assert_eq!(
        texts(&html, "#services tr.service td.arrivals"),
        ["1.00/s", "14.25/s"]
    );
    assert_eq!(texts(&html, "#services td.reading"), ["fresh", "fresh"]);
    assert_eq!(texts(&html, "#capacity"), ["6 units"]);

    // Its clamps, with their reasons.
    assert_eq!(texts(&html, "#clamps tr.clamp th.name"), ["web"]);
    assert_eq!(texts(&html, "#clamps tr.clamp td.kind"), ["capacity"]);
    assert_eq!(texts(&html, "#clamps tr.clamp td.from"), ["3"]);
    assert_eq!(texts(&html, "#clamps tr.clamp td.to"), ["2"]);
    assert_eq!(
        texts(&html, "#clamps tr.clamp td.reason"),
        ["capacity is full: 6 of 6 units in use"]
    );

    // Charts: each service's demand, then instances; server-rendered SVG with lines.
    assert_eq!(count(&html, "svg.scaler-svg"), 3);
    assert_eq!(
        texts(&html, "svg.scaler-svg > title"),
        [
            "web: in-flight requests",
            "worker: queue depth (due jobs weighted by priority, plus jobs in flight)",
            "Instances per service",
        ]
    );
    // 20 decisions a minute apart: each is its own interval and more than 2.5 intervals from
    // the next, so each series is 20 short runs.
    let first_chart = Selector::parse("figure.scaler-chart:nth-of-type(1) polyline").unwrap();
    assert_eq!(html.select(&first_chart).count(), 20);
    let legend = texts(&html, "figure.scaler-chart:last-of-type .legend li");
    assert_eq!(legend.len(), 5);
    assert_eq!(legend[4], "capacity (now 6)");
    // Every point lies inside the view box.
    let polyline = Selector::parse("polyline").unwrap();
    for line in html.select(&polyline) {
        for pair in line.value().attr("points").unwrap().split(' ') {
            let (x, y) = pair.split_once(',').unwrap();
            let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
            assert!(
                (0.0..=720.0).contains(&x) && (0.0..=200.0).contains(&y),
                "{pair}"
            );
        }
    }
    assert_eq!(count(&html, "#no-decisions"), 0);
    // No inline script or style (the CSP forbids them).
    assert_eq!(count(&html, "script:not([src])"), 0);
    assert_eq!(count(&html, "[style], style"), 0);
}

/// A capacity that counts CPU and memory shows them in the JSON (documented) and on the
/// dashboard; one that does not has them null.
#[tokio::test]
async fn cpu_and_memory_capacity_are_shown_when_counted() {
    let app = TestApp::new(|_| {}).await;
    let now = unix_now();
    seed(&app.store, &[decision(now - 30.0, 1.0, 1.0, 1)]).await;
    let v = assert_json(&app.get("/v1/scaler").await);
    assert_eq!(v["latest"]["capacity_cpu_millis"], Value::Null);
    assert_eq!(v["latest"]["capacity_memory_mib"], Value::Null);
    let counted = Decision {
        capacity_cpu_millis: Some(4000),
        capacity_memory_mib: Some(8192),
        ..decision(now - 10.0, 1.0, 1.0, 1)
    };
    seed(&app.store, &[counted]).await;
    let resp = app.get("/v1/scaler").await;
    let v = assert_json(&resp);
    assert_documented(&resp);
    assert_eq!(v["latest"]["capacity"], json!(6));
    assert_eq!(v["latest"]["capacity_cpu_millis"], json!(4000));
    assert_eq!(v["latest"]["capacity_memory_mib"], json!(8192));
    let html = page(&app.get("/scaler").await);
    assert_eq!(
        texts(&html, "#capacity"),
        ["6 units, 4000m CPU, 8192 MiB memory"]
    );
}

#[tokio::test]
async fn dashboard_with_no_decisions_says_so() {
    let app = TestApp::new(|_| {}).await;
    let html = page(&app.get("/scaler").await);
    assert_eq!(count(&html, "#no-decisions"), 1);
    assert_eq!(count(&html, "#latest"), 0);
    assert_eq!(count(&html, "svg.scaler-svg"), 0);
}

#[tokio::test]
async fn service_names_and_reasons_are_escaped() {
    let app = TestApp::new(|_| {}).await;
    let hostile = r#"<script>alert("x")</script>&"#;
    let why = r#"<img src=x onerror=alert(1)> "quoted" & 'single'"#;
    let mut d = decision(unix_now() - 5.0, 1.0, 1.0, 1);
    d.services[0].service = hostile.into();
    d.services[0].clamps[0].kind = "<b>kind</b>".into();
    d.services[0].clamps[0].why = why.into();
    seed(&app.store, &[d]).await;

    let resp = app.get("/scaler").await;
    let body = resp.text();
    assert!(!body.contains("<script>alert"), "unescaped name");
    assert!(!body.contains("<img src=x"), "unescaped reason");
    assert!(!body.contains("<b>kind"), "unescaped kind");
    let html = page(&resp);
    assert_eq!(texts(&html, "#services th.name")[0], hostile);
    assert_eq!(texts(&html, "#clamps td.reason"), [why]);
    assert_eq!(texts(&html, "#clamps td.kind"), ["<b>kind</b>"]);
    assert_eq!(count(&html, "img[onerror]"), 0);
    assert_eq!(count(&html, "script:not([src])"), 0);
    // The chart titles and legends carry the name as text too.
    assert!(
        texts(&html, "svg.scaler-svg > title")[0].starts_with(hostile),
        "{:?}",
        texts(&html, "svg > title")
    );

    // JSON carries the strings as they are.
    let resp = app.get("/v1/scaler").await;
    let v = assert_json(&resp);
    assert_documented(&resp);
    assert_eq!(v["latest"]["services"][0]["service"], hostile);
    assert_eq!(v["latest"]["services"][0]["clamps"][0]["why"], why);
}

// ---- demand: publisher and reader ----------------------------------------------------------

async fn wait_for<T>(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn http_get(url: &str) -> u16 {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    agent.get(url).call().unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_instance_publishes_its_load_and_the_reader_sees_it() {
    let app = TestApp::new(|_| {}).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(microbadger::web::serve(
        listener,
        app.state.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut reader = DemandReader::new(app.store.clone(), app.queue.clone());

    // The instance's row appears within a few publish intervals, before any request.
    let first = wait_for("first load row", Duration::from_secs(10), async || {
        let rows = app
            .store
            .loads(WEB, Utc::now() - chrono::TimeDelta::seconds(30))
            .await
            .unwrap();
        rows.into_iter().next()
    })
    .await;
    assert_eq!(first.service, "web");
    assert!(first.instance.contains(&format!(":{}", std::process::id())));
    let before = reader.read(0.0).await;
    let web = &before[WEB];
    assert!(web.fresh);
    assert_eq!(web.arrival_rate, None, "one row per instance so far");

    // Five requests, then the published totals follow.
    for _ in 0..5 {
        let u = format!("{url}/healthz");
        assert_eq!(
            tokio::task::spawn_blocking(move || http_get(&u))
                .await
                .unwrap(),
            200
        );
    }
    let row = wait_for("published requests", Duration::from_secs(10), async || {
        let rows = app
            .store
            .loads(WEB, Utc::now() - chrono::TimeDelta::seconds(30))
            .await
            .unwrap();
        rows.into_iter()
            .find(|r| r.instance == first.instance && r.requests_total >= first.requests_total + 5)
    })
    .await;
    assert!(row.latency_seconds_total > first.latency_seconds_total);
    assert!(row.updated_at > first.updated_at);

    // The reader measures the instance's rate between the two rows it read: the first from
    // before any request, the second with the five requests in it.
    let after = reader.read(5.0).await;
    let web = &after[WEB];
    assert!(web.fresh);
    assert_eq!(web.now, 5.0);
    let rate = web.completion_rate.expect("measured");
    assert!(rate > 0.0, "{rate}");
    assert!(web.arrival_rate.expect("measured") >= 0.0);
    assert_eq!((web.ready, web.starting, web.stopping), (0, 0, 0));

    // Stopping the server deletes its row at once.
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(
        app.store
            .loads(WEB, Utc::now() - chrono::TimeDelta::seconds(60))
            .await
            .unwrap()
            .iter()
            .all(|r| r.instance != first.instance)
    );
}

#[tokio::test]
async fn worker_demand_from_the_real_queue() {
    let app = TestApp::new(|_| {}).await;
    let job = |n: u32| JobKind::Refresh {
        image: format!("docker.io/acme/app{n}"),
        tag: None,
    };
    let mut reader = DemandReader::new(app.store.clone(), app.queue.clone());
    for (n, p) in [
        (1, Priority::Urgent),
        (2, Priority::Normal),
        (3, Priority::Normal),
        (4, Priority::Background),
    ] {
        app.queue.enqueue(&job(n), p).await.unwrap();
    }
    let first = reader.read(100.0).await;
    let worker = &first[WORKER];
    // Urgent 2 + normal 1 + 1 + background 0.5.
    assert_eq!(worker.backlog, 4.5);
    assert_eq!(worker.in_service, 0.0);
    assert!(worker.fresh);
    assert_eq!(worker.arrival_rate, None);
    // No web instance: fresh zero demand.
    assert!(first[WEB].fresh);
    assert_eq!(first[WEB].backlog, 0.0);

    // Two more jobs arrive; one is taken (the urgent one) and one finished.
    app.queue.enqueue(&job(5), Priority::Normal).await.unwrap();
    app.queue
        .enqueue(&job(6), Priority::Background)
        .await
        .unwrap();
    let claimed = app.queue.claim("w1").await.unwrap().unwrap();
    assert_eq!(claimed.priority, Priority::Urgent);
    let second_claim = app.queue.claim("w1").await.unwrap().unwrap();
    app.queue.ack(&second_claim).await.unwrap();
    let second = reader.read(104.0).await;
    let worker = &second[WORKER];
    // Normal 1 + 1 (one of three taken and acked) + background 0.5 + 0.5, plus 1 in flight.
    assert_eq!(worker.backlog, 1.0 + 1.0 + 0.5 + 0.5 + 1.0);
    assert_eq!(worker.in_service, 1.0);
    assert_eq!(worker.arrival_rate, Some(2.0 / 4.0));
    assert_eq!(worker.completion_rate, Some(1.0 / 4.0));
}

#[tokio::test]
async fn failed_reads_hold_the_last_demand_and_are_not_fresh() {
    let app = TestApp::new(|_| {}).await;
    app.queue
        .enqueue(
            &JobKind::Refresh {
                image: "docker.io/acme/app".into(),
                tag: None,
            },
            Priority::Normal,
        )
        .await
        .unwrap();
    let mut reader = DemandReader::new(app.store.clone(), app.queue.clone());
    let good = reader.read(1.0).await;
    assert!(good[WORKER].fresh && good[WEB].fresh);
    assert_eq!(good[WORKER].backlog, 1.0);
    // The store and the queue share this SQLite pool: closing it fails both reads.
    app.store.sqlite_pool().unwrap().close().await;
    let held = reader.read(2.0).await;
    for name in [WEB, WORKER] {
        assert!(!held[name].fresh, "{name} read from a closed pool");
        assert_eq!(held[name].now, 2.0);
    }
    assert_eq!(held[WORKER].backlog, 1.0, "held, never zero");
}
