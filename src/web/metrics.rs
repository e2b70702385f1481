//! Prometheus metrics (`/metrics`) and the request log: one event per request with route,
//! status and duration, and the same labels on the counters.
//!
//! [`Metrics::start`] and [`Metrics::finish`] run on every request (called by the one
//! middleware in [`super::middleware`]), so they copy nothing they do not need: labels are the
//! router's `MatchedPath` and `&'static str`s, and the log event's fields are taken only when
//! the log is on.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::AppState;

/// A route label: the matched route pattern (`/badges/{*rest}`), never the requested path, so
/// the label set is fixed by the router and user input cannot grow it. Holding the router's own
/// `MatchedPath` makes a label a reference-count increment, not a copy.
#[derive(Clone, Debug)]
pub enum Route {
    Matched(MatchedPath),
    /// A route's pattern given by name (the render-cache fast path answers before routing).
    Fixed(&'static str),
    Unmatched,
}

impl Route {
    pub fn of(req: &Request) -> Route {
        match req.extensions().get::<MatchedPath>() {
            Some(p) => Route::Matched(p.clone()),
            None => Route::Unmatched,
        }
    }

    pub fn fixed(route: &'static str) -> Route {
        Route::Fixed(route)
    }

    pub fn as_str(&self) -> &str {
        match self {
            Route::Matched(p) => p.as_str(),
            Route::Fixed(r) => r,
            Route::Unmatched => "unmatched",
        }
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Route) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl std::hash::Hash for Route {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl prometheus_client::encoding::EncodeLabelValue for Route {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        prometheus_client::encoding::EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// The method as a label: the standard ones by name, anything else as `other` (an arbitrary
/// method name is user input and would grow the label set).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: Route,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: Route,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PriorityLabels {
    pub priority: String,
}

fn latency_histogram() -> Histogram {
    // 0.1 ms .. ~3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// This instance's load, read once a second by the microscaler's demand publisher: requests
/// being served now, and monotonic totals from which rates and mean latency are derived.
#[derive(Debug, Default)]
pub struct Load {
    in_flight: std::sync::Arc<std::sync::atomic::AtomicI64>,
    requests: std::sync::atomic::AtomicU64,
    latency_micros: std::sync::atomic::AtomicU64,
}

/// A reading of [`Load`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadSnapshot {
    pub in_flight: u64,
    pub requests_total: u64,
    pub latency_seconds_total: f64,
}

/// One request counted in flight until it is dropped: a request whose client hangs up is
/// dropped without reaching [`Load::finished`], and must leave the count all the same (or the
/// microscaler would see phantom load forever).
#[derive(Debug)]
pub struct InFlight(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Load {
    pub fn started(&self) -> InFlight {
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlight(self.in_flight.clone())
    }

    pub fn finished(&self, in_flight: InFlight, elapsed: std::time::Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        drop(in_flight);
        self.requests.fetch_add(1, Relaxed);
        self.latency_micros
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    pub fn snapshot(&self) -> LoadSnapshot {
        use std::sync::atomic::Ordering::Relaxed;
        LoadSnapshot {
            in_flight: self.in_flight.load(Relaxed).max(0) as u64,
            requests_total: self.requests.load(Relaxed),
            latency_seconds_total: self.latency_micros.load(Relaxed) as f64 / 1e6,
        }
    }
}

/// The web tier's metrics.
pub struct Metrics {
    /// Load for the microscaler (kept outside the Prometheus registry: read every second).
    pub load: Load,
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Set from [`Load`] when scraped (one counter per request instead of two).
    pub in_flight: Gauge,
    cache_hits: Gauge,
    cache_misses: Gauge,
    cache_entries: Gauge,
    queue_depth: Family<PriorityLabels, Gauge>,
    queue_in_flight: Gauge,
    queue_oldest_age: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("microbadger");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let in_flight = Gauge::default();
        let cache_hits = Gauge::default();
        let cache_misses = Gauge::default();
        let cache_entries = Gauge::default();
        let queue_depth = Family::<PriorityLabels, Gauge>::default();
        let queue_in_flight = Gauge::default();
        let queue_oldest_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being served",
            in_flight.clone(),
        );
        registry.register(
            "render_cache_hits",
            "Render cache hits since start",
            cache_hits.clone(),
        );
        registry.register(
            "render_cache_misses",
            "Render cache misses since start",
            cache_misses.clone(),
        );
        registry.register(
            "render_cache_entries",
            "Rendered responses held in memory",
            cache_entries.clone(),
        );
        registry.register(
            "queue_depth",
            "Due jobs waiting, by priority",
            queue_depth.clone(),
        );
        registry.register(
            "queue_in_flight",
            "Jobs held by workers",
            queue_in_flight.clone(),
        );
        registry.register(
            "queue_oldest_age_seconds",
            "Age of the oldest due job",
            queue_oldest_age.clone(),
        );
        Metrics {
            load: Load::default(),
            registry,
            requests,
            latency,
            in_flight,
            cache_hits,
            cache_misses,
            cache_entries,
            queue_depth,
            queue_in_flight,
            queue_oldest_age,
        }
    }
}

/// What [`Metrics::finish`] needs from the request, taken before it is handed on.
pub struct RequestStart {
    started: Instant,
    route: Route,
    method: &'static str,
    /// Only when the request log is on (`MICROBADGER_LOG=info`): the method, path and client
    /// for the log event. With the log off nothing is copied for it.
    log: Option<(Method, Uri, Option<IpAddr>)>,
    in_flight: InFlight,
}

impl Metrics {
    /// A request arrives: count it in flight, note its route and method.
    pub fn start(&self, req: &Request, route: Route) -> RequestStart {
        let started = Instant::now();
        let in_flight = self.load.started();
        let log = tracing::enabled!(tracing::Level::INFO).then(|| {
            let client = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip());
            (req.method().clone(), req.uri().clone(), client)
        });
        RequestStart {
            started,
            route,
            method: method_label(req.method()),
            log,
            in_flight,
        }
    }

    /// The response is ready: record its metrics and write the request's one log event.
    pub fn finish(&self, start: RequestStart, status: StatusCode) {
        let elapsed = start.started.elapsed();
        self.load.finished(start.in_flight, elapsed);
        let status = status.as_u16();
        if let Some((method, uri, client)) = &start.log {
            // Webhook tokens are secrets: they never reach the log. The path is logged
            // escaped: it is user input.
            let path = super::hooks::loggable_path(method, uri.path());
            let client = client.map(|c| c.to_string()).unwrap_or_default();
            let route = start.route.as_str();
            tracing::info!(%method, %route, path = %path.escape_debug(), status, ms = elapsed.as_secs_f64() * 1000.0, %client, "request");
        }
        self.requests
            .get_or_create(&RequestLabels {
                route: start.route.clone(),
                method: start.method,
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { route: start.route })
            .observe(elapsed.as_secs_f64());
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn scrape(State(state): State<AppState>) -> Response {
    let m = &state.metrics;
    let (hits, misses) = state.cache.counts();
    m.cache_hits.set(hits as i64);
    m.cache_misses.set(misses as i64);
    m.cache_entries.set(state.cache.len() as i64);
    m.in_flight.set(m.load.snapshot().in_flight as i64);
    match state.queue.stats().await {
        Ok(stats) => {
            for (priority, depth) in &stats.depth {
                m.queue_depth
                    .get_or_create(&PriorityLabels {
                        priority: priority.as_str().to_string(),
                    })
                    .set(*depth as i64);
            }
            m.queue_in_flight.set(stats.in_flight as i64);
            m.queue_oldest_age.set(stats.oldest_age_secs.unwrap_or(0.0));
        }
        Err(e) => tracing::warn!(error = %e, "queue stats unavailable for /metrics"),
    }
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &m.registry) {
        return super::WebError::internal(e).into_response();
    }
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}
