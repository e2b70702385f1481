//! The registry client's one error type. Every failure a registry (or the network between us)
//! can produce maps to exactly one variant, so callers (CLI, worker, web) decide by matching,
//! never by reading strings.

use std::time::Duration;

use crate::reference::ReferenceError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("bad image name: {0}")]
    BadReference(#[from] ReferenceError),
    #[error("registry {registry} is not on the allow-list (MICROBADGER_ALLOW_REGISTRIES)")]
    NotAllowed { registry: String },
    #[error(
        "refusing to connect to {host}: it resolves to a private, loopback or link-local address"
    )]
    PrivateAddress { host: String },
    #[error("not found: {what}")]
    NotFound { what: String },
    #[error("unauthorized at {registry}: {reason}")]
    Unauthorized { registry: String, reason: String },
    #[error("access denied at {registry}")]
    Denied { registry: String },
    #[error("rate limited by {registry}{}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        registry: String,
        retry_after: Option<Duration>,
    },
    #[error("{what} is larger than the {limit}-byte limit")]
    TooLarge { what: String, limit: u64 },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("invalid manifest: {reason}")]
    InvalidManifest { reason: String },
    #[error("invalid image config: {reason}")]
    InvalidConfig { reason: String },
    #[error("unsupported manifest media type {media_type:?}")]
    UnsupportedMediaType { media_type: String },
    #[error("no {wanted} image in this index (available: {available})")]
    NoMatchingPlatform { wanted: String, available: String },
    #[error("redirect error at {registry}: {reason}")]
    Redirect { registry: String, reason: String },
    #[error("registry {registry} timed out")]
    Timeout { registry: String },
    #[error("registry {registry} is unreachable: {reason}")]
    Unreachable { registry: String, reason: String },
    #[error("registry {registry} answered {status}")]
    Server { registry: String, status: u16 },
    #[error("registry protocol error: {reason}")]
    Protocol { reason: String },
}

impl RegistryError {
    /// Should the same request be tried again later (by a retry loop or a job queue)?
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RegistryError::RateLimited { .. }
                | RegistryError::Timeout { .. }
                | RegistryError::Unreachable { .. }
                | RegistryError::Server { .. }
        )
    }

    /// A short stable code for logs, metrics and JSON errors.
    pub fn code(&self) -> &'static str {
        match self {
            RegistryError::BadReference(_) => "bad_reference",
            RegistryError::NotAllowed { .. } => "not_allowed",
            RegistryError::PrivateAddress { .. } => "private_address",
            RegistryError::NotFound { .. } => "not_found",
            RegistryError::Unauthorized { .. } => "unauthorized",
            RegistryError::Denied { .. } => "denied",
            RegistryError::RateLimited { .. } => "rate_limited",
            RegistryError::TooLarge { .. } => "too_large",
            RegistryError::DigestMismatch { .. } => "digest_mismatch",
            RegistryError::InvalidManifest { .. } => "invalid_manifest",
            RegistryError::InvalidConfig { .. } => "invalid_config",
            RegistryError::UnsupportedMediaType { .. } => "unsupported_media_type",
            RegistryError::NoMatchingPlatform { .. } => "no_matching_platform",
            RegistryError::Redirect { .. } => "redirect",
            RegistryError::Timeout { .. } => "timeout",
            RegistryError::Unreachable { .. } => "unreachable",
            RegistryError::Server { .. } => "server_error",
            RegistryError::Protocol { .. } => "protocol",
        }
    }
}
