//! Docker Hub's repository API (`GET /v2/repositories/{namespace}/{name}/`): description,
//! stars, pulls and last update for docker.io images.
//!
//! Parsed leniently from untyped JSON: Hub has changed these shapes over the years (numbers as
//! floats, fields missing or `null`), and a odd field must not lose the others. Callers treat
//! any error as "no Hub data"; it never fails an inspection.

use serde::{Deserialize, Serialize};

use super::error::RegistryError;
use crate::config::RegistryConfig;
use crate::reference::ImageRef;

/// Most bytes read from the Hub API (full descriptions can be long, but not this long).
const MAX_HUB_BYTES: usize = 1024 * 1024;

/// What Docker Hub says about a repository.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HubInfo {
    pub description: Option<String>,
    pub star_count: Option<u64>,
    pub pull_count: Option<u64>,
    /// RFC 3339 as Hub sends it.
    pub last_updated: Option<String>,
    pub is_official: bool,
}

impl HubInfo {
    /// Lenient parse of Hub's repository JSON.
    pub fn from_json(doc: &serde_json::Value) -> Self {
        let text = |k: &str| {
            doc.get(k)
                .and_then(|v| v.as_str())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        let count = |k: &str| {
            doc.get(k).and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
        };
        let namespace = text("namespace");
        HubInfo {
            description: text("description"),
            star_count: count("star_count"),
            pull_count: count("pull_count"),
            last_updated: text("last_updated"),
            is_official: namespace.as_deref() == Some("library"),
        }
    }
}

/// A small client for Hub's web API. The base URL is operator configuration, so it is not
/// subject to the registry allow-list.
#[derive(Debug, Clone)]
pub struct HubClient {
    http: reqwest::Client,
    base: String,
}

impl HubClient {
    pub fn new(cfg: &RegistryConfig) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("microbadger/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| RegistryError::Protocol {
                reason: format!("building Hub client: {e}"),
            })?;
        Ok(HubClient {
            http,
            base: cfg.hub_api_url.clone(),
        })
    }

    /// Fetch one repository's information.
    pub async fn repository(&self, r: &ImageRef) -> Result<HubInfo, String> {
        let url = format!("{}/v2/repositories/{}/", self.base, r.repository());
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("Hub API answered {}", resp.status().as_u16()));
        }
        let bytes = resp.bytes().await.map_err(|e| format!("reading: {e}"))?;
        if bytes.len() > MAX_HUB_BYTES {
            return Err("Hub API response too large".into());
        }
        let doc: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))?;
        Ok(HubInfo::from_json(&doc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hub_shapes_leniently() {
        let doc = serde_json::json!({
            "namespace": "library", "name": "nginx",
            "description": " Official build of Nginx. ",
            "star_count": 20000, "pull_count": 1.5e9,
            "last_updated": "2026-11-01T10:00:00.123456Z",
            "unexpected": {"nested": true}
        });
        let info = HubInfo::from_json(&doc);
        assert_eq!(
            info.description.as_deref(),
            Some("Official build of Nginx.")
        );
        assert_eq!(info.star_count, Some(20000));
        assert_eq!(info.pull_count, Some(1_500_000_000));
        assert!(info.is_official);

        let odd = serde_json::json!({"description": null, "star_count": "12", "pull_count": -3});
        let info = HubInfo::from_json(&odd);
        assert_eq!(info.description, None);
        assert_eq!(info.star_count, Some(12));
        assert_eq!(info.pull_count, None);
        assert!(!info.is_official);

        assert_eq!(
            HubInfo::from_json(&serde_json::json!([1, 2])),
            HubInfo::default()
        );
    }
}
