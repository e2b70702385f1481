//! HTML pages through the real router and middleware (in process): home, search, image,
//! version, inspecting and error pages, static files, escaping of hostile label values and the
//! security headers. Assertions are CSS selectors over the parsed HTML (scraper).
//!
//! The store is seeded with real inspections: small manifest and config documents run through
//! `inspect_image`, saved with `add_repository` + `save_tag`.

mod support;

use std::collections::BTreeMap;

use chrono::Utc;
use microbadger::inspect::{ImageInput, Platform, PlatformEntry, inspect_image};
use microbadger::oci::{ImageConfig, OciImageManifest};
use microbadger::queue::{JobKind, Priority};
use microbadger::reference::ImageRef;
use microbadger::registry::Inspection;
use microbadger::registry::hub::HubInfo;
use microbadger::store::RepoStatus;
use scraper::{ElementRef, Html, Selector};
use support::web::{TestApp, TestResponse, at, digest};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const PUBLIC_URL: &str = "https://badges.example.org";

/// Labels of a well-labelled image (score 100).
const FULL_LABELS: &[(&str, &str)] = &[
    ("org.opencontainers.image.title", "Acme Web"),
    ("org.opencontainers.image.description", "A small web server"),
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
    ("org.opencontainers.image.url", "https://acme.example/web"),
    ("org.opencontainers.image.licenses", "Apache-2.0"),
];

/// An inspection of `image:tag` at `digest(top)` made by the real engine.
fn inspection(
    image: &str,
    tag: &str,
    top: u32,
    labels: &[(&str, &str)],
    layers: &[(u64, &str)],
) -> Inspection {
    let manifest_layers: Vec<serde_json::Value> = layers
        .iter()
        .enumerate()
        .map(|(i, (size, _))| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "size": size,
                "digest": digest(top * 100 + i as u32 + 1),
            })
        })
        .collect();
    let history: Vec<serde_json::Value> = layers
        .iter()
        .map(|(_, command)| {
            serde_json::json!({"created": "2024-03-01T10:00:00Z", "created_by": command})
        })
        .collect();
    let manifest: OciImageManifest = serde_json::from_value(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 100,
                   "digest": digest(top * 100)},
        "layers": manifest_layers,
    }))
    .unwrap();
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let config: ImageConfig = serde_json::from_value(serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "created": "2024-03-01T10:00:00Z",
        "config": {"Labels": labels, "Cmd": ["serve", "--port", "8080"],
                   "ExposedPorts": {"8080/tcp": {}}, "Env": ["PATH=/usr/bin", "SECRET=hunter2"]},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": history,
    }))
    .unwrap();
    let top_digest = digest(top);
    let version = inspect_image(&ImageInput {
        manifest_digest: &top_digest,
        media_type: OCI_MANIFEST,
        manifest: &manifest,
        config: &config,
        index_annotations: None,
    });
    Inspection {
        reference: ImageRef::parse(&format!("{image}:{tag}")).unwrap(),
        digest: top_digest.clone(),
        media_type: OCI_MANIFEST.into(),
        platforms: vec![PlatformEntry {
            platform: Platform::new("linux", "amd64", None),
            digest: top_digest,
            size: 500,
            media_type: OCI_MANIFEST.into(),
        }],
        images: vec![version],
    }
}

const LAYERS: &[(u64, &str)] = &[
    (2_811_478, "/bin/sh -c #(nop) ADD file:0123 in / "),
    (9_437_184, "/bin/sh -c apk add --no-cache nginx"),
    (1_200, "/bin/sh -c #(nop) COPY file:abcd in /etc/nginx/ "),
];

/// Save `image:tag` at `digest(top)`; returns the repository id.
async fn seed(
    app: &TestApp,
    image: &str,
    tag: &str,
    top: u32,
    labels: &[(&str, &str)],
    when: i64,
) -> i64 {
    let r = ImageRef::parse(image).unwrap();
    let repo = app
        .store
        .add_repository(r.registry(), r.repository(), at(0))
        .await
        .unwrap();
    let insp = inspection(image, tag, top, labels, LAYERS);
    app.store
        .save_tag(repo.id, tag, &insp, at(when))
        .await
        .unwrap();
    repo.id
}

async fn app() -> TestApp {
    TestApp::new(|c| c.web.public_url = PUBLIC_URL.into()).await
}

fn html(resp: &TestResponse) -> Html {
    assert!(
        resp.header("content-type")
            .unwrap_or_default()
            .starts_with("text/html"),
        "not HTML: {:?}",
        resp.header("content-type")
    );
    Html::parse_document(&resp.text())
}

fn all<'a>(doc: &'a Html, css: &str) -> Vec<ElementRef<'a>> {
    doc.select(&Selector::parse(css).unwrap()).collect()
}

fn one<'a>(doc: &'a Html, css: &str) -> ElementRef<'a> {
    let found = all(doc, css);
    assert_eq!(
        found.len(),
        1,
        "expected one `{css}`, found {}",
        found.len()
    );
    found[0]
}

fn text(e: ElementRef<'_>) -> String {
    e.text()
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn attr<'a>(e: ElementRef<'a>, name: &str) -> &'a str {
    e.value()
        .attr(name)
        .unwrap_or_else(|| panic!("no {name} on {:?}", e.value()))
}

/// No inline script, style or event handler anywhere (the CSP forbids them).
fn assert_no_inline_code(doc: &Html) {
    for s in all(doc, "script") {
        assert!(
            s.value().attr("src").is_some(),
            "inline script: {}",
            s.html()
        );
        assert!(text(s).is_empty());
    }
    assert!(all(doc, "style, [style]").is_empty(), "inline style");
    for e in all(doc, "*") {
        for (name, _) in e.value().attrs() {
            assert!(!name.starts_with("on"), "event handler attribute {name}");
        }
    }
}

#[tokio::test]
async fn home_lists_recent_and_best_labelled_images() {
    let app = app().await;
    seed(&app, "acme/web", "1.0", 1, FULL_LABELS, 10).await;
    seed(&app, "acme/bare", "latest", 2, &[], 20).await;
    let resp = app.get("/").await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("cache-control"),
        Some("public, max-age=60, s-maxage=60")
    );
    let doc = html(&resp);
    assert_no_inline_code(&doc);
    let form = one(&doc, "form.hero-search");
    assert_eq!(attr(form, "action"), "/search");
    assert_eq!(attr(form, "method"), "get");
    one(&doc, "form.hero-search input[name=q]");

    let recent: Vec<String> = all(&doc, "#recent li a.image-name")
        .into_iter()
        .map(text)
        .collect();
    assert_eq!(recent, ["acme/bare:latest", "acme/web:1.0"], "newest first");
    let best = all(&doc, "#best li");
    assert_eq!(text(one_in(best[0], "a.image-name")), "acme/web:1.0");
    assert_eq!(
        attr(one_in(best[0], "a.image-name"), "href"),
        "/images/acme/web:1.0"
    );
    assert_eq!(text(one_in(best[0], ".score")), "100%");
    assert!(
        one_in(best[0], ".score")
            .value()
            .classes()
            .any(|c| c == "good")
    );
    assert!(text(best[0]).contains("Apache-2.0"), "{}", text(best[0]));
    assert!(text(best[0]).contains("11.7 MiB"), "{}", text(best[0]));
    assert_eq!(text(one_in(best[1], "a.image-name")), "acme/bare:latest");
    assert_eq!(text(one_in(best[1], ".score")), "0%");
    assert!(text(one(&doc, ".hint")).starts_with("2 images known"));
}

fn one_in<'a>(e: ElementRef<'a>, css: &str) -> ElementRef<'a> {
    let found: Vec<_> = e.select(&Selector::parse(css).unwrap()).collect();
    assert_eq!(found.len(), 1, "expected one `{css}` in {}", e.html());
    found[0]
}

#[tokio::test]
async fn home_page_without_images_says_so() {
    let app = app().await;
    let doc = html(&app.get("/").await);
    assert_eq!(all(&doc, "p.empty").len(), 2);
}

#[tokio::test]
async fn image_page_shows_every_section_with_the_right_values() {
    let app = app().await;
    let id = seed(&app, "acme/web", "1.0", 1, FULL_LABELS, 10).await;
    seed(
        &app,
        "acme/web",
        "2.0",
        2,
        &[("org.opencontainers.image.version", "3.0")],
        20,
    )
    .await;
    app.store
        .set_hub_info(
            id,
            &HubInfo {
                description: Some("Hub says: a web server".into()),
                star_count: Some(1234),
                pull_count: Some(5_600_000),
                last_updated: Some("2024-04-01T00:00:00Z".into()),
                is_official: false,
            },
        )
        .await
        .unwrap();

    let resp = app.get("/images/acme/web:1.0").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.header("cache-control"),
        Some("public, max-age=60, s-maxage=60")
    );
    let doc = html(&resp);
    assert_no_inline_code(&doc);
    assert_eq!(
        text(one(&doc, "head > title")),
        "acme/web:1.0 · MicroBadger"
    );
    assert_eq!(text(one(&doc, "h1")), "acme/web:1.0");
    assert_eq!(text(one(&doc, ".subtitle")), "Acme Web");
    assert_eq!(text(one(&doc, ".description")), "A small web server");
    assert_eq!(text(one(&doc, "#hub-stars")), "★ 1.2K stars");
    assert_eq!(text(one(&doc, "#hub-pulls")), "5.6M pulls");
    assert_eq!(
        attr(one(&doc, "a.chip.hub"), "href"),
        "https://hub.docker.com/r/acme/web"
    );
    assert_eq!(text(one(&doc, "#pull-cmd")), "docker pull acme/web:1.0");

    // Summary: derived facts, links only for URLs, no environment values.
    let facts: BTreeMap<String, String> = all(&doc, "#summary .fact")
        .into_iter()
        .map(|f| (text(one_in(f, "dt")), text(one_in(f, "dd"))))
        .collect();
    assert_eq!(facts["Version"], "2.1.0");
    assert_eq!(facts["Commit"], "0123abcd4567ef890123abcd4567ef890123abcd");
    assert_eq!(facts["License"], "Apache-2.0 · Apache License 2.0");
    assert_eq!(facts["Download size"], "11.7 MiB");
    assert_eq!(facts["Layers"], "3");
    assert_eq!(facts["Digest"], digest(1));
    assert_eq!(facts["Command"], "serve --port 8080");
    assert_eq!(facts["Ports"], "8080/tcp");
    assert_eq!(facts["Built"], "2024-03-01 10:00 UTC");
    assert!(facts["Environment"].starts_with("2 variables"));
    assert!(!resp.text().contains("hunter2"));
    let commit = one(&doc, "#summary dd.mono a");
    assert_eq!(
        attr(commit, "href"),
        "https://github.com/acme/web/tree/0123abcd4567ef890123abcd4567ef890123abcd"
    );

    // Tags: each with its own version's figures, newest first, the shown one marked.
    let rows = all(&doc, "#tags tbody tr");
    assert_eq!(rows.len(), 2);
    let cells = |r: ElementRef<'_>| -> Vec<String> {
        r.select(&Selector::parse("th, td").unwrap())
            .map(text)
            .collect()
    };
    assert_eq!(cells(rows[0])[0], "2.0");
    let v1 = cells(rows[1]);
    assert_eq!(v1[0], "1.0");
    assert_eq!(v1[1], format!("{:012x}", 0)); // short digest of digest(1): first 12 hex
    assert_eq!(v1[2], "11.7 MiB");
    assert_eq!(v1[3], "3");
    assert_eq!(v1[4], "2024-03-01 10:00 UTC");
    assert_eq!(v1[5], "linux/amd64");
    assert!(rows[1].value().classes().any(|c| c == "current"));
    assert_eq!(
        attr(one_in(rows[1], "td.mono a"), "href"),
        format!("/images/acme/web/version/{}", digest(1))
    );
    assert_eq!(
        attr(one_in(rows[0], "th a"), "href"),
        "/images/acme/web:2.0"
    );

    // Labels.
    let labels = all(&doc, "#labels-table tbody tr");
    assert_eq!(labels.len(), FULL_LABELS.len());
    let source = labels
        .iter()
        .find(|r| text(one_in(**r, "th")) == "org.opencontainers.image.source")
        .unwrap();
    let link = one_in(*source, "td a");
    assert_eq!(attr(link, "href"), "https://github.com/acme/web");
    assert_eq!(attr(link, "rel"), "nofollow noopener");

    // Compliance: score, both schemas with key tables, nothing to fix for OCI.
    assert_eq!(text(one(&doc, "#compliance-score")), "100%");
    assert_eq!(attr(one(&doc, "#compliance meter"), "value"), "100");
    let oci = one(&doc, "#schema-oci");
    assert!(text(one_in(oci, "summary")).contains("100%"));
    assert!(all(&doc, "#schema-oci tbody tr.present").len() >= 9);
    assert!(all(&doc, "#schema-oci tbody tr.invalid").is_empty());
    one(&doc, "#schema-oci p.ok");
    // Label Schema keys are all missing, with fix lines (Dockerfile, build args, buildx).
    assert!(!all(&doc, "#schema-label-schema tbody tr.missing").is_empty());
    let dockerfile = text(one(&doc, "#fix-label-schema-dockerfile"));
    assert!(
        dockerfile.contains("LABEL org.label-schema.name=\"Acme Web\""),
        "{dockerfile}"
    );
    assert!(dockerfile.contains("ARG BUILD_DATE"), "{dockerfile}");
    assert!(
        text(one(&doc, "#fix-label-schema-build"))
            .starts_with("docker build \\ --build-arg BUILD_DATE=")
    );
    assert!(
        text(one(&doc, "#fix-label-schema-buildx"))
            .contains("--label 'org.label-schema.name=Acme Web'")
    );

    // Layers: table and chart.
    let layers = all(&doc, "#layers-table tbody tr");
    assert_eq!(layers.len(), 3);
    assert_eq!(
        text(one_in(layers[1], "td.command")),
        "RUN apk add --no-cache nginx"
    );
    assert_eq!(text(one_in(layers[1], "td[data-bytes]")), "9.0 MiB");
    let bars: Vec<&str> = all(&doc, "svg.layer-chart rect.fill")
        .into_iter()
        .map(|r| attr(r, "width"))
        .collect();
    assert_eq!(bars, ["29.79%", "100.00%", "0.40%"]);
    assert_eq!(all(&doc, "svg.layer-chart[role=img] > title").len(), 1);

    // Badges: every kind, previews relative, snippets on the public URL.
    let imgs: Vec<&str> = all(&doc, "#badges img")
        .into_iter()
        .map(|i| attr(i, "src"))
        .collect();
    assert_eq!(
        imgs,
        [
            "image",
            "version",
            "commit",
            "license",
            "created",
            "platforms",
            "labels"
        ]
        .map(|k| format!("/badges/{k}/acme/web:1.0.svg"))
    );
    assert_eq!(
        text(one(&doc, "#badge-image-md")),
        format!(
            "[![Size and layers of acme/web:1.0]({PUBLIC_URL}/badges/image/acme/web:1.0.svg)]({PUBLIC_URL}/images/acme/web:1.0)"
        )
    );
    assert_eq!(
        text(one(&doc, "#badge-version-url")),
        format!("{PUBLIC_URL}/badges/version/acme/web:1.0.svg")
    );
    assert!(
        text(one(&doc, "#badge-license-html"))
            .starts_with(&format!("<a href=\"{PUBLIC_URL}/images/acme/web:1.0\">"))
    );
    // Copy buttons are progressive enhancement: hidden until the script shows them.
    let buttons = all(&doc, "button.copy");
    assert!(buttons.len() >= 21);
    for b in buttons {
        assert!(b.value().attr("hidden").is_some());
        assert!(
            doc.select(&Selector::parse(&format!("#{}", attr(b, "data-copy"))).unwrap())
                .next()
                .is_some()
        );
    }
}

#[tokio::test]
async fn image_page_without_a_tag_shows_latest_and_untagged_badges() {
    let app = app().await;
    seed(&app, "acme/web", "latest", 1, FULL_LABELS, 10).await;
    seed(&app, "acme/web", "0.9", 2, &[], 20).await;
    let doc = html(&app.get("/images/acme/web").await);
    assert_eq!(text(one(&doc, "head > title")), "acme/web · MicroBadger");
    assert_eq!(
        text(one(&doc, "h1")),
        "acme/web:latest",
        "the tag shown is named"
    );
    assert_eq!(text(one(&doc, "#pull-cmd")), "docker pull acme/web:latest");
    assert_eq!(
        attr(one(&doc, "#badge-image img"), "src"),
        "/badges/image/acme/web.svg"
    );
    let current = one(&doc, "#tags tr.current");
    assert_eq!(text(one_in(current, "th")), "latest");
}

#[tokio::test]
async fn image_pages_come_from_the_render_cache_until_the_repository_changes() {
    let app = app().await;
    seed(&app, "acme/web", "1.0", 1, FULL_LABELS, 10).await;
    let first = app.get("/images/acme/web:1.0").await;
    let (hits, _) = app.state.cache.counts();
    let second = app.get("/images/acme/web:1.0").await;
    assert_eq!(app.state.cache.counts().0, hits + 1);
    assert_eq!(first.body, second.body);
    assert_eq!(
        second.header("cache-control"),
        Some("public, max-age=60, s-maxage=60")
    );
    assert!(second.header("etag").is_some());
    app.state.cache.invalidate("docker.io/acme/web");
    assert_eq!(app.get("/images/acme/web:1.0").await.status, 200);
}

#[tokio::test]
async fn label_values_are_links_only_when_they_are_http_urls() {
    let app = app().await;
    let labels = [
        ("a.https", "https://acme.example/docs?x=1&y=2"),
        ("b.http", "http://acme.example/"),
        ("c.javascript", "javascript:alert(document.cookie)"),
        ("d.data", "data:text/html,<script>alert(1)</script>"),
        ("e.vbscript", "vbscript:msgbox(1)"),
        ("f.relative", "/etc/passwd"),
        ("g.spaced", "see https://acme.example"),
        ("h.ftp", "ftp://acme.example/file"),
    ];
    seed(&app, "acme/links", "1", 1, &labels, 10).await;
    let doc = html(&app.get("/images/acme/links:1").await);
    let hrefs: Vec<&str> = all(&doc, "#labels-table a")
        .into_iter()
        .map(|a| attr(a, "href"))
        .collect();
    assert_eq!(
        hrefs,
        ["https://acme.example/docs?x=1&y=2", "http://acme.example/"]
    );
    for a in all(&doc, "#labels-table a") {
        assert_eq!(attr(a, "rel"), "nofollow noopener");
    }
    let rows = all(&doc, "#labels-table tbody tr");
    let js = rows
        .iter()
        .find(|r| text(one_in(**r, "th")) == "c.javascript")
        .unwrap();
    assert_eq!(text(one_in(*js, "td")), "javascript:alert(document.cookie)");
    assert!(
        all(
            &doc,
            "a[href^=javascript], a[href^=data], a[href^=vbscript]"
        )
        .is_empty()
    );
}

#[tokio::test]
async fn hostile_label_values_are_escaped() {
    let app = app().await;
    let long = format!("<b>{}</b>", "A".repeat(10 * 1024));
    let labels = [
        (
            "org.opencontainers.image.title",
            "<script>alert('title')</script>",
        ),
        (
            "org.opencontainers.image.description",
            "\"><img src=x onerror=alert(1)>",
        ),
        ("quotes", "' onmouseover='alert(1)' \" onfocus=\"alert(2)"),
        ("control", "red\u{1b}[31m bell\u{7} nul\u{0} del\u{7f}"),
        ("bidi", "invoice\u{202e}fdp.exe"),
        ("long", long.as_str()),
        ("<script>key</script>", "value"),
        (
            "org.opencontainers.image.url",
            "https://x.example/\"><script>alert(3)</script>",
        ),
    ];
    seed(&app, "acme/hostile", "1", 1, &labels, 10).await;
    let resp = app.get("/images/acme/hostile:1").await;
    assert_eq!(resp.status, 200);
    let body = resp.text();
    for raw in [
        "<script>alert",
        "<img src=x",
        "<b>AAAA",
        "onmouseover='",
        "\" onfocus=\"",
    ] {
        assert!(!body.contains(raw), "unescaped {raw:?}");
    }
    for c in ['\u{0}', '\u{1b}', '\u{7}', '\u{7f}', '\u{202e}'] {
        assert!(!body.contains(c), "raw control character {c:?}");
    }
    let doc = html(&resp);
    assert_no_inline_code(&doc);
    assert!(all(&doc, "img:not([src^='/badges/']):not([src^='/static/'])").is_empty());
    assert!(all(&doc, "b").is_empty());
    assert_eq!(
        text(one(&doc, ".subtitle")),
        "<script>alert('title')</script>"
    );
    assert_eq!(
        text(one(&doc, ".description")),
        "\"><img src=x onerror=alert(1)>"
    );
    let value = |key: &str| {
        let rows = all(&doc, "#labels-table tbody tr");
        let row = rows
            .iter()
            .find(|r| text(one_in(**r, "th")) == key)
            .copied()
            .unwrap_or_else(|| panic!("no {key}"));
        one_in(row, "td").text().collect::<String>()
    };
    assert_eq!(
        value("quotes"),
        "' onmouseover='alert(1)' \" onfocus=\"alert(2)"
    );
    assert_eq!(
        value("control"),
        "red\\u{1b}[31m bell\\u{7} nul\\u{0} del\\u{7f}"
    );
    assert_eq!(value("bidi"), "invoice\\u{202e}fdp.exe");
    assert_eq!(value("<script>key</script>"), "value");
    let long_shown = value("long");
    assert!(long_shown.starts_with("<b>AAAA"));
    assert!(
        long_shown.ends_with("(8247 more characters)"),
        "{}",
        &long_shown[long_shown.len() - 40..]
    );
    // A URL with quotes in it is percent-encoded in the href, never breaks out of it.
    let url_link = all(&doc, "#labels-table a");
    assert_eq!(url_link.len(), 1);
    assert_eq!(
        attr(url_link[0], "href"),
        "https://x.example/%22%3E%3Cscript%3Ealert(3)%3C/script%3E"
    );
    // The title is untrusted too.
    assert_eq!(
        all(&doc, "head > *")
            .iter()
            .filter(|e| e.value().name() == "script")
            .count(),
        1
    );
}

#[tokio::test]
async fn unknown_image_gets_an_inspecting_page_and_an_urgent_job_then_the_image_page() {
    let app = app().await;
    let resp = app.get("/images/acme/new:2.0").await;
    assert_eq!(resp.status, 202, "{}", resp.text());
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    let doc = html(&resp);
    assert_no_inline_code(&doc);
    assert_eq!(attr(one(&doc, "meta[http-equiv=refresh]"), "content"), "3");
    assert_eq!(
        attr(one(&doc, "[data-poll]"), "data-poll"),
        "/images/acme/new:2.0?poll=1"
    );
    assert!(attr(one(&doc, "script"), "src").starts_with("/static/app.js?v="));
    assert_eq!(text(one(&doc, "h1")), "Inspecting acme/new:2.0");
    one(&doc, "#poll-status[role=status]");

    let job = app
        .queue
        .claim("test-worker")
        .await
        .unwrap()
        .expect("a queued job");
    assert_eq!(job.priority, Priority::Urgent);
    assert_eq!(
        job.kind,
        JobKind::Refresh {
            image: "docker.io/acme/new".into(),
            tag: Some("2.0".into())
        }
    );

    // The poll URL says "still inspecting" without queueing anything...
    let enqueued = app.queue.stats().await.unwrap().enqueued_total;
    for _ in 0..40 {
        let poll = app.get("/images/acme/new:2.0?poll=1").await;
        assert_eq!(poll.status, 202);
        assert_eq!(poll.text(), "inspecting");
        assert_eq!(poll.header("cache-control"), Some("no-store"));
    }
    assert_eq!(app.queue.stats().await.unwrap().enqueued_total, enqueued);

    // ... and "ready" once the worker has saved the image, which the page then shows.
    seed(&app, "acme/new", "2.0", 7, FULL_LABELS, 10).await;
    let poll = app.get("/images/acme/new:2.0?poll=1").await;
    assert_eq!((poll.status.as_u16(), poll.text().as_str()), (200, "ready"));
    let page = app.get("/images/acme/new:2.0").await;
    assert_eq!(page.status, 200);
    assert_eq!(text(one(&html(&page), "h1")), "acme/new:2.0");
}

#[tokio::test]
async fn missing_images_and_tags_are_404_pages_that_say_so() {
    let app = app().await;
    let repo = app
        .store
        .add_repository("docker.io", "acme/gone", at(0))
        .await
        .unwrap();
    app.store
        .set_status(
            repo.id,
            &RepoStatus::Missing {
                reason: "the registry says it does not exist".into(),
            },
            Utc::now(),
        )
        .await
        .unwrap();
    let resp = app.get("/images/acme/gone").await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    let doc = html(&resp);
    assert_eq!(text(one(&doc, "h1")), "Not found");
    assert_eq!(
        text(one(&doc, ".message")),
        "acme/gone was not found: the registry says it does not exist"
    );
    assert_eq!(
        app.get("/images/acme/gone?poll=1").await.status,
        200,
        "the poll is done"
    );

    // An unknown tag of an image checked a moment ago.
    seed(&app, "acme/web", "1.0", 1, FULL_LABELS, 0).await;
    let id = app
        .store
        .repository("docker.io", "acme/web")
        .await
        .unwrap()
        .unwrap()
        .id;
    app.store
        .set_status(id, &RepoStatus::Inspected, Utc::now())
        .await
        .unwrap();
    let resp = app.get("/images/acme/web:nope").await;
    assert_eq!(resp.status, 404);
    assert_eq!(
        text(one(&html(&resp), ".message")),
        "acme/web:nope was not found: no tag nope"
    );

    // A digest no tag points at.
    let resp = app
        .get(&format!("/images/acme/web/version/{}", digest(99)))
        .await;
    assert_eq!(resp.status, 404);
    assert!(
        text(one(&html(&resp), ".message")).starts_with("no tag of acme/web points at sha256:")
    );

    // Not a page at all.
    let resp = app.get("/no/such/page").await;
    assert_eq!(resp.status, 404);
    assert_eq!(text(one(&html(&resp), "h1")), "Not found");
}

#[tokio::test]
async fn bad_names_are_400_with_the_reason() {
    let app = app().await;
    for (uri, reason) in [
        ("/images/Acme/Web", "lowercase"),
        ("/images/acme/web:bad%20tag", "tag"),
        ("/images/acme//web", ""),
        ("/images/acme/web/version/sha256:1234", "digest"),
    ] {
        let resp = app.get(uri).await;
        assert_eq!(resp.status, 400, "{uri}: {}", resp.text());
        let doc = html(&resp);
        assert_eq!(text(one(&doc, "h1")), "Bad request");
        let message = text(one(&doc, ".message")).to_lowercase();
        assert!(
            !message.is_empty() && message.contains(reason),
            "{uri}: {message}"
        );
    }
    assert!(
        app.queue.claim("w").await.unwrap().is_none(),
        "nothing queued"
    );
}

#[tokio::test]
async fn registries_not_on_the_allow_list_are_403_with_the_reason() {
    let app = app().await;
    let resp = app.get("/images/registry.evil.example/team/app:1").await;
    assert_eq!(resp.status, 403);
    let doc = html(&resp);
    assert_eq!(text(one(&doc, "h1")), "Not allowed");
    assert!(
        text(one(&doc, ".message")).contains("registry.evil.example"),
        "{}",
        text(one(&doc, ".message"))
    );
    assert_eq!(
        app.get("/images/registry.evil.example/team/app:1?poll=1")
            .await
            .status,
        403
    );
    assert!(
        app.queue.claim("w").await.unwrap().is_none(),
        "nothing queued"
    );
}

#[tokio::test]
async fn version_page_shows_one_digest() {
    let app = app().await;
    seed(&app, "acme/web", "1.0", 1, FULL_LABELS, 10).await;
    seed(&app, "acme/web", "stable", 1, FULL_LABELS, 15).await;
    seed(&app, "acme/web", "2.0", 2, &[], 20).await;
    let path = format!("/images/acme/web/version/{}", digest(1));
    let resp = app.get(&path).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.header("cache-control"),
        Some("public, max-age=60, s-maxage=60")
    );
    let doc = html(&resp);
    assert_no_inline_code(&doc);
    assert_eq!(text(one(&doc, "h1")), format!("acme/web@{:012x}", 0));
    let here: Vec<String> = all(&doc, ".tags-here a").into_iter().map(text).collect();
    assert_eq!(here, ["1.0", "stable"]);
    assert_eq!(
        text(one(&doc, "#pull-cmd")),
        format!("docker pull acme/web@{}", digest(1))
    );
    let current: Vec<String> = all(&doc, "#tags tr.current th")
        .into_iter()
        .map(text)
        .collect();
    assert_eq!(current, ["stable", "1.0"]);
    assert_eq!(text(one(&doc, "#compliance-score")), "100%");
    assert_eq!(all(&doc, "#layers-table tbody tr").len(), 3);
    assert_eq!(
        attr(one(&doc, "#badge-image img"), "src"),
        "/badges/image/acme/web:1.0.svg"
    );

    // `name@digest` and other spellings redirect to the one URL of each page.
    let resp = app.get(&format!("/images/acme/web@{}", digest(1))).await;
    assert_eq!(resp.status, 308);
    assert_eq!(resp.header("location"), Some(path.as_str()));
    let resp = app
        .get(&format!("/images/docker.io/acme/web/version/{}", digest(1)))
        .await;
    assert_eq!(resp.header("location"), Some(path.as_str()));
}

#[tokio::test]
async fn other_spellings_of_a_name_redirect_to_the_familiar_one() {
    let app = app().await;
    for (from, to) in [
        ("/images/library/nginx", "/images/nginx"),
        ("/images/docker.io/library/nginx:1.27", "/images/nginx:1.27"),
        ("/images/index.docker.io/acme/web", "/images/acme/web"),
        ("/images/acme/web/", "/images/acme/web"),
    ] {
        let resp = app.get(from).await;
        assert_eq!(resp.status, 308, "{from}");
        assert_eq!(resp.header("location"), Some(to), "{from}");
    }
}

#[tokio::test]
async fn search_lists_matches_and_offers_a_direct_lookup() {
    let app = app().await;
    seed(&app, "acme/web", "1.0", 1, FULL_LABELS, 10).await;
    seed(&app, "acme/webapp", "1.0", 2, &[], 10).await;
    seed(&app, "other/db", "1.0", 3, &[], 10).await;
    let resp = app.get("/search?q=WEB").await;
    assert_eq!(resp.status, 200);
    let doc = html(&resp);
    let names: Vec<String> = all(&doc, "#results a.image-name")
        .into_iter()
        .map(text)
        .collect();
    assert_eq!(names, ["acme/web", "acme/webapp"]);
    assert_eq!(attr(one(&doc, "#site-q"), "value"), "WEB");

    let doc = html(&app.get("/search?q=nginx%3A1.27").await);
    let direct = one(&doc, ".direct a");
    assert_eq!(attr(direct, "href"), "/images/nginx:1.27");
    assert!(text(one(&doc, "p.empty")).contains("nginx:1.27"));

    let resp = app.get("/search?q=%3Cscript%3Ealert(1)%3C/script%3E").await;
    assert!(!resp.text().contains("<script>alert"));
    let doc = html(&resp);
    assert_eq!(
        text(one(&doc, "h1")),
        "Results for “<script>alert(1)</script>”"
    );
    assert!(all(&doc, ".direct").is_empty());

    let doc = html(&app.get("/search").await);
    assert_eq!(text(one(&doc, "h1")), "Search images");
}

#[tokio::test]
async fn api_page_renders_the_openapi_document() {
    let app = app().await;
    let resp = app.get("/api").await;
    assert_eq!(resp.status, 200);
    let doc = html(&resp);
    assert_no_inline_code(&doc);
    assert!(!all(&doc, "main a[href='/v1/openapi.json']").is_empty());
    let spec = microbadger::web::api::openapi_document();
    let documented = spec["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|m| m.as_object().unwrap().len())
        .sum::<usize>();
    assert_eq!(all(&doc, "article.operation").len(), documented);
    let get = one(&doc, "#op-getImage");
    assert_eq!(text(one_in(get, "h3")), "GET /v1/images/{image}");
    assert!(text(get).contains("202"));
    let image = one(&doc, "#schema-Image");
    assert!(
        !all(&doc, "#schema-Image tbody tr").is_empty(),
        "{}",
        image.html()
    );
    // Links between schemas resolve.
    for a in all(&doc, "main a[href^='#schema-']") {
        let id = &attr(a, "href")[1..];
        assert_eq!(all(&doc, &format!("[id='{id}']")).len(), 1, "{id}");
    }
    assert!(
        text(one(&doc, "#badge-urls"))
            .contains(&format!("{PUBLIC_URL}/badges/image/nginx:1.27.svg"))
    );
}

#[tokio::test]
async fn static_files_are_embedded_with_content_types_and_long_caching() {
    let app = app().await;
    let doc = html(&app.get("/").await);
    let css = attr(one(&doc, "link[rel=stylesheet]"), "href").to_owned();
    let js = attr(one(&doc, "script"), "src").to_owned();
    let icon = attr(one(&doc, "link[rel=icon]"), "href").to_owned();
    for (uri, content_type) in [
        (css.as_str(), "text/css; charset=utf-8"),
        (js.as_str(), "text/javascript; charset=utf-8"),
        (icon.as_str(), "image/svg+xml"),
        ("/static/app.css", "text/css; charset=utf-8"),
    ] {
        let resp = app.get(uri).await;
        assert_eq!(resp.status, 200, "{uri}");
        assert_eq!(resp.header("content-type"), Some(content_type), "{uri}");
        assert_eq!(
            resp.header("cache-control"),
            Some("public, max-age=86400"),
            "{uri}"
        );
        assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
        assert!(!resp.body.is_empty());
    }
    assert!(app.get(&js).await.text().contains("data-poll"));
    for missing in [
        "/static/nope.css",
        "/static/../Cargo.toml",
        "/static/app.css/x",
    ] {
        assert_eq!(app.get(missing).await.status, 404, "{missing}");
    }
}

#[tokio::test]
async fn pages_carry_the_security_headers() {
    let app = app().await;
    seed(&app, "acme/web", "1.0", 1, FULL_LABELS, 10).await;
    for uri in [
        "/",
        "/images/acme/web:1.0",
        "/images/acme/unknown",
        "/images/BAD",
        "/search?q=a",
        "/api",
    ] {
        let resp = app.get(uri).await;
        let csp = resp
            .header("content-security-policy")
            .unwrap_or_else(|| panic!("{uri}: no CSP"));
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{uri}: {csp}"
        );
        assert_eq!(
            resp.header("x-content-type-options"),
            Some("nosniff"),
            "{uri}"
        );
        assert!(resp.header("referrer-policy").is_some(), "{uri}");
        assert_eq!(resp.header("x-frame-options"), Some("DENY"), "{uri}");
        let doc = html(&resp);
        assert_no_inline_code(&doc);
        assert_eq!(attr(one(&doc, "html"), "lang"), "en");
        one(&doc, "meta[name=viewport]");
        one(&doc, "main#main");
    }
}
