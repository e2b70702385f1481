//! Licence labels: SPDX expression parsing, canonical form and per-licence links.
//!
//! OCI's `org.opencontainers.image.licenses` is defined as an SPDX License Expression. Real
//! labels are often close but not exact (`mit`, `Apache 2.0`, `GPLv2`), so a value is judged in
//! three steps:
//! 1. identifiers are matched case-insensitively, as SPDX Annex D says they SHOULD be, and
//!    rewritten to their canonical case; if the result parses strictly, the expression is
//!    valid (`mit` is valid, canonical `MIT`);
//! 2. otherwise the spdx crate's lax canonicaliser is tried (imprecise names such as `apache2`,
//!    `/` for `OR`, deprecated GNU ids); a result that then parses strictly is offered as the
//!    `canonical` suggestion, but the value stays invalid;
//! 3. otherwise the value is invalid with the parser's reason.

use serde::{Deserialize, Serialize};

/// A licence label, judged as an SPDX expression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct License {
    /// The value as found in the label (trimmed).
    pub expression: String,
    /// Is it a valid SPDX expression (identifiers matched case-insensitively)?
    pub valid: bool,
    /// The canonical SPDX form: for a valid expression, the expression with canonical
    /// identifier case and upper-case operators; for an invalid one, a suggested correction
    /// when one could be found. `None` when nothing valid could be derived.
    pub canonical: Option<String>,
    /// The licences the canonical expression names, in order of first appearance.
    pub licenses: Vec<LicenseRef>,
    /// Why the expression is invalid, phrased for a maintainer.
    pub error: Option<String>,
}

/// One licence named in an expression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LicenseRef {
    /// SPDX short identifier (`Apache-2.0`) or `LicenseRef-…` for a custom licence.
    pub id: String,
    /// Full name from the SPDX list, or the id for a `LicenseRef-`.
    pub name: String,
    /// `https://spdx.org/licenses/<id>.html` for listed licences; `None` for `LicenseRef-`.
    pub url: Option<String>,
    pub osi_approved: bool,
}

/// Refuse to parse absurdly long values: no real licence expression is this long, and the
/// report should not echo megabytes back.
const MAX_EXPRESSION_LEN: usize = 1024;

/// Judge a licence label value. Never panics.
pub fn parse_license(value: &str) -> License {
    let expression = value.trim().to_owned();
    let invalid = |canonical: Option<String>, error: String| License {
        expression: expression.clone(),
        valid: false,
        licenses: canonical.as_deref().map(licenses_of).unwrap_or_default(),
        canonical,
        error: Some(error),
    };
    if expression.is_empty() {
        return invalid(None, "empty licence value".to_owned());
    }
    if expression.len() > MAX_EXPRESSION_LEN {
        return invalid(
            None,
            format!("longer than {MAX_EXPRESSION_LEN} bytes; not a licence expression"),
        );
    }

    let recased = recase_identifiers(&expression);
    match spdx::Expression::parse(&recased) {
        Ok(_) => {
            let canonical = collapse_whitespace(&recased);
            License {
                licenses: licenses_of(&canonical),
                expression,
                valid: true,
                canonical: Some(canonical),
                error: None,
            }
        }
        Err(strict_err) => {
            let suggestion = match spdx::Expression::canonicalize(&recased) {
                Ok(Some(c)) => spdx::Expression::parse(&c)
                    .ok()
                    .map(|_| collapse_whitespace(&c)),
                _ => None,
            };
            let mut error = describe(&strict_err, &expression);
            if let Some(s) = &suggestion {
                error.push_str(&format!("; did you mean `{s}`?"));
            }
            invalid(suggestion, error)
        }
    }
}

/// Collapse runs of whitespace to one space: the canonical text of an already recased,
/// strictly valid expression.
fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Rewrite each identifier token that matches an SPDX licence or exception id ignoring ASCII
/// case to its canonical spelling, and lower-case operators (`and`, which Annex D allows) to
/// upper case. Mixed-case operators (`And`) and `LicenseRef-` tokens are left alone. Byte
/// offsets are preserved (only ASCII case changes), so parser error spans still point into the
/// original text.
fn recase_identifiers(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if !token.is_empty() {
            out.push_str(canonical_case(token).unwrap_or(token));
            token.clear();
        }
    };
    for c in expr.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ':' {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

/// The canonical spelling of a licence or exception id, if `token` names one ignoring case.
fn canonical_case(token: &str) -> Option<&'static str> {
    match token {
        "and" => return Some("AND"),
        "or" => return Some("OR"),
        "with" => return Some("WITH"),
        "AND" | "OR" | "WITH" => return None,
        _ => {}
    }
    if spdx::license_id(token).is_some() || spdx::exception_id(token).is_some() {
        return None; // already canonical
    }
    spdx::identifiers::LICENSES
        .iter()
        .map(|l| l.name)
        .chain(spdx::identifiers::EXCEPTIONS.iter().map(|e| e.name))
        .find(|name| name.eq_ignore_ascii_case(token))
}

/// The licences a (strictly valid) canonical expression names, deduplicated.
fn licenses_of(canonical: &str) -> Vec<LicenseRef> {
    let Ok(parsed) = spdx::Expression::parse(canonical) else {
        return Vec::new();
    };
    let mut out: Vec<LicenseRef> = Vec::new();
    for req in parsed.requirements() {
        let item = match &req.req.license {
            spdx::LicenseItem::Spdx { id, .. } => LicenseRef {
                id: id.name.to_owned(),
                name: id.full_name.to_owned(),
                url: Some(license_url(id.name)),
                osi_approved: id.is_osi_approved(),
            },
            spdx::LicenseItem::Other(r) => {
                let id = r.to_string();
                LicenseRef {
                    name: id.clone(),
                    id,
                    url: None,
                    osi_approved: false,
                }
            }
        };
        if !out.iter().any(|l| l.id == item.id) {
            out.push(item);
        }
    }
    out
}

/// The SPDX list page for a licence id (ids are `[A-Za-z0-9.-]+`, safe in a URL path).
pub fn license_url(id: &str) -> String {
    format!("https://spdx.org/licenses/{id}.html")
}

/// A maintainer-facing explanation of a parse error, quoting the offending text.
fn describe(err: &spdx::ParseError, original: &str) -> String {
    use spdx::error::Reason;
    let bad = original
        .get(err.span.clone())
        .map(|s| super::validate::escape_controls(&super::validate::truncate(s, 60)))
        .unwrap_or_default();
    match &err.reason {
        Reason::UnknownLicense | Reason::UnknownTerm => {
            format!("`{bad}` is not an SPDX licence identifier (see https://spdx.org/licenses/)")
        }
        Reason::UnknownException => format!("`{bad}` is not an SPDX exception identifier"),
        Reason::InvalidCharacters => {
            format!("`{bad}` contains characters not allowed in an SPDX expression")
        }
        Reason::UnclosedParens => "unclosed parenthesis".to_owned(),
        Reason::UnopenedParens => "closing parenthesis without an opening one".to_owned(),
        Reason::Empty => "empty licence expression".to_owned(),
        Reason::Unexpected(_) => format!(
            "unexpected `{bad}`: licences must be joined with AND, OR or WITH (e.g. `MIT OR Apache-2.0`)"
        ),
        Reason::SeparatedPlus => "`+` must follow the licence id without a space".to_owned(),
        Reason::GnuNoPlus | Reason::GnuPlusWithSuffix => {
            "GNU licences take `-or-later` / `-only`, not `+`".to_owned()
        }
        Reason::DeprecatedLicenseId => {
            format!("`{bad}` is a deprecated SPDX identifier")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_simple_and_compound() {
        let l = parse_license("MIT");
        assert!(l.valid);
        assert_eq!(l.canonical.as_deref(), Some("MIT"));
        assert_eq!(l.error, None);
        assert_eq!(l.licenses.len(), 1);
        assert_eq!(l.licenses[0].id, "MIT");
        assert_eq!(l.licenses[0].name, "MIT License");
        assert_eq!(
            l.licenses[0].url.as_deref(),
            Some("https://spdx.org/licenses/MIT.html")
        );
        assert!(l.licenses[0].osi_approved);

        let l = parse_license("MIT OR Apache-2.0 WITH LLVM-exception");
        assert!(l.valid);
        let ids: Vec<&str> = l.licenses.iter().map(|x| x.id.as_str()).collect();
        assert_eq!(ids, vec!["MIT", "Apache-2.0"]);
        assert_eq!(
            l.licenses[1].url.as_deref(),
            Some("https://spdx.org/licenses/Apache-2.0.html")
        );
    }

    #[test]
    fn identifiers_are_case_insensitive() {
        let l = parse_license("mit and apache-2.0");
        assert!(l.valid, "{l:?}");
        assert_eq!(l.canonical.as_deref(), Some("MIT AND Apache-2.0"));
        assert_eq!(l.expression, "mit and apache-2.0");
        let l = parse_license("gpl-3.0-or-later");
        assert!(l.valid);
        assert_eq!(l.canonical.as_deref(), Some("GPL-3.0-or-later"));
        assert!(l.licenses[0].osi_approved);
        let l = parse_license("cc-by-4.0");
        assert!(l.valid);
        assert_eq!(l.licenses[0].id, "CC-BY-4.0");
        assert!(!l.licenses[0].osi_approved);
    }

    #[test]
    fn mixed_case_operator_is_invalid() {
        let l = parse_license("MIT And Apache-2.0");
        assert!(!l.valid);
        assert!(l.error.is_some());
    }

    #[test]
    fn imprecise_names_get_a_suggestion_but_stay_invalid() {
        let l = parse_license("GPLv2");
        assert!(!l.valid);
        assert!(l.error.as_deref().unwrap().contains("GPLv2"), "{l:?}");
        let l = parse_license("apache2");
        assert!(!l.valid);
        assert_eq!(l.canonical.as_deref(), Some("Apache-2.0"));
        assert!(
            l.error
                .as_deref()
                .unwrap()
                .contains("did you mean `Apache-2.0`")
        );
        assert_eq!(l.licenses[0].id, "Apache-2.0");
        let l = parse_license("MIT/Apache-2.0");
        assert!(!l.valid);
        assert_eq!(l.canonical.as_deref(), Some("MIT OR Apache-2.0"));
    }

    #[test]
    fn deprecated_ids_are_invalid_with_modern_suggestion() {
        let l = parse_license("GPL-2.0");
        assert!(!l.valid);
        assert_eq!(l.canonical.as_deref(), Some("GPL-2.0-only"));
        assert!(l.error.unwrap().contains("deprecated"));
    }

    #[test]
    fn non_spdx_values() {
        for v in [
            "Proprietary",
            "see LICENSE file",
            "MIT Apache-2.0",
            "(MIT",
            "MIT)",
            "",
            "   ",
            "💥",
            "MIT\nOR Apache-2.0 \u{202e}",
        ] {
            let l = parse_license(v);
            assert!(!l.valid, "{v:?} should be invalid");
            assert!(l.error.is_some());
        }
        let l = parse_license("Proprietary");
        assert_eq!(
            l.error.as_deref(),
            Some(
                "`Proprietary` is not an SPDX licence identifier (see https://spdx.org/licenses/)"
            )
        );
        let huge = "MIT OR ".repeat(10_000) + "MIT";
        assert!(!parse_license(&huge).valid);
    }

    #[test]
    fn license_refs_have_no_url() {
        let l = parse_license("LicenseRef-Acme-EULA OR MIT");
        assert!(l.valid);
        assert_eq!(l.licenses[0].id, "LicenseRef-Acme-EULA");
        assert_eq!(l.licenses[0].url, None);
        assert!(!l.licenses[0].osi_approved);
    }

    #[test]
    fn duplicates_are_listed_once() {
        let l = parse_license("MIT AND (MIT OR BSD-3-Clause)");
        assert!(l.valid);
        assert_eq!(l.licenses.len(), 2);
    }
}
