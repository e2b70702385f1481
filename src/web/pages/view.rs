//! What the templates show, built from store records.
//!
//! Every string an image's pusher controls goes through [`format::clip`] or
//! [`format::printable`] here, and only [`format::http_link`] makes an `href` out of one; the
//! templates then escape everything (none uses `|safe`). Building these values is pure, so
//! the pages differ only in which records they pass in.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::chart::{LayerChart, layer_chart};
use super::format::{self, MAX_SHOWN_CHARS, When, clip, printable};
use crate::inspect::{Compliance, KeyStatus, SchemaReport};
use crate::reference::ImageRef;
use crate::store::{RepoStatus, Repository, TagRecord, TagSummary, VersionRecord};

/// Tags listed on an image page at most (most recently changed first).
pub const MAX_TAGS_SHOWN: usize = 100;

/// Text that may be a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub text: String,
    /// Only ever an `http(s)` URL (from [`format::http_link`]) or a path on this site.
    pub href: Option<String>,
}

impl Shown {
    pub fn text(s: impl Into<String>) -> Shown {
        Shown {
            text: s.into(),
            href: None,
        }
    }

    /// An untrusted value: clipped, made printable, and a link only if it is an http(s) URL.
    pub fn untrusted(value: &str) -> Shown {
        Shown {
            text: clip(value, MAX_SHOWN_CHARS),
            href: format::http_link(value),
        }
    }
}

/// One line of the summary list.
#[derive(Debug, Clone)]
pub struct Fact {
    pub term: &'static str,
    pub value: Shown,
    /// Shown in a monospace font (digests, commits, commands).
    pub mono: bool,
    pub note: Option<String>,
    /// Further links after the value (one per licence of an expression).
    pub links: Vec<Shown>,
    /// The value is this moment (RFC 3339), for `<time datetime>`.
    pub time: Option<String>,
}

impl Fact {
    fn new(term: &'static str, value: Shown) -> Fact {
        Fact {
            term,
            value,
            mono: false,
            note: None,
            links: Vec::new(),
            time: None,
        }
    }

    fn mono(mut self) -> Fact {
        self.mono = true;
        self
    }
}

/// Docker Hub's figures.
#[derive(Debug, Clone)]
pub struct HubView {
    pub stars: Option<String>,
    pub pulls: Option<String>,
    pub official: bool,
    pub url: Option<String>,
    pub updated: Option<When>,
}

/// A row of the tags table.
#[derive(Debug, Clone)]
pub struct TagRow {
    pub tag: String,
    pub href: String,
    pub digest_short: String,
    pub version_href: String,
    pub size: String,
    pub layers: String,
    pub created: Option<When>,
    pub platforms: String,
    pub changed: When,
    /// The tag (or digest) this page shows.
    pub current: bool,
}

/// A label or annotation.
#[derive(Debug, Clone)]
pub struct LabelRow {
    pub key: String,
    pub value: Shown,
    /// Why it is probably inherited from the base image.
    pub inherited: Option<String>,
}

/// One key of a compliance report.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub key: String,
    /// `present`, `missing` or `invalid` (also the CSS class).
    pub status: &'static str,
    pub value: Option<Shown>,
    pub reason: Option<String>,
    pub recommended: bool,
    pub inherited: bool,
}

/// One spec's report.
#[derive(Debug, Clone)]
pub struct SchemaView {
    /// `oci` or `label-schema`: the section's id.
    pub id: &'static str,
    pub title: &'static str,
    pub spec_href: &'static str,
    pub note: &'static str,
    pub score: u8,
    pub grade: &'static str,
    pub present: usize,
    pub missing: usize,
    pub invalid: usize,
    pub keys: Vec<KeyRow>,
    /// Dockerfile lines (`ARG` and `LABEL`), one per line; empty when nothing is missing.
    pub dockerfile: String,
    /// `docker build` with the `--build-arg`s those lines need; empty when none.
    pub build: String,
    /// `docker buildx build` with `--label` / `--annotation` flags instead.
    pub buildx: String,
}

/// A label flagged as inherited.
#[derive(Debug, Clone)]
pub struct InheritedRow {
    pub key: String,
    pub value: String,
    pub reason: String,
}

/// The compliance report.
#[derive(Debug, Clone)]
pub struct ComplianceView {
    pub score: u8,
    pub grade: &'static str,
    pub schemas: Vec<SchemaView>,
    pub inherited: Vec<InheritedRow>,
}

/// One filesystem layer.
#[derive(Debug, Clone)]
pub struct LayerRow {
    pub number: usize,
    pub command: Option<String>,
    pub size: String,
    pub bytes: u64,
    pub digest_short: String,
}

/// A badge with what to paste to embed it.
#[derive(Debug, Clone)]
pub struct BadgeView {
    pub kind: &'static str,
    pub title: &'static str,
    pub alt: String,
    /// The badge on this site, relative, for the preview `<img>`.
    pub src: String,
    /// The badge's public URL.
    pub url: String,
    pub markdown: String,
    pub html: String,
}

/// A tag that points at the digest a page shows.
#[derive(Debug, Clone)]
pub struct TagLink {
    pub tag: String,
    pub href: String,
}

/// Everything the image and version pages show about one version.
#[derive(Debug, Clone)]
pub struct ImageDetail {
    /// The familiar name, without `library/` or tag: `nginx`, `ghcr.io/org/app`.
    pub name: String,
    /// `registry/repository`.
    pub full_name: String,
    pub page_href: String,
    /// The tag shown (image pages), if any.
    pub tag: Option<String>,
    /// Tags pointing at this digest.
    pub tags_here: Vec<TagLink>,
    pub digest: String,
    pub digest_short: String,
    pub version_href: String,
    /// `docker pull …` for exactly this image.
    pub pull: String,
    /// The name the labels give, when they give one.
    pub title: Option<String>,
    pub description: Option<String>,
    pub hub: Option<HubView>,
    pub facts: Vec<Fact>,
    pub platforms: Vec<String>,
    pub tags: Vec<TagRow>,
    /// Tags not listed (past [`MAX_TAGS_SHOWN`]).
    pub tags_hidden: usize,
    pub labels: Vec<LabelRow>,
    pub annotations: Vec<LabelRow>,
    pub compliance: ComplianceView,
    pub layers: Vec<LayerRow>,
    pub chart: Option<LayerChart>,
    pub total_size: String,
    pub badges: Vec<BadgeView>,
    pub warnings: Vec<String>,
    pub inspected: When,
    /// The last refresh failed (the page shows what was stored before).
    pub stale: Option<String>,
}

/// What [`ImageDetail::build`] needs.
pub struct DetailInput<'a> {
    /// The repository (a tag or digest on it is ignored).
    pub reference: &'a ImageRef,
    pub repository: &'a Repository,
    pub tags: &'a [TagRecord],
    /// The versions of the listed tags, by digest.
    pub versions: &'a HashMap<String, VersionRecord>,
    pub version: &'a VersionRecord,
    /// The tag the page is about (image pages); `None` on version pages.
    pub tag: Option<&'a str>,
    /// The tag badges name on an image page: the one in its URL, if any, so that badges for
    /// `nginx` follow whatever `nginx` means. Version pages use a tag pointing at the digest.
    pub badge_tag: Option<&'a str>,
    pub public_url: &'a str,
    pub now: DateTime<Utc>,
}

/// `/images/<name>[:tag]`.
pub fn image_href(name: &str, tag: Option<&str>) -> String {
    match tag {
        Some(t) => format!("/images/{name}:{t}"),
        None => format!("/images/{name}"),
    }
}

/// `/images/<name>/version/<digest>`.
pub fn version_href(name: &str, digest: &str) -> String {
    format!("/images/{name}/version/{digest}")
}

/// 80 and up is good, 50 and up fair, the rest poor (also CSS classes).
pub fn grade(score: u8) -> &'static str {
    match score {
        80.. => "good",
        50..80 => "fair",
        _ => "poor",
    }
}

fn platforms_of(v: &VersionRecord) -> Vec<String> {
    let mut out: Vec<String> = v
        .platforms
        .iter()
        .filter(|p| !p.platform.is_unknown())
        .map(|p| printable(&p.platform.to_string()))
        .collect();
    if out.is_empty()
        && let Some(p) = &v.image.platform
    {
        out.push(printable(&p.to_string()));
    }
    out.dedup();
    out
}

impl ImageDetail {
    pub fn build(input: &DetailInput<'_>) -> ImageDetail {
        let name = input.reference.familiar_name();
        let v = input.version;
        let img = &v.image;
        let now = input.now;
        let tags_here: Vec<TagLink> = input
            .tags
            .iter()
            .filter(|t| t.digest == v.digest)
            .map(|t| TagLink {
                tag: t.tag.clone(),
                href: image_href(&name, Some(&t.tag)),
            })
            .collect();
        let pull = match input.tag {
            Some(t) => format!("docker pull {name}:{t}"),
            None => format!("docker pull {name}@{}", v.digest),
        };
        let d = &img.derived;
        let hub = input.repository.hub.as_ref().map(|h| HubView {
            stars: h.star_count.map(format::count),
            pulls: h.pull_count.map(format::count),
            official: h.is_official,
            url: input.reference.is_docker_hub().then(|| {
                match input.reference.repository().strip_prefix("library/") {
                    Some(official) if !official.contains('/') => {
                        format!("https://hub.docker.com/_/{official}")
                    }
                    _ => format!("https://hub.docker.com/r/{}", input.reference.repository()),
                }
            }),
            updated: h.last_updated.as_deref().and_then(|s| When::parse(s, now)),
        });
        let description = d
            .description
            .as_deref()
            .or(input
                .repository
                .hub
                .as_ref()
                .and_then(|h| h.description.as_deref()))
            .map(|s| clip(s, MAX_SHOWN_CHARS));
        let inherited_keys: HashMap<&str, &str> = img
            .compliance
            .inherited
            .iter()
            .map(|f| (f.key.as_str(), f.reason.as_str()))
            .collect();
        let label_rows = |m: &std::collections::BTreeMap<String, String>| {
            m.iter()
                .map(|(k, val)| LabelRow {
                    key: clip(k, 300),
                    value: Shown::untrusted(val),
                    inherited: inherited_keys.get(k.as_str()).map(|r| printable(r)),
                })
                .collect::<Vec<_>>()
        };
        let layers: Vec<LayerRow> = img
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| LayerRow {
                number: i + 1,
                command: l.command.as_deref().map(|c| clip(c, MAX_SHOWN_CHARS)),
                size: format::size(l.size),
                bytes: l.size,
                digest_short: format::short_digest(&l.digest),
            })
            .collect();
        let chart_input: Vec<(u64, Option<&str>)> = img
            .layers
            .iter()
            .map(|l| (l.size, l.command.as_deref()))
            .collect();
        let badge_tag = match input.tag {
            Some(_) => input.badge_tag,
            None if tags_here.iter().any(|t| t.tag == "latest") => None,
            None => tags_here.first().map(|t| t.tag.as_str()),
        };
        let stale = match &input.repository.status {
            RepoStatus::Failed { reason, .. } => Some(printable(reason)),
            _ => None,
        };
        ImageDetail {
            full_name: input.reference.full_name(),
            page_href: image_href(&name, None),
            tag: input.tag.map(str::to_owned),
            digest: v.digest.clone(),
            digest_short: format::short_digest(&v.digest),
            version_href: version_href(&name, &v.digest),
            pull,
            title: d.name.as_deref().map(|s| clip(s, 300)),
            description,
            hub,
            facts: facts(v, now),
            platforms: platforms_of(v),
            tags: tag_rows(input, &name),
            tags_hidden: input.tags.len().saturating_sub(MAX_TAGS_SHOWN),
            labels: label_rows(&img.labels),
            annotations: label_rows(&img.annotations),
            compliance: compliance_view(&img.compliance),
            chart: layer_chart(&chart_input),
            layers,
            total_size: format::size(img.download_size),
            badges: badges(&name, badge_tag, input.public_url),
            warnings: img.warnings.iter().map(|w| clip(w, 500)).collect(),
            inspected: When::at(v.inspected_at, now),
            stale,
            tags_here,
            name,
        }
    }
}

fn facts(v: &VersionRecord, now: DateTime<Utc>) -> Vec<Fact> {
    let img = &v.image;
    let d = &img.derived;
    let mut out = Vec::new();
    let text = |s: &str| Shown::text(clip(s, MAX_SHOWN_CHARS));
    if let Some(version) = &d.version {
        out.push(Fact::new("Version", text(version)));
    }
    if let Some(commit) = &d.commit {
        out.push(
            Fact::new(
                "Commit",
                Shown {
                    text: clip(commit, 100),
                    href: d.commit_url.as_deref().and_then(format::http_link),
                },
            )
            .mono(),
        );
    }
    if let Some(source) = &d.source {
        out.push(Fact::new("Source", Shown::untrusted(source)));
    }
    if let Some(l) = &d.license {
        let mut fact = Fact::new(
            "License",
            text(
                l.canonical
                    .as_deref()
                    .filter(|_| l.valid)
                    .unwrap_or(&l.expression),
            ),
        );
        if l.valid {
            fact.links = l
                .licenses
                .iter()
                .filter_map(|r| {
                    let href = r.url.as_deref().and_then(format::http_link)?;
                    Some(Shown {
                        text: printable(&r.name),
                        href: Some(href),
                    })
                })
                .collect();
        } else {
            let mut note = format!(
                "not a valid SPDX expression: {}",
                l.error.as_deref().unwrap_or("unrecognised")
            );
            if let Some(c) = &l.canonical {
                note.push_str(&format!(" (did you mean {c}?)"));
            }
            fact.note = Some(clip(&note, 500));
        }
        out.push(fact);
    }
    if let Some(vendor) = &d.vendor {
        out.push(Fact::new("Vendor", text(vendor)));
    }
    if let Some(authors) = &d.authors {
        out.push(Fact::new("Authors", text(authors)));
    }
    if let Some(url) = &d.url {
        out.push(Fact::new("Website", Shown::untrusted(url)));
    }
    if let Some(doc) = &d.documentation {
        out.push(Fact::new("Documentation", Shown::untrusted(doc)));
    }
    let built = d.build_date.as_deref().or(img.created.as_deref());
    if let Some(b) = built {
        let mut fact = Fact::new("Built", Shown::text(clip(b, 100)));
        if let Some(w) = When::parse(b, now) {
            fact.value = Shown::text(w.text);
            fact.time = Some(w.iso);
        }
        out.push(fact);
    }
    out.push(Fact::new(
        "Download size",
        Shown::text(format::size(img.download_size)),
    ));
    out.push(Fact::new(
        "Layers",
        Shown::text(img.layer_count.to_string()),
    ));
    out.push(Fact::new("Digest", Shown::text(v.digest.clone())).mono());
    if let Some(id) = &img.config_digest {
        out.push(Fact::new("Image ID", Shown::text(format::short_digest(id))).mono());
    }
    let command = |parts: &[String]| clip(&parts.join(" "), 500);
    if !img.entrypoint.is_empty() {
        out.push(Fact::new("Entrypoint", Shown::text(command(&img.entrypoint))).mono());
    }
    if !img.cmd.is_empty() {
        out.push(Fact::new("Command", Shown::text(command(&img.cmd))).mono());
    }
    if !img.exposed_ports.is_empty() {
        out.push(Fact::new("Ports", Shown::text(command(&img.exposed_ports))).mono());
    }
    if let Some(user) = &img.user {
        out.push(Fact::new("User", text(user)).mono());
    }
    if let Some(dir) = &img.working_dir {
        out.push(Fact::new("Working dir", text(dir)).mono());
    }
    if !img.volumes.is_empty() {
        out.push(Fact::new("Volumes", Shown::text(command(&img.volumes))).mono());
    }
    if img.env_count > 0 {
        let mut fact = Fact::new(
            "Environment",
            Shown::text(match img.env_count {
                1 => "1 variable".to_owned(),
                n => format!("{n} variables"),
            }),
        );
        fact.note = Some("values are not shown".to_owned());
        out.push(fact);
    }
    out
}

fn tag_rows(input: &DetailInput<'_>, name: &str) -> Vec<TagRow> {
    let mut tags: Vec<&TagRecord> = input.tags.iter().collect();
    tags.sort_by(|a, b| b.last_changed.cmp(&a.last_changed).then(a.tag.cmp(&b.tag)));
    tags.truncate(MAX_TAGS_SHOWN);
    tags.into_iter()
        .map(|t| {
            let v = input.versions.get(&t.digest);
            TagRow {
                tag: t.tag.clone(),
                href: image_href(name, Some(&t.tag)),
                digest_short: format::short_digest(&t.digest),
                version_href: version_href(name, &t.digest),
                size: v.map_or_else(|| "—".into(), |v| format::size(v.image.download_size)),
                layers: v.map_or_else(|| "—".into(), |v| v.image.layer_count.to_string()),
                created: v
                    .and_then(|v| v.image.created.as_deref())
                    .and_then(|c| When::parse(c, input.now)),
                platforms: v.map(platforms_of).unwrap_or_default().join(", "),
                changed: When::at(t.last_changed, input.now),
                current: match input.tag {
                    Some(shown) => shown == t.tag,
                    None => t.digest == input.version.digest,
                },
            }
        })
        .collect()
}

fn compliance_view(c: &Compliance) -> ComplianceView {
    let inherited: Vec<&str> = c.inherited.iter().map(|f| f.key.as_str()).collect();
    let schema = |id, title, spec_href, note, r: &SchemaReport| {
        let continued = |lines: &[String]| {
            lines
                .iter()
                .map(|l| format!("  {} \\", printable(l)))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let build = if r.fix.build_args.is_empty() {
            String::new()
        } else {
            format!("docker build \\\n{}\n  .", continued(&r.fix.build_args))
        };
        let buildx = if r.fix.buildx.is_empty() {
            String::new()
        } else {
            format!("docker buildx build \\\n{}\n  .", continued(&r.fix.buildx))
        };
        SchemaView {
            id,
            title,
            spec_href,
            note,
            score: r.score,
            grade: grade(r.score),
            present: r.present,
            missing: r.missing,
            invalid: r.invalid,
            keys: r
                .keys
                .iter()
                .map(|k| KeyRow {
                    key: clip(&k.key, 300),
                    status: match k.status {
                        KeyStatus::Present => "present",
                        KeyStatus::Missing => "missing",
                        KeyStatus::Invalid => "invalid",
                    },
                    value: k.value.as_deref().map(Shown::untrusted),
                    reason: k.reason.as_deref().map(|r| clip(r, 500)),
                    recommended: k.recommended,
                    inherited: inherited.contains(&k.key.as_str()),
                })
                .collect(),
            dockerfile: r
                .fix
                .dockerfile
                .iter()
                .map(|l| printable(l))
                .collect::<Vec<_>>()
                .join("\n"),
            build,
            buildx,
        }
    };
    ComplianceView {
        score: c.score,
        grade: grade(c.score),
        schemas: vec![
            schema(
                "oci",
                "OCI image annotations",
                "https://github.com/opencontainers/image-spec/blob/main/annotations.md",
                "The current standard: org.opencontainers.image.* keys, as labels or manifest annotations.",
                &c.oci,
            ),
            schema(
                "label-schema",
                "Label Schema",
                "https://label-schema.org/rc1/",
                "The older org.label-schema.* convention, deprecated in favour of the OCI keys.",
                &c.label_schema,
            ),
        ],
        inherited: c
            .inherited
            .iter()
            .map(|f| InheritedRow {
                key: clip(&f.key, 300),
                value: clip(&f.value, 500),
                reason: clip(&f.reason, 1000),
            })
            .collect(),
    }
}

/// Every badge kind, with its title.
pub const BADGE_KINDS: [(&str, &str); 7] = [
    ("image", "Size and layers"),
    ("version", "Version"),
    ("commit", "Commit"),
    ("license", "License"),
    ("created", "Created"),
    ("platforms", "Platforms"),
    ("labels", "Label compliance"),
];

/// The badge gallery for `name[:tag]`: relative previews, and snippets on the public URL.
pub fn badges(name: &str, tag: Option<&str>, public_url: &str) -> Vec<BadgeView> {
    let image = match tag {
        Some(t) => format!("{name}:{t}"),
        None => name.to_owned(),
    };
    let page = format!("{public_url}{}", image_href(name, tag));
    BADGE_KINDS
        .iter()
        .map(|(kind, title)| {
            let src = format!("/badges/{kind}/{image}.svg");
            let url = format!("{public_url}{src}");
            let alt = format!("{title} of {image}");
            BadgeView {
                kind,
                title,
                markdown: format!("[![{alt}]({url})]({page})"),
                html: format!("<a href=\"{page}\"><img src=\"{url}\" alt=\"{alt}\"></a>"),
                alt,
                src,
                url,
            }
        })
        .collect()
}

/// A row of the home page's lists.
#[derive(Debug, Clone)]
pub struct SummaryRow {
    pub name: String,
    pub tag: String,
    pub href: String,
    pub size: String,
    pub layers: i64,
    pub score: i64,
    pub grade: &'static str,
    pub license: Option<String>,
    pub version: Option<String>,
    pub changed: When,
}

impl SummaryRow {
    pub fn from_summary(s: &TagSummary, now: DateTime<Utc>) -> Option<SummaryRow> {
        let r = ImageRef::parse(&format!("{}/{}", s.registry, s.name)).ok()?;
        let name = r.familiar_name();
        let score = s.compliance_score.clamp(0, 100);
        Some(SummaryRow {
            href: image_href(&name, Some(&s.tag)),
            tag: s.tag.clone(),
            name,
            size: format::size(u64::try_from(s.download_size).unwrap_or(0)),
            layers: s.layer_count,
            score,
            grade: grade(score as u8),
            license: s.license.as_deref().map(|l| clip(l, 100)),
            version: s.version.as_deref().map(|v| clip(v, 100)),
            changed: When::at(s.last_changed, now),
        })
    }
}

/// A search result.
#[derive(Debug, Clone)]
pub struct SearchRow {
    pub name: String,
    pub href: String,
    pub description: Option<String>,
    pub status: &'static str,
    pub changed: Option<When>,
}

impl SearchRow {
    pub fn from_repository(r: &Repository, now: DateTime<Utc>) -> Option<SearchRow> {
        let reference = ImageRef::parse(&format!("{}/{}", r.registry, r.name)).ok()?;
        let name = reference.familiar_name();
        Some(SearchRow {
            href: image_href(&name, None),
            name,
            description: r
                .hub
                .as_ref()
                .and_then(|h| h.description.as_deref())
                .map(|d| clip(d, 300)),
            status: match r.status {
                RepoStatus::Pending => "inspecting",
                RepoStatus::Inspected => "inspected",
                RepoStatus::Missing { .. } => "not found",
                RepoStatus::Failed { .. } => "refresh failed",
            },
            changed: r.last_changed.map(|t| When::at(t, now)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn badge_snippets_use_the_public_url_and_the_tag() {
        let b = badges("nginx", Some("1.27"), "https://mb.example");
        assert_eq!(b.len(), BADGE_KINDS.len());
        let image = &b[0];
        assert_eq!(image.src, "/badges/image/nginx:1.27.svg");
        assert_eq!(image.url, "https://mb.example/badges/image/nginx:1.27.svg");
        assert_eq!(
            image.markdown,
            "[![Size and layers of nginx:1.27](https://mb.example/badges/image/nginx:1.27.svg)](https://mb.example/images/nginx:1.27)"
        );
        assert!(
            image
                .html
                .starts_with("<a href=\"https://mb.example/images/nginx:1.27\">")
        );
        let latest = badges("ghcr.io/org/app", None, "http://x");
        assert_eq!(latest[6].src, "/badges/labels/ghcr.io/org/app.svg");
    }

    #[test]
    fn grades() {
        assert_eq!(grade(100), "good");
        assert_eq!(grade(80), "good");
        assert_eq!(grade(79), "fair");
        assert_eq!(grade(50), "fair");
        assert_eq!(grade(0), "poor");
    }

    #[test]
    fn untrusted_values_link_only_when_http() {
        assert_eq!(Shown::untrusted("javascript:alert(1)").href, None);
        assert_eq!(
            Shown::untrusted("https://example.com/a").href.as_deref(),
            Some("https://example.com/a")
        );
        assert_eq!(Shown::untrusted("a\u{7}b").text, "a\\u{7}b");
    }
}
