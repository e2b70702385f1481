//! How values are shown on pages: sizes, counts, dates, digests, and untrusted text.
//!
//! Pure functions. Escaping for HTML is askama's job; these only decide what text to show and
//! whether a value may become a link. Label values, commands and descriptions are written by
//! whoever pushed the image, so [`printable`] makes control and bidirectional-override
//! characters visible instead of letting them reorder or hide text, [`clip`] bounds what a
//! single value can add to a page, and [`http_link`] is the only way a value becomes an `href`.

use chrono::{DateTime, Utc};

/// Longest value shown in full on a page (label values, commands); the JSON API has the rest.
pub const MAX_SHOWN_CHARS: usize = 2000;

/// A byte count in binary units, the same numbers as the size badge (which follows
/// MicroBadger's 1 KB = 1024 bytes), labelled as what they are: `0 B`, `1023 B`, `1.5 KiB`,
/// `11.8 MiB`, `3.0 GiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A large count, short: `950`, `1.2K`, `3.4M`, `1.1B`.
pub fn count(n: u64) -> String {
    const STEPS: [(u64, &str); 3] = [(1_000_000_000, "B"), (1_000_000, "M"), (1_000, "K")];
    for (step, suffix) in STEPS {
        if n >= step {
            let v = n as f64 / step as f64;
            return if v >= 100.0 {
                format!("{v:.0}{suffix}")
            } else {
                format!("{v:.1}{suffix}")
            };
        }
    }
    n.to_string()
}

/// The first 12 hex digits of a digest, as `docker images` shows IDs (`sha256:` dropped).
pub fn short_digest(digest: &str) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    hex.chars().take(12).collect()
}

/// Untrusted text made safe to look at: control characters (but tab and newline), and the
/// Unicode bidirectional controls that can make text read differently from what it is, are
/// replaced by visible `\u{..}` escapes. HTML escaping still happens in the template.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if (c.is_control() && c != '\n' && c != '\t') || bidi {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// [`printable`], cut to `max` characters with an ellipsis and a count of what was left out.
pub fn clip(s: &str, max: usize) -> String {
    let shown = printable(s);
    let total = shown.chars().count();
    if total <= max {
        return shown;
    }
    let head: String = shown.chars().take(max).collect();
    format!("{head}… ({} more characters)", total - max)
}

/// The value as a link target, only if it is exactly one absolute `http(s)` URL with a host
/// (no spaces, no control characters, nothing around it). Anything else, `javascript:` URLs
/// included, stays text.
pub fn http_link(value: &str) -> Option<String> {
    if value.is_empty()
        || value.len() > MAX_SHOWN_CHARS
        || value.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return None;
    }
    let url = url::Url::parse(value).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return None;
    }
    Some(url.to_string())
}

/// A moment shown as a date and as "how long ago".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct When {
    /// RFC 3339, for `<time datetime>`.
    pub iso: String,
    /// `2024-03-01 10:00 UTC`.
    pub text: String,
    /// `3 days ago`.
    pub ago: String,
}

impl When {
    pub fn at(t: DateTime<Utc>, now: DateTime<Utc>) -> When {
        When {
            iso: t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            text: t.format("%Y-%m-%d %H:%M UTC").to_string(),
            ago: ago(t, now),
        }
    }

    /// A date as an image gives it (RFC 3339); `None` when it does not parse.
    pub fn parse(s: &str, now: DateTime<Utc>) -> Option<When> {
        let t = DateTime::parse_from_rfc3339(s.trim()).ok()?;
        Some(When::at(t.with_timezone(&Utc), now))
    }
}

/// `just now`, `1 minute ago`, `5 hours ago`, `3 days ago`, `2 months ago`, `4 years ago`;
/// `in the future` for clocks that disagree.
pub fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    if secs < -60 {
        return "in the future".to_owned();
    }
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit} ago")
        } else {
            format!("{n} {unit}s ago")
        }
    };
    match secs {
        ..60 => "just now".to_owned(),
        60..3600 => plural(secs / 60, "minute"),
        3600..86_400 => plural(secs / 3600, "hour"),
        86_400..2_592_000 => plural(secs / 86_400, "day"),
        2_592_000..31_536_000 => plural(secs / 2_592_000, "month"),
        _ => plural(secs / 31_536_000, "year"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1024), "1.0 KiB");
        assert_eq!(size(1_536), "1.5 KiB");
        assert_eq!(size(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(size(12_345_678), "11.8 MiB");
        assert_eq!(size(3_200_000_000), "3.0 GiB");
        assert_eq!(size(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn counts_are_short() {
        assert_eq!(count(950), "950");
        assert_eq!(count(1_234), "1.2K");
        assert_eq!(count(123_456), "123K");
        assert_eq!(count(3_400_000), "3.4M");
        assert_eq!(count(1_100_000_000), "1.1B");
    }

    #[test]
    fn short_digests_drop_the_algorithm() {
        assert_eq!(
            short_digest(&format!("sha256:{}", "ab".repeat(32))),
            "abababababab"
        );
        assert_eq!(short_digest("abc"), "abc");
    }

    #[test]
    fn control_and_bidi_characters_become_visible() {
        assert_eq!(printable("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert_eq!(printable("x\u{0}y"), "x\\u{0}y");
        assert_eq!(printable("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(printable("tab\tand\nnewline"), "tab\tand\nnewline");
        assert_eq!(printable("ünïcödé ✓"), "ünïcödé ✓");
    }

    #[test]
    fn clipping_counts_what_is_left_out() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(
            clip(&"x".repeat(15), 10),
            format!("{}… (5 more characters)", "x".repeat(10))
        );
    }

    #[test]
    fn only_plain_http_urls_are_links() {
        assert_eq!(
            http_link("https://github.com/acme/web").as_deref(),
            Some("https://github.com/acme/web")
        );
        assert_eq!(
            http_link("http://example.com").as_deref(),
            Some("http://example.com/")
        );
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "ftp://example.com/x",
            "https://",
            "see https://example.com",
            "https://example.com/\u{1b}",
            " https://example.com",
            "https://exa mple.com",
            "/relative/path",
            "git@github.com:acme/web.git",
            "",
        ] {
            assert_eq!(http_link(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ago_reads_naturally() {
        let now = DateTime::parse_from_rfc3339("2024-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let before = |s: i64| now - chrono::TimeDelta::seconds(s);
        assert_eq!(ago(before(5), now), "just now");
        assert_eq!(ago(before(60), now), "1 minute ago");
        assert_eq!(ago(before(7200), now), "2 hours ago");
        assert_eq!(ago(before(3 * 86_400), now), "3 days ago");
        assert_eq!(ago(before(65 * 86_400), now), "2 months ago");
        assert_eq!(ago(before(800 * 86_400), now), "2 years ago");
        assert_eq!(ago(before(-3600), now), "in the future");
        let w = When::parse("2024-03-01T10:00:00+02:00", now).unwrap();
        assert_eq!(w.text, "2024-03-01 08:00 UTC");
        assert_eq!(w.iso, "2024-03-01T08:00:00Z");
        assert!(When::parse("yesterday", now).is_none());
    }
}
