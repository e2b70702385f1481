//! The command line: clap commands and their terminal output. `main.rs` calls [`main`].

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;

use crate::config::Config;
use crate::inspect::{ImageVersion, KeyStatus};
use crate::reference::ImageRef;
use crate::registry::{Inspection, PlatformChoice, RegistryClient, RegistryError, hub::HubInfo};

/// `println!` that does not panic when the reader of stdout goes away early
/// (`microbadger simulate --scenario all | head`): the reader has what it wanted.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

#[derive(Parser, Debug)]
#[command(
    name = "microbadger",
    version,
    about = "Container-image metadata: labels, layers, compliance and badges"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Inspect one image in its registry and print what is inside (no store needed).
    Inspect {
        /// Image reference: nginx, user/app:1.2, ghcr.io/org/app, host:5000/a/b@sha256:...
        image: String,
        /// Platform of a multi-platform image: os/arch[/variant], or "all".
        #[arg(long, default_value = "default")]
        platform: String,
        /// Print one JSON document instead of the report.
        #[arg(long)]
        json: bool,
    },
    /// Run everything on this machine: the microscaler starts and stops `web` and `worker`
    /// child processes within MICROBADGER_CAPACITY, plus the hourly scheduler, on the
    /// embedded store (or the configured PostgreSQL and Redis). SIGTERM or Ctrl-C stops the
    /// children (drain, then kill after the grace period) and exits.
    Up,
    /// Serve pages, badges, the JSON API and webhooks on MICROBADGER_LISTEN.
    Web,
    /// Take inspection jobs off the queue until stopped (SIGTERM: finish, then release).
    Worker,
    /// The microscaler and the scheduler for deployments where an orchestrator runs the
    /// instances: with MICROBADGER_KUBERNETES_URL it sizes one Deployment per service;
    /// without, a dry run that records decisions (/v1/scaler, /scaler) as if every granted
    /// instance were running.
    Scaler,
    /// Queue every known repository once per refresh period (one active scheduler at a time).
    Scheduler,
    /// Create or update the store's tables.
    Migrate,
    /// Add many images at once, one reference a line ('#' starts a comment).
    Import {
        /// The file to read, or '-' for standard input.
        file: String,
    },
    /// List every MICROBADGER_* environment variable with its default.
    Env,
    /// Run the microscaler in a deterministic simulation (web and worker on one capacity)
    /// and print what happened: time over target, waits, scaling actions, instance-seconds.
    Simulate {
        /// A built-in scenario: step, ramp, spike, diurnal, bursty, hot-bunking (or all).
        #[arg(long, required_unless_present = "trace", conflicts_with = "trace")]
        scenario: Option<String>,
        /// Arrival rates from a CSV file: header `second,arrivals` (the worker's queue) or
        /// `second,web_arrivals,worker_arrivals`.
        #[arg(long, value_name = "FILE.csv")]
        trace: Option<std::path::PathBuf>,
        /// ours, hpa, keda, microscaling (or all), or schedule (with --schedule).
        #[arg(long, default_value = "ours")]
        policy: String,
        /// For --policy schedule: instance counts from a CSV file, header `second,web,worker`,
        /// each row the counts asked for from that second on (empty: unchanged).
        #[arg(long, value_name = "FILE.csv")]
        schedule: Option<std::path::PathBuf>,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Also draw queue and instances over time to this SVG file.
        #[arg(long, value_name = "OUT")]
        svg: Option<std::path::PathBuf>,
        /// Seconds from starting an instance to it being ready.
        #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
        start_delay: f64,
        /// Seed of the simulation's random numbers (same seed, same result).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// A scaler configuration file (as for MICROBADGER_SCALER_CONFIG): `ours` runs with
        /// its `[control]` parameters, so a change can be simulated before it is deployed.
        #[arg(long, value_name = "FILE.toml")]
        config: Option<std::path::PathBuf>,
    },
    /// Create, list or revoke webhook tokens. A new token's URL is shown once: only a hash
    /// of the token is stored.
    Webhook {
        #[command(subcommand)]
        action: WebhookAction,
    },
}

/// `microbadger webhook ...`
#[derive(Subcommand, Debug)]
pub enum WebhookAction {
    /// Create a token and print its webhook URL (once; it cannot be shown again).
    Create {
        /// The repository a Docker Hub webhook refreshes: user/app, ghcr.io/org/app.
        #[arg(required_unless_present = "registry", conflicts_with = "registry")]
        image: Option<String>,
        /// Instead, a token for a registry's notifications, bound to this host[:port].
        #[arg(long, value_name = "HOST")]
        registry: Option<String>,
    },
    /// List the tokens: id, kind, target, created, last used (never the tokens).
    List,
    /// Revoke a token by its id (see `list`).
    Revoke { id: i64 },
}

/// Exit codes, so scripts can tell failures apart.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const BAD_INPUT: u8 = 2;
    pub const NOT_FOUND: u8 = 3;
    pub const UNAUTHORIZED: u8 = 4;
    pub const NOT_ALLOWED: u8 = 5;
    pub const UNREACHABLE: u8 = 6;
}

/// Parse arguments, set up logging, run the command, and map failures to a one-line reason
/// and an exit code (never a panic or a backtrace).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Held until exit: dropping it flushes the log lines still queued.
    let _log_guard = init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("microbadger: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let code = runtime.block_on(run(cli));
    ExitCode::from(code)
}

/// Logs go to stderr through a writer thread: a request's log event is formatted on the
/// serving thread and queued, and the thread writes queued lines in batches (flushing when
/// the queue is empty), so no request waits on the stderr lock or a `write` per line. When
/// more than 128k lines are waiting (a log consumer that stopped reading), new lines are
/// dropped rather than stalling requests.
fn init_tracing() -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MICROBADGER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(128 * 1024)
        .lossy(true)
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    // Colours only for a person at a terminal: a log file or a pipe gets plain text, not
    // escape codes (and formatting them costs ~1 us an event). NO_COLOR turns them off too.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(writer)
        .try_init();
    guard
}

/// Run a parsed command; returns the process exit code.
pub async fn run(cli: Cli) -> u8 {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("microbadger: configuration: {e}");
            return exit::BAD_INPUT;
        }
    };
    match cli.command {
        Command::Inspect {
            image,
            platform,
            json,
        } => inspect_command(&config, &image, &platform, json).await,
        Command::Up => with_app(config, |app| async move { supervise(app, true).await }).await,
        Command::Scaler => with_app(config, |app| async move { supervise(app, false).await }).await,
        Command::Web => {
            with_app(config, |app| async move {
                let listener = match bind(&app) {
                    Ok(l) => l,
                    Err(code) => return code,
                };
                let supervisor = app.config.scaler.supervisor_pid;
                let state = crate::web::AppState::new(&app);
                if supervisor.is_some() {
                    crate::scaler::orchestrator::announce_ready();
                }
                match crate::web::serve(listener, state, stop_requested(supervisor)).await {
                    Ok(()) => exit::OK,
                    Err(e) => {
                        eprintln!("microbadger: {e}");
                        exit::FAILED
                    }
                }
            })
            .await
        }
        Command::Worker => {
            with_app(config, |app| async move {
                let supervisor = app.config.scaler.supervisor_pid;
                if supervisor.is_some() {
                    crate::scaler::orchestrator::announce_ready();
                }
                app.worker().run(stop_requested(supervisor)).await;
                exit::OK
            })
            .await
        }
        Command::Scheduler => {
            with_app(config, |app| async move {
                app.scheduler().run(crate::app::shutdown_signal()).await;
                exit::OK
            })
            .await
        }
        Command::Migrate => match crate::store::Store::connect(&config.store.database_url).await {
            Ok(store) => match store.migrate().await {
                Ok(()) => {
                    out!(
                        "migrations applied to {}",
                        redact_url(&config.store.database_url)
                    );
                    exit::OK
                }
                Err(e) => {
                    eprintln!("microbadger: {e}");
                    exit::FAILED
                }
            },
            Err(e) => {
                eprintln!("microbadger: {e}");
                exit::FAILED
            }
        },
        Command::Import { file } => {
            let text = if file == "-" {
                let mut s = String::new();
                match std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
                    Ok(_) => s,
                    Err(e) => {
                        eprintln!("microbadger: reading standard input: {e}");
                        return exit::BAD_INPUT;
                    }
                }
            } else {
                match std::fs::read_to_string(&file) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("microbadger: {file}: {e}");
                        return exit::BAD_INPUT;
                    }
                }
            };
            with_app(config, |app| async move { import(&app, &text).await }).await
        }
        Command::Env => {
            for (name, default, what) in crate::config::VARIABLES {
                out!("{name}\n    default: {default:?}\n    {what}");
            }
            exit::OK
        }
        Command::Webhook { action } => webhook_command(&config, action).await,
        Command::Simulate {
            scenario,
            trace,
            policy,
            json,
            svg,
            start_delay,
            seed,
            config,
            schedule,
        } => {
            let options = crate::scaler::simulate::Options {
                scenario,
                trace,
                policy,
                json,
                svg,
                start_delay,
                seed,
                config,
                schedule,
            };
            match crate::scaler::simulate::command(&options) {
                Ok(out) => {
                    out!("{out}");
                    exit::OK
                }
                Err(e) => {
                    eprintln!("microbadger: simulate: {}", e.message);
                    if e.bad_input {
                        exit::BAD_INPUT
                    } else {
                        exit::FAILED
                    }
                }
            }
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C, or (in a child of `up`) when the supervisor is gone.
async fn stop_requested(supervisor: Option<u32>) {
    match supervisor {
        Some(pid) => {
            tokio::select! {
                _ = crate::app::shutdown_signal() => {}
                _ = crate::scaler::orchestrator::parent_gone(pid) => {}
            }
        }
        None => crate::app::shutdown_signal().await,
    }
}

/// `up` (local child processes) and `scaler` (dry run): the microscaler and the scheduler
/// until SIGTERM or Ctrl-C.
async fn supervise(app: crate::app::App, local: bool) -> u8 {
    use crate::scaler::orchestrator::{DryRun, LocalOptions, LocalProcesses, Orchestrator};
    use crate::scaler::services::Services;
    use crate::scaler::supervisor::{Supervisor, control_params};
    use std::sync::Arc;

    if local {
        // Fail now, with the reason, when the web instances could not bind (a bad address, a
        // port held by another program), instead of restarting crashing children forever.
        match bind(&app) {
            Ok(probe) => drop(probe),
            Err(code) => return code,
        }
    }
    let mut services = match Services::load(&app.config, |k| std::env::var_os(k).is_some()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("microbadger: scaler configuration: {e}");
            return exit::BAD_INPUT;
        }
    };
    services.resolve_priorities(&app.registry).await;
    let orchestrator: Arc<dyn Orchestrator> = if local {
        let params = control_params(&services.control);
        Arc::new(LocalProcesses::new(
            &services.specs(),
            LocalOptions {
                stop_grace: services.stop_grace,
                ready_timeout: std::time::Duration::from_secs_f64(params.ready_timeout.max(0.1)),
                ..LocalOptions::default()
            },
        ))
    } else if let Some(kube) = app.config.scaler.kubernetes.clone() {
        let names: Vec<String> = services
            .services
            .iter()
            .map(|d| d.spec.name.clone())
            .collect();
        match crate::scaler::kubernetes::Kubernetes::connect(kube, &names).await {
            Ok(k) => Arc::new(k),
            Err(e) => {
                eprintln!("microbadger: kubernetes: {e}");
                return exit::FAILED;
            }
        }
    } else {
        Arc::new(DryRun::default())
    };
    if local {
        eprintln!(
            "microbadger: serving {} (store {}, capacity {}); Ctrl-C stops",
            app.config.web.public_url,
            redact_url(&app.config.store.database_url),
            services.capacity
        );
    } else {
        eprintln!(
            "microbadger: scaler dry run (store {}, capacity {}): decisions are recorded, no \
             instance is started; Ctrl-C stops",
            redact_url(&app.config.store.database_url),
            services.capacity
        );
    }
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let scheduler = tokio::spawn(app.scheduler().run(async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));
    let mut demand = crate::scaler::demand::DemandReader::new(app.store.clone(), app.queue.clone());
    // Under a supervisor of its own (MICROBADGER_SUPERVISOR_PID: a benchmark, a test harness),
    // `up` also stops, children included, when that process is gone.
    Supervisor::new(services, orchestrator, app.store.clone())
        .run(
            &mut demand,
            stop_requested(app.config.scaler.supervisor_pid),
        )
        .await;
    let _ = stop_tx.send(true);
    let _ = scheduler.await;
    exit::OK
}

/// `microbadger webhook create|list|revoke`: needs only the store.
async fn webhook_command(config: &Config, action: WebhookAction) -> u8 {
    use crate::web::hooks;
    let store = match crate::store::Store::connect(&config.store.database_url).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("microbadger: {e}");
            return exit::FAILED;
        }
    };
    let public_url = config.web.public_url.as_str();
    match action {
        WebhookAction::Create { image, registry } => {
            let allow_check = match RegistryClient::with_credentials(
                config.registry.clone(),
                crate::registry::Credentials::default(),
            ) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("microbadger: {e}");
                    return exit::BAD_INPUT;
                }
            };
            let created = match (image, registry) {
                (Some(image), _) => {
                    let r = match ImageRef::parse(&image) {
                        Ok(r) => r,
                        Err(e) => {
                            eprintln!("microbadger: bad image name: {e}");
                            return exit::BAD_INPUT;
                        }
                    };
                    if let Err(e) = allow_check.check_allowed(&r) {
                        eprintln!("microbadger: {e}");
                        return exit::NOT_ALLOWED;
                    }
                    hooks::create_dockerhub_webhook(&store, public_url, &r).await
                }
                (None, Some(host)) => {
                    let allowed = hooks::normalise_registry_host(&host).map(|h| {
                        ImageRef::parse(&format!("{h}/probe"))
                            .map_err(|e| e.to_string())
                            .and_then(|r| allow_check.check_allowed(&r).map_err(|e| e.to_string()))
                    });
                    if let Some(Err(e)) = allowed {
                        eprintln!("microbadger: {e}");
                        return exit::NOT_ALLOWED;
                    }
                    hooks::create_registry_webhook(&store, public_url, &host).await
                }
                (None, None) => {
                    eprintln!("microbadger: give an IMAGE or --registry HOST");
                    return exit::BAD_INPUT;
                }
            };
            match created {
                Ok(c) => {
                    out!("{}", c.url);
                    let r = &c.record;
                    match r.kind {
                        crate::store::WebhookKind::DockerHub => eprintln!(
                            "Webhook {} for {}: add the URL above under the repository's \
                             Webhooks on Docker Hub (or POST to it from CI). It is shown only \
                             this once.",
                            r.id, r.target
                        ),
                        crate::store::WebhookKind::Registry => eprintln!(
                            "Webhook {} for registry {}: it is shown only this once. Add it to \
                             the registry's configuration:\n\n\
                             notifications:\n  endpoints:\n    - name: microbadger\n      \
                             url: <the URL above>\n      timeout: 5s\n      threshold: 5\n      \
                             backoff: 10s\n      ignoredmediatypes:\n        \
                             - application/octet-stream\n",
                            r.id, r.target
                        ),
                    }
                    exit::OK
                }
                Err(e) => {
                    eprintln!("microbadger: {e}");
                    match e {
                        crate::store::StoreError::Invalid(_) => exit::BAD_INPUT,
                        _ => exit::FAILED,
                    }
                }
            }
        }
        WebhookAction::List => match store.webhooks().await {
            Ok(list) => {
                out!(
                    "{:>5}  {:<9}  {:<50}  {:<25}  last used",
                    "id",
                    "kind",
                    "target",
                    "created"
                );
                for w in list {
                    out!(
                        "{:>5}  {:<9}  {:<50}  {:<25}  {}",
                        w.id,
                        w.kind.as_str(),
                        w.target,
                        w.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
                        w.last_used
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                            .unwrap_or_else(|| "never".into())
                    );
                }
                exit::OK
            }
            Err(e) => {
                eprintln!("microbadger: {e}");
                exit::FAILED
            }
        },
        WebhookAction::Revoke { id } => match store.delete_webhook(id).await {
            Ok(true) => {
                out!("webhook {id} revoked");
                exit::OK
            }
            Ok(false) => {
                eprintln!("microbadger: no webhook with id {id}");
                exit::NOT_FOUND
            }
            Err(e) => {
                eprintln!("microbadger: {e}");
                exit::FAILED
            }
        },
    }
}

/// Connect the backends, then run `f`; a start failure is one line and exit code 1.
async fn with_app<F, Fut>(config: Config, f: F) -> u8
where
    F: FnOnce(crate::app::App) -> Fut,
    Fut: std::future::Future<Output = u8>,
{
    match crate::app::App::connect(config).await {
        Ok(app) => f(app).await,
        Err(e) => {
            eprintln!("microbadger: {e}");
            exit::FAILED
        }
    }
}

/// Bind the web listener (with `SO_REUSEPORT`), or say why not.
fn bind(app: &crate::app::App) -> Result<tokio::net::TcpListener, u8> {
    let listen = &app.config.web.listen;
    let addr: std::net::SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(_) => {
            eprintln!("microbadger: MICROBADGER_LISTEN: expected host:port, got {listen:?}");
            return Err(exit::BAD_INPUT);
        }
    };
    crate::web::bind_reuseport(addr).map_err(|e| {
        eprintln!("microbadger: cannot listen on {addr}: {e}");
        exit::FAILED
    })
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// What `import` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub added: usize,
    pub already_known: usize,
    /// (line number, input, reason)
    pub rejected: Vec<(usize, String, String)>,
}

/// Parse an import file: one reference a line, blank lines and `#` comments skipped.
/// Returns the valid references (deduplicated, in order) and the rejected lines.
pub fn parse_import(
    text: &str,
    check: impl Fn(&ImageRef) -> Result<(), String>,
) -> (Vec<ImageRef>, Vec<(usize, String, String)>) {
    let mut seen = std::collections::BTreeSet::new();
    let mut ok = Vec::new();
    let mut rejected = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match ImageRef::parse(line)
            .map_err(|e| e.to_string())
            .and_then(|r| check(&r).map(|()| r))
        {
            Ok(r) => {
                if seen.insert(r.to_string()) {
                    ok.push(r);
                }
            }
            Err(reason) => rejected.push((n + 1, clean(line), reason)),
        }
    }
    (ok, rejected)
}

async fn import(app: &crate::app::App, text: &str) -> u8 {
    use crate::queue::{JobKind, Priority};
    let (refs, rejected) = parse_import(text, |r| {
        app.registry.check_allowed(r).map_err(|e| e.to_string())
    });
    let bar = indicatif::ProgressBar::new(refs.len() as u64);
    if std::io::stderr().is_terminal() {
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} importing [{bar:30}] {pos}/{len} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut summary = ImportSummary {
        rejected,
        ..Default::default()
    };
    let now = chrono::Utc::now();
    let period = app.config.worker.refresh_period;
    for r in &refs {
        bar.set_message(r.familiar());
        let existing = match app.store.repository(r.registry(), r.repository()).await {
            Ok(e) => e,
            Err(e) => {
                bar.abandon();
                eprintln!("microbadger: store: {e}");
                return exit::FAILED;
            }
        };
        if existing.is_some() {
            summary.already_known += 1;
        } else {
            let first = crate::scheduler::first_slot(r.registry(), r.repository(), now, period);
            let job = JobKind::Refresh {
                image: r.full_name(),
                tag: r.tag().map(str::to_string),
            };
            let result = match app
                .store
                .add_repository(r.registry(), r.repository(), first)
                .await
            {
                Ok(_) => app
                    .queue
                    .enqueue(&job, Priority::Background)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = result {
                bar.abandon();
                eprintln!("microbadger: {e}");
                return exit::FAILED;
            }
            summary.added += 1;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    out!(
        "imported: {} added, {} already known, {} rejected",
        summary.added,
        summary.already_known,
        summary.rejected.len()
    );
    for (line, input, reason) in &summary.rejected {
        out!("  line {line}: {input}: {reason}");
    }
    if summary.rejected.is_empty() {
        exit::OK
    } else {
        exit::BAD_INPUT
    }
}

async fn inspect_command(config: &Config, image: &str, platform: &str, json: bool) -> u8 {
    let reference = match ImageRef::parse(image) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("microbadger: bad image name: {e}");
            return exit::BAD_INPUT;
        }
    };
    let choice: PlatformChoice = match platform.parse() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("microbadger: bad --platform: {e}");
            return exit::BAD_INPUT;
        }
    };
    let client = match RegistryClient::new(config.registry.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("microbadger: {e}");
            return exit::BAD_INPUT;
        }
    };
    let interactive = std::io::stderr().is_terminal() && !json;
    if interactive {
        eprint!("Inspecting {} ...", reference.familiar());
        let _ = std::io::stderr().flush();
    }
    let (result, hub) = tokio::join!(
        client.inspect(&reference, &choice),
        client.hub_info(&reference)
    );
    if interactive {
        eprint!("\r\x1b[2K");
    }
    match result {
        Ok(inspection) => {
            let out = if json {
                serde_json::to_string_pretty(&inspection_json(&inspection, hub.as_ref()))
                    .expect("JSON values serialise")
            } else {
                let style = Style::detect();
                render_report(&inspection, hub.as_ref(), &style)
            };
            out!("{out}");
            exit::OK
        }
        Err(e) => {
            eprintln!("microbadger: {e}");
            exit_code_for(&e)
        }
    }
}

/// The exit code for a registry failure.
pub fn exit_code_for(e: &RegistryError) -> u8 {
    match e {
        RegistryError::BadReference(_) => exit::BAD_INPUT,
        RegistryError::NotFound { .. } | RegistryError::NoMatchingPlatform { .. } => {
            exit::NOT_FOUND
        }
        RegistryError::Unauthorized { .. } | RegistryError::Denied { .. } => exit::UNAUTHORIZED,
        RegistryError::NotAllowed { .. } | RegistryError::PrivateAddress { .. } => {
            exit::NOT_ALLOWED
        }
        RegistryError::Timeout { .. } | RegistryError::Unreachable { .. } => exit::UNREACHABLE,
        _ => exit::FAILED,
    }
}

/// The `--json` document: MicroBadger-style field names for the selected image, plus every
/// inspected platform under `Images`.
pub fn inspection_json(i: &Inspection, hub: Option<&HubInfo>) -> serde_json::Value {
    let first = i.images.first();
    let layers: Vec<serde_json::Value> = first
        .map(|v| {
            v.layers
                .iter()
                .map(|l| json!({"Digest": l.digest, "Size": l.size, "Command": l.command, "MediaType": l.media_type}))
                .collect()
        })
        .unwrap_or_default();
    let d = first.map(|v| &v.derived);
    json!({
        "ImageName": i.reference.familiar_name(),
        "Registry": i.reference.registry(),
        "Tag": i.reference.tag_or_default(),
        "Digest": i.digest,
        "MediaType": i.media_type,
        "Platforms": i.platforms.iter().map(|p| p.platform.to_string()).collect::<Vec<_>>(),
        "Platform": first.and_then(|v| v.platform.as_ref()).map(|p| p.to_string()),
        "ManifestDigest": first.map(|v| &v.digest),
        "Labels": first.map(|v| &v.labels),
        "LayerCount": first.map(|v| v.layer_count),
        "DownloadSize": first.map(|v| v.download_size),
        "Layers": layers,
        "Created": first.and_then(|v| v.created.as_ref()),
        "Author": first.and_then(|v| v.author.as_ref()),
        "License": d.and_then(|d| d.license.as_ref()),
        "VersionControl": d.map(|d| json!({
            "Url": d.source,
            "Commit": d.commit,
            "CommitUrl": d.commit_url,
        })),
        "Version": d.and_then(|d| d.version.as_ref()),
        "Compliance": first.map(|v| &v.compliance),
        "Hub": hub,
        "Images": i.images,
    })
}

/// Terminal colours, only when writing to a terminal and `NO_COLOR` is unset.
pub struct Style {
    color: bool,
}

impl Style {
    pub fn detect() -> Self {
        Style {
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }
    pub fn plain() -> Self {
        Style { color: false }
    }
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }
}

/// Remove control characters so hostile label values cannot move the cursor or recolour the
/// terminal.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Shorten to at most `max` characters with an ellipsis.
fn shorten(s: &str, max: usize) -> String {
    let s = clean(s);
    if s.chars().count() <= max {
        s
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// Bytes in IEC units, like `docker images` but binary: "12.3 MiB".
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The readable report: summary, labels, compliance with fixes, layers, platforms.
pub fn render_report(i: &Inspection, hub: Option<&HubInfo>, st: &Style) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(st.bold(&format!(
        "{}:{}",
        i.reference.familiar_name(),
        i.reference.tag_or_default()
    )));
    line(format!("  {:<13}{}", "digest", i.digest));
    line(format!("  {:<13}{}", "media type", i.media_type));
    if !i.platforms.is_empty() {
        let list: Vec<String> = i.platforms.iter().map(|p| p.platform.to_string()).collect();
        line(format!("  {:<13}{}", "platforms", list.join(", ")));
    }
    if let Some(h) = hub {
        if let Some(d) = &h.description {
            line(format!("  {:<13}{}", "description", shorten(d, 100)));
        }
        line(format!(
            "  {:<13}{} stars, {} pulls",
            "docker hub",
            h.star_count.map_or("?".into(), |n| n.to_string()),
            h.pull_count.map_or("?".into(), |n| n.to_string())
        ));
    }
    for v in &i.images {
        line(String::new());
        render_version(v, st, &mut line);
    }
    out.trim_end().to_string()
}

fn render_version(v: &ImageVersion, st: &Style, line: &mut impl FnMut(String)) {
    let platform = v
        .platform
        .as_ref()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "unknown platform".into());
    line(st.bold(&format!("== {platform} ({})", short_digest(&v.digest))));
    line(format!(
        "  {:<13}{} in {} layers",
        "download",
        human_size(v.download_size),
        v.layer_count
    ));
    let d = &v.derived;
    let mut field = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            line(format!("  {name:<13}{}", shorten(&value, 100)));
        }
    };
    field("created", v.created.clone());
    field("author", v.author.clone());
    field("name", d.name.clone());
    field("version", d.version.clone());
    field("commit", d.commit_url.clone().or(d.commit.clone()));
    field("source", d.source.clone());
    field(
        "license",
        d.license.as_ref().map(|l| {
            if l.valid {
                l.canonical.clone().unwrap_or_else(|| l.expression.clone())
            } else {
                format!("{} (not a valid SPDX expression)", l.expression)
            }
        }),
    );
    if v.legacy_schema1 {
        line(format!(
            "  {}",
            st.yellow("legacy schema-1 manifest: sizes are unknown")
        ));
    }
    for w in &v.warnings {
        line(format!("  {} {}", st.yellow("warning:"), clean(w)));
    }

    line(String::new());
    line(st.bold(&format!("  Labels ({})", v.labels.len())));
    if v.labels.is_empty() {
        line(format!("    {}", st.dim("none")));
    }
    let width = v
        .labels
        .keys()
        .map(|k| k.chars().count())
        .max()
        .unwrap_or(0)
        .min(48);
    for (k, val) in &v.labels {
        line(format!(
            "    {:<width$}  {}",
            shorten(k, 48),
            shorten(val, 80)
        ));
    }

    line(String::new());
    let c = &v.compliance;
    line(st.bold(&format!("  Compliance: {}%", c.score)));
    for (name, report) in [
        ("OCI annotations", &c.oci),
        ("label-schema rc1", &c.label_schema),
    ] {
        line(format!(
            "    {name}: {}% ({} present, {} missing, {} invalid)",
            report.score, report.present, report.missing, report.invalid
        ));
        for k in report
            .keys
            .iter()
            .filter(|k| k.status == KeyStatus::Invalid)
        {
            line(format!(
                "      {} {} {}",
                st.red("invalid"),
                k.key,
                k.reason.as_deref().map(clean).unwrap_or_default()
            ));
        }
    }
    for flag in &c.inherited {
        line(format!(
            "    {} {}: {}",
            st.yellow("inherited?"),
            flag.key,
            clean(&flag.reason)
        ));
    }
    if !c.oci.fix.dockerfile.is_empty() {
        line(String::new());
        line(format!("    {}", st.green("Add to your Dockerfile:")));
        for l in &c.oci.fix.dockerfile {
            line(format!("      {l}"));
        }
        line(format!(
            "    {}",
            st.green("or pass to docker buildx build:")
        ));
        for l in &c.oci.fix.buildx {
            line(format!("      {l}"));
        }
    }

    line(String::new());
    line(st.bold("  Layers"));
    for (n, l) in v.layers.iter().enumerate() {
        line(format!(
            "    {:>3}  {:>10}  {}  {}",
            n + 1,
            human_size(l.size),
            st.dim(&short_digest(&l.digest)),
            l.command
                .as_deref()
                .map(|c| shorten(c, 90))
                .unwrap_or_default()
        ));
    }
}

fn short_digest(d: &str) -> String {
    let hex = d.split_once(':').map(|(_, h)| h).unwrap_or(d);
    hex.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_lines_are_parsed_with_reasons() {
        let text = "nginx\n\n# a comment\nuser/app:1.2 # trailing comment\nBad/Name\nnginx\nevil.example/x\n";
        let (ok, rejected) = parse_import(text, |r| {
            if r.registry() == "evil.example" {
                Err("not allowed".into())
            } else {
                Ok(())
            }
        });
        let names: Vec<String> = ok.iter().map(|r| r.familiar()).collect();
        assert_eq!(names, ["nginx", "user/app:1.2"], "deduplicated, in order");
        assert_eq!(rejected.len(), 2);
        assert_eq!(rejected[0].0, 5);
        assert!(rejected[0].2.contains("lowercase"), "{:?}", rejected[0]);
        assert_eq!((rejected[1].0, rejected[1].2.as_str()), (7, "not allowed"));
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@db/x"),
            "postgres://u:***@db/x"
        );
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(5 * 1024 * 1024), "5.0 MiB");
    }

    #[test]
    fn control_characters_are_removed_and_long_values_shortened() {
        assert_eq!(clean("a\x1b[31mb\n"), "a [31mb ");
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abc", 4), "abc");
    }

    #[test]
    fn exit_codes_distinguish_failures() {
        assert_eq!(
            exit_code_for(&RegistryError::NotAllowed {
                registry: "x".into()
            }),
            exit::NOT_ALLOWED
        );
        assert_eq!(
            exit_code_for(&RegistryError::NotFound { what: "x".into() }),
            exit::NOT_FOUND
        );
        assert_eq!(
            exit_code_for(&RegistryError::Timeout {
                registry: "x".into()
            }),
            exit::UNREACHABLE
        );
    }
}
