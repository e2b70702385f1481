//! Property tests for `microbadger::reference`: the parser must never panic, and every
//! reference it accepts must print (normalised and familiar) to strings that parse back to
//! the same reference, because both forms are stored, shown and typed back in.

use microbadger::reference::{ImageRef, ReferenceError, validate_digest, validate_tag};
use proptest::prelude::*;
use std::net::Ipv6Addr;

/// One repository path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, kept short so that
/// generated names stay under the 255-character limit.
fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,8}((\\.|_|__|-{1,3})[a-z0-9]{1,8}){0,2}"
}

/// A path of one to four components.
fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(component(), 1..=4).prop_map(|c| c.join("/"))
}

/// A port, sometimes written with leading zeros (which normalisation strips).
fn port() -> impl Strategy<Value = String> {
    (1u16..=65535, any::<bool>()).prop_map(|(p, zeros)| {
        if zeros {
            format!("00{p}")
        } else {
            p.to_string()
        }
    })
}

/// A host that Docker's rule reads as a host: a dotted domain (any case), a single label with
/// a port, `localhost`, a bracketed IPv6 literal, or a Docker Hub alias.
fn host() -> impl Strategy<Value = String> {
    let label = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?";
    prop_oneof![
        (
            prop::collection::vec(label, 2..=4),
            prop::option::of(port())
        )
            .prop_map(|(labels, port)| with_port(labels.join("."), port)),
        (label, port()).prop_map(|(l, p)| format!("{l}:{p}")),
        prop::option::of(port()).prop_map(|p| with_port("localhost".into(), p)),
        (any::<[u16; 8]>(), prop::option::of(port()))
            .prop_map(|(s, p)| with_port(format!("[{}]", Ipv6Addr::from(s)), p)),
        prop::sample::select(vec!["docker.io", "index.docker.io", "registry-1.docker.io"])
            .prop_map(str::to_owned),
    ]
}

fn with_port(host: String, port: Option<String>) -> String {
    match port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

fn tag() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_][A-Za-z0-9._-]{0,20}",
        "[A-Za-z0-9_][A-Za-z0-9._-]{127}",
    ]
}

fn digest() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-f0-9]{64}".prop_map(|h| format!("sha256:{h}")),
        "[a-f0-9]{128}".prop_map(|h| format!("sha512:{h}")),
    ]
}

/// A valid reference string as a person might type it, with the parts it was built from.
#[derive(Debug, Clone)]
struct Generated {
    input: String,
    host: Option<String>,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

fn reference() -> impl Strategy<Value = Generated> {
    (
        prop::option::of(host()),
        path(),
        prop::option::of(tag()),
        prop::option::of(digest()),
    )
        // Without a host, a dotted first component would be read as one (Docker's rule).
        .prop_filter(
            "first component would be read as a host",
            |(host, path, _, _)| {
                host.is_some()
                    || !path
                        .split_once('/')
                        .is_some_and(|(first, _)| first.contains('.'))
            },
        )
        .prop_map(|(host, path, tag, digest)| {
            let mut input = String::new();
            if let Some(h) = &host {
                input.push_str(h);
                input.push('/');
            }
            input.push_str(&path);
            if let Some(t) = &tag {
                input.push(':');
                input.push_str(t);
            }
            if let Some(d) = &digest {
                input.push('@');
                input.push_str(d);
            }
            Generated {
                input,
                host,
                path,
                tag,
                digest,
            }
        })
}

/// Checks the invariants every accepted reference must satisfy.
fn assert_round_trips(r: &ImageRef) {
    let display = r.to_string();
    assert_eq!(
        ImageRef::parse(&display).as_ref(),
        Ok(r),
        "display {display:?}"
    );
    let familiar = r.familiar();
    assert_eq!(
        ImageRef::parse(&familiar).as_ref(),
        Ok(r),
        "familiar {familiar:?}"
    );
    // Normalisation is idempotent: printing the re-parsed value gives the same text.
    assert_eq!(ImageRef::parse(&display).unwrap().to_string(), display);
    assert_eq!(
        r.full_name(),
        format!("{}/{}", r.registry(), r.repository())
    );
    assert!(r.full_name().len() <= 255);
    assert_eq!(
        r.manifest_reference(),
        r.digest().unwrap_or(r.tag_or_default())
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// (a) Arbitrary Unicode never panics; whatever parses also round-trips.
    #[test]
    fn parse_never_panics_on_any_string(s in any::<String>()) {
        if let Ok(r) = ImageRef::parse(&s) {
            assert_round_trips(&r);
        }
    }

    /// (a) Strings over the reference alphabet (plus some troublemakers) reach every branch
    /// of the parser far more often than uniform Unicode does.
    #[test]
    fn parse_never_panics_on_reference_like_strings(
        s in "[a-zA-Z0-9./:@_\\-\\[\\] é\u{0}]{0,80}"
    ) {
        if let Ok(r) = ImageRef::parse(&s) {
            assert_round_trips(&r);
        }
    }

    /// (b) Every generated valid reference parses to the expected parts and round-trips
    /// through both its normalised and its familiar form.
    #[test]
    fn valid_references_parse_and_round_trip(g in reference()) {
        let r = ImageRef::parse(&g.input)
            .unwrap_or_else(|e| panic!("{:?} was rejected: {e}", g.input));
        let expected_registry = match g.host.as_deref() {
            None | Some("docker.io" | "index.docker.io" | "registry-1.docker.io") => {
                "docker.io".to_owned()
            }
            Some(h) => normalise_port(&h.to_ascii_lowercase()),
        };
        prop_assert_eq!(r.registry(), expected_registry.as_str());
        let expected_repo = if r.is_docker_hub() && !g.path.contains('/') {
            format!("library/{}", g.path)
        } else {
            g.path.clone()
        };
        prop_assert_eq!(r.repository(), expected_repo.as_str());
        prop_assert_eq!(r.tag(), g.tag.as_deref());
        prop_assert_eq!(r.digest(), g.digest.as_deref());
        assert_round_trips(&r);
    }

    /// (c) The familiar form of a Docker Hub image drops `docker.io/` and `library/` (for
    /// paths whose first component cannot be mistaken for a host and that do not themselves
    /// contain those words).
    #[test]
    fn docker_hub_familiar_form_is_short(
        prefix in prop::sample::select(vec![
            "", "docker.io/", "index.docker.io/", "registry-1.docker.io/", "docker.io/library/",
        ]),
        path in path().prop_filter("looks like a host or names docker/library", |p| {
            !p.split('/').next().unwrap_or_default().contains('.')
                && !p.contains("docker")
                && !p.split('/').any(|c| c == "library")
        }),
        tag in prop::option::of(tag()),
    ) {
        // `docker.io/library/a/b` is kept as `library/a/b` by Docker, so only a single-level
        // path may follow the `library/` prefix here.
        prop_assume!(prefix != "docker.io/library/" || !path.contains('/'));
        let input = match &tag {
            Some(t) => format!("{prefix}{path}:{t}"),
            None => format!("{prefix}{path}"),
        };
        let r = ImageRef::parse(&input).unwrap();
        prop_assert!(r.is_docker_hub());
        prop_assert_eq!(r.api_host(), "registry-1.docker.io");
        let familiar = r.familiar();
        prop_assert!(!familiar.contains("docker.io"), "{}", familiar);
        prop_assert!(!familiar.contains("library/"), "{}", familiar);
        prop_assert_eq!(r.familiar_name(), path);
    }

    /// `with_tag` / `with_digest` build references that also round-trip, and they validate
    /// their argument with the same rules as the parser.
    #[test]
    fn with_tag_and_digest_round_trip(g in reference(), t in tag(), d in digest()) {
        let r = ImageRef::parse(&g.input).unwrap();
        let tagged = r.with_tag(&t).unwrap();
        prop_assert_eq!(tagged.tag(), Some(t.as_str()));
        prop_assert_eq!(tagged.digest(), None);
        assert_round_trips(&tagged);
        let pinned = r.with_digest(&d).unwrap();
        prop_assert_eq!(pinned.digest(), Some(d.as_str()));
        prop_assert_eq!(pinned.tag(), r.tag());
        prop_assert_eq!(pinned.manifest_reference(), d.as_str());
        assert_round_trips(&pinned);
    }

    /// The standalone validators agree with the grammar: generated tags and digests pass,
    /// and an uppercase letter anywhere in a repository path is reported as such.
    #[test]
    fn validators_agree_with_grammar(t in tag(), d in digest(), p in path(), i in any::<prop::sample::Index>()) {
        prop_assert!(validate_tag(&t).is_ok());
        prop_assert!(validate_digest(&d).is_ok());
        let letters: Vec<usize> = p.char_indices().filter(|(_, c)| c.is_ascii_lowercase()).map(|(i, _)| i).collect();
        prop_assume!(!letters.is_empty());
        let at = letters[i.index(letters.len())];
        let mut upper = p.clone();
        upper.replace_range(at..=at, &p[at..=at].to_ascii_uppercase());
        let input = format!("example.com/{upper}");
        prop_assert!(matches!(ImageRef::parse(&input), Err(ReferenceError::Uppercase { .. })), "{}", input);
    }
}

/// `host:007` is printed as `host:7`.
fn normalise_port(host: &str) -> String {
    match host.rsplit_once(':') {
        Some((h, p))
            if !h.is_empty() && !h.ends_with(':') && p.bytes().all(|b| b.is_ascii_digit()) =>
        {
            format!("{h}:{}", p.parse::<u16>().unwrap())
        }
        _ => host.to_owned(),
    }
}
