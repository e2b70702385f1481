//! Registry authentication: credentials from a Docker `config.json`, `WWW-Authenticate`
//! challenge parsing, and the Bearer token cache.
//!
//! The token cache is keyed by (registry, scope) and holds a token until shortly before it
//! expires, so a re-check of an unchanged tag is one HEAD request, not a token round trip too.
//! The challenge (realm and service) is cached per registry as well: once known, a token for a
//! new repository is requested directly instead of first provoking another 401.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

/// A username and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets, even in debug logs.
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credential {
    /// The `Authorization: Basic ...` header value.
    pub fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            B64.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

/// Credentials per registry host, as read from a Docker `config.json`.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    by_registry: HashMap<String, Credential>,
}

#[derive(Deserialize)]
struct DockerConfigFile {
    #[serde(default)]
    auths: HashMap<String, DockerAuthEntry>,
}

#[derive(Deserialize, Default)]
struct DockerAuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The key Docker uses for Docker Hub in `auths`, besides plain `docker.io`.
const DOCKER_HUB_KEYS: &[&str] = &[
    "https://index.docker.io/v1/",
    "index.docker.io",
    "registry-1.docker.io",
    "docker.io",
];

impl Credentials {
    /// Read `auths` from a Docker config file. A missing file means no credentials; an
    /// unreadable or malformed one is an error worth telling the operator about.
    /// Credential helpers (`credsStore`, `credHelpers`) are not run: they execute programs.
    pub fn from_docker_config(path: &Path) -> Result<Self, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Self::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parse the JSON text of a Docker config file.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let file: DockerConfigFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut by_registry = HashMap::new();
        for (key, entry) in file.auths {
            let cred = match (&entry.auth, &entry.username, &entry.password) {
                (Some(auth), _, _) if !auth.is_empty() => {
                    let decoded = B64
                        .decode(auth.trim())
                        .map_err(|_| format!("auths.{key}.auth is not base64"))?;
                    let decoded = String::from_utf8(decoded)
                        .map_err(|_| format!("auths.{key}.auth is not UTF-8"))?;
                    let (u, p) = decoded
                        .split_once(':')
                        .ok_or_else(|| format!("auths.{key}.auth is not user:password"))?;
                    Credential {
                        username: u.to_string(),
                        password: p.to_string(),
                    }
                }
                (_, Some(u), Some(p)) => Credential {
                    username: u.clone(),
                    password: p.clone(),
                },
                _ => continue,
            };
            by_registry.insert(normalise_key(&key), cred);
        }
        Ok(Credentials { by_registry })
    }

    /// Add or replace one registry's credential.
    pub fn insert(&mut self, registry: &str, cred: Credential) {
        self.by_registry.insert(normalise_key(registry), cred);
    }

    /// The credential for a registry (`host[:port]` as in an image reference).
    pub fn get(&self, registry: &str) -> Option<&Credential> {
        self.by_registry.get(&normalise_key(registry))
    }
}

/// `https://index.docker.io/v1/` -> `docker.io`; `https://host:5000/` -> `host:5000`.
fn normalise_key(key: &str) -> String {
    let k = key.trim().to_ascii_lowercase();
    if DOCKER_HUB_KEYS.contains(&k.as_str()) {
        return "docker.io".into();
    }
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(&k);
    let k = k.split('/').next().unwrap_or(k);
    if DOCKER_HUB_KEYS.contains(&k) {
        "docker.io".into()
    } else {
        k.to_string()
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

/// Parse a `WWW-Authenticate` header value (`Bearer realm="...",service="...",scope="..."`).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let realm = params.get("realm")?.clone();
    Some(Challenge::Bearer {
        realm,
        service: params.get("service").cloned(),
        scope: params.get("scope").cloned(),
    })
}

/// `k="v", k2=v2` with quoted values that may contain commas.
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next() != Some('=') {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n)
                        }
                    }
                    '"' => break,
                    _ => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    out
}

/// A Bearer token and when to stop using it.
#[derive(Clone)]
struct CachedToken {
    token: String,
    expires: Instant,
}

/// Token endpoint response (`token` or `access_token`, `expires_in` seconds).
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// Tokens smaller than this lifetime are still used; the spec's minimum is 60 s.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Stop using a token this long before it expires, so it does not expire in flight.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

/// Per-registry auth state: what the registry asks for, and tokens per scope.
#[derive(Default)]
pub struct AuthCache {
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<HashMap<(String, String), CachedToken>>,
}

impl AuthCache {
    pub fn challenge(&self, registry: &str) -> Option<Challenge> {
        self.challenges.lock().unwrap().get(registry).cloned()
    }

    pub fn set_challenge(&self, registry: &str, c: Challenge) {
        self.challenges
            .lock()
            .unwrap()
            .insert(registry.to_string(), c);
    }

    pub fn token(&self, registry: &str, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap();
        tokens
            .get(&(registry.to_string(), scope.to_string()))
            .filter(|t| t.expires > Instant::now())
            .map(|t| t.token.clone())
    }

    pub fn store_token(&self, registry: &str, scope: &str, token: String, expires_in: Option<u64>) {
        let lifetime = expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME)
            .max(DEFAULT_TOKEN_LIFETIME);
        let expires = Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN);
        self.tokens.lock().unwrap().insert(
            (registry.to_string(), scope.to_string()),
            CachedToken { token, expires },
        );
    }

    pub fn forget_token(&self, registry: &str, scope: &str) {
        self.tokens
            .lock()
            .unwrap()
            .remove(&(registry.to_string(), scope.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(
            parse_challenge("Bearer service=x"),
            None,
            "realm is required"
        );
    }

    #[test]
    fn scope_with_commas_in_quotes() {
        let c = parse_challenge(r#"Bearer realm="http://a/t", scope="repository:a:pull,push""#);
        match c {
            Some(Challenge::Bearer { scope, .. }) => {
                assert_eq!(scope.as_deref(), Some("repository:a:pull,push"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_docker_config() {
        let json = r#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},
            "127.0.0.1:5000":{"username":"u2","password":"p:2"},
            "ghcr.io":{}
        },"credsStore":"desktop"}"#;
        let c = Credentials::from_json(json).unwrap();
        let hub = c.get("docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("user", "pass")
        );
        assert_eq!(c.get("127.0.0.1:5000").unwrap().password, "p:2");
        assert!(c.get("ghcr.io").is_none());
        assert!(
            !format!("{hub:?}").contains("pass\""),
            "debug output redacts"
        );
        assert!(Credentials::from_json(r#"{"auths":{"x":{"auth":"!!"}}}"#).is_err());
    }

    #[test]
    fn missing_config_file_is_empty() {
        let c = Credentials::from_docker_config(Path::new("/nonexistent/config.json")).unwrap();
        assert!(c.get("docker.io").is_none());
    }

    #[test]
    fn token_cache_expires() {
        let cache = AuthCache::default();
        cache.store_token("r", "s", "t".into(), Some(300));
        assert_eq!(cache.token("r", "s").as_deref(), Some("t"));
        assert_eq!(cache.token("r", "other"), None);
        cache.forget_token("r", "s");
        assert_eq!(cache.token("r", "s"), None);
    }
}
