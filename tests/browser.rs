//! A real browser against the real server: headless Chromium driven through chromedriver (the
//! Debian packages `chromium` and `chromium-driver`, installed by `scripts/setup`), speaking
//! W3C WebDriver over HTTP with `ureq`.
//!
//! The site is `microbadger::web::serve` on a free 127.0.0.1 port over a [`TestApp`] (temporary
//! SQLite store and embedded queue), run by a background tokio runtime; the store is seeded
//! with real inspections (`inspect_image` over small manifest and config documents).
//!
//! Checks: the image page shows its labels and compliance report; every badge `<img>` loads
//! (`naturalWidth > 0`); the script runs under the CSP (copy buttons shown, no CSP
//! violations); an unknown image's "inspecting" page turns into the image page by itself once
//! the image is saved (the worker's part, simulated), with JavaScript (polling) and without
//! (meta refresh). Screenshots of the pages are saved to `target/screenshots/` as artifacts.

mod support;

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use microbadger::inspect::{ImageInput, Platform, PlatformEntry, inspect_image};
use microbadger::oci::{ImageConfig, OciImageManifest};
use microbadger::reference::ImageRef;
use microbadger::registry::Inspection;
use microbadger::registry::hub::HubInfo;
use serde_json::{Value, json};
use support::web::{TestApp, digest};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

// ---- the site ----------------------------------------------------------------------------

/// The web service on a free port, served by its own runtime until dropped.
struct Site {
    rt: tokio::runtime::Runtime,
    app: TestApp,
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Site {
    fn start() -> Site {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr: SocketAddr = listener.local_addr().expect("address");
        let base = format!("http://{addr}");
        let app = rt.block_on(TestApp::new(|c| c.web.public_url = base.clone()));
        let listener = {
            let _guard = rt.enter();
            tokio::net::TcpListener::from_std(listener).expect("tokio listener")
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(microbadger::web::serve(
            listener,
            app.state.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        Site {
            rt,
            app,
            base,
            stop: Some(tx),
            task: Some(task),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Save `image:tag` as the worker would.
    fn save(
        &self,
        image: &str,
        tag: &str,
        top: u32,
        labels: &[(&str, &str)],
        layers: &[(u64, &str)],
    ) -> i64 {
        let r = ImageRef::parse(image).unwrap();
        let insp = inspection(image, tag, top, labels, layers);
        self.rt.block_on(async {
            let repo = self
                .app
                .store
                .add_repository(r.registry(), r.repository(), chrono::Utc::now())
                .await
                .unwrap();
            self.app
                .store
                .save_tag(repo.id, tag, &insp, chrono::Utc::now())
                .await
                .unwrap();
            repo.id
        })
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await });
        }
    }
}

/// An inspection of `image:tag` at `digest(top)` made by the real engine.
fn inspection(
    image: &str,
    tag: &str,
    top: u32,
    labels: &[(&str, &str)],
    layers: &[(u64, &str)],
) -> Inspection {
    let manifest_layers: Vec<Value> = layers
        .iter()
        .enumerate()
        .map(|(i, (size, _))| {
            json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "size": size,
                "digest": digest(top * 100 + i as u32 + 1),
            })
        })
        .collect();
    let history: Vec<Value> = layers
        .iter()
        .map(|(_, command)| json!({"created": "2024-03-01T10:00:00Z", "created_by": command}))
        .collect();
    let manifest: OciImageManifest = serde_json::from_value(json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 100,
                   "digest": digest(top * 100)},
        "layers": manifest_layers,
    }))
    .unwrap();
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let config: ImageConfig = serde_json::from_value(json!({
        "architecture": "amd64", "os": "linux",
        "created": "2024-03-01T10:00:00Z",
        "config": {"Labels": labels, "Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx", "-g", "daemon off;"],
                   "ExposedPorts": {"80/tcp": {}}, "Env": ["PATH=/usr/bin"], "User": "nginx"},
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

/// A realistic, not perfect, set of labels: the OCI report has a few keys to fix.
const LABELS: &[(&str, &str)] = &[
    ("org.opencontainers.image.title", "Acme Web"),
    (
        "org.opencontainers.image.description",
        "The Acme storefront, served by nginx",
    ),
    (
        "org.opencontainers.image.source",
        "https://github.com/acme/web",
    ),
    (
        "org.opencontainers.image.revision",
        "9f2c1e7a4b3d2c1e0f9a8b7c6d5e4f3a2b1c0d9e",
    ),
    ("org.opencontainers.image.version", "2.4.1"),
    ("org.opencontainers.image.licenses", "Apache-2.0"),
    ("maintainer", "Acme Platform Team <platform@acme.example>"),
    ("com.acme.team", "storefront"),
    ("com.acme.docs", "https://acme.example/docs/web"),
];

const LAYERS: &[(u64, &str)] = &[
    (29_150_000, "/bin/sh -c #(nop) ADD file:5b1e6f2 in / "),
    (
        41_870_000,
        "/bin/sh -c apt-get update && apt-get install -y --no-install-recommends nginx ca-certificates && rm -rf /var/lib/apt/lists/*",
    ),
    (
        620,
        "/bin/sh -c #(nop) COPY file:e3b0c44 in /docker-entrypoint.sh ",
    ),
    (
        4_300_000,
        "/bin/sh -c #(nop) COPY dir:8d1f0e2 in /usr/share/nginx/html ",
    ),
    (
        1_250,
        "/bin/sh -c #(nop) COPY file:77aa01b in /etc/nginx/conf.d/default.conf ",
    ),
];

// ---- chromedriver and WebDriver --------------------------------------------------------

/// A chromedriver process on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        let port = support::free_port();
        let dir = support::scratch_dir("chromedriver-");
        let log = File::create(dir.path().join("chromedriver.log")).expect("log file");
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start chromedriver ({e}): run scripts/setup"));
        let url = format!("http://127.0.0.1:{port}");
        let mut driver = Driver { child, url, dir };
        let agent = agent();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = agent
                .get(format!("{}/status", driver.url))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .and_then(|b| serde_json::from_str::<Value>(&b).ok())
                .is_some_and(|v| v["value"]["ready"] == json!(true));
            if ready {
                return driver;
            }
            if let Ok(Some(status)) = driver.child.try_wait() {
                panic!("chromedriver exited with {status}: {}", driver.log());
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start: {}",
                driver.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(90)))
        .build()
        .into()
}

/// One browser session (one Chromium with its own profile), closed on drop.
struct Browser {
    agent: ureq::Agent,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn open(driver: &Driver, javascript: bool) -> Browser {
        let profile = support::scratch_dir("chromium-profile-");
        let mut options = json!({
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--hide-scrollbars", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        });
        if !javascript {
            options["prefs"] = json!({"profile.managed_default_content_settings.javascript": 2});
        }
        for binary in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
            if Path::new(binary).exists() {
                options["binary"] = json!(binary);
                break;
            }
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let agent = agent();
        let created = request(
            &agent,
            "POST",
            &format!("{}/session", driver.url),
            Some(&caps),
        )
        .unwrap_or_else(|e| panic!("new session: {e}\n{}", driver.log()));
        let id = created["sessionId"]
            .as_str()
            .expect("session id")
            .to_owned();
        Browser {
            agent,
            session: format!("{}/session/{id}", driver.url),
            _profile: profile,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        request(
            &self.agent,
            method,
            &format!("{}{path}", self.session),
            body,
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(&json!({ "url": url })));
    }

    fn title(&self) -> String {
        self.cmd("GET", "/title", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(&json!({"script": script, "args": []})),
        )
    }

    fn resize(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(&json!({"width": width, "height": height})),
        );
    }

    /// Browser console entries since the last call (chromedriver's log extension).
    fn console(&self) -> Vec<String> {
        let logs = self.cmd("POST", "/se/log", Some(&json!({"type": "browser"})));
        logs.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| format!("{} {}", e["level"], e["message"]))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A PNG of the whole page at `width`, saved as `target/screenshots/<name>.png`.
    fn screenshot(&self, name: &str, width: u32) -> PathBuf {
        self.resize(width, 900);
        let height = self
            .js("return document.documentElement.scrollHeight")
            .as_u64()
            .unwrap_or(900);
        self.resize(width, (height as u32 + 140).clamp(600, 9000));
        std::thread::sleep(Duration::from_millis(300));
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64 screenshot"))
            .expect("valid base64");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        self.resize(1280, 900);
        path
    }

    /// Wait until `script` returns a truthy value.
    fn wait_for(&self, what: &str, timeout: Duration, script: &str) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.js(script);
            if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = request(&self.agent, "DELETE", &self.session, None);
    }
}

/// One WebDriver call: the response's `value`, or the WebDriver error.
fn request(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let payload = body
        .map(Value::to_string)
        .unwrap_or_else(|| "{}".to_owned());
    let builder = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("Content-Type", "application/json; charset=utf-8");
    let req = if method == "GET" || method == "DELETE" {
        builder.body(Vec::new())
    } else {
        builder.body(payload.into_bytes())
    }
    .map_err(|e| e.to_string())?;
    let mut resp = agent.run(req).map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    if status != 200 {
        return Err(format!("{status}: {}", v["value"]));
    }
    Ok(v["value"].clone())
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("screenshots")
}

/// Console errors worth failing for: CSP violations and resources that failed to load.
fn problems(console: &[String]) -> Vec<&String> {
    console
        .iter()
        .filter(|l| {
            l.contains("Content Security Policy")
                || (l.contains("SEVERE") && !l.contains("favicon.ico"))
        })
        .collect()
}

// ---- the tests ---------------------------------------------------------------------------

#[test]
fn image_page_shows_labels_compliance_and_loads_every_badge() {
    let site = Site::start();
    let id = site.save("acme/web", "2.4.1", 1, LABELS, LAYERS);
    site.save("acme/web", "latest", 1, LABELS, LAYERS);
    site.save("acme/web", "2.3.0", 2, &LABELS[..4], &LAYERS[..3]);
    site.rt
        .block_on(site.app.store.set_hub_info(
            id,
            &HubInfo {
                description: Some("The Acme storefront".into()),
                star_count: Some(312),
                pull_count: Some(1_480_000),
                last_updated: Some("2024-04-02T09:00:00Z".into()),
                is_official: false,
            },
        ))
        .unwrap();
    site.save(
        "nginx",
        "1.27",
        3,
        &[(
            "maintainer",
            "NGINX Docker Maintainers <docker-maint@nginx.com>",
        )],
        &LAYERS[..2],
    );
    site.save("ghcr.io/acme/worker", "0.9", 4, &LABELS[2..6], &LAYERS[1..]);

    let driver = Driver::start();
    let browser = Browser::open(&driver, true);

    // Home page.
    browser.goto(&site.url("/"));
    assert_eq!(
        browser.title(),
        "Container image metadata, labels and badges · MicroBadger"
    );
    let recent = browser.js("return Array.from(document.querySelectorAll('#recent a.image-name')).map(a => a.textContent)");
    assert!(
        recent
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "acme/web:2.4.1"),
        "{recent}"
    );
    let home = browser.screenshot("home", 1280);

    // Image page.
    browser.goto(&site.url("/images/acme/web:2.4.1"));
    assert_eq!(browser.title(), "acme/web:2.4.1 · MicroBadger");
    let labels = browser.js(
        "return Object.fromEntries(Array.from(document.querySelectorAll('#labels-table tbody tr'))
            .map(r => [r.querySelector('th').textContent, r.querySelector('td').innerText.trim()]))",
    );
    for (k, v) in LABELS {
        assert_eq!(labels[*k], json!(v), "label {k}: {labels}");
    }
    let docs_link = browser.js("return document.querySelector('#labels-table a[href=\"https://acme.example/docs/web\"]').rel");
    assert_eq!(docs_link, json!("nofollow noopener"));
    let score = browser.js("return document.querySelector('#compliance-score').innerText");
    let score = score
        .as_str()
        .unwrap()
        .trim()
        .trim_end_matches('%')
        .parse::<u8>()
        .unwrap();
    assert!(score > 0 && score < 100, "a partly labelled image: {score}");
    let oci_visible = browser
        .js("const t = document.querySelector('#schema-oci table'); return t.offsetHeight > 0");
    assert_eq!(oci_visible, json!(true), "the OCI report is open");
    let fix = browser.js("return document.querySelector('#fix-oci-dockerfile').innerText");
    assert!(
        fix.as_str()
            .unwrap()
            .contains("LABEL org.opencontainers.image.created=\"$BUILD_DATE\""),
        "{fix}"
    );

    // Every badge loads.
    let badges = browser.wait_for(
        "badges to load",
        Duration::from_secs(15),
        "const imgs = Array.from(document.querySelectorAll('#badges img'));
         return imgs.length > 0 && imgs.every(i => i.complete)
             ? imgs.map(i => ({src: i.getAttribute('src'), width: i.naturalWidth})) : null",
    );
    let badges = badges.as_array().unwrap();
    assert_eq!(badges.len(), 7);
    for b in badges {
        assert!(b["width"].as_u64().unwrap() > 0, "badge did not load: {b}");
    }

    // The script ran under the CSP: copy buttons shown, relative dates added.
    let shown = browser.js("return document.querySelectorAll('button.copy:not([hidden])').length");
    assert!(shown.as_u64().unwrap() >= 21, "{shown}");
    let ago = browser.js("return document.querySelectorAll('time[data-ago] + span.muted').length");
    assert!(ago.as_u64().unwrap() > 0, "{ago}");
    let chart_bars =
        browser.js("return document.querySelectorAll('svg.layer-chart rect.fill').length");
    assert_eq!(chart_bars, json!(LAYERS.len()));
    let image = browser.screenshot("image", 1280);
    let image_mobile = browser.screenshot("image-mobile", 390);
    let horizontal_overflow =
        browser.js("return document.documentElement.scrollWidth > window.innerWidth");
    browser.resize(390, 900);
    let overflow_mobile =
        browser.js("return document.documentElement.scrollWidth - window.innerWidth");
    browser.resize(1280, 900);
    assert_eq!(horizontal_overflow, json!(false));
    assert!(
        overflow_mobile.as_i64().unwrap() <= 0,
        "the page scrolls sideways on a phone: {overflow_mobile}"
    );

    // Version page and API page.
    browser.goto(&site.url(&format!("/images/acme/web/version/{}", digest(1))));
    assert!(
        browser.title().starts_with("acme/web@"),
        "{}",
        browser.title()
    );
    let version = browser.screenshot("version", 1280);
    browser.goto(&site.url("/api"));
    assert_eq!(browser.title(), "JSON API · MicroBadger");
    let api = browser.screenshot("api", 1280);
    let console = browser.console();
    assert!(
        problems(&console).is_empty(),
        "browser console: {console:#?}"
    );
    browser.goto(&site.url("/images/acme/web:nope"));
    let not_found = browser.screenshot("not-found", 1280);
    for p in [home, image, image_mobile, version, api, not_found] {
        eprintln!("screenshot: {}", p.display());
    }
}

#[test]
fn inspecting_page_becomes_the_image_page_by_itself() {
    let site = Site::start();
    let driver = Driver::start();
    let browser = Browser::open(&driver, true);

    browser.goto(&site.url("/images/acme/fresh:1.0"));
    assert_eq!(browser.title(), "Inspecting acme/fresh:1.0 · MicroBadger");
    // The script has taken over from the meta refresh and is polling.
    browser.wait_for(
        "the poll status",
        Duration::from_secs(10),
        "return document.getElementById('poll-status').textContent.startsWith('Still inspecting')",
    );
    let shot = browser.screenshot("inspecting", 1280);
    eprintln!("screenshot: {}", shot.display());
    // Still inspecting several seconds later: no meta refresh reloaded it meanwhile.
    let marker = browser.js("window.__same_page = true; return true");
    assert_eq!(marker, json!(true));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        browser.js("return window.__same_page === true"),
        json!(true),
        "the page reloaded while still inspecting"
    );

    // The worker's part.
    let saved = Instant::now();
    site.save("acme/fresh", "1.0", 9, LABELS, LAYERS);
    let deadline = saved + Duration::from_secs(10);
    while browser.title() != "acme/fresh:1.0 · MicroBadger" {
        assert!(
            Instant::now() < deadline,
            "still {:?} 10 s after the image was saved",
            browser.title()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "inspecting page became the image page {:?} after the save (with JavaScript)",
        saved.elapsed()
    );
    assert_eq!(
        browser.js("return document.querySelector('h1').innerText"),
        json!("acme/fresh:1.0")
    );
    let console = browser.console();
    assert!(
        problems(&console).is_empty(),
        "browser console: {console:#?}"
    );
}

#[test]
fn inspecting_page_completes_without_javascript_too() {
    let site = Site::start();
    let driver = Driver::start();
    let browser = Browser::open(&driver, false);
    browser.goto(&site.url("/images/acme/nojs:1.0"));
    assert_eq!(browser.title(), "Inspecting acme/nojs:1.0 · MicroBadger");
    // No script ran: the copy of the status line is the server's.
    assert_eq!(
        browser.js("return document.getElementById('poll-status').textContent"),
        json!("Waiting for the inspection…")
    );
    let saved = Instant::now();
    site.save("acme/nojs", "1.0", 10, LABELS, LAYERS);
    let deadline = saved + Duration::from_secs(10);
    while browser.title() != "acme/nojs:1.0 · MicroBadger" {
        assert!(
            Instant::now() < deadline,
            "still {:?} 10 s after the image was saved",
            browser.title()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "inspecting page became the image page {:?} after the save (meta refresh)",
        saved.elapsed()
    );
}
