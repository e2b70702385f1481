//! The files in `static/`, embedded in the binary so it serves them from any directory.
//!
//! Pages link them with a `?v=` content hash ([`Asset::url`]), so they can be cached for a
//! day ([`CachePolicy::Static`](crate::web::cache::CachePolicy::Static)) and still change the
//! moment a new build ships.

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Name under `/static/`.
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// `/static/<name>?v=<first 10 hex digits of the SHA-256>`.
    pub url: String,
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        (
            $name,
            $content_type,
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/static/", $name)).as_slice(),
        )
    };
}

/// Every file served under `/static/`.
static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    [
        asset!("app.css", "text/css; charset=utf-8"),
        asset!("app.js", "text/javascript; charset=utf-8"),
        asset!("favicon.svg", "image/svg+xml"),
    ]
    .into_iter()
    .map(|(name, content_type, body)| Asset {
        name,
        content_type,
        body,
        url: format!(
            "/static/{name}?v={}",
            &hex::encode(Sha256::digest(body))[..10]
        ),
    })
    .collect()
});

/// The embedded file called `name`, if there is one.
pub fn get(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The versioned URL of an embedded file.
///
/// # Panics
/// If `name` is not embedded: only called with the literal names above.
pub fn url(name: &str) -> &'static str {
    &get(name)
        .unwrap_or_else(|| panic!("static/{name} is not embedded"))
        .url
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_asset_is_embedded_with_a_versioned_url() {
        for name in ["app.css", "app.js", "favicon.svg"] {
            let a = super::get(name).unwrap();
            assert!(!a.body.is_empty());
            assert!(a.url.starts_with(&format!("/static/{name}?v=")));
            assert_eq!(super::url(name), a.url);
        }
        assert!(super::get("../Cargo.toml").is_none());
    }
}
