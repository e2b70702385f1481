//! Derived fields: the name, version, commit, source, licence … of an image, chosen from
//! whichever label or annotation carries them.
//!
//! # Precedence
//! For each field the candidates are tried in this order, and the first usable one wins:
//! 1. the image config's labels, OCI key (`org.opencontainers.image.*`);
//! 2. the image config's labels, label-schema key (`org.label-schema.*`);
//! 3. the manifest annotations (index annotations merged underneath), OCI key.
//!
//! Labels come first because they are what `docker inspect` shows and what most builds set;
//! OCI keys beat label-schema keys because label-schema is deprecated in favour of them, so
//! an image carrying both most likely set the OCI one more recently. "Usable" means non-empty
//! and not an unexpanded build argument (`$VCS_REF`); for typed fields it also means valid: a
//! URL field takes the first valid `http(s)` URL and a date the first valid RFC 3339 value,
//! so one broken label does not hide a good one below it. [`Derived::sources`] records which
//! key each value came from.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::keys::*;
use super::license::{License, parse_license};
use super::validate::{http_url, parse_rfc3339, scp_like};

/// Where a value was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// The image config's `Labels`.
    Label,
    /// Manifest (or index) annotations.
    Annotation,
    /// A field of the image config itself (e.g. `author`).
    Config,
}

/// The key a derived value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FieldSource {
    pub key: String,
    pub origin: Origin,
}

/// What the labels say about an image, after precedence (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Derived {
    pub name: Option<String>,
    pub description: Option<String>,
    pub version: Option<String>,
    /// Source revision (git SHA or other VCS id).
    pub commit: Option<String>,
    /// Browsable source URL, always `http(s)`: `git@github.com:o/r.git` becomes
    /// `https://github.com/o/r`; credentials in the URL are dropped.
    pub source: Option<String>,
    /// Link to the source tree at `commit`, for GitHub, GitLab, Bitbucket and Gitea-style
    /// hosts only (other hosts' URL layouts are unknown).
    pub commit_url: Option<String>,
    pub license: Option<License>,
    pub vendor: Option<String>,
    /// Product website (`http(s)` only).
    pub url: Option<String>,
    /// Documentation URL (`http(s)` only; label-schema `usage` counts only when it is a URL).
    pub documentation: Option<String>,
    /// Build date, only when it is valid RFC 3339, as given in the label.
    pub build_date: Option<String>,
    /// OCI `authors`, else the `maintainer` label, else the config's `author`.
    pub authors: Option<String>,
    /// Field name (`"name"`, `"license"`, …) to the key it came from.
    pub sources: BTreeMap<String, FieldSource>,
}

/// The metadata an image carries, for lookups by key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta<'a> {
    pub(crate) labels: &'a BTreeMap<String, String>,
    pub(crate) annotations: &'a BTreeMap<String, String>,
    pub(crate) config_author: Option<&'a str>,
}

/// One place a value may come from.
#[derive(Debug, Clone)]
pub(crate) struct Candidate<'a> {
    pub(crate) value: &'a str,
    pub(crate) key: String,
    pub(crate) origin: Origin,
}

impl Candidate<'_> {
    fn source(&self) -> FieldSource {
        FieldSource {
            key: self.key.clone(),
            origin: self.origin,
        }
    }
}

/// A value that is only the name of a build argument nobody passed (`$VCS_REF`,
/// `${BUILD_DATE}`): it says nothing about the image.
static UNEXPANDED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})$")
        .expect("static regex compiles")
});

/// Is this value empty or an unexpanded build argument?
pub(crate) fn is_placeholder(value: &str) -> bool {
    let v = value.trim();
    v.is_empty() || UNEXPANDED.is_match(v)
}

impl<'a> Meta<'a> {
    /// Candidates for a field in precedence order: label OCI key, label label-schema key,
    /// annotation OCI key.
    pub(crate) fn candidates(&self, oci: &str, ls: Option<&str>) -> Vec<Candidate<'a>> {
        let mut out = Vec::new();
        let mut push = |map: &'a BTreeMap<String, String>, key: &str, origin: Origin| {
            if let Some(v) = map.get(key) {
                out.push(Candidate {
                    value: v.as_str(),
                    key: key.to_owned(),
                    origin,
                });
            }
        };
        push(self.labels, oci, Origin::Label);
        if let Some(ls) = ls {
            push(self.labels, ls, Origin::Label);
        }
        push(self.annotations, oci, Origin::Annotation);
        out
    }

    /// The first candidate that is not a placeholder.
    fn text(&self, oci: &str, ls: Option<&str>) -> Option<Candidate<'a>> {
        self.candidates(oci, ls)
            .into_iter()
            .find(|c| !is_placeholder(c.value))
    }

    /// Licence candidates in precedence order: the OCI key and the label-schema key as for any
    /// field, then, as a last resort, any other key named `license`/`licenses` or ending in
    /// `.license`/`.licenses` (labels before annotations, keys in sorted order, so the choice is
    /// deterministic where the original MicroBadger's depended on Go map order).
    pub(crate) fn license_candidates(&self) -> Vec<Candidate<'a>> {
        let mut out = self.candidates(OCI_LICENSES, Some(LS_LICENSE));
        let is_license_key = |k: &str| {
            let k = k.to_ascii_lowercase();
            k == "license" || k == "licenses" || k.ends_with(".license") || k.ends_with(".licenses")
        };
        for (map, origin) in [
            (self.labels, Origin::Label),
            (self.annotations, Origin::Annotation),
        ] {
            for (k, v) in map {
                if is_license_key(k) && !out.iter().any(|c| c.key == *k && c.origin == origin) {
                    out.push(Candidate {
                        value: v.as_str(),
                        key: k.clone(),
                        origin,
                    });
                }
            }
        }
        out
    }
}

/// Records which key each derived field came from while picking values.
struct Picker<'m, 'a> {
    meta: &'m Meta<'a>,
    sources: BTreeMap<String, FieldSource>,
}

impl Picker<'_, '_> {
    /// The first usable free-text value.
    fn text(&mut self, field: &str, oci: &str, ls: Option<&str>) -> Option<String> {
        let c = self.meta.text(oci, ls)?;
        self.sources.insert(field.to_owned(), c.source());
        Some(c.value.trim().to_owned())
    }

    /// The first value that `check` accepts, as `check` returns it.
    fn valid(
        &mut self,
        field: &str,
        oci: &str,
        ls: Option<&str>,
        check: impl Fn(&str) -> Option<String>,
    ) -> Option<String> {
        let (c, v) = self
            .meta
            .candidates(oci, ls)
            .into_iter()
            .find_map(|c| check(c.value.trim()).map(|v| (c, v)))?;
        self.sources.insert(field.to_owned(), c.source());
        Some(v)
    }
}

/// Compute the derived fields.
pub(crate) fn derive(meta: &Meta<'_>) -> Derived {
    let mut p = Picker {
        meta,
        sources: BTreeMap::new(),
    };
    let url = |v: &str| http_url(v).map(|_| v.to_owned());
    let mut d = Derived {
        name: p.text("name", OCI_TITLE, Some(LS_NAME)),
        description: p.text("description", OCI_DESCRIPTION, Some(LS_DESCRIPTION)),
        version: p.text("version", OCI_VERSION, Some(LS_VERSION)),
        commit: p.text("commit", OCI_REVISION, Some(LS_VCS_REF)),
        vendor: p.text("vendor", OCI_VENDOR, Some(LS_VENDOR)),
        source: p.valid("source", OCI_SOURCE, Some(LS_VCS_URL), normalize_source),
        url: p.valid("url", OCI_URL, Some(LS_URL), url),
        documentation: p.valid("documentation", OCI_DOCUMENTATION, Some(LS_USAGE), url),
        build_date: p.valid("build_date", OCI_CREATED, Some(LS_BUILD_DATE), |v| {
            parse_rfc3339(v).map(|_| v.to_owned())
        }),
        authors: p.text("authors", OCI_AUTHORS, None),
        ..Derived::default()
    };
    let mut sources = p.sources;

    if d.authors.is_none() {
        if let Some(v) = meta.labels.get(MAINTAINER).filter(|v| !is_placeholder(v)) {
            d.authors = Some(v.trim().to_owned());
            sources.insert(
                "authors".to_owned(),
                FieldSource {
                    key: MAINTAINER.to_owned(),
                    origin: Origin::Label,
                },
            );
        } else if let Some(a) = meta.config_author.filter(|a| !is_placeholder(a)) {
            d.authors = Some(a.trim().to_owned());
            sources.insert(
                "authors".to_owned(),
                FieldSource {
                    key: "author".to_owned(),
                    origin: Origin::Config,
                },
            );
        }
    }

    if let Some(c) = meta
        .license_candidates()
        .into_iter()
        .find(|c| !is_placeholder(c.value))
    {
        sources.insert("license".to_owned(), c.source());
        d.license = Some(parse_license(c.value));
    }

    d.commit_url = match (&d.source, &d.commit) {
        (Some(s), Some(c)) => commit_url(s, c),
        _ => None,
    };
    d.sources = sources;
    d
}

/// Code hosts whose URL layout for "the tree at a commit" is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forge {
    GitHub,
    GitLab,
    Bitbucket,
    Gitea,
}

fn forge(host: &str) -> Option<Forge> {
    let host = host.strip_prefix("www.").unwrap_or(host);
    match host {
        "github.com" => Some(Forge::GitHub),
        "gitlab.com" => Some(Forge::GitLab),
        "bitbucket.org" => Some(Forge::Bitbucket),
        "codeberg.org" | "gitea.com" => Some(Forge::Gitea),
        h if h.starts_with("gitlab.") => Some(Forge::GitLab),
        h if h.starts_with("gitea.") || h.starts_with("forgejo.") => Some(Forge::Gitea),
        _ => None,
    }
}

/// Turn a `source` / `vcs-url` value into a browsable `http(s)` URL.
///
/// - `git@host:owner/repo.git` (scp-like), `ssh://git@host/…`, `git://host/…` and
///   `git+https://…` become `https://host/…`;
/// - user names and passwords are removed (a token in a label must not end up in a link);
/// - on known forges a trailing `.git` and `/` are removed, as they are not part of the
///   repository page's address there (elsewhere, e.g. cgit, `.git` may be).
///
/// Returns `None` for anything that does not end up a valid `http(s)` URL.
pub(crate) fn normalize_source(value: &str) -> Option<String> {
    let v = value.trim();
    if v.is_empty() || v.len() > 2048 {
        return None;
    }
    let candidate = if let Some((host, path)) = scp_like(v) {
        format!("https://{host}/{path}")
    } else {
        let u = url::Url::parse(v).ok()?;
        match u.scheme() {
            "http" | "https" => v.to_owned(),
            "git+https" => format!("https{}", &v["git+https".len()..]),
            "git+http" => format!("http{}", &v["git+http".len()..]),
            "git" | "ssh" | "git+ssh" | "ssh+git" => {
                let host = u.host_str().filter(|h| !h.is_empty())?;
                format!("https://{host}{}", u.path())
            }
            _ => return None,
        }
    };
    let mut u = http_url(&candidate)?;
    // Both calls only fail for URLs that cannot have credentials, which http(s) URLs can.
    u.set_username("").ok()?;
    u.set_password(None).ok()?;
    let host = u.host_str()?.to_ascii_lowercase();
    if forge(&host).is_some() {
        let path = u.path().trim_end_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path).to_owned();
        u.set_path(&path);
    }
    let mut s = u.to_string();
    if u.path() == "/" && u.query().is_none() && u.fragment().is_none() {
        s.pop(); // `https://example.com/` -> `https://example.com`
    }
    Some(s)
}

/// A revision safe to put in a URL path: git SHAs, tags and branch names, nothing that could
/// climb out of the path (`..`) or start a query.
static SAFE_REVISION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$").expect("static regex compiles")
});

/// Link to the source tree at `commit`, for forges whose layout is known.
///
/// `source` must already be normalised. The repository root is taken from the source URL
/// (`owner/repo` on GitHub, Bitbucket and Gitea; everything before `/-/` on GitLab, which has
/// nested groups), so a source pointing into a subdirectory still yields a working link.
pub(crate) fn commit_url(source: &str, commit: &str) -> Option<String> {
    let commit = commit.trim();
    if !SAFE_REVISION.is_match(commit) || commit.contains("..") || commit.ends_with('/') {
        return None;
    }
    let u = http_url(source)?;
    let host = u.host_str()?.to_ascii_lowercase();
    let kind = forge(&host)?;
    let segments: Vec<&str> = u.path().split('/').filter(|s| !s.is_empty()).collect();
    let repo: Vec<&str> = match kind {
        Forge::GitLab => segments.iter().copied().take_while(|s| *s != "-").collect(),
        _ => segments.iter().copied().take(2).collect(),
    };
    if repo.len() < 2 {
        return None;
    }
    let tree = match kind {
        Forge::GitHub => "tree",
        Forge::GitLab => "-/tree",
        Forge::Bitbucket => "src",
        Forge::Gitea => "src/commit",
    };
    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!(
        "{}://{host}{port}/{}/{tree}/{commit}",
        u.scheme(),
        repo.join("/")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn derive_from(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Derived {
        let l = map(labels);
        let a = map(annotations);
        derive(&Meta {
            labels: &l,
            annotations: &a,
            config_author: None,
        })
    }

    #[test]
    fn source_normalisation() {
        let cases = [
            ("git@github.com:o/r.git", Some("https://github.com/o/r")),
            ("https://github.com/o/r.git", Some("https://github.com/o/r")),
            ("https://github.com/o/r/", Some("https://github.com/o/r")),
            (
                "ssh://git@gitlab.com/g/sub/r.git",
                Some("https://gitlab.com/g/sub/r"),
            ),
            ("git://github.com/o/r.git", Some("https://github.com/o/r")),
            (
                "git+https://github.com/o/r.git",
                Some("https://github.com/o/r"),
            ),
            (
                "https://user:ghp_secret@github.com/o/r",
                Some("https://github.com/o/r"),
            ),
            (
                "https://git.kernel.org/pub/scm/git/git.git",
                Some("https://git.kernel.org/pub/scm/git/git.git"),
            ),
            ("http://example.com", Some("http://example.com")),
            ("javascript:alert(1)", None),
            ("github.com/o/r", None),
            ("", None),
            ("ftp://example.com/r", None),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_source(input).as_deref(), want, "{input}");
        }
    }

    #[test]
    fn commit_urls_per_forge() {
        let sha = "279fa63";
        assert_eq!(
            commit_url("https://github.com/o/r", sha).as_deref(),
            Some("https://github.com/o/r/tree/279fa63")
        );
        assert_eq!(
            commit_url("https://github.com/o/r/tree/main/docker", sha).as_deref(),
            Some("https://github.com/o/r/tree/279fa63")
        );
        assert_eq!(
            commit_url("https://gitlab.com/g/sub/r", sha).as_deref(),
            Some("https://gitlab.com/g/sub/r/-/tree/279fa63")
        );
        assert_eq!(
            commit_url("https://bitbucket.org/o/r", sha).as_deref(),
            Some("https://bitbucket.org/o/r/src/279fa63")
        );
        assert_eq!(
            commit_url("https://codeberg.org/o/r", sha).as_deref(),
            Some("https://codeberg.org/o/r/src/commit/279fa63")
        );
        assert_eq!(commit_url("https://example.com/o/r", sha), None);
        assert_eq!(commit_url("https://github.com/o", sha), None);
        assert_eq!(commit_url("https://github.com/o/r", "../../evil"), None);
        assert_eq!(commit_url("https://github.com/o/r", "a?b=c"), None);
        assert_eq!(commit_url("https://github.com/o/r", "$VCS_REF"), None);
        assert_eq!(commit_url("https://github.com/o/r", ""), None);
    }

    #[test]
    fn labels_oci_first_then_label_schema_then_annotations() {
        let d = derive_from(
            &[
                (LS_NAME, "ls-name"),
                (OCI_TITLE, "oci-title"),
                (LS_VERSION, "1.0"),
            ],
            &[
                (OCI_TITLE, "annotation-title"),
                (OCI_VERSION, "2.0"),
                (OCI_VENDOR, "Acme"),
            ],
        );
        assert_eq!(d.name.as_deref(), Some("oci-title"));
        assert_eq!(d.sources["name"].key, OCI_TITLE);
        assert_eq!(d.sources["name"].origin, Origin::Label);
        assert_eq!(d.version.as_deref(), Some("1.0"));
        assert_eq!(d.sources["version"].key, LS_VERSION);
        assert_eq!(d.vendor.as_deref(), Some("Acme"));
        assert_eq!(d.sources["vendor"].origin, Origin::Annotation);
    }

    #[test]
    fn invalid_typed_values_fall_through() {
        let d = derive_from(
            &[
                (OCI_URL, "not a url"),
                (LS_URL, "https://postgresql.org"),
                (OCI_CREATED, "yesterday"),
                (LS_BUILD_DATE, "2016-04-12T23:20:50.52Z"),
                (OCI_DOCUMENTATION, "javascript:alert(1)"),
                (LS_USAGE, "/usr/doc/app-usage.txt"),
            ],
            &[],
        );
        assert_eq!(d.url.as_deref(), Some("https://postgresql.org"));
        assert_eq!(d.sources["url"].key, LS_URL);
        assert_eq!(d.build_date.as_deref(), Some("2016-04-12T23:20:50.52Z"));
        assert_eq!(d.documentation, None);
        assert!(!d.sources.contains_key("documentation"));
    }

    #[test]
    fn unexpanded_build_args_are_ignored() {
        let d = derive_from(
            &[(OCI_REVISION, "$VCS_REF"), (LS_VCS_REF, "${VCS_REF}")],
            &[(OCI_REVISION, "abc123")],
        );
        assert_eq!(d.commit.as_deref(), Some("abc123"));
        assert_eq!(d.sources["commit"].origin, Origin::Annotation);
    }

    #[test]
    fn vcs_and_commit_url() {
        let d = derive_from(
            &[
                (LS_VCS_URL, "git@github.com:nginx/nginx.git"),
                (LS_VCS_REF, "279FA63"),
            ],
            &[],
        );
        assert_eq!(d.source.as_deref(), Some("https://github.com/nginx/nginx"));
        assert_eq!(
            d.commit_url.as_deref(),
            Some("https://github.com/nginx/nginx/tree/279FA63")
        );
    }

    #[test]
    fn license_precedence_and_fallback() {
        let d = derive_from(&[(LS_LICENSE, "GPLv2"), (OCI_LICENSES, "MIT")], &[]);
        assert_eq!(d.license.as_ref().unwrap().expression, "MIT");
        assert_eq!(d.sources["license"].key, OCI_LICENSES);

        let d = derive_from(
            &[
                ("com.example.license", "Apache-2.0"),
                ("zzz.licenses", "MIT"),
            ],
            &[],
        );
        assert_eq!(d.license.as_ref().unwrap().expression, "Apache-2.0");
        assert_eq!(d.sources["license"].key, "com.example.license");

        let d = derive_from(&[("license", "bsd-3-clause")], &[]);
        let l = d.license.unwrap();
        assert!(l.valid);
        assert_eq!(l.canonical.as_deref(), Some("BSD-3-Clause"));

        let d = derive_from(&[("com.example.licensed-to", "x")], &[]);
        assert_eq!(d.license, None);
    }

    #[test]
    fn authors_fallbacks() {
        let l = map(&[(MAINTAINER, "Jane <jane@example.com>")]);
        let a = BTreeMap::new();
        let d = derive(&Meta {
            labels: &l,
            annotations: &a,
            config_author: Some("Old Maintainer"),
        });
        assert_eq!(d.authors.as_deref(), Some("Jane <jane@example.com>"));
        let l = BTreeMap::new();
        let d = derive(&Meta {
            labels: &l,
            annotations: &a,
            config_author: Some("Old Maintainer"),
        });
        assert_eq!(d.authors.as_deref(), Some("Old Maintainer"));
        assert_eq!(d.sources["authors"].origin, Origin::Config);
    }

    #[test]
    fn empty_and_weird_values_do_not_panic() {
        let long = "x".repeat(1_000_000);
        let d = derive_from(
            &[
                (OCI_TITLE, ""),
                (LS_NAME, "  "),
                (OCI_SOURCE, &long),
                (OCI_REVISION, "ü"),
                (OCI_URL, "https://ex\u{0}ample.com"),
                (OCI_LICENSES, "\u{1F600}"),
            ],
            &[],
        );
        assert_eq!(d.name, None);
        assert_eq!(d.source, None);
        assert_eq!(d.url, None);
        assert_eq!(d.commit.as_deref(), Some("ü"));
        assert!(!d.license.unwrap().valid);
    }
}
