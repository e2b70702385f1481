//! The store: what we know about repositories, their tags and the versions those tags point
//! at, plus a change log that web instances follow. One [`Store`] type with the same async
//! functions and the same behaviour on SQLite (the embedded default, one file) and PostgreSQL
//! (production); one test suite (`tests/store.rs`) proves it on both.
//!
//! # Layout
//! - `mod.rs` (this file): [`Store`] and every operation, written once. The SQL is shared: both
//!   engines accept `$1` parameters, `RETURNING`, `ON CONFLICT … DO UPDATE … WHERE` and
//!   `IS DISTINCT FROM`, so no statement needs an engine-specific form today.
//! - `db.rs`: the engine adapter. Runs a statement with typed parameters on either engine,
//!   reads typed columns back, begins transactions (`BEGIN IMMEDIATE` on SQLite), and embeds
//!   and applies the migrations in `migrations/sqlite` and `migrations/postgres`.
//! - `scaler.rs`: the microscaler's inputs and history: each web instance's published load
//!   and every decision, both pruned on write (see that file).
//! - `types.rs`: the records returned ([`Repository`], [`TagRecord`], [`VersionRecord`],
//!   [`Event`], [`TagSummary`]) and how each is read from a row.
//!
//! ## Schema
//! - `repositories (id, registry, name, status, status_reason, next_retry, hub, last_checked,
//!   last_changed, next_refresh_at, created_at)`, unique on `(registry, name)`, indexed on
//!   `next_refresh_at` for [`Store::repositories_due`]. The status is three plain columns
//!   rather than JSON so it can be read and filtered in SQL; Hub data is a JSON document
//!   because nothing filters on it.
//! - `versions (digest PK, media_type, platforms, image, download_size, layer_count,
//!   compliance_score, license, version, created, inspected_at)`: one row per top-level digest
//!   (an index or a manifest), shared by every tag of every repository that points at it, so a
//!   tag that moves back, or a second tag on the same image, costs no new row. `platforms` and
//!   `image` hold the [`PlatformEntry`](crate::inspect::PlatformEntry) list and the [`ImageVersion`] as JSON text (the page
//!   shows them whole); the columns after them are copied out for the lists, which sort and
//!   show them without parsing JSON.
//! - `tags (repository_id, tag) PK -> digest` with `first_seen`, `last_changed`,
//!   `last_checked`; indexed on `last_changed` (recently changed) and `digest`.
//! - `events (seq PK, repository_id, tag, kind, old_digest, new_digest, at)`: the change log.
//! - `change_seq`: a single row holding the last `seq` handed out.
//!
//! ## Why it is built this way
//! - **The change sequence is a locked counter, not an auto-increment.** Web instances poll
//!   [`Store::events_since`] with the last `seq` they saw. With a PostgreSQL sequence, two
//!   transactions can take 5 and 6 and commit 6 first; a reader that then sees 6 never sees 5.
//!   Every transaction that records an event instead bumps the one `change_seq` row, whose row
//!   lock is held until commit, so sequence numbers are handed out in commit order and without
//!   gaps (a rolled-back transaction gives its number back). SQLite has one writer at a time
//!   anyway. Writers touching the counter are serialised, which is cheap at this write rate,
//!   and the counter is taken last in each transaction to keep the lock short.
//! - **Every change that alters public output records an event**: tag added / moved / deleted,
//!   and `RepositoryUpdated` for a status or Hub change (or a re-described version) that moved
//!   no tag. So [`Store::latest_seq`] is a complete cache-invalidation signal.
//! - **Idempotent saves.** [`Store::save_tag`] compares before it writes: the version upsert
//!   only updates when the stored JSON differs (`ON CONFLICT … WHERE`), the tag only moves when
//!   the digest differs, the status only changes when it is not already `inspected`. Saving
//!   the same inspection again changes only `last_checked`, and records no event.
//! - **One transaction per save**, so a failure at any step leaves nothing behind. Rows are
//!   locked in one order (version, repository, tag, counter) so concurrent saves on
//!   PostgreSQL cannot deadlock; on SQLite, `BEGIN IMMEDIATE` takes the write lock up front.
//! - **Timestamps are UTC with microsecond precision on both engines**: `TIMESTAMPTZ` on
//!   PostgreSQL, `INTEGER` microseconds since the epoch on SQLite (sorts and compares as a
//!   number, unlike text dates with varying fractions). Values are truncated to microseconds
//!   before they are written, so what comes back is identical on both.
//! - **Identical ordering**: PostgreSQL text columns that are sorted or compared are
//!   `COLLATE "C"` (code-point order, like SQLite's `BINARY`), whatever the cluster's locale.
//!   Case-insensitive search lower-cases both sides (ASCII) and uses `LIKE … ESCAPE '\'` with
//!   `%`, `_` and `\` in the query escaped, so they match literally.
//! - **SQLite setup**: the file and its folder are created on first use; WAL mode lets readers
//!   work while a writer commits; a 5 s busy timeout lets the web, worker and queue processes
//!   that share the file wait for each other instead of failing; foreign keys are on.

mod db;
mod scaler;
mod types;
mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use self::db::{Pool, Tx};
pub use self::scaler::{DECISIONS_KEPT, InstanceLoad, LOADS_KEPT};
pub use self::types::{
    Engine, Event, EventKind, RepoStatus, Repository, TagRecord, TagSummary, VersionRecord,
};
pub use self::webhooks::{WebhookKind, WebhookRecord};
use crate::inspect::ImageVersion;
use crate::reference::ImageRef;
use crate::registry::Inspection;
use crate::registry::hub::HubInfo;

/// How long a SQLite connection waits for another process's write lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections per process.
const MAX_CONNECTIONS: u32 = 10;

/// Why a store operation failed. Messages never contain passwords: database URLs are shown
/// as `host:port/database` or the file path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL scheme `{0}`: expected sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("cannot open the database at {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("applying database migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// A stored row that cannot be read back (bad JSON, unknown enum value).
    #[error("corrupt data in the store: {0}")]
    Corrupt(String),
    #[error("no repository with id {0}")]
    RepositoryNotFound(i64),
    /// An argument the store refuses (a name that is not a valid reference, an inspection
    /// without images).
    #[error("invalid input: {0}")]
    Invalid(String),
}

/// The store. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
}

/// The `SELECT` list [`Repository::from_row`] reads.
macro_rules! repository_columns {
    () => {
        "id, registry, name, status, status_reason, next_retry, hub, last_checked, last_changed, \
         next_refresh_at, created_at"
    };
}

/// The `SELECT … FROM … JOIN` [`TagSummary::from_row`] reads; callers add `ORDER BY`.
macro_rules! tag_summary_select {
    () => {
        "SELECT r.registry, r.name, t.tag, t.digest, t.last_changed, v.download_size, \
                v.layer_count, v.compliance_score, v.license, v.version \
         FROM tags t \
         JOIN repositories r ON r.id = t.repository_id \
         JOIN versions v ON v.digest = t.digest "
    };
}

/// The repository a transaction has locked (by updating its row).
struct Locked {
    id: i64,
    registry: String,
    name: String,
}

impl Store {
    /// Opens the store at `url` and applies pending migrations.
    ///
    /// - `sqlite://PATH` (or `sqlite:PATH`): the file and its parent folder are created when
    ///   missing; WAL mode, a 5 s busy timeout and foreign keys are switched on.
    /// - `postgres://…` or `postgresql://…`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let pool = if url.starts_with("sqlite:") {
            Pool::Sqlite(open_sqlite(url).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Pool::Postgres(open_postgres(url).await?)
        } else {
            let scheme = url.split_once(':').map_or("", |(s, _)| s);
            return Err(StoreError::UnsupportedUrl(
                scheme.chars().take(32).collect(),
            ));
        };
        let store = Store { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations not yet applied. Idempotent, and safe to run from several
    /// processes at once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        Ok(self.pool.migrate().await?)
    }

    pub fn engine(&self) -> Engine {
        match self.pool {
            Pool::Sqlite(_) => Engine::Sqlite,
            Pool::Postgres(_) => Engine::Postgres,
        }
    }

    /// The SQLite pool, which the embedded queue shares (same file, same settings).
    pub fn sqlite_pool(&self) -> Option<&sqlx::SqlitePool> {
        match &self.pool {
            Pool::Sqlite(p) => Some(p),
            Pool::Postgres(_) => None,
        }
    }

    pub fn postgres_pool(&self) -> Option<&sqlx::PgPool> {
        match &self.pool {
            Pool::Postgres(p) => Some(p),
            Pool::Sqlite(_) => None,
        }
    }

    // ---- repositories ----------------------------------------------------------------------

    /// The repository `registry/name`, created as [`RepoStatus::Pending`] with its first
    /// refresh at `next_refresh_at` if it is new. An existing one is returned unchanged.
    ///
    /// `registry` and `name` must be normalised as [`ImageRef`] gives them (`docker.io`,
    /// `library/nginx`); anything else is [`StoreError::Invalid`].
    pub async fn add_repository(
        &self,
        registry: &str,
        name: &str,
        next_refresh_at: DateTime<Utc>,
    ) -> Result<Repository, StoreError> {
        let normalised = ImageRef::parse(&format!("{registry}/{name}"))
            .is_ok_and(|r| r.registry() == registry && r.repository() == name);
        if !normalised {
            return Err(StoreError::Invalid(format!(
                "`{}/{}` is not a normalised repository name",
                registry.escape_debug(),
                name.escape_debug()
            )));
        }
        let mut conn = self.pool.acquire().await?;
        conn.exec()
            .execute(
                "INSERT INTO repositories (registry, name, status, next_refresh_at, created_at) \
                 VALUES ($1, $2, 'pending', $3, $4) \
                 ON CONFLICT (registry, name) DO NOTHING",
                &[
                    registry.into(),
                    name.into(),
                    next_refresh_at.into(),
                    Utc::now().into(),
                ],
            )
            .await?;
        let row = conn
            .exec()
            .fetch_one(
                concat!(
                    "SELECT ",
                    repository_columns!(),
                    " FROM repositories WHERE registry = $1 AND name = $2"
                ),
                &[registry.into(), name.into()],
            )
            .await?;
        Repository::from_row(&row)
    }

    pub async fn repository(
        &self,
        registry: &str,
        name: &str,
    ) -> Result<Option<Repository>, StoreError> {
        let row = self
            .pool
            .acquire()
            .await?
            .exec()
            .fetch_optional(
                concat!(
                    "SELECT ",
                    repository_columns!(),
                    " FROM repositories WHERE registry = $1 AND name = $2"
                ),
                &[registry.into(), name.into()],
            )
            .await?;
        row.as_ref().map(Repository::from_row).transpose()
    }

    pub async fn repository_by_id(&self, id: i64) -> Result<Option<Repository>, StoreError> {
        let row = self
            .pool
            .acquire()
            .await?
            .exec()
            .fetch_optional(
                concat!(
                    "SELECT ",
                    repository_columns!(),
                    " FROM repositories WHERE id = $1"
                ),
                &[id.into()],
            )
            .await?;
        row.as_ref().map(Repository::from_row).transpose()
    }

    /// Repositories whose `next_refresh_at` is at or before `now`, most overdue first.
    pub async fn repositories_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Repository>, StoreError> {
        let rows = self
            .pool
            .acquire()
            .await?
            .exec()
            .fetch_all(
                concat!(
                    "SELECT ",
                    repository_columns!(),
                    " FROM repositories WHERE next_refresh_at <= $1 \
                      ORDER BY next_refresh_at, id LIMIT $2"
                ),
                &[now.into(), limit.max(0).into()],
            )
            .await?;
        rows.iter().map(Repository::from_row).collect()
    }

    /// When the scheduler should next refresh the repository. Not a public change: no event.
    pub async fn set_next_refresh(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        let changed = self
            .pool
            .acquire()
            .await?
            .exec()
            .execute(
                "UPDATE repositories SET next_refresh_at = $2 WHERE id = $1",
                &[id.into(), at.into()],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::RepositoryNotFound(id));
        }
        Ok(())
    }

    pub async fn count_repositories(&self) -> Result<i64, StoreError> {
        let row = self
            .pool
            .acquire()
            .await?
            .exec()
            .fetch_one("SELECT COUNT(*) AS n FROM repositories", &[])
            .await?;
        Ok(row.int("n")?)
    }

    /// Records what a refresh found and sets `last_checked = now`. A different status (or
    /// reason, or next retry) records a [`EventKind::RepositoryUpdated`] event; the same one
    /// records nothing.
    pub async fn set_status(
        &self,
        id: i64,
        status: &RepoStatus,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = now.trunc_subsecs(6);
        let (state, reason, next_retry) = status.columns();
        let mut tx = self.pool.begin().await?;
        let repo = lock_repository(&mut tx, id, now).await?;
        let changed = tx
            .exec()
            .execute(
                "UPDATE repositories SET status = $2, status_reason = $3, next_retry = $4 \
                 WHERE id = $1 AND (status <> $2 \
                                    OR status_reason IS DISTINCT FROM $3 \
                                    OR next_retry IS DISTINCT FROM $4)",
                &[id.into(), state.into(), reason.into(), next_retry.into()],
            )
            .await?;
        if changed > 0 {
            record_event(
                &mut tx,
                &repo,
                None,
                EventKind::RepositoryUpdated,
                None,
                None,
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores Docker Hub's view of the repository; a change records a
    /// [`EventKind::RepositoryUpdated`] event.
    pub async fn set_hub_info(&self, id: i64, info: &HubInfo) -> Result<(), StoreError> {
        let json = serde_json::to_string(info)
            .map_err(|e| StoreError::Invalid(format!("cannot encode Hub info: {e}")))?;
        let mut tx = self.pool.begin().await?;
        let updated = tx
            .exec()
            .fetch_optional(
                "UPDATE repositories SET hub = $2 \
                 WHERE id = $1 AND hub IS DISTINCT FROM $2 \
                 RETURNING registry, name",
                &[id.into(), json.as_str().into()],
            )
            .await?;
        match updated {
            Some(row) => {
                let repo = Locked {
                    id,
                    registry: row.text("registry")?,
                    name: row.text("name")?,
                };
                let now = Utc::now().trunc_subsecs(6);
                record_event(
                    &mut tx,
                    &repo,
                    None,
                    EventKind::RepositoryUpdated,
                    None,
                    None,
                    now,
                )
                .await?;
                tx.commit().await?;
            }
            None => {
                let exists = tx
                    .exec()
                    .fetch_optional("SELECT id FROM repositories WHERE id = $1", &[id.into()])
                    .await?;
                if exists.is_none() {
                    return Err(StoreError::RepositoryNotFound(id));
                }
            }
        }
        Ok(())
    }

    /// Repositories whose `registry/name` contains `query`, case-insensitively (ASCII).
    /// `%`, `_` and `\` in the query match themselves.
    pub async fn search(&self, query: &str, limit: i64) -> Result<Vec<Repository>, StoreError> {
        let pattern = like_pattern(&query.to_ascii_lowercase());
        let rows = self
            .pool
            .acquire()
            .await?
            .exec()
            .fetch_all(
                concat!(
                    "SELECT ",
                    repository_columns!(),
                    " FROM repositories \
                      WHERE lower(registry || '/' || name) LIKE $1 ESCAPE '\\' \
                      ORDER BY registry, name LIMIT $2"
                ),
                &[pattern.as_str().into(), limit.max(0).into()],
            )
            .await?;
        rows.iter().map(Repository::from_row).collect()
    }

    // ---- tags and versions -----------------------------------------------------------------

    /// The repository's tags, sorted by name (code-point order).
    pub async fn tags(&self, id: i64) -> Result<Vec<TagRecord>, StoreError> {
        let rows = self
            .pool
            .acquire()
            .await?
            .exec()
            .fetch_all(
                "SELECT tag, digest, first_seen, last_changed, last_checked FROM tags \
                 WHERE repository_id = $1 ORDER BY tag",
                &[id.into()],
            )
            .await?;
        rows.iter().map(TagRecord::from_row).collect()
    }

    /// Saves one tag's inspection, in one transaction:
    /// - upserts the version keyed by `inspection.digest` (the tag's top-level digest), storing
    ///   `inspection.images[0]` and the platform list (rewritten only if they differ);
    /// - points the tag at it, recording [`EventKind::Added`] for a new tag or
    ///   [`EventKind::Moved`] (with old and new digests) for one that pointed elsewhere;
    /// - sets the repository [`RepoStatus::Inspected`], `last_checked = now`, and
    ///   `last_changed = now` if the tag changed.
    ///
    /// If only the status (or the stored description of the version) changed, one
    /// [`EventKind::RepositoryUpdated`] event is recorded instead. Saving the same result again
    /// changes `last_checked` and nothing else, and returns no events.
    pub async fn save_tag(
        &self,
        repo_id: i64,
        tag: &str,
        inspection: &Inspection,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError> {
        let now = now.trunc_subsecs(6);
        crate::reference::validate_tag(tag)
            .map_err(|e| StoreError::Invalid(format!("tag: {e}")))?;
        let image = inspection.images.first().ok_or_else(|| {
            StoreError::Invalid(format!(
                "the inspection of {} has no image to store",
                inspection.digest
            ))
        })?;
        let encode = |what: &str, e: serde_json::Error| {
            StoreError::Invalid(format!("cannot encode {what}: {e}"))
        };
        let image_json = serde_json::to_string(image).map_err(|e| encode("the image", e))?;
        let platforms_json =
            serde_json::to_string(&inspection.platforms).map_err(|e| encode("the platforms", e))?;
        let digest = inspection.digest.as_str();

        let mut tx = self.pool.begin().await?;
        let version_changed = upsert_version(
            &mut tx,
            inspection,
            image,
            &image_json,
            &platforms_json,
            now,
        )
        .await?;
        let repo = lock_repository(&mut tx, repo_id, now).await?;
        let previous = tx
            .exec()
            .fetch_optional(
                "SELECT digest FROM tags WHERE repository_id = $1 AND tag = $2",
                &[repo_id.into(), tag.into()],
            )
            .await?
            .map(|row| row.text("digest"))
            .transpose()?;

        let tag_change = match previous.as_deref() {
            None => {
                tx.exec()
                    .execute(
                        "INSERT INTO tags (repository_id, tag, digest, first_seen, last_changed, \
                                           last_checked) \
                         VALUES ($1, $2, $3, $4, $4, $4)",
                        &[repo_id.into(), tag.into(), digest.into(), now.into()],
                    )
                    .await?;
                Some(EventKind::Added)
            }
            Some(old) if old != digest => {
                tx.exec()
                    .execute(
                        "UPDATE tags SET digest = $3, last_changed = $4, last_checked = $4 \
                         WHERE repository_id = $1 AND tag = $2",
                        &[repo_id.into(), tag.into(), digest.into(), now.into()],
                    )
                    .await?;
                Some(EventKind::Moved)
            }
            Some(_) => {
                tx.exec()
                    .execute(
                        "UPDATE tags SET last_checked = $3 WHERE repository_id = $1 AND tag = $2",
                        &[repo_id.into(), tag.into(), now.into()],
                    )
                    .await?;
                None
            }
        };
        let status_changed = mark_inspected(&mut tx, repo_id).await?;

        let mut events = Vec::new();
        if let Some(kind) = tag_change {
            tx.exec()
                .execute(
                    "UPDATE repositories SET last_changed = $2 WHERE id = $1",
                    &[repo_id.into(), now.into()],
                )
                .await?;
            let event = record_event(
                &mut tx,
                &repo,
                Some(tag),
                kind,
                previous.as_deref(),
                Some(digest),
                now,
            )
            .await?;
            events.push(event);
        } else if status_changed || version_changed {
            let event = record_event(
                &mut tx,
                &repo,
                None,
                EventKind::RepositoryUpdated,
                None,
                None,
                now,
            )
            .await?;
            events.push(event);
        }
        tx.commit().await?;
        Ok(events)
    }

    /// A `HEAD` found the tag unchanged: sets the tag's and the repository's `last_checked`.
    ///
    /// A repository marked missing or failed is marked inspected again (with a
    /// [`EventKind::RepositoryUpdated`] event), since its registry just answered for a tag we
    /// have; otherwise a repository whose tags never move would keep an old failure forever.
    /// A tag the store does not know is left alone (it was deleted meanwhile).
    pub async fn touch_tag(
        &self,
        repo_id: i64,
        tag: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = now.trunc_subsecs(6);
        let mut tx = self.pool.begin().await?;
        let repo = lock_repository(&mut tx, repo_id, now).await?;
        let touched = tx
            .exec()
            .execute(
                "UPDATE tags SET last_checked = $3 WHERE repository_id = $1 AND tag = $2",
                &[repo_id.into(), tag.into(), now.into()],
            )
            .await?;
        if touched == 0 {
            // Rolled back: nothing was checked.
            return Ok(());
        }
        if mark_inspected(&mut tx, repo_id).await? {
            record_event(
                &mut tx,
                &repo,
                None,
                EventKind::RepositoryUpdated,
                None,
                None,
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes tags that are gone from the registry, recording an [`EventKind::Deleted`]
    /// event (with the old digest) for each one that existed. Versions stay: other tags may
    /// point at them, and the tag may come back.
    pub async fn delete_tags(
        &self,
        repo_id: i64,
        tags: &[String],
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, StoreError> {
        let now = now.trunc_subsecs(6);
        let mut tx = self.pool.begin().await?;
        let repo = lock_repository(&mut tx, repo_id, now).await?;
        let mut deleted = Vec::new();
        for tag in tags {
            let row = tx
                .exec()
                .fetch_optional(
                    "DELETE FROM tags WHERE repository_id = $1 AND tag = $2 RETURNING digest",
                    &[repo_id.into(), tag.into()],
                )
                .await?;
            if let Some(row) = row {
                deleted.push((tag, row.text("digest")?));
            }
        }
        let mut events = Vec::with_capacity(deleted.len());
        if !deleted.is_empty() {
            tx.exec()
                .execute(
                    "UPDATE repositories SET last_changed = $2 WHERE id = $1",
                    &[repo_id.into(), now.into()],
                )
                .await?;
            for (tag, digest) in &deleted {
                let event = record_event(
                    &mut tx,
                    &repo,
                    Some(tag),
                    EventKind::Deleted,
                    Some(digest),
                    None,
                    now,
                )
                .await?;
                events.push(event);
            }
        }
        tx.commit().await?;
        Ok(events)
    }

    /// The stored version with this top-level digest.
    pub async fn version(&self, digest: &str) -> Result<Option<VersionRecord>, StoreError> {
        let row = self
            .pool
            .acquire()
            .await?
            .exec()
            .fetch_optional(
                "SELECT digest, media_type, platforms, image, inspected_at FROM versions \
                 WHERE digest = $1",
                &[digest.into()],
            )
            .await?;
        row.as_ref().map(VersionRecord::from_row).transpose()
    }

    // ---- change log ------------------------------------------------------------------------

    /// Events with `seq > after_seq`, oldest first, at most `limit`.
    pub async fn events_since(&self, after_seq: i64, limit: i64) -> Result<Vec<Event>, StoreError> {
        let rows = self
            .pool
            .acquire()
            .await?
            .exec()
            .fetch_all(
                "SELECT e.seq, e.repository_id, r.registry, r.name, e.tag, e.kind, \
                        e.old_digest, e.new_digest, e.at \
                 FROM events e JOIN repositories r ON r.id = e.repository_id \
                 WHERE e.seq > $1 ORDER BY e.seq LIMIT $2",
                &[after_seq.into(), limit.max(0).into()],
            )
            .await?;
        rows.iter().map(Event::from_row).collect()
    }

    /// The last change's sequence number (0 before the first change). It moves whenever
    /// anything public changes, so web instances compare it to what they last saw.
    pub async fn latest_seq(&self) -> Result<i64, StoreError> {
        let row = self
            .pool
            .acquire()
            .await?
            .exec()
            .fetch_one("SELECT value FROM change_seq WHERE id = 1", &[])
            .await?;
        Ok(row.int("value")?)
    }

    // ---- lists -----------------------------------------------------------------------------

    /// Tags that changed most recently, newest first.
    pub async fn recently_changed(&self, limit: i64) -> Result<Vec<TagSummary>, StoreError> {
        let rows = self
            .pool
            .acquire()
            .await?
            .exec()
            .fetch_all(
                concat!(
                    tag_summary_select!(),
                    "ORDER BY t.last_changed DESC, r.registry, r.name, t.tag LIMIT $1"
                ),
                &[limit.max(0).into()],
            )
            .await?;
        rows.iter().map(TagSummary::from_row).collect()
    }

    /// Tags with the highest label compliance score first (most recently changed first among
    /// equals).
    pub async fn best_labelled(&self, limit: i64) -> Result<Vec<TagSummary>, StoreError> {
        let rows = self
            .pool
            .acquire()
            .await?
            .exec()
            .fetch_all(
                concat!(
                    tag_summary_select!(),
                    "ORDER BY v.compliance_score DESC, t.last_changed DESC, \
                              r.registry, r.name, t.tag LIMIT $1"
                ),
                &[limit.max(0).into()],
            )
            .await?;
        rows.iter().map(TagSummary::from_row).collect()
    }
}

async fn open_sqlite(url: &str) -> Result<sqlx::SqlitePool, StoreError> {
    let options = SqliteConnectOptions::from_str(url).map_err(|source| StoreError::Connect {
        target: "the SQLite URL given".to_string(),
        source,
    })?;
    let path = options.get_filename().to_path_buf();
    let target = path.display().to_string();
    let in_memory = target.starts_with("file:");
    if !in_memory && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| StoreError::Connect {
                target: target.clone(),
                source: sqlx::Error::Io(e),
            })?;
    }
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // NORMAL is durable across application crashes in WAL mode; only an OS crash or power
        // loss can lose the last commits.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .foreign_keys(true);
    // Processes opening a new file together race to switch it to WAL, and SQLite can answer
    // that switch with SQLITE_BUSY without calling the busy handler (a known SQLite
    // behaviour; `sqlite_processes_opening_a_new_file_together_all_succeed` hit it about
    // once in 20 runs). The switch is a one-off per file: retry it, briefly.
    let deadline = tokio::time::Instant::now() + SQLITE_BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(5);
    loop {
        match SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options.clone())
            .await
        {
            Ok(pool) => return Ok(pool),
            Err(e) if sqlite_busy(&e) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            Err(source) => return Err(StoreError::Connect { target, source }),
        }
    }
}

/// SQLITE_BUSY, or one of its extended codes (the primary code is the low byte).
fn sqlite_busy(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == 5)
}

async fn open_postgres(url: &str) -> Result<sqlx::PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url).map_err(|source| StoreError::Connect {
        target: "the PostgreSQL URL given".to_string(),
        source,
    })?;
    let target = format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default()
    );
    let options = options.application_name("microbadger");
    // One direct connection first, to fail fast: the pool retries a refused connection until
    // its acquire timeout (30 s), which only hides a wrong URL or a server that is down.
    let probe = PgConnection::connect_with(&options)
        .await
        .map_err(|source| StoreError::Connect {
            target: target.clone(),
            source,
        })?;
    let _ = probe.close().await;
    PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Connect { target, source })
}

/// Takes the repository's row lock for the rest of the transaction by setting its
/// `last_checked`, and returns what events need.
async fn lock_repository(tx: &mut Tx, id: i64, now: DateTime<Utc>) -> Result<Locked, StoreError> {
    let row = tx
        .exec()
        .fetch_optional(
            "UPDATE repositories SET last_checked = $2 WHERE id = $1 RETURNING registry, name",
            &[id.into(), now.into()],
        )
        .await?
        .ok_or(StoreError::RepositoryNotFound(id))?;
    Ok(Locked {
        id,
        registry: row.text("registry")?,
        name: row.text("name")?,
    })
}

/// Sets the status to inspected; true if it was something else.
async fn mark_inspected(tx: &mut Tx, id: i64) -> Result<bool, StoreError> {
    let changed = tx
        .exec()
        .execute(
            "UPDATE repositories \
             SET status = 'inspected', status_reason = NULL, next_retry = NULL \
             WHERE id = $1 AND status <> 'inspected'",
            &[id.into()],
        )
        .await?;
    Ok(changed > 0)
}

/// Inserts the version, or rewrites it if the stored description differs; true if a row was
/// written.
async fn upsert_version(
    tx: &mut Tx,
    inspection: &Inspection,
    image: &ImageVersion,
    image_json: &str,
    platforms_json: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let license = image.derived.license.as_ref().map(|l| match &l.canonical {
        Some(canonical) if l.valid => canonical.as_str(),
        _ => l.expression.as_str(),
    });
    let written = tx
        .exec()
        .execute(
            "INSERT INTO versions (digest, media_type, platforms, image, download_size, \
                                   layer_count, compliance_score, license, version, created, \
                                   inspected_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (digest) DO UPDATE SET \
                 media_type = excluded.media_type, platforms = excluded.platforms, \
                 image = excluded.image, download_size = excluded.download_size, \
                 layer_count = excluded.layer_count, \
                 compliance_score = excluded.compliance_score, license = excluded.license, \
                 version = excluded.version, created = excluded.created, \
                 inspected_at = excluded.inspected_at \
             WHERE versions.media_type <> excluded.media_type \
                OR versions.platforms <> excluded.platforms \
                OR versions.image <> excluded.image",
            &[
                inspection.digest.as_str().into(),
                inspection.media_type.as_str().into(),
                platforms_json.into(),
                image_json.into(),
                i64::try_from(image.download_size)
                    .unwrap_or(i64::MAX)
                    .into(),
                i64::try_from(image.layer_count).unwrap_or(i64::MAX).into(),
                i64::from(image.compliance.score).into(),
                license.into(),
                image.derived.version.as_deref().into(),
                image.created.as_deref().into(),
                now.into(),
            ],
        )
        .await?;
    Ok(written > 0)
}

/// Appends an event with the next sequence number. Takes the `change_seq` row lock, held
/// until the transaction ends: see "Why it is built this way" above.
async fn record_event(
    tx: &mut Tx,
    repo: &Locked,
    tag: Option<&str>,
    kind: EventKind,
    old_digest: Option<&str>,
    new_digest: Option<&str>,
    at: DateTime<Utc>,
) -> Result<Event, StoreError> {
    let seq = tx
        .exec()
        .fetch_one(
            "UPDATE change_seq SET value = value + 1 WHERE id = 1 RETURNING value",
            &[],
        )
        .await?
        .int("value")?;
    tx.exec()
        .execute(
            "INSERT INTO events (seq, repository_id, tag, kind, old_digest, new_digest, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                seq.into(),
                repo.id.into(),
                tag.into(),
                kind.as_str().into(),
                old_digest.into(),
                new_digest.into(),
                at.into(),
            ],
        )
        .await?;
    Ok(Event {
        seq,
        repository_id: repo.id,
        registry: repo.registry.clone(),
        name: repo.name.clone(),
        tag: tag.map(str::to_owned),
        kind,
        old_digest: old_digest.map(str::to_owned),
        new_digest: new_digest.map(str::to_owned),
        at,
    })
}

/// A `LIKE` pattern matching `text` anywhere, with `\`, `%` and `_` escaped (`ESCAPE '\'`).
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("nginx"), "%nginx%");
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
        assert_eq!(like_pattern(""), "%%");
    }

    #[tokio::test]
    async fn unsupported_urls_are_refused_without_echoing_them() {
        let err = Store::connect("mysql://root:hunter2@db/x")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedUrl(_)));
        assert!(!err.to_string().contains("hunter2"));
    }

    #[tokio::test]
    async fn connect_errors_do_not_show_passwords() {
        // Port 1 on localhost refuses connections at once.
        let err = Store::connect("postgres://user:hunter2@127.0.0.1:1/db")
            .await
            .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(matches!(err, StoreError::Connect { .. }), "{text}");
        assert!(!err.to_string().contains("hunter2"), "{text}");
        assert!(err.to_string().contains("127.0.0.1:1/db"), "{text}");
    }
}
