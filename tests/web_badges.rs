//! `/badges/...`: every kind and style against committed SVG snapshots, MicroBadger's old URL
//! forms, hostile label values, unknown images (inspecting, queued URGENT), bad requests as
//! SVG error badges, caching headers, ETag / 304 and the in-memory render cache.
//!
//! The store is seeded with real inspections: small manifest and config JSON documents run
//! through `inspect_image`, saved with `add_repository` + `save_tag`.

mod support;

use std::collections::BTreeMap;

use chrono::Utc;
use microbadger::inspect::{ImageInput, Platform, PlatformEntry, inspect_image};
use microbadger::oci::{ImageConfig, OciImageManifest};
use microbadger::queue::{JobKind, Priority};
use microbadger::reference::ImageRef;
use microbadger::registry::Inspection;
use microbadger::store::RepoStatus;
use support::web::{TestApp, TestResponse, at, digest};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const SVG: &str = "image/svg+xml;charset=utf-8";

/// Labels of a well-labelled image (score 100).
const FULL_LABELS: &[(&str, &str)] = &[
    ("org.opencontainers.image.title", "web"),
    ("org.opencontainers.image.description", "A web server"),
    ("org.opencontainers.image.created", "2024-03-01T10:00:00Z"),
    (
        "org.opencontainers.image.source",
        "https://github.com/acme/web",
    ),
    (
        "org.opencontainers.image.revision",
        "0123abcd4567ef890123abcd4567ef890123abcd",
    ),
    ("org.opencontainers.image.version", "2.1.0"),
    ("org.opencontainers.image.vendor", "Acme"),
    ("org.opencontainers.image.url", "https://acme.example"),
    ("org.opencontainers.image.licenses", "apache-2.0"),
];

/// What to put in the store.
struct Seed<'a> {
    /// As a user types it: `acme/web`, `nginx`, `127.0.0.1:5000/team/app`.
    image: &'a str,
    tags: &'a [&'a str],
    /// Distinguishes versions: the top-level digest is `digest(top)`.
    top: u32,
    labels: &'a [(&'a str, &'a str)],
    layer_sizes: &'a [u64],
    /// More than one makes it a multi-platform index.
    platforms: &'a [&'a str],
}

impl Default for Seed<'_> {
    fn default() -> Self {
        Seed {
            image: "acme/web",
            tags: &["1.0"],
            top: 1,
            labels: FULL_LABELS,
            layer_sizes: &[2_811_478, 9_437_184, 1_048_576, 1_200],
            platforms: &["linux/amd64"],
        }
    }
}

/// An inspection made by the real engine from a manifest and config with history.
fn inspection(seed: &Seed<'_>) -> Inspection {
    let layers: Vec<serde_json::Value> = seed
        .layer_sizes
        .iter()
        .enumerate()
        .map(|(i, size)| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "size": size,
                "digest": digest(seed.top * 100 + 10 + i as u32),
            })
        })
        .collect();
    let history: Vec<serde_json::Value> = (0..seed.layer_sizes.len())
        .map(|i| {
            serde_json::json!({
                "created": "2024-03-01T10:00:00Z",
                "created_by": format!("/bin/sh -c #(nop) ADD file:{i} in / "),
            })
        })
        .collect();
    let manifest_digest = digest(seed.top * 100 + 1);
    let manifest: OciImageManifest = serde_json::from_value(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 1469,
                   "digest": digest(seed.top * 100 + 2)},
        "layers": layers,
    }))
    .unwrap();
    let labels: BTreeMap<&str, &str> = seed.labels.iter().copied().collect();
    let config: ImageConfig = serde_json::from_value(serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "created": "2024-03-01T10:00:00Z",
        "config": {"Labels": labels, "Cmd": ["serve"], "Env": ["PATH=/usr/bin"]},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": history,
    }))
    .unwrap();
    let image = inspect_image(&ImageInput {
        manifest_digest: &manifest_digest,
        media_type: OCI_MANIFEST,
        manifest: &manifest,
        config: &config,
        index_annotations: None,
    });
    let multi = seed.platforms.len() > 1;
    let top = if multi {
        digest(seed.top * 100)
    } else {
        manifest_digest.clone()
    };
    let platforms = seed
        .platforms
        .iter()
        .enumerate()
        .map(|(i, p)| PlatformEntry {
            platform: p.parse::<Platform>().unwrap(),
            digest: if i == 0 {
                manifest_digest.clone()
            } else {
                digest(seed.top * 100 + 50 + i as u32)
            },
            size: 1000,
            media_type: OCI_MANIFEST.to_string(),
        })
        .collect();
    Inspection {
        reference: ImageRef::parse(seed.image).unwrap(),
        digest: top,
        media_type: if multi { OCI_INDEX } else { OCI_MANIFEST }.to_string(),
        platforms,
        images: vec![image],
    }
}

async fn seed(app: &TestApp, seed: Seed<'_>) {
    let r = ImageRef::parse(seed.image).unwrap();
    let repo = app
        .store
        .add_repository(r.registry(), r.repository(), at(3600))
        .await
        .unwrap();
    let inspection = inspection(&seed);
    for tag in seed.tags {
        app.store
            .save_tag(repo.id, tag, &inspection, Utc::now())
            .await
            .unwrap();
    }
}

async fn app_with_web() -> TestApp {
    let app = TestApp::new(|_| {}).await;
    seed(&app, Seed::default()).await;
    app
}

/// A 200 badge.
async fn badge(app: &TestApp, uri: &str) -> String {
    let resp = app.get(uri).await;
    assert_eq!(resp.status, 200, "{uri}: {}", resp.text());
    assert_eq!(resp.header("content-type"), Some(SVG), "{uri}");
    let svg = resp.text();
    assert_well_formed_svg(&svg);
    svg
}

/// The texts of a badge (`<text>` contents, deduplicated in order), for readable assertions.
fn texts(svg: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in svg.split("<text").skip(1) {
        let Some(start) = part.find('>') else {
            continue;
        };
        let Some(end) = part.find("</text>") else {
            continue;
        };
        let t = part[start + 1..end].to_string();
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// A small XML well-formedness check for the SVG the renderer writes: one `<svg>` root, tags
/// balanced, attribute values quoted, every `&` an entity, no `<` in text, and no characters
/// XML 1.0 cannot carry.
fn assert_well_formed_svg(svg: &str) {
    assert!(svg.starts_with("<svg "), "{svg}");
    assert!(svg.ends_with("</svg>"), "{svg}");
    assert_eq!(svg.matches("<svg").count(), 1, "{svg}");
    for c in svg.chars() {
        assert!(
            (matches!(c, '\t' | '\n' | '\r') || !c.is_control()) && c != '\u{FFFE}',
            "character {c:?} in {svg}"
        );
    }
    let check_entities = |s: &str| {
        for (i, _) in s.match_indices('&') {
            let rest = &s[i + 1..];
            let ok = ["amp;", "lt;", "gt;", "quot;", "apos;"]
                .iter()
                .any(|e| rest.starts_with(e))
                || (rest.starts_with('#')
                    && rest[1..]
                        .split_once(';')
                        .is_some_and(|(n, _)| !n.is_empty() && n.len() < 8));
            assert!(ok, "bare & at {i} in {s}");
        }
    };
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = svg;
    let mut roots = 0;
    while let Some(open) = rest.find('<') {
        let text = &rest[..open];
        check_entities(text);
        assert!(!text.contains('>'), "stray > in text {text:?}");
        let close = rest[open..].find('>').expect("unclosed tag") + open;
        let tag = &rest[open + 1..close];
        assert!(!tag.contains('<'), "< inside tag {tag:?}");
        assert_eq!(
            tag.matches('"').count() % 2,
            0,
            "unbalanced quotes in {tag:?}"
        );
        check_entities(tag);
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop(), Some(name), "mismatched </{name}>");
        } else {
            if stack.is_empty() {
                roots += 1;
            }
            let name = tag.split([' ', '/']).next().unwrap();
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()),
                "tag {tag:?}"
            );
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
        rest = &rest[close + 1..];
    }
    assert!(rest.is_empty(), "text after the root: {rest:?}");
    assert!(stack.is_empty(), "unclosed {stack:?}");
    assert_eq!(roots, 1);
}

fn error_message(resp: &TestResponse) -> String {
    texts(&resp.text()).join(" | ")
}

// ---- kinds and styles ----------------------------------------------------------------------

#[tokio::test]
async fn every_kind_renders() {
    let app = app_with_web().await;
    let kinds = [
        ("image", "image", vec!["12.7MB", "4 layers"]),
        ("version", "version", vec!["version", "2.1.0"]),
        ("commit", "commit", vec!["commit", "0123abc"]),
        ("license", "license", vec!["license", "Apache-2.0"]),
        ("created", "created", vec!["created", "2024-03-01"]),
        ("platforms", "platforms", vec!["platform", "linux/amd64"]),
        ("labels", "labels", vec!["labels", "100%"]),
        (
            "label_vendor",
            "label/org.opencontainers.image.vendor",
            vec!["org.opencontainers.image.vendor", "Acme"],
        ),
    ];
    for (name, kind, want) in kinds {
        let svg = badge(&app, &format!("/badges/{kind}/acme/web:1.0.svg")).await;
        assert_eq!(texts(&svg), want, "{kind}");
        insta::assert_snapshot!(format!("kind_{name}"), svg);
    }
}

#[tokio::test]
async fn every_style_renders() {
    let app = app_with_web().await;
    for style in ["flat", "flat-square", "plastic", "for-the-badge", "social"] {
        let svg = badge(
            &app,
            &format!("/badges/image/acme/web:1.0.svg?style={style}"),
        )
        .await;
        insta::assert_snapshot!(format!("style_{style}"), svg);
    }
    // The default is flat.
    assert_eq!(
        badge(&app, "/badges/image/acme/web:1.0.svg").await,
        badge(&app, "/badges/image/acme/web:1.0.svg?style=flat").await
    );
}

#[tokio::test]
async fn shields_parameters_apply() {
    let app = app_with_web().await;
    let svg = badge(
        &app,
        "/badges/version/acme/web:1.0.svg?label=release&color=orange&labelColor=%23123456",
    )
    .await;
    assert_eq!(texts(&svg), ["release", "2.1.0"]);
    assert!(svg.contains("#fe7d37"), "orange: {svg}");
    assert!(svg.contains("#123456"), "{svg}");
    insta::assert_snapshot!("params_label_color_labelcolor", svg);

    // Legacy colorA / colorB, bare hex, and `color` winning over `colorB`.
    let legacy = badge(
        &app,
        "/badges/version/acme/web:1.0.svg?colorA=abc&colorB=ff0000",
    )
    .await;
    assert!(
        legacy.contains("#aabbcc") || legacy.contains("#abc"),
        "{legacy}"
    );
    assert!(legacy.contains("#ff0000"), "{legacy}");
    let both = badge(
        &app,
        "/badges/version/acme/web:1.0.svg?colorB=ff0000&color=0000ff",
    )
    .await;
    assert!(
        both.contains("#0000ff") && !both.contains("#ff0000"),
        "{both}"
    );

    // An empty label hides the left side; unknown parameters are ignored.
    let bare = badge(
        &app,
        "/badges/version/acme/web:1.0.svg?label=&v=2&logo=docker",
    )
    .await;
    assert_eq!(texts(&bare), ["2.1.0"]);
}

#[tokio::test]
async fn values_fall_back_when_labels_are_missing() {
    let app = TestApp::new(|_| {}).await;
    seed(
        &app,
        Seed {
            image: "acme/bare",
            tags: &["latest", "3.2.1", "3.2"],
            labels: &[("org.opencontainers.image.licenses", "GPLv2 or whatever")],
            layer_sizes: &[512],
            ..Seed::default()
        },
    )
    .await;
    let t = |svg: String| texts(&svg);
    // No version label: the most specific tag at the same digest as `latest`.
    assert_eq!(
        t(badge(&app, "/badges/version/acme/bare.svg").await),
        ["version", "3.2.1"]
    );
    assert_eq!(
        t(badge(&app, "/badges/version/acme/bare:3.2.svg").await),
        ["version", "3.2"]
    );
    assert_eq!(
        t(badge(&app, "/badges/commit/acme/bare.svg").await),
        ["commit", "not given"]
    );
    // An invalid licence is shown as given, in grey.
    let license = badge(&app, "/badges/license/acme/bare.svg").await;
    assert_eq!(t(license.clone()), ["license", "GPLv2 or whatever"]);
    assert!(license.contains("#9f9f9f"), "lightgrey: {license}");
    assert_eq!(
        t(badge(&app, "/badges/image/acme/bare.svg").await),
        ["512B", "1 layer"]
    );
    let labels = badge(&app, "/badges/labels/acme/bare.svg").await;
    assert_eq!(t(labels.clone()), ["labels", "0%"]);
    assert!(labels.contains("#e05d44"), "red: {labels}");
}

#[tokio::test]
async fn multi_platform_images_list_their_platforms() {
    let app = TestApp::new(|_| {}).await;
    seed(
        &app,
        Seed {
            image: "acme/multi",
            platforms: &["linux/amd64", "linux/arm64"],
            ..Seed::default()
        },
    )
    .await;
    seed(
        &app,
        Seed {
            image: "acme/many",
            top: 2,
            platforms: &[
                "linux/amd64",
                "linux/arm64",
                "linux/arm/v7",
                "linux/ppc64le",
                "linux/s390x",
            ],
            ..Seed::default()
        },
    )
    .await;
    let svg = badge(&app, "/badges/platforms/acme/multi.svg").await;
    assert_eq!(texts(&svg), ["platforms", "linux/amd64 | linux/arm64"]);
    insta::assert_snapshot!("platforms_two", svg);
    let svg = badge(&app, "/badges/platforms/acme/many.svg").await;
    assert_eq!(texts(&svg), ["platforms", "5 platforms"]);
}

#[tokio::test]
async fn label_keys_may_contain_dots_and_be_absent() {
    let app = TestApp::new(|_| {}).await;
    seed(
        &app,
        Seed {
            labels: &[
                ("org.opencontainers.image.version", "2.1.0"),
                ("com.example.team.on-call", "ops@example.com"),
                ("blank", " "),
            ],
            ..Seed::default()
        },
    )
    .await;
    let t = |svg: String| texts(&svg);
    assert_eq!(
        t(badge(
            &app,
            "/badges/label/org.opencontainers.image.version/acme/web:1.0.svg"
        )
        .await),
        ["org.opencontainers.image.version", "2.1.0"]
    );
    assert_eq!(
        t(badge(&app, "/badges/label/com.example.team.on-call/acme/web.svg").await),
        ["com.example.team.on-call", "ops@example.com"]
    );
    let absent = badge(&app, "/badges/label/com.example.missing/acme/web.svg").await;
    assert_eq!(t(absent.clone()), ["com.example.missing", "not set"]);
    assert!(absent.contains("#9f9f9f"), "lightgrey: {absent}");
    assert_eq!(
        t(badge(&app, "/badges/label/blank/acme/web.svg").await),
        ["blank", "empty"]
    );
}

// ---- URL forms -----------------------------------------------------------------------------

#[tokio::test]
async fn microbadger_urls_keep_working() {
    let app = app_with_web().await;
    seed(
        &app,
        Seed {
            image: "nginx",
            tags: &["latest", "1.27"],
            top: 3,
            ..Seed::default()
        },
    )
    .await;
    // Official images, with and without `library/`, with and without the registry.
    let official = badge(&app, "/badges/image/nginx.svg").await;
    for uri in [
        "/badges/image/library/nginx.svg",
        "/badges/image/docker.io/library/nginx.svg",
        "/badges/image/nginx:latest.svg",
        "/badges/image/library/nginx:latest.svg",
    ] {
        assert_eq!(badge(&app, uri).await, official, "{uri}");
    }
    assert_eq!(
        texts(&badge(&app, "/badges/version/nginx:1.27.svg").await),
        ["version", "2.1.0"]
    );
    // org/name, with and without a tag, for MicroBadger's four kinds.
    for (kind, want) in [
        ("image", ["12.7MB", "4 layers"]),
        ("version", ["version", "2.1.0"]),
        ("commit", ["commit", "0123abc"]),
        ("license", ["license", "Apache-2.0"]),
    ] {
        for uri in [
            format!("/badges/{kind}/acme/web.svg"),
            format!("/badges/{kind}/acme/web:1.0.svg"),
        ] {
            assert_eq!(texts(&badge(&app, &uri).await), want, "{uri}");
        }
    }
}

#[tokio::test]
async fn registry_hosts_with_ports_are_split_correctly() {
    let app = TestApp::new(|cfg| cfg.registry.allow.push("127.0.0.1:5000".into())).await;
    seed(
        &app,
        Seed {
            image: "127.0.0.1:5000/team/app",
            tags: &["1.0"],
            ..Seed::default()
        },
    )
    .await;
    for uri in [
        "/badges/version/127.0.0.1:5000/team/app:1.0.svg",
        "/badges/version/127.0.0.1:5000/team/app.svg",
        "/badges/version/127.0.0.1%3A5000/team/app%3A1.0.svg",
    ] {
        assert_eq!(
            texts(&badge(&app, uri).await),
            ["version", "2.1.0"],
            "{uri}"
        );
    }
    assert_eq!(
        texts(
            &badge(
                &app,
                "/badges/label/org.opencontainers.image.vendor/127.0.0.1:5000/team/app:1.0.svg"
            )
            .await
        ),
        ["org.opencontainers.image.vendor", "Acme"]
    );
    // A registry that is not on the allow-list is refused, as an SVG.
    let resp = app
        .get("/badges/version/10.0.0.1:5000/team/app:1.0.svg")
        .await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.header("content-type"), Some(SVG));
    assert_well_formed_svg(&resp.text());
}

// ---- unknown and missing images ------------------------------------------------------------

#[tokio::test]
async fn unknown_images_say_inspecting_and_are_queued_urgent() {
    let app = TestApp::new(|_| {}).await;
    let resp = app
        .get("/badges/version/acme/new:2.0.svg?style=flat-square")
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some(SVG));
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    assert!(resp.header("etag").is_none());
    let svg = resp.text();
    assert_well_formed_svg(&svg);
    assert_eq!(texts(&svg), ["version", "inspecting"]);
    insta::assert_snapshot!("inspecting", svg);

    let stats = app.queue.stats().await.unwrap();
    assert_eq!(stats.depth[&Priority::Urgent], 1, "{stats:?}");
    assert_eq!(stats.total_depth(), 1, "{stats:?}");
    let job = app.queue.claim("test").await.unwrap().expect("a job");
    assert_eq!(job.priority, Priority::Urgent);
    assert_eq!(
        job.kind,
        JobKind::Refresh {
            image: "docker.io/acme/new".into(),
            tag: Some("2.0".into())
        }
    );
    // Nothing was cached for it.
    assert!(app.state.cache.is_empty());
}

#[tokio::test]
async fn missing_images_say_not_found() {
    let app = TestApp::new(|_| {}).await;
    let repo = app
        .store
        .add_repository("docker.io", "acme/gone", at(0))
        .await
        .unwrap();
    app.store
        .set_status(
            repo.id,
            &RepoStatus::Missing {
                reason: "the registry says the repository does not exist".into(),
            },
            Utc::now(),
        )
        .await
        .unwrap();
    let resp = app.get("/badges/image/acme/gone.svg?color=green").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some(SVG));
    let svg = resp.text();
    assert_well_formed_svg(&svg);
    assert_eq!(texts(&svg), ["image", "not found"]);
    // A status keeps its colour whatever `color` says.
    assert!(svg.contains("#e05d44") && !svg.contains("#97ca00"), "{svg}");
    insta::assert_snapshot!("not_found", svg);
    assert_eq!(app.queue.stats().await.unwrap().total_depth(), 0);
}

// ---- hostile values ------------------------------------------------------------------------

#[tokio::test]
async fn hostile_label_values_are_escaped_and_truncated() {
    let app = TestApp::new(|_| {}).await;
    let huge = "A&<".repeat(3500); // 10.5 KB
    let labels = [
        ("script", "<script>alert(1)</script>"),
        ("quotes", r#"say "hi" & 'bye' <b>"#),
        (
            "control",
            "a\u{0}b\u{7}c\u{1b}[31md\u{7f}e\u{85}f\u{202e}g\tz",
        ),
        ("huge", huge.as_str()),
        ("<svg onload=alert(1)>", "key is hostile"),
    ];
    seed(
        &app,
        Seed {
            labels: &labels,
            ..Seed::default()
        },
    )
    .await;

    let svg = badge(&app, "/badges/label/script/acme/web.svg").await;
    assert!(!svg.contains("<script"), "{svg}");
    assert!(
        svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{svg}"
    );
    insta::assert_snapshot!("hostile_script", svg);

    let svg = badge(&app, "/badges/label/quotes/acme/web.svg").await;
    assert!(
        svg.contains("say &quot;hi&quot; &amp; &apos;bye&apos; &lt;b&gt;"),
        "{svg}"
    );
    assert!(!svg.contains("<b>"), "{svg}");

    let svg = badge(&app, "/badges/label/control/acme/web.svg").await;
    assert_eq!(
        texts(&svg),
        [
            "control",
            "a\u{FFFD}b\u{FFFD}c\u{FFFD}[31md\u{FFFD}e\u{FFFD}f\u{FFFD}g z"
        ]
    );

    let svg = badge(&app, "/badges/label/huge/acme/web.svg").await;
    assert!(svg.len() < 4096, "{} bytes", svg.len());
    let shown = texts(&svg)[1].clone();
    assert!(shown.ends_with('…'), "{shown}");
    assert!(shown.starts_with("A&amp;&lt;A&amp;&lt;"), "{shown}");
    let unescaped = shown
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .chars()
        .count();
    assert_eq!(unescaped, 64);

    // The key comes from the URL; a hostile one is escaped too.
    let svg = badge(
        &app,
        "/badges/label/%3Csvg%20onload=alert(1)%3E/acme/web.svg",
    )
    .await;
    assert_eq!(
        texts(&svg),
        ["&lt;svg onload=alert(1)&gt;", "key is hostile"]
    );

    // So is the `label` parameter.
    let svg = badge(
        &app,
        "/badges/version/acme/web.svg?label=%3C%2Ftext%3E%3Cscript%3Ex%3C%2Fscript%3E%22%27%26",
    )
    .await;
    assert!(
        !svg.contains("<script") && !svg.contains("</text><script"),
        "{svg}"
    );
    assert_eq!(
        texts(&svg)[0],
        "&lt;/text&gt;&lt;script&gt;x&lt;/script&gt;&quot;&apos;&amp;"
    );

    // Every style escapes.
    for style in ["flat", "flat-square", "plastic", "for-the-badge", "social"] {
        let svg = badge(
            &app,
            &format!("/badges/label/script/acme/web.svg?style={style}"),
        )
        .await;
        assert!(!svg.to_lowercase().contains("<script"), "{style}: {svg}");
    }
}

// ---- bad requests --------------------------------------------------------------------------

#[tokio::test]
async fn bad_requests_are_400_svg_error_badges() {
    let app = app_with_web().await;
    let cases = [
        ("/badges/size/acme/web.svg", "unknown badge kind `size`"),
        ("/badges/Image/acme/web.svg", "unknown badge kind `Image`"),
        ("/badges/image/acme/web", "badge URLs end in .svg"),
        ("/badges/image.svg", "no image name given"),
        ("/badges/label/acme.svg", "no image name given"),
        (
            "/badges/image/acme/web.svg?style=round",
            "unknown style `round`",
        ),
        (
            "/badges/image/acme/web.svg?color=purple",
            "bad color `purple`",
        ),
        (
            "/badges/image/acme/web.svg?color=red%3Bbackground:url(x)",
            "bad color",
        ),
        (
            "/badges/image/acme/web.svg?labelColor=%22%20onload=%22alert(1)",
            "bad labelColor",
        ),
        ("/badges/image/acme/web.svg?colorB=rgb(1,2,3)", "bad colorB"),
        ("/badges/image/acme/web.svg?colorA=%23abcd", "bad colorA"),
        ("/badges/image/Acme/Web.svg", "must be lowercase"),
        ("/badges/image/acme/web:b@d.svg", "invalid"),
        (
            "/badges/image/acme/web@sha256:0000000000000000000000000000000000000000000000000000000000000001.svg",
            "badges follow a tag",
        ),
    ];
    for (uri, want) in cases {
        let resp = app.get(uri).await;
        assert_eq!(resp.status, 400, "{uri}: {}", resp.text());
        assert_eq!(resp.header("content-type"), Some(SVG), "{uri}");
        assert_eq!(resp.header("cache-control"), Some("no-store"), "{uri}");
        let svg = resp.text();
        assert_well_formed_svg(&svg);
        let message = error_message(&resp);
        assert!(message.starts_with("badge | "), "{uri}: {message}");
        assert!(message.contains(want), "{uri}: {message}");
    }
    insta::assert_snapshot!(
        "error_bad_kind",
        app.get("/badges/size/acme/web.svg").await.text()
    );
    // Nothing was queued or cached by any of them.
    assert_eq!(app.queue.stats().await.unwrap().total_depth(), 0);
    assert!(app.state.cache.is_empty());
}

// ---- caching -------------------------------------------------------------------------------

#[tokio::test]
async fn cache_control_headers() {
    let app = app_with_web().await;
    let repo = app
        .store
        .add_repository("docker.io", "acme/gone", at(0))
        .await
        .unwrap();
    app.store
        .set_status(
            repo.id,
            &RepoStatus::Missing {
                reason: "gone".into(),
            },
            Utc::now(),
        )
        .await
        .unwrap();
    let mut seen = serde_json::Map::new();
    for (name, uri) in [
        ("ready", "/badges/image/acme/web:1.0.svg"),
        ("ready_cached", "/badges/image/acme/web:1.0.svg"),
        ("inspecting", "/badges/image/acme/unknown.svg"),
        ("not_found", "/badges/image/acme/gone.svg"),
        ("bad_kind", "/badges/nope/acme/web.svg"),
    ] {
        let resp = app.get(uri).await;
        seen.insert(
            name.into(),
            serde_json::json!({
                "status": resp.status.as_u16(),
                "content-type": resp.header("content-type"),
                "cache-control": resp.header("cache-control"),
                "etag": resp.header("etag").map(|e| if e.starts_with('"') && e.ends_with('"') { "strong" } else { e }),
                "x-content-type-options": resp.header("x-content-type-options"),
            }),
        );
    }
    insta::assert_json_snapshot!("cache_headers", seen);
}

#[tokio::test]
async fn etag_and_if_none_match_give_304() {
    let app = app_with_web().await;
    let uri = "/badges/version/acme/web:1.0.svg";
    let first = app.get(uri).await;
    let etag = first.header("etag").expect("an ETag").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

    let req = |inm: &str| {
        axum::http::Request::get(uri)
            .header("if-none-match", inm)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let again = app.request(req(&etag)).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert_eq!(
        again.header("cache-control"),
        Some("public, max-age=60, s-maxage=60")
    );
    let listed = app.request(req(&format!("\"other\", {etag}"))).await;
    assert_eq!(listed.status, 304);
    let stale = app.request(req("\"0123\"")).await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body, first.body);

    // Another style is another body, so another ETag.
    let square = app.get(&format!("{uri}?style=flat-square")).await;
    assert_ne!(square.header("etag"), Some(etag.as_str()));
}

#[tokio::test]
async fn rendered_badges_are_served_from_memory_until_the_image_changes() {
    let app = app_with_web().await;
    let uri = "/badges/version/acme/web:1.0.svg?style=plastic";
    let first = badge(&app, uri).await;
    assert_eq!(app.state.cache.len(), 1);
    let (hits, _) = app.state.cache.counts();
    assert_eq!(badge(&app, uri).await, first);
    assert_eq!(app.state.cache.counts().0, hits + 1);
    // The query is part of the key.
    badge(&app, "/badges/version/acme/web:1.0.svg").await;
    assert_eq!(app.state.cache.len(), 2);

    // A push moves the tag; the change follower drops the repository's entries (done by hand
    // here: the in-process app runs no follower).
    seed(
        &app,
        Seed {
            top: 7,
            labels: &[("org.opencontainers.image.version", "2.2.0")],
            ..Seed::default()
        },
    )
    .await;
    assert_eq!(badge(&app, uri).await, first, "still cached");
    app.state.cache.invalidate("docker.io/acme/web");
    assert!(app.state.cache.is_empty());
    let updated = badge(&app, uri).await;
    assert_eq!(texts(&updated), ["version", "2.2.0"]);
}

#[tokio::test]
async fn head_requests_get_headers_only() {
    let app = app_with_web().await;
    let resp = app
        .request(
            axum::http::Request::head("/badges/image/acme/web.svg")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some(SVG));
    assert!(resp.body.is_empty());
}
