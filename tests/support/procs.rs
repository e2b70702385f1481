//! Helpers for tests and benchmarks that run `microbadger up` as a real supervisor: a slow
//! proxy in front of the real registry (so jobs take real time), and `up`'s children read
//! from `/proc`.

use std::time::Duration;

use super::TestRegistry;
use super::http::{HttpServer, Response};

/// A proxy in front of the real registry that delays every request by `delay` and serves the
/// one pushed repository `team/app` under any name `team/appNNN`, so many distinct images
/// (one job each: the queue deduplicates per image) are all real.
pub fn slow_registry_proxy(reg: &TestRegistry, delay: Duration) -> HttpServer {
    let upstream = reg.url();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent();
    HttpServer::start(move |req| {
        std::thread::sleep(delay);
        let target = rewrite(&req.target);
        let mut b = ureq::http::Request::builder()
            .method(req.method.as_str())
            .uri(format!("{upstream}{target}"));
        for (k, v) in &req.headers {
            if k.eq_ignore_ascii_case("accept") || k.eq_ignore_ascii_case("authorization") {
                b = b.header(k.as_str(), v.as_str());
            }
        }
        let Ok(mut resp) = agent.run(b.body(req.body.clone()).unwrap()) else {
            return Response::new(502);
        };
        let mut out = Response::new(resp.status().as_u16());
        for (k, v) in resp.headers() {
            let k = k.as_str();
            if ["content-type", "docker-content-digest", "link"].contains(&k)
                || (req.method == "HEAD" && k == "content-length")
            {
                out = out.header(k, v.to_str().unwrap_or_default());
            }
        }
        out.body(resp.body_mut().read_to_vec().unwrap_or_default())
    })
}

/// `/v2/team/app123/...` -> `/v2/team/app/...`.
pub fn rewrite(target: &str) -> String {
    const PREFIX: &str = "/v2/team/app";
    match target.strip_prefix(PREFIX) {
        Some(rest) => {
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            format!("{PREFIX}{}", &rest[digits..])
        }
        None => target.to_string(),
    }
}

/// One live (not zombie) process.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Proc {
    pub pid: u32,
    /// The last command-line argument: `web` or `worker` for `up`'s children.
    pub role: String,
}

/// Live children of `parent`, from `/proc/*/stat`, ordered by pid.
pub fn children_of(parent: u32) -> Vec<Proc> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Some((state, ppid)) = stat(pid) else {
            continue;
        };
        if ppid != parent || state == 'Z' {
            continue;
        }
        let role = std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .and_then(|c| {
                c.split(|b| *b == 0)
                    .rfind(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
            })
            .unwrap_or_default();
        out.push(Proc { pid, role });
    }
    out.sort();
    out
}

/// (state, ppid) of a process, if it exists.
pub fn stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may hold spaces, so split after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// A process that still runs (exists and is not a zombie).
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z')
}
