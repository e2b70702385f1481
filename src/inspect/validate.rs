//! Small value validators and escapers shared by the derivation and compliance code.
//!
//! Every function here takes arbitrary, untrusted label text: none of them may panic, and the
//! escapers must turn any input into exactly one line that cannot break out of its quoting.

use std::sync::LazyLock;

use chrono::{DateTime, FixedOffset};
use regex::Regex;

/// Parse an RFC 3339 date-time (what both `build-date` and `image.created` ask for).
///
/// chrono's parser also accepts a space or lower-case `t` as the separator, which RFC 3339
/// §5.6 explicitly permits, so we do not narrow it further.
pub(crate) fn parse_rfc3339(value: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(value).ok()
}

/// Why a date value is not RFC 3339, phrased for a maintainer.
pub(crate) fn date_problem(value: &str) -> Option<String> {
    if parse_rfc3339(value).is_some() {
        return None;
    }
    let v = value.trim();
    Some(if v.starts_with('$') {
        format!(
            "`{}` looks like a build argument that was never expanded; pass it with --build-arg",
            truncate(v, 40)
        )
    } else if v.is_empty() {
        "empty value; expected an RFC 3339 date-time such as 2016-04-12T23:20:50.52Z".to_owned()
    } else {
        "not an RFC 3339 date-time (expected e.g. 2016-04-12T23:20:50.52Z)".to_owned()
    })
}

/// Is this an absolute `http` or `https` URL with a host? Only such URLs are ever turned into
/// links, so a `javascript:` or `file:` value in a label can never reach a page as a link.
pub(crate) fn is_http_url(value: &str) -> bool {
    http_url(value).is_some()
}

/// The parsed form of an `http(s)` URL, or `None`.
///
/// Not trimmed: a label value with stray whitespace is reported as invalid by compliance, while
/// derivation trims before calling this.
pub(crate) fn http_url(value: &str) -> Option<url::Url> {
    let v = value;
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let u = url::Url::parse(v).ok()?;
    if !matches!(u.scheme(), "http" | "https") {
        return None;
    }
    u.host_str().filter(|h| !h.is_empty())?;
    Some(u)
}

/// Why a value is not an `http(s)` URL, phrased for a maintainer.
pub(crate) fn url_problem(value: &str) -> Option<String> {
    if is_http_url(value) {
        return None;
    }
    let v = value.trim();
    Some(if v.is_empty() {
        "empty value; expected an http(s) URL".to_owned()
    } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "contains whitespace or control characters".to_owned()
    } else if v.starts_with('$') {
        format!(
            "`{}` looks like a build argument that was never expanded",
            truncate(v, 40)
        )
    } else if !v.contains("://") {
        "not an absolute URL (it needs a scheme, e.g. https://)".to_owned()
    } else {
        "not a valid http(s) URL".to_owned()
    })
}

/// scp-like git address: `user@host:path` (no scheme).
static SCP_LIKE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9._-]+@([A-Za-z0-9.-]+):([A-Za-z0-9._~/-]+)$")
        .expect("static regex compiles")
});

/// Split an scp-like git address (`git@github.com:owner/repo.git`) into host and path.
pub(crate) fn scp_like(value: &str) -> Option<(String, String)> {
    let caps = SCP_LIKE.captures(value.trim())?;
    let host = caps.get(1)?.as_str().to_ascii_lowercase();
    let path = caps.get(2)?.as_str().trim_start_matches('/').to_owned();
    if host.is_empty() || path.is_empty() {
        return None;
    }
    Some((host, path))
}

/// Is this a URL git can clone from: `http(s)://`, `git://`, `ssh://`, `git+ssh://`,
/// `git+https://`? scp-like addresses are only accepted when `allow_scp` (label-schema's
/// `vcs-url` is documented as "URL of the version-controlled source", and the git SSH form
/// was common in practice; OCI's `source` asks for a URL, which the scp form is not).
pub(crate) fn is_vcs_url(value: &str, allow_scp: bool) -> bool {
    let v = value;
    if is_http_url(v) {
        return true;
    }
    if allow_scp && scp_like(v).is_some() {
        return true;
    }
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    match url::Url::parse(v) {
        Ok(u) => {
            matches!(
                u.scheme(),
                "git" | "ssh" | "git+ssh" | "ssh+git" | "git+https"
            ) && u.host_str().is_some_and(|h| !h.is_empty())
        }
        Err(_) => false,
    }
}

/// Does a free-form value look like it was meant as a URL (label-schema `usage` may be a path
/// inside the image or a URL; only the URL form is checked)?
pub(crate) fn looks_like_url(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    v.contains("://") || v.starts_with("www.")
}

/// OCI descriptor digest grammar (`descriptor.md`): `algorithm ":" encoded`, with the lengths
/// of the two registered algorithms enforced.
static DIGEST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$").expect("static regex compiles")
});

/// Is this a valid content digest (`sha256:<64 hex>`, `sha512:<128 hex>`, or another
/// algorithm in the generic grammar)?
pub(crate) fn is_digest(value: &str) -> bool {
    if !DIGEST.is_match(value) {
        return false;
    }
    let Some((alg, enc)) = value.split_once(':') else {
        return false;
    };
    let hex_of = |n: usize| {
        enc.len() == n
            && enc
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    match alg {
        "sha256" => hex_of(64),
        "sha512" => hex_of(128),
        _ => true,
    }
}

/// `org.opencontainers.image.ref.name` grammar from `annotations.md`.
static REF_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*$")
        .expect("static regex compiles")
});

/// Does the value follow the `ref.name` grammar?
pub(crate) fn is_ref_name(value: &str) -> bool {
    REF_NAME.is_match(value)
}

/// A distribution/reference image reference, loosely: `[host[:port]/]path[:tag][@digest]`.
/// Used only to validate `base.name`; the full parser lives in `crate::reference`, which this
/// pure module deliberately does not depend on.
static IMAGE_REF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?:(?P<host>[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?)/)?",
        r"(?P<path>[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*)",
        r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]{0,127}))?",
        r"(?:@(?P<digest>[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+))?$"
    ))
    .expect("static regex compiles")
});

/// A parsed image reference: (registry host if given, repository path).
pub(crate) struct ImageRef {
    pub(crate) host: Option<String>,
    pub(crate) path: String,
}

/// Parse an image reference for `base.name` checks. A first component counts as a registry host
/// only if it contains `.` or `:` or is `localhost`, as in distribution/reference.
pub(crate) fn parse_image_ref(value: &str) -> Option<ImageRef> {
    if value.len() > 512 {
        return None;
    }
    let caps = IMAGE_REF.captures(value)?;
    let mut host = caps.name("host").map(|m| m.as_str().to_owned());
    let mut path = caps.name("path")?.as_str().to_owned();
    if let Some(h) = &host
        && !(h.contains('.') || h.contains(':') || h == "localhost")
    {
        // Not a host after all: it is the first path component (it must then be lower case).
        if h.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        path = format!("{h}/{path}");
        host = None;
    }
    Some(ImageRef { host, path })
}

/// Docker's label key guidelines, which label-schema rc1 adopts: lower-case alphanumerics,
/// dots and dashes; start and end with an alphanumeric; no consecutive dots or dashes.
/// Returns every violated rule, so the reason tells a maintainer all of them at once.
pub(crate) fn key_syntax_problems(key: &str) -> Vec<&'static str> {
    let mut problems = Vec::new();
    if key
        .chars()
        .any(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'))
    {
        problems.push("only lower-case letters, digits, dots and dashes are allowed");
    }
    let first_ok = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let last_ok = key
        .chars()
        .next_back()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok || !last_ok {
        problems.push("must start and end with a letter or digit");
    }
    let sep = |c: char| c == '.' || c == '-';
    let chars: Vec<char> = key.chars().collect();
    if chars.windows(2).any(|w| sep(w[0]) && sep(w[1])) {
        problems.push("no consecutive dots or dashes");
    }
    problems
}

/// Cut a string to at most `max` characters (not bytes), marking the cut.
pub(crate) fn truncate(value: &str, max: usize) -> String {
    match value.char_indices().nth(max) {
        None => value.to_owned(),
        Some((i, _)) => format!("{}…", &value[..i]),
    }
}

/// Characters that make text render differently from how it reads (bidi overrides, zero-width
/// characters, the BOM). Escaped so that a copied fix line shows exactly what it contains.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Rewrite control and invisible characters as visible escapes (`\n`, `\t`, `\u{1b}` …) so a
/// value always stays on one line. The result is for display and copying, not a round trip.
pub(crate) fn escape_controls(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || is_invisible(c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// Quote a literal value for a Dockerfile `LABEL key="..."` line.
///
/// Inside double quotes the Dockerfile lexer treats `\` as an escape for `"`, `$` and `\`, and
/// expands `$VAR`: all three are escaped so the label gets exactly the text shown. Newlines and
/// other control characters cannot be written on one line at all and become visible escapes.
pub(crate) fn dockerfile_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in escape_controls(value).chars() {
        // `escape_controls` introduced backslashes of its own; they are escaped too, so the
        // Dockerfile lexer keeps them literally.
        if matches!(c, '"' | '\\' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Quote a literal argument for a POSIX shell (`docker buildx build ...`): single quotes, in
/// which nothing is special, with `'` written as `'\''`. Control characters are made visible
/// first so the command stays one line.
pub(crate) fn shell_quote(value: &str) -> String {
    let v = escape_controls(value);
    format!("'{}'", v.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_accepts_and_rejects() {
        assert!(parse_rfc3339("2016-04-12T23:20:50.52Z").is_some());
        assert!(parse_rfc3339("2024-01-02T03:04:05+02:00").is_some());
        assert!(parse_rfc3339("2016-04-12").is_none());
        assert!(parse_rfc3339("Tue Apr 12 2016").is_none());
        assert!(parse_rfc3339("").is_none());
        assert!(
            date_problem("$BUILD_DATE")
                .unwrap()
                .contains("never expanded")
        );
        assert!(date_problem("2016-04-12T23:20:50Z").is_none());
    }

    #[test]
    fn http_urls() {
        assert!(is_http_url("https://github.com/o/r"));
        assert!(is_http_url("http://postgresql.org"));
        assert!(!is_http_url("javascript:alert(1)"));
        assert!(!is_http_url("file:///etc/passwd"));
        assert!(!is_http_url("github.com/o/r"));
        assert!(!is_http_url("https://exa mple.com"));
        assert!(!is_http_url("https://example.com/\n"));
        assert!(!is_http_url(""));
        assert!(url_problem("github.com/o/r").unwrap().contains("scheme"));
        assert!(
            url_problem(" https://x.org")
                .unwrap()
                .contains("whitespace")
        );
    }

    #[test]
    fn vcs_urls() {
        assert!(is_vcs_url("git@github.com:o/r.git", true));
        assert!(!is_vcs_url("git@github.com:o/r.git", false));
        assert!(is_vcs_url("ssh://git@github.com/o/r.git", false));
        assert!(is_vcs_url("git://github.com/o/r.git", false));
        assert!(!is_vcs_url("ftp://example.com/x", true));
        assert!(!is_vcs_url("not a url", true));
        assert_eq!(
            scp_like("git@gitlab.com:group/sub/repo.git"),
            Some(("gitlab.com".into(), "group/sub/repo.git".into()))
        );
    }

    #[test]
    fn digests() {
        let hex64 = "a".repeat(64);
        assert!(is_digest(&format!("sha256:{hex64}")));
        assert!(!is_digest(&format!("sha256:{}", "A".repeat(64))));
        assert!(!is_digest("sha256:abc"));
        assert!(!is_digest(&format!("sha512:{hex64}")));
        assert!(is_digest(&format!("sha512:{}", "0".repeat(128))));
        assert!(is_digest(
            "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8"
        ));
        assert!(!is_digest("sha256"));
        assert!(!is_digest(""));
    }

    #[test]
    fn ref_names_and_image_refs() {
        assert!(is_ref_name("v1.0"));
        assert!(is_ref_name("registry.example.com/foo:bar"));
        assert!(!is_ref_name("-bad"));
        assert!(!is_ref_name("a//b"));
        let r = parse_image_ref("docker.io/library/alpine:3.19").unwrap();
        assert_eq!(r.host.as_deref(), Some("docker.io"));
        assert_eq!(r.path, "library/alpine");
        let r = parse_image_ref("my-org/my-image:tag").unwrap();
        assert_eq!(r.host, None);
        assert_eq!(r.path, "my-org/my-image");
        assert!(parse_image_ref("localhost:5000/x@sha256:abc").is_some());
        assert!(parse_image_ref("Not A Ref").is_none());
    }

    #[test]
    fn key_syntax() {
        assert!(key_syntax_problems("org.label-schema.name").is_empty());
        assert_eq!(key_syntax_problems("org.label-schema.Name").len(), 1);
        assert_eq!(
            key_syntax_problems("org.label-schema..x-"),
            vec![
                "must start and end with a letter or digit",
                "no consecutive dots or dashes"
            ]
        );
        assert!(!key_syntax_problems("org.label-schema.a_b").is_empty());
        assert!(!key_syntax_problems("").is_empty());
    }

    #[test]
    fn escaping_stays_on_one_line() {
        let hostile = "a\"b\\c$HOME\nLABEL evil=1\r\t\u{1b}[31m\u{202e}x";
        let d = dockerfile_quote(hostile);
        assert!(!d.contains('\n') && !d.contains('\r') && !d.contains('\u{1b}'));
        assert_eq!(
            d,
            r#""a\"b\\c\$HOME\\nLABEL evil=1\\r\\t\\u{1b}[31m\\u{202e}x""#
        );
        let s = shell_quote("it's $(rm -rf /)\nx");
        assert_eq!(s, r"'it'\''s $(rm -rf /)\nx'");
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("hi", 2), "hi");
    }
}
