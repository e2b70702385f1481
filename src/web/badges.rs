//! `/badges/{kind}/{image}[:tag].svg` and `/badges/label/{key}/{image}[:tag].svg`.
//!
//! The image part follows the reference rules (`nginx`, `library/nginx:1.27`, `user/app`,
//! `ghcr.io/org/app:1.2`, `127.0.0.1:5000/team/app:1.0`), which keeps MicroBadger's URLs
//! (`/badges/image/org/name.svg`, `/badges/version/name:tag.svg`, …) working. axum cannot
//! route `{image}:{tag}.svg`, so [`crate::badge::parse_path`] splits the path itself.
//!
//! Answers, all `image/svg+xml`:
//! - a known image: its badge, 200, [`CachePolicy::SHORT`]; rendered once and then served
//!   from the [`RenderCache`](super::cache::RenderCache) (keyed by path and query, dropped when
//!   the repository changes, `ETag` computed once), so a README hit is found by the
//!   middleware's fast path before routing reaches this handler: a map lookup and a `Bytes`
//!   clone;
//! - an unknown image: 200 "inspecting" (queued URGENT by [`lookup`]), never cached;
//! - no such image or tag: 200 "not found";
//! - a bad kind, style, colour or image name: 400, drawn as an error badge by
//!   [`super::error::render`].

use std::net::SocketAddr;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, OriginalUri, Path, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;

use crate::badge::{self, BadgeError, BadgeOptions, BadgeText, Subject};

use super::cache::{CachePolicy, Cached};
use super::lookup::{self, Lookup};
use super::{AppState, WebError};

/// The content type of every badge.
pub const SVG_CONTENT_TYPE: &str = "image/svg+xml;charset=utf-8";

/// Serve one badge.
pub async fn badge(
    State(state): State<AppState>,
    rest: Result<Path<String>, PathRejection>,
    OriginalUri(uri): OriginalUri,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Result<Response, WebError> {
    let key = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    // Only rendered badges of known images are cached, so a hit was a valid request.
    // (The middleware's fast path finds a hit under the same key before this handler runs;
    // this lookup catches one rendered meanwhile.)
    if let Some(hit) = state.cache.get(key) {
        return Ok(hit.response());
    }

    // Split the raw path so a label key may hold an encoded `/`; the decoded capture is only a
    // fallback should the router ever be nested under another prefix.
    let raw = match (uri.path().strip_prefix("/badges/"), &rest) {
        (Some(raw), _) => raw,
        (None, Ok(Path(rest))) => rest.as_str(),
        (None, Err(e)) => return Err(WebError::BadRequest(e.body_text())),
    };
    let path = badge::parse_path(raw).map_err(bad_request)?;
    let opts = BadgeOptions::from_query(uri.query()).map_err(bad_request)?;
    let reference = lookup::parse_image_path(&path.image)?;
    if reference.digest().is_some() {
        return Err(WebError::BadName(
            "badges follow a tag, not a digest: use IMAGE:TAG".into(),
        ));
    }

    let client = client.map(|Extension(ConnectInfo(addr))| addr.ip());
    match lookup::lookup(&state, &reference, client).await? {
        Lookup::Ready(view) => {
            let subject = Subject {
                version: &view.version,
                tag: &view.tag,
                tags: &view.tags,
            };
            let text = badge::badge_for(&path.kind, &subject);
            let rendered = Cached::new(badge::render(&text, &opts), SVG_CONTENT_TYPE);
            let resp = rendered.response();
            state
                .cache
                .insert(key.to_owned(), view.cache_repository(), rendered);
            Ok(resp)
        }
        Lookup::Inspecting(_) => {
            let svg = badge::render(&BadgeText::inspecting(&path.kind), &opts);
            Ok(svg_response(Bytes::from(svg), CachePolicy::NoStore))
        }
        Lookup::NotFound(r, reason) => {
            tracing::debug!(image = %r, %reason, "badge for a missing image");
            let svg = badge::render(&BadgeText::not_found(&path.kind), &opts);
            Ok(svg_response(Bytes::from(svg), CachePolicy::SHORT))
        }
    }
}

fn bad_request(e: BadgeError) -> WebError {
    WebError::BadRequest(e.to_string())
}

fn svg_response(body: Bytes, policy: CachePolicy) -> Response {
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(SVG_CONTENT_TYPE),
    );
    policy.apply(resp)
}
