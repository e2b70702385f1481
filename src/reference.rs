//! Image reference parsing and normalisation (pure, no I/O).
//!
//! Turns what a user types (`nginx`, `user/app:1.2`, `ghcr.io/org/app@sha256:…`) into the
//! fully qualified form a registry client needs, following the rules of Go's
//! `distribution/reference` (`ParseNormalizedNamed`, `familiarizeName`), which is what
//! `docker pull` uses, so that a name accepted here means the same image it means to Docker:
//!
//! - `reference := name [":" tag] ["@" digest]`;
//! - `name := [host "/"] path`, where the first `/`-separated component is a host only if it
//!   contains `.` or `:`, is a bracketed IPv6 literal, or is `localhost`; otherwise the whole
//!   name is a Docker Hub path;
//! - Docker Hub (`docker.io`; the legacy `index.docker.io` and `registry-1.docker.io` are
//!   rewritten to it) puts single-component names under `library/`;
//! - path components match `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`;
//! - a tag matches `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`; the default tag is `latest`;
//! - `host "/" path` is at most 255 characters.
//!
//! Deliberate differences from `distribution/reference`, each so that every accepted
//! reference prints in a form that parses back to the same reference:
//! - the host is lowercased (DNS is case-insensitive), and a port is printed without
//!   leading zeros;
//! - a first component that has uppercase letters but no `.` or `:` is rejected as an
//!   uppercase repository name (Docker would take `MyOrg/app` as the host `MyOrg`, which is
//!   nearly always a typo for a Docker Hub namespace, and lowercasing it would turn it into
//!   one);
//! - a Docker Hub repository `library/<64 hex>` is rejected, not only the bare 64-hex input,
//!   because its familiar form would be an image ID;
//! - the familiar form keeps `docker.io/` when the first path component would otherwise be
//!   read as a host (`docker.io/foo.bar/app`).
//!
//! The parser is hand-written and linear: it never panics and only slices at ASCII
//! separators, so arbitrary (including non-UTF-8-derived, multi-byte) input is safe; it is
//! fuzzed by `fuzz/fuzz_targets/reference.rs`.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::Ipv6Addr;
use std::str::FromStr;

/// The canonical Docker Hub domain used in references.
pub const DOCKER_HUB_REGISTRY: &str = "docker.io";
/// The host that actually serves the registry API for Docker Hub (moby's `DefaultRegistryHost`).
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// Hosts that mean Docker Hub and are rewritten to [`DOCKER_HUB_REGISTRY`].
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];
/// Namespace of Docker Hub's official images.
const OFFICIAL_NAMESPACE: &str = "library";
/// The tag Docker pulls when none is given.
pub const DEFAULT_TAG: &str = "latest";
/// Maximum length of `host "/" path` (`NameTotalLengthMax` in `distribution/reference`).
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// Maximum length of a tag (`[\w][\w.-]{0,127}`).
pub const TAG_MAX_LEN: usize = 128;

/// Why an image reference was rejected. Each message names the offending part so that a
/// person who typed the reference can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The input was the empty string.
    #[error("image reference is empty")]
    Empty,
    /// `host "/" path` after normalisation is longer than [`NAME_TOTAL_LENGTH_MAX`].
    #[error("image name is {len} characters long, more than the limit of {max}")]
    TooLong { len: usize, max: usize },
    /// A repository path component has uppercase letters (it would be valid in lowercase).
    #[error("repository name must be lowercase: {component:?}")]
    Uppercase { component: String },
    /// The repository path breaks the component grammar.
    #[error("invalid repository name {name:?}: {reason}")]
    InvalidRepository { name: String, reason: String },
    /// The tag is empty, too long or has characters outside `[A-Za-z0-9_.-]`.
    #[error(
        "invalid tag {tag:?}: a tag is 1 to 128 letters, digits, '_', '.' or '-', and cannot start with '.' or '-'"
    )]
    InvalidTag { tag: String },
    /// The digest is not `algorithm:hex` with a supported algorithm and the right length.
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest { digest: String, reason: String },
    /// The registry host is not a domain name or bracketed IPv6 literal with an optional port.
    #[error("invalid registry host {host:?}: {reason}")]
    InvalidHost { host: String, reason: String },
}

/// A parsed, normalised image reference.
///
/// Equality, hashing and ordering treat a missing tag as `latest` when there is no digest,
/// because `nginx` and `nginx:latest` name the same image and the normalised string form
/// ([`Display`](fmt::Display)) writes `:latest` for both; this is what makes
/// `ImageRef::parse(&r.to_string()) == r` hold. [`ImageRef::tag`] still tells them apart.
#[derive(Debug, Clone)]
pub struct ImageRef {
    /// Lowercased host with optional port; Docker Hub aliases rewritten to `docker.io`.
    registry: String,
    /// Path below the host, `library/` added for single-component Docker Hub names.
    repository: String,
    /// The tag exactly as given, if one was given.
    tag: Option<String>,
    /// The digest exactly as given (already validated), if one was given.
    digest: Option<String>,
}

impl ImageRef {
    /// Parses and normalises a reference such as `nginx`, `user/app:1.2`,
    /// `localhost:5000/x` or `host:5000/a/b@sha256:<64 hex>`.
    pub fn parse(input: &str) -> Result<ImageRef, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        // The digest starts at the first '@': neither names nor tags may contain one, so a
        // second '@' ends up in the digest and is reported there.
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((before, after)) => {
                validate_digest(after)?;
                (before, Some(after))
            }
            None => (input, None),
        };
        // A tag follows the last ':' after the last '/'; a ':' before the last '/' belongs to
        // the host's port.
        let last_slash = name_and_tag.rfind('/');
        let (name, tag) = match name_and_tag.rfind(':') {
            Some(colon) if last_slash.is_none_or(|slash| colon > slash) => {
                let tag = &name_and_tag[colon + 1..];
                validate_tag(tag)?;
                (&name_and_tag[..colon], Some(tag))
            }
            _ => (name_and_tag, None),
        };
        if name.is_empty() {
            return Err(invalid_repo(
                name,
                "the name before the tag or digest is empty",
            ));
        }
        let (registry, path) = split_host(name)?;
        validate_path(path)?;
        let is_hub = registry == DOCKER_HUB_REGISTRY;
        let repository = if is_hub && !path.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{path}")
        } else {
            path.to_owned()
        };
        // distribution/reference rejects a bare 64-hex name because `docker run <id>` means
        // an image ID; we reject every spelling that would familiarise to one.
        if is_hub
            && repository
                .strip_prefix("library/")
                .is_some_and(|rest| is_lower_hex(rest, 64))
        {
            return Err(invalid_repo(
                name,
                "a 64-character hex string is an image ID, not a repository name",
            ));
        }
        let len = registry.len() + 1 + repository.len();
        if len > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::TooLong {
                len,
                max: NAME_TOTAL_LENGTH_MAX,
            });
        }
        Ok(ImageRef {
            registry,
            repository,
            tag: tag.map(str::to_owned),
            digest: digest.map(str::to_owned),
        })
    }

    /// The registry host with optional port: `docker.io`, `ghcr.io`, `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path on the registry: `library/nginx`, `org/app`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag if one was written explicitly, else `None` (see [`Self::tag_or_default`]).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:…`) if one was given.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The tag, or `latest` when none was given, as Docker pulls it.
    pub fn tag_or_default(&self) -> &str {
        self.tag.as_deref().unwrap_or(DEFAULT_TAG)
    }

    /// The `<reference>` in `/v2/<name>/manifests/<reference>`: the digest wins over the tag
    /// because it pins the exact content, as Docker does for `name:tag@digest`.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .unwrap_or_else(|| self.tag_or_default())
    }

    /// The same repository at `tag`, without a digest (a digest would override the tag).
    pub fn with_tag(&self, tag: &str) -> Result<ImageRef, ReferenceError> {
        validate_tag(tag)?;
        Ok(ImageRef {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_owned()),
            digest: None,
        })
    }

    /// The same reference pinned to `digest`; the tag, if any, is kept for display.
    pub fn with_digest(&self, digest: &str) -> Result<ImageRef, ReferenceError> {
        validate_digest(digest)?;
        Ok(ImageRef {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: self.tag.clone(),
            digest: Some(digest.to_owned()),
        })
    }

    /// Whether the image lives on Docker Hub, whose API host, token service and Hub API differ
    /// from a plain OCI registry.
    pub fn is_docker_hub(&self) -> bool {
        self.registry == DOCKER_HUB_REGISTRY
    }

    /// The host to send registry API requests to: `docker.io` is only a name in references,
    /// the API is served by `registry-1.docker.io`.
    pub fn api_host(&self) -> &str {
        if self.is_docker_hub() {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// The short name people write, without tag or digest: `nginx`, `user/app`,
    /// `ghcr.io/org/app`, `localhost:5000/x`.
    ///
    /// Like Docker's `familiarizeName` it drops `docker.io/` and a single-level `library/`,
    /// but keeps `docker.io/` when the first path component would otherwise be read back as
    /// a host (`docker.io/foo.bar/app`), so the result always parses to the same name.
    pub fn familiar_name(&self) -> String {
        if !self.is_docker_hub() {
            return self.full_name();
        }
        if let Some(rest) = self
            .repository
            .strip_prefix(OFFICIAL_NAMESPACE)
            .and_then(|r| r.strip_prefix('/'))
            && !rest.contains('/')
        {
            return rest.to_owned();
        }
        match self.repository.split_once('/') {
            Some((first, _)) if looks_like_host(first) => self.full_name(),
            _ => self.repository.clone(),
        }
    }

    /// [`Self::familiar_name`] plus `:tag` if a tag was given explicitly and `@digest` if a
    /// digest was given: the form to show people.
    pub fn familiar(&self) -> String {
        let mut out = self.familiar_name();
        self.push_suffix(&mut out, false);
        out
    }

    /// `registry/repository`, e.g. `docker.io/library/nginx`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Appends `:tag` and `@digest`; with `default_tag`, writes `:latest` when there is neither
    /// a tag nor a digest.
    fn push_suffix(&self, out: &mut String, default_tag: bool) {
        match (&self.tag, &self.digest) {
            (Some(tag), _) => {
                out.push(':');
                out.push_str(tag);
            }
            (None, None) if default_tag => {
                out.push(':');
                out.push_str(DEFAULT_TAG);
            }
            _ => {}
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest);
        }
    }

    /// What equality, hashing and ordering look at: the implicit tag counts as `latest` when
    /// there is no digest (see the type's docs).
    fn key(&self) -> (&str, &str, Option<&str>, Option<&str>) {
        let tag = match (&self.tag, &self.digest) {
            (None, None) => Some(DEFAULT_TAG),
            (tag, _) => tag.as_deref(),
        };
        (
            &self.registry,
            &self.repository,
            tag,
            self.digest.as_deref(),
        )
    }
}

impl PartialEq for ImageRef {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for ImageRef {}

impl Hash for ImageRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl PartialOrd for ImageRef {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ImageRef {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// The fully normalised form: `docker.io/library/nginx:latest`,
/// `host:5000/a/b@sha256:…`, `docker.io/x/y:1@sha256:…`.
impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.full_name();
        self.push_suffix(&mut out, true);
        f.write_str(&out)
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

/// Serialised as the normalised string, so stored and API forms are unambiguous.
impl serde::Serialize for ImageRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Deserialised through [`ImageRef::parse`], so invalid stored strings are rejected.
impl<'de> serde::Deserialize<'de> for ImageRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        ImageRef::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Checks a tag against `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    let mut bytes = tag.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if first_ok && rest_ok && tag.len() <= TAG_MAX_LEN {
        Ok(())
    } else {
        Err(ReferenceError::InvalidTag {
            tag: tag.to_owned(),
        })
    }
}

/// Checks a digest: `algorithm ":" hex`, where the algorithm is one registries use
/// (`sha256`, `sha384`, `sha512`, `blake3`) and the hex is lowercase and exactly as long as
/// that algorithm's output, as go-digest's `Validate` requires. A digest of the wrong length
/// can never match content, so it is better rejected here than as a 404 later.
pub fn validate_digest(digest: &str) -> Result<(), ReferenceError> {
    let fail = |reason: String| ReferenceError::InvalidDigest {
        digest: digest.to_owned(),
        reason,
    };
    if digest.is_empty() {
        return Err(fail("the digest after '@' is empty".into()));
    }
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(fail(
            "expected algorithm:hex, e.g. sha256:<64 hex digits>".into(),
        ));
    };
    if !is_algorithm_syntax(algorithm) {
        return Err(fail(format!(
            "algorithm {algorithm:?} is not of the form [a-z0-9]+([+._-][a-z0-9]+)*"
        )));
    }
    let expected_len = match algorithm {
        "sha256" | "blake3" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(fail(format!(
                "unsupported algorithm {algorithm:?} (expected sha256, sha384, sha512 or blake3)"
            )));
        }
    };
    if let Some(bad) = hex.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(fail(format!("{bad:?} is not a hex digit")));
    }
    if hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(fail("hex digits must be lowercase".into()));
    }
    if hex.len() != expected_len {
        return Err(fail(format!(
            "{algorithm} needs {expected_len} hex digits, got {}",
            hex.len()
        )));
    }
    Ok(())
}

/// OCI's algorithm grammar `[a-z0-9]+([+._-][a-z0-9]+)*`.
fn is_algorithm_syntax(s: &str) -> bool {
    s.split(['+', '.', '_', '-']).all(|part| {
        !part.is_empty() && part.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9'))
    })
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn invalid_repo(name: &str, reason: impl Into<String>) -> ReferenceError {
    ReferenceError::InvalidRepository {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

/// Docker's rule for whether the first component of a name is a registry host: it contains
/// `.` or `:` (a domain or a port), is a bracketed IPv6 literal, or is `localhost`.
fn looks_like_host(component: &str) -> bool {
    component.contains(['.', ':', '[']) || component.eq_ignore_ascii_case("localhost")
}

/// Splits `name` into the normalised registry and the path below it.
fn split_host(name: &str) -> Result<(String, &str), ReferenceError> {
    match name.split_once('/') {
        Some((first, rest)) if looks_like_host(first) => {
            let host = normalize_host(first)?;
            let host = if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
                DOCKER_HUB_REGISTRY.to_owned()
            } else {
                host
            };
            Ok((host, rest))
        }
        _ => Ok((DOCKER_HUB_REGISTRY.to_owned(), name)),
    }
}

/// Validates a host (`domain[:port]` or `[ipv6][:port]`) and returns it lowercased with the
/// port printed canonically.
fn normalize_host(host: &str) -> Result<String, ReferenceError> {
    let fail = |reason: String| ReferenceError::InvalidHost {
        host: host.to_owned(),
        reason,
    };
    let (hostname, port) = if let Some(inner) = host.strip_prefix('[') {
        let Some((addr, after)) = inner.split_once(']') else {
            return Err(fail("IPv6 literal is missing its closing ']'".into()));
        };
        if addr.parse::<Ipv6Addr>().is_err() {
            return Err(fail(format!("{addr:?} is not an IPv6 address")));
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return Err(fail("only ':port' may follow an IPv6 literal".into())),
            },
        };
        (format!("[{}]", addr.to_ascii_lowercase()), port)
    } else {
        let (domain, port) = match host.split_once(':') {
            Some((domain, port)) => (domain, Some(port)),
            None => (host, None),
        };
        validate_domain(domain).map_err(fail)?;
        (domain.to_ascii_lowercase(), port)
    };
    match port {
        None => Ok(hostname),
        Some(port) => {
            let number = parse_port(port)
                .ok_or_else(|| fail(format!("port {port:?} is not a number from 1 to 65535")))?;
            Ok(format!("{hostname}:{number}"))
        }
    }
}

/// Domain labels `[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?` joined by dots.
fn validate_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("the host name is empty".into());
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err("empty label (leading, trailing or doubled '.')".into());
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!("invalid character {bad:?}"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
    }
    Ok(())
}

/// A port of 1 to 65535 written in ASCII digits.
fn parse_port(port: &str) -> Option<u16> {
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Leading zeros are harmless; strip them so the length guard below is meaningful.
    let digits = port.trim_start_matches('0');
    if digits.len() > 5 {
        return None;
    }
    digits.parse::<u16>().ok().filter(|&n| n != 0)
}

/// Checks each `/`-separated component of a repository path.
fn validate_path(path: &str) -> Result<(), ReferenceError> {
    for component in path.split('/') {
        if let Err(reason) = validate_component(&component.to_ascii_lowercase()) {
            return Err(invalid_repo(path, reason));
        }
    }
    // Only once the path is valid apart from case, so a typo like `My App` gets the more
    // specific message.
    if let Some(component) = path
        .split('/')
        .find(|c| c.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(ReferenceError::Uppercase {
            component: component.to_owned(),
        });
    }
    Ok(())
}

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn validate_component(component: &str) -> Result<(), String> {
    if component.is_empty() {
        return Err("empty path component (leading, trailing or doubled '/')".into());
    }
    if let Some(bad) = component
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-'))
    {
        return Err(format!("invalid character {bad:?} in {component:?}"));
    }
    let bytes = component.as_bytes();
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().copied().is_some_and(is_alnum) {
        return Err(format!("{component:?} must start with a letter or digit"));
    }
    if !bytes.last().copied().is_some_and(is_alnum) {
        return Err(format!("{component:?} must end with a letter or digit"));
    }
    // Between alphanumeric runs: exactly one '.', one or two '_', or any number of '-'.
    let mut run_start = 0;
    while run_start < bytes.len() {
        let run_end = bytes[run_start..]
            .iter()
            .position(|&b| is_alnum(b))
            .map_or(bytes.len(), |p| run_start + p);
        let separator = &component[run_start..run_end];
        let ok = separator.is_empty()
            || separator == "."
            || separator == "_"
            || separator == "__"
            || separator.bytes().all(|b| b == b'-');
        if !ok {
            return Err(format!(
                "separator {separator:?} in {component:?} is not allowed (use one '.', one or two '_', or '-')"
            ));
        }
        run_start = bytes[run_end..]
            .iter()
            .position(|&b| !is_alnum(b))
            .map_or(bytes.len(), |p| run_end + p);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D64: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn d(s: &str) -> String {
        s.replace("{D}", D64)
    }

    /// (input, Display, familiar, registry, repository, tag, has a digest)
    type GoodCase<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        bool,
    );
    /// Whether an error is the expected one.
    type ErrorCheck = fn(&ReferenceError) -> bool;

    #[test]
    fn good_references() {
        #[rustfmt::skip]
        let cases: &[GoodCase] = &[
            ("nginx", "docker.io/library/nginx:latest", "nginx", "docker.io", "library/nginx", None, false),
            ("nginx:1.25", "docker.io/library/nginx:1.25", "nginx:1.25", "docker.io", "library/nginx", Some("1.25"), false),
            ("nginx:latest", "docker.io/library/nginx:latest", "nginx:latest", "docker.io", "library/nginx", Some("latest"), false),
            ("docker.io/library/nginx", "docker.io/library/nginx:latest", "nginx", "docker.io", "library/nginx", None, false),
            ("docker.io/nginx", "docker.io/library/nginx:latest", "nginx", "docker.io", "library/nginx", None, false),
            ("index.docker.io/nginx", "docker.io/library/nginx:latest", "nginx", "docker.io", "library/nginx", None, false),
            ("registry-1.docker.io/user/app", "docker.io/user/app:latest", "user/app", "docker.io", "user/app", None, false),
            ("Docker.IO/user/app", "docker.io/user/app:latest", "user/app", "docker.io", "user/app", None, false),
            ("user/app", "docker.io/user/app:latest", "user/app", "docker.io", "user/app", None, false),
            ("library/a/b", "docker.io/library/a/b:latest", "library/a/b", "docker.io", "library/a/b", None, false),
            ("docker.io/foo.bar/app", "docker.io/foo.bar/app:latest", "docker.io/foo.bar/app", "docker.io", "foo.bar/app", None, false),
            ("docker.io/localhost/app", "docker.io/localhost/app:latest", "docker.io/localhost/app", "docker.io", "localhost/app", None, false),
            ("a.b", "docker.io/library/a.b:latest", "a.b", "docker.io", "library/a.b", None, false),
            ("localhost", "docker.io/library/localhost:latest", "localhost", "docker.io", "library/localhost", None, false),
            ("localhost:5000", "docker.io/library/localhost:5000", "localhost:5000", "docker.io", "library/localhost", Some("5000"), false),
            ("nginx@{D}", "docker.io/library/nginx@{D}", "nginx@{D}", "docker.io", "library/nginx", None, true),
            ("x/y:1@{D}", "docker.io/x/y:1@{D}", "x/y:1@{D}", "docker.io", "x/y", Some("1"), true),
            ("ghcr.io/org/app:1.2", "ghcr.io/org/app:1.2", "ghcr.io/org/app:1.2", "ghcr.io", "org/app", Some("1.2"), false),
            ("GHCR.io/org/app", "ghcr.io/org/app:latest", "ghcr.io/org/app", "ghcr.io", "org/app", None, false),
            ("localhost/x", "localhost/x:latest", "localhost/x", "localhost", "x", None, false),
            ("LocalHost/x", "localhost/x:latest", "localhost/x", "localhost", "x", None, false),
            ("localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x", "localhost:5000", "x", None, false),
            ("localhost:5000/x:1", "localhost:5000/x:1", "localhost:5000/x:1", "localhost:5000", "x", Some("1"), false),
            ("localhost:05000/x", "localhost:5000/x:latest", "localhost:5000/x", "localhost:5000", "x", None, false),
            ("a.b/c", "a.b/c:latest", "a.b/c", "a.b", "c", None, false),
            ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest", "127.0.0.1:5000/x", "127.0.0.1:5000", "x", None, false),
            ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x", "[::1]:5000", "x", None, false),
            ("[FE80::1]/x", "[fe80::1]/x:latest", "[fe80::1]/x", "[fe80::1]", "x", None, false),
            ("host:5000/a/b@{D}", "host:5000/a/b@{D}", "host:5000/a/b@{D}", "host:5000", "a/b", None, true),
            ("quay.io/a_b/c__d/e-f/g---h/i.j:v1.0_RC-2", "quay.io/a_b/c__d/e-f/g---h/i.j:v1.0_RC-2", "quay.io/a_b/c__d/e-f/g---h/i.j:v1.0_RC-2", "quay.io", "a_b/c__d/e-f/g---h/i.j", Some("v1.0_RC-2"), false),
            ("my-registry.example.com:443/team/app:_x", "my-registry.example.com:443/team/app:_x", "my-registry.example.com:443/team/app:_x", "my-registry.example.com:443", "team/app", Some("_x"), false),
            ("registry.hub.docker.com/library/nginx", "registry.hub.docker.com/library/nginx:latest", "registry.hub.docker.com/library/nginx", "registry.hub.docker.com", "library/nginx", None, false),
        ];
        for &(input, display, familiar, registry, repository, tag, has_digest) in cases {
            let r = ImageRef::parse(&d(input)).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), d(display), "display of {input}");
            assert_eq!(r.familiar(), d(familiar), "familiar of {input}");
            assert_eq!(r.registry(), registry, "registry of {input}");
            assert_eq!(r.repository(), repository, "repository of {input}");
            assert_eq!(r.tag(), tag, "tag of {input}");
            assert_eq!(r.digest().is_some(), has_digest, "digest of {input}");
            assert_eq!(
                ImageRef::parse(&r.to_string()).as_ref(),
                Ok(&r),
                "display round trip of {input}"
            );
            assert_eq!(
                ImageRef::parse(&r.familiar()).as_ref(),
                Ok(&r),
                "familiar round trip of {input}"
            );
            assert_eq!(r.full_name(), format!("{registry}/{repository}"));
        }
    }

    #[test]
    fn bad_references() {
        use ReferenceError as E;
        let long_path = format!("a/{}", "b".repeat(250));
        let long_tag = "t".repeat(129);
        #[rustfmt::skip]
        let cases: Vec<(String, ErrorCheck)> = vec![
            ("".into(), |e| matches!(e, E::Empty)),
            ("MyApp".into(), |e| matches!(e, E::Uppercase { component } if component == "MyApp")),
            ("user/MyApp:1".into(), |e| matches!(e, E::Uppercase { component } if component == "MyApp")),
            ("MyOrg/app".into(), |e| matches!(e, E::Uppercase { component } if component == "MyOrg")),
            ("ghcr.io/Org/app".into(), |e| matches!(e, E::Uppercase { .. })),
            ("nginx:-bad".into(), |e| matches!(e, E::InvalidTag { tag } if tag == "-bad")),
            ("nginx:.bad".into(), |e| matches!(e, E::InvalidTag { .. })),
            ("nginx:a+b".into(), |e| matches!(e, E::InvalidTag { .. })),
            (format!("nginx:{long_tag}"), |e| matches!(e, E::InvalidTag { .. })),
            ("a:".into(), |e| matches!(e, E::InvalidTag { tag } if tag.is_empty())),
            ("a@".into(), |e| matches!(e, E::InvalidDigest { digest, .. } if digest.is_empty())),
            ("a@sha256:abc".into(), |e| matches!(e, E::InvalidDigest { reason, .. } if reason.contains("64"))),
            (format!("a@{}", D64.to_uppercase().replace("SHA256", "sha256")), |e| matches!(e, E::InvalidDigest { reason, .. } if reason.contains("lowercase"))),
            (format!("a@sha256:{}", "g".repeat(64)), |e| matches!(e, E::InvalidDigest { reason, .. } if reason.contains("hex"))),
            (format!("a@{}", D64.replace("sha256", "md5")), |e| matches!(e, E::InvalidDigest { reason, .. } if reason.contains("unsupported"))),
            (format!("a@{}", D64.replace("sha256", "SHA256")), |e| matches!(e, E::InvalidDigest { .. })),
            (format!("a@{}", D64.replace("sha256:", "")), |e| matches!(e, E::InvalidDigest { .. })),
            (format!("a@{D64}@{D64}"), |e| matches!(e, E::InvalidDigest { .. })),
            (format!("a@sha512:{}", "0".repeat(64)), |e| matches!(e, E::InvalidDigest { reason, .. } if reason.contains("128"))),
            (format!("a.io/{long_path}"), |e| matches!(e, E::TooLong { len: 257, max: 255 })),
            // Without a host, `docker.io/` is added and counts towards the limit.
            ("a".repeat(240), |e| matches!(e, E::TooLong { .. })),
            ("a//b".into(), |e| matches!(e, E::InvalidRepository { .. })),
            ("a/".into(), |e| matches!(e, E::InvalidRepository { .. })),
            ("/a".into(), |e| matches!(e, E::InvalidRepository { .. })),
            ("ghcr.io/".into(), |e| matches!(e, E::InvalidRepository { .. })),
            ("-a".into(), |e| matches!(e, E::InvalidRepository { .. })),
            ("a-".into(), |e| matches!(e, E::InvalidRepository { .. })),
            ("a..b".into(), |e| matches!(e, E::InvalidRepository { .. })),
            ("a___b".into(), |e| matches!(e, E::InvalidRepository { .. })),
            ("a._b".into(), |e| matches!(e, E::InvalidRepository { .. })),
            ("x/../y".into(), |e| matches!(e, E::InvalidRepository { .. })),
            (":tag".into(), |e| matches!(e, E::InvalidRepository { .. })),
            (format!("@{D64}"), |e| matches!(e, E::InvalidRepository { .. })),
            ("ngi nx".into(), |e| matches!(e, E::InvalidRepository { reason, .. } if reason.contains("' '"))),
            (" nginx".into(), |e| matches!(e, E::InvalidRepository { .. })),
            ("nginx\n".into(), |e| matches!(e, E::InvalidRepository { .. })),
            ("ngi\u{0}nx".into(), |e| matches!(e, E::InvalidRepository { .. })),
            ("nginx :1".into(), |e| matches!(e, E::InvalidRepository { .. })),
            ("nginx: 1".into(), |e| matches!(e, E::InvalidTag { .. })),
            ("ñginx".into(), |e| matches!(e, E::InvalidRepository { .. })),
            ("user/ﬁle".into(), |e| matches!(e, E::InvalidRepository { .. })),
            ("nginx:tág".into(), |e| matches!(e, E::InvalidTag { .. })),
            ("exämple.com/x".into(), |e| matches!(e, E::InvalidHost { .. })),
            ("localhost:5000".replace("5000", "5000:tag"), |e| matches!(e, E::InvalidRepository { .. })),
            ("-a.com/x".into(), |e| matches!(e, E::InvalidHost { .. })),
            ("a..com/x".into(), |e| matches!(e, E::InvalidHost { .. })),
            ("a_b.com/x".into(), |e| matches!(e, E::InvalidHost { .. })),
            (".com/x".into(), |e| matches!(e, E::InvalidHost { .. })),
            (":5000/x".into(), |e| matches!(e, E::InvalidHost { .. })),
            ("host:/x".into(), |e| matches!(e, E::InvalidHost { .. })),
            ("host:0/x".into(), |e| matches!(e, E::InvalidHost { .. })),
            ("host:65536/x".into(), |e| matches!(e, E::InvalidHost { .. })),
            ("host:5x/x".into(), |e| matches!(e, E::InvalidHost { .. })),
            ("host:1:2/x".into(), |e| matches!(e, E::InvalidHost { .. })),
            ("[::1/x".into(), |e| matches!(e, E::InvalidHost { .. })),
            ("[zz::1]:5000/x".into(), |e| matches!(e, E::InvalidHost { .. })),
            ("[::1]5000/x".into(), |e| matches!(e, E::InvalidHost { .. })),
            ("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(), |e| matches!(e, E::InvalidRepository { .. })),
            ("docker.io/library/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(), |e| matches!(e, E::InvalidRepository { .. })),
        ];
        for (input, check) in &cases {
            match ImageRef::parse(input) {
                Ok(r) => panic!("{input:?} parsed as {r}"),
                Err(e) => assert!(check(&e), "{input:?} gave the wrong error: {e:?}"),
            }
        }
    }

    #[test]
    fn error_messages_name_the_problem() {
        let msg = |s: &str| ImageRef::parse(s).unwrap_err().to_string();
        assert_eq!(msg(""), "image reference is empty");
        assert_eq!(msg("MyApp"), "repository name must be lowercase: \"MyApp\"");
        assert!(msg("nginx:-x").contains("\"-x\""));
        assert!(msg("a@sha256:ab").contains("sha256 needs 64 hex digits, got 2"));
        assert!(msg("a_b.io/x").contains("invalid registry host \"a_b.io\""));
        // Control characters are escaped, not echoed raw into logs or pages.
        assert!(msg("a\u{1b}[31m").contains("\\u{1b}"));
    }

    #[test]
    fn long_names_at_the_limit() {
        // docker.io/ + library/ + name = 255 exactly.
        let name = "a".repeat(NAME_TOTAL_LENGTH_MAX - "docker.io/library/".len());
        let r = ImageRef::parse(&name).unwrap();
        assert_eq!(r.full_name().len(), NAME_TOTAL_LENGTH_MAX);
        assert!(matches!(
            ImageRef::parse(&format!("{name}a")),
            Err(ReferenceError::TooLong { len: 256, max: 255 })
        ));
        let tag = "t".repeat(TAG_MAX_LEN);
        assert!(validate_tag(&tag).is_ok());
    }

    #[test]
    fn accessors() {
        let r = ImageRef::parse("nginx").unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.tag_or_default(), "latest");
        assert_eq!(r.manifest_reference(), "latest");
        assert_eq!(r.digest(), None);
        assert!(r.is_docker_hub());
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.familiar_name(), "nginx");
        assert_eq!(r.full_name(), "docker.io/library/nginx");

        let pinned = ImageRef::parse(&format!("ghcr.io/o/a:1@{D64}")).unwrap();
        assert_eq!(pinned.manifest_reference(), D64);
        assert_eq!(pinned.tag_or_default(), "1");
        assert!(!pinned.is_docker_hub());
        assert_eq!(pinned.api_host(), "ghcr.io");
        assert_eq!(pinned.familiar_name(), "ghcr.io/o/a");
    }

    #[test]
    fn with_tag_and_digest() {
        let r = ImageRef::parse(&format!("user/app:1@{D64}")).unwrap();
        let t = r.with_tag("2").unwrap();
        assert_eq!(t.to_string(), "docker.io/user/app:2");
        assert_eq!(t.digest(), None);
        assert!(matches!(
            r.with_tag("-x"),
            Err(ReferenceError::InvalidTag { .. })
        ));

        let base = ImageRef::parse("user/app:1").unwrap();
        let pinned = base.with_digest(D64).unwrap();
        assert_eq!(pinned, r);
        assert_eq!(pinned.tag(), Some("1"));
        assert!(matches!(
            base.with_digest("sha256:x"),
            Err(ReferenceError::InvalidDigest { .. })
        ));
        let no_tag = ImageRef::parse("nginx").unwrap().with_digest(D64).unwrap();
        assert_eq!(no_tag.to_string(), format!("docker.io/library/nginx@{D64}"));
    }

    #[test]
    fn implicit_latest_equals_explicit_latest() {
        use std::collections::HashSet;
        let a = ImageRef::parse("nginx").unwrap();
        let b = ImageRef::parse("nginx:latest").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.cmp(&b), Ordering::Equal);
        assert_eq!(HashSet::from([a.clone(), b.clone()]).len(), 1);
        assert_ne!(a.tag(), b.tag());
        // With a digest the tag is part of what was written and kept apart.
        let c = ImageRef::parse(&format!("nginx@{D64}")).unwrap();
        let e = ImageRef::parse(&format!("nginx:latest@{D64}")).unwrap();
        assert_ne!(c, e);
        assert_ne!(a, c);
    }

    #[test]
    fn serde_uses_the_normalised_string() {
        let r = ImageRef::parse("user/app:1").unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"docker.io/user/app:1\"");
        let back: ImageRef = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert!(serde_json::from_str::<ImageRef>("\"Bad Name\"").is_err());
        let parsed: ImageRef = "nginx".parse().unwrap();
        assert_eq!(parsed.to_string(), "docker.io/library/nginx:latest");
    }

    #[test]
    fn digests() {
        assert!(validate_digest(D64).is_ok());
        assert!(validate_digest(&format!("sha512:{}", "a".repeat(128))).is_ok());
        assert!(validate_digest(&format!("sha384:{}", "a".repeat(96))).is_ok());
        assert!(validate_digest(&format!("blake3:{}", "a".repeat(64))).is_ok());
        assert!(validate_digest("sha256").is_err());
        assert!(validate_digest(":abc").is_err());
        assert!(validate_digest("sha256:").is_err());
        assert!(validate_digest(&format!("sha-256:{}", "a".repeat(64))).is_err());
    }
}
