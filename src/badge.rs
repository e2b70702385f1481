//! SVG badges: what a badge says ([`badge_for`]) and how it looks ([`render`]). Pure: no I/O and
//! no clock, so the same image always gives byte-identical SVG, checked against committed
//! snapshots.
//!
//! # Layout
//! - [`Kind`] and [`parse_path`]: the badge a URL asks for (`image`, `version`, `commit`,
//!   `license`, `created`, `platforms`, `labels`, `label/{key}`) and the image part of it.
//! - [`badge_for`]: an inspected version -> [`BadgeText`] (label, message, colour), following
//!   MicroBadger's badges where it had them (`12.3MB | 4 layers`, `version`, `commit`,
//!   `license`).
//! - [`BadgeOptions`]: shields.io's query parameters (`style`, `label`, `color`, `labelColor`,
//!   and the legacy `colorA` / `colorB`), validated.
//! - [`render`]: [`BadgeText`] + [`BadgeOptions`] -> SVG, with shields.io's geometry and Verdana
//!   text widths from the `shields` crate.
//!
//! # Safety of the output
//! Label keys and values are written by whoever pushed the image, and the `label` parameter by
//! whoever wrote the URL. [`render`] therefore cleans every text before it reaches the SVG:
//! control and bidirectional-override characters are replaced (XML 1.0 cannot carry most of
//! them even escaped, and overrides can make text read differently from what it is), long
//! texts are cut to [`MAX_TEXT_CHARS`] with an ellipsis, and the `shields` crate escapes the
//! five XML special characters (a unit test below holds it to that). Colours are only ever
//! shields' named colours or 3/6-digit hex, never free CSS, so nothing can break out of a
//! `fill` attribute.

use std::borrow::Cow;
use std::fmt;

use shields::{BadgeParams, BadgeStyle};

use crate::inspect::ImageVersion;
use crate::store::{TagRecord, VersionRecord};

/// Longest text (label or message) shown, in characters; longer ones end in `…`.
pub const MAX_TEXT_CHARS: usize = 64;
/// Most platforms listed by name on a `platforms` badge; more are counted instead.
const MAX_LISTED_PLATFORMS: usize = 4;
/// Length of a short commit id, as `git` abbreviates it.
const SHORT_COMMIT: usize = 7;

/// Why a badge URL or its parameters were refused. Every message is safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadgeError {
    #[error("badge URLs end in .svg, e.g. /badges/image/nginx.svg")]
    NotSvg,
    #[error(
        "unknown badge kind `{0}`: use image, version, commit, license, created, platforms, labels or label/KEY"
    )]
    UnknownKind(String),
    #[error("no label key given: use /badges/label/KEY/IMAGE.svg")]
    MissingKey,
    /// Holds the URL so far (`image`, `label/KEY`) for the example in the message.
    #[error("no image name given, e.g. /badges/{0}/nginx.svg")]
    MissingImage(String),
    #[error("the URL is not valid UTF-8 once percent-decoded")]
    BadEncoding,
    #[error("unknown style `{0}`: use flat, flat-square, plastic, for-the-badge or social")]
    BadStyle(String),
    #[error(
        "bad {param} `{value}`: use a named colour (brightgreen, green, yellowgreen, yellow, orange, red, blue, grey, lightgrey …) or 3 or 6 hex digits"
    )]
    BadColor { param: &'static str, value: String },
}

// ---- kinds and URLs ------------------------------------------------------------------------

/// What a badge shows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Download size | layer count (MicroBadger's "image" badge).
    Image,
    /// The labelled version, else the tag.
    Version,
    /// The source commit, shortened to 7 characters.
    Commit,
    /// The licence, in canonical SPDX form when valid.
    License,
    /// When the image was built (date, UTC).
    Created,
    /// The platforms offered (listed, or counted when there are many).
    Platforms,
    /// The label-schema / OCI compliance score.
    Labels,
    /// Any one label's value (or annotation's, when no label has the key).
    Label(String),
}

impl Kind {
    /// The kind's name in URLs (`label` for [`Kind::Label`]).
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Version => "version",
            Kind::Commit => "commit",
            Kind::License => "license",
            Kind::Created => "created",
            Kind::Platforms => "platforms",
            Kind::Labels => "labels",
            Kind::Label(_) => "label",
        }
    }

    /// A kind other than `label` by its URL name.
    pub fn from_name(name: &str) -> Result<Kind, BadgeError> {
        Ok(match name {
            "image" => Kind::Image,
            "version" => Kind::Version,
            "commit" => Kind::Commit,
            "license" => Kind::License,
            "created" => Kind::Created,
            "platforms" => Kind::Platforms,
            "labels" => Kind::Labels,
            other => return Err(BadgeError::UnknownKind(other.chars().take(64).collect())),
        })
    }

    /// The left-hand text when there is nothing to measure yet (inspecting, not found).
    pub fn default_label(&self) -> &str {
        match self {
            Kind::Label(key) => key,
            other => other.name(),
        }
    }
}

/// A badge URL, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadgePath {
    pub kind: Kind,
    /// The image part, percent-decoded (`nginx`, `org/app:1.0`, `127.0.0.1:5000/team/app:1.0`).
    pub image: String,
}

/// Split the part of a badge URL after `/badges/`, still percent-encoded:
/// `{kind}/{image}[:tag].svg` or `label/{key}/{image}[:tag].svg`.
///
/// The image part may hold slashes and a registry host with a port, so only the kind (and the
/// label key) are taken from the front, and each piece is decoded on its own: a label key may
/// carry an encoded slash (`%2F`) without it splitting the path.
pub fn parse_path(raw: &str) -> Result<BadgePath, BadgeError> {
    let raw = raw.trim_start_matches('/');
    let body = raw.strip_suffix(".svg").ok_or(BadgeError::NotSvg)?;
    let (kind_part, rest) = body.split_once('/').unwrap_or((body, ""));
    let kind_name = percent_decode(kind_part)?;
    let (kind, image_part) = if kind_name == "label" {
        let (key, image) = rest.split_once('/').unwrap_or((rest, ""));
        let key = percent_decode(key)?;
        if key.is_empty() {
            return Err(BadgeError::MissingKey);
        }
        (Kind::Label(key), image)
    } else {
        (Kind::from_name(&kind_name)?, rest)
    };
    let image = percent_decode(image_part)?;
    if image.trim_matches('/').is_empty() {
        let example = match &kind {
            Kind::Label(_) => "label/KEY",
            other => other.name(),
        };
        return Err(BadgeError::MissingImage(example.to_owned()));
    }
    Ok(BadgePath { kind, image })
}

/// Decode `%XX` escapes (not `+`: this is a path). A `%` not followed by two hex digits is
/// kept as it is, as axum does.
fn percent_decode(s: &str) -> Result<String, BadgeError> {
    if !s.contains('%') {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| BadgeError::BadEncoding)
}

// ---- colours -------------------------------------------------------------------------------

/// A badge colour: one of shields.io's named colours (or their aliases), or 3/6-digit hex.
/// Nothing else is accepted, so a colour can never smuggle CSS or markup into the SVG.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Color(Cow<'static, str>);

/// shields.io's named colours and aliases.
const NAMED_COLORS: &[&str] = &[
    "brightgreen",
    "green",
    "yellowgreen",
    "yellow",
    "orange",
    "red",
    "blue",
    "grey",
    "gray",
    "lightgrey",
    "lightgray",
    "critical",
    "important",
    "success",
    "informational",
    "inactive",
];

impl Color {
    pub const BRIGHTGREEN: Color = Color(Cow::Borrowed("brightgreen"));
    pub const GREEN: Color = Color(Cow::Borrowed("green"));
    pub const YELLOWGREEN: Color = Color(Cow::Borrowed("yellowgreen"));
    pub const YELLOW: Color = Color(Cow::Borrowed("yellow"));
    pub const ORANGE: Color = Color(Cow::Borrowed("orange"));
    pub const RED: Color = Color(Cow::Borrowed("red"));
    pub const BLUE: Color = Color(Cow::Borrowed("blue"));
    pub const GREY: Color = Color(Cow::Borrowed("grey"));
    pub const LIGHTGREY: Color = Color(Cow::Borrowed("lightgrey"));

    /// A named colour (case-insensitive) or hex with or without `#` (`f00`, `#a1b2c3`).
    /// Returns `None` for anything else.
    pub fn parse(value: &str) -> Option<Color> {
        let v = value.trim();
        if let Some(name) = NAMED_COLORS.iter().find(|n| n.eq_ignore_ascii_case(v)) {
            return Some(Color(Cow::Borrowed(name)));
        }
        let hex = v.strip_prefix('#').unwrap_or(v);
        if matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(Color(Cow::Owned(format!("#{}", hex.to_ascii_lowercase()))));
        }
        None
    }

    /// The colour as the `shields` crate takes it: a name or `#hex`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Color {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---- what a badge says ---------------------------------------------------------------------

/// The text of a badge, before styling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadgeText {
    /// Left-hand side.
    pub label: String,
    /// Right-hand side.
    pub message: String,
    /// Background of the message.
    pub color: Color,
    /// A status rather than a value (inspecting, not found, an error): like shields.io, the
    /// `color` parameter does not recolour it, so a red "not found" cannot be made green.
    pub is_status: bool,
}

impl BadgeText {
    fn value(label: impl Into<String>, message: impl Into<String>, color: Color) -> BadgeText {
        BadgeText {
            label: label.into(),
            message: message.into(),
            color,
            is_status: false,
        }
    }

    /// The image is queued for inspection: come back shortly.
    pub fn inspecting(kind: &Kind) -> BadgeText {
        BadgeText {
            label: kind.default_label().to_owned(),
            message: "inspecting".to_owned(),
            color: Color::LIGHTGREY,
            is_status: true,
        }
    }

    /// The registry has no such image or tag.
    pub fn not_found(kind: &Kind) -> BadgeText {
        BadgeText {
            label: kind.default_label().to_owned(),
            message: "not found".to_owned(),
            color: Color::RED,
            is_status: true,
        }
    }
}

/// What a badge is about: one tag of a repository and the version it points at.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub version: &'a VersionRecord,
    /// The tag shown.
    pub tag: &'a TagRecord,
    /// Every tag of the repository (for the version badge's fallback to the most specific tag).
    pub tags: &'a [TagRecord],
}

/// What a badge of `kind` says about `subject`.
pub fn badge_for(kind: &Kind, subject: &Subject<'_>) -> BadgeText {
    let image: &ImageVersion = &subject.version.image;
    let not_given = |label: &str| BadgeText::value(label, "not given", Color::LIGHTGREY);
    match kind {
        Kind::Image => {
            let size = if image.legacy_schema1 && image.download_size == 0 {
                "size unknown".to_owned()
            } else {
                format_size(image.download_size)
            };
            let layers = match image.layer_count {
                1 => "1 layer".to_owned(),
                n => format!("{n} layers"),
            };
            BadgeText::value(size, layers, Color::BLUE)
        }
        Kind::Version => {
            let version = image
                .derived
                .version
                .clone()
                .unwrap_or_else(|| version_tag(subject).to_owned());
            BadgeText::value("version", version, Color::BLUE)
        }
        Kind::Commit => match image.derived.commit.as_deref() {
            Some(commit) => BadgeText::value("commit", short_commit(commit), Color::BLUE),
            None => not_given("commit"),
        },
        Kind::License => match &image.derived.license {
            Some(l) if l.valid => BadgeText::value(
                "license",
                l.canonical.as_deref().unwrap_or(&l.expression),
                Color::BLUE,
            ),
            Some(l) => BadgeText::value("license", l.expression.clone(), Color::LIGHTGREY),
            None => not_given("license"),
        },
        Kind::Created => {
            let date = image
                .created
                .as_deref()
                .and_then(utc_date)
                .or_else(|| image.derived.build_date.as_deref().and_then(utc_date));
            match date {
                Some(d) => BadgeText::value("created", d, Color::BLUE),
                None => BadgeText::value("created", "unknown", Color::LIGHTGREY),
            }
        }
        Kind::Platforms => {
            let mut names: Vec<String> = Vec::new();
            for p in &subject.version.platforms {
                let name = p.platform.to_string();
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            if names.is_empty()
                && let Some(p) = &image.platform
            {
                names.push(p.to_string());
            }
            let listed = names.join(" | ");
            match names.len() {
                0 => BadgeText::value("platforms", "unknown", Color::LIGHTGREY),
                n if n <= MAX_LISTED_PLATFORMS && listed.chars().count() <= MAX_TEXT_CHARS => {
                    let label = if n == 1 { "platform" } else { "platforms" };
                    BadgeText::value(label, listed, Color::BLUE)
                }
                n => BadgeText::value("platforms", format!("{n} platforms"), Color::BLUE),
            }
        }
        Kind::Labels => {
            let score = image.compliance.score;
            BadgeText::value("labels", format!("{score}%"), score_color(score))
        }
        Kind::Label(key) => {
            let value = image.labels.get(key).or_else(|| image.annotations.get(key));
            match value {
                Some(v) if v.trim().is_empty() => {
                    BadgeText::value(key.clone(), "empty", Color::LIGHTGREY)
                }
                Some(v) => BadgeText::value(key.clone(), v.trim(), Color::BLUE),
                None => BadgeText::value(key.clone(), "not set", Color::LIGHTGREY),
            }
        }
    }
}

/// The tag a version badge falls back to: the tag shown, unless it is `latest` and a more
/// specific tag points at the same digest (MicroBadger's longest-tag rule: the longest such
/// tag; the first by name on a tie).
fn version_tag<'a>(subject: &Subject<'a>) -> &'a str {
    let tag = subject.tag;
    if tag.tag != "latest" {
        return &tag.tag;
    }
    subject
        .tags
        .iter()
        .filter(|t| t.digest == tag.digest && t.tag != "latest")
        .map(|t| t.tag.as_str())
        .fold(None::<&str>, |best, t| match best {
            Some(b) if b.len() >= t.len() => Some(b),
            _ => Some(t),
        })
        .unwrap_or(&tag.tag)
}

/// A git-style short id for a hex commit; any other revision as it is.
fn short_commit(commit: &str) -> String {
    let c = commit.trim();
    if c.len() > SHORT_COMMIT && c.bytes().all(|b| b.is_ascii_hexdigit()) {
        c[..SHORT_COMMIT].to_owned()
    } else {
        c.to_owned()
    }
}

/// `2024-03-01` for a valid RFC 3339 timestamp.
fn utc_date(s: &str) -> Option<String> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|d| d.with_timezone(&chrono::Utc).format("%Y-%m-%d").to_string())
}

/// Red (0) to bright green (100), in shields.io's named steps.
pub fn score_color(score: u8) -> Color {
    match score {
        90.. => Color::BRIGHTGREEN,
        75..=89 => Color::GREEN,
        60..=74 => Color::YELLOWGREEN,
        40..=59 => Color::YELLOW,
        20..=39 => Color::ORANGE,
        _ => Color::RED,
    }
}

/// A size as MicroBadger's badge wrote it: binary units (1 KB = 1024 bytes), one decimal with
/// a trailing `.0` dropped, unit letters glued on: `2.2MB`, `5MB`, `512B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let mut text = format!("{value:.1}");
    // 1023.96 KB prints as 1024.0: that is 1 MB.
    if text.starts_with("1024") && unit < UNITS.len() - 1 {
        text = "1.0".to_owned();
        unit += 1;
    }
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text}{}", UNITS[unit])
}

// ---- options and rendering -----------------------------------------------------------------

/// shields.io's query parameters, validated. Parameters it does not know (`link`, `logo`,
/// `cacheSeconds`, cache-busting ones) are ignored, as shields.io ignores unknown ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BadgeOptions {
    pub style: BadgeStyle,
    /// Replaces the left-hand text; `Some("")` hides it.
    pub label: Option<String>,
    /// Message background (`color`, legacy `colorB`).
    pub color: Option<Color>,
    /// Label background (`labelColor`, legacy `colorA`).
    pub label_color: Option<Color>,
}

impl BadgeOptions {
    /// Parse a raw (still percent-encoded) query string. When a parameter is repeated the last
    /// one wins; `color` beats `colorB` and `labelColor` beats `colorA`, as on shields.io. An
    /// empty colour is no colour.
    pub fn from_query(query: Option<&str>) -> Result<BadgeOptions, BadgeError> {
        let mut opts = BadgeOptions::default();
        let Some(query) = query.filter(|q| !q.is_empty()) else {
            return Ok(opts);
        };
        let (mut color, mut color_b, mut label_color, mut color_a) = (None, None, None, None);
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let colour = |param: &'static str| -> Result<Option<Color>, BadgeError> {
                if value.trim().is_empty() {
                    return Ok(None);
                }
                Color::parse(&value)
                    .map(Some)
                    .ok_or_else(|| BadgeError::BadColor {
                        param,
                        value: value.chars().take(64).collect(),
                    })
            };
            match &*key {
                "style" => {
                    opts.style = value
                        .parse()
                        .map_err(|_| BadgeError::BadStyle(value.chars().take(64).collect()))?;
                }
                "label" => opts.label = Some(value.into_owned()),
                "color" => color = colour("color")?,
                "colorB" => color_b = colour("colorB")?,
                "labelColor" => label_color = colour("labelColor")?,
                "colorA" => color_a = colour("colorA")?,
                _ => {}
            }
        }
        opts.color = color.or(color_b);
        opts.label_color = label_color.or(color_a);
        Ok(opts)
    }
}

/// Make a text safe and short enough to show: control characters become spaces (tabs and
/// line breaks) or U+FFFD (the rest), bidirectional overrides and XML non-characters become
/// U+FFFD, surrounding whitespace is trimmed, and anything past [`MAX_TEXT_CHARS`] is cut with
/// an ellipsis. XML escaping is left to the renderer, which measures the unescaped text.
pub fn clean_text(text: &str) -> Cow<'_, str> {
    clean_text_to(text, MAX_TEXT_CHARS)
}

/// [`clean_text`] with another length limit (at least 1).
fn clean_text_to(text: &str, max: usize) -> Cow<'_, str> {
    let max = max.max(1);
    let text = text.trim();
    let needs_change = |c: char| c.is_control() || is_bidi_control(c) || is_xml_nonchar(c);
    let count = text.chars().count();
    if count <= max && !text.chars().any(needs_change) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(4 * max));
    for (i, c) in text.chars().enumerate() {
        if count > max && i == max - 1 {
            out.push('…');
            break;
        }
        out.push(match c {
            '\t' | '\n' | '\r' => ' ',
            c if needs_change(c) => '\u{FFFD}',
            c => c,
        });
    }
    Cow::Owned(out)
}

/// Unicode bidirectional embedding, override and isolate controls, and the implicit marks.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters outside XML 1.0's `Char` production that a Rust string can hold.
fn is_xml_nonchar(c: char) -> bool {
    matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

/// Render a badge as SVG, with shields.io's geometry for the chosen style.
pub fn render(text: &BadgeText, opts: &BadgeOptions) -> String {
    render_to(text, opts, MAX_TEXT_CHARS)
}

/// [`render`] with texts cut at `max` characters.
fn render_to(text: &BadgeText, opts: &BadgeOptions, max: usize) -> String {
    let label = clean_text_to(opts.label.as_deref().unwrap_or(&text.label), max);
    let message = clean_text_to(&text.message, max);
    let color = match (&opts.color, text.is_status) {
        (Some(c), false) => c,
        _ => &text.color,
    };
    let params = BadgeParams {
        style: opts.style,
        label_color: opts.label_color.as_ref().map(Color::as_str),
        message_color: Some(color.as_str()),
        ..BadgeParams::new(&label, &message)
    };
    shields::render_badge_svg(&params)
}

/// Longest error message shown: errors explain what to do, so they may be longer than values.
const MAX_ERROR_CHARS: usize = 160;

/// A badge that reports an error: `badge | <message>`, grey and red.
pub fn error_badge(message: &str) -> String {
    let text = BadgeText {
        label: "badge".to_owned(),
        message: message.to_owned(),
        color: Color::RED,
        is_status: true,
    };
    render_to(&text, &BadgeOptions::default(), MAX_ERROR_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(label: &str, message: &str) -> String {
        render(
            &BadgeText::value(label, message, Color::BLUE),
            &BadgeOptions::default(),
        )
    }

    #[test]
    fn shields_escapes_label_and_message_in_every_style() {
        let hostile = r#"<script>alert("x")</script> & 'q'"#;
        for style in BadgeStyle::ALL {
            let opts = BadgeOptions {
                style,
                ..BadgeOptions::default()
            };
            let svg = render(&BadgeText::value(hostile, hostile, Color::BLUE), &opts);
            assert!(!svg.contains("<script"), "{style}: {svg}");
            assert!(!svg.contains(r#""x""#), "{style}: {svg}");
            assert!(!svg.contains("'q'"), "{style}: {svg}");
            assert!(!svg.contains("& "), "{style}: {svg}");
            let lt = if style == BadgeStyle::ForTheBadge {
                "&lt;SCRIPT&gt;"
            } else {
                "&lt;script&gt;"
            };
            assert!(svg.contains(lt), "{style}: {svg}");
            assert!(svg.contains("&amp;") && svg.contains("&quot;"), "{style}");
        }
    }

    #[test]
    fn texts_are_cleaned_and_truncated() {
        assert_eq!(clean_text("  1.2.3 "), "1.2.3");
        assert!(matches!(clean_text("plain"), Cow::Borrowed("plain")));
        assert_eq!(
            clean_text("a\tb\nc\u{0}d\u{1b}e\u{7f}"),
            "a b c\u{FFFD}d\u{FFFD}e\u{FFFD}"
        );
        assert_eq!(clean_text("abc\u{202E}fed"), "abc\u{FFFD}fed");
        assert_eq!(clean_text("x\u{FFFE}"), "x\u{FFFD}");
        let long = "é".repeat(10_000);
        let cut = clean_text(&long);
        assert_eq!(cut.chars().count(), MAX_TEXT_CHARS);
        assert!(cut.ends_with('…'));
        let exact = "a".repeat(MAX_TEXT_CHARS);
        assert_eq!(clean_text(&exact), exact);
    }

    #[test]
    fn rendered_text_has_no_control_characters() {
        let svg = flat("k\u{1}", "v\u{0}\u{8}\u{1f}\u{85}");
        assert!(
            !svg.chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
        );
    }

    #[test]
    fn sizes_follow_microbadger() {
        assert_eq!(format_size(0), "0B");
        assert_eq!(format_size(512), "512B");
        assert_eq!(format_size(1024), "1KB");
        assert_eq!(format_size(2_320_220), "2.2MB");
        assert_eq!(format_size(5 * 1024 * 1024), "5MB");
        assert_eq!(format_size(12_900_000), "12.3MB");
        assert_eq!(format_size(1024 * 1024 - 1), "1MB");
        assert_eq!(format_size(3 * 1024 * 1024 * 1024), "3GB");
        assert_eq!(format_size(u64::MAX), "16EB");
    }

    #[test]
    fn colours_are_named_or_hex_only() {
        assert_eq!(Color::parse("Green"), Some(Color::GREEN));
        assert_eq!(Color::parse("gray").unwrap().as_str(), "gray");
        assert_eq!(Color::parse("#ABC").unwrap().as_str(), "#abc");
        assert_eq!(Color::parse("a1b2c3").unwrap().as_str(), "#a1b2c3");
        for bad in [
            "",
            "purple",
            "#abcd",
            "ggg",
            "rgb(1,2,3)",
            "red;x",
            "red\" onload=\"x",
            "url(#a)",
            "##abc",
        ] {
            assert_eq!(Color::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn options_parse_like_shields() {
        let o = BadgeOptions::from_query(Some(
            "style=for-the-badge&label=my+label&colorB=red&colorA=%23abc&v=2",
        ))
        .unwrap();
        assert_eq!(o.style, BadgeStyle::ForTheBadge);
        assert_eq!(o.label.as_deref(), Some("my label"));
        assert_eq!(o.color, Some(Color::RED));
        assert_eq!(o.label_color, Color::parse("abc"));
        let o = BadgeOptions::from_query(Some("colorB=red&color=green&color=")).unwrap();
        assert_eq!(o.color, Some(Color::RED), "an empty colour is no colour");
        let o = BadgeOptions::from_query(Some("colorB=red&color=green")).unwrap();
        assert_eq!(o.color, Some(Color::GREEN));
        assert_eq!(
            BadgeOptions::from_query(None).unwrap(),
            BadgeOptions::default()
        );
        assert!(matches!(
            BadgeOptions::from_query(Some("style=Flat")),
            Err(BadgeError::BadStyle(_))
        ));
        assert!(matches!(
            BadgeOptions::from_query(Some("labelColor=javascript:alert(1)")),
            Err(BadgeError::BadColor {
                param: "labelColor",
                ..
            })
        ));
    }

    #[test]
    fn status_badges_ignore_the_colour_override() {
        let opts = BadgeOptions {
            color: Some(Color::parse("00ff00").unwrap()),
            ..BadgeOptions::default()
        };
        let nf = render(&BadgeText::not_found(&Kind::Image), &opts);
        assert!(!nf.contains("#00ff00"), "{nf}");
        let ok = render(&BadgeText::value("a", "b", Color::BLUE), &opts);
        assert!(ok.contains("#00ff00"), "{ok}");
    }

    #[test]
    fn paths_split_kind_key_and_image() {
        let p = parse_path("image/nginx.svg").unwrap();
        assert_eq!((p.kind, p.image.as_str()), (Kind::Image, "nginx"));
        let p = parse_path("version/127.0.0.1:5000/team/app:1.0.svg").unwrap();
        assert_eq!(
            (p.kind, p.image.as_str()),
            (Kind::Version, "127.0.0.1:5000/team/app:1.0")
        );
        let p = parse_path("label/org.opencontainers.image.version/acme/web%3A1.0.svg").unwrap();
        assert_eq!(
            p.kind,
            Kind::Label("org.opencontainers.image.version".into())
        );
        assert_eq!(p.image, "acme/web:1.0");
        let p = parse_path("label/a%2Fb/acme/web.svg").unwrap();
        assert_eq!(
            (p.kind, p.image.as_str()),
            (Kind::Label("a/b".into()), "acme/web")
        );
        assert_eq!(parse_path("image/nginx"), Err(BadgeError::NotSvg));
        assert_eq!(
            parse_path("size/nginx.svg"),
            Err(BadgeError::UnknownKind("size".into()))
        );
        assert_eq!(
            parse_path("image.svg"),
            Err(BadgeError::MissingImage("image".into()))
        );
        assert_eq!(parse_path("label/.svg"), Err(BadgeError::MissingKey));
        assert_eq!(
            parse_path("label/key.svg"),
            Err(BadgeError::MissingImage("label/KEY".into()))
        );
        assert_eq!(parse_path("image/%ff.svg"), Err(BadgeError::BadEncoding));
        assert_eq!(parse_path("image/a%zz.svg").unwrap().image, "a%zz");
    }

    #[test]
    fn scores_go_from_red_to_green() {
        assert_eq!(score_color(0), Color::RED);
        assert_eq!(score_color(33), Color::ORANGE);
        assert_eq!(score_color(50), Color::YELLOW);
        assert_eq!(score_color(67), Color::YELLOWGREEN);
        assert_eq!(score_color(78), Color::GREEN);
        assert_eq!(score_color(100), Color::BRIGHTGREEN);
    }

    #[test]
    fn short_commits() {
        assert_eq!(short_commit("0123abcd4567"), "0123abc");
        assert_eq!(short_commit("0123ab"), "0123ab");
        assert_eq!(short_commit("r1234-release"), "r1234-release");
    }

    #[test]
    fn error_badges_are_shields_badges() {
        let svg = error_badge("bad <name>");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("bad &lt;name&gt;"));
        assert!(svg.contains(">badge<"));
    }
}
