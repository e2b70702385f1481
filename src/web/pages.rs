//! HTML pages: server-rendered with askama, usable without JavaScript, cached in memory.
//!
//! # Layout
//! - this file: the handlers ([`home`], [`search`], [`image`] (image, version and inspecting
//!   pages), [`api_docs`], [`static_file`]) and [`error_page`].
//! - [`templates`]: one `*Page` struct per page, each with its template in `templates/`.
//! - [`view`]: what the templates show, built from store records (untrusted text cleaned
//!   there, links only for `http(s)`).
//! - [`chart`]: the layer-size bar chart's geometry.
//! - [`format`]: sizes, counts, dates, digests and untrusted text.
//! - [`api_doc`]: the OpenAPI document read for the `/api` page.
//! - [`assets`]: `static/` embedded in the binary.
//!
//! # Image pages
//! `/images/{*rest}` is one route; [`image`] splits it: `NAME[:TAG]` is the image page,
//! `NAME/version/DIGEST` the version page, `NAME@DIGEST` redirects to the latter, and any other
//! spelling of a name (`library/nginx`, `docker.io/library/nginx`, a trailing `/`) redirects
//! to the familiar one, so each page has one URL and one render-cache entry.
//!
//! An image the store does not know yet is queued URGENT by [`lookup`] and answered with the
//! inspecting page, status **202 Accepted** (the page is not the image yet) and `no-store`.
//! It completes itself: `static/app.js` polls `?poll=1` on the same URL, which answers 202
//! while the page would still say "inspecting" and 200 once it would not, without queueing
//! anything, and reloads the page then; the script also cancels the page's
//! `<meta http-equiv="refresh" content="3">`, which is the fallback without JavaScript.
//!
//! Rendered image and version pages go into the [`RenderCache`](super::cache::RenderCache)
//! keyed by path and tagged with their repository, so a change to the repository drops them.
//! They hold no relative times ("3 days ago"): those go stale in a cache with no expiry, so
//! `app.js` adds them in the browser from `<time datetime>`.

pub mod api_doc;
mod assets;
pub mod chart;
pub mod format;
pub mod templates;
pub mod view;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use askama::Template;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{Extensions, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;

use super::cache::{CachePolicy, Cached};
use super::lookup::{Lookup, lookup, parse_image_path};
use super::{AppState, WebError};
use crate::reference::ImageRef;
use crate::store::{RepoStatus, TagRecord, VersionRecord};
use templates::{
    ApiPage, Chrome, ErrorPage, HomePage, ImagePage, InspectingPage, SearchPage, VersionPage,
};
use view::{DetailInput, ImageDetail, SearchRow, SummaryRow, image_href, version_href};

const HTML: &str = "text/html; charset=utf-8";
/// Rows in each list on the home page.
const HOME_LIST_LEN: i64 = 10;
/// Search results listed at most.
const SEARCH_LIMIT: usize = 50;
/// Longest search query read.
const MAX_QUERY_CHARS: usize = 200;
/// Mirrors `lookup`'s rule: an unknown tag of a repository checked this recently is "not
/// found" rather than queued again, so the inspecting page is done.
const RECHECK_UNKNOWN_TAG_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Render a page with a status and a cache policy.
fn render(
    status: StatusCode,
    page: &impl Template,
    policy: CachePolicy,
) -> Result<Response, WebError> {
    let body = page.render().map_err(WebError::internal)?;
    Ok(policy.apply((status, [(header::CONTENT_TYPE, HTML)], body).into_response()))
}

/// A page from the render cache ([`CachePolicy::SHORT`], its `ETag` computed when rendered).
fn cached(hit: Cached) -> Response {
    hit.response()
}

/// Render an image or version page, keep it in the render cache, and answer with it. `alias`
/// is the request path when it asked for exactly this page (no query): the page is filed
/// under it too, for the middleware's fast path.
fn render_cached(
    state: &AppState,
    key: String,
    alias: Option<&str>,
    repository: String,
    page: &impl Template,
) -> Result<Response, WebError> {
    let body = page.render().map_err(WebError::internal)?;
    let hit = Cached::new(body, HTML);
    state
        .cache
        .insert_with_alias(key, alias, repository, hit.clone());
    Ok(cached(hit))
}

/// The first value of `name` in a query string (lossy UTF-8, never fails).
fn query_param(raw: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(raw?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn client_ip(ext: &Extensions) -> Option<IpAddr> {
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// `/`: a search box, recently changed images, best-labelled images.
pub async fn home(State(state): State<AppState>) -> Result<Response, WebError> {
    let now = Utc::now();
    let (recent, best, known) = tokio::try_join!(
        state.store.recently_changed(HOME_LIST_LEN),
        state.store.best_labelled(HOME_LIST_LEN),
        state.store.count_repositories(),
    )?;
    let rows = |list: Vec<crate::store::TagSummary>| {
        list.iter()
            .filter_map(|s| SummaryRow::from_summary(s, now))
            .collect()
    };
    let page = HomePage {
        chrome: Chrome::new("Container image metadata, labels and badges"),
        recent: rows(recent),
        best: rows(best),
        known,
    };
    render(StatusCode::OK, &page, CachePolicy::SHORT)
}

/// `/search?q=`: repositories whose name contains the query, and a direct link when the query
/// is itself an image name (which may not be known yet).
pub async fn search(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    let now = Utc::now();
    let query: String = query_param(raw.as_deref(), "q")
        .unwrap_or_default()
        .trim()
        .chars()
        .take(MAX_QUERY_CHARS)
        .collect();
    let mut results = Vec::new();
    let mut more = false;
    if !query.is_empty() {
        let found = state.store.search(&query, SEARCH_LIMIT as i64 + 1).await?;
        more = found.len() > SEARCH_LIMIT;
        results = found
            .iter()
            .take(SEARCH_LIMIT)
            .filter_map(|r| SearchRow::from_repository(r, now))
            .collect();
    }
    let direct = ImageRef::parse(query.strip_prefix("docker pull ").unwrap_or(&query))
        .ok()
        .filter(|r| r.digest().is_none())
        .map(|r| {
            let name = r.familiar();
            (image_href(&r.familiar_name(), r.tag()), name)
        });
    let mut chrome = Chrome::new(if query.is_empty() {
        "Search".to_owned()
    } else {
        format!("Search: {}", format::printable(&query))
    });
    chrome.query = query.clone();
    let page = SearchPage {
        chrome,
        query: format::printable(&query),
        results,
        more,
        direct,
    };
    render(StatusCode::OK, &page, CachePolicy::SHORT)
}

/// `/images/{*rest}`: the image page, the version page, or the inspecting page (see the module
/// docs for how the path is split).
pub async fn image(
    State(state): State<AppState>,
    Path(rest): Path<String>,
    RawQuery(raw): RawQuery,
    ext: Extensions,
) -> Result<Response, WebError> {
    let client = client_ip(&ext);
    let poll = query_param(raw.as_deref(), "poll").is_some();
    if let Some((name, digest)) = rest.rsplit_once("/version/")
        && digest.contains(':')
    {
        crate::reference::validate_digest(digest).map_err(|e| WebError::BadName(e.to_string()))?;
        let alias = raw.is_none();
        return version(&state, &rest, name, digest, client, poll, alias).await;
    }
    let r = parse_image_path(&rest)?;
    if let Some(digest) = r.digest() {
        return Ok(Redirect::permanent(&version_href(&r.familiar_name(), digest)).into_response());
    }
    let path = image_href(&r.familiar_name(), r.tag());
    if format!("/images/{rest}") != path {
        return Ok(Redirect::permanent(&path).into_response());
    }
    if poll {
        return poll_status(&state, &r).await;
    }
    let key = format!("page:{path}");
    if let Some(hit) = state.cache.get(&key) {
        return Ok(cached(hit));
    }
    match lookup(&state, &r, client).await? {
        Lookup::Ready(v) => {
            let versions = versions_of(&state, &v.tags, &v.version).await?;
            let d = ImageDetail::build(&DetailInput {
                reference: &v.reference,
                repository: &v.repository,
                tags: &v.tags,
                versions: &versions,
                version: &v.version,
                tag: Some(&v.tag.tag),
                badge_tag: r.tag(),
                public_url: state.public_url(),
                now: Utc::now(),
            });
            let title = match r.tag() {
                Some(t) => format!("{}:{t}", d.name),
                None => d.name.clone(),
            };
            let page = ImagePage {
                chrome: Chrome::new(title),
                d,
            };
            let alias = raw.is_none().then_some(path.as_str());
            render_cached(&state, key, alias, v.cache_repository(), &page)
        }
        Lookup::Inspecting(r) => inspecting(&r.familiar(), &path),
        Lookup::NotFound(r, reason) => Err(not_found(&r, &reason)),
    }
}

/// `/images/{name}/version/{digest}`: one digest of a repository, which must be where one of
/// its tags points.
async fn version(
    state: &AppState,
    rest: &str,
    name: &str,
    digest: &str,
    client: Option<IpAddr>,
    poll: bool,
    alias: bool,
) -> Result<Response, WebError> {
    let r = parse_image_path(name)?;
    if r.tag().is_some() || r.digest().is_some() {
        return Err(WebError::BadName(
            "a version page names the image without a tag: /images/NAME/version/DIGEST".into(),
        ));
    }
    let path = version_href(&r.familiar_name(), digest);
    if format!("/images/{rest}") != path {
        return Ok(Redirect::permanent(&path).into_response());
    }
    if poll {
        return poll_status(state, &r).await;
    }
    let key = format!("page:{path}");
    if let Some(hit) = state.cache.get(&key) {
        return Ok(cached(hit));
    }
    let v = match lookup(state, &r, client).await? {
        Lookup::Ready(v) => v,
        Lookup::Inspecting(_) => return inspecting(&r.familiar_name(), &path),
        Lookup::NotFound(r, reason) => return Err(not_found(&r, &reason)),
    };
    let missing = || {
        WebError::NotFound(format!(
            "no tag of {} points at {digest}",
            r.familiar_name()
        ))
    };
    if !v.tags.iter().any(|t| t.digest == digest) {
        return Err(missing());
    }
    let version = state.store.version(digest).await?.ok_or_else(missing)?;
    let versions = versions_of(state, &v.tags, &version).await?;
    let d = ImageDetail::build(&DetailInput {
        reference: &v.reference,
        repository: &v.repository,
        tags: &v.tags,
        versions: &versions,
        version: &version,
        tag: None,
        badge_tag: None,
        public_url: state.public_url(),
        now: Utc::now(),
    });
    let page = VersionPage {
        chrome: Chrome::new(format!("{}@{}", d.name, d.digest_short)),
        d,
    };
    let alias = alias.then_some(path.as_str());
    render_cached(state, key, alias, v.cache_repository(), &page)
}

/// The versions of the tags an image page lists, by digest (each read once).
async fn versions_of(
    state: &AppState,
    tags: &[TagRecord],
    shown: &VersionRecord,
) -> Result<HashMap<String, VersionRecord>, WebError> {
    let mut listed: Vec<&TagRecord> = tags.iter().collect();
    listed.sort_by_key(|t| std::cmp::Reverse(t.last_changed));
    listed.truncate(view::MAX_TAGS_SHOWN);
    let mut out = HashMap::new();
    out.insert(shown.digest.clone(), shown.clone());
    for t in listed {
        if out.contains_key(&t.digest) {
            continue;
        }
        if let Some(v) = state.store.version(&t.digest).await? {
            out.insert(t.digest.clone(), v);
        }
    }
    Ok(out)
}

fn not_found(r: &ImageRef, reason: &str) -> WebError {
    WebError::NotFound(format!(
        "{} was not found: {}",
        r.familiar(),
        format::clip(reason, 500)
    ))
}

/// The page shown while an image is being inspected: 202, never cached.
fn inspecting(name: &str, path: &str) -> Result<Response, WebError> {
    let page = InspectingPage {
        chrome: Chrome::new(format!("Inspecting {name}")),
        name: name.to_owned(),
        page_href: path.to_owned(),
        poll_href: format!("{path}?poll=1"),
    };
    render(StatusCode::ACCEPTED, &page, CachePolicy::NoStore)
}

/// `?poll=1`: would the page still say "inspecting"? 202 if so, 200 if not. Reads the store
/// only: never queues, so it is not rate-limited and the inspecting page's script may ask
/// every second.
async fn poll_status(state: &AppState, r: &ImageRef) -> Result<Response, WebError> {
    state
        .registry
        .check_allowed(r)
        .map_err(|e| WebError::NotAllowed(e.to_string()))?;
    let done = match state.store.repository(r.registry(), r.repository()).await? {
        None => false,
        Some(repo) => match &repo.status {
            RepoStatus::Pending => false,
            RepoStatus::Missing { .. } | RepoStatus::Failed { .. } => true,
            RepoStatus::Inspected => match r.tag() {
                None => true,
                Some(t) => {
                    let recently = repo
                        .last_checked
                        .is_some_and(|c| Utc::now() - c < RECHECK_UNKNOWN_TAG_AFTER);
                    recently || state.store.tags(repo.id).await?.iter().any(|x| x.tag == t)
                }
            },
        },
    };
    let (status, body) = if done {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::ACCEPTED, "inspecting")
    };
    Ok(CachePolicy::NoStore.apply(
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response(),
    ))
}

/// `/api`: the OpenAPI document served at `/v1/openapi.json`, as a page.
pub async fn api_docs(State(state): State<AppState>) -> Result<Response, WebError> {
    let page = ApiPage {
        chrome: Chrome::new("JSON API"),
        spec_href: "/v1/openapi.json",
        doc: api_doc::from_openapi(&super::api::openapi_document()),
        badge_kinds: view::BADGE_KINDS.to_vec(),
        badge_example: format!("{}/badges/image/nginx:1.27.svg", state.public_url()),
    };
    render(StatusCode::OK, &page, CachePolicy::SHORT)
}

/// `/static/{*file}`: the embedded files, cached for a day (pages link them with a content
/// hash).
pub async fn static_file(Path(file): Path<String>) -> Result<Response, WebError> {
    let asset = assets::get(&file).ok_or_else(|| WebError::NotFound("no such file".into()))?;
    Ok(CachePolicy::Static
        .apply(([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()))
}

/// A complete HTML error page; `message` is escaped.
pub fn error_page(status: StatusCode, message: &str) -> String {
    let heading = match status.as_u16() {
        400 => "Bad request",
        403 => "Not allowed",
        404 => "Not found",
        413 => "Too large",
        429 => "Too many requests",
        503 => "Unavailable",
        500..=599 => "Something went wrong",
        _ => "Error",
    };
    let page = ErrorPage {
        chrome: Chrome::new(heading),
        status: status.as_u16(),
        heading,
        message: format::printable(message),
    };
    page.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "rendering the error page failed");
        let escaped = message
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;");
        format!(
            "<!doctype html><title>{}</title><p>{escaped}</p>",
            status.as_u16()
        )
    })
}
