//! One `Config`, read once from `MICROBADGER_*` environment variables (and CLI flags that
//! override them). Every variable is listed in [`VARIABLES`] with its default; `README.md`
//! carries the same table. Production backends are switched on by the presence of their URL.

use std::path::PathBuf;
use std::time::Duration;

/// Every environment variable microbadger reads, its default, and what it does.
pub const VARIABLES: &[(&str, &str, &str)] = &[
    (
        "MICROBADGER_ALLOW_REGISTRIES",
        "docker.io,ghcr.io,quay.io,gcr.io,registry.k8s.io,public.ecr.aws,mcr.microsoft.com",
        "Comma list of registry hosts (host[:port]) that may be inspected.",
    ),
    (
        "MICROBADGER_INSECURE_REGISTRIES",
        "",
        "Comma list of hosts spoken to over plain HTTP. They are allowed too, including on private addresses.",
    ),
    (
        "MICROBADGER_PRIVATE_REGISTRIES",
        "",
        "Comma list of allowed hosts that may resolve to loopback, private or link-local addresses (HTTPS).",
    ),
    (
        "MICROBADGER_DOCKER_CONFIG",
        "~/.docker/config.json",
        "Docker config.json with registry credentials (`auths`), as docker, skopeo and crane read it.",
    ),
    (
        "MICROBADGER_MAX_MANIFEST_BYTES",
        "4194304",
        "Largest manifest or index accepted, in bytes.",
    ),
    (
        "MICROBADGER_MAX_CONFIG_BYTES",
        "4194304",
        "Largest image config blob accepted, in bytes.",
    ),
    (
        "MICROBADGER_MAX_TAGS",
        "1000",
        "Most tags listed per repository (pages are followed up to this cap).",
    ),
    (
        "MICROBADGER_CONNECT_TIMEOUT_SECS",
        "5",
        "TCP+TLS connect timeout for registry requests.",
    ),
    (
        "MICROBADGER_REQUEST_TIMEOUT_SECS",
        "30",
        "Total timeout for one registry request, body included.",
    ),
    (
        "MICROBADGER_REGISTRY_RETRIES",
        "3",
        "Retries after a 5xx, 429 or network error (exponential backoff with jitter).",
    ),
    (
        "MICROBADGER_MAX_RETRY_AFTER_SECS",
        "60",
        "Longest Retry-After honoured; a longer one fails the request as rate-limited.",
    ),
    (
        "MICROBADGER_HUB_API_URL",
        "https://hub.docker.com",
        "Docker Hub's web API (description, stars, pulls) for docker.io images.",
    ),
    (
        "MICROBADGER_DATABASE_URL",
        "sqlite://data/microbadger.db",
        "The store: a SQLite file (created with its folder) or a postgres:// URL.",
    ),
    (
        "MICROBADGER_REDIS_URL",
        "",
        "Redis for the job queue (redis://host:port/db). Empty: the queue lives in the SQLite store.",
    ),
    (
        "MICROBADGER_WORKER_CONCURRENCY",
        "4",
        "Jobs one worker process runs at once.",
    ),
    (
        "MICROBADGER_JOB_LEASE_SECS",
        "60",
        "How long a claimed job stays with its worker before another may take it (renewed while it runs).",
    ),
    (
        "MICROBADGER_JOB_MAX_ATTEMPTS",
        "5",
        "Attempts before a failing job is dead-lettered with its reason.",
    ),
    (
        "MICROBADGER_DEAD_JOB_RETENTION_DAYS",
        "14",
        "Dead-lettered jobs are deleted this many days after they died (0 keeps them).",
    ),
    (
        "MICROBADGER_REFRESH_PERIOD_SECS",
        "3600",
        "Every known repository is refreshed once per period, spread evenly over it.",
    ),
    (
        "MICROBADGER_SHUTDOWN_GRACE_SECS",
        "20",
        "On SIGTERM, how long a worker may finish the jobs in hand before releasing them.",
    ),
    (
        "MICROBADGER_LISTEN",
        "127.0.0.1:8080",
        "Address the web service listens on (several local instances share it with SO_REUSEPORT).",
    ),
    (
        "MICROBADGER_PUBLIC_URL",
        "http://127.0.0.1:8080",
        "The site's public base URL, used in badge snippets and webhook URLs.",
    ),
    (
        "MICROBADGER_QUEUE_RATE_PER_MINUTE",
        "30",
        "Per-client limit on requests that queue work (unknown images, webhooks).",
    ),
    (
        "MICROBADGER_CAPACITY",
        "4",
        "Instances `up` may run at once over every scaled service (web and worker), in capacity units.",
    ),
    (
        "MICROBADGER_CAPACITY_CPU_MILLIS",
        "",
        "CPU the scaled services share, in millicores, counted like Kubernetes resource requests with each service's `cpu_millis` (scaler TOML); empty: CPU is not counted.",
    ),
    (
        "MICROBADGER_CAPACITY_MEMORY_MIB",
        "",
        "Memory the scaled services share, in MiB, counted with each service's `memory_mib` (scaler TOML); empty: memory is not counted.",
    ),
    (
        "MICROBADGER_SCALER_TICK_MS",
        "500",
        "How often the microscaler reads demand and decides, in milliseconds (its parameters are per second, independent of the tick).",
    ),
    (
        "MICROBADGER_KUBERNETES_URL",
        "",
        "The Kubernetes API server (e.g. https://kubernetes.default.svc): `microbadger scaler` then sizes one Deployment per service instead of a dry run.",
    ),
    (
        "MICROBADGER_KUBERNETES_NAMESPACE",
        "",
        "Namespace of the Deployments (default: the pod's own, from its service account, else `default`).",
    ),
    (
        "MICROBADGER_KUBERNETES_DEPLOYMENT_PREFIX",
        "microbadger-",
        "A service's Deployment is named this prefix plus the service name (`microbadger-web`, `microbadger-worker`).",
    ),
    (
        "MICROBADGER_KUBERNETES_TOKEN_FILE",
        "",
        "File with the bearer token, re-read on every request (default: the pod's service-account token when present).",
    ),
    (
        "MICROBADGER_KUBERNETES_CA_FILE",
        "",
        "PEM file of the CA of the API server's certificate (default: the pod's service-account CA when present).",
    ),
    (
        "MICROBADGER_SCALER_CONFIG",
        "",
        "TOML file declaring the scaled services and control parameters (see README); overrides the built-in `web` and `worker`.",
    ),
    (
        "MICROBADGER_SUPERVISOR_PID",
        "",
        "Set by `up` on the processes it starts: a child reports readiness on stdout and exits when its parent is no longer this pid. Set on `up` itself, `up` stops its children and exits when its parent is no longer this pid.",
    ),
    (
        "MICROBADGER_LOG",
        "warn",
        "Log filter in tracing's env-filter syntax (e.g. `info,microbadger=debug`); logs go to stderr.",
    ),
];

/// Resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub registry: RegistryConfig,
    pub store: StoreConfig,
    pub worker: WorkerConfig,
    pub web: WebConfig,
    pub scaler: ScalerConfig,
}

/// The microscaler and the processes it supervises (`microbadger up`, `scaler`).
#[derive(Debug, Clone)]
pub struct ScalerConfig {
    /// Capacity units shared by the scaled services.
    pub capacity: u32,
    /// CPU shared, in millicores, when counted.
    pub cpu_millis: Option<u64>,
    /// Memory shared, in MiB, when counted.
    pub memory_mib: Option<u64>,
    /// How often the supervisor decides.
    pub tick: Duration,
    /// TOML service declarations, if any.
    pub config_file: Option<PathBuf>,
    /// Set in a supervised child: the supervisor's pid.
    pub supervisor_pid: Option<u32>,
    /// `scaler` sizes Deployments through this API server when set.
    pub kubernetes: Option<crate::scaler::kubernetes::KubernetesConfig>,
}

/// The web service.
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub listen: String,
    /// Public base URL without a trailing slash.
    pub public_url: String,
    pub queue_rate_per_minute: u32,
}

/// Where state lives.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://path` or `postgres://...`.
    pub database_url: String,
    /// Redis URL for the queue; `None` means the embedded SQLite queue.
    pub redis_url: Option<String>,
}

/// How workers and the scheduler behave.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub concurrency: usize,
    pub lease: Duration,
    pub max_attempts: u32,
    pub refresh_period: Duration,
    pub shutdown_grace: Duration,
    /// Dead letters older than this are deleted; `None` keeps them.
    pub dead_job_retention: Option<Duration>,
}

/// Everything the registry client needs.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Registries that may be inspected (`host[:port]`, lower case).
    pub allow: Vec<String>,
    /// Registries spoken to over plain HTTP (implicitly allowed, private addresses permitted).
    pub insecure: Vec<String>,
    /// Allowed registries that may resolve to private addresses.
    pub private: Vec<String>,
    /// Path of the Docker `config.json` holding credentials, if any.
    pub docker_config: Option<PathBuf>,
    pub max_manifest_bytes: u64,
    pub max_config_bytes: u64,
    pub max_tags: usize,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retries: u32,
    pub max_retry_after: Duration,
    /// Base URL of Docker Hub's repository API.
    pub hub_api_url: String,
}

/// A configuration value that could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

fn default_of(var: &str) -> &'static str {
    VARIABLES
        .iter()
        .find(|(name, _, _)| *name == var)
        .map(|(_, default, _)| *default)
        .unwrap_or("")
}

impl Config {
    /// Read the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Read the configuration through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let value = |var: &'static str| get(var).unwrap_or_else(|| default_of(var).to_string());
        let list = |var: &'static str| -> Vec<String> {
            value(var)
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let number = |var: &'static str| -> Result<u64, ConfigError> {
            let raw = value(var);
            raw.trim().parse().map_err(|_| ConfigError {
                var,
                reason: format!("expected a whole number, got {raw:?}"),
            })
        };
        let docker_config = match get("MICROBADGER_DOCKER_CONFIG") {
            Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
            Some(_) => None,
            None => get("HOME").map(|home| PathBuf::from(home).join(".docker/config.json")),
        };
        let redis_url = value("MICROBADGER_REDIS_URL");
        let store = StoreConfig {
            database_url: value("MICROBADGER_DATABASE_URL"),
            redis_url: (!redis_url.trim().is_empty()).then(|| redis_url.trim().to_string()),
        };
        let worker = WorkerConfig {
            concurrency: (number("MICROBADGER_WORKER_CONCURRENCY")? as usize).max(1),
            lease: Duration::from_secs(number("MICROBADGER_JOB_LEASE_SECS")?.max(1)),
            max_attempts: (number("MICROBADGER_JOB_MAX_ATTEMPTS")? as u32).max(1),
            refresh_period: Duration::from_secs(number("MICROBADGER_REFRESH_PERIOD_SECS")?.max(1)),
            shutdown_grace: Duration::from_secs(number("MICROBADGER_SHUTDOWN_GRACE_SECS")?),
            dead_job_retention: match number("MICROBADGER_DEAD_JOB_RETENTION_DAYS")? {
                0 => None,
                days => Some(Duration::from_secs(days.saturating_mul(86_400))),
            },
        };
        let web = WebConfig {
            listen: value("MICROBADGER_LISTEN").trim().to_string(),
            public_url: value("MICROBADGER_PUBLIC_URL")
                .trim()
                .trim_end_matches('/')
                .to_string(),
            queue_rate_per_minute: (number("MICROBADGER_QUEUE_RATE_PER_MINUTE")? as u32).max(1),
        };
        let optional = |var: &'static str| {
            let v = value(var).trim().to_string();
            (!v.is_empty()).then_some(v)
        };
        let scaler = ScalerConfig {
            capacity: (number("MICROBADGER_CAPACITY")? as u32).max(1),
            cpu_millis: match optional("MICROBADGER_CAPACITY_CPU_MILLIS") {
                None => None,
                Some(_) => Some(number("MICROBADGER_CAPACITY_CPU_MILLIS")?),
            },
            memory_mib: match optional("MICROBADGER_CAPACITY_MEMORY_MIB") {
                None => None,
                Some(_) => Some(number("MICROBADGER_CAPACITY_MEMORY_MIB")?),
            },
            tick: Duration::from_millis(number("MICROBADGER_SCALER_TICK_MS")?.max(10)),
            config_file: optional("MICROBADGER_SCALER_CONFIG").map(PathBuf::from),
            supervisor_pid: match optional("MICROBADGER_SUPERVISOR_PID") {
                None => None,
                Some(raw) => Some(raw.parse().map_err(|_| ConfigError {
                    var: "MICROBADGER_SUPERVISOR_PID",
                    reason: format!("expected a process id, got {raw:?}"),
                })?),
            },
            kubernetes: optional("MICROBADGER_KUBERNETES_URL").map(|url| {
                use crate::scaler::kubernetes::SERVICE_ACCOUNT_DIR;
                let account = |file: &str| {
                    let path = PathBuf::from(SERVICE_ACCOUNT_DIR).join(file);
                    path.exists().then_some(path)
                };
                crate::scaler::kubernetes::KubernetesConfig {
                    url,
                    namespace: optional("MICROBADGER_KUBERNETES_NAMESPACE")
                        .or_else(|| {
                            let ns = std::fs::read_to_string(account("namespace")?).ok()?;
                            Some(ns.trim().to_string()).filter(|n| !n.is_empty())
                        })
                        .unwrap_or_else(|| "default".into()),
                    deployment_prefix: value("MICROBADGER_KUBERNETES_DEPLOYMENT_PREFIX")
                        .trim()
                        .to_string(),
                    token_file: optional("MICROBADGER_KUBERNETES_TOKEN_FILE")
                        .map(PathBuf::from)
                        .or_else(|| account("token")),
                    ca_file: optional("MICROBADGER_KUBERNETES_CA_FILE")
                        .map(PathBuf::from)
                        .or_else(|| account("ca.crt")),
                    poll: Duration::from_secs(1),
                }
            }),
        };
        Ok(Config {
            store,
            worker,
            web,
            scaler,
            registry: RegistryConfig {
                allow: list("MICROBADGER_ALLOW_REGISTRIES"),
                insecure: list("MICROBADGER_INSECURE_REGISTRIES"),
                private: list("MICROBADGER_PRIVATE_REGISTRIES"),
                docker_config,
                max_manifest_bytes: number("MICROBADGER_MAX_MANIFEST_BYTES")?,
                max_config_bytes: number("MICROBADGER_MAX_CONFIG_BYTES")?,
                max_tags: number("MICROBADGER_MAX_TAGS")? as usize,
                connect_timeout: Duration::from_secs(number("MICROBADGER_CONNECT_TIMEOUT_SECS")?),
                request_timeout: Duration::from_secs(number("MICROBADGER_REQUEST_TIMEOUT_SECS")?),
                retries: number("MICROBADGER_REGISTRY_RETRIES")? as u32,
                max_retry_after: Duration::from_secs(number("MICROBADGER_MAX_RETRY_AFTER_SECS")?),
                hub_api_url: value("MICROBADGER_HUB_API_URL")
                    .trim_end_matches('/')
                    .to_string(),
            },
        })
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Config::from_lookup(|_| None)
            .expect("built-in defaults parse")
            .registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_allow_the_public_registries() {
        let c = Config::from_lookup(|_| None).unwrap();
        assert!(c.registry.allow.contains(&"docker.io".to_string()));
        assert!(c.registry.allow.contains(&"mcr.microsoft.com".to_string()));
        assert_eq!(c.registry.max_config_bytes, 4 * 1024 * 1024);
        assert_eq!(c.registry.max_tags, 1000);
        assert!(c.registry.insecure.is_empty());
    }

    #[test]
    fn lists_are_trimmed_and_lowercased() {
        let env: HashMap<&str, &str> = [
            ("MICROBADGER_ALLOW_REGISTRIES", " Ghcr.io , ,127.0.0.1:5000"),
            ("MICROBADGER_MAX_TAGS", "7"),
        ]
        .into();
        let c = Config::from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(c.registry.allow, vec!["ghcr.io", "127.0.0.1:5000"]);
        assert_eq!(c.registry.max_tags, 7);
    }

    #[test]
    fn readme_documents_every_variable_with_its_default() {
        let readme = include_str!("../README.md");
        for (name, default, _) in VARIABLES {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{name}` |")))
                .unwrap_or_else(|| panic!("README.md has no row for {name}"));
            let shown = if default.is_empty() {
                "(empty)".to_string()
            } else {
                format!("`{default}`")
            };
            assert!(
                row.contains(&shown),
                "README.md row for {name} should show {shown}"
            );
        }
    }

    #[test]
    fn bad_numbers_name_the_variable() {
        let err = Config::from_lookup(|k| {
            (k == "MICROBADGER_MAX_CONFIG_BYTES").then(|| "lots".to_string())
        })
        .unwrap_err();
        assert!(err.to_string().starts_with("MICROBADGER_MAX_CONFIG_BYTES"));
    }
}
