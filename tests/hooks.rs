//! Webhooks: Docker Hub's payload (and MicroBadger's old URL) and the distribution registry's
//! notifications, through the real router; tokens made by `microbadger webhook create`; and
//! an end-to-end run with no fakes: the real `docker-registry` notifies the real web server,
//! whose refresh a real worker carries out, after `skopeo` pushes a new tag.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use chrono::Utc;
use microbadger::config::{Config, RegistryConfig, WorkerConfig};
use microbadger::queue::{JobKind, Priority};
use microbadger::reference::ImageRef;
use microbadger::registry::{Credentials, RegistryClient};
use microbadger::store::{Store, WebhookKind};
use microbadger::web::hooks;
use microbadger::worker::Worker;
use serde_json::{Value, json};
use support::web::{TestApp, TestResponse};
use support::{Auth, Fixture, Format, TestRegistry};

const PUBLIC_URL: &str = "https://mb.example";
const REGISTRY_HOST: &str = "reg.example:5000";

async fn app(edit: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::new(|c| {
        c.web.public_url = PUBLIC_URL.into();
        c.registry.allow.push(REGISTRY_HOST.into());
        edit(c);
    })
    .await
}

/// A Docker Hub token for `image`; returns the path to POST to (the URL without the host).
async fn hub_hook(app: &TestApp, image: &str) -> (String, String) {
    let created =
        hooks::create_dockerhub_webhook(&app.store, PUBLIC_URL, &ImageRef::parse(image).unwrap())
            .await
            .unwrap();
    let path = created.url.strip_prefix(PUBLIC_URL).unwrap().to_string();
    let token = path.rsplit('/').next().unwrap().to_string();
    (path, token)
}

async fn registry_hook(app: &TestApp) -> (String, String) {
    let created = hooks::create_registry_webhook(&app.store, PUBLIC_URL, REGISTRY_HOST)
        .await
        .unwrap();
    let path = created.url.strip_prefix(PUBLIC_URL).unwrap().to_string();
    let token = path.rsplit('/').next().unwrap().to_string();
    (path, token)
}

/// Every job waiting, in the order they would be taken.
async fn jobs(app: &TestApp) -> Vec<(Priority, JobKind)> {
    let mut out = Vec::new();
    while let Some(job) = app.queue.claim("test").await.unwrap() {
        out.push((job.priority, job.kind.clone()));
        app.queue.ack(&job).await.unwrap();
    }
    out
}

fn refresh(image: &str, tag: Option<&str>) -> (Priority, JobKind) {
    (
        Priority::Normal,
        JobKind::Refresh {
            image: image.to_string(),
            tag: tag.map(str::to_string),
        },
    )
}

fn status(resp: &TestResponse, code: u16) -> Value {
    assert_eq!(resp.status.as_u16(), code, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    resp.json()
}

/// Docker Hub's documented example payload (specs.md §5.2), for `repo_name` and `tag`, with
/// the older float timestamps.
fn hub_payload(repo_name: &str, tag: &str) -> String {
    json!({
        "callback_url": format!("https://registry.hub.docker.com/u/{repo_name}/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/"),
        "push_data": {"images": ["27d47432a69bca5f2700e4dff7de0388ed65f9d3fb1ec645e2bc24c223dc1cc3"],
                      "pushed_at": 1.417566161e9, "pusher": "trustedbuilder", "tag": tag},
        "repository": {
            "comment_count": 0, "date_created": 1.417494799e9, "description": "",
            "dockerfile": "FROM scratch\n", "full_description": "Docker Hub based automated build",
            "is_official": false, "is_private": true, "is_trusted": true,
            "name": repo_name.rsplit('/').next().unwrap(),
            "namespace": repo_name.split('/').next().unwrap(),
            "owner": "svendowideit", "repo_name": repo_name,
            "repo_url": format!("https://registry.hub.docker.com/u/{repo_name}/"),
            "star_count": 0, "status": "Active"
        }
    })
    .to_string()
}

// ---- Docker Hub ----------------------------------------------------------------------------

#[tokio::test]
async fn docker_hub_push_queues_a_normal_refresh_of_the_tag() {
    let app = app(|_| {}).await;
    let (path, _) = hub_hook(&app, "user/app").await;
    assert!(path.starts_with("/hooks/dockerhub/user/app/"), "{path}");
    let resp = app.post_json(&path, &hub_payload("user/app", "1.2")).await;
    let body = status(&resp, 202);
    assert_eq!(
        body,
        json!({"status": "queued", "image": "user/app", "tag": "1.2"})
    );
    assert_eq!(
        jobs(&app).await,
        [refresh("docker.io/user/app", Some("1.2"))]
    );
    let used = app.store.webhooks().await.unwrap();
    assert!(used[0].last_used.is_some(), "last use recorded");
}

#[tokio::test]
async fn official_images_and_microbadgers_old_urls_work() {
    let app = app(|_| {}).await;
    let (path, token) = hub_hook(&app, "nginx").await;
    assert_eq!(path, format!("/hooks/dockerhub/nginx/{token}"));
    for (url, payload) in [
        (path.clone(), hub_payload("library/nginx", "1.27")),
        (
            format!("/hooks/dockerhub/library/nginx/{token}"),
            hub_payload("nginx", "1.27"),
        ),
        (format!("/images/nginx/{token}"), String::new()),
        (format!("/images/library/nginx/{token}"), "{}".into()),
    ] {
        let resp = app.post_json(&url, &payload).await;
        status(&resp, 202);
    }
    // The queue keeps one pending job per image: the tagless ones widened it to every tag.
    assert_eq!(jobs(&app).await, [refresh("docker.io/library/nginx", None)]);
    // A private registry's image, named with its host.
    let (path, _) = hub_hook(&app, "reg.example:5000/team/app").await;
    assert!(path.starts_with("/hooks/dockerhub/reg.example:5000/team/app/"));
    status(
        &app.post_json(&path, &hub_payload("team/app", "7")).await,
        202,
    );
    assert_eq!(
        jobs(&app).await,
        [refresh("reg.example:5000/team/app", Some("7"))]
    );
}

#[tokio::test]
async fn an_unreadable_body_still_refreshes_the_whole_repository() {
    let app = app(|_| {}).await;
    let (path, _) = hub_hook(&app, "user/app").await;
    for body in [
        "",
        "{not json",
        "[1, 2]",
        "null",
        r#"{"push_data": {"tag": 5}}"#,
        r#"{"push_data": {"tag": "bad tag!"}}"#,
    ] {
        let resp = app.post_json(&path, body).await;
        assert_eq!(status(&resp, 202)["tag"], Value::Null, "{body:?}");
        assert_eq!(
            jobs(&app).await,
            [refresh("docker.io/user/app", None)],
            "{body:?}"
        );
    }
    // Any content type: Docker Hub says application/json, curl users say anything.
    let resp = app
        .request(
            Request::post(&path)
                .header("content-type", "text/plain")
                .body(Body::from("push"))
                .unwrap(),
        )
        .await;
    status(&resp, 202);
}

#[tokio::test]
async fn a_payload_for_another_repository_is_refused() {
    let app = app(|_| {}).await;
    let (path, _) = hub_hook(&app, "user/app").await;
    let resp = app.post_json(&path, &hub_payload("user/other", "1")).await;
    let body = status(&resp, 400);
    assert_eq!(body["error"]["code"], "bad_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("user/other")
    );
    assert!(jobs(&app).await.is_empty());
}

#[tokio::test]
async fn bad_tokens_get_403_whatever_is_wrong() {
    let app = app(|_| {}).await;
    let (path, token) = hub_hook(&app, "user/app").await;
    let (_, other_token) = hub_hook(&app, "user/other").await;
    let mut wrong = token.clone();
    wrong.replace_range(..1, if token.starts_with('A') { "B" } else { "A" });
    let payload = hub_payload("user/app", "1");
    let cases = [
        format!("/hooks/dockerhub/user/app/{wrong}"),
        format!("/hooks/dockerhub/user/app/{other_token}"),
        format!("/hooks/dockerhub/user/app/{}", &token[..42]),
        format!("/hooks/dockerhub/user/app/{token}x"),
        format!("/hooks/dockerhub/nobody/here/{token}"),
        format!("/hooks/dockerhub/Bad/Name/{token}"),
        format!("/hooks/dockerhub/user/app:1.0/{token}"),
        "/hooks/dockerhub/user".to_string(),
        format!("/images/user/{token}"),
        format!("/hooks/registry/{token}"),
    ];
    let mut bodies = Vec::new();
    for url in &cases {
        let resp = app.post_json(url, &payload).await;
        let body = status(&resp, 403);
        assert_eq!(body["error"]["code"], "bad_token", "{url}");
        bodies.push(resp.body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "an unknown image answers exactly like a wrong token"
    );
    // The token is checked before the body is read: a wrong token with a payload for another
    // repository is still "bad token", not "bad request".
    let resp = app
        .post_json(
            &format!("/hooks/dockerhub/user/app/{wrong}"),
            &hub_payload("x/y", "1"),
        )
        .await;
    status(&resp, 403);
    assert!(jobs(&app).await.is_empty());
    // And the right token still works.
    status(&app.post_json(&path, &payload).await, 202);
}

#[tokio::test]
async fn revoked_tokens_stop_working() {
    let app = app(|_| {}).await;
    let (path, _) = hub_hook(&app, "user/app").await;
    status(&app.post_json(&path, "").await, 202);
    let id = app.store.webhooks().await.unwrap()[0].id;
    assert!(app.store.delete_webhook(id).await.unwrap());
    status(&app.post_json(&path, "").await, 403);
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let app = app(|_| {}).await;
    let (path, _) = hub_hook(&app, "user/app").await;
    let big = format!(
        r#"{{"repository":{{"repo_name":"user/app"}},"pad":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    // Declared up front...
    let resp = app
        .request(
            Request::post(&path)
                .header("content-type", "application/json")
                .header("content-length", big.len().to_string())
                .body(Body::from(big.clone()))
                .unwrap(),
        )
        .await;
    assert_eq!(status(&resp, 413)["error"]["code"], "payload_too_large");
    // ...or streamed without a length.
    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(8 * 1024)
        .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
        .collect();
    let resp = app
        .request(
            Request::post(&path)
                .body(Body::from_stream(futures::stream::iter(chunks)))
                .unwrap(),
        )
        .await;
    status(&resp, 413);
    assert!(jobs(&app).await.is_empty());
    // Just under the limit is fine.
    let fits = format!(
        r#"{{"repository":{{"repo_name":"user/app"}},"pad":"{}"}}"#,
        "x".repeat(60 * 1024)
    );
    status(&app.post_json(&path, &fits).await, 202);
}

#[tokio::test]
async fn each_client_is_rate_limited() {
    let app = app(|c| c.web.queue_rate_per_minute = 3).await;
    let (path, _) = hub_hook(&app, "user/app").await;
    for _ in 0..3 {
        status(&app.post_json(&path, "").await, 202);
    }
    let body = status(&app.post_json(&path, "").await, 429);
    assert_eq!(body["error"]["code"], "too_many_requests");
    // Guessing tokens counts too.
    status(
        &app.post_json("/hooks/dockerhub/user/app/guess", "").await,
        429,
    );
    // Another client is not affected.
    let mut req = Request::post(&path).body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(SocketAddr::from((
            [198, 51, 100, 7],
            1234,
        ))));
    let resp = tower::ServiceExt::oneshot(microbadger::web::router(app.state.clone()), req)
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
}

// ---- tokens at rest and in logs ------------------------------------------------------------

/// Bytes of the SQLite database and its write-ahead log.
fn database_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("mb.db") {
            all.extend(std::fs::read(path).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn only_a_hash_of_the_token_is_stored() {
    let app = app(|_| {}).await;
    let (path, token) = hub_hook(&app, "user/app").await;
    let (_, reg_token) = registry_hook(&app).await;
    status(&app.post_json(&path, "").await, 202);
    let stored = app.store.webhooks().await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].kind, WebhookKind::DockerHub);
    assert_eq!(stored[0].target, "docker.io/user/app");
    assert_eq!(stored[0].token_hash, hooks::token_hash(&token));
    assert_eq!(stored[1].kind, WebhookKind::Registry);
    assert_eq!(stored[1].target, REGISTRY_HOST);
    assert_eq!(stored[1].token_hash, hooks::token_hash(&reg_token));
    for t in [&token, &reg_token] {
        assert_eq!(t.len(), hooks::TOKEN_LEN);
        assert!(
            !contains(&database_bytes(app.dir.path()), t),
            "token at rest"
        );
    }
    // The store refuses anything that is not a hash.
    let err = app
        .store
        .add_webhook(
            WebhookKind::DockerHub,
            "docker.io/user/app",
            &token,
            Utc::now(),
        )
        .await
        .unwrap_err();
    assert!(!err.to_string().contains(&token));
}

/// The token table behaves the same on SQLite and PostgreSQL.
async fn token_table_behaviour(store: &Store) {
    let t0 = Utc::now();
    let a = hooks::token_hash("a");
    let b = hooks::token_hash("b");
    let first = store
        .add_webhook(WebhookKind::DockerHub, "docker.io/user/app", &a, t0)
        .await
        .unwrap();
    let second = store
        .add_webhook(WebhookKind::Registry, REGISTRY_HOST, &b, t0)
        .await
        .unwrap();
    assert!(second.id > first.id);
    assert_eq!(
        store
            .webhooks_for(WebhookKind::DockerHub, "docker.io/user/app")
            .await
            .unwrap(),
        std::slice::from_ref(&first)
    );
    assert!(
        store
            .webhooks_for(WebhookKind::Registry, "docker.io/user/app")
            .await
            .unwrap()
            .is_empty(),
        "kinds are separate"
    );
    assert_eq!(
        store
            .webhook_by_hash(WebhookKind::Registry, &b)
            .await
            .unwrap()
            .map(|w| w.id),
        Some(second.id)
    );
    assert!(
        store
            .webhook_by_hash(WebhookKind::Registry, &a)
            .await
            .unwrap()
            .is_none()
    );
    // A hash is unique; a token is not a hash.
    assert!(
        store
            .add_webhook(WebhookKind::DockerHub, "docker.io/x/y", &a, t0)
            .await
            .is_err()
    );
    assert!(
        store
            .add_webhook(
                WebhookKind::DockerHub,
                "docker.io/x/y",
                "A".repeat(64).as_str(),
                t0
            )
            .await
            .is_err()
    );
    store.touch_webhook(first.id, t0).await.unwrap();
    let all = store.webhooks().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        all[0].last_used.map(|t| t.timestamp_micros()),
        Some(t0.timestamp_micros())
    );
    assert!(store.delete_webhook(first.id).await.unwrap());
    assert!(!store.delete_webhook(first.id).await.unwrap());
    assert_eq!(store.webhooks().await.unwrap(), [second]);
}

#[tokio::test]
async fn the_token_table_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .unwrap();
    token_table_behaviour(&store).await;
}

#[tokio::test]
async fn the_token_table_on_postgres() {
    let url = support::TestPostgres::shared().fresh_database("hooks_tokens");
    let store = Store::connect(&url).await.unwrap();
    token_table_behaviour(&store).await;
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn tokens_never_reach_the_logs() {
    let app = app(|c| c.web.queue_rate_per_minute = 1000).await;
    let (path, token) = hub_hook(&app, "user/app").await;
    let (reg_path, reg_token) = registry_hook(&app).await;
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Successes, failures of every kind, and errors that echo input.
    status(
        &app.post_json(&path, &hub_payload("user/app", "1")).await,
        202,
    );
    status(
        &app.post_json(&path, &hub_payload("evil/x", "1")).await,
        400,
    );
    status(
        &app.post_json(&format!("/images/user/app/{token}"), "")
            .await,
        202,
    );
    status(
        &app.post_json(&format!("/hooks/dockerhub/user/zzz/{token}"), "")
            .await,
        403,
    );
    let envelope = json!({"events": [{"action": "push", "target": {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "repository": "team/app", "tag": "1"}}]})
    .to_string();
    status(&app.post_json(&reg_path, &envelope).await, 202);
    status(&app.post_json(&reg_path, "nope").await, 400);
    status(
        &app.post_json(&format!("/hooks/registry/{token}"), &envelope)
            .await,
        403,
    );
    drop(_guard);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("webhook queued a refresh"),
        "the log was captured: {logs}"
    );
    for t in [&token, &reg_token] {
        assert!(!logs.contains(t.as_str()), "a token in the logs:\n{logs}");
        assert!(!logs.contains(&hooks::token_hash(t)), "a hash in the logs");
    }
}

// ---- registry notifications ----------------------------------------------------------------

fn event(action: &str, target: Value) -> Value {
    json!({
        "id": "320678d8-ca14-430f-8bb6-4ca139cd83f7",
        "timestamp": "2016-03-09T14:44:26.402973972-08:00",
        "action": action,
        "target": target,
        "request": {"id": "6df24a34-0959-4923-81ca-14f09767db19", "addr": "192.168.64.11:42961",
                    "host": "evil.example:5000", "method": "PUT", "useragent": "skopeo/1.9.3"},
        "actor": {},
        "source": {"addr": "xtal.local:5000", "instanceID": "a53db899-3b4b-4a62-a067-8dd013beaca4"}
    })
}

#[tokio::test]
async fn registry_pushes_queue_refreshes_on_the_tokens_registry() {
    let app = app(|_| {}).await;
    let (path, _) = registry_hook(&app).await;
    let manifest = "application/vnd.oci.image.manifest.v1+json";
    let envelope = json!({"events": [
        event("push", json!({"mediaType": "application/octet-stream", "size": 10,
            "digest": "sha256:aa", "length": 10, "repository": "team/app",
            "url": "http://evil.example:5000/v2/team/app/blobs/sha256:aa"})),
        event("push", json!({"mediaType": manifest, "size": 500, "digest": "sha256:bb",
            "length": 500, "repository": "team/app", "tag": "2",
            "url": "http://evil.example:5000/v2/team/app/manifests/sha256:bb"})),
        event("pull", json!({"mediaType": manifest, "digest": "sha256:bb",
            "repository": "team/other", "tag": "1"})),
    ]})
    .to_string();
    let resp = app
        .request(
            Request::post(&path)
                .header(
                    "content-type",
                    "application/vnd.docker.distribution.events.v1+json",
                )
                .body(Body::from(envelope))
                .unwrap(),
        )
        .await;
    let body = status(&resp, 202);
    assert_eq!(
        body,
        json!({"queued": [{"image": "reg.example:5000/team/app", "tag": "2"}], "ignored": 2})
    );
    assert_eq!(
        jobs(&app).await,
        [refresh("reg.example:5000/team/app", Some("2"))],
        "the token's registry, not the event's request.host"
    );
    // Nothing to do is still a success, so the registry moves on to its next event.
    let pulls = json!({"events": [event("pull", json!({"mediaType": manifest,
        "repository": "team/app", "tag": "2"}))]});
    let body = status(&app.post_json(&path, &pulls.to_string()).await, 200);
    assert_eq!(body, json!({"queued": [], "ignored": 1}));
    // A manifest pushed without a tag (registries that do not report tags): every tag.
    let untagged = json!({"events": [event("push", json!({"mediaType": manifest,
        "digest": "sha256:cc", "repository": "team/app"}))]});
    status(&app.post_json(&path, &untagged.to_string()).await, 202);
    assert_eq!(
        jobs(&app).await,
        [refresh("reg.example:5000/team/app", None)]
    );
    // Not an envelope.
    for bad in ["", "nope", "[]", r#"{"events": 3}"#] {
        let body = status(&app.post_json(&path, bad).await, 400);
        assert_eq!(body["error"]["code"], "bad_request", "{bad:?}");
    }
}

#[tokio::test]
async fn registry_events_off_the_allow_list_are_ignored() {
    // The token was made while the registry was allowed; the operator has since removed it.
    let app = app(|c| c.registry.allow.retain(|h| h != REGISTRY_HOST)).await;
    let created = hooks::create_registry_webhook(&app.store, PUBLIC_URL, REGISTRY_HOST)
        .await
        .unwrap();
    let path = created.url.strip_prefix(PUBLIC_URL).unwrap();
    let envelope = json!({"events": [event("push", json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "repository": "team/app", "tag": "2"}))]});
    let body = status(&app.post_json(path, &envelope.to_string()).await, 200);
    assert_eq!(body, json!({"queued": [], "ignored": 1}));
    assert!(jobs(&app).await.is_empty());
}

#[tokio::test]
async fn registry_tokens_are_checked_and_rate_limited() {
    let app = app(|c| c.web.queue_rate_per_minute = 2).await;
    let (path, token) = registry_hook(&app).await;
    let push = json!({"events": [event("push", json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "repository": "team/app", "tag": "2"}))]})
    .to_string();
    let pull = json!({"events": [event("pull", json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "repository": "team/app", "tag": "2"}))]})
    .to_string();
    let mut wrong = token.clone();
    wrong.replace_range(..1, if token.starts_with('A') { "B" } else { "A" });
    status(
        &app.post_json(&format!("/hooks/registry/{wrong}"), &push)
            .await,
        403,
    );
    status(&app.post_json(&path, &push).await, 202);
    // Pulls cost nothing: the registry reports every pull our own worker makes.
    for _ in 0..5 {
        status(&app.post_json(&path, &pull).await, 200);
    }
    let body = status(&app.post_json(&path, &push).await, 429);
    assert_eq!(body["error"]["code"], "too_many_requests");
    status(
        &app.post_json(&format!("/hooks/registry/{wrong}"), &push)
            .await,
        429,
    );
}

// ---- the command line ----------------------------------------------------------------------

fn microbadger(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_microbadger"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env(
            "MICROBADGER_DATABASE_URL",
            format!("sqlite://{}", dir.join("mb.db").display()),
        )
        .env("MICROBADGER_PUBLIC_URL", "https://mb.example/");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[tokio::test]
async fn webhook_create_prints_the_url_once_and_stores_a_hash() {
    let dir = tempfile::tempdir().unwrap();
    let out = microbadger(dir.path(), &["webhook", "create", "user/app"], &[]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let url = stdout.trim();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let token = url
        .strip_prefix("https://mb.example/hooks/dockerhub/user/app/")
        .unwrap_or_else(|| panic!("{url}"));
    assert_eq!(token.len(), hooks::TOKEN_LEN);
    assert!(!stderr.contains(token), "the URL is printed once: {stderr}");
    assert!(stderr.contains("only"), "{stderr}");

    // A registry token, for an allowed registry only.
    let refused = microbadger(
        dir.path(),
        &["webhook", "create", "--registry", "reg.example:5000"],
        &[],
    );
    assert_eq!(refused.status.code(), Some(5), "{refused:?}");
    let out = microbadger(
        dir.path(),
        &["webhook", "create", "--registry", "Reg.Example:5000"],
        &[("MICROBADGER_ALLOW_REGISTRIES", "docker.io,reg.example:5000")],
    );
    assert!(out.status.success(), "{out:?}");
    let reg_url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let reg_token = reg_url
        .strip_prefix("https://mb.example/hooks/registry/")
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("notifications:"), "{stderr}");
    assert!(!stderr.contains(reg_token));

    // Bad input.
    for args in [
        &["webhook", "create"][..],
        &["webhook", "create", "Bad/Name"],
        &["webhook", "create", "user/app:1.0"],
        &["webhook", "create", "--registry", "not a host"],
        &[
            "webhook",
            "create",
            "user/app",
            "--registry",
            "reg.example:5000",
        ],
    ] {
        let out = microbadger(dir.path(), args, &[]);
        assert!(!out.status.success(), "{args:?}");
    }

    // `list` shows ids and targets, never tokens or hashes.
    let out = microbadger(dir.path(), &["webhook", "list"], &[]);
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(listing.contains("docker.io/user/app") && listing.contains("reg.example:5000"));
    for t in [token, reg_token] {
        assert!(!listing.contains(t) && !listing.contains(&hooks::token_hash(t)));
        assert!(!contains(&database_bytes(dir.path()), t));
    }

    // The printed URL opens the endpoint of a server over the same store.
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("mb.db").display()))
        .await
        .unwrap();
    let stored = store.webhooks().await.unwrap();
    assert_eq!(stored[0].token_hash, hooks::token_hash(token));
    let app = TestApp::new(|c| {
        c.store.database_url = format!("sqlite://{}", dir.path().join("mb.db").display());
    })
    .await;
    let path = url.strip_prefix("https://mb.example").unwrap();
    status(&app.post_json(path, "").await, 202);

    // `revoke` closes it.
    let id = stored[0].id.to_string();
    let out = microbadger(dir.path(), &["webhook", "revoke", &id], &[]);
    assert!(out.status.success(), "{out:?}");
    status(&app.post_json(path, "").await, 403);
    let out = microbadger(dir.path(), &["webhook", "revoke", &id], &[]);
    assert_eq!(out.status.code(), Some(3));
}

// ---- end to end, no fakes ------------------------------------------------------------------

async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let resp = client.get(url).send().await.unwrap();
    let code = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    (
        code,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

/// The real registry notifies the real web server; a real worker refreshes; nobody else asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_to_the_registry_reaches_the_badge_and_the_api_by_itself() {
    let started = Instant::now();
    // The web server's port and the token come first: the registry's configuration names them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = format!("http://{}", listener.local_addr().unwrap());
    let token = hooks::new_token();
    let reg = tokio::task::spawn_blocking({
        let url = hooks::registry_hook_url(&web, &token);
        move || TestRegistry::start_with_notifications(Auth::None, &url)
    })
    .await
    .unwrap();
    let host = reg.host();
    let app = TestApp::new(|c| {
        c.web.public_url = web.clone();
        c.registry.insecure.push(host.clone());
    })
    .await;
    // What `microbadger webhook create --registry HOST` stores.
    app.store
        .add_webhook(
            WebhookKind::Registry,
            &host,
            &hooks::token_hash(&token),
            Utc::now(),
        )
        .await
        .unwrap();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let server = tokio::spawn(microbadger::web::serve(
        listener,
        app.state.clone(),
        stopped(stop_rx.clone()),
    ));
    let worker = Worker {
        store: app.store.clone(),
        queue: app.queue.clone(),
        registry: RegistryClient::with_credentials(
            RegistryConfig {
                allow: vec![],
                insecure: vec![host.clone()],
                retries: 0,
                request_timeout: Duration::from_secs(5),
                ..RegistryConfig::default()
            },
            Credentials::default(),
        )
        .unwrap(),
        config: WorkerConfig {
            concurrency: 2,
            lease: Duration::from_secs(10),
            max_attempts: 3,
            refresh_period: Duration::from_secs(3600),
            shutdown_grace: Duration::from_secs(2),
            dead_job_retention: None,
        },
        id: "e2e-worker".into(),
    };
    let worker = tokio::spawn(worker.run(stopped(stop_rx)));
    let client = reqwest::Client::new();
    let mark = reg.mark();
    let push = |tag: &str, version: &str| {
        let fixture = Fixture::new("team/app", tag)
            .label("org.opencontainers.image.version", version)
            .layer_with_file("version.txt", version, "COPY version.txt /")
            .created("2024-05-01T00:00:00Z");
        tokio::task::block_in_place(|| fixture.push(&reg, Format::Oci))
    };

    // Push tag 1: the registry's notification alone brings it in.
    let one = push("1", "1.0.0");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let known = match app.store.repository(&host, "team/app").await.unwrap() {
            Some(r) => app.store.tags(r.id).await.unwrap(),
            None => Vec::new(),
        };
        if known.iter().any(|t| t.tag == "1" && t.digest == one.digest) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tag 1 not stored 15 s after its push; registry log:\n{}",
            reg.registry_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, doc) = get_json(&client, &format!("{web}/v1/images/{host}/team/app:1")).await;
    assert_eq!(code, 200, "{doc}");
    assert_eq!(doc["Id"], one.digest);
    assert_eq!(doc["Version"], "1.0.0");

    // Push a new tag 2. Nobody asks for it by name until the image's tag list shows it (the
    // tagless document never queues work for a known image).
    let pushed_at = Instant::now();
    let two = push("2", "2.0.0");
    let tagless = format!("{web}/v1/images/{host}/team/app");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, doc) = get_json(&client, &tagless).await;
        let listed = code == 200
            && doc["Versions"].as_array().is_some_and(|vs| {
                vs.iter()
                    .any(|v| v["Tags"].as_array().unwrap().contains(&json!({"tag": "2"})))
            });
        if listed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tag 2 not in the API 10 s after its push: {doc}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen_after = pushed_at.elapsed();
    let (code, doc) = get_json(&client, &format!("{web}/v1/images/{host}/team/app:2")).await;
    assert_eq!(code, 200, "{doc}");
    assert_eq!(doc["Tag"], "2");
    assert_eq!(doc["Id"], two.digest);
    assert_eq!(doc["Version"], "2.0.0");
    let badge = client
        .get(format!("{web}/badges/version/{host}/team/app:2.svg"))
        .send()
        .await
        .unwrap();
    assert_eq!(badge.status().as_u16(), 200);
    let content_type = badge.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_type.starts_with("image/svg+xml"), "{content_type}");
    let svg = badge.text().await.unwrap();
    assert!(svg.contains("2.0.0"), "{svg}");

    // The registry did call the hook (its pulls and blob pushes included), and the token is
    // not in the metrics, which are labelled by route.
    let metrics = client
        .get(format!("{web}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let hook_calls: u64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("microbadger_http_requests") && l.contains("/hooks/registry/{token}")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(hook_calls >= 2, "the registry called the hook:\n{metrics}");
    assert!(!metrics.contains(&token), "no token in the metrics");
    // The registry named the pushed tags, so each refresh looked at that tag alone: the
    // worker never listed the repository's tags.
    assert_eq!(
        reg.count_since(mark, Some("GET"), "/tags/list"),
        0,
        "{:?}",
        reg.access_log_since(mark)
    );

    let _ = stop_tx.send(true);
    server.await.unwrap().unwrap();
    worker.await.unwrap();
    eprintln!(
        "end to end: tag 2 visible {seen_after:?} after its push; whole test {:?}",
        started.elapsed()
    );
}
