//! A real PostgreSQL server (Debian package `postgresql`), started on a free `127.0.0.1` port
//! with its cluster in a temporary directory.
//!
//! - [`TestPostgres::shared`]: one server per test binary, started on first use (about 1.5 s:
//!   `initdb` is most of it); give each test its own database with
//!   [`TestPostgres::fresh_database`], which takes milliseconds. This is what store tests use.
//! - [`TestPostgres::start`]: a server of your own, stopped when the handle drops; for tests
//!   that stop, restart or break the server.
//!
//! `initdb` refuses to run as root, so when the tests run as root every server command goes
//! through `runuser -u postgres --` and the directory is handed to `postgres`. The binaries come
//! from the newest `/usr/lib/postgresql/<version>/bin`. The cluster lives under `/dev/shm` when
//! possible and runs with `fsync=off`: durability is not what these tests measure.
//!
//! A static is never dropped, so every server also gets a watchdog: a small shell loop in its
//! own process group that waits for the test process to exit (normally, by panic, or killed)
//! and then stops the server with `pg_ctl stop -m immediate` and removes its directory. Nothing
//! outlives the test binary by more than a fraction of a second.

use super::{free_port, run_tool, scratch_dir};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// A running PostgreSQL cluster. The superuser is `postgres`, with `trust` authentication.
#[derive(Debug)]
pub struct TestPostgres {
    port: u16,
    bin: PathBuf,
    data: PathBuf,
    /// Holds the cluster, the socket and the log; `None` once stopped.
    dir: Option<tempfile::TempDir>,
    databases: AtomicU32,
}

impl TestPostgres {
    /// Starts a server of its own, stopped when dropped.
    pub fn start() -> TestPostgres {
        let bin = bin_dir();
        let dir = scratch_dir("microbadger-pg-");
        let root = dir.path().to_path_buf();
        give_to_postgres(&root);
        let data = root.join("data");
        run_tool(
            as_postgres(&bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale"])
                .args(["--no-sync", "--no-instructions"]),
        );
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
                root.display()
            );
            let out = as_postgres(&bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(root.join("postgres.log"))
                .args(["-o", &options, "-w", "-t", "30", "start"])
                .stdin(Stdio::null())
                // Own process group: a Ctrl-C to the test run must not kill the server before
                // the watchdog can stop it cleanly.
                .process_group(0)
                .output()
                .expect("run pg_ctl (run scripts/setup to install postgresql)");
            if out.status.success() {
                spawn_watchdog(&bin, &data, &root);
                return TestPostgres {
                    port,
                    bin,
                    data,
                    dir: Some(dir),
                    databases: AtomicU32::new(0),
                };
            }
            // Most likely the port was taken between choosing and binding it: try another.
            last_error = format!(
                "{}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                super::read_lossy(&root.join("postgres.log"))
            );
        }
        panic!("PostgreSQL did not start:\n{last_error}");
    }

    /// One server for the whole test binary, started on first use and stopped by its watchdog
    /// when the process exits.
    pub fn shared() -> &'static TestPostgres {
        static SHARED: OnceLock<TestPostgres> = OnceLock::new();
        SHARED.get_or_init(TestPostgres::start)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the `postgres` database.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// The URL of database `name` on this server (which may not exist).
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` (letters, digits and `_`) and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty()
                && name.len() <= 63
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "database name `{name}`: use 1-63 letters, digits and `_`"
        );
        run_tool(
            Command::new(self.bin.join("createdb"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .arg(name),
        );
        self.database_url(name)
    }

    /// Creates a database with a name never used before on this server (`prefix` plus a
    /// counter, shortened and cleaned as needed) and returns its URL.
    pub fn fresh_database(&self, prefix: &str) -> String {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let clean: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(50)
            .collect();
        self.create_database(&format!("t{n}_{clean}"))
    }

    /// Runs SQL with `psql` on database `db`; returns its unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = run_tool(
            Command::new(self.bin.join("psql"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .args([
                    "-d",
                    db,
                    "-X",
                    "-A",
                    "-t",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-c",
                    sql,
                ]),
        );
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.dir
            .as_ref()
            .map(|d| super::read_lossy(&d.path().join("postgres.log")))
            .unwrap_or_default()
    }

    /// Stops the server at once (`-m immediate`, like a crash) and removes its directory.
    pub fn stop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = as_postgres(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"])
                .stdin(Stdio::null())
                .output();
            drop(dir);
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The newest installed `/usr/lib/postgresql/<version>/bin`.
fn bin_dir() -> PathBuf {
    let base = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(base)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").is_file().then_some((version, bin))
        })
        .max();
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server in {}/<version>/bin (run scripts/setup to install postgresql)",
            base.display()
        ),
    }
}

fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
    })
}

/// A command for a server binary, run as `postgres` when we are root.
fn as_postgres(program: &Path) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Hands the directory to the `postgres` user when we are root.
fn give_to_postgres(dir: &Path) {
    if running_as_root() {
        run_tool(Command::new("chown").arg("postgres:postgres").arg(dir));
    }
}

/// Starts the shell loop that stops the server and removes `root` once this process is gone.
#[expect(
    clippy::zombie_processes,
    reason = "the watchdog must outlive this process; init reaps it"
)]
fn spawn_watchdog(bin: &Path, data: &Path, root: &Path) {
    let pg_ctl = bin.join("pg_ctl");
    let stop = if running_as_root() {
        format!(
            "runuser -u postgres -- '{}' -D '{}' -m immediate -w stop",
            pg_ctl.display(),
            data.display()
        )
    } else {
        format!(
            "'{}' -D '{}' -m immediate -w stop",
            pg_ctl.display(),
            data.display()
        )
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.2; done; \
         if [ -d '{data}' ]; then {stop}; rm -rf '{root}'; fi",
        pid = std::process::id(),
        data = data.display(),
        root = root.display(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start the PostgreSQL watchdog");
}
