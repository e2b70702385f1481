//! The inspection engine: manifest + config -> [`ImageVersion`]. Pure: no I/O, no clock, no
//! randomness, so the same input always gives the same output and every rule is unit-tested.
//!
//! # Layout
//! - [`model`]: [`ImageVersion`] and [`Layer`], the result.
//! - [`platform`]: [`Platform`], index entries ([`index_platforms`]) and [`select_platform`].
//! - [`derive`](mod@derive): name, version, commit, source, licence … chosen from labels and
//!   annotations, with the precedence documented there.
//! - [`license`]: SPDX expression checks and licence links.
//! - [`compliance`]: label-schema rc1 and OCI annotation reports, scores and fix lines.
//! - [`inherited`]: labels that probably came from the base image.
//! - [`history`]: readable layer commands and history/layer pairing.
//! - [`keys`]: the label keys.
//!
//! Nothing here trusts its input: labels, annotations and history are written by whoever
//! pushed the image. Functions never panic on odd values, never turn a non-`http(s)` value into
//! a link, and escape whatever they put into generated Dockerfile or shell lines.

pub mod compliance;
pub mod derive;
pub mod history;
pub mod inherited;
pub mod keys;
pub mod license;
pub mod model;
pub mod platform;
mod validate;

use std::collections::BTreeMap;

pub use compliance::{Compliance, Fix, KeyCheck, KeyStatus, SchemaReport};
pub use derive::{Derived, FieldSource, Origin};
pub use history::clean_command;
pub use inherited::{InheritOptions, InheritedFlag, detect_inherited};
pub use license::{License, LicenseRef, parse_license};
pub use model::{ImageVersion, Layer};
pub use platform::{Platform, PlatformEntry, PlatformParseError, index_platforms, select_platform};

use crate::oci::{History, ImageConfig, OciImageManifest, RuntimeConfig, Schema1Manifest};
use derive::Meta;

/// What [`inspect_image`] needs: one image manifest and its config blob, already fetched.
#[derive(Debug, Clone, Copy)]
pub struct ImageInput<'a> {
    /// The manifest's digest (from `Docker-Content-Digest` or computed).
    pub manifest_digest: &'a str,
    pub media_type: &'a str,
    pub manifest: &'a OciImageManifest,
    pub config: &'a ImageConfig,
    /// The annotations of the index the manifest was reached through, if any.
    pub index_annotations: Option<&'a BTreeMap<String, String>>,
}

/// Inspect an image manifest and its config with the default inherited-label thresholds.
pub fn inspect_image(input: &ImageInput<'_>) -> ImageVersion {
    inspect_image_with(input, &InheritOptions::default())
}

/// [`inspect_image`] with explicit inherited-label thresholds.
pub fn inspect_image_with(input: &ImageInput<'_>, opts: &InheritOptions) -> ImageVersion {
    let mut warnings = Vec::new();
    let config = input.config;
    let empty_runtime = RuntimeConfig::default();
    let runtime = config.config.as_ref().unwrap_or(&empty_runtime);

    let labels = pick_labels(runtime, config.container_config.as_ref(), &mut warnings);

    let mut annotations = input.index_annotations.cloned().unwrap_or_default();
    if let Some(m) = &input.manifest.annotations {
        annotations.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    let manifest_layers = &input.manifest.layers;
    let diff_ids = config
        .rootfs
        .as_ref()
        .map(|r| r.diff_ids.as_slice())
        .unwrap_or_default();
    let diff_ids_ok = diff_ids.len() == manifest_layers.len();
    if !diff_ids_ok && !diff_ids.is_empty() {
        warnings.push(format!(
            "the config lists {} layer diff IDs but the manifest has {} layers",
            diff_ids.len(),
            manifest_layers.len()
        ));
    }
    let (paired, history_warning) = history::align(&config.history, manifest_layers.len());
    warnings.extend(history_warning);

    let mut negative_sizes = false;
    let layers: Vec<Layer> = manifest_layers
        .iter()
        .zip(paired)
        .enumerate()
        .map(|(i, (d, h))| {
            let size = u64::try_from(d.size).unwrap_or_else(|_| {
                negative_sizes = true;
                0
            });
            Layer {
                digest: d.digest.clone(),
                size,
                media_type: d.media_type.clone(),
                command: h
                    .and_then(|h| h.created_by.as_deref())
                    .and_then(clean_command),
                created: h.and_then(|h| h.created.clone()),
                diff_id: diff_ids_ok.then(|| diff_ids[i].clone()),
            }
        })
        .collect();
    if negative_sizes {
        warnings.push("the manifest gives a negative layer size; counted as 0".to_owned());
    }

    if let Some(c) = &config.created
        && validate::parse_rfc3339(c).is_none()
    {
        warnings.push(format!(
            "the config's created date `{}` is not RFC 3339",
            validate::escape_controls(&validate::truncate(c, 60))
        ));
    }

    let platform = match (&config.os, &config.architecture) {
        (Some(os), Some(arch)) if !os.trim().is_empty() && !arch.trim().is_empty() => {
            Some(Platform::new(os, arch, config.variant.as_deref()))
        }
        _ => None,
    };

    let parts = Parts {
        labels,
        annotations,
        history: &config.history,
        created: config.created.clone(),
        author: config.author.clone(),
        runtime,
    };
    let config_digest = Some(input.manifest.config.digest.clone()).filter(|d| !d.is_empty());
    finish(
        input.manifest_digest,
        input.media_type,
        config_digest,
        platform,
        layers,
        parts,
        false,
        warnings,
        opts,
    )
}

/// `config.Labels`, or `container_config.Labels` when the former is empty (Docker's classic
/// builder sometimes left labels only there).
fn pick_labels(
    runtime: &RuntimeConfig,
    container_config: Option<&RuntimeConfig>,
    warnings: &mut Vec<String>,
) -> BTreeMap<String, String> {
    if !runtime.labels.is_empty() {
        return runtime.labels.clone();
    }
    match container_config {
        Some(cc) if !cc.labels.is_empty() => {
            warnings.push("labels read from container_config: config.Labels is empty".to_owned());
            cc.labels.clone()
        }
        _ => BTreeMap::new(),
    }
}

/// The inputs shared by the schema-2 and schema-1 paths once layers are known.
struct Parts<'a> {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    history: &'a [History],
    created: Option<String>,
    author: Option<String>,
    runtime: &'a RuntimeConfig,
}

#[expect(
    clippy::too_many_arguments,
    reason = "private assembly step shared by the two manifest formats"
)]
fn finish(
    digest: &str,
    media_type: &str,
    config_digest: Option<String>,
    platform: Option<Platform>,
    layers: Vec<Layer>,
    parts: Parts<'_>,
    legacy_schema1: bool,
    warnings: Vec<String>,
    opts: &InheritOptions,
) -> ImageVersion {
    let meta = Meta {
        labels: &parts.labels,
        annotations: &parts.annotations,
        config_author: parts.author.as_deref(),
    };
    let derived = derive::derive(&meta);
    let inherited = detect_inherited(
        &parts.labels,
        &parts.annotations,
        parts.history,
        parts.created.as_deref(),
        opts,
    );
    let compliance = compliance::check_compliance(&meta, &derived, inherited);
    let rt = parts.runtime;
    let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.trim().is_empty());
    ImageVersion {
        digest: digest.to_owned(),
        media_type: media_type.to_owned(),
        config_digest,
        platform,
        created: parts.created.clone(),
        author: non_empty(&parts.author),
        layer_count: layers.len(),
        download_size: layers
            .iter()
            .fold(0u64, |acc, l| acc.saturating_add(l.size)),
        layers,
        exposed_ports: sorted_ports(rt.exposed_ports.keys()),
        entrypoint: rt.entrypoint.clone(),
        cmd: rt.cmd.clone(),
        env_count: rt.env.len(),
        user: non_empty(&rt.user),
        working_dir: non_empty(&rt.working_dir),
        volumes: rt.volumes.keys().cloned().collect(),
        derived,
        compliance,
        legacy_schema1,
        warnings,
        labels: parts.labels,
        annotations: parts.annotations,
    }
}

/// `port/proto` keys sorted by port number, then protocol; anything unparsable last.
fn sorted_ports<'a>(ports: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut v: Vec<String> = ports.cloned().collect();
    v.sort_by_cached_key(|p| {
        let (num, proto) = p.split_once('/').unwrap_or((p.as_str(), ""));
        (
            num.parse::<u32>().unwrap_or(u32::MAX),
            proto.to_owned(),
            p.clone(),
        )
    });
    v
}

/// A schema-1 `v1Compatibility` entry, parsed as far as it goes.
struct V1Compat {
    config: ImageConfig,
    throwaway: bool,
}

/// Parse one `v1Compatibility` string. Garbage gives `None`, never a panic.
fn parse_v1(raw: &str) -> Option<V1Compat> {
    let value: serde_json::Value = serde_json::from_str(raw).ok()?;
    if !value.is_object() {
        return None;
    }
    let throwaway = value
        .get("throwaway")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let config = lenient_config(&value);
    Some(V1Compat { config, throwaway })
}

/// An image config from JSON, keeping every field that has the right shape even when others
/// do not: old schema-1 entries carry odd types (a string `Cmd`, numbers in `Labels`), and one
/// of them must not cost the labels.
fn lenient_config(value: &serde_json::Value) -> ImageConfig {
    if let Ok(c) = serde_json::from_value::<ImageConfig>(value.clone()) {
        return c;
    }
    let text = |k: &str| {
        value
            .get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    ImageConfig {
        created: text("created"),
        author: text("author"),
        architecture: text("architecture"),
        os: text("os"),
        variant: text("variant"),
        config: value.get("config").and_then(lenient_runtime),
        container_config: value.get("container_config").and_then(lenient_runtime),
        ..ImageConfig::default()
    }
}

/// A runtime config, field by field (see [`lenient_config`]).
fn lenient_runtime(value: &serde_json::Value) -> Option<RuntimeConfig> {
    use serde_json::Value;
    if let Ok(r) = serde_json::from_value::<RuntimeConfig>(value.clone()) {
        return Some(r);
    }
    let obj = value.as_object()?;
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
    // A string where an array belongs is taken as a one-element array.
    let list = |k: &str| match obj.get(k) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    let keys = |k: &str| {
        obj.get(k)
            .and_then(Value::as_object)
            .map(|m| {
                m.keys()
                    .map(|k| (k.clone(), Value::Object(Default::default())))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Label values that are not strings are dropped; labels are string to string.
    let labels = obj
        .get("Labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Some(RuntimeConfig {
        user: text("User"),
        exposed_ports: keys("ExposedPorts"),
        env: list("Env"),
        entrypoint: list("Entrypoint"),
        cmd: list("Cmd"),
        volumes: keys("Volumes"),
        working_dir: text("WorkingDir"),
        labels,
        stop_signal: text("StopSignal"),
    })
}

/// Inspect a legacy Docker schema-1 manifest.
///
/// Labels, dates and the runtime config come from `history[0].v1Compatibility` (the top
/// layer); layers are `fsLayers` reversed (base first) with commands from each entry's
/// `container_config.Cmd`. Schema 1 records no sizes, so sizes are 0 and a warning says so.
/// A `v1Compatibility` that is not valid JSON costs only what it would have told us.
pub fn inspect_schema1(
    manifest_digest: &str,
    media_type: &str,
    manifest: &Schema1Manifest,
) -> ImageVersion {
    inspect_schema1_with(
        manifest_digest,
        media_type,
        manifest,
        &InheritOptions::default(),
    )
}

/// [`inspect_schema1`] with explicit inherited-label thresholds.
pub fn inspect_schema1_with(
    manifest_digest: &str,
    media_type: &str,
    manifest: &Schema1Manifest,
    opts: &InheritOptions,
) -> ImageVersion {
    let mut warnings = vec!["legacy schema 1: sizes unknown".to_owned()];
    let parsed: Vec<Option<V1Compat>> = manifest
        .history
        .iter()
        .map(|h| parse_v1(&h.v1_compatibility))
        .collect();
    let bad = parsed.iter().filter(|p| p.is_none()).count();
    if bad > 0 {
        warnings.push(format!(
            "{bad} of {} schema-1 history entries have an unreadable v1Compatibility",
            parsed.len()
        ));
    }
    let top = parsed
        .first()
        .and_then(Option::as_ref)
        .map(|v| v.config.clone())
        .unwrap_or_default();
    let empty_runtime = RuntimeConfig::default();
    let runtime = top.config.as_ref().unwrap_or(&empty_runtime);
    let labels = pick_labels(runtime, top.container_config.as_ref(), &mut warnings);

    // Synthetic history, base first, for the inherited-label heuristics.
    let history: Vec<History> = parsed
        .iter()
        .rev()
        .map(|p| match p {
            Some(v) => History {
                created: v.config.created.clone(),
                author: v.config.author.clone(),
                created_by: v
                    .config
                    .container_config
                    .as_ref()
                    .map(|cc| cc.cmd.join(" "))
                    .filter(|s| !s.trim().is_empty()),
                comment: None,
                empty_layer: v.throwaway,
            },
            None => History::default(),
        })
        .collect();

    let n = manifest.fs_layers.len();
    let aligned = manifest.history.len() == n;
    if !aligned {
        warnings.push(format!(
            "schema-1 manifest has {n} fsLayers but {} history entries; layer commands are not shown",
            manifest.history.len()
        ));
    }
    let layers: Vec<Layer> = manifest
        .fs_layers
        .iter()
        .rev()
        .enumerate()
        .map(|(i, l)| {
            let h = aligned.then(|| &history[i]);
            Layer {
                digest: l.blob_sum.clone(),
                size: 0,
                media_type: String::new(),
                command: h
                    .and_then(|h| h.created_by.as_deref())
                    .and_then(clean_command),
                created: h.and_then(|h| h.created.clone()),
                diff_id: None,
            }
        })
        .collect();

    let arch = manifest
        .architecture
        .clone()
        .or_else(|| top.architecture.clone())
        .filter(|a| !a.trim().is_empty());
    let platform = arch.map(|a| {
        let os = top.os.clone().filter(|o| !o.trim().is_empty());
        Platform::new(os.as_deref().unwrap_or("linux"), &a, top.variant.as_deref())
    });

    let parts = Parts {
        labels,
        annotations: BTreeMap::new(),
        history: &history,
        created: top.created.clone(),
        author: top.author.clone(),
        runtime,
    };
    finish(
        manifest_digest,
        media_type,
        None,
        platform,
        layers,
        parts,
        true,
        warnings,
        opts,
    )
}

#[cfg(test)]
mod tests;
