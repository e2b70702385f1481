//! An in-process web service over a temporary SQLite store and embedded queue, for router
//! tests: requests go through the real router and middleware with `tower::ServiceExt::oneshot`.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use tower::ServiceExt;

use microbadger::config::Config;
use microbadger::queue::{Queue, QueueOptions};
use microbadger::registry::{Credentials, RegistryClient};
use microbadger::store::Store;
use microbadger::web::AppState;

/// A distinct, well-formed digest per `n`, for seeded versions.
pub fn digest(n: u32) -> String {
    format!("sha256:{n:064x}")
}

/// A fixed instant plus `seconds`, so seeded pages and snapshots do not depend on the clock.
pub fn at(seconds: i64) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap() + chrono::Duration::seconds(seconds)
}

/// The web app over fresh backends; the temp dir lives as long as this value.
pub struct TestApp {
    pub state: AppState,
    pub store: Store,
    pub queue: Queue,
    pub dir: tempfile::TempDir,
}

/// A response, fully read.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl TestApp {
    /// `edit` may change the configuration (allow-list, public URL, ...) before start.
    pub async fn new(edit: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::from_lookup(|_| None).expect("default config");
        config.store.database_url = format!("sqlite://{}", dir.path().join("mb.db").display());
        config.store.redis_url = None;
        edit(&mut config);
        let store = Store::connect(&config.store.database_url)
            .await
            .expect("store");
        let queue = Queue::embedded(
            store.sqlite_pool().expect("sqlite").clone(),
            QueueOptions::default(),
        )
        .await
        .expect("queue");
        let registry =
            RegistryClient::with_credentials(config.registry.clone(), Credentials::default())
                .expect("registry client");
        let app = microbadger::app::App {
            config,
            store: store.clone(),
            queue: queue.clone(),
            registry,
        };
        let state = AppState::new(&app);
        TestApp {
            state,
            store,
            queue,
            dir,
        }
    }

    /// Send one request through the router, from 192.0.2.1 (a documentation address).
    pub async fn request(&self, req: Request<Body>) -> TestResponse {
        let mut req = req;
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 40000))));
        let resp = microbadger::web::router(self.state.clone())
            .oneshot(req)
            .await
            .expect("router is infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 64 * 1024 * 1024)
            .await
            .expect("body")
            .to_vec();
        TestResponse {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, uri: &str) -> TestResponse {
        self.request(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    pub async fn post_json(&self, uri: &str, body: &str) -> TestResponse {
        self.request(
            Request::post(uri)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }
}
