//! A real `redis-server` (Debian package `redis-server`) per test, on a free `127.0.0.1` port
//! with its own data directory (on `/dev/shm` when there is one), started with
//! `--appendonly yes --appendfsync always --save ''`: every write is in the append-only file
//! before Redis replies, so [`TestRedis::restart`] and even [`TestRedis::kill`] followed by a
//! restart lose nothing that was acknowledged.
//!
//! [`TestRedis::command`] is a minimal RESP client for the harness's own checks (no dependency
//! on the redis crate, so the harness keeps compiling whatever the library does).

use super::{free_port, read_lossy, scratch_dir};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a start (including replaying the append-only file) may take.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a graceful `SHUTDOWN` may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `redis-server`; stopped (killed and reaped) on drop.
pub struct TestRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
}

/// A reply from [`TestRedis::command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

impl Reply {
    /// The reply as text (simple, bulk or integer); panics on anything else.
    pub fn text(&self) -> String {
        match self {
            Reply::Simple(s) | Reply::Bulk(Some(s)) => s.clone(),
            Reply::Int(i) => i.to_string(),
            other => panic!("expected a text reply, got {other:?}"),
        }
    }
}

impl TestRedis {
    /// Starts a fresh server on a free port; panics with its log if it does not come up.
    pub fn start() -> TestRedis {
        // A free port can be taken between probing and binding; try a few.
        let mut last_log = String::new();
        for _ in 0..5 {
            let mut redis = TestRedis {
                port: free_port(),
                dir: scratch_dir("microbadger-redis-"),
                child: None,
                starts: 0,
            };
            match redis.spawn_and_wait() {
                Ok(()) => return redis,
                Err(log) => last_log = log,
            }
        }
        panic!("redis-server did not start:\n{last_log}");
    }

    /// `redis://127.0.0.1:<port>/` (database 0).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// `redis://127.0.0.1:<port>/<db>`.
    pub fn url_db(&self, db: u8) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (append-only files, `redis.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// How many times the server process was started (1 after [`start`](Self::start)).
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Stops the server gracefully (`SHUTDOWN`; it flushes the append-only file) if it is
    /// running, then starts it again on the same port and directory and waits until it has
    /// loaded its data and answers `PING`.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.spawn_and_wait() {
            panic!("redis-server did not restart on port {}:\n{log}", self.port);
        }
    }

    /// Kills the server with SIGKILL (a crash) and reaps it. [`restart`](Self::restart)
    /// starts it again.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends one command and reads its reply (a fresh connection each time).
    pub fn command(&self, args: &[&str]) -> std::io::Result<Reply> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        stream.write_all(out.as_bytes())?;
        read_reply(&mut BufReader::new(stream))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .args(["--daemonize", "no", "--protected-mode", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run redis-server: {e} (run scripts/setup)"));
        self.child = Some(child);
        self.starts += 1;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if !self.is_running() {
                self.child = None;
                return Err(self.log());
            }
            if let Ok(Reply::Simple(pong)) = self.command(&["PING"])
                && pong == "PONG"
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("no PONG after {START_TIMEOUT:?}\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `SHUTDOWN`, then wait for the process; SIGKILL if it does not exit in time.
    fn stop(&mut self) {
        if !self.is_running() {
            self.child = None;
            return;
        }
        // On success the server closes the connection without a reply.
        let _ = self.command(&["SHUTDOWN"]);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_line(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_reply(r: &mut impl BufRead) -> std::io::Result<Reply> {
    let line = read_line(r)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, line.clone());
    let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
    Ok(match kind {
        "+" => Reply::Simple(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Int(rest.parse().map_err(|_| bad())?),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| bad())?;
            if len < 0 {
                Reply::Bulk(None)
            } else {
                let mut buf = vec![0; len as usize + 2];
                std::io::Read::read_exact(r, &mut buf)?;
                buf.truncate(len as usize);
                Reply::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
        }
        "*" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(read_reply(r)?);
            }
            Reply::Array(items)
        }
        _ => return Err(bad()),
    })
}
