//! From an image name in a URL to what the store knows about it.
//!
//! URLs name images the way people type them (`nginx`, `library/nginx:1.27`, `user/app`,
//! `ghcr.io/org/app:1.2`, `127.0.0.1:5000/team/app`); the reference rules decide what they
//! mean. An image the store does not know yet is validated, checked against the allow-list and
//! queued URGENT (a person is waiting): the caller shows "inspecting" until a worker is done.

use std::net::IpAddr;

use crate::queue::{JobKind, Priority};
use crate::reference::ImageRef;
use crate::store::{RepoStatus, Repository, TagRecord, VersionRecord};

use super::{AppState, WebError};

/// Parse the image part of a URL path (`org/name[:tag]`, with or without a leading `/`).
pub fn parse_image_path(path: &str) -> Result<ImageRef, WebError> {
    let path = path.trim_matches('/');
    if path.is_empty() {
        return Err(WebError::BadName("no image name given".into()));
    }
    ImageRef::parse(path).map_err(|e| WebError::BadName(e.to_string()))
}

/// An image the store knows, with the tag to show.
#[derive(Debug, Clone)]
pub struct ImageView {
    pub reference: ImageRef,
    pub repository: Repository,
    /// Every tag, sorted by name.
    pub tags: Vec<TagRecord>,
    /// The tag shown: the one asked for, else `latest`, else the most recently changed.
    pub tag: TagRecord,
    pub version: VersionRecord,
}

impl ImageView {
    /// The cache tag for everything rendered from this view.
    pub fn cache_repository(&self) -> String {
        self.reference.full_name()
    }
}

/// What a request for an image finds.
#[derive(Debug, Clone)]
pub enum Lookup {
    Ready(Box<ImageView>),
    /// Queued (or already being inspected): come back shortly.
    Inspecting(ImageRef),
    /// The registry says there is no such image (or tag).
    NotFound(ImageRef, String),
}

/// An unknown tag of a repository checked less than this long ago is "not found" rather than
/// worth another registry request.
const RECHECK_UNKNOWN_TAG_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Resolve an image for display, queueing an URGENT inspection when it is not known yet.
/// `client` is rate-limited when it makes us queue work.
pub async fn lookup(
    state: &AppState,
    r: &ImageRef,
    client: Option<IpAddr>,
) -> Result<Lookup, WebError> {
    state
        .registry
        .check_allowed(r)
        .map_err(|e| WebError::NotAllowed(e.to_string()))?;
    let repo = state.store.repository(r.registry(), r.repository()).await?;
    let Some(repo) = repo else {
        queue_urgent(state, r, client).await?;
        return Ok(Lookup::Inspecting(r.clone()));
    };
    match &repo.status {
        RepoStatus::Missing { reason } => return Ok(Lookup::NotFound(r.clone(), reason.clone())),
        RepoStatus::Pending => return Ok(Lookup::Inspecting(r.clone())),
        RepoStatus::Inspected | RepoStatus::Failed { .. } => {}
    }
    let tags = state.store.tags(repo.id).await?;
    let chosen = match r.tag() {
        Some(t) => tags.iter().find(|x| x.tag == t).cloned(),
        None => tags
            .iter()
            .find(|x| x.tag == "latest")
            .or_else(|| tags.iter().max_by_key(|x| x.last_changed))
            .cloned(),
    };
    let Some(tag) = chosen else {
        let checked_recently = repo
            .last_checked
            .is_some_and(|t| chrono::Utc::now() - t < RECHECK_UNKNOWN_TAG_AFTER);
        return match (&repo.status, r.tag()) {
            (RepoStatus::Inspected, Some(t)) if checked_recently => {
                Ok(Lookup::NotFound(r.clone(), format!("no tag {t}")))
            }
            // A tag we have not seen may have just been pushed: look.
            (RepoStatus::Inspected, Some(_)) => {
                queue_urgent(state, r, client).await?;
                Ok(Lookup::Inspecting(r.clone()))
            }
            (RepoStatus::Failed { reason, .. }, _) => {
                Ok(Lookup::NotFound(r.clone(), reason.clone()))
            }
            _ => Ok(Lookup::NotFound(
                r.clone(),
                "the repository has no tags".into(),
            )),
        };
    };
    let Some(version) = state.store.version(&tag.digest).await? else {
        return Err(WebError::internal(format!(
            "tag {} points at unknown version {}",
            tag.tag, tag.digest
        )));
    };
    Ok(Lookup::Ready(Box::new(ImageView {
        reference: r.clone(),
        repository: repo,
        tags,
        tag,
        version,
    })))
}

/// Queue an URGENT refresh for an image a person is waiting for.
pub async fn queue_urgent(
    state: &AppState,
    r: &ImageRef,
    client: Option<IpAddr>,
) -> Result<(), WebError> {
    if let Some(ip) = client
        && !state.limiter.allow(ip)
    {
        return Err(WebError::TooManyRequests);
    }
    // Only the tag a person asked for (one HEAD, manifest and config); the worker adds the
    // repository to the store, and the scheduler reads the rest of it within the period.
    let urgent = JobKind::Refresh {
        image: r.full_name(),
        tag: Some(r.tag_or_default().to_string()),
    };
    state.queue.enqueue(&urgent, Priority::Urgent).await?;
    Ok(())
}
