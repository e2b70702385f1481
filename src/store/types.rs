//! What the store returns: repositories, tags, versions, events and list rows.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::db::Row;
use crate::inspect::{ImageVersion, PlatformEntry};
use crate::reference::ImageRef;
use crate::registry::hub::HubInfo;

/// Which database a [`Store`](super::Store) talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// One image repository (`registry/name`, all its tags).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Repository {
    pub id: i64,
    /// Registry host with optional port, as [`ImageRef::registry`] gives it (`docker.io`).
    pub registry: String,
    /// Path on the registry, as [`ImageRef::repository`] gives it (`library/nginx`).
    pub name: String,
    pub status: RepoStatus,
    /// What Docker Hub says about it, for docker.io repositories once fetched.
    pub hub: Option<HubInfo>,
    /// When a refresh last reached the registry for it.
    pub last_checked: Option<DateTime<Utc>>,
    /// When one of its tags was last added, moved or deleted.
    pub last_changed: Option<DateTime<Utc>>,
    /// When the scheduler should next refresh it.
    pub next_refresh_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl Repository {
    /// The repository as an image reference (`registry/name`, no tag).
    ///
    /// # Panics
    /// Never for a value read from the store: [`Store::add_repository`](super::Store::add_repository)
    /// only accepts a registry and name that parse back to themselves. A hand-built value with
    /// an invalid name panics.
    pub fn image_ref(&self) -> ImageRef {
        ImageRef::parse(&format!("{}/{}", self.registry, self.name))
            .expect("stored repository names are valid references")
    }

    /// Reads a row of the `repository_columns!()` columns.
    pub(super) fn from_row(row: &Row) -> Result<Self, StoreError> {
        let id = row.int("id")?;
        let status = RepoStatus::from_columns(
            &row.text("status")?,
            row.opt_text("status_reason")?,
            row.opt_time("next_retry")?,
        )
        .map_err(|e| StoreError::Corrupt(format!("repository {id}: {e}")))?;
        let hub = row
            .opt_text("hub")?
            .map(|json| serde_json::from_str::<HubInfo>(&json))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("repository {id}: hub JSON: {e}")))?;
        Ok(Repository {
            id,
            registry: row.text("registry")?,
            name: row.text("name")?,
            status,
            hub,
            last_checked: row.opt_time("last_checked")?,
            last_changed: row.opt_time("last_changed")?,
            next_refresh_at: row.time("next_refresh_at")?,
            created_at: row.time("created_at")?,
        })
    }
}

/// What the last refresh of a repository found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state")]
pub enum RepoStatus {
    /// Known but not inspected yet.
    Pending,
    /// Inspected successfully; its tags are current.
    Inspected,
    /// The registry says it does not exist (or it has no tags).
    Missing { reason: String },
    /// The last refresh failed for another reason.
    Failed {
        reason: String,
        next_retry: Option<DateTime<Utc>>,
    },
}

impl RepoStatus {
    /// `(status, status_reason, next_retry)` as stored.
    pub(super) fn columns(&self) -> (&'static str, Option<&str>, Option<DateTime<Utc>>) {
        match self {
            RepoStatus::Pending => ("pending", None, None),
            RepoStatus::Inspected => ("inspected", None, None),
            RepoStatus::Missing { reason } => ("missing", Some(reason), None),
            RepoStatus::Failed { reason, next_retry } => ("failed", Some(reason), *next_retry),
        }
    }

    fn from_columns(
        status: &str,
        reason: Option<String>,
        next_retry: Option<DateTime<Utc>>,
    ) -> Result<Self, String> {
        Ok(match status {
            "pending" => RepoStatus::Pending,
            "inspected" => RepoStatus::Inspected,
            "missing" => RepoStatus::Missing {
                reason: reason.unwrap_or_default(),
            },
            "failed" => RepoStatus::Failed {
                reason: reason.unwrap_or_default(),
                next_retry,
            },
            other => return Err(format!("unknown status `{other}`")),
        })
    }
}

/// Where a tag points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    pub tag: String,
    /// The tag's top-level digest (index or manifest): the key of its [`VersionRecord`].
    pub digest: String,
    pub first_seen: DateTime<Utc>,
    /// When it last pointed somewhere new (its `first_seen` until it moves).
    pub last_changed: DateTime<Utc>,
    pub last_checked: DateTime<Utc>,
}

impl TagRecord {
    pub(super) fn from_row(row: &Row) -> Result<Self, StoreError> {
        Ok(TagRecord {
            tag: row.text("tag")?,
            digest: row.text("digest")?,
            first_seen: row.time("first_seen")?,
            last_changed: row.time("last_changed")?,
            last_checked: row.time("last_checked")?,
        })
    }
}

/// An inspected digest, shared by every tag that points at it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// The top-level digest (the index's for a multi-platform image).
    pub digest: String,
    /// The top-level media type.
    pub media_type: String,
    /// Every platform the digest offers.
    pub platforms: Vec<PlatformEntry>,
    /// The inspected image (the default platform's for an index).
    pub image: ImageVersion,
    /// When this content was stored (again, if a newer inspection described it differently).
    pub inspected_at: DateTime<Utc>,
}

impl VersionRecord {
    pub(super) fn from_row(row: &Row) -> Result<Self, StoreError> {
        let digest = row.text("digest")?;
        let corrupt = |what: &str, e: serde_json::Error| {
            StoreError::Corrupt(format!("version {digest}: {what} JSON: {e}"))
        };
        let platforms =
            serde_json::from_str(&row.text("platforms")?).map_err(|e| corrupt("platforms", e))?;
        let image = serde_json::from_str(&row.text("image")?).map_err(|e| corrupt("image", e))?;
        Ok(VersionRecord {
            media_type: row.text("media_type")?,
            platforms,
            image,
            inspected_at: row.time("inspected_at")?,
            digest,
        })
    }
}

/// What happened in one change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// A tag seen for the first time.
    Added,
    /// A tag that now points at another digest.
    Moved,
    /// A tag that is gone from the registry.
    Deleted,
    /// The repository's status or Hub information changed (or its tag's version was
    /// re-described) without any tag moving.
    RepositoryUpdated,
}

impl EventKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "added",
            EventKind::Moved => "moved",
            EventKind::Deleted => "deleted",
            EventKind::RepositoryUpdated => "repository_updated",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "added" => EventKind::Added,
            "moved" => EventKind::Moved,
            "deleted" => EventKind::Deleted,
            "repository_updated" => EventKind::RepositoryUpdated,
            _ => return None,
        })
    }
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the change sequence: 1, 2, 3 … in commit order, without gaps.
    pub seq: i64,
    pub repository_id: i64,
    pub registry: String,
    pub name: String,
    /// The tag, for tag events; `None` for [`EventKind::RepositoryUpdated`].
    pub tag: Option<String>,
    pub kind: EventKind,
    pub old_digest: Option<String>,
    pub new_digest: Option<String>,
    pub at: DateTime<Utc>,
}

impl Event {
    pub(super) fn from_row(row: &Row) -> Result<Self, StoreError> {
        let seq = row.int("seq")?;
        let kind = row.text("kind")?;
        let kind = EventKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("event {seq}: unknown kind `{kind}`")))?;
        Ok(Event {
            seq,
            repository_id: row.int("repository_id")?,
            registry: row.text("registry")?,
            name: row.text("name")?,
            tag: row.opt_text("tag")?,
            kind,
            old_digest: row.opt_text("old_digest")?,
            new_digest: row.opt_text("new_digest")?,
            at: row.time("at")?,
        })
    }
}

/// A tag with its version's headline numbers, for lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagSummary {
    pub registry: String,
    pub name: String,
    pub tag: String,
    pub digest: String,
    pub last_changed: DateTime<Utc>,
    pub download_size: i64,
    pub layer_count: i64,
    /// 0-100, [`crate::inspect::Compliance::score`].
    pub compliance_score: i64,
    /// The licence as labelled (its canonical SPDX form when valid).
    pub license: Option<String>,
    pub version: Option<String>,
}

impl TagSummary {
    pub(super) fn from_row(row: &Row) -> Result<Self, StoreError> {
        Ok(TagSummary {
            registry: row.text("registry")?,
            name: row.text("name")?,
            tag: row.text("tag")?,
            digest: row.text("digest")?,
            last_changed: row.time("last_changed")?,
            download_size: row.int("download_size")?,
            layer_count: row.int("layer_count")?,
            compliance_score: row.int("compliance_score")?,
            license: row.opt_text("license")?,
            version: row.opt_text("version")?,
        })
    }
}
