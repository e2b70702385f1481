//! Webhook tokens: which endpoint a token opens, for which repository or registry, and when it
//! was last used.
//!
//! The store never sees a token, only its hash (`token_hash`, lower-case hex SHA-256, computed
//! by [`crate::web::hooks::token_hash`]). A token is 256 random bits, so a plain SHA-256 is
//! enough: there is nothing to brute-force, and a leaked table opens no endpoint.
//!
//! Table `webhooks (id, kind, target, token_hash UNIQUE, created_at, last_used)`, indexed on
//! `(kind, target)`; see `migrations/*/0002_webhooks.sql`.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use super::db::Row;
use super::{Store, StoreError};

/// Which endpoint a token opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookKind {
    /// `POST /hooks/dockerhub/{image}/{token}` (and MicroBadger's `POST /images/...`):
    /// the target is a repository's full name, `docker.io/library/nginx`.
    DockerHub,
    /// `POST /hooks/registry/{token}`: the target is a registry host, `host[:port]`.
    Registry,
}

impl WebhookKind {
    /// `dockerhub` or `registry`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookKind::DockerHub => "dockerhub",
            WebhookKind::Registry => "registry",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "dockerhub" => Some(WebhookKind::DockerHub),
            "registry" => Some(WebhookKind::Registry),
            _ => None,
        }
    }
}

/// One stored webhook token (its hash, never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRecord {
    pub id: i64,
    pub kind: WebhookKind,
    /// The repository (`docker.io/library/nginx`) or registry host (`host:5000`).
    pub target: String,
    /// Lower-case hex SHA-256 of the token.
    pub token_hash: String,
    pub created_at: DateTime<Utc>,
    /// When the token last opened its endpoint.
    pub last_used: Option<DateTime<Utc>>,
}

impl WebhookRecord {
    fn from_row(row: &Row) -> Result<Self, StoreError> {
        let id = row.int("id")?;
        let kind = row.text("kind")?;
        let kind = WebhookKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("webhook {id}: unknown kind `{kind}`")))?;
        Ok(WebhookRecord {
            id,
            kind,
            target: row.text("target")?,
            token_hash: row.text("token_hash")?,
            created_at: row.time("created_at")?,
            last_used: row.opt_time("last_used")?,
        })
    }
}

/// `SELECT <the columns WebhookRecord::from_row reads> FROM webhooks <rest>`.
macro_rules! select_webhooks {
    ($rest:literal) => {
        concat!(
            "SELECT id, kind, target, token_hash, created_at, last_used FROM webhooks ",
            $rest
        )
    };
}

/// `true` for 64 lower-case hex characters.
fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Store {
    /// Stores a new token hash for `kind` / `target`. `token_hash` must be a lower-case hex
    /// SHA-256 (anything else is [`StoreError::Invalid`], so a token cannot be stored by
    /// mistake); `target` must not be empty.
    pub async fn add_webhook(
        &self,
        kind: WebhookKind,
        target: &str,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<WebhookRecord, StoreError> {
        if !is_sha256_hex(token_hash) {
            return Err(StoreError::Invalid(
                "a webhook token hash must be 64 lower-case hex characters".into(),
            ));
        }
        if target.is_empty() || target.len() > 512 {
            return Err(StoreError::Invalid(
                "a webhook target must be 1 to 512 characters".into(),
            ));
        }
        let now = now.trunc_subsecs(6);
        let row = self
            .pool
            .acquire()
            .await?
            .exec()
            .fetch_one(
                "INSERT INTO webhooks (kind, target, token_hash, created_at) \
                 VALUES ($1, $2, $3, $4) RETURNING id",
                &[
                    kind.as_str().into(),
                    target.into(),
                    token_hash.into(),
                    now.into(),
                ],
            )
            .await?;
        Ok(WebhookRecord {
            id: row.int("id")?,
            kind,
            target: target.to_string(),
            token_hash: token_hash.to_string(),
            created_at: now,
            last_used: None,
        })
    }

    /// Every token for `kind` / `target`, oldest first.
    pub async fn webhooks_for(
        &self,
        kind: WebhookKind,
        target: &str,
    ) -> Result<Vec<WebhookRecord>, StoreError> {
        let rows = self
            .pool
            .acquire()
            .await?
            .exec()
            .fetch_all(
                select_webhooks!("WHERE kind = $1 AND target = $2 ORDER BY id"),
                &[kind.as_str().into(), target.into()],
            )
            .await?;
        rows.iter().map(WebhookRecord::from_row).collect()
    }

    /// The token of `kind` with this hash, if any. (The hash of a 256-bit random token is
    /// itself unguessable, so looking it up by an index reveals nothing useful by its timing.)
    pub async fn webhook_by_hash(
        &self,
        kind: WebhookKind,
        token_hash: &str,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        let row = self
            .pool
            .acquire()
            .await?
            .exec()
            .fetch_optional(
                select_webhooks!("WHERE kind = $1 AND token_hash = $2"),
                &[kind.as_str().into(), token_hash.into()],
            )
            .await?;
        row.as_ref().map(WebhookRecord::from_row).transpose()
    }

    /// Every token, by id.
    pub async fn webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError> {
        let rows = self
            .pool
            .acquire()
            .await?
            .exec()
            .fetch_all(select_webhooks!("ORDER BY id"), &[])
            .await?;
        rows.iter().map(WebhookRecord::from_row).collect()
    }

    /// Records that a token was used. Not a public change: no event.
    pub async fn touch_webhook(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.pool
            .acquire()
            .await?
            .exec()
            .execute(
                "UPDATE webhooks SET last_used = $2 WHERE id = $1",
                &[id.into(), now.into()],
            )
            .await?;
        Ok(())
    }

    /// Deletes a token; `false` when there was none with this id.
    pub async fn delete_webhook(&self, id: i64) -> Result<bool, StoreError> {
        let n = self
            .pool
            .acquire()
            .await?
            .exec()
            .execute("DELETE FROM webhooks WHERE id = $1", &[id.into()])
            .await?;
        Ok(n > 0)
    }
}
