//! The JSON API under `/v1/`, with MicroBadger's field names (reference/microbadger.md §3) so
//! old clients keep working, plus ours (`Registry`, `Platforms`, `Compliance`, ...).
//!
//! - `GET /v1/images/{image}[:tag]`: the image document ([`ImageDoc`]). 200 when known, 202
//!   `{"status":"inspecting"}` while a worker looks (an unknown image is queued URGENT), 404
//!   when the registry has no such image or tag, 400 for a bad name, 403 for a registry off
//!   the allow-list, 429 when the client queues too much.
//! - `GET /v1/images/{image}/version/{digest}` (or `{image}@{digest}`): one version with its
//!   layers ([`VersionDoc`]), for a digest one of the image's tags points at.
//! - `GET /v1/search?q=&limit=`, `GET /v1/recent?limit=`, `GET /v1/best?limit=`: lists.
//! - `GET /v1/openapi.json`: the OpenAPI 3 description of all of this ([`openapi_document`]).
//!
//! Ready documents are rendered once into the in-memory [`RenderCache`](super::cache::RenderCache),
//! tagged with their repository, and dropped when the store records a change to it. Every
//! document is `application/json` with [`CachePolicy::SHORT`]; "inspecting" and errors are
//! `no-store`. A webhook's URL and token are never part of any document.
//!
//! Differences from MicroBadger, on purpose: unknown values are `null` rather than Go's zero
//! values (no `0001-01-01T00:00:00Z`, no `PullCount: 0` for registries without counts);
//! `WebhookURL` is gone (it published the secret); `Parents` and `Identical` are not computed.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::cache::{CachePolicy, Cached};
use super::lookup::{self, ImageView, Lookup};
use super::{AppState, WebError};
use crate::inspect::{Compliance, ImageVersion, PlatformEntry};
use crate::reference::ImageRef;
use crate::store::{Repository, TagRecord, TagSummary, VersionRecord};

pub use super::openapi::openapi_document;

/// `limit` when a list request gives none.
pub const DEFAULT_LIMIT: i64 = 20;
/// The largest `limit` a list request may ask for.
pub const MAX_LIMIT: i64 = 100;
/// The longest search query accepted.
pub const MAX_QUERY_CHARS: usize = 100;

const JSON: &str = "application/json";

// ---- documents ---------------------------------------------------------------------------

/// `{"tag": "1.2"}`, as MicroBadger wrote tags.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TagDoc {
    pub tag: String,
}

/// MicroBadger's `License`, plus whether the value is a valid SPDX expression.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LicenseDoc {
    /// The canonical SPDX expression when valid, else the label's value.
    #[serde(rename = "Code")]
    pub code: String,
    /// The SPDX page of the (first) licence named, when it is a listed one.
    #[serde(rename = "URL")]
    pub url: Option<String>,
    #[serde(rename = "Valid")]
    pub valid: bool,
}

/// MicroBadger's `VersionControl`, for any host (MicroBadger knew only GitHub).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VersionControlDoc {
    /// `org.label-schema.vcs-type` when given; `git` for the git hosts whose layout we know.
    #[serde(rename = "Type")]
    pub kind: Option<String>,
    /// The source tree at the commit when the host's layout is known, else the source URL.
    #[serde(rename = "URL")]
    pub url: Option<String>,
    #[serde(rename = "Commit")]
    pub commit: Option<String>,
    /// The repository's browsable URL.
    #[serde(rename = "Source")]
    pub source: Option<String>,
}

/// One version of an image in [`ImageDoc::versions`] (MicroBadger's version entry).
#[derive(Debug, Clone, Serialize)]
pub struct VersionSummary {
    #[serde(rename = "SHA")]
    pub sha: String,
    #[serde(rename = "Tags")]
    pub tags: Vec<TagDoc>,
    #[serde(rename = "ImageName")]
    pub image_name: String,
    #[serde(rename = "Author")]
    pub author: Option<String>,
    #[serde(rename = "Labels")]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "LayerCount")]
    pub layer_count: usize,
    #[serde(rename = "DownloadSize")]
    pub download_size: u64,
    #[serde(rename = "Created")]
    pub created: Option<String>,
    #[serde(rename = "License")]
    pub license: Option<LicenseDoc>,
    #[serde(rename = "VersionControl")]
    pub version_control: Option<VersionControlDoc>,
    /// The version its labels declare (`org.opencontainers.image.version`, ...).
    #[serde(rename = "Version")]
    pub version: Option<String>,
    #[serde(rename = "Platforms")]
    pub platforms: Vec<String>,
    #[serde(rename = "ComplianceScore")]
    pub compliance_score: u8,
}

/// `GET /v1/images/{image}[:tag]`: MicroBadger's image document. The top-level version fields
/// describe the tag asked for, else `latest`, else the most recently changed tag.
#[derive(Debug, Clone, Serialize)]
pub struct ImageDoc<'a> {
    /// The name people write: `nginx`, `user/app`, `ghcr.io/org/app`.
    #[serde(rename = "ImageName")]
    pub image_name: String,
    /// Registry host: `docker.io`, `ghcr.io`, `host:5000`.
    #[serde(rename = "Registry")]
    pub registry: String,
    /// Path on the registry: `library/nginx`.
    #[serde(rename = "Repository")]
    pub repository: String,
    /// The tag these top-level fields describe.
    #[serde(rename = "Tag")]
    pub tag: String,
    /// The digest of that tag's version.
    #[serde(rename = "Id")]
    pub id: String,
    /// The digest `latest` points at (else the most recently changed tag's).
    #[serde(rename = "LatestSHA")]
    pub latest_sha: String,
    /// The longest tag of the version described, other than `latest`.
    #[serde(rename = "LatestVersion")]
    pub latest_version: String,
    /// When we last checked the registry.
    #[serde(rename = "UpdatedAt")]
    pub updated_at: Option<DateTime<Utc>>,
    /// When the image last changed: Docker Hub's `last_updated`, else our last seen change.
    #[serde(rename = "LastUpdated")]
    pub last_updated: Option<String>,
    #[serde(rename = "Description")]
    pub description: Option<String>,
    #[serde(rename = "PullCount")]
    pub pull_count: Option<u64>,
    #[serde(rename = "StarCount")]
    pub star_count: Option<u64>,
    /// The image's page on Docker Hub (Docker Hub images only).
    #[serde(rename = "ImageURL")]
    pub image_url: Option<String>,
    /// The image's page here.
    #[serde(rename = "MicrobadgerURL")]
    pub microbadger_url: String,
    #[serde(rename = "Author")]
    pub author: Option<String>,
    #[serde(rename = "Created")]
    pub created: Option<String>,
    #[serde(rename = "Labels")]
    pub labels: &'a BTreeMap<String, String>,
    #[serde(rename = "LayerCount")]
    pub layer_count: usize,
    #[serde(rename = "DownloadSize")]
    pub download_size: u64,
    #[serde(rename = "License")]
    pub license: Option<LicenseDoc>,
    #[serde(rename = "VersionControl")]
    pub version_control: Option<VersionControlDoc>,
    #[serde(rename = "Version")]
    pub version: Option<String>,
    /// `os/arch[/variant]` of every platform the tag offers.
    #[serde(rename = "Platforms")]
    pub platforms: Vec<String>,
    #[serde(rename = "Compliance")]
    pub compliance: &'a Compliance,
    /// Every version a tag points at, most recently changed first.
    #[serde(rename = "Versions")]
    pub versions: Vec<VersionSummary>,
}

/// One layer of a [`VersionDoc`] (MicroBadger's `BlobSum`, `Command`, `DownloadSize`).
#[derive(Debug, Clone, Serialize)]
pub struct LayerDoc {
    #[serde(rename = "BlobSum")]
    pub blob_sum: String,
    #[serde(rename = "Command")]
    pub command: Option<String>,
    #[serde(rename = "DownloadSize")]
    pub download_size: u64,
    #[serde(rename = "Created")]
    pub created: Option<String>,
    #[serde(rename = "MediaType")]
    pub media_type: String,
}

/// One platform's manifest in a multi-platform version.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestDoc {
    #[serde(rename = "Platform")]
    pub platform: String,
    #[serde(rename = "Digest")]
    pub digest: String,
    #[serde(rename = "MediaType")]
    pub media_type: String,
    #[serde(rename = "Size")]
    pub size: i64,
}

/// `GET /v1/images/{image}/version/{digest}`: MicroBadger's ImageVersion document, with the
/// layers and our compliance report. For a multi-platform digest, the layers and labels are
/// the default platform's (`Platform`).
#[derive(Debug, Clone, Serialize)]
pub struct VersionDoc<'a> {
    #[serde(rename = "SHA")]
    pub sha: String,
    /// This image's tags that point at the version.
    #[serde(rename = "Tags")]
    pub tags: Vec<TagDoc>,
    #[serde(rename = "ImageName")]
    pub image_name: String,
    #[serde(rename = "Registry")]
    pub registry: String,
    #[serde(rename = "Repository")]
    pub repository: String,
    #[serde(rename = "MediaType")]
    pub media_type: String,
    #[serde(rename = "Author")]
    pub author: Option<String>,
    #[serde(rename = "Labels")]
    pub labels: &'a BTreeMap<String, String>,
    #[serde(rename = "Annotations")]
    pub annotations: &'a BTreeMap<String, String>,
    #[serde(rename = "LayerCount")]
    pub layer_count: usize,
    #[serde(rename = "DownloadSize")]
    pub download_size: u64,
    #[serde(rename = "Created")]
    pub created: Option<String>,
    #[serde(rename = "Layers")]
    pub layers: Vec<LayerDoc>,
    #[serde(rename = "License")]
    pub license: Option<LicenseDoc>,
    #[serde(rename = "VersionControl")]
    pub version_control: Option<VersionControlDoc>,
    #[serde(rename = "Version")]
    pub version: Option<String>,
    #[serde(rename = "MicrobadgerURL")]
    pub microbadger_url: String,
    /// The platform the labels and layers describe.
    #[serde(rename = "Platform")]
    pub platform: Option<String>,
    #[serde(rename = "Platforms")]
    pub platforms: Vec<String>,
    #[serde(rename = "Manifests")]
    pub manifests: Vec<ManifestDoc>,
    #[serde(rename = "ExposedPorts")]
    pub exposed_ports: &'a [String],
    #[serde(rename = "Entrypoint")]
    pub entrypoint: &'a [String],
    #[serde(rename = "Cmd")]
    pub cmd: &'a [String],
    #[serde(rename = "User")]
    pub user: Option<&'a str>,
    #[serde(rename = "WorkingDir")]
    pub working_dir: Option<&'a str>,
    #[serde(rename = "Volumes")]
    pub volumes: &'a [String],
    /// How many environment variables are set (their values are never shown).
    #[serde(rename = "EnvCount")]
    pub env_count: usize,
    #[serde(rename = "Compliance")]
    pub compliance: &'a Compliance,
    #[serde(rename = "Warnings")]
    pub warnings: &'a [String],
    #[serde(rename = "InspectedAt")]
    pub inspected_at: DateTime<Utc>,
}

/// One row of `/v1/recent` and `/v1/best`.
#[derive(Debug, Clone, Serialize)]
pub struct ListItem {
    #[serde(rename = "ImageName")]
    pub image_name: String,
    #[serde(rename = "Registry")]
    pub registry: String,
    #[serde(rename = "Tag")]
    pub tag: String,
    #[serde(rename = "SHA")]
    pub sha: String,
    #[serde(rename = "LastChanged")]
    pub last_changed: DateTime<Utc>,
    #[serde(rename = "DownloadSize")]
    pub download_size: i64,
    #[serde(rename = "LayerCount")]
    pub layer_count: i64,
    #[serde(rename = "ComplianceScore")]
    pub compliance_score: i64,
    #[serde(rename = "License")]
    pub license: Option<String>,
    #[serde(rename = "Version")]
    pub version: Option<String>,
    #[serde(rename = "URL")]
    pub url: String,
    #[serde(rename = "MicrobadgerURL")]
    pub microbadger_url: String,
}

/// One result of `/v1/search`.
#[derive(Debug, Clone, Serialize)]
pub struct SearchItem {
    #[serde(rename = "ImageName")]
    pub image_name: String,
    #[serde(rename = "Registry")]
    pub registry: String,
    #[serde(rename = "Description")]
    pub description: Option<String>,
    #[serde(rename = "PullCount")]
    pub pull_count: Option<u64>,
    #[serde(rename = "StarCount")]
    pub star_count: Option<u64>,
    #[serde(rename = "LastChanged")]
    pub last_changed: Option<DateTime<Utc>>,
    #[serde(rename = "URL")]
    pub url: String,
    #[serde(rename = "MicrobadgerURL")]
    pub microbadger_url: String,
}

// ---- pure helpers ------------------------------------------------------------------------

/// MicroBadger's longest-tag rule: among `tags` other than `latest`, the longest (in bytes; the
/// first of equals wins); `latest` only when it is the sole tag; `None` for no tags.
pub fn longest_tag<'a>(tags: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<&str> = None;
    let mut saw_latest = false;
    for t in tags {
        if t == "latest" {
            saw_latest = true;
        } else if best.is_none_or(|b| t.len() > b.len()) {
            best = Some(t);
        }
    }
    best.or(saw_latest.then_some("latest"))
}

/// The digest MicroBadger called `LatestSHA`: `latest`'s, else the most recently changed tag's.
pub fn latest_digest(tags: &[TagRecord]) -> Option<&str> {
    tags.iter()
        .find(|t| t.tag == "latest")
        .or_else(|| tags.iter().max_by_key(|t| t.last_changed))
        .map(|t| t.digest.as_str())
}

/// The image's page on Docker Hub.
pub fn hub_url(r: &ImageRef) -> Option<String> {
    if !r.is_docker_hub() {
        return None;
    }
    Some(match r.repository().strip_prefix("library/") {
        Some(name) if !name.contains('/') => format!("https://hub.docker.com/_/{name}"),
        _ => format!("https://hub.docker.com/r/{}", r.repository()),
    })
}

fn license_doc(v: &ImageVersion) -> Option<LicenseDoc> {
    let l = v.derived.license.as_ref()?;
    Some(LicenseDoc {
        code: match (&l.canonical, l.valid) {
            (Some(c), true) => c.clone(),
            _ => l.expression.clone(),
        },
        url: l
            .valid
            .then(|| l.licenses.first().and_then(|x| x.url.clone()))
            .flatten(),
        valid: l.valid,
    })
}

fn version_control_doc(v: &ImageVersion) -> Option<VersionControlDoc> {
    let d = &v.derived;
    if d.commit.is_none() && d.source.is_none() {
        return None;
    }
    let declared = v
        .labels
        .get("org.label-schema.vcs-type")
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty());
    Some(VersionControlDoc {
        kind: declared.or_else(|| d.commit_url.as_ref().map(|_| "git".to_string())),
        url: d.commit_url.clone().or_else(|| d.source.clone()),
        commit: d.commit.clone(),
        source: d.source.clone(),
    })
}

/// `os/arch[/variant]` of every platform of a version (the inspected image's own platform
/// when the store lists none).
fn platform_names(platforms: &[PlatformEntry], image: &ImageVersion) -> Vec<String> {
    if platforms.is_empty() {
        return image
            .platform
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>();
    }
    platforms.iter().map(|p| p.platform.to_string()).collect()
}

fn author(v: &ImageVersion) -> Option<String> {
    v.author.clone().or_else(|| v.derived.authors.clone())
}

fn summary(image_name: &str, version: &VersionRecord, tags: Vec<TagDoc>) -> VersionSummary {
    let v = &version.image;
    VersionSummary {
        sha: version.digest.clone(),
        tags,
        image_name: image_name.to_string(),
        author: author(v),
        labels: v.labels.clone(),
        layer_count: v.layer_count,
        download_size: v.download_size,
        created: v.created.clone(),
        license: license_doc(v),
        version_control: version_control_doc(v),
        version: v.derived.version.clone(),
        platforms: platform_names(&version.platforms, v),
        compliance_score: v.compliance.score,
    }
}

/// `name` with `:tag` when a tag was asked for: how the image is named in URLs.
fn url_name(r: &ImageRef) -> String {
    match r.tag() {
        Some(t) => format!("{}:{t}", r.familiar_name()),
        None => r.familiar_name(),
    }
}

/// The familiar name of a stored `registry`/`name` pair.
fn familiar(registry: &str, name: &str) -> String {
    ImageRef::parse(&format!("{registry}/{name}"))
        .map(|r| r.familiar_name())
        .unwrap_or_else(|_| format!("{registry}/{name}"))
}

/// Build the image document. `others` are the versions of the other digests the tags point
/// at (the shown one is in `view`).
pub fn image_doc<'a>(
    view: &'a ImageView,
    others: &[VersionRecord],
    public_url: &str,
) -> ImageDoc<'a> {
    let r = &view.reference;
    let repo: &Repository = &view.repository;
    let image_name = r.familiar_name();
    let v = &view.version.image;
    let shown_digest = view.version.digest.as_str();
    let tags_of = |digest: &str| -> Vec<&TagRecord> {
        view.tags.iter().filter(|t| t.digest == digest).collect()
    };
    // Versions, most recently changed first (then by digest, for a stable order).
    let mut digests: Vec<(&str, DateTime<Utc>)> = Vec::new();
    for t in &view.tags {
        match digests.iter_mut().find(|(d, _)| *d == t.digest) {
            Some((_, at)) => *at = (*at).max(t.last_changed),
            None => digests.push((t.digest.as_str(), t.last_changed)),
        }
    }
    digests.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let versions = digests
        .iter()
        .filter_map(|(d, _)| {
            let record = if *d == shown_digest {
                Some(&view.version)
            } else {
                others.iter().find(|o| o.digest == *d)
            }?;
            let tags = tags_of(d)
                .into_iter()
                .map(|t| TagDoc { tag: t.tag.clone() })
                .collect();
            Some(summary(&image_name, record, tags))
        })
        .collect();
    let hub = repo.hub.as_ref();
    ImageDoc {
        registry: r.registry().to_string(),
        repository: r.repository().to_string(),
        tag: view.tag.tag.clone(),
        id: shown_digest.to_string(),
        latest_sha: latest_digest(&view.tags)
            .unwrap_or(shown_digest)
            .to_string(),
        latest_version: longest_tag(tags_of(shown_digest).iter().map(|t| t.tag.as_str()))
            .unwrap_or("")
            .to_string(),
        updated_at: repo.last_checked,
        last_updated: hub.and_then(|h| h.last_updated.clone()).or_else(|| {
            repo.last_changed
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        }),
        description: hub
            .and_then(|h| h.description.clone())
            .or_else(|| v.derived.description.clone()),
        pull_count: hub.and_then(|h| h.pull_count),
        star_count: hub.and_then(|h| h.star_count),
        image_url: hub_url(r),
        microbadger_url: format!("{public_url}/images/{}", url_name(r)),
        author: author(v),
        created: v.created.clone(),
        labels: &v.labels,
        layer_count: v.layer_count,
        download_size: v.download_size,
        license: license_doc(v),
        version_control: version_control_doc(v),
        version: v.derived.version.clone(),
        platforms: platform_names(&view.version.platforms, v),
        compliance: &v.compliance,
        versions,
        image_name,
    }
}

/// Build the version document for `version`, one of `view`'s tags' digests.
pub fn version_doc<'a>(
    view: &ImageView,
    version: &'a VersionRecord,
    public_url: &str,
) -> VersionDoc<'a> {
    let r = &view.reference;
    let v = &version.image;
    let image_name = r.familiar_name();
    VersionDoc {
        sha: version.digest.clone(),
        tags: view
            .tags
            .iter()
            .filter(|t| t.digest == version.digest)
            .map(|t| TagDoc { tag: t.tag.clone() })
            .collect(),
        registry: r.registry().to_string(),
        repository: r.repository().to_string(),
        media_type: version.media_type.clone(),
        author: author(v),
        labels: &v.labels,
        annotations: &v.annotations,
        layer_count: v.layer_count,
        download_size: v.download_size,
        created: v.created.clone(),
        layers: v
            .layers
            .iter()
            .map(|l| LayerDoc {
                blob_sum: l.digest.clone(),
                command: l.command.clone(),
                download_size: l.size,
                created: l.created.clone(),
                media_type: l.media_type.clone(),
            })
            .collect(),
        license: license_doc(v),
        version_control: version_control_doc(v),
        version: v.derived.version.clone(),
        microbadger_url: format!(
            "{public_url}/images/{image_name}/version/{}",
            version.digest
        ),
        platform: v.platform.as_ref().map(ToString::to_string),
        platforms: platform_names(&version.platforms, v),
        manifests: version
            .platforms
            .iter()
            .map(|p| ManifestDoc {
                platform: p.platform.to_string(),
                digest: p.digest.clone(),
                media_type: p.media_type.clone(),
                size: p.size,
            })
            .collect(),
        exposed_ports: &v.exposed_ports,
        entrypoint: &v.entrypoint,
        cmd: &v.cmd,
        user: v.user.as_deref(),
        working_dir: v.working_dir.as_deref(),
        volumes: &v.volumes,
        env_count: v.env_count,
        compliance: &v.compliance,
        warnings: &v.warnings,
        inspected_at: version.inspected_at,
        image_name,
    }
}

fn list_item(s: &TagSummary, public_url: &str) -> ListItem {
    let name = familiar(&s.registry, &s.name);
    ListItem {
        url: format!("{public_url}/v1/images/{name}:{}", s.tag),
        microbadger_url: format!("{public_url}/images/{name}:{}", s.tag),
        image_name: name,
        registry: s.registry.clone(),
        tag: s.tag.clone(),
        sha: s.digest.clone(),
        last_changed: s.last_changed,
        download_size: s.download_size,
        layer_count: s.layer_count,
        compliance_score: s.compliance_score,
        license: s.license.clone(),
        version: s.version.clone(),
    }
}

fn search_item(r: &Repository, public_url: &str) -> SearchItem {
    let name = familiar(&r.registry, &r.name);
    let hub = r.hub.as_ref();
    SearchItem {
        url: format!("{public_url}/v1/images/{name}"),
        microbadger_url: format!("{public_url}/images/{name}"),
        image_name: name,
        registry: r.registry.clone(),
        description: hub.and_then(|h| h.description.clone()),
        pull_count: hub.and_then(|h| h.pull_count),
        star_count: hub.and_then(|h| h.star_count),
        last_changed: r.last_changed,
    }
}

/// `image/version/sha256:...` -> (`image`, `sha256:...`); `None` for any other path. The
/// version form wins over an image whose path happens to end in `version/<x>:<y>`, as the
/// version route did in MicroBadger.
pub fn split_version_path(rest: &str) -> Option<(&str, &str)> {
    let (image, digest) = rest.trim_matches('/').rsplit_once("/version/")?;
    (!image.is_empty() && digest.contains(':') && !digest.contains('/')).then_some((image, digest))
}

// ---- handlers ----------------------------------------------------------------------------

fn client_ip(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

fn json_body(
    status: StatusCode,
    body: impl Into<axum::body::Body>,
    policy: CachePolicy,
) -> Response {
    let mut resp = (status, body.into()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    policy.apply(resp)
}

fn serialize(doc: &impl Serialize) -> Result<Bytes, WebError> {
    serde_json::to_vec(doc)
        .map(Bytes::from)
        .map_err(WebError::internal)
}

fn inspecting(r: &ImageRef) -> Response {
    let body = serde_json::json!({
        "status": "inspecting",
        "ImageName": url_name(r),
        "Registry": r.registry(),
    });
    let mut resp = json_body(StatusCode::ACCEPTED, body.to_string(), CachePolicy::NoStore);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    resp
}

/// `GET /v1/images/{*rest}`: the image document, or a version's when the path is
/// `{image}/version/{digest}` or `{image}@{digest}`.
pub async fn image(
    State(state): State<AppState>,
    Path(rest): Path<String>,
    req: Request,
) -> Result<Response, WebError> {
    let client = client_ip(&req);
    // A document asked for by its path alone is also filed under that path, for the
    // middleware's fast path (the same path always names the same document).
    let alias = match req.uri().query() {
        None => Some(req.uri().path()),
        Some(_) => None,
    };
    if let Some((image, digest)) = split_version_path(&rest) {
        let r = lookup::parse_image_path(image)?;
        return version(&state, r, digest, client, alias).await;
    }
    let r = lookup::parse_image_path(&rest)?;
    if let Some(digest) = r.digest().map(str::to_string) {
        let plain =
            ImageRef::parse(&r.full_name()).map_err(|e| WebError::BadName(e.to_string()))?;
        return version(&state, plain, &digest, client, alias).await;
    }
    let key = format!("v1:image:{}:{}", r.full_name(), r.tag().unwrap_or(""));
    if let Some(hit) = state.cache.get(&key) {
        return Ok(hit.response());
    }
    let view = match lookup::lookup(&state, &r, client).await? {
        Lookup::Ready(view) => view,
        Lookup::Inspecting(r) => return Ok(inspecting(&r)),
        Lookup::NotFound(r, reason) => {
            return Err(WebError::NotFound(format!("{}: {reason}", url_name(&r))));
        }
    };
    let others = load_versions(
        &state,
        view.tags
            .iter()
            .map(|t| t.digest.as_str())
            .filter(|d| *d != view.version.digest),
    )
    .await?;
    let rendered = Cached::new(
        serialize(&image_doc(&view, &others, state.public_url()))?,
        JSON,
    );
    let resp = rendered.response();
    state
        .cache
        .insert_with_alias(key, alias, view.cache_repository(), rendered);
    Ok(resp)
}

/// The stored versions of these digests (each once), a few at a time.
async fn load_versions<'a>(
    state: &AppState,
    digests: impl Iterator<Item = &'a str>,
) -> Result<Vec<VersionRecord>, WebError> {
    let mut unique: Vec<String> = Vec::new();
    for d in digests {
        if !unique.iter().any(|u| u == d) {
            unique.push(d.to_string());
        }
    }
    let found: Vec<Option<VersionRecord>> = futures::stream::iter(unique)
        .map(|d| {
            let store = state.store.clone();
            async move { store.version(&d).await }
        })
        .buffered(8)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

async fn version(
    state: &AppState,
    r: ImageRef,
    digest: &str,
    client: Option<IpAddr>,
    alias: Option<&str>,
) -> Result<Response, WebError> {
    if r.tag().is_some() || r.digest().is_some() {
        return Err(WebError::BadName(
            "name the image without a tag in a version URL".into(),
        ));
    }
    crate::reference::validate_digest(digest).map_err(|e| WebError::BadName(e.to_string()))?;
    let key = format!("v1:version:{}@{digest}", r.full_name());
    if let Some(hit) = state.cache.get(&key) {
        return Ok(hit.response());
    }
    let view = match lookup::lookup(state, &r, client).await? {
        Lookup::Ready(view) => view,
        Lookup::Inspecting(r) => return Ok(inspecting(&r)),
        Lookup::NotFound(r, reason) => {
            return Err(WebError::NotFound(format!("{}: {reason}", url_name(&r))));
        }
    };
    if !view.tags.iter().any(|t| t.digest == digest) {
        return Err(WebError::NotFound(format!(
            "no tag of {} points at {digest}",
            r.familiar_name()
        )));
    }
    let record = if view.version.digest == digest {
        view.version.clone()
    } else {
        state.store.version(digest).await?.ok_or_else(|| {
            WebError::internal(format!("a tag points at unknown version {digest}"))
        })?
    };
    let rendered = Cached::new(
        serialize(&version_doc(&view, &record, state.public_url()))?,
        JSON,
    );
    let resp = rendered.response();
    state
        .cache
        .insert_with_alias(key, alias, view.cache_repository(), rendered);
    Ok(resp)
}

/// The query string's parameters (later duplicates win).
fn query_params(req: &Request) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
fn limit_param(params: &BTreeMap<String, String>) -> Result<i64, WebError> {
    match params.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(WebError::BadRequest(format!(
                "limit must be a whole number from 1 to {MAX_LIMIT}"
            ))),
        },
    }
}

/// `GET /v1/search?q=TEXT[&limit=N]`: inspected repositories whose name contains `TEXT`
/// (case-insensitive), by name.
pub async fn search(State(state): State<AppState>, req: Request) -> Result<Response, WebError> {
    let params = query_params(&req);
    let limit = limit_param(&params)?;
    let q = params.get("q").map(|s| s.trim()).unwrap_or("");
    if q.is_empty() {
        return Err(WebError::BadRequest("give a search text: ?q=...".into()));
    }
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(WebError::BadRequest(format!(
            "the search text is longer than {MAX_QUERY_CHARS} characters"
        )));
    }
    // Names that never resolved (typos, junk) are not shown: over-fetch, then keep the
    // inspected ones.
    let found = state.store.search(q, limit * 4).await?;
    let images: Vec<SearchItem> = found
        .iter()
        .filter(|r| {
            matches!(
                r.status,
                crate::store::RepoStatus::Inspected | crate::store::RepoStatus::Failed { .. }
            ) && r.last_changed.is_some()
        })
        .take(limit as usize)
        .map(|r| search_item(r, state.public_url()))
        .collect();
    let body = serialize(&serde_json::json!({"Query": q, "Images": images}))?;
    Ok(json_body(StatusCode::OK, body, CachePolicy::SHORT))
}

/// `GET /v1/recent[?limit=N]`: the most recently changed tags.
pub async fn recent(State(state): State<AppState>, req: Request) -> Result<Response, WebError> {
    let limit = limit_param(&query_params(&req))?;
    let rows = state.store.recently_changed(limit).await?;
    list(&state, &rows)
}

/// `GET /v1/best[?limit=N]`: the tags with the best label compliance.
pub async fn best(State(state): State<AppState>, req: Request) -> Result<Response, WebError> {
    let limit = limit_param(&query_params(&req))?;
    let rows = state.store.best_labelled(limit).await?;
    list(&state, &rows)
}

fn list(state: &AppState, rows: &[TagSummary]) -> Result<Response, WebError> {
    let images: Vec<ListItem> = rows
        .iter()
        .map(|s| list_item(s, state.public_url()))
        .collect();
    let body = serialize(&serde_json::json!({"Images": images}))?;
    Ok(json_body(StatusCode::OK, body, CachePolicy::SHORT))
}

/// `GET /v1/openapi.json`
pub async fn openapi(State(_state): State<AppState>) -> Result<Response, WebError> {
    static DOC: std::sync::LazyLock<Bytes> = std::sync::LazyLock::new(|| {
        Bytes::from(serde_json::to_vec_pretty(&openapi_document()).expect("JSON serialises"))
    });
    Ok(json_body(
        StatusCode::OK,
        DOC.clone(),
        CachePolicy::Public { max_age: 300 },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_tag_follows_microbadger() {
        assert_eq!(longest_tag(["latest", "1", "1.2.3", "1.2"]), Some("1.2.3"));
        assert_eq!(longest_tag(["latest"]), Some("latest"));
        assert_eq!(longest_tag(["ab", "cd"]), Some("ab"), "first of equals");
        assert_eq!(longest_tag(Vec::<&str>::new()), None);
    }

    #[test]
    fn version_paths_are_recognised() {
        let d = "sha256:0123";
        assert_eq!(
            split_version_path(&format!("nginx/version/{d}")),
            Some(("nginx", d))
        );
        assert_eq!(
            split_version_path(&format!("127.0.0.1:5000/team/app/version/{d}")),
            Some(("127.0.0.1:5000/team/app", d))
        );
        assert_eq!(split_version_path("org/version/app"), None);
        assert_eq!(split_version_path("org/version"), None);
        assert_eq!(split_version_path(&format!("/version/{d}")), None);
    }

    #[test]
    fn hub_urls_for_official_and_user_images() {
        let url = |s: &str| hub_url(&ImageRef::parse(s).unwrap());
        assert_eq!(
            url("nginx").as_deref(),
            Some("https://hub.docker.com/_/nginx")
        );
        assert_eq!(
            url("user/app").as_deref(),
            Some("https://hub.docker.com/r/user/app")
        );
        assert_eq!(url("ghcr.io/org/app"), None);
    }
}
