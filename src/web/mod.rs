//! The web service: pages, SVG badges, the JSON API and webhook endpoints.
//!
//! # Layout
//! - this file: [`AppState`] (built once), [`router`] (every route, in one place),
//!   [`middleware`] (the stack, in one place) and [`serve`].
//! - [`lookup`]: image names in URLs -> what the store knows (or an URGENT inspection).
//! - [`pages`]: HTML pages (askama templates in `templates/`, assets in `static/`).
//! - [`badges`]: `/badges/...svg`, rendered by [`crate::badge`].
//! - [`api`]: `/v1/...` JSON (MicroBadger's field names) and the OpenAPI document.
//! - [`hooks`]: Docker Hub and registry webhooks.
//! - [`cache`]: [`cache::CachePolicy`] and the in-memory render cache.
//! - [`error`]: [`error::WebError`], rendered as JSON, SVG or HTML by route.
//! - [`metrics`]: Prometheus metrics and the request log.
//! - [`scaler`]: the microscaler's decisions: `/v1/scaler` (JSON) and the `/scaler` dashboard.
//!
//! Handlers are named for what they do and return `Result<Response, WebError>`.

pub mod api;
pub mod badges;
pub mod cache;
pub mod error;
pub mod hooks;
pub mod lookup;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod ratelimit;
pub mod scaler;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::config::Config;
use crate::queue::Queue;
use crate::registry::RegistryClient;
use crate::store::Store;

pub use error::WebError;

/// Largest request body accepted (webhook payloads are small JSON documents).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The content security policy: no inline script, nothing from other origins.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Everything a handler needs, built once.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub queue: Queue,
    /// Used only for the allow-list check; the web tier never calls registries.
    pub registry: RegistryClient,
    pub config: Arc<Config>,
    pub cache: Arc<cache::RenderCache>,
    pub metrics: Arc<metrics::Metrics>,
    pub limiter: Arc<ratelimit::RateLimiter>,
}

impl AppState {
    pub fn new(app: &crate::app::App) -> AppState {
        AppState {
            store: app.store.clone(),
            queue: app.queue.clone(),
            registry: app.registry.clone(),
            config: Arc::new(app.config.clone()),
            cache: Arc::new(cache::RenderCache::default()),
            metrics: Arc::new(metrics::Metrics::default()),
            limiter: Arc::new(ratelimit::RateLimiter::per_minute(
                app.config.web.queue_rate_per_minute,
            )),
        }
    }

    /// The public base URL, without a trailing slash.
    pub fn public_url(&self) -> &str {
        &self.config.web.public_url
    }
}

/// Every route.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        // Pages
        .route("/", get(pages::home))
        .route("/search", get(pages::search))
        .route(
            "/images/{*rest}",
            get(pages::image).post(hooks::dockerhub_legacy),
        )
        .route("/api", get(pages::api_docs))
        .route("/static/{*file}", get(pages::static_file))
        .route("/scaler", get(scaler::dashboard))
        // Badges
        .route("/badges/{*rest}", get(badges::badge))
        // JSON API
        .route("/v1/images/{*rest}", get(api::image))
        .route("/v1/search", get(api::search))
        .route("/v1/recent", get(api::recent))
        .route("/v1/best", get(api::best))
        .route("/v1/openapi.json", get(api::openapi))
        .route("/v1/scaler", get(scaler::status))
        // Webhooks
        .route("/hooks/dockerhub/{*rest}", post(hooks::dockerhub))
        .route("/hooks/registry/{token}", post(hooks::registry))
        // Operations
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::scrape))
        .fallback(not_found);
    let shared = Arc::new(Stack {
        metrics: state.metrics.clone(),
        cache: state.cache.clone(),
    });
    let routed = middleware(routes, shared.clone()).with_state(state);
    fast_path(routed, shared)
}

/// The middleware stack, in one place and in one layer: metrics and the request log, the
/// timeout, error rendering, caching headers, CORS and the security headers ([`stack`]),
/// then the body limit for the handlers' extractors. (Cached renders are served before
/// routing by [`fast_path`], which applies the same headers and metrics.)
///
/// One hand-ordered function instead of a layer per concern: axum boxes every
/// `Router::layer` around every route and clones it per request, and a cached badge is
/// served in a few microseconds, so eight layers cost more than the badge itself.
fn middleware(routes: Router<AppState>, shared: Arc<Stack>) -> Router<AppState> {
    routes.layer(
        tower::ServiceBuilder::new()
            .layer(axum::middleware::from_fn_with_state(shared, stack))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
    )
}

/// What [`stack`] and [`fast_path`] need (not the whole [`AppState`], which would be cloned
/// per request).
struct Stack {
    metrics: Arc<metrics::Metrics>,
    cache: Arc<cache::RenderCache>,
}

/// Headers on every response, set over whatever the handler set.
const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (header::CONTENT_SECURITY_POLICY, CSP),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
    (header::X_FRAME_OPTIONS, "DENY"),
];

/// CORS: any origin may read (GET and HEAD; nothing here uses cookies). `Vary` lists the
/// preflight's request headers, as tower-http's `CorsLayer` does.
const CORS_VARY: &str = "origin, access-control-request-method, access-control-request-headers";
const CORS_METHODS: &str = "GET,HEAD";

/// The routes whose handlers file their renders under the request path
/// ([`cache::RenderCache::insert_with_alias`]; a badge's key is its path), by path prefix, with
/// the route each is registered under in [`router`] (its metrics label).
pub const FAST_PATH_ROUTES: [(&str, &str); 3] = [
    ("/badges/", "/badges/{*rest}"),
    ("/images/", "/images/{*rest}"),
    ("/v1/images/", "/v1/images/{*rest}"),
];

/// Serve renders filed under the request path straight from memory, before routing: a README
/// badge, an image page or an API document asked for again is a map lookup, with the same
/// `Cache-Control`, `ETag` / `304`, CORS and security headers, metrics (under the route's own
/// label) and log event as when its handler answered. Anything else goes to `routed`.
fn fast_path(routed: Router, shared: Arc<Stack>) -> Router {
    use tower::ServiceExt;
    Router::new().fallback_service(tower::service_fn(move |req: axum::extract::Request| {
        let routed = routed.clone();
        let s = shared.clone();
        async move {
            let hit = (req.method() == Method::GET || req.method() == Method::HEAD)
                .then(|| req.uri().path_and_query())
                .flatten()
                .and_then(|pq| {
                    let (_, route) = FAST_PATH_ROUTES
                        .iter()
                        .find(|(prefix, _)| pq.path().starts_with(prefix))?;
                    Some((*route, s.cache.hit(pq.as_str())?))
                });
            let Some((route, hit)) = hit else {
                return routed.oneshot(req).await;
            };
            let start = s.metrics.start(&req, metrics::Route::fixed(route));
            let if_none_match = req.headers().get(header::IF_NONE_MATCH);
            let mut resp = cache::finish(hit.response(), true, if_none_match).await;
            if req.method() == Method::HEAD {
                // As axum does for a routed HEAD: the GET's headers, no body.
                *resp.body_mut() = axum::body::Body::empty();
            }
            public_headers(&mut resp);
            s.metrics.finish(start, resp.status());
            Ok(resp)
        }
    }))
}

/// CORS (for anything but a preflight) and security headers.
fn public_headers(resp: &mut Response) {
    let headers = resp.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static(CORS_VARY));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    security_headers(resp);
}

fn security_headers(resp: &mut Response) {
    let headers = resp.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// Every routed request, in order: count it and note its route; answer a CORS preflight, or
/// run the handler under [`REQUEST_TIMEOUT`]; render a [`WebError`] as JSON, SVG or HTML;
/// apply the [`cache::CachePolicy`] (`Cache-Control`, `ETag`, `304`); add CORS and security
/// headers; record metrics and the log event.
async fn stack(
    State(s): State<Arc<Stack>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let start = s.metrics.start(&req, metrics::Route::of(&req));
    let method = req.method().clone();
    let is_get = method == Method::GET || method == Method::HEAD;
    let resp = if method == Method::OPTIONS {
        let mut resp = preflight();
        security_headers(&mut resp);
        resp
    } else {
        let form = error::ErrorForm::of(&method, req.uri().path());
        let if_none_match = req.headers().get(header::IF_NONE_MATCH).cloned();
        let resp = match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
            Ok(resp) => resp,
            Err(_) => WebError::Unavailable.into_response(),
        };
        let resp = error::render(form, resp);
        let mut resp = cache::finish(resp, is_get, if_none_match.as_ref()).await;
        public_headers(&mut resp);
        resp
    };
    s.metrics.finish(start, resp.status());
    resp
}

/// A CORS preflight: any origin, GET and HEAD.
fn preflight() -> Response {
    let mut resp = Response::new(axum::body::Body::empty());
    let headers = resp.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static(CORS_VARY));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(CORS_METHODS),
    );
    resp
}

async fn not_found() -> WebError {
    WebError::NotFound("no such page".into())
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the store and queue answer.
async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.store.latest_seq().await;
    let queue = state.queue.stats().await;
    match (store, queue) {
        (Ok(_), Ok(_)) => "ready".into_response(),
        (s, q) => {
            tracing::warn!(store = ?s.err(), queue = ?q.err(), "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
        }
    }
}

/// Bind with `SO_REUSEPORT`, so several local web processes share one port and the kernel
/// spreads connections over them.
pub fn bind_reuseport(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Serve until `shutdown` resolves; in-flight requests finish first. Also keeps the render
/// cache fresh: Redis pub/sub announcements when the queue is on Redis, and the store's change
/// sequence always (the only source with the embedded queue; a safety net with Redis).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let follower = tokio::spawn(cache::follow_changes(
        state.store.clone(),
        state.cache.clone(),
        {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        },
    ));
    let announcements = state.queue.change_subscription().map(|(url, channel)| {
        let mut rx = stop_rx.clone();
        tokio::spawn(cache::follow_announcements(
            url,
            channel,
            state.cache.clone(),
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        ))
    });
    // This instance's load, for the microscaler's demand reader; its row is deleted on stop.
    let publisher = tokio::spawn(crate::scaler::demand::publish_web_load(
        state.store.clone(),
        crate::scaler::demand::instance_id(),
        state.metrics.clone(),
        {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        },
    ));
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await;
    let _ = follower.await;
    let _ = publisher.await;
    if let Some(a) = announcements {
        let _ = a.await;
    }
    result
}
