//! The inspection result: what the store keeps and the web shows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::compliance::Compliance;
use super::derive::Derived;
use super::platform::Platform;

/// Everything known about one image manifest (one platform).
///
/// Serialised in PascalCase like MicroBadger's v1 JSON. Environment variable *values* are
/// deliberately absent: they often hold credentials, and this is shown to anyone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageVersion {
    /// The manifest digest.
    pub digest: String,
    pub media_type: String,
    /// `manifest.config.digest` (the image ID); none for schema 1.
    pub config_digest: Option<String>,
    /// From the config's `os` / `architecture` / `variant`.
    pub platform: Option<Platform>,
    /// `config.created` as given (see `warnings` if it is not RFC 3339).
    pub created: Option<String>,
    pub author: Option<String>,
    /// `config.Labels`, or `container_config.Labels` only when the former is empty.
    pub labels: BTreeMap<String, String>,
    /// Manifest annotations over index annotations (the manifest wins on a shared key).
    pub annotations: BTreeMap<String, String>,
    /// Base layer first.
    pub layers: Vec<Layer>,
    pub layer_count: usize,
    /// Sum of the compressed layer sizes (what a pull downloads at most); 0 for schema 1.
    pub download_size: u64,
    /// `port/proto`, sorted by port number.
    pub exposed_ports: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// How many environment variables are set (their values are never exposed).
    pub env_count: usize,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub volumes: Vec<String>,
    pub derived: Derived,
    pub compliance: Compliance,
    pub legacy_schema1: bool,
    /// Oddities found on the way, in plain English (history/layer mismatch, bad dates …).
    pub warnings: Vec<String>,
}

/// One filesystem layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Layer {
    /// Digest of the stored (usually compressed) blob.
    pub digest: String,
    /// Compressed size in bytes; 0 when unknown (schema 1).
    pub size: u64,
    pub media_type: String,
    /// The build step that made the layer, cleaned up (`RUN apk add curl`).
    pub command: Option<String>,
    /// When that step ran.
    pub created: Option<String>,
    /// The uncompressed digest from `rootfs.diff_ids`, when the counts agree.
    pub diff_id: Option<String>,
}
