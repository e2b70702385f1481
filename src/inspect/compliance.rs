//! Label-schema rc1 and OCI annotation compliance: which keys are present, missing or invalid,
//! a score, and copy-pasteable lines that fix what is missing.
//!
//! Neither spec defines compliance levels (specs.md §1.5), so the rules are ours:
//! - each spec's keys are checked against what the spec says about their format;
//! - a few keys per spec are *recommended*: those a reader of an image page wants (name,
//!   description, build date, source, revision, version, vendor, URL, and the licence for OCI
//!   or the schema version for label-schema). A spec's score is the percentage of its
//!   recommended keys that are present and valid;
//! - the overall score counts the same concepts satisfied by *either* spec, minus labels
//!   flagged as inherited from the base image, so an image is not penalised for skipping the
//!   deprecated label-schema once it has OCI keys.
//!
//! Label-schema keys are looked up in the config labels only (it is a label convention); OCI
//! keys in the labels and then the manifest / index annotations.

use serde::{Deserialize, Serialize};

use super::derive::{Derived, Meta, Origin, is_placeholder, normalize_source};
use super::inherited::InheritedFlag;
use super::keys::*;
use super::license::parse_license;
use super::validate::{
    date_problem, dockerfile_quote, is_digest, is_ref_name, is_vcs_url, key_syntax_problems,
    looks_like_url, parse_image_ref, shell_quote, truncate, url_problem,
};

/// The compliance report of one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Compliance {
    pub label_schema: SchemaReport,
    pub oci: SchemaReport,
    /// Labels that probably describe the base image (see [`super::inherited`]).
    pub inherited: Vec<InheritedFlag>,
    /// 0-100: the share of the recommended concepts (name, description, build date, source,
    /// revision, version, vendor, URL, licence) present and valid under either spec and not
    /// flagged as inherited.
    pub score: u8,
}

/// One spec's checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SchemaReport {
    /// The spec's defined keys in spec order, then any other keys found in its namespace
    /// (sorted).
    pub keys: Vec<KeyCheck>,
    pub present: usize,
    pub missing: usize,
    pub invalid: usize,
    /// 0-100: recommended keys present and valid.
    pub score: u8,
    pub fix: Fix,
}

/// The verdict on one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyStatus {
    Present,
    Missing,
    Invalid,
}

/// One key checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyCheck {
    pub key: String,
    pub status: KeyStatus,
    pub value: Option<String>,
    /// Why it is invalid; for a present key, an advisory note (e.g. "non-standard").
    pub reason: Option<String>,
    pub recommended: bool,
    /// Where the checked value was found.
    pub origin: Option<Origin>,
}

/// How to fix the missing and invalid recommended keys.
///
/// Two alternatives: add `dockerfile` lines to the Dockerfile (and pass `build_args` when
/// building, for the per-build values), or pass `buildx` flags to `docker buildx build`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Fix {
    /// `ARG BUILD_DATE` / `LABEL key="value"` lines, values escaped for the Dockerfile lexer.
    pub dockerfile: Vec<String>,
    /// `--build-arg NAME="$(...)"` flags the `ARG` lines above need at build time.
    pub build_args: Vec<String>,
    /// `--label '...'` flags (and for OCI keys `--annotation 'index,manifest:...'`), values
    /// single-quoted for a POSIX shell.
    pub buildx: Vec<String>,
}

/// How a key's value is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Free text: only empty (for recommended keys) and unexpanded build args are invalid.
    Text,
    Date,
    HttpUrl,
    /// A clonable URL; scp-like `git@host:path` allowed when true.
    VcsUrl(bool),
    /// A path or a URL; checked as a URL only if it looks like one.
    PathOrUrl,
    SchemaVersion,
    /// Text of at most 300 characters (label-schema `description`).
    ShortText,
    Spdx,
    Digest,
    RefName,
    ImageRef,
}

/// What a fix line proposes for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Suggestion {
    /// A value to copy literally (may come from a label: escaped on output).
    Literal(String),
    /// `$BUILD_DATE`, set per build.
    BuildDate,
    /// `$VCS_REF`, set per build.
    VcsRef,
    /// A placeholder the maintainer must replace.
    Placeholder(&'static str),
}

/// A key a spec defines.
struct KeySpec {
    key: &'static str,
    recommended: bool,
    check: Check,
    /// The other spec's key for the same thing (specs.md §2.3).
    equivalent: Option<&'static str>,
    /// Placeholder for a fix line when nothing better is known.
    placeholder: &'static str,
}

const fn spec(
    key: &'static str,
    recommended: bool,
    check: Check,
    equivalent: Option<&'static str>,
    placeholder: &'static str,
) -> KeySpec {
    KeySpec {
        key,
        recommended,
        check,
        equivalent,
        placeholder,
    }
}

const P_NAME: &str = "<IMAGE NAME>";
const P_DESCRIPTION: &str = "<ONE-LINE DESCRIPTION>";
const P_URL: &str = "<https://PRODUCT-WEBSITE>";
const P_SOURCE: &str = "<https://github.com/OWNER/REPO>";
const P_VERSION: &str = "<VERSION>";
const P_VENDOR: &str = "<ORGANISATION>";
const P_LICENSES: &str = "<SPDX-EXPRESSION, e.g. Apache-2.0>";

/// All 22 rc1 keys, in the order of the rc1 table.
const LABEL_SCHEMA_KEYS: [KeySpec; 22] = [
    spec(LS_BUILD_DATE, true, Check::Date, Some(OCI_CREATED), ""),
    spec(LS_NAME, true, Check::Text, Some(OCI_TITLE), P_NAME),
    spec(
        LS_DESCRIPTION,
        true,
        Check::ShortText,
        Some(OCI_DESCRIPTION),
        P_DESCRIPTION,
    ),
    spec(LS_USAGE, false, Check::PathOrUrl, None, ""),
    spec(LS_URL, true, Check::HttpUrl, Some(OCI_URL), P_URL),
    spec(
        LS_VCS_URL,
        true,
        Check::VcsUrl(true),
        Some(OCI_SOURCE),
        P_SOURCE,
    ),
    spec(LS_VCS_REF, true, Check::Text, Some(OCI_REVISION), ""),
    spec(LS_VENDOR, true, Check::Text, Some(OCI_VENDOR), P_VENDOR),
    spec(LS_VERSION, true, Check::Text, Some(OCI_VERSION), P_VERSION),
    spec(LS_SCHEMA_VERSION, true, Check::SchemaVersion, None, "1.0"),
    spec("org.label-schema.docker.cmd", false, Check::Text, None, ""),
    spec(
        "org.label-schema.docker.cmd.devel",
        false,
        Check::Text,
        None,
        "",
    ),
    spec(
        "org.label-schema.docker.cmd.test",
        false,
        Check::Text,
        None,
        "",
    ),
    spec(
        "org.label-schema.docker.cmd.debug",
        false,
        Check::Text,
        None,
        "",
    ),
    spec(
        "org.label-schema.docker.cmd.help",
        false,
        Check::Text,
        None,
        "",
    ),
    spec(
        "org.label-schema.docker.params",
        false,
        Check::Text,
        None,
        "",
    ),
    spec("org.label-schema.rkt.cmd", false, Check::Text, None, ""),
    spec(
        "org.label-schema.rkt.cmd.devel",
        false,
        Check::Text,
        None,
        "",
    ),
    spec(
        "org.label-schema.rkt.cmd.test",
        false,
        Check::Text,
        None,
        "",
    ),
    spec(
        "org.label-schema.rkt.cmd.debug",
        false,
        Check::Text,
        None,
        "",
    ),
    spec(
        "org.label-schema.rkt.cmd.help",
        false,
        Check::Text,
        None,
        "",
    ),
    spec("org.label-schema.rkt.params", false, Check::Text, None, ""),
];

/// Keys outside rc1 that are common enough to report as "present, non-standard" rather than
/// invalid, with the note shown for each.
const LABEL_SCHEMA_NON_STANDARD: [(&str, &str); 5] = [
    (
        "org.label-schema.vcs-type",
        "not defined in label-schema rc1, but widely used",
    ),
    (
        LS_LICENSE,
        "not defined in label-schema rc1, but widely used",
    ),
    (
        "org.label-schema.docker.dockerfile",
        "not defined in label-schema rc1, but widely used",
    ),
    (
        "org.label-schema.docker.debug",
        "rc1's example spelling of org.label-schema.docker.cmd.debug",
    ),
    (
        "org.label-schema.rkt.debug",
        "rc1's example spelling of org.label-schema.rkt.cmd.debug",
    ),
];

/// The 14 pre-defined OCI keys, in the order of `annotations.md`.
const OCI_KEYS: [KeySpec; 14] = [
    spec(OCI_CREATED, true, Check::Date, Some(LS_BUILD_DATE), ""),
    spec(OCI_AUTHORS, false, Check::Text, None, ""),
    spec(OCI_URL, true, Check::HttpUrl, Some(LS_URL), P_URL),
    spec(OCI_DOCUMENTATION, false, Check::HttpUrl, Some(LS_USAGE), ""),
    spec(
        OCI_SOURCE,
        true,
        Check::VcsUrl(false),
        Some(LS_VCS_URL),
        P_SOURCE,
    ),
    spec(OCI_VERSION, true, Check::Text, Some(LS_VERSION), P_VERSION),
    spec(OCI_REVISION, true, Check::Text, Some(LS_VCS_REF), ""),
    spec(OCI_VENDOR, true, Check::Text, Some(LS_VENDOR), P_VENDOR),
    spec(
        OCI_LICENSES,
        true,
        Check::Spdx,
        Some(LS_LICENSE),
        P_LICENSES,
    ),
    spec(OCI_REF_NAME, false, Check::RefName, None, ""),
    spec(OCI_TITLE, true, Check::Text, Some(LS_NAME), P_NAME),
    spec(
        OCI_DESCRIPTION,
        true,
        Check::Text,
        Some(LS_DESCRIPTION),
        P_DESCRIPTION,
    ),
    spec(OCI_BASE_DIGEST, false, Check::Digest, None, ""),
    spec(OCI_BASE_NAME, false, Check::ImageRef, None, ""),
];

/// The concepts of the overall score: (OCI key, label-schema key).
const CONCEPTS: [(&str, &str); 9] = [
    (OCI_TITLE, LS_NAME),
    (OCI_DESCRIPTION, LS_DESCRIPTION),
    (OCI_CREATED, LS_BUILD_DATE),
    (OCI_SOURCE, LS_VCS_URL),
    (OCI_REVISION, LS_VCS_REF),
    (OCI_VERSION, LS_VERSION),
    (OCI_VENDOR, LS_VENDOR),
    (OCI_URL, LS_URL),
    (OCI_LICENSES, LS_LICENSE),
];

/// The verdict on one value: `Ok(note)` or `Err(reason)`.
fn judge(check: Check, recommended: bool, value: &str) -> Result<Option<String>, String> {
    let trimmed = value.trim();
    if trimmed.is_empty() && recommended {
        return Err("empty value".to_owned());
    }
    if is_placeholder(value) && !trimmed.is_empty() {
        return Err(format!(
            "`{}` looks like a build argument that was never expanded; pass it with --build-arg",
            truncate(trimmed, 40)
        ));
    }
    match check {
        Check::Text => Ok(None),
        Check::ShortText => {
            let n = value.chars().count();
            if n > 300 {
                Err(format!("{n} characters; label-schema allows up to 300"))
            } else {
                Ok(None)
            }
        }
        Check::Date => date_problem(value).map_or(Ok(None), Err),
        Check::HttpUrl => url_problem(value).map_or(Ok(None), Err),
        Check::VcsUrl(allow_scp) => {
            if is_vcs_url(value, allow_scp) {
                Ok(None)
            } else if !allow_scp && super::validate::scp_like(value).is_some() {
                Err(
                    "`user@host:path` is git shorthand, not a URL; use the https:// address"
                        .to_owned(),
                )
            } else {
                Err(
                    "not a URL git can clone from (expected e.g. https://github.com/OWNER/REPO)"
                        .to_owned(),
                )
            }
        }
        Check::PathOrUrl => {
            if looks_like_url(value) {
                url_problem(value).map_or(Ok(None), Err)
            } else {
                Ok(None)
            }
        }
        Check::SchemaVersion => {
            if value == "1.0" {
                Ok(None)
            } else {
                Err(format!(
                    "`{}`; label-schema rc1 defines only \"1.0\"",
                    truncate(value, 40)
                ))
            }
        }
        Check::Spdx => {
            let l = parse_license(value);
            match (l.valid, l.error) {
                (true, _) if l.canonical.as_deref() != Some(value.trim()) => Ok(Some(format!(
                    "valid; canonical form `{}`",
                    l.canonical.unwrap_or_default()
                ))),
                (true, _) => Ok(None),
                (false, e) => Err(e.unwrap_or_else(|| "not an SPDX expression".to_owned())),
            }
        }
        Check::Digest => {
            if is_digest(value) {
                Ok(None)
            } else {
                Err("not a content digest (expected sha256:<64 hex digits>)".to_owned())
            }
        }
        Check::RefName => {
            if is_ref_name(value) {
                Ok(Some(
                    "only meaningful on descriptors in an OCI layout's index.json".to_owned(),
                ))
            } else {
                Err("does not follow the ref.name grammar".to_owned())
            }
        }
        Check::ImageRef => match parse_image_ref(value) {
            None => Err("not an image reference".to_owned()),
            Some(r) if r.host.is_none() => Ok(Some(
                "should be fully qualified, with its registry (registry.example.com/org/image:tag)"
                    .to_owned(),
            )),
            Some(_) => Ok(None),
        },
    }
}

/// Check one defined key against its candidates: the first valid candidate wins; if none is
/// valid, the first one present is reported with its problem.
fn check_key(s: &KeySpec, candidates: &[(&str, Origin)]) -> KeyCheck {
    let mut first_bad: Option<KeyCheck> = None;
    for (value, origin) in candidates {
        let verdict = judge(s.check, s.recommended, value);
        let (status, reason) = match verdict {
            Ok(note) => (KeyStatus::Present, note),
            Err(reason) => (KeyStatus::Invalid, Some(reason)),
        };
        let kc = KeyCheck {
            key: s.key.to_owned(),
            status,
            value: Some((*value).to_owned()),
            reason,
            recommended: s.recommended,
            origin: Some(*origin),
        };
        if status == KeyStatus::Present {
            return kc;
        }
        first_bad.get_or_insert(kc);
    }
    first_bad.unwrap_or(KeyCheck {
        key: s.key.to_owned(),
        status: KeyStatus::Missing,
        value: None,
        reason: None,
        recommended: s.recommended,
        origin: None,
    })
}

/// Check a key in a spec's namespace that the spec does not define.
fn check_extra(key: &str, value: &str, origin: Origin, ls: bool) -> KeyCheck {
    let mut kc = KeyCheck {
        key: key.to_owned(),
        status: KeyStatus::Invalid,
        value: Some(value.to_owned()),
        reason: None,
        recommended: false,
        origin: Some(origin),
    };
    if ls {
        if let Some((_, note)) = LABEL_SCHEMA_NON_STANDARD.iter().find(|(k, _)| *k == key) {
            kc.status = KeyStatus::Present;
            let mut note = (*note).to_owned();
            if key == LS_LICENSE {
                let l = parse_license(value);
                if !l.valid {
                    note.push_str("; the value is not an SPDX expression");
                }
            }
            kc.reason = Some(note);
            return kc;
        }
        let mut reason = "not defined in label-schema rc1".to_owned();
        let lower = key.to_ascii_lowercase();
        if lower != key && LABEL_SCHEMA_KEYS.iter().any(|s| s.key == lower) {
            reason.push_str(&format!(" (did you mean {lower}?)"));
        }
        let problems = key_syntax_problems(key);
        if !problems.is_empty() {
            reason.push_str("; key syntax: ");
            reason.push_str(&problems.join(", "));
        }
        kc.reason = Some(reason);
    } else {
        kc.reason = Some(
            "not defined by the OCI image spec (the org.opencontainers.image namespace is reserved for it)"
                .to_owned(),
        );
    }
    kc
}

/// Build one spec's report (without fix lines).
fn report(specs: &[KeySpec], meta: &Meta<'_>, ls: bool) -> SchemaReport {
    let mut keys: Vec<KeyCheck> = specs
        .iter()
        .map(|s| {
            let mut candidates: Vec<(&str, Origin)> = Vec::new();
            if let Some(v) = meta.labels.get(s.key) {
                candidates.push((v, Origin::Label));
            }
            if !ls && let Some(v) = meta.annotations.get(s.key) {
                candidates.push((v, Origin::Annotation));
            }
            check_key(s, &candidates)
        })
        .collect();
    let prefix = if ls { LS_PREFIX } else { OCI_PREFIX };
    let defined = |k: &str| specs.iter().any(|s| s.key == k);
    let mut sources = vec![(meta.labels, Origin::Label)];
    if !ls {
        sources.push((meta.annotations, Origin::Annotation));
    }
    let mut extras: Vec<KeyCheck> = Vec::new();
    for (map, origin) in sources {
        for (k, v) in map.range(prefix.to_owned()..) {
            if !k.starts_with(prefix) {
                break;
            }
            if !defined(k) && !extras.iter().any(|e| e.key == *k) {
                extras.push(check_extra(k, v, origin, ls));
            }
        }
    }
    // Case variants sort before the prefix range (upper case < lower case); catch them too.
    for (k, v) in meta.labels {
        if ls
            && k.to_ascii_lowercase().starts_with(LS_PREFIX)
            && !k.starts_with(LS_PREFIX)
            && !extras.iter().any(|e| e.key == *k)
        {
            extras.push(check_extra(k, v, Origin::Label, true));
        }
    }
    extras.sort_by(|a, b| a.key.cmp(&b.key));
    keys.extend(extras);
    tally(keys)
}

/// Counts and score of a list of checks.
fn tally(keys: Vec<KeyCheck>) -> SchemaReport {
    let count = |st: KeyStatus| keys.iter().filter(|k| k.status == st).count();
    let recommended = keys.iter().filter(|k| k.recommended).count();
    let good = keys
        .iter()
        .filter(|k| k.recommended && k.status == KeyStatus::Present)
        .count();
    SchemaReport {
        present: count(KeyStatus::Present),
        missing: count(KeyStatus::Missing),
        invalid: count(KeyStatus::Invalid),
        score: percent(good, recommended),
        keys,
        fix: Fix::default(),
    }
}

/// `part / whole` as a rounded percentage (0 when `whole` is 0).
fn percent(part: usize, whole: usize) -> u8 {
    if whole == 0 {
        return 0;
    }
    let p = (part.min(whole) * 100 + whole / 2) / whole;
    u8::try_from(p).unwrap_or(100)
}

fn status_of<'r>(r: &'r SchemaReport, key: &str) -> Option<&'r KeyCheck> {
    r.keys.iter().find(|k| k.key == key)
}

/// The best value to propose for a missing or invalid recommended key.
///
/// Per-build values (dates, revisions) are always build arguments: copying today's value into
/// a Dockerfile would make every later build lie. Otherwise, in order: a corrected form of the
/// key's own invalid value (canonical licence, https source), the other spec's equivalent
/// value if it is valid, and a placeholder.
fn suggest(s: &KeySpec, own: &KeyCheck, other: &SchemaReport, derived: &Derived) -> Suggestion {
    let other_value = s
        .equivalent
        .and_then(|e| status_of(other, e))
        .filter(|k| k.status == KeyStatus::Present)
        .and_then(|k| k.value.clone());
    match s.key {
        OCI_CREATED | LS_BUILD_DATE => Suggestion::BuildDate,
        OCI_REVISION | LS_VCS_REF => Suggestion::VcsRef,
        LS_SCHEMA_VERSION => Suggestion::Literal("1.0".to_owned()),
        OCI_LICENSES => own
            .value
            .as_deref()
            .and_then(|v| parse_license(v).canonical)
            .or_else(|| other_value.and_then(|v| parse_license(&v).canonical))
            .or_else(|| {
                derived
                    .license
                    .as_ref()
                    .filter(|l| l.valid)
                    .and_then(|l| l.canonical.clone())
            })
            .map_or(Suggestion::Placeholder(s.placeholder), Suggestion::Literal),
        OCI_SOURCE | LS_VCS_URL => own
            .value
            .as_deref()
            .and_then(normalize_source)
            .or_else(|| other_value.as_deref().and_then(normalize_source))
            .map_or(Suggestion::Placeholder(s.placeholder), Suggestion::Literal),
        _ => other_value
            .filter(|v| judge(s.check, s.recommended, v).is_ok())
            .map_or(Suggestion::Placeholder(s.placeholder), Suggestion::Literal),
    }
}

/// A buildx value: our own command substitution, or literal text to quote.
enum ShellValue {
    Dynamic(&'static str),
    Static(String),
}
use ShellValue::{Dynamic, Static};

const DATE_CMD: &str = "$(date -u +%Y-%m-%dT%H:%M:%SZ)";
const GIT_CMD: &str = "$(git rev-parse HEAD)";

/// Fix lines for a report.
fn fix_for(
    specs: &[KeySpec],
    own: &SchemaReport,
    other: &SchemaReport,
    derived: &Derived,
    oci: bool,
) -> Fix {
    let mut fix = Fix::default();
    let mut args: Vec<String> = Vec::new();
    for s in specs.iter().filter(|s| s.recommended) {
        let Some(kc) = status_of(own, s.key) else {
            continue;
        };
        if kc.status == KeyStatus::Present {
            continue;
        }
        let (label_value, shell_arg) = match suggest(s, kc, other, derived) {
            Suggestion::BuildDate => {
                push_arg(&mut args, &mut fix, "BUILD_DATE", DATE_CMD);
                ("\"$BUILD_DATE\"".to_owned(), Dynamic(DATE_CMD))
            }
            Suggestion::VcsRef => {
                push_arg(&mut args, &mut fix, "VCS_REF", GIT_CMD);
                ("\"$VCS_REF\"".to_owned(), Dynamic(GIT_CMD))
            }
            Suggestion::Literal(v) => (dockerfile_quote(&v), Static(v)),
            Suggestion::Placeholder(p) => (dockerfile_quote(p), Static(p.to_owned())),
        };
        fix.dockerfile
            .push(format!("LABEL {}={label_value}", s.key));
        let flag = |prefix: &str| match &shell_arg {
            Dynamic(cmd) => format!("\"{prefix}{}={cmd}\"", s.key),
            Static(v) => shell_quote(&format!("{prefix}{}={v}", s.key)),
        };
        fix.buildx.push(format!("--label {}", flag("")));
        if oci {
            fix.buildx
                .push(format!("--annotation {}", flag("index,manifest:")));
        }
    }
    // ARG lines go before the LABEL lines that use them.
    args.extend(std::mem::take(&mut fix.dockerfile));
    fix.dockerfile = args;
    fix
}

/// Record an `ARG` line and its `--build-arg`, once each.
fn push_arg(args: &mut Vec<String>, fix: &mut Fix, name: &str, cmd: &str) {
    let line = format!("ARG {name}");
    if !args.contains(&line) {
        args.push(line);
        fix.build_args.push(format!("--build-arg {name}=\"{cmd}\""));
    }
}

/// Build the compliance report.
pub(crate) fn check_compliance(
    meta: &Meta<'_>,
    derived: &Derived,
    inherited: Vec<InheritedFlag>,
) -> Compliance {
    let mut label_schema = report(&LABEL_SCHEMA_KEYS, meta, true);
    let mut oci = report(&OCI_KEYS, meta, false);
    label_schema.fix = fix_for(&LABEL_SCHEMA_KEYS, &label_schema, &oci, derived, false);
    oci.fix = fix_for(&OCI_KEYS, &oci, &label_schema, derived, true);

    let good = |r: &SchemaReport, key: &str| {
        status_of(r, key).is_some_and(|k| {
            let valid = k.status == KeyStatus::Present
                && (key != LS_LICENSE
                    || k.value.as_deref().is_some_and(|v| parse_license(v).valid));
            let flagged = k.origin == Some(Origin::Label) && inherited.iter().any(|f| f.key == key);
            valid && !flagged
        })
    };
    let satisfied = CONCEPTS
        .iter()
        .filter(|(o, l)| good(&oci, o) || good(&label_schema, l))
        .count();
    Compliance {
        score: percent(satisfied, CONCEPTS.len()),
        label_schema,
        oci,
        inherited,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::inspect::derive::derive;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn run(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Compliance {
        run_with(labels, annotations, Vec::new())
    }

    fn run_with(
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
        inherited: Vec<InheritedFlag>,
    ) -> Compliance {
        let l = map(labels);
        let a = map(annotations);
        let meta = Meta {
            labels: &l,
            annotations: &a,
            config_author: None,
        };
        let d = derive(&meta);
        check_compliance(&meta, &d, inherited)
    }

    fn key<'r>(r: &'r SchemaReport, k: &str) -> &'r KeyCheck {
        status_of(r, k).unwrap_or_else(|| panic!("{k} not in report"))
    }

    const FULL_LS: [(&str, &str); 9] = [
        (LS_BUILD_DATE, "2016-04-12T23:20:50.52Z"),
        (LS_NAME, "myname"),
        (LS_DESCRIPTION, "An app"),
        (LS_URL, "http://postgresql.org"),
        (LS_VCS_URL, "https://github.com/nginx/nginx"),
        (LS_VCS_REF, "279FA63"),
        (LS_VENDOR, "Stark Industries"),
        (LS_VERSION, "1.2.3"),
        (LS_SCHEMA_VERSION, "1.0"),
    ];

    const FULL_OCI: [(&str, &str); 9] = [
        (OCI_CREATED, "2024-01-02T03:04:05Z"),
        (OCI_TITLE, "app"),
        (OCI_DESCRIPTION, "An app"),
        (OCI_URL, "https://example.com"),
        (OCI_SOURCE, "https://github.com/o/r"),
        (OCI_REVISION, "abc"),
        (OCI_VENDOR, "Acme"),
        (OCI_VERSION, "1.0.0"),
        (OCI_LICENSES, "Apache-2.0"),
    ];

    #[test]
    fn no_labels_at_all() {
        let c = run(&[], &[]);
        assert_eq!(c.score, 0);
        assert_eq!(c.label_schema.keys.len(), 22);
        assert_eq!(c.label_schema.missing, 22);
        assert_eq!(c.label_schema.score, 0);
        assert_eq!(c.oci.keys.len(), 14);
        assert_eq!(c.oci.missing, 14);
        assert_eq!(
            c.oci.fix.dockerfile,
            vec![
                "ARG BUILD_DATE",
                "ARG VCS_REF",
                r#"LABEL org.opencontainers.image.created="$BUILD_DATE""#,
                r#"LABEL org.opencontainers.image.url="<https://PRODUCT-WEBSITE>""#,
                r#"LABEL org.opencontainers.image.source="<https://github.com/OWNER/REPO>""#,
                r#"LABEL org.opencontainers.image.version="<VERSION>""#,
                r#"LABEL org.opencontainers.image.revision="$VCS_REF""#,
                r#"LABEL org.opencontainers.image.vendor="<ORGANISATION>""#,
                r#"LABEL org.opencontainers.image.licenses="<SPDX-EXPRESSION, e.g. Apache-2.0>""#,
                r#"LABEL org.opencontainers.image.title="<IMAGE NAME>""#,
                r#"LABEL org.opencontainers.image.description="<ONE-LINE DESCRIPTION>""#,
            ]
        );
        assert_eq!(
            c.oci.fix.build_args,
            vec![
                r#"--build-arg BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)""#,
                r#"--build-arg VCS_REF="$(git rev-parse HEAD)""#,
            ]
        );
        assert_eq!(c.oci.fix.buildx.len(), 18);
        assert_eq!(
            c.oci.fix.buildx[0],
            r#"--label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)""#
        );
        assert_eq!(
            c.oci.fix.buildx[1],
            r#"--annotation "index,manifest:org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)""#
        );
        assert_eq!(
            c.oci.fix.buildx[2],
            "--label 'org.opencontainers.image.url=<https://PRODUCT-WEBSITE>'"
        );
        assert!(
            c.label_schema
                .fix
                .dockerfile
                .contains(&r#"LABEL org.label-schema.schema-version="1.0""#.to_owned())
        );
        assert!(
            c.label_schema
                .fix
                .buildx
                .iter()
                .all(|l| l.starts_with("--label "))
        );
    }

    #[test]
    fn label_schema_only() {
        let c = run(&FULL_LS, &[]);
        assert_eq!(c.label_schema.score, 100);
        assert_eq!(c.label_schema.present, 9);
        assert_eq!(c.label_schema.invalid, 0);
        assert!(c.label_schema.fix.dockerfile.is_empty());
        assert!(c.label_schema.fix.buildx.is_empty());
        assert_eq!(c.oci.score, 0);
        // 8 of 9 concepts: label-schema has no licence.
        assert_eq!(c.score, 89);
        // OCI fix lines copy the label-schema values, except per-build ones.
        assert_eq!(
            c.oci.fix.dockerfile,
            vec![
                "ARG BUILD_DATE",
                "ARG VCS_REF",
                r#"LABEL org.opencontainers.image.created="$BUILD_DATE""#,
                r#"LABEL org.opencontainers.image.url="http://postgresql.org""#,
                r#"LABEL org.opencontainers.image.source="https://github.com/nginx/nginx""#,
                r#"LABEL org.opencontainers.image.version="1.2.3""#,
                r#"LABEL org.opencontainers.image.revision="$VCS_REF""#,
                r#"LABEL org.opencontainers.image.vendor="Stark Industries""#,
                r#"LABEL org.opencontainers.image.licenses="<SPDX-EXPRESSION, e.g. Apache-2.0>""#,
                r#"LABEL org.opencontainers.image.title="myname""#,
                r#"LABEL org.opencontainers.image.description="An app""#,
            ]
        );
        assert!(
            c.oci
                .fix
                .buildx
                .contains(&"--label 'org.opencontainers.image.vendor=Stark Industries'".to_owned())
        );
        assert!(
            c.oci.fix.buildx.contains(
                &"--annotation 'index,manifest:org.opencontainers.image.vendor=Stark Industries'"
                    .to_owned()
            )
        );
    }

    #[test]
    fn oci_only_in_labels_or_annotations() {
        let c = run(&FULL_OCI, &[]);
        assert_eq!(c.oci.score, 100);
        assert_eq!(c.score, 100);
        assert!(c.oci.fix.dockerfile.is_empty());
        assert_eq!(c.label_schema.score, 0);
        assert!(
            c.label_schema
                .fix
                .dockerfile
                .contains(&r#"LABEL org.label-schema.name="app""#.to_owned())
        );
        assert!(
            c.label_schema
                .fix
                .dockerfile
                .contains(&r#"LABEL org.label-schema.vcs-url="https://github.com/o/r""#.to_owned())
        );

        let c = run(&[], &FULL_OCI);
        assert_eq!(c.oci.score, 100);
        assert_eq!(key(&c.oci, OCI_TITLE).origin, Some(Origin::Annotation));
        // Annotations are not label-schema's business.
        assert_eq!(c.label_schema.present, 0);
    }

    #[test]
    fn both_schemas() {
        let mut all: Vec<(&str, &str)> = FULL_LS.to_vec();
        all.extend(FULL_OCI);
        let c = run(&all, &[]);
        assert_eq!(
            (c.label_schema.score, c.oci.score, c.score),
            (100, 100, 100)
        );
        assert_eq!(c.oci.present, 9);
        assert_eq!(c.oci.missing, 5);
    }

    #[test]
    fn invalid_values_are_reported() {
        let c = run(
            &[
                (LS_BUILD_DATE, "12/04/2016"),
                (LS_URL, "postgresql.org"),
                (LS_VCS_URL, "git@github.com:o/r.git"),
                (LS_SCHEMA_VERSION, "1.0.0-rc.1"),
                (LS_USAGE, "www.example.com/help"),
                (OCI_LICENSES, "Apache 2.0"),
                (OCI_SOURCE, "git@github.com:o/r.git"),
                (OCI_CREATED, "$BUILD_DATE"),
                (OCI_BASE_DIGEST, "sha256:123"),
                (OCI_BASE_NAME, "alpine:3"),
                (OCI_TITLE, ""),
            ],
            &[],
        );
        let ls = &c.label_schema;
        assert_eq!(key(ls, LS_BUILD_DATE).status, KeyStatus::Invalid);
        assert_eq!(
            key(ls, LS_BUILD_DATE).reason.as_deref(),
            Some("not an RFC 3339 date-time (expected e.g. 2016-04-12T23:20:50.52Z)")
        );
        assert_eq!(key(ls, LS_URL).status, KeyStatus::Invalid);
        assert_eq!(
            key(ls, LS_VCS_URL).status,
            KeyStatus::Present,
            "scp form is fine for vcs-url"
        );
        assert_eq!(key(ls, LS_SCHEMA_VERSION).status, KeyStatus::Invalid);
        assert_eq!(
            key(ls, LS_SCHEMA_VERSION).reason.as_deref(),
            Some("`1.0.0-rc.1`; label-schema rc1 defines only \"1.0\"")
        );
        assert_eq!(key(ls, LS_USAGE).status, KeyStatus::Invalid);
        assert!(
            ls.fix
                .dockerfile
                .contains(&r#"LABEL org.label-schema.schema-version="1.0""#.to_owned())
        );

        let oci = &c.oci;
        assert_eq!(key(oci, OCI_LICENSES).status, KeyStatus::Invalid);
        assert_eq!(key(oci, OCI_SOURCE).status, KeyStatus::Invalid);
        assert!(
            key(oci, OCI_SOURCE)
                .reason
                .as_deref()
                .unwrap()
                .contains("not a URL")
        );
        assert_eq!(key(oci, OCI_CREATED).status, KeyStatus::Invalid);
        assert!(
            key(oci, OCI_CREATED)
                .reason
                .as_deref()
                .unwrap()
                .contains("never expanded")
        );
        assert_eq!(key(oci, OCI_BASE_DIGEST).status, KeyStatus::Invalid);
        assert_eq!(key(oci, OCI_BASE_NAME).status, KeyStatus::Present);
        assert!(
            key(oci, OCI_BASE_NAME)
                .reason
                .as_deref()
                .unwrap()
                .contains("fully qualified")
        );
        assert_eq!(key(oci, OCI_TITLE).status, KeyStatus::Invalid);
        assert_eq!(key(oci, OCI_TITLE).reason.as_deref(), Some("empty value"));
        // The fix lines correct what they can.
        assert!(oci.fix.dockerfile.contains(
            &r#"LABEL org.opencontainers.image.source="https://github.com/o/r""#.to_owned()
        ));
        assert!(
            oci.fix
                .dockerfile
                .contains(&r#"LABEL org.opencontainers.image.created="$BUILD_DATE""#.to_owned())
        );
        assert_eq!(oci.score, 0);
    }

    #[test]
    fn license_fix_uses_canonical_form() {
        let c = run(&[(OCI_LICENSES, "apache2")], &[]);
        assert!(
            c.oci
                .fix
                .dockerfile
                .contains(&r#"LABEL org.opencontainers.image.licenses="Apache-2.0""#.to_owned())
        );
        let c = run(&[(LS_LICENSE, "mit")], &[]);
        assert_eq!(key(&c.label_schema, LS_LICENSE).status, KeyStatus::Present);
        assert!(
            c.oci
                .fix
                .dockerfile
                .contains(&r#"LABEL org.opencontainers.image.licenses="MIT""#.to_owned())
        );
        // A lower-case but valid licence is present, with a note about the canonical form.
        let c = run(&[(OCI_LICENSES, "mit")], &[]);
        assert_eq!(key(&c.oci, OCI_LICENSES).status, KeyStatus::Present);
        assert_eq!(
            key(&c.oci, OCI_LICENSES).reason.as_deref(),
            Some("valid; canonical form `MIT`")
        );
    }

    #[test]
    fn unknown_and_non_standard_label_schema_keys() {
        let c = run(
            &[
                ("org.label-schema.vcs-type", "git"),
                ("org.label-schema.docker.dockerfile", "/Dockerfile"),
                ("org.label-schema.made-up", "x"),
                ("org.label-schema.Name", "x"),
                ("org.label-schema.bad..key-", "x"),
                ("org.opencontainers.image.colour", "blue"),
            ],
            &[("org.opencontainers.image.other", "x")],
        );
        let ls = &c.label_schema;
        assert_eq!(
            key(ls, "org.label-schema.vcs-type").status,
            KeyStatus::Present
        );
        assert_eq!(
            key(ls, "org.label-schema.vcs-type").reason.as_deref(),
            Some("not defined in label-schema rc1, but widely used")
        );
        assert_eq!(
            key(ls, "org.label-schema.docker.dockerfile").status,
            KeyStatus::Present
        );
        assert_eq!(
            key(ls, "org.label-schema.made-up").status,
            KeyStatus::Invalid
        );
        assert_eq!(
            key(ls, "org.label-schema.made-up").reason.as_deref(),
            Some("not defined in label-schema rc1")
        );
        assert_eq!(
            key(ls, "org.label-schema.Name").reason.as_deref(),
            Some(
                "not defined in label-schema rc1 (did you mean org.label-schema.name?); key syntax: only lower-case letters, digits, dots and dashes are allowed"
            )
        );
        assert!(
            key(ls, "org.label-schema.bad..key-")
                .reason
                .as_deref()
                .unwrap()
                .contains("consecutive")
        );
        assert_eq!(ls.keys.len(), 22 + 5);
        assert_eq!(ls.invalid, 3);
        assert_eq!(
            key(&c.oci, "org.opencontainers.image.colour").status,
            KeyStatus::Invalid
        );
        assert_eq!(
            key(&c.oci, "org.opencontainers.image.other").origin,
            Some(Origin::Annotation)
        );
    }

    #[test]
    fn hostile_values_stay_on_one_line_in_fix_lines() {
        let hostile = "Evil\" \\ $HOME `id` 'q'\nRUN rm -rf /\r\u{7}\u{202e}";
        let c = run(&[(LS_NAME, hostile), (LS_VENDOR, "O'Brien & Sons")], &[]);
        let title_line = c
            .oci
            .fix
            .dockerfile
            .iter()
            .find(|l| l.contains(OCI_TITLE))
            .unwrap();
        assert_eq!(
            title_line,
            r#"LABEL org.opencontainers.image.title="Evil\" \\ \$HOME `id` 'q'\\nRUN rm -rf /\\r\\u{7}\\u{202e}""#
        );
        for line in c.oci.fix.dockerfile.iter().chain(&c.oci.fix.buildx) {
            assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
            assert!(!line.chars().any(|ch| ch.is_control()), "{line:?}");
        }
        assert!(
            c.oci.fix.buildx.contains(
                &r"--label 'org.opencontainers.image.vendor=O'\''Brien & Sons'".to_owned()
            )
        );
        assert!(c.oci.fix.buildx.contains(
            &r#"--label 'org.opencontainers.image.title=Evil" \ $HOME `id` '\''q'\''\nRUN rm -rf /\r\u{7}\u{202e}'"#.to_owned()
        ));
    }

    #[test]
    fn inherited_labels_do_not_count_in_overall_score() {
        let flags = vec![InheritedFlag {
            key: LS_NAME.into(),
            value: "CentOS Base Image".into(),
            reason: "r".into(),
        }];
        let c = run_with(&FULL_LS, &[], flags);
        assert_eq!(c.label_schema.score, 100, "per-spec scores stay key-based");
        assert_eq!(c.score, 78);
        assert_eq!(c.inherited.len(), 1);
    }

    #[test]
    fn long_description_is_invalid_for_label_schema_only() {
        let long = "x".repeat(301);
        let c = run(&[(LS_DESCRIPTION, &long), (OCI_DESCRIPTION, &long)], &[]);
        assert_eq!(
            key(&c.label_schema, LS_DESCRIPTION).status,
            KeyStatus::Invalid
        );
        assert_eq!(key(&c.oci, OCI_DESCRIPTION).status, KeyStatus::Present);
        // The fix cannot copy a too-long value, so it falls back to the placeholder.
        assert!(c.label_schema.fix.dockerfile.contains(
            &r#"LABEL org.label-schema.description="<ONE-LINE DESCRIPTION>""#.to_owned()
        ));
    }

    #[test]
    fn percent_rounds() {
        assert_eq!(percent(0, 9), 0);
        assert_eq!(percent(8, 9), 89);
        assert_eq!(percent(9, 9), 100);
        assert_eq!(percent(1, 0), 0);
        assert_eq!(percent(5, 3), 100);
    }
}
