//! Build history: readable layer commands, and pairing history steps with manifest layers.

use crate::oci::History;

/// The shell prefixes builders put before a `RUN` command.
const SHELL_PREFIXES: [&str; 2] = ["/bin/sh -c", "cmd /S /C"];

/// Make a history `created_by` readable, the way a Dockerfile would show it.
///
/// - classic builder: `/bin/sh -c #(nop)  CMD ["sh"]` -> `CMD ["sh"]`,
///   `/bin/sh -c #(nop) ADD file:abc in / ` -> `ADD file:abc in /`,
///   `/bin/sh -c apk add curl` -> `RUN apk add curl`;
/// - build arguments: `|1 V=1 /bin/sh -c make` -> `RUN make` (BuildKit and the classic
///   builder record the ARG values first; they are dropped only when a shell prefix follows,
///   so nothing is lost from a command we do not understand);
/// - BuildKit: `RUN /bin/sh -c apk add curl # buildkit` -> `RUN apk add curl`; its other
///   instructions (`COPY app /app # buildkit`, `ENV A=b`) are already readable and only lose
///   the `# buildkit` marker.
///
/// Returns `None` for an empty command. Never panics.
pub fn clean_command(created_by: &str) -> Option<String> {
    let mut s = created_by.trim();
    if let Some(rest) = s.strip_suffix("# buildkit") {
        s = rest.trim_end();
    }
    if s.is_empty() {
        return None;
    }
    // BuildKit writes the instruction first: `RUN |1 A=b /bin/sh -c cmd`.
    let buildkit_run = s.strip_prefix("RUN ").map(str::trim_start);
    if let Some(rest) = buildkit_run {
        let rest = strip_build_args(rest);
        return Some(match strip_shell(rest) {
            Some(cmd) if !cmd.is_empty() => format!("RUN {cmd}"),
            _ => format!("RUN {rest}"),
        });
    }
    let s = strip_build_args(s);
    match strip_shell(s) {
        Some(cmd) => {
            if let Some(nop) = cmd.strip_prefix("#(nop)") {
                // Metadata step or ADD/COPY. Very old Dockers recorded the format string
                // itself as `#(nop) %s %s in %s`.
                let nop = nop.trim();
                let nop = nop.strip_prefix("%s %s in %s").unwrap_or(nop).trim();
                (!nop.is_empty()).then(|| nop.to_owned())
            } else if cmd.is_empty() {
                None
            } else {
                Some(format!("RUN {cmd}"))
            }
        }
        None => Some(s.to_owned()),
    }
}

/// Drop a `|N A=b C=d ` build-argument prefix, but only if a shell prefix follows it.
fn strip_build_args(s: &str) -> &str {
    let Some(rest) = s.strip_prefix('|') else {
        return s;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return s;
    }
    SHELL_PREFIXES
        .iter()
        .filter_map(|p| rest.find(p))
        .min()
        .map_or(s, |i| &rest[i..])
}

/// The command after a shell prefix, trimmed; `None` if there is no shell prefix.
fn strip_shell(s: &str) -> Option<&str> {
    SHELL_PREFIXES.iter().find_map(|p| {
        let rest = s.strip_prefix(p)?;
        // `/bin/sh -cfoo` is not the prefix.
        (rest.is_empty() || rest.starts_with(char::is_whitespace)).then(|| rest.trim())
    })
}

/// Is this history step a metadata-only step that some old builders failed to mark
/// `empty_layer` (`#(nop)` other than `ADD`/`COPY`)?
fn looks_metadata_only(h: &History) -> bool {
    let Some(by) = h.created_by.as_deref() else {
        return false;
    };
    match by.find("#(nop)") {
        Some(i) => {
            let after = by[i + "#(nop)".len()..].trim_start();
            !(after.starts_with("ADD") || after.starts_with("COPY"))
        }
        None => false,
    }
}

/// Pair history steps with the manifest's layers.
///
/// Steps with `empty_layer: true` made no layer; the others pair with the layers in order
/// (specs.md §6.2). If the counts disagree, a second attempt also skips `#(nop)` metadata
/// steps, for old builders that did not set `empty_layer`. If that fails too, no layer gets a
/// command (a wrong command is worse than none) and a warning says why.
pub(crate) fn align(
    history: &[History],
    layer_count: usize,
) -> (Vec<Option<&History>>, Option<String>) {
    let none = || vec![None; layer_count];
    if history.is_empty() {
        return (none(), None);
    }
    let layered: Vec<&History> = history.iter().filter(|h| !h.empty_layer).collect();
    if layered.len() == layer_count {
        return (layered.into_iter().map(Some).collect(), None);
    }
    let strict: Vec<&History> = layered
        .iter()
        .copied()
        .filter(|h| !looks_metadata_only(h))
        .collect();
    if strict.len() == layer_count {
        return (strict.into_iter().map(Some).collect(), None);
    }
    (
        none(),
        Some(format!(
            "history lists {} layer-creating steps but the manifest has {} layers; layer commands are not shown",
            layered.len(),
            layer_count
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_builder_commands() {
        let cases = [
            (r#"/bin/sh -c #(nop)  CMD ["sh"]"#, Some(r#"CMD ["sh"]"#)),
            (
                "/bin/sh -c #(nop) ADD file:abc in / ",
                Some("ADD file:abc in /"),
            ),
            ("/bin/sh -c apk add curl", Some("RUN apk add curl")),
            (
                "/bin/sh -c #(nop) %s %s in %s COPY dir:x in /app",
                Some("COPY dir:x in /app"),
            ),
            (
                "|1 VERSION=1.2 /bin/sh -c make install",
                Some("RUN make install"),
            ),
            (
                "|2 A=has spaces B=2 /bin/sh -c echo hi",
                Some("RUN echo hi"),
            ),
            ("|1 A=b something else", Some("|1 A=b something else")),
            ("/bin/sh -c #(nop) ", None),
            ("", None),
            ("   ", None),
            ("/bin/sh -cfoo", Some("/bin/sh -cfoo")),
            (
                "cmd /S /C powershell -Command x",
                Some("RUN powershell -Command x"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(clean_command(input).as_deref(), want, "{input:?}");
        }
    }

    #[test]
    fn buildkit_commands() {
        let cases = [
            (
                "RUN /bin/sh -c apk add --no-cache curl # buildkit",
                "RUN apk add --no-cache curl",
            ),
            ("RUN |1 V=2 /bin/sh -c echo $V # buildkit", "RUN echo $V"),
            (
                r#"RUN ["apt-get", "update"] # buildkit"#,
                r#"RUN ["apt-get", "update"]"#,
            ),
            ("COPY app /app # buildkit", "COPY app /app"),
            ("ENV PATH=/usr/local/bin", "ENV PATH=/usr/local/bin"),
            (
                "LABEL org.opencontainers.image.title=x",
                "LABEL org.opencontainers.image.title=x",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(clean_command(input).as_deref(), Some(want), "{input:?}");
        }
    }

    #[test]
    fn hostile_commands_do_not_panic() {
        for s in [
            "|",
            "|9",
            "|9999999999999999999999 /bin/sh -c x",
            "RUN ",
            "RUN",
            "#(nop)",
            "é/bin/sh -c",
            "\u{0}",
        ] {
            let _ = clean_command(s);
        }
        let huge = format!("/bin/sh -c {}", "x".repeat(1_000_000));
        assert_eq!(clean_command(&huge).unwrap().len(), 1_000_004);
    }

    fn h(created_by: &str, empty: bool) -> History {
        History {
            created_by: Some(created_by.into()),
            empty_layer: empty,
            ..History::default()
        }
    }

    #[test]
    fn alignment_skips_empty_layers() {
        let hist = vec![
            h("/bin/sh -c #(nop) ADD file:a in /", false),
            h(r#"/bin/sh -c #(nop)  CMD ["sh"]"#, true),
            h("/bin/sh -c apk add curl", false),
            h("/bin/sh -c #(nop)  LABEL a=b", true),
        ];
        let (pairs, warn) = align(&hist, 2);
        assert_eq!(warn, None);
        assert_eq!(
            pairs[0].unwrap().created_by.as_deref(),
            Some("/bin/sh -c #(nop) ADD file:a in /")
        );
        assert_eq!(
            pairs[1].unwrap().created_by.as_deref(),
            Some("/bin/sh -c apk add curl")
        );
    }

    #[test]
    fn alignment_falls_back_to_nop_detection() {
        // An old builder that never set empty_layer.
        let hist = vec![
            h("/bin/sh -c #(nop) ADD file:a in /", false),
            h(r#"/bin/sh -c #(nop)  CMD ["sh"]"#, false),
            h("/bin/sh -c apk add curl", false),
        ];
        let (pairs, warn) = align(&hist, 2);
        assert_eq!(warn, None);
        assert_eq!(
            pairs[1].unwrap().created_by.as_deref(),
            Some("/bin/sh -c apk add curl")
        );
    }

    #[test]
    fn alignment_mismatch_gives_no_commands_and_a_warning() {
        let hist = vec![h("/bin/sh -c a", false), h("/bin/sh -c b", false)];
        let (pairs, warn) = align(&hist, 3);
        assert_eq!(pairs, vec![None, None, None]);
        assert_eq!(
            warn.as_deref(),
            Some(
                "history lists 2 layer-creating steps but the manifest has 3 layers; layer commands are not shown"
            )
        );
        let (pairs, warn) = align(&[], 2);
        assert_eq!(pairs.len(), 2);
        assert_eq!(warn, None);
    }
}
