//! Orchestrators: what runs the instances the microscaler asks for.
//!
//! [`Orchestrator`] is the interface the supervisor drives: per service, the [`Counts`] of
//! ready, starting and stopping instances, and [`Orchestrator::scale`] to move toward a
//! target count of live (ready + starting) instances. It is shaped for the backends to come
//! (Docker, Kubernetes): every call that does I/O returns a boxed future, counts are a cheap
//! read of the backend's last known state, and readiness is the backend's own notion.
//!
//! [`LocalProcesses`] is the backend of `microbadger up`: child processes of this one.
//!
//! - **Start**: the service's command, with an explicit environment (the `MICROBADGER_*`
//!   variables and a few system ones, nothing else) plus `MICROBADGER_SUPERVISOR_PID`,
//!   stdout piped, stderr inherited, in a process group of its own (a
//!   Ctrl-C in the terminal reaches only the supervisor, which then stops the children in
//!   order).
//! - **Ready**: when the child prints [`READY_LINE`] on stdout (the web instance once its
//!   listener is bound, the worker once its store and queue are connected). A start that is
//!   not ready within `ready_timeout` is killed and counted as a crash.
//! - **Stop**: SIGTERM to the child's process group (web: finish in-flight requests; worker:
//!   finish or release its jobs), SIGKILL after `stop_grace`. The youngest instances go first,
//!   starting ones before ready ones.
//! - **Crash** (an exit nobody asked for): logged with its status, and a replacement started,
//!   after a back-off that grows while instances keep dying young.
//! - **Never orphaned**: every child is reaped by the task that spawned it; on shutdown the
//!   supervisor stops every child and waits for it; and a child whose parent is no longer the
//!   supervisor (the supervisor was SIGKILLed) exits by itself within a second
//!   ([`parent_gone`]). So there is nothing to adopt after a restart.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncBufReadExt;

use super::ServiceSpec;

/// What a supervised child prints on stdout, alone on a line, once it can do its work.
pub const READY_LINE: &str = "microbadger: ready";

/// A boxed, sendable future (the trait's async methods).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Instance counts of one service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub ready: u32,
    pub starting: u32,
    pub stopping: u32,
}

impl Counts {
    /// Ready plus starting: what a target is compared with.
    pub fn live(&self) -> u32 {
        self.ready + self.starting
    }
    /// Everything that occupies capacity.
    pub fn total(&self) -> u32 {
        self.ready + self.starting + self.stopping
    }
}

/// Why an orchestrator could not act.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    #[error("no service named {0:?}")]
    UnknownService(String),
    #[error("starting {service}: {reason}")]
    Start { service: String, reason: String },
    #[error("stopping {service}: {reason}")]
    Stop { service: String, reason: String },
}

/// Runs instances of the scaled services.
pub trait Orchestrator: Send + Sync {
    /// A short name for logs and the decision record: `local`, `dry-run`.
    fn name(&self) -> &'static str;
    /// Current counts of a service (zero for one it does not know).
    fn counts(&self, service: &str) -> Counts;
    /// Move the service toward `target` live instances: start what is missing, stop what is
    /// extra (drain, then kill after the grace period). Returns once the starts and stops are
    /// under way, not when they are finished.
    fn scale<'a>(
        &'a self,
        service: &'a str,
        target: u32,
    ) -> BoxFuture<'a, Result<(), OrchestratorError>>;
    /// Stop every instance (drain, then kill after grace) and resolve when all are gone.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

/// An orchestrator that runs nothing: it takes every target as done at once (all instances
/// ready). `microbadger scaler` uses it to record decisions when no Kubernetes API server is
/// configured ([`super::kubernetes::Kubernetes`] otherwise).
#[derive(Debug, Default)]
pub struct DryRun {
    targets: Mutex<BTreeMap<String, u32>>,
}

impl DryRun {
    /// Starts with `initial` ready instances per service.
    pub fn new(initial: impl IntoIterator<Item = (String, u32)>) -> DryRun {
        DryRun {
            targets: Mutex::new(initial.into_iter().collect()),
        }
    }
}

impl Orchestrator for DryRun {
    fn name(&self) -> &'static str {
        "dry-run"
    }
    fn counts(&self, service: &str) -> Counts {
        let ready = lock(&self.targets).get(service).copied().unwrap_or(0);
        Counts {
            ready,
            ..Counts::default()
        }
    }
    fn scale<'a>(
        &'a self,
        service: &'a str,
        target: u32,
    ) -> BoxFuture<'a, Result<(), OrchestratorError>> {
        let before = lock(&self.targets).insert(service.to_string(), target);
        if before != Some(target) {
            tracing::info!(service, from = ?before, to = target, "dry run: would scale");
        }
        Box::pin(async { Ok(()) })
    }
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        lock(&self.targets).clear();
        Box::pin(async {})
    }
}

/// The guard even if a holder panicked (the maps here stay consistent between statements).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How [`LocalProcesses`] treats its children.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// SIGKILL this long after SIGTERM.
    pub stop_grace: Duration,
    /// A start not ready after this long is killed (and replaced, as a crash).
    pub ready_timeout: Duration,
    /// The children's whole environment (see [`child_environment`]).
    pub env: Vec<(String, String)>,
    /// First restart delay after a crash; doubles while instances keep dying young, up to
    /// [`LocalOptions::max_restart_delay`].
    pub restart_delay: Duration,
    pub max_restart_delay: Duration,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            stop_grace: Duration::from_secs(25),
            ready_timeout: Duration::from_secs(30),
            env: child_environment(std::env::vars()),
            restart_delay: Duration::from_millis(250),
            max_restart_delay: Duration::from_secs(30),
        }
    }
}

/// The environment a child gets: every `MICROBADGER_*` variable (it needs the same store,
/// queue and registry settings) and the few system variables programs expect; nothing else
/// (no cloud credentials, tokens or shell state it has no use for).
pub fn child_environment(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Vec<(String, String)> {
    const SYSTEM: &[&str] = &[
        "PATH",
        "HOME",
        "TMPDIR",
        "TZ",
        "LANG",
        "LC_ALL",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "RUST_BACKTRACE",
    ];
    vars.into_iter()
        .filter(|(k, _)| {
            (k.starts_with("MICROBADGER_") && k != "MICROBADGER_SUPERVISOR_PID")
                || SYSTEM.contains(&k.as_str())
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Ready,
    Stopping,
}

#[derive(Debug)]
struct Instance {
    id: u64,
    pid: u32,
    phase: Phase,
    started: Instant,
}

#[derive(Debug, Default)]
struct ServiceState {
    target: u32,
    instances: Vec<Instance>,
    /// Crashes of instances that died young, in a row (for the restart back-off).
    young_crashes: u32,
    /// A restart is scheduled; no other start until it runs.
    restart_pending: bool,
    restarts: u64,
}

#[derive(Debug, Default)]
struct State {
    services: BTreeMap<String, ServiceState>,
    shutting_down: bool,
}

struct Inner {
    specs: BTreeMap<String, ServiceSpec>,
    opts: LocalOptions,
    state: Mutex<State>,
    next_id: AtomicU64,
    /// Signalled whenever an instance is gone (shutdown waits on it).
    gone: tokio::sync::Notify,
}

/// The local-process backend (see the module documentation).
#[derive(Clone)]
pub struct LocalProcesses {
    inner: Arc<Inner>,
}

impl LocalProcesses {
    /// A backend for these services; nothing runs until [`Orchestrator::scale`].
    pub fn new(specs: &[ServiceSpec], opts: LocalOptions) -> LocalProcesses {
        let specs: BTreeMap<String, ServiceSpec> =
            specs.iter().map(|s| (s.name.clone(), s.clone())).collect();
        let services = specs
            .keys()
            .map(|k| (k.clone(), ServiceState::default()))
            .collect();
        LocalProcesses {
            inner: Arc::new(Inner {
                specs,
                opts,
                state: Mutex::new(State {
                    services,
                    shutting_down: false,
                }),
                next_id: AtomicU64::new(1),
                gone: tokio::sync::Notify::new(),
            }),
        }
    }

    /// Process ids of a service's instances (any phase).
    pub fn pids(&self, service: &str) -> Vec<u32> {
        lock(&self.inner.state)
            .services
            .get(service)
            .map(|s| s.instances.iter().map(|i| i.pid).collect())
            .unwrap_or_default()
    }

    /// How many crashed instances of a service were replaced so far.
    pub fn restarts(&self, service: &str) -> u64 {
        lock(&self.inner.state)
            .services
            .get(service)
            .map_or(0, |s| s.restarts)
    }
}

impl Inner {
    /// Start or stop instances of `service` so that its live count meets its target.
    /// Called with the state locked.
    fn reconcile(
        self: &Arc<Self>,
        state: &mut State,
        service: &str,
    ) -> Result<(), OrchestratorError> {
        let Some(spec) = self.specs.get(service) else {
            return Err(OrchestratorError::UnknownService(service.into()));
        };
        let shutting_down = state.shutting_down;
        let s = state
            .services
            .get_mut(service)
            .expect("every spec has a state");
        let target = if shutting_down { 0 } else { s.target };
        let live = s
            .instances
            .iter()
            .filter(|i| i.phase != Phase::Stopping)
            .count() as u32;
        if live < target && !s.restart_pending {
            for _ in live..target {
                self.start(spec, s)?;
            }
        } else if live > target {
            // Youngest first, starting ones before ready ones: they have done the least work.
            let mut victims: Vec<usize> = (0..s.instances.len())
                .filter(|&n| s.instances[n].phase != Phase::Stopping)
                .collect();
            victims.sort_by_key(|&n| {
                let i = &s.instances[n];
                (i.phase == Phase::Ready, std::cmp::Reverse(i.started))
            });
            for n in victims.into_iter().take((live - target) as usize) {
                let i = &mut s.instances[n];
                i.phase = Phase::Stopping;
                self.terminate(service, i.id, i.pid, i.started.elapsed());
            }
        }
        Ok(())
    }

    /// SIGTERM to the child's process group, and SIGKILL after the grace period if it is
    /// still there.
    fn terminate(self: &Arc<Self>, service: &str, id: u64, pid: u32, age: Duration) {
        tracing::info!(
            service,
            instance = id,
            pid,
            age_s = age.as_secs_f64(),
            grace_s = self.opts.stop_grace.as_secs_f64(),
            "stopping instance (SIGTERM)"
        );
        signal_group(pid, nix::sys::signal::Signal::SIGTERM);
        let me = self.clone();
        let service = service.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(me.opts.stop_grace).await;
            // Still listed means not reaped yet, so the pid is still this child's.
            let state = lock(&me.state);
            let alive = state
                .services
                .get(&service)
                .is_some_and(|s| s.instances.iter().any(|i| i.id == id));
            if alive {
                tracing::warn!(
                    service,
                    instance = id,
                    pid,
                    "instance did not stop within the grace period; SIGKILL"
                );
                signal_group(pid, nix::sys::signal::Signal::SIGKILL);
            }
        });
    }

    /// Spawn one instance and the task that watches it. Called with the state locked.
    fn start(
        self: &Arc<Self>,
        spec: &ServiceSpec,
        s: &mut ServiceState,
    ) -> Result<(), OrchestratorError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (program, args) =
            spec.command
                .split_first()
                .ok_or_else(|| OrchestratorError::Start {
                    service: spec.name.clone(),
                    reason: "empty command".into(),
                })?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env_clear()
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)))
            .env("MICROBADGER_SUPERVISOR_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| OrchestratorError::Start {
            service: spec.name.clone(),
            reason: format!("{program}: {e}"),
        })?;
        let pid = child.id().unwrap_or(0);
        tracing::info!(service = %spec.name, instance = id, pid, command = ?spec.command, "starting instance");
        s.instances.push(Instance {
            id,
            pid,
            phase: Phase::Starting,
            started: Instant::now(),
        });
        let me = self.clone();
        let service = spec.name.clone();
        let stdout = child.stdout.take();
        tokio::spawn(async move {
            let mut lines = stdout.map(|o| tokio::io::BufReader::new(o).lines());
            let ready_deadline = tokio::time::sleep(me.opts.ready_timeout);
            tokio::pin!(ready_deadline);
            let mut waiting_ready = true;
            let status = loop {
                tokio::select! {
                    status = child.wait() => break status,
                    line = async { match lines.as_mut() {
                        Some(l) => l.next_line().await,
                        None => std::future::pending().await,
                    } } => match line {
                        Ok(Some(line)) if line.trim() == READY_LINE => {
                            waiting_ready = false;
                            me.mark_ready(&service, id, pid);
                        }
                        Ok(Some(line)) => tracing::debug!(service, instance = id, line, "child stdout"),
                        // Closed stdout: keep waiting for the exit.
                        Ok(None) | Err(_) => lines = None,
                    },
                    _ = &mut ready_deadline, if waiting_ready => {
                        waiting_ready = false;
                        let starting = lock(&me.state).services.get(&service).is_some_and(|s| {
                            s.instances.iter().any(|i| i.id == id && i.phase == Phase::Starting)
                        });
                        if starting {
                            tracing::warn!(service, instance = id, pid, timeout_s = me.opts.ready_timeout.as_secs_f64(), "instance never became ready; SIGKILL");
                            signal_group(pid, nix::sys::signal::Signal::SIGKILL);
                        }
                    }
                }
            };
            me.exited(&service, id, pid, status);
        });
        Ok(())
    }

    fn mark_ready(&self, service: &str, id: u64, pid: u32) {
        let mut state = lock(&self.state);
        if let Some(s) = state.services.get_mut(service)
            && let Some(i) = s.instances.iter_mut().find(|i| i.id == id)
            && i.phase == Phase::Starting
        {
            i.phase = Phase::Ready;
            tracing::info!(
                service,
                instance = id,
                pid,
                after_s = i.started.elapsed().as_secs_f64(),
                "instance ready"
            );
        }
    }

    /// A child was reaped: a requested stop, or a crash to replace.
    fn exited(
        self: &Arc<Self>,
        service: &str,
        id: u64,
        pid: u32,
        status: std::io::Result<std::process::ExitStatus>,
    ) {
        let mut state = lock(&self.state);
        let shutting_down = state.shutting_down;
        let Some(s) = state.services.get_mut(service) else {
            return;
        };
        let Some(n) = s.instances.iter().position(|i| i.id == id) else {
            return;
        };
        let gone = s.instances.remove(n);
        let lived = gone.started.elapsed();
        let status = status
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        if gone.phase == Phase::Stopping {
            tracing::info!(service, instance = id, pid, %status, lived_s = lived.as_secs_f64(), "instance stopped");
            drop(state);
            self.gone.notify_waiters();
            return;
        }
        tracing::warn!(service, instance = id, pid, %status, lived_s = lived.as_secs_f64(), was = ?gone.phase, "instance exited unasked (crash); it will be replaced");
        if shutting_down {
            drop(state);
            self.gone.notify_waiters();
            return;
        }
        s.restarts += 1;
        if lived < Duration::from_secs(10) {
            s.young_crashes = s.young_crashes.saturating_add(1);
        } else {
            s.young_crashes = 0;
        }
        let delay = self
            .opts
            .restart_delay
            .saturating_mul(1u32 << s.young_crashes.saturating_sub(1).min(16))
            .min(self.opts.max_restart_delay);
        s.restart_pending = true;
        drop(state);
        self.gone.notify_waiters();
        let me = self.clone();
        let service = service.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut state = lock(&me.state);
            if let Some(s) = state.services.get_mut(&service) {
                s.restart_pending = false;
            }
            if let Err(e) = me.reconcile(&mut state, &service) {
                tracing::error!(service, error = %e, "replacing a crashed instance failed");
            }
        });
    }
}

/// Send `signal` to the process group led by `pid` (the child and anything it started).
fn signal_group(pid: u32, signal: nix::sys::signal::Signal) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    if raw <= 1 {
        return;
    }
    if let Err(e) = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(raw), signal) {
        // ESRCH: already gone.
        tracing::debug!(pid, ?signal, error = %e, "signal not delivered");
    }
}

impl Orchestrator for LocalProcesses {
    fn name(&self) -> &'static str {
        "local"
    }

    fn counts(&self, service: &str) -> Counts {
        let state = lock(&self.inner.state);
        let mut c = Counts::default();
        if let Some(s) = state.services.get(service) {
            for i in &s.instances {
                match i.phase {
                    Phase::Starting => c.starting += 1,
                    Phase::Ready => c.ready += 1,
                    Phase::Stopping => c.stopping += 1,
                }
            }
        }
        c
    }

    fn scale<'a>(
        &'a self,
        service: &'a str,
        target: u32,
    ) -> BoxFuture<'a, Result<(), OrchestratorError>> {
        Box::pin(async move {
            let mut state = lock(&self.inner.state);
            let Some(s) = state.services.get_mut(service) else {
                return Err(OrchestratorError::UnknownService(service.into()));
            };
            if s.target != target {
                tracing::info!(service, from = s.target, to = target, "scaling");
            }
            s.target = target;
            self.inner.reconcile(&mut state, service)
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let names: Vec<String> = self.inner.specs.keys().cloned().collect();
            {
                let mut state = lock(&self.inner.state);
                state.shutting_down = true;
                for name in &names {
                    if let Some(s) = state.services.get_mut(name) {
                        s.target = 0;
                    }
                    let _ = self.inner.reconcile(&mut state, name);
                }
            }
            // Each stop escalates to SIGKILL after the grace; allow for that plus reaping.
            let deadline =
                tokio::time::Instant::now() + self.inner.opts.stop_grace + Duration::from_secs(5);
            loop {
                let notified = self.inner.gone.notified();
                let left: usize = {
                    let state = lock(&self.inner.state);
                    state.services.values().map(|s| s.instances.len()).sum()
                };
                if left == 0 {
                    break;
                }
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep_until(deadline) => {
                        let state = lock(&self.inner.state);
                        for (name, s) in &state.services {
                            for i in &s.instances {
                                tracing::error!(service = %name, instance = i.id, pid = i.pid, "still running at the end of shutdown; SIGKILL");
                                signal_group(i.pid, nix::sys::signal::Signal::SIGKILL);
                            }
                        }
                        break;
                    }
                    // Notify only wakes current waiters; poll as a backstop.
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
            tracing::info!("every instance stopped");
        })
    }
}

/// Resolves when this process's parent is no longer `supervisor` (the supervisor died and
/// the child was re-parented). Polls once a second: a supervised child selects on this
/// beside its shutdown signal, so it never outlives `up` by more than about a second plus
/// its own drain.
pub async fn parent_gone(supervisor: u32) {
    loop {
        if std::os::unix::process::parent_id() != supervisor {
            tracing::warn!(supervisor, "the supervising process is gone; stopping");
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Tell the supervisor (if any) that this process is ready: [`READY_LINE`] on stdout.
pub fn announce_ready() {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{READY_LINE}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_get_only_microbadger_and_system_variables() {
        let vars = [
            ("PATH", "/usr/bin"),
            ("MICROBADGER_DATABASE_URL", "sqlite://x.db"),
            ("MICROBADGER_SUPERVISOR_PID", "12"),
            ("AWS_SECRET_ACCESS_KEY", "shh"),
            ("GITHUB_TOKEN", "shh"),
            ("HOME", "/root"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let env = child_environment(vars);
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["PATH", "MICROBADGER_DATABASE_URL", "HOME"]);
    }

    #[test]
    fn dry_run_takes_targets_as_done() {
        let d = DryRun::new([("web".to_string(), 1)]);
        assert_eq!(d.counts("web").ready, 1);
        futures::executor::block_on(d.scale("worker", 3)).unwrap();
        assert_eq!(
            d.counts("worker"),
            Counts {
                ready: 3,
                starting: 0,
                stopping: 0
            }
        );
        assert_eq!(d.counts("nothing"), Counts::default());
    }
}
