//! The Kubernetes backend: `microbadger scaler` with `MICROBADGER_KUBERNETES_URL` set sizes
//! one Deployment per scaled service through the API server, instead of a dry run.
//!
//! - **Which Deployment**: `<prefix><service>` in the configured namespace
//!   (`MICROBADGER_KUBERNETES_DEPLOYMENT_PREFIX`, default `microbadger-`: `microbadger-web`,
//!   `microbadger-worker`). Each must exist when the scaler starts; a missing one is an error
//!   naming it, not a silent no-op (the original agent scaled nothing when a name was wrong).
//! - **Scale**: a JSON merge patch `{"spec":{"replicas":N}}` on the Deployment's `scale`
//!   subresource (`apps/v1`), so the service account needs only `get` on `deployments` and
//!   `patch` on `deployments/scale`.
//! - **Counts**: read from the Deployment every `poll` (and right after each patch):
//!   `ready` = `status.readyReplicas` (at most `spec.replicas`), `starting` = the rest of
//!   `spec.replicas`, `stopping` = pods beyond `spec.replicas` still counted in
//!   `status.replicas`. Readiness is the pods' own readiness probes. A read that fails keeps
//!   the last counts (the controller's stale-metric rule covers the demand side).
//! - **Credentials**: a bearer token read from `MICROBADGER_KUBERNETES_TOKEN_FILE` on every
//!   request (projected service-account tokens rotate), never logged; the API server's CA
//!   from `MICROBADGER_KUBERNETES_CA_FILE`. Both default to the in-cluster service-account
//!   files when those exist.
//! - **Shutdown** leaves the Deployments as they are: the scaler stopping is no reason to stop
//!   the service.
//!
//! Tested against a fake API server that follows the documented shapes (`tests/support/kube.rs`):
//! no cluster can run here.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use super::orchestrator::{BoxFuture, Counts, Orchestrator, OrchestratorError, lock};

/// The in-cluster service-account directory.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Where and how to reach the API server.
#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesConfig {
    /// The API server, e.g. `https://kubernetes.default.svc`.
    pub url: String,
    pub namespace: String,
    /// Deployment name = prefix + service name.
    pub deployment_prefix: String,
    /// A file holding the bearer token (re-read on every request).
    pub token_file: Option<PathBuf>,
    /// PEM file of the CA that signed the API server's certificate.
    pub ca_file: Option<PathBuf>,
    /// How often the Deployments' counts are read.
    pub poll: Duration,
}

/// Why the API server could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error("reading {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a PEM certificate")]
    Certificate { path: PathBuf },
    #[error("the Kubernetes API server at {url} could not be reached: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("deployment {name:?} not found in namespace {namespace:?}")]
    NotFound { name: String, namespace: String },
    #[error(
        "the Kubernetes API server refused {action} on deployment {name:?}: {status} ({message})"
    )]
    Refused {
        action: &'static str,
        name: String,
        status: u16,
        message: String,
    },
    #[error("deployment {name:?}: unexpected answer: {reason}")]
    Malformed { name: String, reason: String },
}

/// The parts of an `apps/v1` Deployment the scaler reads.
#[derive(Debug, Deserialize)]
struct Deployment {
    #[serde(default)]
    spec: DeploymentSpec,
    #[serde(default)]
    status: DeploymentStatus,
}

#[derive(Debug, Default, Deserialize)]
struct DeploymentSpec {
    /// Defaults to 1 when unset (the API server's default).
    replicas: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentStatus {
    #[serde(default)]
    replicas: u32,
    #[serde(default)]
    ready_replicas: u32,
}

/// A `Status` object (the API server's error body).
#[derive(Debug, Default, Deserialize)]
struct Status {
    #[serde(default)]
    message: String,
}

impl Deployment {
    fn counts(&self) -> Counts {
        let spec = self.spec.replicas.unwrap_or(1);
        let ready = self.status.ready_replicas.min(spec);
        Counts {
            ready,
            starting: spec - ready,
            stopping: self.status.replicas.saturating_sub(spec),
        }
    }
}

/// Sizes Deployments through the Kubernetes API.
pub struct Kubernetes {
    api: Arc<Api>,
    counts: Arc<Mutex<BTreeMap<String, Counts>>>,
    poller: tokio::task::JoinHandle<()>,
}

struct Api {
    http: reqwest::Client,
    config: KubernetesConfig,
}

impl Api {
    fn deployment_url(&self, service: &str) -> String {
        format!(
            "{}/apis/apps/v1/namespaces/{}/deployments/{}{}",
            self.config.url.trim_end_matches('/'),
            self.config.namespace,
            self.config.deployment_prefix,
            service
        )
    }

    fn name(&self, service: &str) -> String {
        format!("{}{service}", self.config.deployment_prefix)
    }

    fn authorized(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, KubernetesError> {
        let Some(path) = &self.config.token_file else {
            return Ok(request);
        };
        let token = std::fs::read_to_string(path).map_err(|source| KubernetesError::File {
            path: path.clone(),
            source,
        })?;
        Ok(request.bearer_auth(token.trim()))
    }

    async fn send(
        &self,
        action: &'static str,
        service: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Deployment, KubernetesError> {
        let name = self.name(service);
        let response =
            self.authorized(request)?
                .send()
                .await
                .map_err(|e| KubernetesError::Unreachable {
                    url: self.config.url.clone(),
                    reason: chain(&e),
                })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| KubernetesError::Unreachable {
                url: self.config.url.clone(),
                reason: chain(&e),
            })?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(KubernetesError::NotFound {
                name,
                namespace: self.config.namespace.clone(),
            });
        }
        if !status.is_success() {
            let message = serde_json::from_slice::<Status>(&body)
                .map(|s| s.message)
                .unwrap_or_default();
            return Err(KubernetesError::Refused {
                action,
                name,
                status: status.as_u16(),
                message: shown(&message),
            });
        }
        serde_json::from_slice(&body).map_err(|e| KubernetesError::Malformed {
            name,
            reason: e.to_string(),
        })
    }

    async fn read(&self, service: &str) -> Result<Counts, KubernetesError> {
        let request = self.http.get(self.deployment_url(service));
        Ok(self.send("get", service, request).await?.counts())
    }

    async fn patch_replicas(&self, service: &str, replicas: u32) -> Result<(), KubernetesError> {
        let request = self
            .http
            .patch(format!("{}/scale", self.deployment_url(service)))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/merge-patch+json",
            )
            .body(serde_json::json!({"spec": {"replicas": replicas}}).to_string());
        // The answer is a Scale object; only success matters.
        match self.send("patch", service, request).await {
            Ok(_) | Err(KubernetesError::Malformed { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Kubernetes {
    /// Checks every service's Deployment once (so a wrong name, namespace or credential is an
    /// error now, with its reason), then polls their counts every `config.poll`.
    pub async fn connect(
        config: KubernetesConfig,
        services: &[String],
    ) -> Result<Kubernetes, KubernetesError> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5));
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|source| KubernetesError::File {
                path: path.clone(),
                source,
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| KubernetesError::Certificate { path: path.clone() })?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|e| KubernetesError::Unreachable {
            url: config.url.clone(),
            reason: chain(&e),
        })?;
        let poll = config.poll.max(Duration::from_millis(100));
        let api = Arc::new(Api { http, config });
        let mut first = BTreeMap::new();
        for service in services {
            first.insert(service.clone(), api.read(service).await?);
        }
        let counts = Arc::new(Mutex::new(first));
        let poller = tokio::spawn({
            let (api, counts) = (api.clone(), counts.clone());
            let services = services.to_vec();
            async move {
                loop {
                    tokio::time::sleep(poll).await;
                    for service in &services {
                        match api.read(service).await {
                            Ok(c) => {
                                lock(&counts).insert(service.clone(), c);
                            }
                            Err(e) => {
                                tracing::warn!(service = %service, error = %e, "reading the deployment failed; keeping the last counts");
                            }
                        }
                    }
                }
            }
        });
        Ok(Kubernetes {
            api,
            counts,
            poller,
        })
    }
}

impl Drop for Kubernetes {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// An error with its causes, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Text from the API server, safe to log on one line: control characters escaped, at most 200
/// characters.
fn shown(s: &str) -> String {
    let escaped: String = s.escape_debug().collect();
    if escaped.chars().count() > 200 {
        let mut cut: String = escaped.chars().take(199).collect();
        cut.push('…');
        cut
    } else {
        escaped
    }
}

impl Orchestrator for Kubernetes {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn counts(&self, service: &str) -> Counts {
        lock(&self.counts).get(service).copied().unwrap_or_default()
    }

    fn scale<'a>(
        &'a self,
        service: &'a str,
        target: u32,
    ) -> BoxFuture<'a, Result<(), OrchestratorError>> {
        Box::pin(async move {
            let known = lock(&self.counts).get(service).copied();
            let Some(before) = known else {
                return Err(OrchestratorError::UnknownService(service.to_string()));
            };
            if before.live() == target {
                return Ok(());
            }
            let growing = target > before.live();
            self.api
                .patch_replicas(service, target)
                .await
                .map_err(|e| {
                    let (service, reason) = (service.to_string(), e.to_string());
                    if growing {
                        OrchestratorError::Start { service, reason }
                    } else {
                        OrchestratorError::Stop { service, reason }
                    }
                })?;
            tracing::info!(
                service,
                from = before.live(),
                to = target,
                "scaled the deployment"
            );
            // Read back at once, so the next decision sees the new target as starting.
            match self.api.read(service).await {
                Ok(c) => {
                    lock(&self.counts).insert(service.to_string(), c);
                }
                Err(e) => tracing::warn!(service, error = %e, "reading the deployment failed"),
            }
            Ok(())
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        // The Deployments keep running at their last size.
        self.poller.abort();
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(json: &str) -> Deployment {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn counts_from_the_deployment() {
        let d = deployment(r#"{"spec":{"replicas":3},"status":{"replicas":3,"readyReplicas":1}}"#);
        assert_eq!(
            d.counts(),
            Counts {
                ready: 1,
                starting: 2,
                stopping: 0
            }
        );
        // Scaled down from 5 to 2: three pods still terminating, ready ones capped at 2.
        let d = deployment(r#"{"spec":{"replicas":2},"status":{"replicas":5,"readyReplicas":5}}"#);
        assert_eq!(
            d.counts(),
            Counts {
                ready: 2,
                starting: 0,
                stopping: 3
            }
        );
        // A new deployment without status yet; replicas unset means 1.
        assert_eq!(
            deployment(r#"{"spec":{}}"#).counts(),
            Counts {
                ready: 0,
                starting: 1,
                stopping: 0
            }
        );
    }
}
