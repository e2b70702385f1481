//! Serving from memory.
//!
//! Two pieces:
//! - [`CachePolicy`]: each handler declares how its response may be cached; the middleware
//!   turns that into `Cache-Control`, a strong `ETag`, and `304 Not Modified` for a matching
//!   `If-None-Match` ([`finish`]).
//! - [`RenderCache`]: rendered badges, pages and API documents kept in memory, keyed by
//!   request and tagged with the repository they show, dropped when that repository changes.
//!   [`follow_changes`] follows the store's change sequence (every web instance does), so a
//!   change reaches every instance within one poll interval.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
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

/// Apply the handler's [`CachePolicy`] to its response: `Cache-Control`, a strong `ETag`, and
/// `304 Not Modified` when `If-None-Match` names it. Called by the one middleware
/// ([`super::middleware`]) for every response.
///
/// A response made by [`Cached::response`] already carries its headers, with the `ETag`
/// computed once when it was rendered: only the `If-None-Match` comparison is left. Any other
/// cacheable `200` is buffered and hashed here.
pub async fn finish(resp: Response, is_get: bool, if_none_match: Option<&HeaderValue>) -> Response {
    let (mut parts, body) = resp.into_parts();
    let policy = match parts.extensions.get::<CachePolicy>() {
        Some(p) => *p,
        // From the render cache: headers set with the body.
        None if parts.headers.contains_key(header::ETAG) => CachePolicy::SHORT,
        None => CachePolicy::NoStore,
    };
    parts.headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(policy.header()),
    );
    if policy == CachePolicy::NoStore || !is_get || parts.status != StatusCode::OK {
        return Response::from_parts(parts, body);
    }
    let (etag, body) = match parts.headers.get(header::ETAG) {
        Some(etag) => (etag.clone(), body),
        None => {
            let bytes = match axum::body::to_bytes(body, MAX_ETAG_BODY).await {
                Ok(b) => b,
                Err(_) => return Response::from_parts(parts, Body::empty()),
            };
            let etag = etag_of(&bytes);
            parts.headers.insert(header::ETAG, etag.clone());
            (etag, Body::from(bytes))
        }
    };
    if if_none_match.is_some_and(|v| names(v, &etag)) {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, body)
}

/// Whether an `If-None-Match` value names this `ETag` (or is `*`).
fn names(if_none_match: &HeaderValue, etag: &HeaderValue) -> bool {
    let etag = etag.as_bytes();
    if_none_match
        .as_bytes()
        .split(|b| *b == b',')
        .map(|t| t.trim_ascii())
        .any(|t| t == etag || t == b"*")
}

/// A strong ETag: the body's length and two independent 64-bit SipHash values of it.
///
/// Not a cryptographic hash on purpose: an ETag only has to tell this resource's versions
/// apart, not resist forgery, and SHA-256 of a page cost more than serving it from memory.
/// Rendered badges, pages and API documents are hashed once, when rendered ([`Cached::new`]).
pub fn etag_of(bytes: &[u8]) -> HeaderValue {
    use std::hash::Hasher;
    let mut a = std::collections::hash_map::DefaultHasher::new();
    a.write(bytes);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    b.write_u8(0x5a);
    b.write(bytes);
    let tag = format!(
        "\"{:x}-{:016x}{:016x}\"",
        bytes.len(),
        a.finish(),
        b.finish()
    );
    HeaderValue::from_maybe_shared(Bytes::from(tag)).expect("hex digits and quotes")
}

/// A rendered response kept in memory, with its `ETag`. Served with [`CachePolicy::SHORT`].
#[derive(Debug, Clone)]
pub struct Cached {
    pub body: Bytes,
    pub content_type: &'static str,
    pub etag: HeaderValue,
}

impl Cached {
    /// A rendered body; its `ETag` is computed here, once.
    pub fn new(body: impl Into<Bytes>, content_type: &'static str) -> Cached {
        let body = body.into();
        Cached {
            etag: etag_of(&body),
            body,
            content_type,
        }
    }

    /// The `200` for this render, with every header [`finish`] would add (nothing is hashed
    /// again, nothing allocated but the response itself) and its `content-length`.
    pub fn response(&self) -> Response {
        let mut resp = Response::new(Body::from(self.body.clone()));
        let headers = resp.headers_mut();
        // Room for these three, the middleware's CORS and security headers and hyper's
        // `content-length`, so the map is allocated once.
        headers.reserve(RESPONSE_HEADERS);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(CachePolicy::SHORT.header()),
        );
        headers.insert(header::ETAG, self.etag.clone());
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        resp
    }
}

/// Headers on a response served from the render cache, once the middleware is done with it.
const RESPONSE_HEADERS: usize = 12;

/// One entry: the repository it shows, the render, and the bytes charged for it.
struct Entry {
    repository: String,
    cached: Cached,
    charged: u64,
}

/// Rendered outputs by key, each tagged with the repository (`registry/name`) it shows.
///
/// Keys are chosen by the handlers. A badge's key is its request path and query, so the
/// middleware's fast path ([`RenderCache::hit`]) finds it without running the handler; a page
/// or API document is keyed by the normalised image name, and also filed under the request
/// path it was asked for ([`RenderCache::insert`]'s `alias`) for the same fast path.
#[derive(Default)]
pub struct RenderCache {
    entries: RwLock<HashMap<String, Entry>>,
    bytes: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Entries kept at most; past this the cache is emptied (simple, and rebuilt on demand).
const MAX_ENTRIES: usize = 100_000;
/// Body bytes kept at most (pages are tens of kilobytes; badges about one): the web process's
/// memory stays bounded however many images are viewed.
const MAX_BYTES: usize = 32 * 1024 * 1024;

/// What an alias costs besides its key (the body is shared with its entry).
const ALIAS_BYTES: u64 = 64;

impl RenderCache {
    /// A render by key; counted as a hit or a miss.
    pub fn get(&self, key: &str) -> Option<Cached> {
        let found = self
            .entries
            .read()
            .unwrap()
            .get(key)
            .map(|e| e.cached.clone());
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The middleware's fast path: the render filed under this request path and query, if
    /// any. Counted only when found (a miss goes on to the handler, which counts it).
    pub fn hit(&self, path_and_query: &str) -> Option<Cached> {
        let found = self
            .entries
            .read()
            .unwrap()
            .get(path_and_query)
            .map(|e| e.cached.clone());
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Keep a render under `key`, dropped when `repository` changes.
    pub fn insert(&self, key: String, repository: String, value: Cached) {
        self.insert_with_alias(key, None, repository, value)
    }

    /// [`RenderCache::insert`], also filing the render under `alias` (the request path it was
    /// asked for, when that is not `key`) for the middleware's fast path; both are dropped
    /// together.
    pub fn insert_with_alias(
        &self,
        key: String,
        alias: Option<&str>,
        repository: String,
        value: Cached,
    ) {
        let alias = alias.filter(|a| *a != key);
        let body = value.body.len() as u64;
        let size = body + key.len() as u64 + alias.map_or(0, |a| a.len() as u64 + ALIAS_BYTES);
        let mut map = self.entries.write().unwrap();
        if map.len() >= MAX_ENTRIES || self.bytes.load(Ordering::Relaxed) + size > MAX_BYTES as u64
        {
            map.clear();
            self.bytes.store(0, Ordering::Relaxed);
        }
        let mut put = |key: String, charged: u64| {
            let entry = Entry {
                repository: repository.clone(),
                cached: value.clone(),
                charged,
            };
            if let Some(old) = map.insert(key, entry) {
                self.bytes.fetch_sub(old.charged, Ordering::Relaxed);
            }
            self.bytes.fetch_add(charged, Ordering::Relaxed);
        };
        if let Some(alias) = alias {
            put(alias.to_owned(), alias.len() as u64 + ALIAS_BYTES);
        }
        put(key.clone(), body + key.len() as u64);
    }

    /// Drop every entry that shows this repository.
    pub fn invalidate(&self, repository: &str) {
        let mut freed = 0u64;
        self.entries.write().unwrap().retain(|_, e| {
            let keep = e.repository != repository;
            if !keep {
                freed += e.charged;
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
        let v = Cached::new(Bytes::from_static(b"x"), "text/plain");
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
        let page = Cached::new(vec![b'x'; 64 * 1024], "text/html");
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
        let e = etag_of(b"");
        assert!(e.to_str().unwrap().starts_with('"') && e.to_str().unwrap().ends_with('"'));
        assert_eq!(Cached::new(&b"abc"[..], "text/plain").etag, etag_of(b"abc"));
    }

    #[test]
    fn aliases_share_the_render_and_go_with_the_repository() {
        let c = RenderCache::default();
        let v = Cached::new(Bytes::from_static(b"page"), "text/html");
        c.insert_with_alias(
            "page:/images/a".into(),
            Some("/images/a"),
            "docker.io/library/a".into(),
            v.clone(),
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c.bytes(), 4 + 14 + 9 + ALIAS_BYTES);
        // The fast path counts hits only.
        assert!(c.hit("/images/b").is_none());
        assert_eq!(c.counts(), (0, 0));
        assert_eq!(c.hit("/images/a").unwrap().etag, v.etag);
        assert_eq!(c.counts(), (1, 0));
        // An alias equal to the key is the key.
        c.insert_with_alias("/badges/x".into(), Some("/badges/x"), "r".into(), v.clone());
        assert_eq!(c.len(), 3);
        c.invalidate("docker.io/library/a");
        assert_eq!(c.len(), 1);
        assert_eq!(c.bytes(), 4 + 9);
        // Re-inserting charges once.
        c.insert("/badges/x".into(), "r".into(), v);
        assert_eq!(c.bytes(), 4 + 9);
    }

    async fn finished(resp: Response, if_none_match: Option<&str>) -> Response {
        let inm = if_none_match.map(|v| HeaderValue::from_str(v).unwrap());
        finish(resp, true, inm.as_ref()).await
    }

    #[tokio::test]
    async fn rendered_responses_keep_their_etag_and_answer_304() {
        let v = Cached::new(Bytes::from_static(b"<svg/>"), "image/svg+xml");
        let etag = v.etag.to_str().unwrap().to_owned();
        let ok = finished(v.response(), None).await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[header::ETAG], etag.as_str());
        assert_eq!(
            ok.headers()[header::CACHE_CONTROL],
            "public, max-age=60, s-maxage=60"
        );
        let listed = format!("\"other\", {etag}");
        let not_modified = finished(v.response(), Some(&listed)).await;
        assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(not_modified.headers()[header::ETAG], etag.as_str());
        let stale = finished(v.response(), Some("\"0123\"")).await;
        assert_eq!(stale.status(), StatusCode::OK);
        // Any other cacheable 200 is hashed here: the same ETag for the same body.
        let plain = CachePolicy::SHORT.apply(Response::new(Body::from("<svg/>")));
        let plain = finished(plain, None).await;
        assert_eq!(plain.headers()[header::ETAG], etag.as_str());
        // No policy, no ETag: not cacheable.
        let bare = finished(Response::new(Body::from("x")), None).await;
        assert_eq!(bare.headers()[header::CACHE_CONTROL], "no-store");
        assert!(bare.headers().get(header::ETAG).is_none());
    }
}
