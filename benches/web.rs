//! The web service under `wrk`: a cached badge, the image page and the API document against a
//! minimal axum handler returning a constant SVG (the baseline), plus the resident memory of
//! one web process with 10,000 images in the store.
//!
//! In one run:
//! 1. a temporary SQLite store (on `/dev/shm`) seeded with 10,000 repositories
//!    `docker.io/team/appNNNN`, one tag `1.0` each, every one a real inspection (one
//!    `ImageVersion` from `inspect_image`, 10 labels, 5 layers) under its own digest;
//! 2. the real service, `target/release/microbadger web`, started as a separate process over
//!    that store (so its memory can be measured on its own);
//! 3. the baseline: an axum server in this process on a 2-worker multi-thread runtime (the
//!    real server runs on the default runtime, as many workers as CPUs), one route answering
//!    a constant SVG of the real badge's size, `image/svg+xml`;
//! 4. warm-up: badge, page and API of 2,000 different images, once each;
//! 5. `wrk -t2 -c64 -d5s --latency` rounds (baseline, badge, page, API) x 2, best of each,
//!    each with the CPU time per request of the server under test and of wrk (from
//!    `/proc/<pid>/stat`), which says where a gap comes from when the machine is shared;
//! 6. `VmRSS` of the web process after all that.
//!
//! The web process logs at its default level (`warn`: no per-request lines). Set
//! `BENCH_WEB_LOG=info` to run it with the request log on (`MICROBADGER_LOG=info`, one line
//! per request to a file) and measure what that costs.
//!
//! Targets (issue): badge >= 80% of the baseline's requests/s and p99 <= 1.5x the baseline's;
//! image page and API >= 40% of the baseline's requests/s; RSS < 100 MB. Exits 1 if any fails.
//!
//! Run with `scripts/bench-web` (release build). Not a timed test.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use microbadger::inspect::{ImageInput, ImageVersion, Platform, PlatformEntry, inspect_image};
use microbadger::oci::{ImageConfig, OciImageManifest};
use microbadger::reference::ImageRef;
use microbadger::registry::Inspection;
use microbadger::store::Store;
use serde_json::{Value, json};

const IMAGES: usize = 10_000;
const WARM_IMAGES: usize = 2_000;
const CONNECTIONS: usize = 64;
const ROUNDS: usize = 2;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const RSS_TARGET_MB: f64 = 100.0;

fn digest(n: u64) -> String {
    format!("sha256:{n:064x}")
}

fn name(n: usize) -> String {
    format!("team/app{n:04}")
}

/// The web process; killed and reaped on drop.
struct WebProcess(Child);

impl Drop for WebProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("web benchmark: skipped (run it with scripts/bench-web)");
        return;
    }
    let dir = support::scratch_dir("bench-web-");
    let db = dir.path().join("mb.db");
    let url = format!("sqlite://{}", db.display());

    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    rt.block_on(seed(&url));
    println!(
        "seeded {IMAGES} repositories (one tag, one inspected version each) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(rt);

    // The real service, as its own process.
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().join("../microbadger");
    let port = support::free_port();
    let log = std::fs::File::create(dir.path().join("web.log")).unwrap();
    let child = Command::new(&bin)
        .arg("web")
        .env("MICROBADGER_DATABASE_URL", &url)
        .env("MICROBADGER_LISTEN", format!("127.0.0.1:{port}"))
        .env("MICROBADGER_ALLOW_REGISTRIES", "docker.io")
        .env_remove("MICROBADGER_REDIS_URL")
        .env(
            "MICROBADGER_LOG",
            std::env::var("BENCH_WEB_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}): cargo build --release --bin microbadger",
                bin.display()
            )
        });
    let web = WebProcess(child);
    let pid = web.0.id();
    let web_url = format!("http://127.0.0.1:{port}");
    let agent = support::harness_agent();
    support::wait_for("the web service", Duration::from_secs(30), || {
        agent
            .get(&format!("{web_url}/healthz"))
            .call()
            .ok()
            .filter(|r| r.status() == 200)
    });
    println!(
        "web process {pid} on {web_url} ({}), RSS at start {:.1} MB",
        bin.display(),
        rss_mb(pid)
    );

    // Warm-up: badge, page and API of WARM_IMAGES different images, once each.
    let badge_path = format!("/badges/image/{}:1.0.svg", name(1));
    let page_path = format!("/images/{}:1.0", name(1));
    let api_path = format!("/v1/images/{}:1.0", name(1));
    let started = Instant::now();
    let mut badge_body = Vec::new();
    for n in 0..WARM_IMAGES {
        for path in [
            format!("/badges/image/{}:1.0.svg", name(n)),
            format!("/images/{}:1.0", name(n)),
            format!("/v1/images/{}:1.0", name(n)),
        ] {
            let mut resp = agent.get(&format!("{web_url}{path}")).call().unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            let body = resp.body_mut().read_to_vec().unwrap();
            if n == 1 && path == badge_path {
                badge_body = body;
            }
        }
    }
    for path in [&badge_path, &page_path, &api_path] {
        let mut resp = agent.get(&format!("{web_url}{path}")).call().unwrap();
        let body = resp.body_mut().read_to_string().unwrap();
        assert_eq!(resp.status(), 200, "{path}: {body}");
        assert!(
            !body.contains("nspecting"),
            "{path} is not inspected: {body}"
        );
    }
    println!(
        "warm-up: {} requests ({WARM_IMAGES} images x badge, page, API) in {:.1} s; badge {} bytes; RSS {:.1} MB",
        WARM_IMAGES * 3,
        started.elapsed().as_secs_f64(),
        badge_body.len(),
        rss_mb(pid)
    );

    // The baseline: a constant SVG of the badge's size, on a 2-worker runtime of its own.
    let base_port = start_baseline(badge_body.clone());
    let base_url = format!("http://127.0.0.1:{base_port}");
    support::wait_for("the baseline", Duration::from_secs(10), || {
        agent.get(&format!("{base_url}/badge.svg")).call().ok()
    });

    let targets = [
        ("baseline", format!("{base_url}/badge.svg")),
        ("badge", format!("{web_url}{badge_path}")),
        ("image page", format!("{web_url}{page_path}")),
        ("API", format!("{web_url}{api_path}")),
    ];
    let mut best: Vec<(f64, f64)> = vec![(0.0, f64::INFINITY); targets.len()];
    let tick = clock_tick_seconds();
    let me = std::process::id();
    for round in 1..=ROUNDS {
        for (i, (label, url)) in targets.iter().enumerate() {
            // CPU time of the server under test (the baseline runs in this process, whose
            // main thread only waits for wrk) and of wrk (a waited-for child of this process).
            let server = if i == 0 { me } else { pid };
            let (server0, _) = cpu_ticks(server);
            let (_, wrk0) = cpu_ticks(me);
            let (rps, p99, requests) = wrk(url);
            let (server1, _) = cpu_ticks(server);
            let (_, wrk1) = cpu_ticks(me);
            let per_request = |ticks: u64| ticks as f64 * tick * 1e6 / requests.max(1) as f64;
            println!(
                "round {round}: {label:<10} {rps:>9.0} req/s  p99 {p99:>7.2} ms  CPU per request: server {:>5.1} us, wrk {:>5.1} us",
                per_request(server1 - server0),
                per_request(wrk1 - wrk0),
            );
            // Best of each: the round with the most requests/s (and its own p99).
            if rps > best[i].0 {
                best[i] = (rps, p99);
            }
        }
    }
    let rss = rss_mb(pid);

    let (base_rps, base_p99) = best[0];
    let mut ok = true;
    println!();
    println!(
        "{:<10} {:>9} {:>9} {:>8} {:>8}  {:<30} result",
        "endpoint", "req/s", "p99 ms", "% base", "p99 x", "target"
    );
    println!(
        "{:<10} {:>9.0} {:>9.2} {:>7.0}% {:>7.2}x  {:<30} -",
        "baseline", base_rps, base_p99, 100.0, 1.0, "-"
    );
    for (i, (label, _)) in targets.iter().enumerate().skip(1) {
        let (rps, p99) = best[i];
        let ratio = rps / base_rps;
        let p99_ratio = p99 / base_p99;
        let (target, pass) = if i == 1 {
            (
                ">= 80% req/s, p99 <= 1.5x".to_string(),
                ratio >= 0.8 && p99_ratio <= 1.5,
            )
        } else {
            (">= 40% req/s".to_string(), ratio >= 0.4)
        };
        ok &= pass;
        println!(
            "{label:<10} {rps:>9.0} {p99:>9.2} {:>7.0}% {p99_ratio:>7.2}x  {target:<30} {}",
            ratio * 100.0,
            verdict(pass)
        );
    }
    let rss_ok = rss < RSS_TARGET_MB;
    ok &= rss_ok;
    println!(
        "RSS of the web process after warm-up and wrk: {rss:.1} MB (target < {RSS_TARGET_MB:.0} MB, {IMAGES} images in the store): {}",
        verdict(rss_ok)
    );
    drop(web);
    if !ok {
        std::process::exit(1);
    }
}

fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "FAIL" }
}

/// Seed the store: IMAGES repositories, each with tag `1.0` at its own digest.
async fn seed(url: &str) {
    let store = Store::connect(url).await.unwrap();
    let version = sample_version();
    let now = Utc::now();
    let mut done = 0usize;
    // SQLite takes one writer at a time; a few in flight keep it busy without contention.
    use futures::StreamExt;
    futures::stream::iter(0..IMAGES)
        .map(|n| {
            let store = store.clone();
            let mut image = version.clone();
            async move {
                let top = digest(0x1_0000_0000 + n as u64);
                image.digest = top.clone();
                let repo = store
                    .add_repository("docker.io", &name(n), now)
                    .await
                    .unwrap();
                let inspection = Inspection {
                    reference: ImageRef::parse(&format!("{}:1.0", name(n))).unwrap(),
                    digest: top.clone(),
                    media_type: OCI_MANIFEST.to_string(),
                    platforms: vec![PlatformEntry {
                        platform: Platform::new("linux", "amd64", None),
                        digest: top,
                        size: 1234,
                        media_type: OCI_MANIFEST.to_string(),
                    }],
                    images: vec![image],
                };
                store
                    .save_tag(repo.id, "1.0", &inspection, now)
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(4)
        .for_each(|()| {
            done += 1;
            if done.is_multiple_of(2000) {
                println!("  seeded {done}");
            }
            std::future::ready(())
        })
        .await;
}

/// One realistic inspected image: 10 labels, 5 layers, run through the real engine.
fn sample_version() -> ImageVersion {
    let layers: [(u64, &str); 5] = [
        (29_000_000, "/bin/sh -c #(nop) ADD file:5d6f1c3e in / "),
        (
            12_500_000,
            "RUN apt-get update && apt-get install -y ca-certificates curl",
        ),
        (
            4_200_000,
            "COPY --from=build /out/app /usr/local/bin/app # buildkit",
        ),
        (1_800, "COPY config.toml /etc/app/config.toml # buildkit"),
        (96, "RUN useradd --system app # buildkit"),
    ];
    let labels: BTreeMap<&str, &str> = [
        ("org.opencontainers.image.title", "app"),
        (
            "org.opencontainers.image.description",
            "A small web application",
        ),
        ("org.opencontainers.image.created", "2024-03-01T10:00:00Z"),
        (
            "org.opencontainers.image.source",
            "https://github.com/team/app",
        ),
        ("org.opencontainers.image.revision", "0123abcd4567ef89"),
        ("org.opencontainers.image.version", "1.0"),
        ("org.opencontainers.image.vendor", "Team"),
        ("org.opencontainers.image.url", "https://team.example/app"),
        ("org.opencontainers.image.licenses", "Apache-2.0"),
        (
            "org.opencontainers.image.documentation",
            "https://team.example/app/docs",
        ),
    ]
    .into_iter()
    .collect();
    let manifest: OciImageManifest = serde_json::from_value(json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 1500,
                   "digest": digest(999)},
        "layers": layers.iter().enumerate().map(|(i, (size, _))| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "size": size,
            "digest": digest(1000 + i as u64),
        })).collect::<Vec<Value>>(),
    }))
    .unwrap();
    let config: ImageConfig = serde_json::from_value(json!({
        "architecture": "amd64", "os": "linux",
        "created": "2024-03-01T10:00:00Z",
        "author": "Team Builders",
        "config": {"Labels": labels, "Cmd": ["app", "serve"], "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
                   "ExposedPorts": {"8080/tcp": {}}, "User": "app", "WorkingDir": "/srv"},
        "rootfs": {"type": "layers", "diff_ids": (0..5).map(|i| digest(2000 + i)).collect::<Vec<_>>()},
        "history": layers.iter().map(|(_, cmd)| json!({"created": "2024-03-01T10:00:00Z", "created_by": cmd})).collect::<Vec<Value>>(),
    }))
    .unwrap();
    inspect_image(&ImageInput {
        manifest_digest: &digest(500),
        media_type: OCI_MANIFEST,
        manifest: &manifest,
        config: &config,
        index_annotations: None,
    })
}

/// The baseline server on a thread of its own: one route, a constant SVG.
fn start_baseline(svg: Vec<u8>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = axum::body::Bytes::from(svg);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().route(
                "/badge.svg",
                axum::routing::get(move || {
                    let body = body.clone();
                    async move { ([(axum::http::header::CONTENT_TYPE, "image/svg+xml")], body) }
                }),
            );
            axum::serve(listener, app).await.unwrap();
        });
    });
    port
}

/// (own utime + stime, waited-for children's utime + stime) of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<u64> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // stat(5): utime, stime, cutime, cstime are fields 14-17, i.e. 11-14 after the name.
    (fields[11] + fields[12], fields[13] + fields[14])
}

/// Seconds per clock tick of `/proc/<pid>/stat` (`getconf CLK_TCK`, 100 on Linux).
fn clock_tick_seconds() -> f64 {
    let hz = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    1.0 / hz
}

/// `wrk -t2 -c64 -d5s --latency`: (requests/s, p99 in ms, requests completed).
fn wrk(url: &str) -> (f64, f64, u64) {
    let out = Command::new("wrk")
        .args(["-t2", &format!("-c{CONNECTIONS}"), "-d5s", "--latency", url])
        .output()
        .expect("wrk (scripts/setup installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        println!("wrk reported errors for {url}:\n{text}");
    }
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"));
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .and_then(|v| duration_ms(v.trim()))
        .unwrap_or_else(|| panic!("no 99% latency in wrk output:\n{text}"));
    // "  123456 requests in 5.00s, 160.12MB read"
    let requests = text
        .lines()
        .find_map(|l| l.split_once(" requests in ").map(|(n, _)| n.trim()))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk output:\n{text}"));
    (rps, p99, requests)
}

/// wrk's durations: `850.00us`, `2.34ms`, `1.02s`, `1.00m`.
fn duration_ms(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = v.split_at(split);
    let num: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => num / 1000.0,
        "ms" => num,
        "s" => num * 1000.0,
        "m" => num * 60_000.0,
        _ => return None,
    })
}

/// `VmRSS` of a process, in MB.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kb / 1024.0
}
