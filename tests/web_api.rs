//! The JSON API under `/v1/` through the real router: MicroBadger's field names, status codes,
//! content type, caching and CORS headers, list bounds, insta snapshots of the main documents,
//! and the OpenAPI document checked against the responses (every documented `GET` path and
//! status is exercised, and each body is validated against the schema documented for it),
//! and against the router (every `/v1/` and webhook route is documented).
//!
//! The store is seeded with real inspections: small manifest and config documents run through
//! `inspect_image`, saved with `add_repository` + `save_tag`.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::Request;
use chrono::Utc;
use microbadger::inspect::{ImageInput, Platform, PlatformEntry, inspect_image};
use microbadger::oci::{ImageConfig, OciImageManifest};
use microbadger::queue::{JobKind, Priority};
use microbadger::reference::ImageRef;
use microbadger::registry::Inspection;
use microbadger::registry::hub::HubInfo;
use microbadger::store::RepoStatus;
use serde_json::{Value, json};
use support::openapi::Validator;
use support::web::{TestApp, TestResponse, at, digest};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const PUBLIC_URL: &str = "https://badges.example";

/// Labels of a well-labelled image.
const FULL_LABELS: &[(&str, &str)] = &[
    ("org.opencontainers.image.title", "web"),
    ("org.opencontainers.image.description", "A web server"),
    ("org.opencontainers.image.created", "2024-03-01T10:00:00Z"),
    (
        "org.opencontainers.image.source",
        "https://github.com/acme/web",
    ),
    ("org.opencontainers.image.revision", "0123abcd"),
    ("org.opencontainers.image.version", "2.1.0"),
    ("org.opencontainers.image.vendor", "Acme"),
    ("org.opencontainers.image.url", "https://acme.example"),
    ("org.opencontainers.image.licenses", "Apache-2.0"),
];

/// One platform's image, inspected by the real engine.
fn image(
    manifest_digest: &str,
    labels: &[(&str, &str)],
    layers: &[(u64, &str)],
    arch: &str,
) -> microbadger::inspect::ImageVersion {
    let layer_json: Vec<Value> = layers
        .iter()
        .enumerate()
        .map(|(i, (size, _))| {
            json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "size": size,
                "digest": digest(1000 + i as u32),
            })
        })
        .collect();
    let history: Vec<Value> = layers
        .iter()
        .map(|(_, cmd)| json!({"created": "2024-03-01T10:00:00Z", "created_by": cmd}))
        .collect();
    let manifest: OciImageManifest = serde_json::from_value(json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 100,
                   "digest": digest(999)},
        "layers": layer_json,
    }))
    .unwrap();
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let config: ImageConfig = serde_json::from_value(json!({
        "architecture": arch, "os": "linux",
        "created": "2024-03-01T10:00:00Z",
        "author": "Acme Builders",
        "config": {"Labels": labels, "Cmd": ["serve"], "Env": ["SECRET=hunter2", "PATH=/bin"],
                   "ExposedPorts": {"8080/tcp": {}}, "User": "app", "WorkingDir": "/srv"},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": history,
    }))
    .unwrap();
    inspect_image(&ImageInput {
        manifest_digest,
        media_type: OCI_MANIFEST,
        manifest: &manifest,
        config: &config,
        index_annotations: None,
    })
}

fn single(name: &str, tag: &str, top: &str, labels: &[(&str, &str)]) -> Inspection {
    Inspection {
        reference: ImageRef::parse(&format!("{name}:{tag}")).unwrap(),
        digest: top.to_string(),
        media_type: OCI_MANIFEST.to_string(),
        platforms: vec![PlatformEntry {
            platform: Platform::new("linux", "amd64", None),
            digest: top.to_string(),
            size: 500,
            media_type: OCI_MANIFEST.to_string(),
        }],
        images: vec![image(
            top,
            labels,
            &[
                (2_000_000, "/bin/sh -c #(nop) ADD file:abc in /"),
                (34_000, "RUN make"),
            ],
            "amd64",
        )],
    }
}

fn multi(name: &str, tag: &str, top: &str) -> Inspection {
    let amd = digest(501);
    let arm = digest(502);
    Inspection {
        reference: ImageRef::parse(&format!("{name}:{tag}")).unwrap(),
        digest: top.to_string(),
        media_type: OCI_INDEX.to_string(),
        platforms: vec![
            PlatformEntry {
                platform: Platform::new("linux", "amd64", None),
                digest: amd.clone(),
                size: 500,
                media_type: OCI_MANIFEST.to_string(),
            },
            PlatformEntry {
                platform: Platform::new("linux", "arm64", Some("v8")),
                digest: arm,
                size: 501,
                media_type: OCI_MANIFEST.to_string(),
            },
        ],
        images: vec![image(
            &amd,
            &[("org.opencontainers.image.version", "3.0")],
            &[(1_000, "RUN true")],
            "amd64",
        )],
    }
}

/// Seeded images:
/// - `acme/web`: `1.0` (d1, older), `latest` and `2.1.0` (d2), with Hub information;
/// - `nginx` (official): `latest` (d3, multi-platform index);
/// - `127.0.0.1:5000/team/app`: `1` (d4, no labels).
async fn seeded(edit: impl FnOnce(&mut microbadger::config::Config)) -> TestApp {
    let app = TestApp::new(|c| {
        c.web.public_url = PUBLIC_URL.into();
        c.registry.allow.push("127.0.0.1:5000".into());
        edit(c);
    })
    .await;
    let s = &app.store;
    let web = s
        .add_repository("docker.io", "acme/web", at(0))
        .await
        .unwrap();
    let old_labels: Vec<(&str, &str)> = FULL_LABELS
        .iter()
        .map(|&(k, v)| {
            if k == "org.opencontainers.image.version" {
                (k, "1.0")
            } else {
                (k, v)
            }
        })
        .collect();
    s.save_tag(
        web.id,
        "1.0",
        &single("acme/web", "1.0", &digest(1), &old_labels),
        at(10),
    )
    .await
    .unwrap();
    let full = single("acme/web", "latest", &digest(2), FULL_LABELS);
    s.save_tag(web.id, "latest", &full, at(20)).await.unwrap();
    s.save_tag(web.id, "2.1.0", &full, at(20)).await.unwrap();
    s.set_hub_info(
        web.id,
        &HubInfo {
            description: Some("Acme's web server".into()),
            star_count: Some(12),
            pull_count: Some(3400),
            last_updated: Some("2024-04-30T08:00:00Z".into()),
            is_official: false,
        },
    )
    .await
    .unwrap();
    let nginx = s
        .add_repository("docker.io", "library/nginx", at(0))
        .await
        .unwrap();
    s.save_tag(
        nginx.id,
        "latest",
        &multi("nginx", "latest", &digest(3)),
        at(30),
    )
    .await
    .unwrap();
    let team = s
        .add_repository("127.0.0.1:5000", "team/app", at(0))
        .await
        .unwrap();
    s.save_tag(
        team.id,
        "1",
        &single("127.0.0.1:5000/team/app", "1", &digest(4), &[]),
        at(40),
    )
    .await
    .unwrap();
    // Checked against the registry just now: an unknown tag is "not found", not re-queued.
    for id in [web.id, nginx.id, team.id] {
        s.set_status(id, &RepoStatus::Inspected, Utc::now())
            .await
            .unwrap();
    }
    app
}

/// Replace values that depend on the clock (when the test ran) with `[time]`, and the long
/// compliance report with its score.
fn redact(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if matches!(k.as_str(), "UpdatedAt" | "InspectedAt") && x.is_string() {
                        *x = json!("[time]");
                    } else if k == "Compliance" && x.is_object() {
                        // The report is the compliance module's, snapshotted there; here its
                        // place and score are what matter.
                        *x = json!(format!("[compliance report, score {}]", x["Score"]));
                    } else {
                        walk(x);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

fn assert_json(resp: &TestResponse, status: u16) -> Value {
    assert_eq!(resp.status.as_u16(), status, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    resp.json()
}

// ---- the image document ------------------------------------------------------------------

#[tokio::test]
async fn image_document_keeps_microbadgers_fields() {
    let app = seeded(|_| {}).await;
    let resp = app.get("/v1/images/acme/web").await;
    let doc = assert_json(&resp, 200);
    assert_eq!(
        resp.header("cache-control"),
        Some("public, max-age=60, s-maxage=60")
    );
    assert!(resp.header("etag").is_some());
    assert_eq!(doc["ImageName"], "acme/web");
    assert_eq!(doc["Registry"], "docker.io");
    assert_eq!(doc["Tag"], "latest");
    assert_eq!(doc["Id"], digest(2));
    assert_eq!(doc["LatestSHA"], digest(2));
    assert_eq!(
        doc["LatestVersion"], "2.1.0",
        "longest tag of the latest version"
    );
    assert_eq!(doc["LayerCount"], 2);
    assert_eq!(doc["DownloadSize"], 2_034_000);
    assert_eq!(doc["Labels"]["org.opencontainers.image.vendor"], "Acme");
    assert_eq!(
        doc["License"],
        json!({"Code": "Apache-2.0", "URL": "https://spdx.org/licenses/Apache-2.0.html", "Valid": true})
    );
    assert_eq!(doc["VersionControl"]["Commit"], "0123abcd");
    assert_eq!(doc["VersionControl"]["Type"], "git");
    assert_eq!(doc["Description"], "Acme's web server");
    assert_eq!(
        (doc["PullCount"].clone(), doc["StarCount"].clone()),
        (json!(3400), json!(12))
    );
    assert_eq!(doc["ImageURL"], "https://hub.docker.com/r/acme/web");
    assert_eq!(
        doc["MicrobadgerURL"],
        "https://badges.example/images/acme/web"
    );
    assert_eq!(doc["Platforms"], json!(["linux/amd64"]));
    assert!(doc["Compliance"]["Score"].as_u64().unwrap() > 50);
    assert!(doc.get("WebhookURL").is_none());
    // Versions: every tagged digest, most recently changed first, with MicroBadger's tags.
    let versions = doc["Versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["SHA"], digest(2));
    assert_eq!(
        versions[0]["Tags"],
        json!([{"tag": "2.1.0"}, {"tag": "latest"}])
    );
    assert_eq!(versions[1]["SHA"], digest(1));
    assert_eq!(versions[1]["Tags"], json!([{"tag": "1.0"}]));
    assert_eq!(versions[1]["Version"], "1.0");
    // Environment values never leave the store.
    assert!(!resp.text().contains("hunter2"));
    insta::assert_json_snapshot!("image_acme_web", redact(doc));
}

#[tokio::test]
async fn a_tag_selects_the_version_described() {
    let app = seeded(|_| {}).await;
    let doc = assert_json(&app.get("/v1/images/acme/web:1.0").await, 200);
    assert_eq!(doc["Tag"], "1.0");
    assert_eq!(doc["Id"], digest(1));
    assert_eq!(
        doc["LatestSHA"],
        digest(2),
        "LatestSHA still points at latest"
    );
    assert_eq!(doc["LatestVersion"], "1.0");
    assert_eq!(doc["Labels"]["org.opencontainers.image.version"], "1.0");
    assert_eq!(
        doc["MicrobadgerURL"],
        "https://badges.example/images/acme/web:1.0"
    );
    // docker.io/ and library/ spellings name the same image.
    let a = app.get("/v1/images/nginx").await;
    let b = app.get("/v1/images/docker.io/library/nginx").await;
    assert_eq!(a.status.as_u16(), 200);
    assert_eq!(a.body, b.body);
    let nginx = a.json();
    assert_eq!(nginx["ImageName"], "nginx");
    assert_eq!(nginx["ImageURL"], "https://hub.docker.com/_/nginx");
    assert_eq!(nginx["Platforms"], json!(["linux/amd64", "linux/arm64/v8"]));
    assert_eq!(nginx["PullCount"], Value::Null, "unknown, not zero");
    // A registry host with a port.
    let team = assert_json(&app.get("/v1/images/127.0.0.1:5000/team/app:1").await, 200);
    assert_eq!(team["ImageName"], "127.0.0.1:5000/team/app");
    assert_eq!(team["ImageURL"], Value::Null);
    assert_eq!(team["License"], Value::Null);
    assert_eq!(team["VersionControl"], Value::Null);
}

#[tokio::test]
async fn ready_documents_are_served_from_memory() {
    let app = seeded(|_| {}).await;
    let first = app.get("/v1/images/acme/web:1.0").await;
    let (hits, _) = app.state.cache.counts();
    let second = app.get("/v1/images/acme/web:1.0").await;
    assert_eq!(first.body, second.body);
    assert_eq!(
        app.state.cache.counts().0,
        hits + 1,
        "second answer from the render cache"
    );
    assert_eq!(first.header("etag"), second.header("etag"));
    let etag = first.header("etag").unwrap().to_string();
    let not_modified = app
        .request(
            Request::get("/v1/images/acme/web:1.0")
                .header("if-none-match", etag)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(not_modified.status.as_u16(), 304);
}

#[tokio::test]
async fn unknown_images_are_queued_urgent_and_answered_202() {
    let app = seeded(|_| {}).await;
    let resp = app.get("/v1/images/someone/new:2.0").await;
    let doc = assert_json(&resp, 202);
    assert_eq!(
        doc,
        json!({"status": "inspecting", "ImageName": "someone/new:2.0", "Registry": "docker.io"})
    );
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    assert_eq!(resp.header("retry-after"), Some("2"));
    let job = app.queue.claim("test").await.unwrap().expect("a job");
    assert_eq!(job.priority, Priority::Urgent);
    assert_eq!(
        job.kind,
        JobKind::Refresh {
            image: "docker.io/someone/new".into(),
            tag: Some("2.0".into())
        }
    );
    insta::assert_json_snapshot!("inspecting", doc);
}

#[tokio::test]
async fn errors_are_json_envelopes_with_the_right_status() {
    let app = seeded(|_| {}).await;
    // Bad names.
    for path in [
        "/v1/images/Bad/Name",
        "/v1/images/a//b",
        "/v1/images/x:bad%20tag!",
    ] {
        let doc = assert_json(&app.get(path).await, 400);
        assert_eq!(doc["error"]["code"], "bad_name", "{path}");
    }
    // Off the allow-list.
    let doc = assert_json(&app.get("/v1/images/evil.example/x/y").await, 403);
    assert_eq!(doc["error"]["code"], "not_allowed");
    // Missing.
    let repo = app
        .store
        .add_repository("docker.io", "gone/away", at(0))
        .await
        .unwrap();
    app.store
        .set_status(
            repo.id,
            &RepoStatus::Missing {
                reason: "no such repository".into(),
            },
            Utc::now(),
        )
        .await
        .unwrap();
    let resp = app.get("/v1/images/gone/away").await;
    let doc = assert_json(&resp, 404);
    assert_eq!(doc["error"]["code"], "not_found");
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    insta::assert_json_snapshot!("not_found", doc);
    // A tag checked a moment ago that the registry does not have.
    let doc = assert_json(&app.get("/v1/images/acme/web:9.9").await, 404);
    assert_eq!(doc["error"]["code"], "not_found");
    // A route that does not exist under /v1 is JSON too.
    let doc = assert_json(&app.get("/v1/nothing").await, 404);
    assert_eq!(doc["error"]["code"], "not_found");
}

// ---- versions ----------------------------------------------------------------------------

#[tokio::test]
async fn version_document_has_layers_and_tags() {
    let app = seeded(|_| {}).await;
    let path = format!("/v1/images/acme/web/version/{}", digest(2));
    let resp = app.get(&path).await;
    let doc = assert_json(&resp, 200);
    assert_eq!(doc["SHA"], digest(2));
    assert_eq!(doc["Tags"], json!([{"tag": "2.1.0"}, {"tag": "latest"}]));
    assert_eq!(doc["ImageName"], "acme/web");
    let layers = doc["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[1]["Command"], "RUN make");
    assert_eq!(layers[1]["DownloadSize"], 34_000);
    assert_eq!(layers[0]["BlobSum"], digest(1000));
    assert_eq!(doc["EnvCount"], 2);
    assert!(!resp.text().contains("hunter2"));
    assert_eq!(
        doc["MicrobadgerURL"],
        format!(
            "https://badges.example/images/acme/web/version/{}",
            digest(2)
        )
    );
    insta::assert_json_snapshot!("version_acme_web", redact(doc));
    // `image@digest` is the same document.
    let same = app.get(&format!("/v1/images/acme/web@{}", digest(2))).await;
    assert_eq!(same.body, resp.body);
    // A multi-platform version lists its manifests.
    let nginx = assert_json(
        &app.get(&format!("/v1/images/nginx/version/{}", digest(3)))
            .await,
        200,
    );
    assert_eq!(nginx["MediaType"], OCI_INDEX);
    assert_eq!(nginx["Platform"], "linux/amd64");
    assert_eq!(nginx["Manifests"].as_array().unwrap().len(), 2);
    // Another image's digest is not this image's version.
    let doc = assert_json(
        &app.get(&format!("/v1/images/acme/web/version/{}", digest(3)))
            .await,
        404,
    );
    assert_eq!(doc["error"]["code"], "not_found");
    let doc = assert_json(
        &app.get("/v1/images/acme/web/version/sha256:nothex").await,
        400,
    );
    assert_eq!(doc["error"]["code"], "bad_name");
}

// ---- lists -------------------------------------------------------------------------------

#[tokio::test]
async fn lists_are_bounded_and_ordered() {
    let app = seeded(|_| {}).await;
    let recent = assert_json(&app.get("/v1/recent").await, 200);
    let names: Vec<String> = recent["Images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}:{}",
                i["ImageName"].as_str().unwrap(),
                i["Tag"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "127.0.0.1:5000/team/app:1",
            "nginx:latest",
            "acme/web:2.1.0",
            "acme/web:latest",
            "acme/web:1.0"
        ]
    );
    insta::assert_json_snapshot!("recent", recent);
    let two = assert_json(&app.get("/v1/recent?limit=2").await, 200);
    assert_eq!(two["Images"].as_array().unwrap().len(), 2);
    let best = assert_json(&app.get("/v1/best?limit=1").await, 200);
    assert_eq!(best["Images"][0]["ImageName"], "acme/web");
    assert_eq!(
        best["Images"][0]["URL"],
        "https://badges.example/v1/images/acme/web:2.1.0"
    );
    for bad in ["0", "101", "-1", "ten", ""] {
        for path in ["/v1/recent", "/v1/best"] {
            let doc = assert_json(&app.get(&format!("{path}?limit={bad}")).await, 400);
            assert_eq!(doc["error"]["code"], "bad_request");
        }
    }
}

#[tokio::test]
async fn search_finds_inspected_images_only() {
    let app = seeded(|_| {}).await;
    app.store
        .add_repository("docker.io", "acme/typo", at(0))
        .await
        .unwrap();
    let found = assert_json(&app.get("/v1/search?q=ACME").await, 200);
    assert_eq!(found["Query"], "ACME");
    let images = found["Images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "pending names are not listed: {found}");
    assert_eq!(images[0]["ImageName"], "acme/web");
    assert_eq!(images[0]["StarCount"], 12);
    let none = assert_json(&app.get("/v1/search?q=%25_").await, 200);
    assert_eq!(none["Images"], json!([]), "wildcards match literally");
    for bad in [
        "/v1/search",
        "/v1/search?q=",
        "/v1/search?q=%20",
        "/v1/search?q=x&limit=0",
    ] {
        let doc = assert_json(&app.get(bad).await, 400);
        assert_eq!(doc["error"]["code"], "bad_request", "{bad}");
    }
    let long = "a".repeat(101);
    assert_json(&app.get(&format!("/v1/search?q={long}")).await, 400);
}

#[tokio::test]
async fn get_is_open_to_every_origin() {
    let app = seeded(|_| {}).await;
    for path in ["/v1/images/acme/web", "/v1/recent", "/v1/openapi.json"] {
        let resp = app
            .request(
                Request::get(path)
                    .header("origin", "https://elsewhere.example")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(
            resp.header("access-control-allow-origin"),
            Some("*"),
            "{path}"
        );
    }
    let preflight = app
        .request(
            Request::options("/v1/images/acme/web")
                .header("origin", "https://elsewhere.example")
                .header("access-control-request-method", "GET")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn webhook_tokens_never_appear_in_public_output() {
    let app = seeded(|_| {}).await;
    let image = ImageRef::parse("acme/web").unwrap();
    let created = microbadger::web::hooks::create_dockerhub_webhook(&app.store, PUBLIC_URL, &image)
        .await
        .unwrap();
    let token = created.url.rsplit('/').next().unwrap().to_string();
    let hash = created.record.token_hash.clone();
    for path in [
        "/v1/images/acme/web".to_string(),
        "/v1/images/acme/web:1.0".to_string(),
        format!("/v1/images/acme/web/version/{}", digest(2)),
        "/v1/search?q=acme".to_string(),
        "/v1/recent".to_string(),
        "/v1/best".to_string(),
        "/v1/openapi.json".to_string(),
    ] {
        let body = app.get(&path).await.text();
        assert!(!body.contains(&token) && !body.contains(&hash), "{path}");
        assert!(!body.contains("/hooks/dockerhub/acme"), "{path}");
        assert!(!body.contains("WebhookURL"), "{path}");
    }
}

// ---- OpenAPI -----------------------------------------------------------------------------

#[tokio::test]
async fn every_documented_get_answers_as_documented() {
    // Two new images may be queued a minute: one image and one version answer 202, the next
    // of each 429.
    let app = seeded(|c| c.web.queue_rate_per_minute = 2).await;
    let doc = assert_json(&app.get("/v1/openapi.json").await, 200);
    assert_eq!(doc, microbadger::web::api::openapi_document());
    assert_eq!(doc["openapi"], "3.0.3");
    let v = Validator { doc: &doc };
    let d2 = digest(2);
    let cases: Vec<(&str, String)> = vec![
        ("/v1/images/{image}", "/v1/images/acme/web".into()),
        ("/v1/images/{image}", "/v1/images/acme/web:1.0".into()),
        ("/v1/images/{image}", "/v1/images/nginx".into()),
        (
            "/v1/images/{image}",
            "/v1/images/127.0.0.1:5000/team/app:1".into(),
        ),
        ("/v1/images/{image}", "/v1/images/new/one".into()),
        (
            "/v1/images/{image}/version/{digest}",
            format!("/v1/images/new/three/version/{d2}"),
        ),
        ("/v1/images/{image}", "/v1/images/new/two".into()),
        (
            "/v1/images/{image}/version/{digest}",
            format!("/v1/images/new/four/version/{d2}"),
        ),
        ("/v1/images/{image}", "/v1/images/Bad/Name".into()),
        ("/v1/images/{image}", "/v1/images/evil.example/x/y".into()),
        ("/v1/images/{image}", "/v1/images/acme/web:9.9".into()),
        (
            "/v1/images/{image}/version/{digest}",
            format!("/v1/images/acme/web/version/{d2}"),
        ),
        (
            "/v1/images/{image}/version/{digest}",
            format!("/v1/images/nginx/version/{}", digest(3)),
        ),
        (
            "/v1/images/{image}/version/{digest}",
            "/v1/images/acme/web/version/sha256:x".into(),
        ),
        (
            "/v1/images/{image}/version/{digest}",
            format!("/v1/images/evil.example/x/version/{d2}"),
        ),
        (
            "/v1/images/{image}/version/{digest}",
            format!("/v1/images/acme/web/version/{}", digest(3)),
        ),
        ("/v1/search", "/v1/search?q=web".into()),
        ("/v1/search", "/v1/search?q=nothing-like-it&limit=5".into()),
        ("/v1/search", "/v1/search".into()),
        ("/v1/recent", "/v1/recent".into()),
        ("/v1/recent", "/v1/recent?limit=1000".into()),
        ("/v1/best", "/v1/best?limit=3".into()),
        ("/v1/best", "/v1/best?limit=x".into()),
        ("/v1/openapi.json", "/v1/openapi.json".into()),
        // Seeded decisions and their schema: tests/web_scaler.rs.
        ("/v1/scaler", "/v1/scaler".into()),
    ];
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for (template, path) in &cases {
        let resp = app.get(path).await;
        v.response("get", template, &resp);
        seen.insert((template.to_string(), resp.status.as_u16().to_string()));
    }
    // Every documented GET path and status was exercised.
    for (template, item) in doc["paths"].as_object().unwrap() {
        let Some(get) = item.get("get") else { continue };
        for status in get["responses"].as_object().unwrap().keys() {
            assert!(
                seen.contains(&(template.clone(), status.clone())),
                "GET {template} {status} is documented but not exercised"
            );
        }
    }
}

#[tokio::test]
async fn webhook_answers_match_their_documentation() {
    let app = seeded(|c| {
        c.web.queue_rate_per_minute = 8;
        c.registry.allow.push("reg.example:5000".into());
    })
    .await;
    let doc = microbadger::web::api::openapi_document();
    let v = Validator { doc: &doc };
    let hooks = microbadger::web::hooks::create_dockerhub_webhook(
        &app.store,
        PUBLIC_URL,
        &ImageRef::parse("acme/web").unwrap(),
    )
    .await
    .unwrap();
    let token = hooks.url.rsplit('/').next().unwrap().to_string();
    let reg = microbadger::web::hooks::create_registry_webhook(
        &app.store,
        PUBLIC_URL,
        "reg.example:5000",
    )
    .await
    .unwrap();
    let reg_token = reg.url.rsplit('/').next().unwrap().to_string();
    let hub = "/hooks/dockerhub/{image}/{token}";
    let legacy = "/images/{image}/{token}";
    let registry = "/hooks/registry/{token}";
    let push = r#"{"push_data":{"tag":"2.1.0"},"repository":{"repo_name":"acme/web"}}"#;
    // Each request that is charged to the rate limit (8 a minute) is marked (*).
    let cases: Vec<(&str, String, String)> = vec![
        (registry, format!("/hooks/registry/{reg_token}"), // (*) queues
            r#"{"events":[{"action":"push","target":{"repository":"team/app","tag":"1","mediaType":"application/vnd.oci.image.manifest.v1+json"}}]}"#.into()),
        (registry, format!("/hooks/registry/{reg_token}"), r#"{"events":[{"action":"pull"}]}"#.into()),
        (registry, format!("/hooks/registry/{reg_token}"), "[]".into()),
        (registry, "/hooks/registry/wrong".into(), "{}".into()), // (*)
        (hub, format!("/hooks/dockerhub/acme/web/{token}"), push.into()), // (*)
        (hub, format!("/hooks/dockerhub/acme/web/{token}"), r#"{"repository":{"repo_name":"x/y"}}"#.into()), // (*)
        (hub, "/hooks/dockerhub/acme/web/wrong".into(), push.into()), // (*)
        (hub, format!("/hooks/dockerhub/acme/web/{token}"), "x".repeat(70_000)), // (*)
        (legacy, format!("/images/acme/web/{token}"), String::new()), // (*)
    ];
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for (template, path, body) in &cases {
        let resp = app.post_json(path, body).await;
        v.response("post", template, &resp);
        seen.insert((template.to_string(), resp.status.as_u16().to_string()));
    }
    // Exhaust the rate limit for the 429 answers.
    let mut limited = None;
    for _ in 0..10 {
        let resp = app
            .post_json(&format!("/hooks/dockerhub/acme/web/{token}"), push)
            .await;
        if resp.status.as_u16() == 429 {
            limited = Some(resp);
            break;
        }
    }
    let limited = limited.expect("rate limited");
    v.response("post", hub, &limited);
    seen.insert((hub.to_string(), "429".into()));
    let resp = app.post_json("/hooks/registry/wrong", "{}").await;
    v.response("post", registry, &resp);
    seen.insert((registry.to_string(), resp.status.as_u16().to_string()));
    for (template, status) in [
        (hub, "202"),
        (hub, "400"),
        (hub, "403"),
        (hub, "413"),
        (hub, "429"),
        (legacy, "202"),
        (registry, "200"),
        (registry, "202"),
        (registry, "400"),
        (registry, "403"),
        (registry, "429"),
    ] {
        assert!(
            seen.contains(&(template.to_string(), status.to_string())),
            "{template} {status}: {seen:?}"
        );
    }
}

/// Every route the router serves under `/v1/`, `/hooks/` and `POST /images/` is documented.
/// The router is one function in `src/web/mod.rs` (house style), so its routes are read from
/// the source.
#[test]
fn every_api_and_webhook_route_is_documented() {
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web/mod.rs"),
    )
    .unwrap();
    let router = &source[source.find("pub fn router").expect("router function")..];
    let router = &router[..router.find(".fallback(").expect("fallback")];
    let doc = microbadger::web::api::openapi_document();
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    let mut checked = 0;
    for chunk in router.split(".route(").skip(1) {
        let mut quoted = chunk.splitn(3, '"');
        let (_, path, handlers) = (
            quoted.next(),
            quoted.next().unwrap(),
            quoted.next().unwrap(),
        );
        let api = path.starts_with("/v1/") || path.starts_with("/hooks/");
        let legacy_hook = path.starts_with("/images/") && handlers.contains("post(");
        if !(api || legacy_hook) {
            continue;
        }
        checked += 1;
        // `{*rest}` stands for one or more documented path segments.
        let documented = match path.strip_suffix("{*rest}") {
            Some(prefix) => paths.iter().any(|p| p.starts_with(prefix)),
            None => paths.iter().any(|p| p.as_str() == path),
        };
        assert!(documented, "route {path} is not in the OpenAPI document");
        for (method, needle) in [("get", "get("), ("post", "post(")] {
            if handlers.contains(needle) && (api || method == "post") {
                let any = paths.iter().any(|p| {
                    let matches = match path.strip_suffix("{*rest}") {
                        Some(prefix) => p.starts_with(prefix),
                        None => p.as_str() == path,
                    };
                    matches && doc["paths"][p.as_str()].get(method).is_some()
                });
                assert!(any, "{} {path} is not documented", method.to_uppercase());
            }
        }
    }
    assert!(
        checked >= 8,
        "found only {checked} routes: has the router moved?"
    );
}
