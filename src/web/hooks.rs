//! Webhooks: a registry says an image changed, and a refresh is queued at NORMAL priority.
//!
//! Two endpoints, each opened by a secret token in its URL:
//! - `POST /hooks/dockerhub/{image}/{token}` takes Docker Hub's push payload (specs.md §5);
//!   MicroBadger's old paths `POST /images/{org}/{image}/{token}` and `POST /images/{image}/{token}`
//!   lead to the same handler. The token belongs to one repository.
//! - `POST /hooks/registry/{token}` takes the CNCF distribution registry's notification envelope
//!   (`{"events":[{"action":"push","target":{"repository","tag",...}}]}`). The token belongs
//!   to one registry host, and that host, not whatever the event says, decides which registry
//!   is refreshed.
//!
//! # Tokens
//! `microbadger webhook create IMAGE` (or `--registry HOST`) makes 32 random bytes, encoded
//! base64url without padding (43 characters), prints the URL once, and stores only the token's
//! SHA-256 ([`token_hash`]). A request's token is hashed and compared with the stored hashes
//! in constant time ([`subtle::ConstantTimeEq`]), visiting every candidate without an early
//! exit. An unknown image, a malformed path and a wrong token all get the same `403 bad token`
//! (MicroBadger answered 404 for an unknown image, which told anyone which images exist).
//!
//! # Order of checks
//! Cheap and unauthenticated first, parsing last: rate limit (Docker Hub: every request;
//! registry: failed tokens and envelopes that queue work), declared body size, token, then the
//! body is read (at most [`super::MAX_BODY_BYTES`]) and parsed. Docker Hub's body is parsed
//! leniently, because MicroBadger ignored it: an empty or malformed body still refreshes the
//! whole repository, but a payload that names a different repository is refused (400). A
//! registry envelope answers 2xx even when it holds nothing to do (pulls, blob pushes,
//! repositories off the allow-list), because the registry delivers events one at a time and
//! retries a refused one forever, holding up every event behind it.
//!
//! Tokens never reach logs or responses: handlers log the webhook's id, and [`loggable_path`]
//! gives the request log a path with the token replaced.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::Utc;
use futures::StreamExt;
use rand::TryRngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::cache::CachePolicy;
use super::{AppState, MAX_BODY_BYTES, WebError};
use crate::queue::{JobKind, Priority};
use crate::reference::ImageRef;
use crate::store::{Store, StoreError, WebhookKind, WebhookRecord};

/// Random bytes in a token.
pub const TOKEN_BYTES: usize = 32;
/// Characters in a token: base64url of [`TOKEN_BYTES`] without padding.
pub const TOKEN_LEN: usize = 43;
/// Events read from one registry envelope at most (the body limit bounds them anyway).
const MAX_EVENTS: usize = 1000;

/// A fresh token: [`TOKEN_BYTES`] from the operating system's generator, base64url, no padding.
pub fn new_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random generator is available");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the store keeps for a token: lower-case hex SHA-256 of its text.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The URL Docker Hub (or anything sending its payload) posts to for `image`.
pub fn dockerhub_hook_url(public_url: &str, image: &ImageRef, token: &str) -> String {
    format!(
        "{}/hooks/dockerhub/{}/{token}",
        public_url.trim_end_matches('/'),
        image.familiar_name()
    )
}

/// The URL a registry's notification endpoint posts to.
pub fn registry_hook_url(public_url: &str, token: &str) -> String {
    format!(
        "{}/hooks/registry/{token}",
        public_url.trim_end_matches('/')
    )
}

/// A token just created: the stored record (hash only) and the URL with the token, which is
/// shown once and cannot be recovered.
#[derive(Debug, Clone)]
pub struct CreatedWebhook {
    pub record: WebhookRecord,
    pub url: String,
}

/// Create a Docker Hub webhook token for `image` (a repository: no tag or digest).
pub async fn create_dockerhub_webhook(
    store: &Store,
    public_url: &str,
    image: &ImageRef,
) -> Result<CreatedWebhook, StoreError> {
    if image.tag().is_some() || image.digest().is_some() {
        return Err(StoreError::Invalid(
            "a webhook refreshes a whole repository: give the image without a tag or digest".into(),
        ));
    }
    let token = new_token();
    let record = store
        .add_webhook(
            WebhookKind::DockerHub,
            &image.full_name(),
            &token_hash(&token),
            Utc::now(),
        )
        .await?;
    Ok(CreatedWebhook {
        record,
        url: dockerhub_hook_url(public_url, image, &token),
    })
}

/// Normalise a registry host as image references spell it (`Host:5000` -> `host:5000`);
/// `None` for anything that is not a registry host (a plain word would be a Docker Hub
/// namespace).
pub fn normalise_registry_host(host: &str) -> Option<String> {
    let host = host.trim().trim_end_matches('/');
    let host = host
        .strip_prefix("https://")
        .or_else(|| host.strip_prefix("http://"))
        .unwrap_or(host);
    if host.is_empty() || host.contains('/') {
        return None;
    }
    let r = ImageRef::parse(&format!("{host}/probe")).ok()?;
    (r.registry().eq_ignore_ascii_case(host) || r.is_docker_hub() && host.contains('.'))
        .then(|| r.registry().to_string())
}

/// Create a registry-notification token bound to `host` (`host[:port]`).
pub async fn create_registry_webhook(
    store: &Store,
    public_url: &str,
    host: &str,
) -> Result<CreatedWebhook, StoreError> {
    let host = normalise_registry_host(host).ok_or_else(|| {
        StoreError::Invalid(format!(
            "`{}` is not a registry host (host[:port], e.g. registry.example.com:5000)",
            host.escape_debug()
        ))
    })?;
    let token = new_token();
    let record = store
        .add_webhook(
            WebhookKind::Registry,
            &host,
            &token_hash(&token),
            Utc::now(),
        )
        .await?;
    Ok(CreatedWebhook {
        record,
        url: registry_hook_url(public_url, &token),
    })
}

/// The request path as the request log may show it: the token segment of webhook paths is
/// replaced by `[token]`. Other paths are returned unchanged.
pub fn loggable_path<'a>(method: &Method, path: &'a str) -> Cow<'a, str> {
    let is_hook =
        path.starts_with("/hooks/") || (method == Method::POST && path.starts_with("/images/"));
    if !is_hook {
        return Cow::Borrowed(path);
    }
    match path.trim_end_matches('/').rsplit_once('/') {
        Some((head, _token)) => Cow::Owned(format!("{head}/[token]")),
        None => Cow::Borrowed(path),
    }
}

// ---- handlers ----------------------------------------------------------------------------

/// `POST /hooks/dockerhub/{image}/{token}`
pub async fn dockerhub(
    State(state): State<AppState>,
    Path(rest): Path<String>,
    req: Request,
) -> Result<Response, WebError> {
    dockerhub_push(&state, &rest, req).await
}

/// MicroBadger's `POST /images/{org}/{image}/{token}` and `POST /images/{image}/{token}`
/// (`library/`): the same as [`dockerhub`].
pub async fn dockerhub_legacy(
    State(state): State<AppState>,
    Path(rest): Path<String>,
    req: Request,
) -> Result<Response, WebError> {
    dockerhub_push(&state, &rest, req).await
}

async fn dockerhub_push(state: &AppState, rest: &str, req: Request) -> Result<Response, WebError> {
    let client = client_ip(&req);
    if !state.limiter.allow(client) {
        return Err(WebError::TooManyRequests);
    }
    check_declared_length(req.headers())?;
    let (image, token) = split_image_token(rest).ok_or(WebError::BadToken)?;
    let hook = verify_image_token(&state.store, &image, token).await?;
    state
        .registry
        .check_allowed(&image)
        .map_err(|e| WebError::NotAllowed(e.to_string()))?;
    let body = read_body(req.into_body()).await?;
    let tag = match dockerhub_payload(&body) {
        Payload::Unreadable => None,
        Payload::Push { repo_name, tag } => {
            if let Some(named) = repo_name
                && !names_repository(&named, &image)
            {
                return Err(WebError::BadRequest(format!(
                    "the payload is for repository {}, not {}",
                    shown(&named),
                    image.familiar_name()
                )));
            }
            tag
        }
    };
    let job = JobKind::Refresh {
        image: image.full_name(),
        tag: tag.clone(),
    };
    state.queue.enqueue(&job, Priority::Normal).await?;
    touch(&state.store, &hook).await;
    tracing::info!(
        webhook = hook.id,
        image = %image.full_name(),
        tag = tag.as_deref().unwrap_or("(all)"),
        "webhook queued a refresh"
    );
    Ok(json_reply(
        StatusCode::ACCEPTED,
        json!({
            "status": "queued",
            "image": image.familiar_name(),
            "tag": tag,
        }),
    ))
}

/// `POST /hooks/registry/{token}`
pub async fn registry(
    State(state): State<AppState>,
    Path(token): Path<String>,
    req: Request,
) -> Result<Response, WebError> {
    let client = client_ip(&req);
    check_declared_length(req.headers())?;
    let hook = match verify_registry_token(&state.store, &token).await? {
        Some(h) => h,
        None if !state.limiter.allow(client) => return Err(WebError::TooManyRequests),
        None => return Err(WebError::BadToken),
    };
    let body = read_body(req.into_body()).await?;
    let envelope: Value = serde_json::from_slice(&body).map_err(|_| {
        WebError::BadRequest("expected a registry notification envelope (JSON)".into())
    })?;
    let Some(events) = envelope.get("events").and_then(Value::as_array) else {
        return Err(WebError::BadRequest(
            "expected a registry notification envelope: {\"events\": [...]}".into(),
        ));
    };
    let plan = plan_registry_refreshes(&hook.target, events, |r| {
        state.registry.check_allowed(r).map_err(|e| e.to_string())
    });
    if !plan.refreshes.is_empty() && !state.limiter.allow(client) {
        return Err(WebError::TooManyRequests);
    }
    let mut queued = Vec::new();
    for (image, tag) in &plan.refreshes {
        let job = JobKind::Refresh {
            image: image.full_name(),
            tag: tag.clone(),
        };
        state.queue.enqueue(&job, Priority::Normal).await?;
        tracing::info!(
            webhook = hook.id,
            image = %image.full_name(),
            tag = tag.as_deref().unwrap_or("(all)"),
            "registry notification queued a refresh"
        );
        queued.push(json!({"image": image.familiar_name(), "tag": tag}));
    }
    touch(&state.store, &hook).await;
    let status = if queued.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(json_reply(
        status,
        json!({"queued": queued, "ignored": plan.ignored}),
    ))
}

// ---- pieces, pure where possible ---------------------------------------------------------

/// The client's address (from the connection; an unspecified address when unknown, which
/// then shares one rate-limit bucket).
fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// 413 when the declared body is larger than we read.
fn check_declared_length(headers: &HeaderMap) -> Result<(), WebError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > MAX_BODY_BYTES as u64 => Err(WebError::PayloadTooLarge),
        _ => Ok(()),
    }
}

/// Read at most [`MAX_BODY_BYTES`]; 413 past that (whatever the headers said).
async fn read_body(body: Body) -> Result<Vec<u8>, WebError> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| WebError::BadRequest("the request body could not be read".into()))?;
        if out.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(WebError::PayloadTooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// `org/app/TOKEN` -> (`docker.io/org/app`, `TOKEN`). `None` when there is no token segment,
/// or the image part is not a plain repository name (a tag or digest has no place here).
pub fn split_image_token(rest: &str) -> Option<(ImageRef, &str)> {
    let (image, token) = rest.trim_start_matches('/').rsplit_once('/')?;
    if token.is_empty() || token.len() > 256 {
        return None;
    }
    let r = ImageRef::parse(image).ok()?;
    (r.tag().is_none() && r.digest().is_none()).then_some((r, token))
}

/// Hash `token` and compare it with every stored hash in constant time. Returns the record
/// that matched; every candidate is compared, and the comparison does not stop at the first
/// differing byte.
fn match_token<'a>(records: &'a [WebhookRecord], token: &str) -> Option<&'a WebhookRecord> {
    let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let mut found = subtle::Choice::from(0);
    let mut index = 0u64;
    for (i, r) in records.iter().enumerate() {
        let mut stored = [0u8; 32];
        // A corrupt hash (never written by us) compares as all zeros, which no token hashes to.
        let valid = hex::decode_to_slice(&r.token_hash, &mut stored).is_ok();
        let eq = presented.ct_eq(&stored) & subtle::Choice::from(u8::from(valid));
        index.conditional_assign(&(i as u64), eq);
        found |= eq;
    }
    bool::from(found).then(|| &records[index as usize])
}

async fn verify_image_token(
    store: &Store,
    image: &ImageRef,
    token: &str,
) -> Result<WebhookRecord, WebError> {
    let records = store
        .webhooks_for(WebhookKind::DockerHub, &image.full_name())
        .await?;
    match_token(&records, token)
        .cloned()
        .ok_or(WebError::BadToken)
}

/// The registry token's record, looked up by the token's hash (the path names no registry)
/// and then compared in constant time like the others.
async fn verify_registry_token(
    store: &Store,
    token: &str,
) -> Result<Option<WebhookRecord>, WebError> {
    if token.is_empty() || token.len() > 256 {
        return Ok(None);
    }
    let found = store
        .webhook_by_hash(WebhookKind::Registry, &token_hash(token))
        .await?;
    Ok(found.and_then(|r| match_token(std::slice::from_ref(&r), token).cloned()))
}

async fn touch(store: &Store, hook: &WebhookRecord) {
    if let Err(e) = store.touch_webhook(hook.id, Utc::now()).await {
        tracing::warn!(webhook = hook.id, error = %e, "could not record the webhook's use");
    }
}

/// What a Docker Hub body says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Empty, not JSON, or not an object: refresh the whole repository.
    Unreadable,
    /// `repository.repo_name` and a valid `push_data.tag`, when present.
    Push {
        repo_name: Option<String>,
        tag: Option<String>,
    },
}

/// Parse Docker Hub's push payload leniently: only `repository.repo_name` and
/// `push_data.tag` matter, every other field may be missing or of any type (Hub has sent
/// numbers as floats), and an invalid tag means "refresh every tag".
pub fn dockerhub_payload(body: &[u8]) -> Payload {
    let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(body) else {
        return Payload::Unreadable;
    };
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let repo_name = text(doc.get("repository").and_then(|r| r.get("repo_name")));
    let tag = text(doc.get("push_data").and_then(|p| p.get("tag")))
        .filter(|t| crate::reference::validate_tag(t).is_ok());
    Payload::Push { repo_name, tag }
}

/// Does a payload's `repo_name` name this repository? Docker Hub writes `namespace/name`
/// (`library/nginx` or `nginx` for official images); anything else sending this payload may
/// write the path on its registry or the full name.
pub fn names_repository(repo_name: &str, image: &ImageRef) -> bool {
    if repo_name == image.repository() {
        return true;
    }
    match ImageRef::parse(repo_name) {
        Ok(named) => {
            named.tag().is_none()
                && named.digest().is_none()
                && named.registry() == image.registry()
                && named.repository() == image.repository()
        }
        Err(_) => false,
    }
}

/// What a registry envelope asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistryPlan {
    /// Repositories to refresh, each once, with the tag pushed (`None`: every tag).
    pub refreshes: Vec<(ImageRef, Option<String>)>,
    /// Events that asked for nothing (pulls, blob pushes, bad names, registries not allowed).
    pub ignored: usize,
}

/// Media types of blobs, whose pushes never move a tag.
fn is_blob_media_type(media_type: &str) -> bool {
    media_type == "application/octet-stream"
        || media_type.contains(".layer.")
        || media_type.contains("rootfs.diff")
        || media_type.ends_with(".config.v1+json")
        || media_type == "application/vnd.docker.container.image.v1+json"
}

/// Turn a registry's events into refreshes of `host`'s repositories.
///
/// - Only `push` events of manifests count. A manifest pushed with a tag refreshes that tag.
///   A manifest pushed by digest alone moves no tag, but registries that do not report tags
///   send every push that way, so it refreshes the whole repository, unless the same envelope
///   also pushed a tag there (a multi-platform push: children by digest, then the index by tag).
/// - The repository is taken from `target.repository` and refreshed on `host`, the registry
///   the token was made for; `request.host` and `target.url` are ignored.
/// - `allowed` decides whether a repository may be inspected; others are ignored.
pub fn plan_registry_refreshes(
    host: &str,
    events: &[Value],
    allowed: impl Fn(&ImageRef) -> Result<(), String>,
) -> RegistryPlan {
    let mut tagged: Vec<(ImageRef, String)> = Vec::new();
    let mut untagged: Vec<ImageRef> = Vec::new();
    let mut ignored = 0usize;
    for event in events.iter().take(MAX_EVENTS) {
        let action = event.get("action").and_then(Value::as_str);
        let target = event.get("target");
        let field = |k: &str| {
            target
                .and_then(|t| t.get(k))
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let (Some("push"), Some(repository)) = (action, field("repository")) else {
            ignored += 1;
            continue;
        };
        let tag = field("tag");
        let media_type = field("mediaType").unwrap_or("");
        if tag.is_none() && (is_blob_media_type(media_type) || media_type.is_empty()) {
            ignored += 1;
            continue;
        }
        let image = match ImageRef::parse(&format!("{host}/{repository}")) {
            Ok(r)
                if r.registry() == host
                    && r.repository() == repository
                    && r.tag().is_none()
                    && r.digest().is_none() =>
            {
                r
            }
            _ => {
                ignored += 1;
                continue;
            }
        };
        if allowed(&image).is_err() {
            ignored += 1;
            continue;
        }
        match tag.filter(|t| crate::reference::validate_tag(t).is_ok()) {
            Some(t) => {
                if !tagged.iter().any(|(r, x)| r == &image && x == t) {
                    tagged.push((image, t.to_string()));
                }
            }
            None => {
                if !untagged.contains(&image) {
                    untagged.push(image);
                }
            }
        }
    }
    let mut refreshes: Vec<(ImageRef, Option<String>)> = Vec::new();
    for image in untagged {
        if !tagged
            .iter()
            .any(|(r, _)| r.full_name() == image.full_name())
        {
            refreshes.push((image, None));
        }
    }
    refreshes.extend(tagged.into_iter().map(|(r, t)| (r, Some(t))));
    RegistryPlan { refreshes, ignored }
}

/// A value from a payload, safe to echo in a message: control characters escaped, at most
/// 100 characters.
fn shown(s: &str) -> String {
    let escaped: String = s.escape_debug().collect();
    if escaped.chars().count() > 100 {
        let mut cut: String = escaped.chars().take(99).collect();
        cut.push('…');
        cut
    } else {
        escaped
    }
}

fn json_reply(status: StatusCode, body: Value) -> Response {
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    resp = CachePolicy::NoStore.apply(resp);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: i64, token: &str) -> WebhookRecord {
        WebhookRecord {
            id,
            kind: WebhookKind::DockerHub,
            target: "docker.io/library/nginx".into(),
            token_hash: token_hash(token),
            created_at: Utc::now(),
            last_used: None,
        }
    }

    #[test]
    fn tokens_are_43_url_safe_characters_and_differ() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), TOKEN_LEN);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
            "{a}"
        );
        assert_ne!(a, b);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
    }

    #[test]
    fn the_matching_record_is_found_among_several() {
        let records = [record(1, "one"), record(2, "two"), record(3, "three")];
        assert_eq!(match_token(&records, "two").map(|r| r.id), Some(2));
        assert_eq!(match_token(&records, "three").map(|r| r.id), Some(3));
        assert!(match_token(&records, "four").is_none());
        assert!(match_token(&[], "one").is_none());
        let mut corrupt = record(4, "x");
        corrupt.token_hash = "not hex".into();
        assert!(match_token(&[corrupt], "x").is_none());
    }

    #[test]
    fn hook_paths_split_into_image_and_token() {
        let (r, t) = split_image_token("nginx/abc").unwrap();
        assert_eq!(
            (r.full_name().as_str(), t),
            ("docker.io/library/nginx", "abc")
        );
        let (r, t) = split_image_token("127.0.0.1:5000/team/app/tok").unwrap();
        assert_eq!(
            (r.full_name().as_str(), t),
            ("127.0.0.1:5000/team/app", "tok")
        );
        assert!(split_image_token("nginx").is_none());
        assert!(split_image_token("nginx/").is_none());
        assert!(split_image_token("nginx:1.2/tok").is_none());
        assert!(split_image_token("Bad Name/tok").is_none());
    }

    #[test]
    fn docker_hub_payloads_are_read_leniently() {
        let body = br#"{"callback_url":"x","push_data":{"pushed_at":1.417566161e+09,"tag":"1.2"},
            "repository":{"repo_name":"svendowideit/testhook","star_count":0.0}}"#;
        assert_eq!(
            dockerhub_payload(body),
            Payload::Push {
                repo_name: Some("svendowideit/testhook".into()),
                tag: Some("1.2".into())
            }
        );
        assert_eq!(dockerhub_payload(b""), Payload::Unreadable);
        assert_eq!(dockerhub_payload(b"{not json"), Payload::Unreadable);
        assert_eq!(dockerhub_payload(b"[1,2]"), Payload::Unreadable);
        assert_eq!(
            dockerhub_payload(br#"{"push_data":{"tag":"bad tag!"},"repository":{"repo_name":7}}"#),
            Payload::Push {
                repo_name: None,
                tag: None
            }
        );
    }

    #[test]
    fn repository_names_match_in_any_spelling() {
        let nginx = ImageRef::parse("nginx").unwrap();
        assert!(names_repository("library/nginx", &nginx));
        assert!(names_repository("nginx", &nginx));
        assert!(names_repository("docker.io/library/nginx", &nginx));
        assert!(!names_repository("evil/nginx", &nginx));
        assert!(!names_repository("nginx:latest", &nginx));
        let private = ImageRef::parse("reg.example:5000/team/app").unwrap();
        assert!(names_repository("team/app", &private));
        assert!(names_repository("reg.example:5000/team/app", &private));
        assert!(!names_repository("team/other", &private));
    }

    #[test]
    fn registry_events_become_refreshes_of_the_tokens_host() {
        let events: Vec<Value> = serde_json::from_value(json!([
            {"action": "push", "target": {"mediaType": "application/octet-stream",
                "digest": "sha256:aa", "repository": "team/app"}},
            {"action": "pull", "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "repository": "team/app", "tag": "1"}},
            {"action": "push", "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:bb", "repository": "team/app", "tag": "2",
                "url": "http://evil.example/v2/team/app/manifests/sha256:bb"},
                "request": {"host": "evil.example"}},
            {"action": "push", "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "repository": "team/app", "tag": "2"}},
            {"action": "push", "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:cc", "repository": "team/app"}},
            {"action": "push", "target": {"mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": "sha256:dd", "repository": "team/other"}},
            {"action": "push", "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "repository": "Bad/Name", "tag": "1"}},
            {"action": "push", "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "repository": "blocked/app", "tag": "1"}},
            "not an event"
        ]))
        .unwrap();
        let plan = plan_registry_refreshes("reg.example:5000", &events, |r| {
            if r.repository().starts_with("blocked/") {
                Err("no".into())
            } else {
                Ok(())
            }
        });
        let got: Vec<(String, Option<String>)> = plan
            .refreshes
            .iter()
            .map(|(r, t)| (r.full_name(), t.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("reg.example:5000/team/other".to_string(), None),
                (
                    "reg.example:5000/team/app".to_string(),
                    Some("2".to_string())
                ),
            ]
        );
        assert_eq!(plan.ignored, 5);
    }

    #[test]
    fn registry_hosts_are_normalised() {
        assert_eq!(
            normalise_registry_host("Reg.Example:5000").as_deref(),
            Some("reg.example:5000")
        );
        assert_eq!(
            normalise_registry_host("http://127.0.0.1:5000/").as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(
            normalise_registry_host("localhost").as_deref(),
            Some("localhost")
        );
        assert_eq!(normalise_registry_host("nginx"), None);
        assert_eq!(normalise_registry_host("a.example/path"), None);
        assert_eq!(normalise_registry_host(""), None);
    }

    #[test]
    fn tokens_are_cut_from_logged_paths() {
        let secret = "Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg";
        for (method, path) in [
            (Method::POST, format!("/hooks/dockerhub/nginx/{secret}")),
            (Method::POST, format!("/hooks/registry/{secret}")),
            (Method::POST, format!("/images/library/nginx/{secret}")),
            (Method::GET, format!("/hooks/registry/{secret}/")),
        ] {
            let shown = loggable_path(&method, &path);
            assert!(!shown.contains(secret), "{shown}");
            assert!(shown.ends_with("/[token]"), "{shown}");
        }
        assert_eq!(
            loggable_path(&Method::GET, "/images/nginx"),
            "/images/nginx"
        );
        assert_eq!(
            loggable_path(&Method::GET, "/v1/images/a/b"),
            "/v1/images/a/b"
        );
    }
}
