//! Shared test harness for the integration tests: real services on free ports, fixtures built
//! by independent tools, and a deliberately broken registry.
//!
//! Use it from an integration test with `mod support;`. Nothing here depends on the
//! `microbadger` library, so the harness keeps compiling while the library changes.
//!
//! - [`TestRegistry`]: the real CNCF distribution registry (`docker-registry`), with no auth,
//!   htpasswd (bcrypt) or token auth backed by a [`TokenIssuer`]; parsed access log for
//!   counting requests.
//! - [`Fixture`], [`MultiArch`]: images built with `umoci` and pushed with `skopeo`.
//! - [`skopeo_inspect`], [`skopeo_inspect_config`], [`skopeo_inspect_raw`]: the reference
//!   answers to compare against.
//! - [`MisbehavingServer`]: a plain-HTTP "registry" that fails in one chosen way.
//! - [`TestPostgres`]: a real PostgreSQL (`initdb` + `pg_ctl`), shared per test binary with a
//!   fresh database per test, or one of your own.
//! - [`procs`]: a slow proxy in front of the registry and `up`'s children from `/proc`, for
//!   the microscaler's real-process tests and benchmark.
//! - [`TestRedis`]: a real `redis-server` with append-only persistence (`appendfsync always`),
//!   restartable and killable on the same port and data directory.
//!
//! Every service runs on its own free `127.0.0.1` port with its own temporary directory, and
//! is stopped (process killed and reaped, threads joined) when its handle is dropped. The
//! helpers are blocking and use their own threads, so they work from `#[test]` and from
//! `#[tokio::test]` alike (inside an async test, call them before or between awaits; they do
//! not need the test's runtime).

// Each integration test compiles this module on its own and uses only part of it.
#![allow(
    dead_code,
    unused_imports,
    reason = "shared by many test crates; each uses a different subset"
)]

pub mod fixture;
pub mod http;
pub mod kube;
pub mod misbehaving;
pub mod openapi;
pub mod postgres;
pub mod procs;
pub mod redis;
pub mod registry;
pub mod skopeo;
pub mod token;
pub mod web;

pub use fixture::{Fixture, Format, MultiArch, PushedImage, PushedIndex, PushedPlatform};
pub use misbehaving::{Behaviour, MisbehavingServer, RecordedRequest};
pub use postgres::TestPostgres;
pub use redis::TestRedis;
pub use registry::{AccessLogEntry, ApiResponse, Auth, Creds, LogMark, TestRegistry};
pub use skopeo::{skopeo_inspect, skopeo_inspect_config, skopeo_inspect_raw, skopeo_inspect_with};
pub use token::{AccessEntry, TokenIssuer, TokenRequest};

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// User-Agent of every request the harness itself sends, so tests can tell them apart in the
/// registry's access log ([`AccessLogEntry::is_harness`]).
pub const HARNESS_USER_AGENT: &str = "microbadger-test-harness";

/// Media types, spelled once.
pub mod media {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// An `Accept` header value naming every manifest type above.
    pub const ACCEPT_ALL_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, \
        application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.v2+json";
}

/// A port on 127.0.0.1 that was free a moment ago (for child processes that bind themselves;
/// our own servers keep the listener instead, so they never race).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Polls `f` every 10 ms until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs a tool to completion; panics with its full output when it fails.
pub fn run_tool(cmd: &mut Command) -> std::process::Output {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e} (run scripts/setup to install it)"));
    assert!(
        out.status.success(),
        "{shown} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A blocking HTTP client for the harness's own calls: no redirects followed, HTTP error
/// statuses returned as responses, and a fixed User-Agent.
pub(crate) fn harness_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(HARNESS_USER_AGENT)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A temporary directory for a service or fixture: on tmpfs (`/dev/shm`) when there is one,
/// because the registry's filesystem driver and umoci fsync every write, which is slow on the
/// test machines' disks; else the system temp dir. Removed on drop.
pub fn scratch_dir(prefix: &str) -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    if shm.is_dir()
        && let Ok(dir) = builder.tempdir_in(shm)
    {
        return dir;
    }
    builder.tempdir().expect("create a temporary directory")
}

/// Reads a whole file to a string, or empty when it does not exist.
pub(crate) fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
