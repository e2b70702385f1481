//! Serving from memory.
//!
//! Two pieces:
//! - [`CachePolicy`]: each handler declares how its response may be cached; one middleware
//!   ([`cache_headers`]) turns that into `Cache-Control`, a strong `ETag`, and `304 Not
//!   Modified` for a matching `If-None-Match`.
//! - [`RenderCache`]: rendered badges, pages and API documents kept in memory, keyed by
//!   request and tagged with the repository they show, dropped when that repository changes.
//!   [`follow_changes`] follows the store's change sequence (every web instance does), so a
//!   change reaches every instance within one poll interval.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

/// How a response may be cached, declared by its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePolicy {
    /// Never cached (errors, inspecting pages, webhooks).
    NoStore,
    /// Cacheable by browsers and proxies for this many seconds.
    Public { max_age: u32 },
    /// Static files: long-lived.
    Static,
}

impl CachePolicy {
    /// Badges and API documents: short-lived so README badges follow pushes.
    pub const SHORT: CachePolicy = CachePolicy::Public { max_age: 60 };

    fn header(self) -> &'static str {
        match self {
            CachePolicy::NoStore => "no-store",
            CachePolicy::Public { max_age: 60 } => "public, max-age=60, s-maxage=60",
            CachePolicy::Public { max_age: 300 } => "public, max-age=300, s-maxage=300",
            CachePolicy::Public { .. } => "public, max-age=120, s-maxage=120",
            CachePolicy::Static => "public, max-age=86400",
        }
    }

    /// Attach this policy to a response.
    pub fn apply(self, mut resp: Response) -> Response {
        resp.extensions_mut().insert(self);
        resp
    }
}

/// Largest body hashed for an `ETag`.
const MAX_ETAG_BODY: usize = 4 * 1024 * 1024;

/// Apply the handler's [`CachePolicy`]: headers, `ETag`, and `304` on `If-None-Match`.
pub async fn cache_headers(req: Request, next: Next) -> Response {
    let if_none_match = req.headers().get(header::IF_NONE_MATCH).cloned();
    let is_get = req.method() == Method::GET || req.method() == Method::HEAD;
    let resp = next.run(req).await;
    let policy = resp
        .extensions()
        .get::<CachePolicy>()
        .copied()
        .unwrap_or(CachePolicy::NoStore);
    let (mut parts, body) = resp.into_parts();
    parts.headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(policy.header()),
    );
    if policy == CachePolicy::NoStore || !is_get || parts.status != StatusCode::OK {
        return Response::from_parts(parts, body);
    }
    let bytes = match axum::body::to_bytes(body, MAX_ETAG_BODY).await {
        Ok(b) => b,
        Err(_) => return Response::from_parts(parts, Body::empty()),
    };
    let etag = etag_of(&bytes);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        parts.headers.insert(header::ETAG, v);
    }
    let matches = if_none_match
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// A strong ETag: the body's length and two independent 64-bit SipHash values of it.
///
/// Not a cryptographic hash on purpose: this runs on every cacheable response (a cached page
/// is tens of kilobytes), SHA-256 cost more than serving the page from memory, and an ETag
/// only has to tell this resource's versions apart, not resist forgery.
pub fn etag_of(bytes: &[u8]) -> String {
    use std::hash::Hasher;
    let mut a = std::collections::hash_map::DefaultHasher::new();
    a.write(bytes);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    b.write_u8(0x5a);
    b.write(bytes);
    format!(
        "\"{:x}-{:016x}{:016x}\"",
        bytes.len(),
        a.finish(),
        b.finish()
    )
}

/// A rendered response kept in memory.
#[derive(Debug, Clone)]
pub struct Cached {
    pub body: Bytes,
    pub content_type: &'static str,
}

/// Rendered outputs by key, each tagged with the repository (`registry/name`) it shows.
#[derive(Default)]
pub struct RenderCache {
    entries: RwLock<HashMap<String, (String, Cached)>>,
    bytes: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Entries kept at most; past this the cache is emptied (simple, and rebuilt on demand).
const MAX_ENTRIES: usize = 100_000;
/// Body bytes kept at most (pages are tens of kilobytes; badges about one): the web process's
/// memory stays bounded however many images are viewed.
const MAX_BYTES: usize = 32 * 1024 * 1024;

impl RenderCache {
    pub fn get(&self, key: &str) -> Option<Cached> {
        let found = self
            .entries
            .read()
            .unwrap()
            .get(key)
            .map(|(_, c)| c.clone());
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub fn insert(&self, key: String, repository: String, value: Cached) {
        let size = (value.body.len() + key.len()) as u64;
        let mut map = self.entries.write().unwrap();
        if map.len() >= MAX_ENTRIES || self.bytes.load(Ordering::Relaxed) + size > MAX_BYTES as u64
        {
            map.clear();
            self.bytes.store(0, Ordering::Relaxed);
        }
        if let Some((_, old)) = map.insert(key.clone(), (repository, value)) {
            self.bytes
                .fetch_sub((old.body.len() + key.len()) as u64, Ordering::Relaxed);
        }
        self.bytes.fetch_add(size, Ordering::Relaxed);
    }

    /// Drop every entry that shows this repository.
    pub fn invalidate(&self, repository: &str) {
        let mut freed = 0u64;
        self.entries.write().unwrap().retain(|key, (repo, c)| {
            let keep = repo != repository;
            if !keep {
                freed += (c.body.len() + key.len()) as u64;
            }
            keep
        });
        self.bytes.fetch_sub(freed, Ordering::Relaxed);
    }

    pub fn clear(&self) {
        self.entries.write().unwrap().clear();
        self.bytes.store(0, Ordering::Relaxed);
    }

    /// Body bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.entries.read().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (hits, misses) so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

/// How often each web instance looks for changes in the store.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

/// Follow the store's change sequence and drop cached renders of changed repositories, until
/// `shutdown` resolves.
pub async fn follow_changes(
    store: crate::store::Store,
    cache: std::sync::Arc<RenderCache>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut seq = match store.latest_seq().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the change sequence; clearing the cache on every poll");
            0
        }
    };
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(FOLLOW_INTERVAL) => {}
        }
        match store.events_since(seq, 1000).await {
            Ok(events) => {
                for e in &events {
                    cache.invalidate(&format!("{}/{}", e.registry, e.name));
                    seq = seq.max(e.seq);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "following changes failed; clearing the cache");
                cache.clear();
            }
        }
    }
}

/// With Redis configured: subscribe to the queue's change channel and drop cached renders of
/// each announced repository at once. Reconnects after a Redis restart; runs until
/// `shutdown` resolves. (The store-sequence follower runs beside it, for lost messages.)
pub async fn follow_announcements(
    url: String,
    channel: String,
    cache: std::sync::Arc<RenderCache>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use futures::StreamExt;
    tokio::pin!(shutdown);
    loop {
        let subscription = async {
            let client = redis::Client::open(url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            _ = &mut shutdown => return,
            p = subscription => p,
        };
        match pubsub {
            Ok(mut pubsub) => {
                let mut messages = pubsub.on_message();
                loop {
                    tokio::select! {
                        _ = &mut shutdown => return,
                        m = messages.next() => match m {
                            Some(msg) => {
                                if let Ok(repository) = msg.get_payload::<String>() {
                                    cache.invalidate(&repository);
                                }
                            }
                            None => break,
                        },
                    }
                }
                tracing::warn!("change announcements: connection lost; resubscribing");
            }
            Err(e) => {
                tracing::warn!(error = %e, "change announcements: cannot subscribe; retrying")
            }
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalidation_is_per_repository() {
        let c = RenderCache::default();
        let v = Cached {
            body: Bytes::from_static(b"x"),
            content_type: "text/plain",
        };
        c.insert("a1".into(), "docker.io/library/a".into(), v.clone());
        c.insert("a2".into(), "docker.io/library/a".into(), v.clone());
        c.insert("b".into(), "docker.io/library/b".into(), v);
        c.invalidate("docker.io/library/a");
        assert!(c.get("a1").is_none() && c.get("a2").is_none());
        assert!(c.get("b").is_some());
        assert_eq!(c.counts(), (1, 2));
        assert_eq!(c.bytes(), 2, "one entry of 1 byte body + 1 byte key left");
    }

    #[test]
    fn memory_is_bounded_by_bytes() {
        let c = RenderCache::default();
        let page = Cached {
            body: Bytes::from(vec![b'x'; 64 * 1024]),
            content_type: "text/html",
        };
        for n in 0..2000 {
            c.insert(format!("page{n}"), format!("repo{n}"), page.clone());
            assert!(c.bytes() <= MAX_BYTES as u64);
        }
        assert!(!c.is_empty());
    }

    #[test]
    fn etags_are_strong_and_stable() {
        assert_eq!(etag_of(b"abc"), etag_of(b"abc"));
        assert_ne!(etag_of(b"abc"), etag_of(b"abd"));
        assert!(etag_of(b"").starts_with('"'));
    }
}
