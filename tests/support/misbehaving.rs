//! A plain-HTTP server on a free port imitating a registry that misbehaves in one chosen way.
//!
//! It always answers `GET /v2/` with 200. The repository is `test/app` with tag `latest`: a
//! small valid single-platform OCI image (manifest + config + one layer blob). The chosen
//! [`Behaviour`] applies to requests under `/v2/test/app/`; [`Behaviour::Normal`] serves the
//! image correctly, as a baseline. Every request is recorded.

use super::http::{HttpServer, Request, Response, StopSignal};
use super::{media, sha256_digest};
use serde_json::json;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// How the server misbehaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Serves the image correctly.
    Normal,
    /// Manifest: 200, manifest content type, a body that is not valid JSON (its digest header
    /// is honest, so only parsing fails).
    GarbageJson,
    /// By tag: the right manifest with a `Docker-Content-Digest` that is not its digest.
    /// By digest: a different (valid) manifest claiming the requested digest. Config blob:
    /// bytes that do not match its digest.
    WrongDigest,
    /// Manifest: a body of this many bytes with an honest `Content-Length`, streamed.
    /// (HEAD answers with the same `Content-Length` and no body.)
    OversizedManifest(u64),
    /// Manifest: a body of this many bytes, chunked, with no `Content-Length`.
    OversizedManifestChunked(u64),
    /// Manifest: `Content-Length: declared`, then `actual` bytes, then the connection closes.
    ContentLengthLie { declared: u64, actual: u64 },
    /// 401 on manifests and blobs without any `WWW-Authenticate` header.
    UnauthorizedNoChallenge,
    /// 302 on manifests and blobs, `Location` = the same URL.
    RedirectLoop,
    /// 302 on manifests and blobs, alternating between the URL and the URL with `?hop=1`.
    RedirectPingPong,
    /// GET manifest: headers and the first bytes of the body, then nothing (until the client
    /// hangs up or the server is dropped). HEAD answers normally.
    Stall,
    /// Reads the request and never sends anything (manifests and blobs, HEAD and GET).
    StallBeforeHeaders,
    /// The first `times` requests under `/v2/test/app/` get 429 with `Retry-After`; then normal.
    TooManyRequests { retry_after_secs: u64, times: u32 },
    /// The first `times` requests under `/v2/test/app/` get 500; then normal.
    ServerError { times: u32 },
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Image {
    manifest: Vec<u8>,
    manifest_digest: String,
    config: Vec<u8>,
    config_digest: String,
    layer: Vec<u8>,
    layer_digest: String,
    /// WrongDigest: served in place of the real ones.
    tampered_manifest: Vec<u8>,
    tampered_config: Vec<u8>,
}

impl Image {
    fn new() -> Self {
        let layer = b"not really a tar, never fetched by metadata clients".to_vec();
        let layer_digest = sha256_digest(&layer);
        let config_for = |title: &str| {
            serde_json::to_vec(&json!({
                "created": "2024-01-02T03:04:05Z",
                "architecture": "amd64",
                "os": "linux",
                "config": {"Labels": {
                    "org.opencontainers.image.title": title,
                    "org.opencontainers.image.version": "1.0.0"
                }},
                "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
                "history": [{"created": "2024-01-02T03:04:05Z", "created_by": "COPY app /app"}]
            }))
            .expect("JSON")
        };
        let config = config_for("misbehaving");
        let config_digest = sha256_digest(&config);
        let manifest_for = |annotation: &str| {
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": media::OCI_MANIFEST,
                "config": {"mediaType": media::OCI_CONFIG, "digest": config_digest, "size": config.len()},
                "layers": [{"mediaType": media::OCI_LAYER_GZIP, "digest": layer_digest, "size": layer.len()}],
                "annotations": {"org.opencontainers.image.description": annotation}
            }))
            .expect("JSON")
        };
        let manifest = manifest_for("the real manifest");
        Image {
            manifest_digest: sha256_digest(&manifest),
            tampered_manifest: manifest_for("a tampered manifest"),
            tampered_config: config_for("tampered"),
            manifest,
            config,
            config_digest,
            layer,
            layer_digest,
        }
    }
}

struct State {
    behaviour: Behaviour,
    image: Image,
    requests: Mutex<Vec<RecordedRequest>>,
    repo_requests: AtomicU32,
}

/// A running misbehaving registry; stops on drop (stalled connections are released).
pub struct MisbehavingServer {
    state: Arc<State>,
    server: HttpServer,
}

impl MisbehavingServer {
    /// Repository name served.
    pub const REPO: &'static str = "test/app";
    /// Tag served.
    pub const TAG: &'static str = "latest";

    pub fn start(behaviour: Behaviour) -> Self {
        let state = Arc::new(State {
            behaviour,
            image: Image::new(),
            requests: Mutex::new(Vec::new()),
            repo_requests: AtomicU32::new(0),
        });
        let server = {
            let state = state.clone();
            HttpServer::start(move |req| handle(&state, req))
        };
        MisbehavingServer { state, server }
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        self.server.addr().to_string()
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.server.base_url()
    }

    /// `127.0.0.1:PORT/test/app:latest`
    pub fn image_ref(&self) -> String {
        format!("{}/{}:{}", self.host(), Self::REPO, Self::TAG)
    }

    pub fn request_count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Digest of the real manifest.
    pub fn manifest_digest(&self) -> &str {
        &self.state.image.manifest_digest
    }

    pub fn manifest_bytes(&self) -> &[u8] {
        &self.state.image.manifest
    }

    pub fn config_digest(&self) -> &str {
        &self.state.image.config_digest
    }

    pub fn config_bytes(&self) -> &[u8] {
        &self.state.image.config
    }
}

fn api(resp: Response) -> Response {
    resp.header("Docker-Distribution-Api-Version", "registry/2.0")
}

fn registry_error(status: u16, code: &str, message: &str) -> Response {
    api(Response::json(
        status,
        &json!({"errors": [{"code": code, "message": message}]}),
    ))
}

fn manifest_response(bytes: &[u8], digest: &str) -> Response {
    api(Response::new(200)
        .header("Content-Type", media::OCI_MANIFEST)
        .header("Docker-Content-Digest", digest)
        .body(bytes.to_vec()))
}

fn blob_response(bytes: &[u8], digest: &str) -> Response {
    api(Response::new(200)
        .header("Content-Type", "application/octet-stream")
        .header("Docker-Content-Digest", digest)
        .body(bytes.to_vec()))
}

/// `len` bytes that start like a manifest: `{"schemaVersion":2,...,"pad":"aaaa...`.
fn padding(len: u64) -> impl Iterator<Item = Vec<u8>> {
    let prefix = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{}\",\"annotations\":{{\"pad\":\"",
        media::OCI_MANIFEST
    )
    .into_bytes();
    let chunk = 64 * 1024u64;
    let mut sent = 0u64;
    std::iter::from_fn(move || {
        if sent >= len {
            return None;
        }
        let n = chunk.min(len - sent);
        let mut out = vec![b'a'; n as usize];
        if sent < prefix.len() as u64 {
            let from = sent as usize;
            let k = (prefix.len() - from).min(out.len());
            out[..k].copy_from_slice(&prefix[from..from + k]);
        }
        sent += n;
        Some(out)
    })
}

fn head_block(status: u16, headers: &[(&str, String)]) -> Vec<u8> {
    let mut s = format!("HTTP/1.1 {status} {}\r\n", super::http::reason(status));
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("Docker-Distribution-Api-Version: registry/2.0\r\n\r\n");
    s.into_bytes()
}

fn stream_body(
    stream: &mut TcpStream,
    stop: &StopSignal,
    len: u64,
    chunked: bool,
) -> std::io::Result<()> {
    for chunk in padding(len) {
        if stop.is_stopped() {
            return Ok(());
        }
        if chunked {
            stop.write_all(stream, format!("{:x}\r\n", chunk.len()).as_bytes())?;
            stop.write_all(stream, &chunk)?;
            stop.write_all(stream, b"\r\n")?;
        } else {
            stop.write_all(stream, &chunk)?;
        }
    }
    if chunked {
        stop.write_all(stream, b"0\r\n\r\n")?;
    }
    Ok(())
}

fn handle(state: &State, req: &Request) -> Response {
    state.requests.lock().unwrap().push(RecordedRequest {
        method: req.method.clone(),
        target: req.target.clone(),
        headers: req.headers.clone(),
    });
    let path = req.path().to_string();
    if path == "/v2/" || path == "/v2" {
        return api(Response::json(200, &json!({})));
    }
    let Some(rest) = path.strip_prefix("/v2/test/app/") else {
        return registry_error(404, "NAME_UNKNOWN", "repository name not known to registry");
    };
    let n = state.repo_requests.fetch_add(1, Ordering::SeqCst);
    let is_head = req.method == "HEAD";
    let img = &state.image;
    let self_url = format!("http://{}{}", req.local, req.target);

    // Behaviours that apply to every repository request.
    match &state.behaviour {
        Behaviour::TooManyRequests {
            retry_after_secs,
            times,
        } if n < *times => {
            return registry_error(429, "TOOMANYREQUESTS", "rate limit exceeded")
                .header("Retry-After", retry_after_secs.to_string());
        }
        Behaviour::ServerError { times } if n < *times => {
            return registry_error(500, "UNKNOWN", "internal error");
        }
        Behaviour::UnauthorizedNoChallenge => {
            return registry_error(401, "UNAUTHORIZED", "authentication required");
        }
        Behaviour::RedirectLoop => {
            return api(Response::new(302).header("Location", self_url));
        }
        Behaviour::RedirectPingPong => {
            let next = if req.target.contains("hop=1") {
                format!("http://{}{path}", req.local)
            } else {
                format!("http://{}{path}?hop=1", req.local)
            };
            return api(Response::new(302).header("Location", next));
        }
        Behaviour::StallBeforeHeaders => {
            return Response::raw(|stream, stop| stop.hang(stream));
        }
        _ => {}
    }

    if rest == "tags/list" {
        return api(Response::json(
            200,
            &json!({"name": MisbehavingServer::REPO, "tags": [MisbehavingServer::TAG]}),
        ));
    }
    if let Some(reference) = rest.strip_prefix("manifests/") {
        let by_digest = reference.starts_with("sha256:");
        if !(reference == MisbehavingServer::TAG || reference == img.manifest_digest) {
            return registry_error(404, "MANIFEST_UNKNOWN", "manifest unknown");
        }
        return match &state.behaviour {
            Behaviour::GarbageJson => {
                let garbage =
                    b"{\"schemaVersion\": 2, \"config\": {\"digest\": <<<not json".to_vec();
                let digest = sha256_digest(&garbage);
                manifest_response(&garbage, &digest)
            }
            Behaviour::WrongDigest if by_digest => {
                manifest_response(&img.tampered_manifest, &img.manifest_digest)
            }
            Behaviour::WrongDigest => {
                manifest_response(&img.manifest, &sha256_digest(&img.tampered_manifest))
            }
            Behaviour::OversizedManifest(len) => {
                let (len, head_only) = (*len, is_head);
                Response::raw(move |stream, stop| {
                    let head = head_block(
                        200,
                        &[
                            ("Content-Type", media::OCI_MANIFEST.to_string()),
                            ("Content-Length", len.to_string()),
                        ],
                    );
                    if stop.write_all(stream, &head).is_ok() && !head_only {
                        let _ = stream_body(stream, stop, len, false);
                    }
                })
            }
            Behaviour::OversizedManifestChunked(len) => {
                let (len, head_only) = (*len, is_head);
                Response::raw(move |stream, stop| {
                    let head = head_block(
                        200,
                        &[
                            ("Content-Type", media::OCI_MANIFEST.to_string()),
                            ("Transfer-Encoding", "chunked".to_string()),
                        ],
                    );
                    if stop.write_all(stream, &head).is_ok() && !head_only {
                        let _ = stream_body(stream, stop, len, true);
                    }
                })
            }
            Behaviour::ContentLengthLie { declared, actual } => {
                let (declared, actual, head_only) = (*declared, *actual, is_head);
                Response::raw(move |stream, stop| {
                    let head = head_block(
                        200,
                        &[
                            ("Content-Type", media::OCI_MANIFEST.to_string()),
                            ("Content-Length", declared.to_string()),
                        ],
                    );
                    if stop.write_all(stream, &head).is_ok() && !head_only {
                        let _ = stream_body(stream, stop, actual, false);
                    }
                })
            }
            Behaviour::Stall if !is_head => {
                let body = img.manifest.clone();
                let digest = img.manifest_digest.clone();
                Response::raw(move |stream, stop| {
                    let head = head_block(
                        200,
                        &[
                            ("Content-Type", media::OCI_MANIFEST.to_string()),
                            ("Content-Length", body.len().to_string()),
                            ("Docker-Content-Digest", digest),
                        ],
                    );
                    if stop.write_all(stream, &head).is_ok()
                        && stop.write_all(stream, &body[..10]).is_ok()
                    {
                        stop.hang(stream);
                    }
                })
            }
            _ => manifest_response(&img.manifest, &img.manifest_digest),
        };
    }
    if let Some(digest) = rest.strip_prefix("blobs/") {
        return if digest == img.config_digest {
            match state.behaviour {
                Behaviour::WrongDigest => blob_response(&img.tampered_config, &img.config_digest),
                _ => blob_response(&img.config, &img.config_digest),
            }
        } else if digest == img.layer_digest {
            blob_response(&img.layer, &img.layer_digest)
        } else {
            registry_error(404, "BLOB_UNKNOWN", "blob unknown to registry")
        };
    }
    registry_error(404, "NOT_FOUND", "not found")
}
