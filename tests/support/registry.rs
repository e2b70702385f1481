//! The real CNCF distribution registry (`/usr/bin/docker-registry`, Debian package
//! `docker-registry`, 2.8.x), started per test on a free port with filesystem storage in a
//! temporary directory.
//!
//! Request counting: the registry writes one Apache combined-format access line per request
//! to stdout (`127.0.0.1 - user [date] "HEAD /v2/x/manifests/1 HTTP/1.1" 200 528 "" "ua"`),
//! which goes to a file parsed by [`TestRegistry::access_log`]. Because the registry may write
//! a line just after the client has its response, every read first sends a sentinel request
//! (`GET /v2/?harness-sync=N`) and waits for its line; sentinel lines are never returned.

use super::token::{AccessEntry, TokenIssuer};
use super::{HARNESS_USER_AGENT, free_port, harness_agent, media, read_lossy, run_tool};
use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// User name and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    pub user: String,
    pub password: String,
}

impl Creds {
    pub fn new(user: &str, password: &str) -> Self {
        Creds {
            user: user.to_string(),
            password: password.to_string(),
        }
    }

    /// `user:password`, as skopeo's `--creds` wants it.
    pub fn colon_joined(&self) -> String {
        format!("{}:{}", self.user, self.password)
    }

    /// `Basic base64(user:password)`.
    pub fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(self.colon_joined())
        )
    }
}

/// How the registry authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// Open registry.
    None,
    /// HTTP Basic against a bcrypt htpasswd file (`htpasswd -B`).
    Htpasswd { user: String, password: String },
    /// Bearer tokens from a [`TokenIssuer`] started with the registry.
    Token,
}

impl Auth {
    pub fn htpasswd(user: &str, password: &str) -> Self {
        Auth::Htpasswd {
            user: user.to_string(),
            password: password.to_string(),
        }
    }
}

/// One parsed access-log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogEntry {
    pub remote_addr: String,
    /// The log's user field. The registry fills it only from user info in the request URL,
    /// never from an `Authorization` header, so it is `None` in practice.
    pub user: Option<String>,
    pub method: String,
    /// Request URI as sent (path and query).
    pub uri: String,
    pub status: u16,
    /// Response bytes written (`None` for `-`).
    pub bytes: Option<u64>,
    pub user_agent: String,
}

impl AccessLogEntry {
    /// The URI without its query string.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }

    /// A request under `/v2/<name>/manifests/`.
    pub fn is_manifest(&self) -> bool {
        self.path().contains("/manifests/")
    }

    /// A request under `/v2/<name>/blobs/` (uploads included).
    pub fn is_blob(&self) -> bool {
        self.path().contains("/blobs/")
    }

    /// Sent by the harness itself (fixture pushes use skopeo's own agent, `skopeo/1.9.3`).
    pub fn is_harness(&self) -> bool {
        self.user_agent == HARNESS_USER_AGENT
    }

    /// Parses one combined-log line; `None` for anything else.
    pub fn parse(line: &str) -> Option<Self> {
        // remote ident user [time] "request" status bytes "referer" "ua"
        let (remote_addr, rest) = line.split_once(' ')?;
        let (_ident, rest) = rest.split_once(' ')?;
        let (user, rest) = rest.split_once(' ')?;
        let rest = rest.strip_prefix('[')?;
        let (_time, rest) = rest.split_once("] ")?;
        let (request, rest) = take_quoted(rest)?;
        let mut fields = rest.trim_start().splitn(3, ' ');
        let status = fields.next()?.parse().ok()?;
        let bytes = fields.next()?.parse().ok();
        let rest = fields.next().unwrap_or("");
        let (_referer, rest) = take_quoted(rest).unwrap_or_default();
        let (user_agent, _) = take_quoted(rest.trim_start()).unwrap_or_default();
        let mut parts = request.split(' ');
        let method = parts.next()?.to_string();
        let uri = parts.next()?.to_string();
        Some(AccessLogEntry {
            remote_addr: remote_addr.to_string(),
            user: (user != "-").then(|| user.to_string()),
            method,
            uri,
            status,
            bytes,
            user_agent,
        })
    }
}

/// `"..."` with backslash escapes at the start of `s`; returns (unescaped, rest).
fn take_quoted(s: &str) -> Option<(String, &str)> {
    let s = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, n)) = chars.next() {
                    out.push(n);
                }
            }
            '"' => return Some((out, &s[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

/// A position in the access log (see [`TestRegistry::mark`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogMark(usize);

/// A response to a harness API call.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ApiResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn expect_success(self, what: &str) -> Self {
        assert!(
            (200..300).contains(&self.status),
            "{what}: HTTP {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        self
    }
}

/// A running registry; killed and reaped on drop.
pub struct TestRegistry {
    child: Child,
    port: u16,
    auth: Auth,
    issuer: Option<TokenIssuer>,
    agent: ureq::Agent,
    sync_counter: AtomicU64,
    /// Line index (in the raw file) from which `access_log` reads; see `clear_log`.
    baseline: AtomicUsize,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Starts a registry and waits until `GET /v2/` answers. Panics (with the registry's own
    /// log) when it cannot start.
    pub fn start(auth: Auth) -> Self {
        Self::start_with_extra_config(auth, "")
    }

    /// Like [`start`](Self::start), and notifies `url` of every event, blob pushes and pulls
    /// included (the distribution registry's `notifications.endpoints`): a 2 s timeout per
    /// attempt, and a 1 s backoff after each failure, so a test sees events within seconds.
    pub fn start_with_notifications(auth: Auth, url: &str) -> Self {
        let yaml = format!(
            "notifications:\n  endpoints:\n    - name: microbadger-test\n      url: {}\n      \
             timeout: 2s\n      threshold: 1\n      backoff: 1s\n",
            quote(url)
        );
        Self::start_with_extra_config(auth, &yaml)
    }

    /// Like [`start`](Self::start), with `extra_yaml` (top-level sections such as
    /// `notifications:`) appended to the registry's configuration.
    pub fn start_with_extra_config(auth: Auth, extra_yaml: &str) -> Self {
        let dir = super::scratch_dir("test-registry-");
        let issuer = (auth == Auth::Token).then(TokenIssuer::start);
        let auth_yaml = match &auth {
            Auth::None => String::new(),
            Auth::Htpasswd { user, password } => {
                let out = run_tool(
                    Command::new("htpasswd")
                        .args(["-nbB", "-C", "4"])
                        .arg(user)
                        .arg(password),
                );
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, &out.stdout).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
                    quote(&path)
                )
            }
            Auth::Token => {
                let issuer = issuer.as_ref().expect("issuer");
                let path = dir.path().join("token-cert.pem");
                std::fs::write(&path, issuer.cert_pem()).expect("write cert");
                format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    quote(&issuer.realm()),
                    TokenIssuer::SERVICE,
                    TokenIssuer::ISSUER,
                    quote(&path)
                )
            }
        };
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).expect("storage dir");
        let mut last_log = String::new();
        // A free port can be taken between probing and binding: retry a few times.
        for _attempt in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
                 maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: microbadger-test-secret\n\
                 {auth_yaml}{extra_yaml}",
                quote(&storage)
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).expect("write config");
            let stdout = std::fs::File::create(dir.path().join("access.log")).expect("log");
            let stderr = std::fs::File::create(dir.path().join("registry.log")).expect("log");
            let mut child = Command::new(registry_binary())
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .spawn()
                .expect("spawn docker-registry (run scripts/setup to install it)");
            let agent = harness_agent();
            match wait_ready(&mut child, port, &agent, dir.path()) {
                Ok(()) => {
                    let reg = TestRegistry {
                        child,
                        port,
                        auth,
                        issuer,
                        agent,
                        sync_counter: AtomicU64::new(0),
                        baseline: AtomicUsize::new(0),
                        dir,
                    };
                    // Readiness probes are not the test's requests.
                    reg.clear_log();
                    return reg;
                }
                Err(log) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_log = log;
                    if !last_log.contains("address already in use") {
                        break;
                    }
                }
            }
        }
        panic!("docker-registry did not start:\n{last_log}");
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT/<name_and_ref>`, e.g. `reference("team/app:1.0")`.
    pub fn reference(&self, name_and_ref: &str) -> String {
        format!("{}/{}", self.host(), name_and_ref)
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// Credentials that may pull and push: the htpasswd user, or in token mode the Basic
    /// credentials the issuer accepts ([`TokenIssuer::push_creds`]); `None` when open.
    pub fn creds(&self) -> Option<Creds> {
        match &self.auth {
            Auth::None => None,
            Auth::Htpasswd { user, password } => Some(Creds::new(user, password)),
            Auth::Token => Some(TokenIssuer::push_creds()),
        }
    }

    /// The token issuer, in [`Auth::Token`] mode.
    pub fn token_issuer(&self) -> Option<&TokenIssuer> {
        self.issuer.as_ref()
    }

    /// The filesystem storage root (`docker/registry/v2/...` below it).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The registry's own (application) log, for debugging failures.
    pub fn registry_log(&self) -> String {
        read_lossy(&self.dir.path().join("registry.log"))
    }

    fn access_log_path(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    /// Sends a sentinel request and waits for its line; returns all raw lines up to and
    /// including it.
    fn synced_lines(&self) -> Vec<String> {
        let n = self.sync_counter.fetch_add(1, Ordering::SeqCst);
        let sentinel = format!("/v2/?harness-sync={n}");
        let _ = self.agent.get(&format!("{}{sentinel}", self.url())).call();
        let needle = format!(" {sentinel} ");
        let path = self.access_log_path();
        super::wait_for("the registry access log", Duration::from_secs(10), || {
            let text = read_lossy(&path);
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            let pos = lines.iter().position(|l| l.contains(&needle))?;
            Some(lines[..=pos].to_vec())
        })
    }

    fn entries_from(&self, start: usize) -> Vec<AccessLogEntry> {
        self.synced_lines()
            .iter()
            .skip(start)
            .filter_map(|l| AccessLogEntry::parse(l))
            .filter(|e| !e.uri.starts_with("/v2/?harness-sync="))
            .collect()
    }

    /// All requests since start (or since the last [`clear_log`](Self::clear_log)), in order.
    pub fn access_log(&self) -> Vec<AccessLogEntry> {
        self.entries_from(self.baseline.load(Ordering::SeqCst))
    }

    /// Alias of [`access_log`](Self::access_log).
    pub fn access_log_lines(&self) -> Vec<AccessLogEntry> {
        self.access_log()
    }

    /// Number of requests since start (or the last `clear_log`).
    pub fn request_count(&self) -> usize {
        self.access_log().len()
    }

    /// Forget the requests so far: later `access_log`/`request_count` only see newer ones.
    pub fn clear_log(&self) {
        let n = self.synced_lines().len();
        self.baseline.store(n, Ordering::SeqCst);
    }

    /// A point in the log; see [`access_log_since`](Self::access_log_since).
    pub fn mark(&self) -> LogMark {
        LogMark(self.synced_lines().len())
    }

    /// Requests made after `mark` was taken.
    pub fn access_log_since(&self, mark: LogMark) -> Vec<AccessLogEntry> {
        self.entries_from(mark.0)
    }

    /// Number of requests after `mark`, optionally only those matching `method`
    /// and whose path contains `path_part`.
    pub fn count_since(&self, mark: LogMark, method: Option<&str>, path_part: &str) -> usize {
        self.access_log_since(mark)
            .iter()
            .filter(|e| method.is_none_or(|m| e.method == m) && e.path().contains(path_part))
            .count()
    }

    /// An authorised API call (Basic in htpasswd mode; in token mode a token minted in-process
    /// with full access to the repository named in `path`, not counted by the issuer).
    /// `path` starts with `/v2/`. Sent with the harness User-Agent.
    pub fn admin_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> ApiResponse {
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url()));
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        match &self.auth {
            Auth::None => {}
            Auth::Htpasswd { user, password } => {
                builder =
                    builder.header("Authorization", Creds::new(user, password).basic_header());
            }
            Auth::Token => {
                let access = access_for_path(path);
                let token = self
                    .issuer
                    .as_ref()
                    .expect("issuer")
                    .mint("harness", &access);
                builder = builder.header("Authorization", format!("Bearer {token}"));
            }
        }
        let request = builder.body(body.to_vec()).expect("build request");
        let mut resp = self
            .agent
            .run(request)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = if method == "HEAD" {
            Vec::new()
        } else {
            resp.body_mut()
                .with_config()
                .limit(64 * 1024 * 1024)
                .read_to_vec()
                .unwrap_or_else(|e| panic!("{method} {path}: reading body: {e}"))
        };
        ApiResponse {
            status,
            headers,
            body,
        }
    }

    /// `GET /v2/<name>/manifests/<reference>` accepting every manifest type; panics unless 200.
    pub fn get_manifest(&self, name: &str, reference: &str) -> ApiResponse {
        self.admin_request(
            "GET",
            &format!("/v2/{name}/manifests/{reference}"),
            &[("Accept", media::ACCEPT_ALL_MANIFESTS)],
            &[],
        )
        .expect_success(&format!("GET manifest {name}:{reference}"))
    }

    /// `PUT /v2/<name>/manifests/<reference>`; returns the registry's `Docker-Content-Digest`.
    pub fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> String {
        let resp = self
            .admin_request(
                "PUT",
                &format!("/v2/{name}/manifests/{reference}"),
                &[("Content-Type", content_type)],
                bytes,
            )
            .expect_success(&format!("PUT manifest {name}:{reference}"));
        resp.header("Docker-Content-Digest")
            .map(str::to_string)
            .unwrap_or_else(|| super::sha256_digest(bytes))
    }

    /// Tags the manifest at `name:source_tag` with every tag in `new_tags` by PUTting the same
    /// manifest bytes (what `docker tag && docker push` does; fast: one request per tag).
    pub fn add_tags<I, S>(&self, name: &str, source_tag: &str, new_tags: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let source = self.get_manifest(name, source_tag);
        let content_type = source
            .header("Content-Type")
            .expect("manifest content type")
            .to_string();
        let tags: Vec<String> = new_tags
            .into_iter()
            .map(|t| t.as_ref().to_string())
            .collect();
        // A few PUTs in flight at once: the registry is I/O-bound, the machine has 2 cores.
        let per_thread = tags.len().div_ceil(4).max(1);
        std::thread::scope(|scope| {
            for chunk in tags.chunks(per_thread) {
                let (content_type, body) = (&content_type, &source.body);
                scope.spawn(move || {
                    for tag in chunk {
                        self.put_manifest(name, tag, content_type, body);
                    }
                });
            }
        });
    }

    /// `GET /v2/<name>/tags/list` following `Link` pages; all tags in registry order.
    pub fn list_tags(&self, name: &str) -> Vec<String> {
        let mut tags = Vec::new();
        let mut path = format!("/v2/{name}/tags/list?n=1000");
        loop {
            let resp = self
                .admin_request("GET", &path, &[], &[])
                .expect_success("list tags");
            if let Some(list) = resp.json()["tags"].as_array() {
                tags.extend(list.iter().filter_map(|t| t.as_str().map(str::to_string)));
            }
            match resp
                .header("Link")
                .and_then(|l| l.split_once('<'))
                .and_then(|(_, r)| r.split_once('>'))
            {
                Some((next, _)) => path = next.to_string(),
                None => return tags,
            }
        }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_ready(child: &mut Child, port: u16, agent: &ureq::Agent, dir: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = format!("http://127.0.0.1:{port}/v2/");
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = read_lossy(&dir.join("registry.log"));
            return Err(format!("exited with {status}:\n{log}"));
        }
        // Ready once it answers and the answer is in *its* access log (so a server that grabbed
        // the port first cannot pass for it; the registry then fails to bind and we retry).
        if let Ok(resp) = agent.get(&url).call()
            && matches!(resp.status().as_u16(), 200 | 401)
            && std::fs::metadata(dir.join("access.log")).is_ok_and(|m| m.len() > 0)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            let log = read_lossy(&dir.join("registry.log"));
            return Err(format!("no answer on {url}:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn registry_binary() -> &'static str {
    if Path::new("/usr/bin/docker-registry").exists() {
        "/usr/bin/docker-registry"
    } else {
        "docker-registry"
    }
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn quote(s: &(impl AsRef<std::ffi::OsStr> + ?Sized)) -> String {
    serde_json::to_string(&s.as_ref().to_string_lossy()).expect("quote")
}

/// Full access for whatever a harness path touches.
fn access_for_path(path: &str) -> Vec<AccessEntry> {
    let path = path.split('?').next().unwrap_or("");
    if path.starts_with("/v2/_catalog") {
        return vec![AccessEntry {
            kind: "registry".into(),
            name: "catalog".into(),
            actions: vec!["*".into()],
        }];
    }
    let rest = path.trim_start_matches("/v2/");
    for marker in ["/manifests/", "/blobs/", "/tags/"] {
        if let Some(i) = rest.find(marker) {
            return vec![AccessEntry::repository(
                &rest[..i],
                &["pull", "push", "delete"],
            )];
        }
    }
    Vec::new()
}
