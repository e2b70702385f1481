//! Wire types for what registries serve: manifests, indexes, image configs and legacy
//! schema-1 manifests.
//!
//! Manifests and indexes reuse `oci-client`'s serde types (the field's maintained model of the
//! OCI image spec). The image config is our own type because real-world configs are messier
//! than the spec: any optional field may be `null`, dates may be malformed, and Docker's classic
//! builder adds `container_config`. Every field here is optional and `null`-tolerant so that one
//! odd value never hides the rest of an image's metadata.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

pub use oci_client::manifest::{
    ImageIndexEntry, OciDescriptor, OciImageIndex, OciImageManifest, Platform as IndexPlatform,
};

/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list ("fat manifest").
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Legacy Docker schema 1 (signed and unsigned).
pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Legacy Docker schema 1, signed.
pub const DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The `Accept` header sent for every manifest request: the four modern types first, so a
/// registry never downgrades us to schema 1 when it has something better.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Is this media type an index (OCI index or Docker manifest list)?
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Is this media type a legacy schema-1 manifest?
pub fn is_schema1(media_type: &str) -> bool {
    media_type == DOCKER_MANIFEST_V1 || media_type == DOCKER_MANIFEST_V1_SIGNED
}

/// Deserialize `null` as the type's default.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The image configuration blob (OCI `application/vnd.oci.image.config.v1+json` or Docker
/// `application/vnd.docker.container.image.v1+json`). Unknown fields are ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageConfig {
    /// RFC 3339 creation time, kept as the raw string: validation is the inspector's job.
    #[serde(default, deserialize_with = "null_default")]
    pub created: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub author: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub architecture: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub os: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub variant: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub config: Option<RuntimeConfig>,
    /// Docker's classic builder also records the build container's config; it may carry labels.
    #[serde(default, deserialize_with = "null_default")]
    pub container_config: Option<RuntimeConfig>,
    #[serde(default, deserialize_with = "null_default")]
    pub rootfs: Option<RootFs>,
    #[serde(default, deserialize_with = "null_default")]
    pub history: Vec<History>,
}

/// The `config` object of an image config: how a container from this image runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct RuntimeConfig {
    #[serde(default, deserialize_with = "null_default")]
    pub user: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    #[serde(default, deserialize_with = "null_default")]
    pub env: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub entrypoint: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub cmd: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub volumes: BTreeMap<String, serde_json::Value>,
    #[serde(default, deserialize_with = "null_default")]
    pub working_dir: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub stop_signal: Option<String>,
}

/// `rootfs`: the uncompressed layer digests (DiffIDs), base first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RootFs {
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub diff_ids: Vec<String>,
}

/// One build step. Steps with `empty_layer: true` made no filesystem change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct History {
    #[serde(default, deserialize_with = "null_default")]
    pub created: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub author: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub created_by: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub comment: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub empty_layer: bool,
}

/// A legacy Docker schema-1 manifest. Labels live in `history[0].v1Compatibility`, a JSON
/// document inside a string; layer sizes are not recorded at all.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schema1Manifest {
    #[serde(default, deserialize_with = "null_default")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub tag: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub architecture: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub fs_layers: Vec<Schema1Layer>,
    #[serde(default, deserialize_with = "null_default")]
    pub history: Vec<Schema1History>,
}

/// A schema-1 layer reference (top layer first).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schema1Layer {
    #[serde(default)]
    pub blob_sum: String,
}

/// A schema-1 history entry: `v1Compatibility` is itself JSON, in the shape of an image config
/// (plus `id`, `parent`), top layer first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schema1History {
    #[serde(default)]
    pub v1_compatibility: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_tolerates_nulls_and_unknown_fields() {
        let raw = r#"{"created":null,"architecture":"amd64","os":"linux",
            "config":{"Labels":null,"Env":null,"ExposedPorts":{"80/tcp":{}}},
            "rootfs":{"type":"layers","diff_ids":["sha256:aa"]},
            "history":[{"created_by":"/bin/sh -c #(nop) ADD file","empty_layer":null}],
            "something_new":{"x":1}}"#;
        let c: ImageConfig = serde_json::from_str(raw).unwrap();
        assert_eq!(c.created, None);
        let rc = c.config.unwrap();
        assert!(rc.labels.is_empty());
        assert!(rc.exposed_ports.contains_key("80/tcp"));
        assert!(!c.history[0].empty_layer);
    }

    #[test]
    fn index_media_types() {
        assert!(is_index(OCI_INDEX));
        assert!(is_index(DOCKER_MANIFEST_LIST));
        assert!(!is_index(OCI_MANIFEST));
        assert!(is_schema1(DOCKER_MANIFEST_V1_SIGNED));
    }
}
