//! The render-cache fast path (`web::fast_path`): a render filed under the request path is
//! answered before routing, with exactly the headers, `304` handling and metrics the routed
//! handler gives the same render.

mod support;

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::Request;
use microbadger::web::cache::Cached;
use support::web::{TestApp, TestResponse};

const KEY: &str = "v1:image:docker.io/acme/web:1.0";
const PATH: &str = "/v1/images/acme/web:1.0";
const REPO: &str = "docker.io/acme/web";

/// Every header but `date`, by name.
fn headers(resp: &TestResponse) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &resp.headers {
        if name != "date" {
            out.entry(name.to_string())
                .or_default()
                .push(value.to_str().unwrap().to_string());
        }
    }
    out
}

/// The value of the one metrics line that starts with `metric` and holds every `part`.
fn metric(text: &str, metric: &str, parts: &[&str]) -> f64 {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(metric) && parts.iter().all(|p| l.contains(p)))
        .collect();
    assert_eq!(lines.len(), 1, "{metric} {parts:?} in:\n{text}");
    lines[0].rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn cached_renders_are_answered_before_routing_like_the_handler_answers_them() {
    let app = TestApp::new(|_| {}).await;
    let doc = Cached::new(&br#"{"ImageName":"acme/web"}"#[..], "application/json");

    // Filed under its normalised key only: the handler finds it (routed).
    app.state.cache.insert(KEY.into(), REPO.into(), doc.clone());
    let routed = app.get(PATH).await;
    assert_eq!(routed.status, 200, "{}", routed.text());
    assert_eq!(routed.body, doc.body.to_vec());

    // Filed under the request path too: the fast path finds it, with one lookup.
    app.state
        .cache
        .insert_with_alias(KEY.into(), Some(PATH), REPO.into(), doc.clone());
    let (hits, misses) = app.state.cache.counts();
    let fast = app.get(PATH).await;
    assert_eq!(app.state.cache.counts(), (hits + 1, misses));
    assert_eq!(fast.status, 200);
    assert_eq!(fast.body, routed.body);
    assert_eq!(headers(&fast), headers(&routed));
    for (name, value) in [
        ("etag", doc.etag.to_str().unwrap()),
        ("cache-control", "public, max-age=60, s-maxage=60"),
        ("content-type", "application/json"),
        ("access-control-allow-origin", "*"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
    ] {
        assert_eq!(fast.header(name), Some(value), "{name}");
    }
    assert!(fast.header("content-security-policy").is_some());

    // If-None-Match: 304 from the fast path as from the handler.
    let not_modified = app
        .request(
            Request::get(PATH)
                .header("if-none-match", doc.etag.clone())
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.header("etag"), fast.header("etag"));

    // Metrics: under the route's own label, one series whichever path answered.
    let text = app.get("/metrics").await.text();
    let route = r#"route="/v1/images/{*rest}""#;
    assert_eq!(
        metric(
            &text,
            "microbadger_http_requests_total",
            &[route, r#"status="200""#]
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            "microbadger_http_requests_total",
            &[route, r#"status="304""#]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "microbadger_http_request_duration_seconds_count",
            &[route]
        ),
        3.0
    );

    // A change drops both filings: the next answer is routed again.
    app.state.cache.invalidate(REPO);
    assert!(app.state.cache.is_empty());
}

#[tokio::test]
async fn only_get_and_head_take_the_fast_path() {
    let app = TestApp::new(|_| {}).await;
    let badge = Cached::new(&b"<svg/>"[..], "image/svg+xml;charset=utf-8");
    let path = "/badges/version/acme/web:1.0.svg";
    app.state.cache.insert(path.into(), REPO.into(), badge);
    let head = app
        .request(Request::head(path).body(Body::empty()).unwrap())
        .await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(app.state.cache.counts().0, 1);
    // A POST is routed (and there is no POST route for badges).
    let post = app
        .request(Request::post(path).body(Body::empty()).unwrap())
        .await;
    assert_eq!(post.status, 405);
    assert_eq!(app.state.cache.counts().0, 1);
}

#[tokio::test]
async fn fast_path_route_labels_are_the_routers_own() {
    let app = TestApp::new(|_| {}).await;
    // A bad name under each prefix is routed (nothing is cached) and answered 400 by its
    // handler, so the metrics show the label the router gives that route.
    for (prefix, _) in microbadger::web::FAST_PATH_ROUTES {
        let resp = app.get(&format!("{prefix}Bad..Name")).await;
        assert_eq!(resp.status, 400, "{prefix}: {}", resp.text());
    }
    let text = app.get("/metrics").await.text();
    for (prefix, route) in microbadger::web::FAST_PATH_ROUTES {
        let label = format!("route=\"{route}\"");
        assert_eq!(
            metric(
                &text,
                "microbadger_http_requests_total",
                &[&label, r#"status="400""#]
            ),
            1.0,
            "{prefix}"
        );
    }
}
