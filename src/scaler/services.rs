//! The scaled services: the built-in `web` and `worker`, overridden by a TOML file
//! (`MICROBADGER_SCALER_CONFIG`) and by the environment (`MICROBADGER_CAPACITY`,
//! `MICROBADGER_SCALER_TICK_MS`), and priorities read from a label on a service's own image
//! (the original Microscaling's "full circle").
//!
//! Precedence, lowest first: built-in defaults, the TOML file, the environment. A service's
//! priority comes from its TOML `priority` when set, else from its image's label when it
//! declares `image`, else from the default (`web` 1, `worker` 2, others 10).
//!
//! ```toml
//! capacity = 6          # MICROBADGER_CAPACITY wins when set
//! tick_ms = 500         # MICROBADGER_SCALER_TICK_MS wins when set
//! stop_grace_secs = 25  # SIGKILL this long after SIGTERM
//! cpu_millis = 4000     # optional: CPU shared, in millicores (MICROBADGER_CAPACITY_CPU_MILLIS wins)
//! memory_mib = 8192     # optional: memory shared, in MiB (MICROBADGER_CAPACITY_MEMORY_MIB wins)
//!
//! [control]             # any field of control::ControlParams, per-second units
//! scale_down_window = 60.0
//!
//! [services.worker]
//! min = 1
//! max = 4
//! target = 20.0
//! cpu_millis = 1000     # what one instance asks for when the capacity counts CPU
//! memory_mib = 512      # and memory; 0 or absent: not counted
//! image = "ghcr.io/acme/microbadger:1.4"   # priority from its label
//! ```
//!
//! CPU and memory are counted like Kubernetes resource requests: the allocator starts an
//! instance only where every dimension the capacity counts has room; nothing limits what a
//! process actually uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{Capacity, MetricKind, ServiceSpec};
use crate::config::Config;
use crate::reference::ImageRef;
use crate::registry::{PlatformChoice, RegistryClient};

/// Image labels a priority is read from, in order: ours, then the original Microscaling's.
pub const PRIORITY_LABELS: [&str; 2] = [
    "org.microbadger.scaler.priority",
    "com.microscaling.priority",
];

/// Default in-flight requests per web instance before another is wanted.
pub const WEB_TARGET: f64 = 16.0;
/// Default due jobs the worker pool may carry before another worker is wanted.
pub const WORKER_TARGET: f64 = 20.0;

/// One declared service: its spec plus where its priority may come from.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceDecl {
    pub spec: ServiceSpec,
    /// The service's own image, whose priority label is read when the configuration sets no
    /// priority.
    pub image: Option<String>,
    /// Where `spec.priority` came from.
    pub priority_source: PrioritySource,
}

/// Where a service's priority came from (shown in logs so an operator can tell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrioritySource {
    Default,
    Config,
    /// The named label of the service's image.
    Label(String),
}

/// Control-law parameters set in the TOML `[control]` table; unset ones keep
/// `control::ControlParams::default()`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlOverrides {
    pub tolerance: Option<f64>,
    pub drain_time: Option<f64>,
    pub scale_down_window: Option<f64>,
    pub max_step_up: Option<u32>,
    pub scale_down_rate: Option<f64>,
    pub scale_down_period: Option<f64>,
    pub scale_up_period: Option<f64>,
    pub min_lifetime: Option<f64>,
    pub ewma_half_life: Option<f64>,
    pub initial_service_rate: Option<f64>,
    pub ready_timeout: Option<f64>,
    pub fallback_after: Option<u32>,
    pub fallback: Option<u32>,
    pub in_flight_z: Option<f64>,
    pub queue_over_target: Option<f64>,
    pub scale_down_min_fraction: Option<f64>,
    pub up_hysteresis: Option<f64>,
    pub drain_aim: Option<f64>,
    pub yield_after: Option<f64>,
    pub essential_z: Option<f64>,
    pub essential_over_target: Option<f64>,
    pub essential_window: Option<f64>,
}

/// Everything the supervisor needs to know about what it scales.
#[derive(Debug, Clone, PartialEq)]
pub struct Services {
    /// Capacity units (instances when every service's `units` is 1).
    pub capacity: u32,
    /// CPU shared by the services, in millicores, when counted (TOML `cpu_millis`).
    pub cpu_millis: Option<u64>,
    /// Memory shared by the services, in MiB, when counted (TOML `memory_mib`).
    pub memory_mib: Option<u64>,
    pub tick: Duration,
    /// How long a stopping instance may drain after SIGTERM before SIGKILL.
    pub stop_grace: Duration,
    pub control: ControlOverrides,
    /// In priority order (lower number first), then by name.
    pub services: Vec<ServiceDecl>,
}

/// Why the service declarations could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("service {service}: {reason}")]
    Invalid { service: String, reason: String },
}

/// The TOML file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    capacity: Option<u32>,
    cpu_millis: Option<u64>,
    memory_mib: Option<u64>,
    tick_ms: Option<u64>,
    stop_grace_secs: Option<f64>,
    #[serde(default)]
    control: ControlOverrides,
    #[serde(default)]
    services: BTreeMap<String, FileService>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileService {
    priority: Option<u32>,
    min: Option<u32>,
    max: Option<u32>,
    metric: Option<MetricKind>,
    target: Option<f64>,
    units: Option<u32>,
    cpu_millis: Option<u64>,
    memory_mib: Option<u64>,
    command: Option<Vec<String>>,
    image: Option<String>,
    /// `false` removes a built-in service.
    enabled: Option<bool>,
}

/// The program a built-in service runs: this executable.
fn this_program() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "microbadger".into())
}

/// The built-in services for a capacity. `worker` keeps a minimum of one: an URGENT job (a
/// person waiting on an "inspecting" page) is then taken at once instead of after a process
/// start, and one worker costs one slot that `web` rarely needs at the default capacity.
pub fn defaults(capacity: u32, program: &str) -> Vec<ServiceDecl> {
    let decl = |name: &str, priority, metric, target| ServiceDecl {
        spec: ServiceSpec {
            name: name.into(),
            priority,
            min: 1,
            max: capacity,
            metric,
            target,
            units: 1,
            cpu_millis: 0,
            memory_mib: 0,
            command: vec![program.to_string(), name.to_string()],
        },
        image: None,
        priority_source: PrioritySource::Default,
    };
    vec![
        decl("web", 1, MetricKind::InFlight, WEB_TARGET),
        decl("worker", 2, MetricKind::QueueDepth, WORKER_TARGET),
    ]
}

/// A TOML error on one line (`line N: message`); toml's own rendering spans several lines
/// with a source excerpt, which does not fit a one-line CLI error.
fn toml_reason(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

/// The `[control]` table of a scaler configuration file (the file `up` reads from
/// `MICROBADGER_SCALER_CONFIG`), checked like the whole file; `simulate --config` uses it.
pub fn control_from_file(path: &Path) -> Result<ControlOverrides, ServicesError> {
    let text = std::fs::read_to_string(path).map_err(|source| ServicesError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let parsed: FileConfig = toml::from_str(&text).map_err(|e| ServicesError::Parse {
        path: path.to_path_buf(),
        reason: toml_reason(&text, &e),
    })?;
    Ok(parsed.control)
}

impl Services {
    /// What the services share, in every dimension counted.
    pub fn shared(&self) -> Capacity {
        Capacity {
            units: self.capacity,
            cpu_millis: self.cpu_millis,
            memory_mib: self.memory_mib,
        }
    }

    /// Read the declarations for `config`: built-ins, the TOML file if configured, the
    /// environment. Image labels are not read here (see [`Services::resolve_priorities`]).
    pub fn load(
        config: &Config,
        env_set: impl Fn(&str) -> bool,
    ) -> Result<Services, ServicesError> {
        let text = match &config.scaler.config_file {
            Some(path) => Some((
                path.clone(),
                std::fs::read_to_string(path).map_err(|source| ServicesError::Read {
                    path: path.clone(),
                    source,
                })?,
            )),
            None => None,
        };
        Self::from_parts(
            config,
            text.as_ref().map(|(p, t)| (p.as_path(), t.as_str())),
            env_set,
            &this_program(),
        )
    }

    /// The same as [`Services::load`] with the file's text given; `env_set(name)` tells
    /// whether an environment variable was set explicitly (it then wins over the file).
    pub fn from_parts(
        config: &Config,
        file: Option<(&Path, &str)>,
        env_set: impl Fn(&str) -> bool,
        program: &str,
    ) -> Result<Services, ServicesError> {
        let parsed: FileConfig = match file {
            Some((path, text)) => toml::from_str(text).map_err(|e| ServicesError::Parse {
                path: path.to_path_buf(),
                reason: toml_reason(text, &e),
            })?,
            None => FileConfig::default(),
        };
        let capacity = match parsed.capacity {
            Some(c) if !env_set("MICROBADGER_CAPACITY") => c.max(1),
            _ => config.scaler.capacity,
        };
        let cpu_millis = if env_set("MICROBADGER_CAPACITY_CPU_MILLIS") {
            config.scaler.cpu_millis
        } else {
            parsed.cpu_millis.or(config.scaler.cpu_millis)
        };
        let memory_mib = if env_set("MICROBADGER_CAPACITY_MEMORY_MIB") {
            config.scaler.memory_mib
        } else {
            parsed.memory_mib.or(config.scaler.memory_mib)
        };
        let tick = match parsed.tick_ms {
            Some(ms) if !env_set("MICROBADGER_SCALER_TICK_MS") => Duration::from_millis(ms.max(10)),
            _ => config.scaler.tick,
        };
        let stop_grace = match parsed.stop_grace_secs {
            Some(s) if s.is_finite() && s >= 0.0 => Duration::from_secs_f64(s),
            Some(s) => {
                return Err(ServicesError::Invalid {
                    service: "(all)".into(),
                    reason: format!("stop_grace_secs must be a non-negative number, got {s}"),
                });
            }
            // The worker's own drain, plus time to release its jobs and exit.
            None => config.worker.shutdown_grace + Duration::from_secs(5),
        };

        let mut services: BTreeMap<String, ServiceDecl> = defaults(capacity, program)
            .into_iter()
            .map(|d| (d.spec.name.clone(), d))
            .collect();
        for (name, f) in parsed.services {
            if f.enabled == Some(false) {
                services.remove(&name);
                continue;
            }
            let entry = services.entry(name.clone()).or_insert_with(|| ServiceDecl {
                spec: ServiceSpec {
                    name: name.clone(),
                    priority: 10,
                    min: 0,
                    max: capacity,
                    metric: MetricKind::QueueDepth,
                    target: WORKER_TARGET,
                    units: 1,
                    cpu_millis: 0,
                    memory_mib: 0,
                    command: Vec::new(),
                },
                image: None,
                priority_source: PrioritySource::Default,
            });
            let s = &mut entry.spec;
            if let Some(p) = f.priority {
                s.priority = p;
                entry.priority_source = PrioritySource::Config;
            }
            if let Some(v) = f.min {
                s.min = v;
            }
            if let Some(v) = f.max {
                s.max = v;
            }
            if let Some(v) = f.metric {
                s.metric = v;
            }
            if let Some(v) = f.target {
                s.target = v;
            }
            if let Some(v) = f.units {
                s.units = v;
            }
            if let Some(v) = f.cpu_millis {
                s.cpu_millis = v;
            }
            if let Some(v) = f.memory_mib {
                s.memory_mib = v;
            }
            if let Some(v) = f.command {
                s.command = v;
            }
            if f.image.is_some() {
                entry.image = f.image;
            }
        }
        let mut list: Vec<ServiceDecl> = services.into_values().collect();
        for d in &mut list {
            let s = &mut d.spec;
            let bad = |reason: String| ServicesError::Invalid {
                service: s.name.clone(),
                reason,
            };
            if s.command.is_empty() {
                return Err(bad("needs a command (program and arguments)".into()));
            }
            if s.units == 0 {
                return Err(bad("units must be at least 1".into()));
            }
            if !(s.target.is_finite() && s.target > 0.0) {
                return Err(bad(format!(
                    "target must be a positive number, got {}",
                    s.target
                )));
            }
            if s.min > s.max {
                return Err(bad(format!("min {} is above max {}", s.min, s.max)));
            }
        }
        let all = |reason: String| ServicesError::Invalid {
            service: "(all)".into(),
            reason,
        };
        let needed: u32 = list.iter().map(|d| d.spec.min * d.spec.units).sum();
        if needed > capacity {
            return Err(all(format!(
                "the minimums need {needed} capacity units but the capacity is {capacity}"
            )));
        }
        let minimums = |per: fn(&ServiceSpec) -> u64| -> u64 {
            list.iter()
                .map(|d| u64::from(d.spec.min).saturating_mul(per(&d.spec)))
                .sum()
        };
        // One instance that cannot fit would never start: refuse it rather than wait forever.
        for d in &list {
            let one = [
                ("cpu_millis", "m CPU", cpu_millis, d.spec.cpu_millis),
                ("memory_mib", " MiB", memory_mib, d.spec.memory_mib),
            ];
            for (what, unit, limit, asks) in one {
                if let Some(limit) = limit
                    && asks > limit
                {
                    return Err(ServicesError::Invalid {
                        service: d.spec.name.clone(),
                        reason: format!("one instance asks for {asks}{unit} but {what} is {limit}"),
                    });
                }
            }
        }
        if let Some(cpu) = cpu_millis {
            let needed = minimums(|s| s.cpu_millis);
            if needed > cpu {
                return Err(all(format!(
                    "the minimums need {needed}m CPU but cpu_millis is {cpu}"
                )));
            }
        }
        if let Some(memory) = memory_mib {
            let needed = minimums(|s| s.memory_mib);
            if needed > memory {
                return Err(all(format!(
                    "the minimums need {needed} MiB but memory_mib is {memory}"
                )));
            }
        }
        sort(&mut list);
        Ok(Services {
            capacity,
            cpu_millis,
            memory_mib,
            tick,
            stop_grace,
            control: parsed.control,
            services: list,
        })
    }

    /// For every service that declares `image` and has no configured priority, read the
    /// priority label from the image with microbadger's own registry client. A failed read or
    /// a missing or unparseable label keeps the current priority (logged, never fatal).
    pub async fn resolve_priorities(&mut self, client: &RegistryClient) {
        for d in &mut self.services {
            if d.priority_source == PrioritySource::Config {
                continue;
            }
            let Some(image) = d.image.clone() else {
                continue;
            };
            match label_priority(client, &image).await {
                Ok(Some((label, p))) => {
                    tracing::info!(service = %d.spec.name, %image, %label, priority = p, "priority from the image's label");
                    d.spec.priority = p;
                    d.priority_source = PrioritySource::Label(label);
                }
                Ok(None) => {
                    tracing::info!(service = %d.spec.name, %image, "the image has no priority label; keeping the default")
                }
                Err(e) => {
                    tracing::warn!(service = %d.spec.name, %image, error = %e, "could not read the image's priority label; keeping the default")
                }
            }
        }
        sort(&mut self.services);
    }

    /// The specs, in priority order.
    pub fn specs(&self) -> Vec<ServiceSpec> {
        self.services.iter().map(|d| d.spec.clone()).collect()
    }
}

fn sort(list: &mut [ServiceDecl]) {
    list.sort_by(|a, b| (a.spec.priority, &a.spec.name).cmp(&(b.spec.priority, &b.spec.name)));
}

/// The priority an image declares in one of [`PRIORITY_LABELS`] (the first one present that
/// parses as a whole number), with the label's name.
pub async fn label_priority(
    client: &RegistryClient,
    image: &str,
) -> Result<Option<(String, u32)>, String> {
    let r = ImageRef::parse(image).map_err(|e| e.to_string())?;
    let inspection = client
        .inspect(&r, &PlatformChoice::Default)
        .await
        .map_err(|e| e.to_string())?;
    let Some(version) = inspection.images.first() else {
        return Ok(None);
    };
    Ok(priority_from_labels(&version.labels))
}

/// The priority in a set of labels, per [`PRIORITY_LABELS`].
pub fn priority_from_labels(labels: &BTreeMap<String, String>) -> Option<(String, u32)> {
    PRIORITY_LABELS.iter().find_map(|key| {
        labels
            .get(*key)
            .and_then(|v| v.trim().parse::<u32>().ok())
            .map(|p| (key.to_string(), p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(env: &[(&str, &str)]) -> Config {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| env.get(k).cloned()).unwrap()
    }

    fn load(env: &[(&str, &str)], file: Option<&str>) -> Result<Services, ServicesError> {
        let c = config(env);
        let set: Vec<String> = env.iter().map(|(k, _)| k.to_string()).collect();
        Services::from_parts(
            &c,
            file.map(|t| (Path::new("scaler.toml"), t)),
            |k| set.iter().any(|s| s == k),
            "/usr/bin/microbadger",
        )
    }

    #[test]
    fn defaults_are_web_then_worker() {
        let s = load(&[], None).unwrap();
        assert_eq!(s.capacity, 4);
        assert_eq!(s.tick, Duration::from_millis(500));
        assert_eq!(s.stop_grace, Duration::from_secs(25));
        let names: Vec<&str> = s.services.iter().map(|d| d.spec.name.as_str()).collect();
        assert_eq!(names, ["web", "worker"]);
        let web = &s.services[0].spec;
        assert_eq!(
            (web.priority, web.min, web.max, web.metric, web.target),
            (1, 1, 4, MetricKind::InFlight, WEB_TARGET)
        );
        assert_eq!(web.command, ["/usr/bin/microbadger", "web"]);
        let worker = &s.services[1].spec;
        assert_eq!(
            (worker.priority, worker.min, worker.metric),
            (2, 1, MetricKind::QueueDepth)
        );
        assert_eq!(s.control, ControlOverrides::default());
    }

    #[test]
    fn file_overrides_defaults_and_environment_overrides_file() {
        let file = r#"
            capacity = 8
            tick_ms = 250
            stop_grace_secs = 3.5
            [control]
            scale_down_window = 5.0
            max_step_up = 2
            scale_up_period = 12.0
            [services.worker]
            max = 5
            target = 7.5
            [services.web]
            priority = 3
            [services.thumbnailer]
            priority = 4
            command = ["/bin/thumbs", "--serve"]
            units = 2
        "#;
        let s = load(&[], Some(file)).unwrap();
        assert_eq!(s.capacity, 8);
        assert_eq!(s.tick, Duration::from_millis(250));
        assert_eq!(s.stop_grace, Duration::from_secs_f64(3.5));
        assert_eq!(s.control.scale_down_window, Some(5.0));
        assert_eq!(s.control.max_step_up, Some(2));
        assert_eq!(s.control.scale_up_period, Some(12.0));
        assert_eq!(s.control.tolerance, None);
        let names: Vec<&str> = s.services.iter().map(|d| d.spec.name.as_str()).collect();
        assert_eq!(
            names,
            ["worker", "web", "thumbnailer"],
            "sorted by priority"
        );
        assert_eq!(s.services[0].spec.max, 5);
        assert_eq!(s.services[0].spec.target, 7.5);
        assert_eq!(s.services[1].priority_source, PrioritySource::Config);
        assert_eq!(
            s.services[1].spec.max, 8,
            "default max follows the capacity"
        );
        assert_eq!(s.services[2].spec.units, 2);
        assert_eq!(s.services[2].spec.min, 0);

        let s = load(
            &[
                ("MICROBADGER_CAPACITY", "3"),
                ("MICROBADGER_SCALER_TICK_MS", "100"),
            ],
            Some(file),
        )
        .unwrap();
        assert_eq!(s.capacity, 3, "the environment wins over the file");
        assert_eq!(s.tick, Duration::from_millis(100));
    }

    #[test]
    fn cpu_and_memory_are_counted_when_the_capacity_has_them() {
        let s = load(&[], None).unwrap();
        assert_eq!(s.shared(), Capacity::from(4), "units only by default");
        let file = r#"
            capacity = 8
            cpu_millis = 2000
            memory_mib = 4096
            [services.web]
            cpu_millis = 500
            memory_mib = 256
            [services.worker]
            cpu_millis = 1000
            memory_mib = 1024
        "#;
        let s = load(&[], Some(file)).unwrap();
        assert_eq!(
            s.shared(),
            Capacity {
                units: 8,
                cpu_millis: Some(2000),
                memory_mib: Some(4096)
            }
        );
        assert_eq!(
            s.shared().to_string(),
            "8 units, 2000m CPU, 4096 MiB memory"
        );
        let web = &s.services[0].spec;
        assert_eq!((web.cpu_millis, web.memory_mib), (500, 256));
        // The minimums (one web, one worker) must fit in every dimension counted.
        let err = |file: &str| load(&[], Some(file)).unwrap_err().to_string();
        let e = err(
            "cpu_millis = 1000\n[services.web]\ncpu_millis = 600\n[services.worker]\ncpu_millis = 600\n",
        );
        assert!(
            e.contains("the minimums need 1200m CPU but cpu_millis is 1000"),
            "{e}"
        );
        let e = err(
            "memory_mib = 300\n[services.web]\nmemory_mib = 128\n[services.worker]\nmemory_mib = 200\n",
        );
        assert!(
            e.contains("the minimums need 328 MiB but memory_mib is 300"),
            "{e}"
        );
        assert!(err("cpu_millis = -1").starts_with("scaler.toml:"));
        let e = err("cpu_millis = 4000\n[services.big]\ncommand = [\"big\"]\ncpu_millis = 5000\n");
        assert_eq!(
            e,
            "service big: one instance asks for 5000m CPU but cpu_millis is 4000"
        );
        // The environment sets the capacity's CPU and memory too, and wins over the file.
        let env = [
            ("MICROBADGER_CAPACITY_CPU_MILLIS", "3000"),
            ("MICROBADGER_CAPACITY_MEMORY_MIB", "2048"),
        ];
        let s = load(&env, Some(file)).unwrap();
        assert_eq!((s.cpu_millis, s.memory_mib), (Some(3000), Some(2048)));
        let s = load(&env, None).unwrap();
        assert_eq!((s.cpu_millis, s.memory_mib), (Some(3000), Some(2048)));
        assert!(
            Config::from_lookup(
                |k| (k == "MICROBADGER_CAPACITY_CPU_MILLIS").then(|| "2 cores".into())
            )
            .unwrap_err()
            .to_string()
            .contains("MICROBADGER_CAPACITY_CPU_MILLIS")
        );
        // Without a CPU capacity, what an instance asks for is not counted at all.
        let s = load(&[], Some("[services.web]\ncpu_millis = 5000\n")).unwrap();
        assert_eq!(s.shared().cpu_millis, None);
    }

    #[test]
    fn a_builtin_service_can_be_removed() {
        let s = load(&[], Some("[services.worker]\nenabled = false\n")).unwrap();
        assert_eq!(s.services.len(), 1);
        assert_eq!(s.services[0].spec.name, "web");
    }

    #[test]
    fn bad_declarations_are_refused_with_reasons() {
        let err = |file: &str| load(&[], Some(file)).unwrap_err().to_string();
        assert!(err("capacity = \"many\"").starts_with("scaler.toml:"));
        assert!(err("colour = 1").contains("unknown field"));
        assert!(err("[services.x]\npriority = 3").contains("needs a command"));
        assert!(err("[services.web]\nmin = 3\nmax = 2").contains("min 3 is above max 2"));
        assert!(err("[services.web]\ntarget = 0.0").contains("positive"));
        assert!(
            err("capacity = 2\n[services.web]\nmin = 2").contains("minimums need 3"),
            "{}",
            err("capacity = 2\n[services.web]\nmin = 2")
        );
        assert!(err("[services.web]\nmetric = \"cpu\"").contains("unknown variant"));
    }

    #[test]
    fn priority_labels_ours_first_then_microscaling() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            priority_from_labels(&labels(&[
                ("com.microscaling.priority", "5"),
                ("org.microbadger.scaler.priority", "3")
            ])),
            Some(("org.microbadger.scaler.priority".into(), 3))
        );
        assert_eq!(
            priority_from_labels(&labels(&[
                ("org.microbadger.scaler.priority", "high"),
                ("com.microscaling.priority", " 7 ")
            ])),
            Some(("com.microscaling.priority".into(), 7)),
            "an unparseable label is skipped"
        );
        assert_eq!(priority_from_labels(&labels(&[("x", "1")])), None);
    }

    /// A scaler configuration file with `text`, removed when dropped.
    fn config_file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new()
            .prefix("microbadger-scaler-")
            .suffix(".toml")
            .tempfile()
            .unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn the_readme_example_is_a_valid_configuration() {
        // The first ```toml block of README.md is the scaler configuration example.
        let readme = include_str!("../../README.md");
        let start = readme.find("```toml\n").expect("README has a toml block") + 8;
        let text = &readme[start..start + readme[start..].find("```").unwrap()];
        let f = config_file(text);
        let control = control_from_file(f.path()).unwrap();
        assert_eq!(control.queue_over_target, Some(0.01));
        assert_eq!(control.essential_over_target, Some(0.5));
        assert_eq!(control.scale_down_window, Some(60.0));
        assert_eq!(control.yield_after, Some(120.0));
        // And the whole of it loads: the capacity, CPU and memory, and both services.
        let s = load(&[], Some(text)).unwrap();
        assert_eq!(s.capacity, 6);
        assert_eq!((s.cpu_millis, s.memory_mib), (Some(4000), Some(8192)));
        let specs = s.specs();
        assert_eq!(specs.len(), 2);
        assert_eq!((specs[0].name.as_str(), specs[0].target), ("web", 16.0));
        assert_eq!((specs[1].name.as_str(), specs[1].max), ("worker", 4));
    }

    #[test]
    fn control_from_file_reads_the_control_table() {
        let f = config_file(
            "capacity = 6\ntick_ms = 250\nstop_grace_secs = 3.0\n\
             [control]\nyield_after = 12.0\nin_flight_z = 2.0\n\
             [services.worker]\nmax = 4\n",
        );
        let control = control_from_file(f.path()).unwrap();
        assert_eq!(
            control,
            ControlOverrides {
                yield_after: Some(12.0),
                in_flight_z: Some(2.0),
                ..ControlOverrides::default()
            }
        );
        // Applied over the defaults as the supervisor does.
        let params = crate::scaler::supervisor::control_params(&control);
        assert_eq!(
            params,
            crate::scaler::control::ControlParams {
                yield_after: 12.0,
                in_flight_z: 2.0,
                ..Default::default()
            }
        );
        // Every new field can be set.
        let f = config_file(
            "[control]\nqueue_over_target = 0.05\nscale_down_min_fraction = 0.5\n\
             up_hysteresis = 0.25\ndrain_aim = 1.0\nyield_after = 30.0\nin_flight_z = 1.5\n\
             essential_z = 0.5\nessential_over_target = 0.3\nessential_window = 20.0\n",
        );
        let control = control_from_file(f.path()).unwrap();
        assert_eq!(
            (
                control.queue_over_target,
                control.scale_down_min_fraction,
                control.up_hysteresis,
                control.drain_aim,
                control.yield_after,
                control.in_flight_z
            ),
            (
                Some(0.05),
                Some(0.5),
                Some(0.25),
                Some(1.0),
                Some(30.0),
                Some(1.5)
            )
        );
        let params = crate::scaler::supervisor::control_params(&control);
        assert_eq!(
            (
                params.essential_z,
                params.essential_over_target,
                params.essential_window
            ),
            (0.5, 0.3, 20.0)
        );
        // No [control] table: nothing overridden.
        let f = config_file("capacity = 6\n");
        assert_eq!(
            control_from_file(f.path()).unwrap(),
            ControlOverrides::default()
        );
    }

    #[test]
    fn control_from_file_checks_the_whole_file() {
        for text in [
            "[control]\nyield_after = 12.0\nyield_afterwards = 1.0\n",
            "[control]\nyield_after = \"soon\"\n",
            "capacity = 6\ncolour = 1\n[control]\nyield_after = 12.0\n",
            "[control]\nyield_after = 12.0\n[services.worker]\nmaximum = 4\n",
        ] {
            let f = config_file(text);
            let err = control_from_file(f.path()).unwrap_err();
            let ServicesError::Parse { path, reason } = &err else {
                panic!("{text:?}: not a parse error: {err:?}");
            };
            assert_eq!(path, f.path(), "{text:?}");
            assert!(
                err.to_string()
                    .starts_with(&format!("{}: ", f.path().display())),
                "{err}"
            );
            assert!(!reason.is_empty());
        }
        let f = config_file("[control]\nyield_afterwards = 1.0\n");
        let err = control_from_file(f.path()).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        assert!(err.to_string().contains("yield_afterwards"), "{err}");
    }

    #[test]
    fn control_from_file_reports_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.toml");
        let err = control_from_file(&path).unwrap_err();
        let ServicesError::Read { path: p, source } = &err else {
            panic!("not a read error: {err:?}");
        };
        assert_eq!(p, &path);
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        assert!(
            err.to_string()
                .starts_with(&format!("{}: ", path.display())),
            "{err}"
        );
    }
}
