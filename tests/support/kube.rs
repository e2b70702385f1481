//! A fake Kubernetes API server: `apps/v1` Deployments in one namespace, their `scale`
//! subresource, bearer-token authentication, and `Status` error bodies, in the shapes the
//! Kubernetes API reference documents. No cluster can run on these machines (DESIGN.md allows
//! this fake).
//!
//! - `GET /apis/apps/v1/namespaces/{ns}/deployments/{name}`: the Deployment (`spec.replicas`,
//!   `status.replicas`, `status.readyReplicas`, `status.availableReplicas`).
//! - `PATCH .../deployments/{name}/scale`: `Content-Type: application/merge-patch+json`,
//!   body `{"spec":{"replicas":N}}`; answers the `autoscaling/v1` Scale. Other patch types get
//!   415 like the real server.
//! - Without `Authorization: Bearer <token>`: 401 `Unauthorized` Status. Unknown deployment or
//!   namespace: 404 `NotFound` Status.
//! - Pods: after a patch, `status` follows `spec` after `ready_after` (pods being created,
//!   then ready; removed pods linger in `status.replicas` for the same time, terminating).
//!   [`FakeKubernetes::crash_loop`] makes a deployment's pods never ready (a bad image or a
//!   crash loop: the Deployment keeps them, unready).

use super::http::{HttpServer, Request, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct Deployment {
    spec: u32,
    /// Pods counted in `status.replicas` and how many of them are ready.
    replicas: u32,
    ready: u32,
    /// When `status` catches up with `spec`.
    settles_at: Option<Instant>,
    /// Its pods never become ready.
    crash_loop: bool,
}

struct State {
    namespace: String,
    token: String,
    ready_after: Duration,
    deployments: Mutex<BTreeMap<String, Deployment>>,
    patches: Mutex<Vec<(String, String, Value)>>,
}

/// The fake API server; stopped when dropped.
pub struct FakeKubernetes {
    state: Arc<State>,
    server: HttpServer,
}

/// One accepted or refused PATCH: deployment, content type, body.
pub type Patch = (String, String, Value);

impl FakeKubernetes {
    /// Deployments `(name, replicas)` all ready, in `namespace`, accepting `token`.
    pub fn start(namespace: &str, token: &str, deployments: &[(&str, u32)]) -> FakeKubernetes {
        let state = Arc::new(State {
            namespace: namespace.to_string(),
            token: token.to_string(),
            ready_after: Duration::from_millis(300),
            deployments: Mutex::new(
                deployments
                    .iter()
                    .map(|&(name, n)| {
                        (
                            name.to_string(),
                            Deployment {
                                spec: n,
                                replicas: n,
                                ready: n,
                                settles_at: None,
                                crash_loop: false,
                            },
                        )
                    })
                    .collect(),
            ),
            patches: Mutex::new(Vec::new()),
        });
        let server = {
            let state = state.clone();
            HttpServer::start(move |req| handle(&state, req))
        };
        FakeKubernetes { state, server }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.server.base_url()
    }

    /// `spec.replicas` of a deployment.
    pub fn replicas(&self, name: &str) -> Option<u32> {
        self.state
            .deployments
            .lock()
            .unwrap()
            .get(name)
            .map(|d| d.spec)
    }

    /// From now on the deployment's pods are never ready (the ready ones crash too).
    pub fn crash_loop(&self, name: &str) {
        let mut deployments = self.state.deployments.lock().unwrap();
        let d = deployments.get_mut(name).expect("a deployment of the fake");
        d.crash_loop = true;
        d.ready = 0;
    }

    /// Every PATCH received, in order.
    pub fn patches(&self) -> Vec<Patch> {
        self.state.patches.lock().unwrap().clone()
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    Response::json(
        code,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }),
    )
}

fn settle(d: &mut Deployment) {
    if d.settles_at.is_some_and(|t| Instant::now() >= t) {
        d.replicas = d.spec;
        d.ready = if d.crash_loop { 0 } else { d.spec };
        d.settles_at = None;
    }
}

fn deployment_json(ns: &str, name: &str, d: &Deployment) -> Value {
    json!({
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {"name": name, "namespace": ns, "generation": 1},
        "spec": {
            "replicas": d.spec,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": []}},
        },
        "status": {
            "observedGeneration": 1,
            "replicas": d.replicas,
            "updatedReplicas": d.replicas,
            "readyReplicas": d.ready,
            "availableReplicas": d.ready,
        },
    })
}

fn handle(state: &State, req: &Request) -> Response {
    let expected = format!("Bearer {}", state.token);
    if req.header("authorization") != Some(expected.as_str()) {
        return status(401, "Unauthorized", "Unauthorized");
    }
    let path = req.path().to_string();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (ns, name, sub) = match parts.as_slice() {
        ["apis", "apps", "v1", "namespaces", ns, "deployments", name] => (*ns, *name, None),
        [
            "apis",
            "apps",
            "v1",
            "namespaces",
            ns,
            "deployments",
            name,
            sub,
        ] => (*ns, *name, Some(*sub)),
        _ => {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            );
        }
    };
    let mut deployments = state.deployments.lock().unwrap();
    let not_found = || {
        status(
            404,
            "NotFound",
            &format!("deployments.apps \"{name}\" not found"),
        )
    };
    if ns != state.namespace {
        return not_found();
    }
    let Some(d) = deployments.get_mut(name) else {
        return not_found();
    };
    settle(d);
    match (req.method.as_str(), sub) {
        ("GET", None) => Response::json(200, &deployment_json(ns, name, d)),
        ("PATCH", Some("scale")) => {
            let content_type = req.header("content-type").unwrap_or("").to_string();
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            state.patches.lock().unwrap().push((
                name.to_string(),
                content_type.clone(),
                body.clone(),
            ));
            if content_type != "application/merge-patch+json" {
                return status(
                    415,
                    "UnsupportedMediaType",
                    &format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, got {content_type}"
                    ),
                );
            }
            let Some(n) = body
                .pointer("/spec/replicas")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
            else {
                return status(422, "Invalid", "spec.replicas: Invalid value");
            };
            if n != d.spec {
                d.spec = n;
                // Pods being created count in status only once created; removed ones linger.
                d.replicas = d.replicas.max(n);
                d.ready = d.ready.min(n);
                d.settles_at = Some(Instant::now() + state.ready_after);
            }
            Response::json(
                200,
                &json!({
                    "kind": "Scale",
                    "apiVersion": "autoscaling/v1",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"replicas": d.spec},
                    "status": {"replicas": d.replicas, "selector": format!("app={name}")},
                }),
            )
        }
        _ => status(
            405,
            "MethodNotAllowed",
            "the server does not allow this method",
        ),
    }
}

/// TLS in front of a fake API server: a throwaway CA and a certificate for `127.0.0.1` made
/// with `openssl`, served by `socat` (both Debian packages). Stopped when dropped.
pub struct TlsFront {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
    /// PEM of the CA that signed the server's certificate.
    pub ca_file: std::path::PathBuf,
}

impl TlsFront {
    pub fn start(backend: &FakeKubernetes) -> TlsFront {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=microbadger test CA",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.crt"),
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &p("server.key"),
            "-out",
            &p("server.csr"),
        ]);
        std::fs::write(p("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p("server.csr"),
            "-CA",
            &p("ca.crt"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &p("san.ext"),
            "-out",
            &p("server.crt"),
        ]);
        let port = super::free_port();
        let backend_port = backend.server.port();
        let child = Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
                p("server.crt"),
                p("server.key")
            ))
            .arg(format!("TCP:127.0.0.1:{backend_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "socat did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsFront {
            child,
            port,
            ca_file: dir.path().join("ca.crt"),
            _dir: dir,
        }
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
