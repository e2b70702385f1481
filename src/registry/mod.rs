//! Talking to registries: the OCI distribution API (Docker Registry HTTP API v2).
//!
//! [`RegistryClient`] reads manifests, indexes, config blobs and tag lists, and never layers.
//! It is built for cost as much as correctness: an unchanged tag costs one `HEAD`
//! ([`RegistryClient::check`]); a first inspection of a single-platform tag costs one manifest
//! `GET` and one config `GET` once a token is cached ([`RegistryClient::inspect`]).
//!
//! Every request goes through [`RegistryClient::send`], the one place that applies the SSRF
//! guard, authentication (Bearer token flow with a per-scope cache, or Basic from
//! `config.json`), timeouts, bounded retries with jittered backoff on 5xx and network errors,
//! `Retry-After` on 429, and records Docker Hub's `ratelimit-remaining`. Bodies are read with a
//! size limit and verified against their digest.
//!
//! `oci-client` supplies the manifest and index types ([`crate::oci`]); its HTTP client is not
//! used because it cannot enforce the guard, body limits, request accounting or `Retry-After`.

pub mod auth;
pub mod error;
pub mod guard;
pub mod hub;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, Response, StatusCode};
use serde::Serialize;
use sha2::{Digest as _, Sha256, Sha512};

use self::auth::{AuthCache, Challenge, TokenResponse};
pub use self::auth::{Credential, Credentials};
pub use self::error::RegistryError;
use self::guard::{Guard, PrivateAddressError};
use crate::config::RegistryConfig;
use crate::inspect::{self, ImageInput, ImageVersion, Platform, PlatformEntry};
use crate::oci::{self, ImageConfig, OciImageIndex, OciImageManifest, Schema1Manifest};
use crate::reference::ImageRef;

/// Most bytes read from a token endpoint.
const MAX_TOKEN_BYTES: u64 = 64 * 1024;
/// Page size asked for when listing tags.
const TAG_PAGE_SIZE: usize = 100;
/// First retry delay; doubled each attempt, with jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// Redirects followed before giving up (blob GETs may be redirected to storage).
const MAX_REDIRECTS: usize = 5;
/// Child manifests fetched at once for `--platform all`.
const PLATFORM_CONCURRENCY: usize = 4;

/// What kind of request, for accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    HeadManifest,
    GetManifest,
    GetBlob,
    ListTags,
}

/// Requests made so far, by kind. Token requests go to the token realm, usually another host.
#[derive(Debug, Default)]
struct Counters {
    head_manifest: AtomicU64,
    get_manifest: AtomicU64,
    get_blob: AtomicU64,
    list_tags: AtomicU64,
    token: AtomicU64,
    retries: AtomicU64,
}

/// A snapshot of [`RegistryClient`]'s request counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RequestStats {
    pub head_manifest: u64,
    pub get_manifest: u64,
    pub get_blob: u64,
    pub list_tags: u64,
    pub token: u64,
    pub retries: u64,
}

impl RequestStats {
    /// Requests sent to registries (not counting token endpoints).
    pub fn registry_requests(&self) -> u64 {
        self.head_manifest + self.get_manifest + self.get_blob + self.list_tags
    }
}

/// A registry's advertised rate limit (Docker Hub's `ratelimit-*` headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    pub limit: Option<u64>,
    pub remaining: u64,
}

/// Which platform(s) of a multi-platform image to inspect.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PlatformChoice {
    /// linux/amd64 when the index has it, else the first platform listed.
    #[default]
    Default,
    /// Exactly this platform; an error when the index lacks it.
    One(Platform),
    /// Every platform in the index.
    All,
}

impl std::str::FromStr for PlatformChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(PlatformChoice::All),
            "" | "default" => Ok(PlatformChoice::Default),
            p => p
                .parse::<Platform>()
                .map(PlatformChoice::One)
                .map_err(|e| e.to_string()),
        }
    }
}

/// The result of a `HEAD` on a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    pub digest: String,
    pub media_type: Option<String>,
}

/// Did the tag move since we last saw it?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    Unchanged { digest: String },
    Changed { digest: String },
}

/// A manifest as served: its bytes, media type and verified digest.
#[derive(Debug, Clone)]
pub struct RawManifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// A manifest parsed by kind.
#[derive(Debug, Clone)]
pub enum ParsedManifest {
    Image(Box<OciImageManifest>),
    Index(OciImageIndex),
    Schema1(Schema1Manifest),
}

/// Everything read for one tag (or digest) of a repository.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Inspection {
    #[serde(serialize_with = "serialize_display")]
    pub reference: ImageRef,
    /// Digest the tag points at: the index's digest for multi-platform images.
    pub digest: String,
    pub media_type: String,
    /// Every platform the tag offers (one entry for a single-platform image).
    pub platforms: Vec<PlatformEntry>,
    /// The inspected image(s), one per selected platform.
    pub images: Vec<ImageVersion>,
}

fn serialize_display<S: serde::Serializer>(v: &ImageRef, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// The registry client. Cheap to clone; share one per process so tokens and challenges are
/// cached across requests.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    cfg: RegistryConfig,
    guard: Guard,
    creds: Credentials,
    auth: AuthCache,
    counters: Counters,
    rate_limits: Mutex<HashMap<String, RateLimit>>,
    hub: hub::HubClient,
}

impl RegistryClient {
    /// Build a client; reads credentials from the configured Docker `config.json`.
    pub fn new(cfg: RegistryConfig) -> Result<Self, RegistryError> {
        let creds = match &cfg.docker_config {
            Some(path) => {
                Credentials::from_docker_config(path).map_err(|reason| RegistryError::Protocol {
                    reason: format!("reading credentials: {reason}"),
                })?
            }
            None => Credentials::default(),
        };
        Self::with_credentials(cfg, creds)
    }

    /// Build a client with explicit credentials (tests, or callers with their own store).
    pub fn with_credentials(
        cfg: RegistryConfig,
        creds: Credentials,
    ) -> Result<Self, RegistryError> {
        let guard = Guard::new(&cfg);
        let redirect_guard = guard.clone();
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error("too many redirects");
            }
            if attempt.previous().iter().any(|u| u == attempt.url()) {
                return attempt.error("redirect loop");
            }
            match redirect_guard.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(e) => attempt.error(e.to_string()),
            }
        });
        let http = reqwest::Client::builder()
            .user_agent(concat!("microbadger/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .redirect(policy)
            .dns_resolver(guard.resolver())
            .build()
            .map_err(|e| RegistryError::Protocol {
                reason: format!("building HTTP client: {e}"),
            })?;
        let hub = hub::HubClient::new(&cfg)?;
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                http,
                guard,
                creds,
                auth: AuthCache::default(),
                counters: Counters::default(),
                rate_limits: Mutex::new(HashMap::new()),
                hub,
                cfg,
            }),
        })
    }

    /// The configuration this client runs with.
    pub fn config(&self) -> &RegistryConfig {
        &self.inner.cfg
    }

    /// Is this reference's registry on the allow-list?
    pub fn check_allowed(&self, r: &ImageRef) -> Result<(), RegistryError> {
        self.inner.guard.check_registry(r.registry())
    }

    /// Request counters so far.
    pub fn stats(&self) -> RequestStats {
        let c = &self.inner.counters;
        RequestStats {
            head_manifest: c.head_manifest.load(Ordering::Relaxed),
            get_manifest: c.get_manifest.load(Ordering::Relaxed),
            get_blob: c.get_blob.load(Ordering::Relaxed),
            list_tags: c.list_tags.load(Ordering::Relaxed),
            token: c.token.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
        }
    }

    /// The last rate limit a registry advertised, if any.
    pub fn rate_limit(&self, registry: &str) -> Option<RateLimit> {
        self.inner
            .rate_limits
            .lock()
            .unwrap()
            .get(registry)
            .copied()
    }

    /// Docker Hub's repository information for a docker.io image. Best effort: `None` for other
    /// registries, and on any failure (logged), since it must never fail an inspection.
    pub async fn hub_info(&self, r: &ImageRef) -> Option<hub::HubInfo> {
        if !r.is_docker_hub() {
            return None;
        }
        match self.inner.hub.repository(r).await {
            Ok(info) => Some(info),
            Err(e) => {
                tracing::warn!(image = %r.familiar_name(), error = %e, "Docker Hub API failed");
                None
            }
        }
    }

    fn base_url(&self, r: &ImageRef) -> String {
        let scheme = if self.inner.guard.is_insecure(r.registry()) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}/v2/{}", r.api_host(), r.repository())
    }

    /// `HEAD` the tag (or digest): its current digest, in one request.
    pub async fn head_manifest(&self, r: &ImageRef) -> Result<ManifestHead, RegistryError> {
        self.check_allowed(r)?;
        let url = format!("{}/manifests/{}", self.base_url(r), r.manifest_reference());
        let resp = self
            .send(
                r,
                Method::HEAD,
                &url,
                Kind::HeadManifest,
                Some(oci::MANIFEST_ACCEPT),
            )
            .await?;
        let resp = expect_ok(r, resp, "manifest")?;
        let digest = header_str(resp.headers(), "docker-content-digest").ok_or_else(|| {
            RegistryError::Protocol {
                reason: "HEAD response has no Docker-Content-Digest header".into(),
            }
        })?;
        crate::reference::validate_digest(&digest).map_err(|_| RegistryError::Protocol {
            reason: format!("registry sent an invalid digest {digest:?}"),
        })?;
        if let Some(wanted) = r.digest()
            && wanted != digest
        {
            return Err(RegistryError::DigestMismatch {
                what: "manifest".into(),
                expected: wanted.into(),
                actual: digest,
            });
        }
        Ok(ManifestHead {
            digest,
            media_type: header_str(resp.headers(), CONTENT_TYPE.as_str()).map(strip_params),
        })
    }

    /// Has the tag moved away from `known`? Exactly one `HEAD` request (plus a token request
    /// only when no valid token is cached). Falls back to a `GET` only if the registry omits
    /// the digest header.
    pub async fn check(
        &self,
        r: &ImageRef,
        known: Option<&str>,
    ) -> Result<CheckResult, RegistryError> {
        let digest = match self.head_manifest(r).await {
            Ok(head) => head.digest,
            Err(RegistryError::Protocol { reason }) if reason.contains("Docker-Content-Digest") => {
                self.get_manifest(r, r.manifest_reference()).await?.digest
            }
            Err(e) => return Err(e),
        };
        Ok(match known {
            Some(k) if k == digest => CheckResult::Unchanged { digest },
            _ => CheckResult::Changed { digest },
        })
    }

    /// `GET` a manifest or index by tag or digest, size-limited and digest-verified.
    pub async fn get_manifest(
        &self,
        r: &ImageRef,
        reference: &str,
    ) -> Result<RawManifest, RegistryError> {
        self.check_allowed(r)?;
        let url = format!("{}/manifests/{reference}", self.base_url(r));
        let resp = self
            .send(
                r,
                Method::GET,
                &url,
                Kind::GetManifest,
                Some(oci::MANIFEST_ACCEPT),
            )
            .await?;
        let resp = expect_ok(r, resp, "manifest")?;
        let header_digest = header_str(resp.headers(), "docker-content-digest");
        let content_type = header_str(resp.headers(), CONTENT_TYPE.as_str()).map(strip_params);
        let bytes = read_limited(
            r.registry(),
            resp,
            self.inner.cfg.max_manifest_bytes,
            "manifest",
        )
        .await?;
        let computed = sha256_digest(&bytes);
        // The digest we trust is the one we computed; a reference digest or header that
        // disagrees means the registry (or something between us) is lying.
        let expected = if reference.contains(':') {
            Some(reference.to_string())
        } else {
            header_digest.filter(|d| d.starts_with("sha256:") || d.starts_with("sha512:"))
        };
        let digest = match expected {
            Some(exp) => {
                verify_digest(&bytes, &exp, "manifest")?;
                exp
            }
            None => computed,
        };
        let media_type = detect_media_type(content_type.as_deref(), &bytes)?;
        Ok(RawManifest {
            digest,
            media_type,
            bytes,
        })
    }

    /// `GET` a blob (the config), refusing it above `limit` bytes and verifying its digest.
    pub async fn get_blob(
        &self,
        r: &ImageRef,
        digest: &str,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        self.check_allowed(r)?;
        crate::reference::validate_digest(digest).map_err(|_| RegistryError::InvalidManifest {
            reason: format!("invalid blob digest {digest:?}"),
        })?;
        let url = format!("{}/blobs/{digest}", self.base_url(r));
        let resp = self.send(r, Method::GET, &url, Kind::GetBlob, None).await?;
        let resp = expect_ok(r, resp, "blob")?;
        let bytes = read_limited(r.registry(), resp, limit, "config blob").await?;
        verify_digest(&bytes, digest, "config blob")?;
        Ok(bytes)
    }

    /// List the repository's tags, following `Link` pagination, up to the configured cap.
    pub async fn list_tags(&self, r: &ImageRef) -> Result<Vec<String>, RegistryError> {
        self.check_allowed(r)?;
        let cap = self.inner.cfg.max_tags;
        let base = self.base_url(r);
        let mut url = format!("{base}/tags/list?n={}", TAG_PAGE_SIZE.min(cap.max(1)));
        let mut tags: Vec<String> = Vec::new();
        let mut pages = 0usize;
        loop {
            pages += 1;
            let resp = self
                .send(r, Method::GET, &url, Kind::ListTags, None)
                .await?;
            let resp = expect_ok(r, resp, "repository")?;
            let next = next_link(resp.headers(), &url)?;
            let bytes = read_limited(
                r.registry(),
                resp,
                self.inner.cfg.max_manifest_bytes,
                "tag list",
            )
            .await?;
            #[derive(serde::Deserialize)]
            struct TagList {
                #[serde(default)]
                tags: Option<Vec<String>>,
            }
            let page: TagList =
                serde_json::from_slice(&bytes).map_err(|e| RegistryError::Protocol {
                    reason: format!("tag list is not valid JSON: {e}"),
                })?;
            for t in page.tags.unwrap_or_default() {
                if crate::reference::validate_tag(&t).is_ok() {
                    tags.push(t);
                } else {
                    tracing::warn!(image = %r.familiar_name(), tag = %t.escape_debug(), "skipping invalid tag name");
                }
            }
            match next {
                Some(n) if tags.len() < cap && pages < cap.max(1) => {
                    // The next page must stay on the same registry: a Link header is not an
                    // invitation to fetch arbitrary URLs.
                    if !n.starts_with(&base) {
                        return Err(RegistryError::Protocol {
                            reason: "tag list Link header points to another location".into(),
                        });
                    }
                    url = n
                }
                _ => break,
            }
        }
        tags.truncate(cap);
        Ok(tags)
    }

    /// Read and inspect a tag (or digest): manifest or index, then the chosen platform's
    /// manifest and config. Layers are never downloaded.
    pub async fn inspect(
        &self,
        r: &ImageRef,
        choice: &PlatformChoice,
    ) -> Result<Inspection, RegistryError> {
        let top = self.get_manifest(r, r.manifest_reference()).await?;
        let parsed = parse_manifest(&top)?;
        let (platforms, images) = match parsed {
            ParsedManifest::Index(index) => {
                let platforms = inspect::index_platforms(&index);
                let chosen = choose_platforms(&platforms, choice)?;
                let annotations = index.annotations.clone();
                let images: Vec<Result<ImageVersion, RegistryError>> =
                    futures::stream::iter(chosen.into_iter().map(|entry| {
                        let annotations = annotations.clone();
                        async move {
                            let child = self.get_manifest(r, &entry.digest).await?;
                            match parse_manifest(&child)? {
                                ParsedManifest::Image(m) => {
                                    self.inspect_image(r, &child, &m, annotations.as_ref())
                                        .await
                                }
                                _ => Err(RegistryError::InvalidManifest {
                                    reason: format!(
                                        "index entry {} is not an image manifest",
                                        entry.digest
                                    ),
                                }),
                            }
                        }
                    }))
                    .buffered(PLATFORM_CONCURRENCY)
                    .collect()
                    .await;
                let images = images.into_iter().collect::<Result<Vec<_>, _>>()?;
                (platforms, images)
            }
            ParsedManifest::Image(m) => {
                let version = self.inspect_image(r, &top, &m, None).await?;
                let platforms = version
                    .platform
                    .clone()
                    .map(|platform| PlatformEntry {
                        platform,
                        digest: top.digest.clone(),
                        size: top.bytes.len() as i64,
                        media_type: top.media_type.clone(),
                    })
                    .into_iter()
                    .collect();
                (platforms, vec![version])
            }
            ParsedManifest::Schema1(m) => {
                let version = inspect::inspect_schema1(&top.digest, &top.media_type, &m);
                (Vec::new(), vec![version])
            }
        };
        Ok(Inspection {
            reference: r.clone(),
            digest: top.digest,
            media_type: top.media_type,
            platforms,
            images,
        })
    }

    async fn inspect_image(
        &self,
        r: &ImageRef,
        raw: &RawManifest,
        manifest: &OciImageManifest,
        index_annotations: Option<&std::collections::BTreeMap<String, String>>,
    ) -> Result<ImageVersion, RegistryError> {
        let limit = self.inner.cfg.max_config_bytes;
        if manifest.config.size < 0 || manifest.config.size as u64 > limit {
            return Err(RegistryError::TooLarge {
                what: format!("config blob ({} bytes)", manifest.config.size),
                limit,
            });
        }
        let bytes = self.get_blob(r, &manifest.config.digest, limit).await?;
        let config: ImageConfig =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::InvalidConfig {
                reason: e.to_string(),
            })?;
        Ok(inspect::inspect_image(&ImageInput {
            manifest_digest: &raw.digest,
            media_type: &raw.media_type,
            manifest,
            config: &config,
            index_annotations,
        }))
    }

    /// Send one request with auth, retries and accounting. The response may have any status
    /// except 401 (handled here), 429 and 5xx (retried, then turned into errors).
    async fn send(
        &self,
        r: &ImageRef,
        method: Method,
        url: &str,
        kind: Kind,
        accept: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let registry = r.registry().to_string();
        let parsed = url::Url::parse(url).map_err(|e| RegistryError::Protocol {
            reason: format!("bad URL: {e}"),
        })?;
        self.inner.guard.check_url(&parsed)?;
        let scope = format!("repository:{}:pull", r.repository());
        let mut attempt: u32 = 0;
        let mut reauthenticated = false;
        loop {
            let mut req = self.inner.http.request(method.clone(), parsed.clone());
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            match self.inner.auth.challenge(&registry) {
                Some(Challenge::Bearer { realm, service, .. }) => {
                    let token = match self.inner.auth.token(&registry, &scope) {
                        Some(t) => t,
                        None => {
                            self.fetch_token(&registry, &realm, service.as_deref(), &scope)
                                .await?
                        }
                    };
                    req = req.header(AUTHORIZATION, format!("Bearer {token}"));
                }
                Some(Challenge::Basic) => {
                    if let Some(c) = self.inner.creds.get(&registry) {
                        req = req.header(AUTHORIZATION, c.basic_header());
                    }
                }
                None => {}
            }
            self.count(kind);
            let started = Instant::now();
            let result = req.send().await;
            let resp = match result {
                Ok(resp) => resp,
                Err(e) => {
                    let err = map_reqwest_error(&registry, e);
                    tracing::debug!(%registry, %url, error = %err, "registry request failed");
                    if err.is_transient() && attempt < self.inner.cfg.retries {
                        attempt += 1;
                        self.backoff(attempt).await;
                        continue;
                    }
                    return Err(err);
                }
            };
            let status = resp.status();
            tracing::debug!(%registry, method = %method, %url, status = status.as_u16(),
                ms = started.elapsed().as_millis() as u64, "registry request");
            self.record_rate_limit(&registry, resp.headers());
            match status {
                StatusCode::UNAUTHORIZED => {
                    let challenge = header_str(resp.headers(), WWW_AUTHENTICATE.as_str())
                        .and_then(|h| auth::parse_challenge(&h));
                    let Some(challenge) = challenge else {
                        return Err(RegistryError::Unauthorized {
                            registry,
                            reason: "401 without a usable WWW-Authenticate challenge".into(),
                        });
                    };
                    if reauthenticated {
                        return Err(RegistryError::Unauthorized {
                            registry,
                            reason: if self.inner.creds.get(r.registry()).is_some() {
                                "credentials were refused".into()
                            } else {
                                "anonymous access refused; add credentials to the Docker config.json".into()
                            },
                        });
                    }
                    if matches!(challenge, Challenge::Basic)
                        && self.inner.creds.get(&registry).is_none()
                    {
                        return Err(RegistryError::Unauthorized {
                            registry,
                            reason: "registry wants Basic auth and no credentials are configured"
                                .into(),
                        });
                    }
                    reauthenticated = true;
                    // A stale token: forget it so the next attempt fetches a fresh one.
                    self.inner.auth.forget_token(&registry, &scope);
                    self.inner.auth.set_challenge(&registry, challenge);
                    continue;
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    let wait = retry_after(resp.headers());
                    let bounded = wait.is_none_or(|w| w <= self.inner.cfg.max_retry_after);
                    if attempt < self.inner.cfg.retries && bounded {
                        attempt += 1;
                        match wait {
                            Some(w) => {
                                self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(w).await
                            }
                            None => self.backoff(attempt).await,
                        }
                        continue;
                    }
                    return Err(RegistryError::RateLimited {
                        registry,
                        retry_after: wait,
                    });
                }
                s if s.is_server_error() => {
                    if attempt < self.inner.cfg.retries {
                        attempt += 1;
                        self.backoff(attempt).await;
                        continue;
                    }
                    return Err(RegistryError::Server {
                        registry,
                        status: s.as_u16(),
                    });
                }
                _ => return Ok(resp),
            }
        }
    }

    async fn fetch_token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, RegistryError> {
        let mut url = url::Url::parse(realm).map_err(|e| RegistryError::Unauthorized {
            registry: registry.into(),
            reason: format!("bad token realm {realm:?}: {e}"),
        })?;
        self.inner.guard.check_url(&url)?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", scope);
        }
        let mut req = self.inner.http.get(url);
        if let Some(c) = self.inner.creds.get(registry) {
            req = req.header(AUTHORIZATION, c.basic_header());
        }
        self.inner.counters.token.fetch_add(1, Ordering::Relaxed);
        let resp = req
            .send()
            .await
            .map_err(|e| map_reqwest_error(registry, e))?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(RegistryError::Unauthorized {
                    registry: registry.into(),
                    reason: "the token service refused the request".into(),
                });
            }
            s => {
                return Err(RegistryError::Unauthorized {
                    registry: registry.into(),
                    reason: format!("the token service answered {}", s.as_u16()),
                });
            }
        }
        let bytes = read_limited(registry, resp, MAX_TOKEN_BYTES, "token response").await?;
        let parsed: TokenResponse =
            serde_json::from_slice(&bytes).map_err(|_| RegistryError::Unauthorized {
                registry: registry.into(),
                reason: "the token service sent something that is not a token".into(),
            })?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Unauthorized {
                registry: registry.into(),
                reason: "the token service sent no token".into(),
            })?;
        self.inner
            .auth
            .store_token(registry, scope, token.clone(), parsed.expires_in);
        Ok(token)
    }

    fn count(&self, kind: Kind) {
        let c = &self.inner.counters;
        let counter = match kind {
            Kind::HeadManifest => &c.head_manifest,
            Kind::GetManifest => &c.get_manifest,
            Kind::GetBlob => &c.get_blob,
            Kind::ListTags => &c.list_tags,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    async fn backoff(&self, attempt: u32) {
        self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(backoff_delay(attempt)).await;
    }

    fn record_rate_limit(&self, registry: &str, headers: &HeaderMap) {
        let first_number = |name: &str| {
            header_str(headers, name).and_then(|v| {
                v.split(';')
                    .next()
                    .and_then(|n| n.trim().parse::<u64>().ok())
            })
        };
        if let Some(remaining) = first_number("ratelimit-remaining") {
            let limit = first_number("ratelimit-limit");
            self.inner
                .rate_limits
                .lock()
                .unwrap()
                .insert(registry.to_string(), RateLimit { limit, remaining });
            if remaining < 10 {
                tracing::warn!(%registry, remaining, "registry rate limit nearly exhausted");
            }
        }
    }
}

/// Exponential backoff with "equal jitter": half fixed, half random, so retries from many
/// workers spread out but never collapse to zero.
pub fn backoff_delay(attempt: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << attempt.min(16).saturating_sub(1));
    let capped = exp.min(BACKOFF_CAP);
    let half = capped / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// Choose the index entries to inspect.
fn choose_platforms(
    platforms: &[PlatformEntry],
    choice: &PlatformChoice,
) -> Result<Vec<PlatformEntry>, RegistryError> {
    let available = || {
        platforms
            .iter()
            .map(|p| p.platform.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let none_found = |wanted: String| RegistryError::NoMatchingPlatform {
        wanted,
        available: available(),
    };
    match choice {
        PlatformChoice::All if platforms.is_empty() => Err(none_found("any".into())),
        PlatformChoice::All => Ok(platforms.to_vec()),
        PlatformChoice::One(p) => inspect::select_platform(platforms, p)
            .cloned()
            .map(|e| vec![e])
            .ok_or_else(|| none_found(p.to_string())),
        PlatformChoice::Default => {
            let amd64: Platform = "linux/amd64".parse().expect("valid platform");
            inspect::select_platform(platforms, &amd64)
                .or(platforms.first())
                .cloned()
                .map(|e| vec![e])
                .ok_or_else(|| none_found("linux/amd64".into()))
        }
    }
}

/// Parse a manifest by its media type.
pub fn parse_manifest(raw: &RawManifest) -> Result<ParsedManifest, RegistryError> {
    let invalid = |e: serde_json::Error| RegistryError::InvalidManifest {
        reason: e.to_string(),
    };
    let mt = raw.media_type.as_str();
    if oci::is_index(mt) {
        let index: OciImageIndex = serde_json::from_slice(&raw.bytes).map_err(invalid)?;
        Ok(ParsedManifest::Index(index))
    } else if mt == oci::OCI_MANIFEST || mt == oci::DOCKER_MANIFEST_V2 {
        let m: OciImageManifest = serde_json::from_slice(&raw.bytes).map_err(invalid)?;
        Ok(ParsedManifest::Image(Box::new(m)))
    } else if oci::is_schema1(mt) {
        let m: Schema1Manifest = serde_json::from_slice(&raw.bytes).map_err(invalid)?;
        Ok(ParsedManifest::Schema1(m))
    } else {
        Err(RegistryError::UnsupportedMediaType {
            media_type: mt.to_string(),
        })
    }
}

/// The manifest's media type: the `Content-Type` when it names a manifest type, else the
/// document's own `mediaType`, else its shape (schema 1 is often served as plain JSON).
fn detect_media_type(content_type: Option<&str>, bytes: &[u8]) -> Result<String, RegistryError> {
    const KNOWN: &[&str] = &[
        oci::OCI_INDEX,
        oci::DOCKER_MANIFEST_LIST,
        oci::OCI_MANIFEST,
        oci::DOCKER_MANIFEST_V2,
        oci::DOCKER_MANIFEST_V1,
        oci::DOCKER_MANIFEST_V1_SIGNED,
    ];
    if let Some(ct) = content_type
        && KNOWN.contains(&ct)
    {
        return Ok(ct.to_string());
    }
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| RegistryError::InvalidManifest {
            reason: format!("not JSON: {e}"),
        })?;
    if let Some(mt) = doc.get("mediaType").and_then(|v| v.as_str()) {
        return Ok(mt.to_string());
    }
    let schema = doc.get("schemaVersion").and_then(|v| v.as_u64());
    Ok(match schema {
        Some(1) => oci::DOCKER_MANIFEST_V1.to_string(),
        Some(2) if doc.get("manifests").is_some() => oci::OCI_INDEX.to_string(),
        Some(2) if doc.get("config").is_some() => oci::OCI_MANIFEST.to_string(),
        _ => {
            return Err(RegistryError::UnsupportedMediaType {
                media_type: content_type.unwrap_or("unknown").to_string(),
            });
        }
    })
}

/// Map a non-2xx (and non-retried) status to an error.
fn expect_ok(r: &ImageRef, resp: Response, what: &str) -> Result<Response, RegistryError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let registry = r.registry().to_string();
    Err(match status {
        StatusCode::NOT_FOUND => RegistryError::NotFound {
            what: format!("{what} for {}", r.familiar()),
        },
        StatusCode::FORBIDDEN => RegistryError::Denied { registry },
        s if s.is_redirection() => RegistryError::Redirect {
            registry,
            reason: format!("unexpected {} without a usable Location", s.as_u16()),
        },
        s => RegistryError::Server {
            registry,
            status: s.as_u16(),
        },
    })
}

fn map_reqwest_error(registry: &str, e: reqwest::Error) -> RegistryError {
    // The resolver's refusal travels inside the error chain.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if let Some(p) = s.downcast_ref::<PrivateAddressError>() {
            return RegistryError::PrivateAddress {
                host: p.host.clone(),
            };
        }
        source = s.source();
    }
    if e.is_redirect() {
        let reason = std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "redirect refused".into());
        return RegistryError::Redirect {
            registry: registry.into(),
            reason,
        };
    }
    if e.is_timeout() {
        return RegistryError::Timeout {
            registry: registry.into(),
        };
    }
    let reason = if e.is_connect() {
        "connection failed".to_string()
    } else if e.is_body() || e.is_decode() {
        "connection broke while reading the response".to_string()
    } else {
        "request failed".to_string()
    };
    RegistryError::Unreachable {
        registry: registry.into(),
        reason,
    }
}

/// Read a body, refusing it as soon as it passes `limit` bytes.
async fn read_limited(
    registry: &str,
    mut resp: Response,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        what: what.to_string(),
        limit,
    };
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(resp.content_length().unwrap_or(0).min(limit) as usize);
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| map_reqwest_error(registry, e))?
    {
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn verify_digest(bytes: &[u8], expected: &str, what: &str) -> Result<(), RegistryError> {
    let actual = match expected.split_once(':') {
        Some(("sha256", _)) => sha256_digest(bytes),
        Some(("sha512", _)) => format!("sha512:{}", hex::encode(Sha512::digest(bytes))),
        _ => {
            return Err(RegistryError::Protocol {
                reason: format!("unsupported digest algorithm in {expected:?}"),
            });
        }
    };
    if actual == expected {
        Ok(())
    } else {
        Err(RegistryError::DigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual,
        })
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

fn strip_params(ct: String) -> String {
    ct.split(';').next().unwrap_or("").trim().to_string()
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = header_str(headers, RETRY_AFTER.as_str())?;
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(&v).ok()?;
    let secs = (when.timestamp() - chrono::Utc::now().timestamp()).max(0) as u64;
    Some(Duration::from_secs(secs))
}

/// The `rel="next"` target of a `Link` header, resolved against the current URL.
fn next_link(headers: &HeaderMap, current: &str) -> Result<Option<String>, RegistryError> {
    let Some(link) = header_str(headers, "link") else {
        return Ok(None);
    };
    for part in link.split(',') {
        let mut pieces = part.split(';');
        let target = pieces.next().unwrap_or("").trim();
        let is_next = pieces.any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        if is_next {
            let target = target.trim_start_matches('<').trim_end_matches('>');
            let base = url::Url::parse(current).map_err(|e| RegistryError::Protocol {
                reason: e.to_string(),
            })?;
            let next = base.join(target).map_err(|e| RegistryError::Protocol {
                reason: format!("bad Link header: {e}"),
            })?;
            return Ok(Some(next.to_string()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_grows_and_is_bounded() {
        for attempt in 1..30 {
            let d = backoff_delay(attempt);
            assert!(d <= BACKOFF_CAP, "{d:?}");
        }
        let first = backoff_delay(1);
        assert!(first >= BACKOFF_BASE / 2 && first <= BACKOFF_BASE);
        let third = backoff_delay(3);
        assert!(third >= BACKOFF_BASE * 2, "{third:?}");
    }

    #[test]
    fn link_header_next_page() {
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            HeaderValue::from_static("</v2/a/b/tags/list?last=t99&n=100>; rel=\"next\""),
        );
        let next = next_link(&h, "http://127.0.0.1:5000/v2/a/b/tags/list?n=100").unwrap();
        assert_eq!(
            next.as_deref(),
            Some("http://127.0.0.1:5000/v2/a/b/tags/list?last=t99&n=100")
        );
        assert_eq!(next_link(&HeaderMap::new(), "http://x/").unwrap(), None);
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a past date means now"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn media_type_detection() {
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(
            detect_media_type(Some("application/json"), index).unwrap(),
            oci::OCI_INDEX
        );
        let s1 = br#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert_eq!(
            detect_media_type(None, s1).unwrap(),
            oci::DOCKER_MANIFEST_V1
        );
        let typed = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#;
        assert_eq!(
            detect_media_type(None, typed).unwrap(),
            oci::DOCKER_MANIFEST_V2
        );
        assert!(matches!(
            detect_media_type(Some(oci::OCI_MANIFEST), b"x")
                .unwrap()
                .as_str(),
            oci::OCI_MANIFEST
        ));
        assert!(matches!(
            detect_media_type(Some("text/html"), b"<html>"),
            Err(RegistryError::InvalidManifest { .. })
        ));
    }

    #[test]
    fn digests_are_verified() {
        let d = sha256_digest(b"hello");
        assert!(verify_digest(b"hello", &d, "x").is_ok());
        assert!(matches!(
            verify_digest(b"hellO", &d, "x"),
            Err(RegistryError::DigestMismatch { .. })
        ));
        assert!(verify_digest(b"x", "md5:abc", "x").is_err());
    }

    #[test]
    fn platform_choice_parses() {
        assert_eq!(
            "all".parse::<PlatformChoice>().unwrap(),
            PlatformChoice::All
        );
        assert!(matches!(
            "linux/arm64/v8".parse::<PlatformChoice>().unwrap(),
            PlatformChoice::One(_)
        ));
        assert!("linux".parse::<PlatformChoice>().is_err());
    }
}
