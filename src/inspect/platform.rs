//! Platforms (`os/architecture[/variant]`), the entries of an image index, and choosing one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::oci::OciImageIndex;

/// The platform an image manifest was built for, from its config (`os`, `architecture`,
/// `variant`) or from an index entry's `platform`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Why a platform string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformParseError {
    #[error("platform `{0}` must be os/architecture[/variant], e.g. linux/amd64 or linux/arm64/v8")]
    Shape(String),
}

impl Platform {
    /// A platform from its parts, normalised (lower case, `x86_64` -> `amd64`,
    /// `aarch64` -> `arm64`, empty variant -> none).
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        let arch = architecture.trim().to_ascii_lowercase();
        let arch = match arch.as_str() {
            "x86_64" | "x86-64" => "amd64".to_owned(),
            "aarch64" => "arm64".to_owned(),
            "i386" | "i686" => "386".to_owned(),
            _ => arch,
        };
        Platform {
            os: os.trim().to_ascii_lowercase(),
            architecture: arch,
            variant: variant
                .map(|v| v.trim().to_ascii_lowercase())
                .filter(|v| !v.is_empty()),
        }
    }

    /// The variant a runtime assumes when none is given, as containerd normalises it: `v8` for
    /// `arm64`, `v7` for `arm`, `v1` for `amd64`. Used to prefer, among several variants, the
    /// one a plain `docker pull` would pick.
    pub fn default_variant(architecture: &str) -> Option<&'static str> {
        match architecture {
            "arm64" => Some("v8"),
            "arm" => Some("v7"),
            "amd64" => Some("v1"),
            _ => None,
        }
    }

    /// The variant with the architecture's default filled in.
    fn effective_variant(&self) -> Option<&str> {
        self.variant
            .as_deref()
            .or_else(|| Self::default_variant(&self.architecture))
    }

    /// Does `other` satisfy this platform? OS and architecture must be equal; a missing variant
    /// on either side is a wildcard, so `linux/arm64` matches `linux/arm64/v8` (and `v8` is the
    /// default `arm64` variant anyway). Two explicit variants must be equal.
    pub fn matches(&self, other: &Platform) -> bool {
        if self.os != other.os || self.architecture != other.architecture {
            return false;
        }
        match (&self.variant, &other.variant) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }

    /// Is this the `unknown/unknown` platform BuildKit gives attestation manifests?
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" && self.architecture == "unknown"
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = PlatformParseError;

    /// Parse `linux/amd64` or `linux/arm64/v8` (case-insensitive, normalised as in
    /// [`Platform::new`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        let bad = || PlatformParseError::Shape(s.chars().take(100).collect());
        let ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 64
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| ok(p)) {
            return Err(bad());
        }
        Ok(Platform::new(parts[0], parts[1], parts.get(2).copied()))
    }
}

/// One image of a multi-platform index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PlatformEntry {
    pub platform: Platform,
    /// The child manifest's digest.
    pub digest: String,
    /// The size of the child manifest JSON (not of the image: see specs.md §6.2).
    pub size: i64,
    pub media_type: String,
}

/// The annotation BuildKit puts on attestation (SBOM / provenance) manifests in an index.
const REFERENCE_TYPE: &str = "vnd.docker.reference.type";

/// The platform-specific images of an index, in index order.
///
/// Skipped: attestation manifests (annotated `vnd.docker.reference.type: attestation-manifest`,
/// or with the `unknown/unknown` platform BuildKit gives them) and entries with an
/// `artifactType` (signatures, SBOMs: not runnable images). An entry without a `platform`
/// object is kept as `unknown/unknown` only if nothing marks it as an attestation, because
/// some OCI layouts list their single image that way; [`select_platform`] never picks it for a
/// concrete platform.
pub fn index_platforms(index: &OciImageIndex) -> Vec<PlatformEntry> {
    index
        .manifests
        .iter()
        .filter(|m| {
            let attestation = m
                .annotations
                .as_ref()
                .and_then(|a| a.get(REFERENCE_TYPE))
                .is_some_and(|t| t == "attestation-manifest");
            !attestation && m.artifact_type.is_none()
        })
        .filter_map(|m| {
            let platform = match &m.platform {
                Some(p) => {
                    let p = Platform::new(
                        &p.os.to_string(),
                        &p.architecture.to_string(),
                        p.variant.as_deref(),
                    );
                    if p.is_unknown() {
                        return None;
                    }
                    p
                }
                None => Platform::new("unknown", "unknown", None),
            };
            Some(PlatformEntry {
                platform,
                digest: m.digest.clone(),
                size: m.size,
                media_type: m.media_type.clone(),
            })
        })
        .collect()
}

/// Choose the entry for `wanted`, as a runtime would.
///
/// Among the entries that [`Platform::matches`] the wanted one, prefer in order: the exact
/// variant; the variant the runtime assumes by default (`v8` for arm64 …) when one side gave
/// none; an entry with no variant; then the first match in index order.
pub fn select_platform<'a>(
    entries: &'a [PlatformEntry],
    wanted: &Platform,
) -> Option<&'a PlatformEntry> {
    let rank = |e: &PlatformEntry| -> u8 {
        let got = &e.platform;
        if got.variant == wanted.variant {
            0
        } else if got.effective_variant() == wanted.effective_variant() {
            1
        } else if got.variant.is_none() {
            2
        } else {
            3
        }
    };
    entries
        .iter()
        .filter(|e| wanted.matches(&e.platform))
        .min_by_key(|e| rank(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(p("linux/amd64").to_string(), "linux/amd64");
        assert_eq!(p("linux/arm64/v8").variant.as_deref(), Some("v8"));
        assert_eq!(p("Linux/X86_64").to_string(), "linux/amd64");
        assert_eq!(p("linux/aarch64").architecture, "arm64");
        for bad in [
            "",
            "linux",
            "linux/",
            "/amd64",
            "a/b/c/d",
            "linux/am d64",
            "linux/amd64/",
        ] {
            assert!(bad.parse::<Platform>().is_err(), "{bad:?} should not parse");
        }
        let long = "x".repeat(100_000);
        assert!(format!("linux/{long}").parse::<Platform>().is_err());
        assert!("linux/ärm".parse::<Platform>().is_err());
    }

    #[test]
    fn matching_treats_missing_variant_as_wildcard() {
        assert!(p("linux/arm64").matches(&p("linux/arm64/v8")));
        assert!(p("linux/arm64/v8").matches(&p("linux/arm64")));
        assert!(!p("linux/arm/v7").matches(&p("linux/arm/v6")));
        assert!(!p("linux/amd64").matches(&p("linux/arm64")));
        assert!(!p("linux/amd64").matches(&p("windows/amd64")));
    }

    fn entry(platform: &str, digest: &str) -> PlatformEntry {
        PlatformEntry {
            platform: p(platform),
            digest: digest.into(),
            size: 1,
            media_type: crate::oci::OCI_MANIFEST.into(),
        }
    }

    #[test]
    fn selection_prefers_exact_then_default_variant() {
        let entries = vec![
            entry("linux/arm/v6", "a"),
            entry("linux/arm/v7", "b"),
            entry("linux/arm64/v8", "c"),
            entry("linux/amd64", "d"),
        ];
        assert_eq!(
            select_platform(&entries, &p("linux/arm")).unwrap().digest,
            "b"
        );
        assert_eq!(
            select_platform(&entries, &p("linux/arm/v6"))
                .unwrap()
                .digest,
            "a"
        );
        assert_eq!(
            select_platform(&entries, &p("linux/arm64")).unwrap().digest,
            "c"
        );
        assert_eq!(
            select_platform(&entries, &p("linux/arm64/v8"))
                .unwrap()
                .digest,
            "c"
        );
        assert_eq!(
            select_platform(&entries, &p("linux/amd64/v3"))
                .unwrap()
                .digest,
            "d"
        );
        assert!(select_platform(&entries, &p("linux/s390x")).is_none());
        assert!(select_platform(&entries, &p("linux/arm/v5")).is_none());
    }

    #[test]
    fn index_skips_attestations() {
        let raw = r#"{
          "schemaVersion": 2,
          "mediaType": "application/vnd.oci.image.index.v1+json",
          "manifests": [
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":10,
             "platform":{"architecture":"amd64","os":"linux"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","size":11,
             "platform":{"architecture":"arm64","os":"linux","variant":"v8"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:cc","size":12,
             "platform":{"architecture":"unknown","os":"unknown"},
             "annotations":{"vnd.docker.reference.digest":"sha256:aa","vnd.docker.reference.type":"attestation-manifest"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:dd","size":13,
             "platform":{"architecture":"unknown","os":"unknown"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:ee","size":14,
             "platform":{"architecture":"amd64","os":"linux"},
             "annotations":{"vnd.docker.reference.type":"attestation-manifest"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:ff","size":15,
             "artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json"}
          ]
        }"#;
        let index: OciImageIndex = serde_json::from_str(raw).unwrap();
        let entries = index_platforms(&index);
        let got: Vec<String> = entries
            .iter()
            .map(|e| format!("{} {} {}", e.platform, e.digest, e.size))
            .collect();
        assert_eq!(
            got,
            vec!["linux/amd64 sha256:aa 10", "linux/arm64/v8 sha256:bb 11"]
        );
    }

    #[test]
    fn index_entry_without_platform_is_kept_as_unknown() {
        let raw = r#"{"schemaVersion":2,"manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":10}]}"#;
        let index: OciImageIndex = serde_json::from_str(raw).unwrap();
        let entries = index_platforms(&index);
        assert_eq!(entries.len(), 1);
        assert!(entries[0].platform.is_unknown());
        assert!(select_platform(&entries, &p("linux/amd64")).is_none());
    }

    #[test]
    fn serde_round_trip() {
        let pl = p("linux/arm/v7");
        let json = serde_json::to_string(&pl).unwrap();
        assert_eq!(
            json,
            r#"{"Os":"linux","Architecture":"arm","Variant":"v7"}"#
        );
        assert_eq!(serde_json::from_str::<Platform>(&json).unwrap(), pl);
        let json = serde_json::to_string(&p("linux/amd64")).unwrap();
        assert_eq!(json, r#"{"Os":"linux","Architecture":"amd64"}"#);
    }
}
