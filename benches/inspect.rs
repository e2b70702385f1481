//! Inspection benchmark (`scripts/bench-inspect`; see `docs/BENCHMARKS.md`).
//!
//! Against the real CNCF distribution registry (started by the test harness on a free port,
//! no auth) holding 500 distinct single-platform fixture tags, in one run:
//!
//! - (a) registry requests per first inspection and per unchanged re-check, counted from the
//!   registry's access log (one log mark per operation);
//! - (b) tags inspected per second by microbadger (one client, `buffer_unordered` at a fixed
//!   concurrency), by a sequential `skopeo inspect --config` loop, and by `wrk` sending the same
//!   manifest and config-blob GETs straight to the registry at the same concurrency (the
//!   registry-bound figure). The three take turns over several rounds so that all see the
//!   same background load, and each side's best round is compared. CPU time of the client
//!   (this process, or wrk/skopeo) and of the registry is read from `/proc` for each run.
//!
//! Prints every figure, the ratios, PASS/FAIL per target, and exits non-zero when a target is
//! missed. Runs only under `cargo bench` (which passes `--bench`); under `cargo test` it says
//! so and exits, so `scripts/test` never runs it.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::Instant;

use futures::StreamExt;
use microbadger::config::RegistryConfig;
use microbadger::reference::ImageRef;
use microbadger::registry::{CheckResult, Credentials, PlatformChoice, RegistryClient};
use serde_json::{Value, json};
use support::{AccessLogEntry, Auth, Fixture, Format, TestRegistry, media};

/// Repository holding the fixture tags.
const REPO: &str = "bench/app";
/// Distinct tags (and images) on the registry.
const TAGS: usize = 500;
/// Tags inspected by the sequential skopeo loop per round (each a process start, so a subset;
/// each round takes the next tags).
const SKOPEO_TAGS: usize = 50;
/// In-flight inspections for our client, and connections for wrk.
const CONCURRENCY: usize = 32;
/// wrk threads.
const WRK_THREADS: usize = 2;
/// Length of each timed throughput run (ours and wrk alike).
const RUN_SECS: u64 = 5;
/// Alternating ours/wrk rounds; each side's best round counts.
const ROUNDS: usize = 3;
const _: () = assert!(ROUNDS * SKOPEO_TAGS <= TAGS);

/// Targets (from the issue).
const MAX_REQUESTS_FIRST_INSPECTION: usize = 2;
const REQUESTS_UNCHANGED_RECHECK: usize = 1;
const MIN_RATIO_VS_SKOPEO: f64 = 10.0;
const MIN_FRACTION_OF_REGISTRY: f64 = 0.60;

/// One fixture tag as pushed.
struct Tag {
    tag: String,
    manifest_digest: String,
    config_digest: String,
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("inspect benchmark: skipped (run it with scripts/bench-inspect)");
        return;
    }
    let ok = run();
    // `run` has returned, so the registry is stopped before we exit.
    if !ok {
        std::process::exit(1);
    }
}

/// The whole benchmark; true when every target is met.
fn run() -> bool {
    let started = Instant::now();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("== inspect benchmark ==");
    println!(
        "machine: {cores} cores; concurrency {CONCURRENCY}; wrk {WRK_THREADS} threads; \
         {ROUNDS} rounds of {RUN_SECS} s each for ours and wrk"
    );

    let reg = TestRegistry::start(Auth::None);
    let t = Instant::now();
    let tags = push_fixtures(&reg);
    println!(
        "fixtures: {} distinct single-platform OCI images as {}/{REPO}:t000..t{:03} \
         (pushed in {:.1} s)",
        tags.len(),
        reg.host(),
        tags.len() - 1,
        t.elapsed().as_secs_f64()
    );
    let refs: Vec<ImageRef> = tags
        .iter()
        .map(|t| ImageRef::parse(&reg.reference(&format!("{REPO}:{}", t.tag))).expect("reference"))
        .collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    // (a) Requests per operation, from the registry's access log.
    println!();
    println!("-- (a) registry requests per operation (access log) --");
    let (first, recheck, skopeo_per_tag) = count_requests(&reg, &rt, &tags, &refs);
    let first_ok = first.max <= MAX_REQUESTS_FIRST_INSPECTION;
    let recheck_ok =
        recheck.min == REQUESTS_UNCHANGED_RECHECK && recheck.max == REQUESTS_UNCHANGED_RECHECK;
    println!(
        "first inspection: {} (target <= {MAX_REQUESTS_FIRST_INSPECTION}): {}",
        first.summary(),
        pass(first_ok)
    );
    println!(
        "unchanged re-check: {} (target exactly {REQUESTS_UNCHANGED_RECHECK}): {}",
        recheck.summary(),
        pass(recheck_ok)
    );
    println!("skopeo inspect --config, for comparison: {skopeo_per_tag:.2} requests per tag");

    // (b) Throughput: ours, the registry bound and skopeo in turn, each round, so that all
    // three see the same background load; each side's best round counts.
    println!();
    println!("-- (b) tags inspected per second --");
    let meter = Meter::new(&reg);
    let lua = write_wrk_script(&tags);
    let (mut ours_best, mut wrk_best, mut skopeo_best) = (0.0_f64, 0.0_f64, 0.0_f64);
    for round in 0..ROUNDS {
        let (client, passes) = rt.block_on(warm_client(&reg, &refs));
        let log_start = reg.registry_log().len();
        let count = passes * refs.len();
        let ours = meter.measure(count, 2, || {
            rt.block_on(inspect_many(&client, &refs, count))
        });
        let stats = client.stats();
        assert_eq!(stats.retries, 0, "no retries expected: {stats:?}");
        assert_eq!(
            stats.registry_requests(),
            2 * (count + refs.len()) as u64,
            "two requests per inspection"
        );
        let conns = connections_used(&reg.registry_log()[log_start..]);
        let wrk = wrk_run(&reg, &lua.path().join("bench.lua"), &meter);
        let skopeo_tags = &tags[round * SKOPEO_TAGS..(round + 1) * SKOPEO_TAGS];
        let skopeo = meter.measure(SKOPEO_TAGS, 3, || skopeo_loop(&reg, skopeo_tags));
        println!(
            "round {}: microbadger {} [{count} inspections, {conns} connections]",
            round + 1,
            ours.describe("ours")
        );
        println!("         registry via wrk {}", wrk.describe("wrk"));
        println!(
            "         skopeo loop {} [{SKOPEO_TAGS} tags t{:03}..t{:03}]",
            skopeo.describe("skopeo"),
            round * SKOPEO_TAGS,
            (round + 1) * SKOPEO_TAGS - 1
        );
        ours_best = ours_best.max(ours.tags_per_sec());
        wrk_best = wrk_best.max(wrk.tags_per_sec());
        skopeo_best = skopeo_best.max(skopeo.tags_per_sec());
    }

    let vs_skopeo = ours_best / skopeo_best;
    let vs_registry = ours_best / wrk_best;
    let skopeo_ok = vs_skopeo >= MIN_RATIO_VS_SKOPEO;
    let registry_ok = vs_registry >= MIN_FRACTION_OF_REGISTRY;

    println!();
    println!("== results ==");
    println!(
        "requests per first inspection:   mean {:.2}, max {} (target <= {MAX_REQUESTS_FIRST_INSPECTION})  {}",
        first.mean(),
        first.max,
        pass(first_ok)
    );
    println!(
        "requests per unchanged re-check: min {}, max {} (target = {REQUESTS_UNCHANGED_RECHECK})  {}",
        recheck.min,
        recheck.max,
        pass(recheck_ok)
    );
    println!(
        "microbadger, concurrency {CONCURRENCY}:      {ours_best:.1} tags/s (best of {ROUNDS})"
    );
    println!(
        "skopeo inspect --config loop:    {skopeo_best:.1} tags/s (best of {ROUNDS}, sequential)"
    );
    println!(
        "registry bound, wrk {CONCURRENCY} conns:     {wrk_best:.1} tags/s (best of {ROUNDS})"
    );
    println!(
        "microbadger / skopeo:            {vs_skopeo:.1}x (target >= {MIN_RATIO_VS_SKOPEO:.0}x)  {}",
        pass(skopeo_ok)
    );
    println!(
        "microbadger / registry bound:    {:.0}% (target >= {:.0}%)  {}",
        vs_registry * 100.0,
        MIN_FRACTION_OF_REGISTRY * 100.0,
        pass(registry_ok)
    );
    println!(
        "(ceiling for microbadger / skopeo at this registry: registry bound / skopeo = {:.1}x)",
        wrk_best / skopeo_best
    );
    println!("total time: {:.0} s", started.elapsed().as_secs_f64());
    let all = first_ok && recheck_ok && skopeo_ok && registry_ok;
    println!("overall: {}", pass(all));
    all
}

fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

/// A client for this registry only (plain HTTP), with no credentials.
fn client_for(reg: &TestRegistry) -> RegistryClient {
    let cfg = RegistryConfig {
        allow: vec![],
        insecure: vec![reg.host()],
        docker_config: None,
        ..RegistryConfig::default()
    };
    RegistryClient::with_credentials(cfg, Credentials::default()).expect("client")
}

/// Pushes one image with skopeo, then makes 500 distinct images from it: per tag a config
/// with its own labels (uploaded through the blob upload API) and a manifest referencing it
/// and the same layer.
fn push_fixtures(reg: &TestRegistry) -> Vec<Tag> {
    let base = Fixture::new(REPO, "base")
        .label("org.opencontainers.image.title", "bench app")
        .label(
            "org.opencontainers.image.source",
            "https://example.com/bench/app",
        )
        .label("org.opencontainers.image.licenses", "Apache-2.0")
        .label("org.opencontainers.image.vendor", "microbadger")
        .label("org.label-schema.schema-version", "1.0")
        .layer_with_file("app/hello.txt", "hello\n", "COPY hello.txt /app/")
        .empty_step("CMD [\"/app/hello\"]")
        .cmd(&["/app/hello"])
        .push(reg, Format::Oci);
    let manifest = base.manifest_json();
    let config_resp = reg.admin_request(
        "GET",
        &format!("/v2/{REPO}/blobs/{}", base.config_digest),
        &[],
        &[],
    );
    assert_eq!(config_resp.status, 200, "GET base config");
    let config: Value = serde_json::from_slice(&config_resp.body).expect("config JSON");

    let indices: Vec<usize> = (0..TAGS).collect();
    let mut tags: Vec<Tag> = Vec::with_capacity(TAGS);
    // A few uploads in flight: the registry is I/O-bound, the machine has 2 cores.
    std::thread::scope(|scope| {
        let handles: Vec<_> = indices
            .chunks(TAGS.div_ceil(4))
            .map(|chunk| {
                let (manifest, config, media_type) = (&manifest, &config, &base.media_type);
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|&i| push_variant(reg, i, manifest, config, media_type))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            tags.extend(h.join().expect("push thread"));
        }
    });
    tags
}

fn push_variant(
    reg: &TestRegistry,
    i: usize,
    manifest: &Value,
    config: &Value,
    media_type: &str,
) -> Tag {
    let mut config = config.clone();
    let labels = &mut config["config"]["Labels"];
    labels["org.opencontainers.image.version"] = json!(format!("1.0.{i}"));
    labels["org.opencontainers.image.revision"] = json!(format!("{i:040x}"));
    let config_bytes = serde_json::to_vec(&config).expect("config JSON");
    let config_digest = upload_blob(reg, &config_bytes);
    let mut manifest = manifest.clone();
    manifest["config"]["digest"] = json!(config_digest);
    manifest["config"]["size"] = json!(config_bytes.len());
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest JSON");
    let tag = format!("t{i:03}");
    let manifest_digest = reg.put_manifest(REPO, &tag, media_type, &manifest_bytes);
    Tag {
        tag,
        manifest_digest,
        config_digest,
    }
}

/// Monolithic blob upload: `POST .../blobs/uploads/`, then `PUT <location>&digest=`.
fn upload_blob(reg: &TestRegistry, bytes: &[u8]) -> String {
    let digest = support::sha256_digest(bytes);
    let start = reg.admin_request("POST", &format!("/v2/{REPO}/blobs/uploads/"), &[], &[]);
    assert_eq!(start.status, 202, "start blob upload");
    let location = start.header("Location").expect("upload Location");
    let path = location.strip_prefix(&reg.url()).unwrap_or(location);
    let sep = if path.contains('?') { '&' } else { '?' };
    let done = reg.admin_request(
        "PUT",
        &format!("{path}{sep}digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        bytes,
    );
    assert_eq!(
        done.status,
        201,
        "finish blob upload: {}",
        String::from_utf8_lossy(&done.body)
    );
    digest
}

/// Min, max and total of a per-operation count.
#[derive(Debug, Clone, Copy)]
struct Counts {
    n: usize,
    min: usize,
    max: usize,
    total: usize,
}

impl Counts {
    fn new() -> Self {
        Counts {
            n: 0,
            min: usize::MAX,
            max: 0,
            total: 0,
        }
    }

    fn add(&mut self, v: usize) {
        self.n += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.total += v;
    }

    fn mean(&self) -> f64 {
        self.total as f64 / self.n.max(1) as f64
    }

    fn summary(&self) -> String {
        format!(
            "min {} / max {} / mean {:.2} requests over {} tags",
            self.min,
            self.max,
            self.mean(),
            self.n
        )
    }
}

/// Requests from anyone but the harness.
fn client_requests(entries: Vec<AccessLogEntry>) -> Vec<AccessLogEntry> {
    entries.into_iter().filter(|e| !e.is_harness()).collect()
}

/// (a): first inspection and unchanged re-check of every tag, one at a time, each counted
/// from the access log; then skopeo's requests per `inspect --config` for comparison.
fn count_requests(
    reg: &TestRegistry,
    rt: &tokio::runtime::Runtime,
    tags: &[Tag],
    refs: &[ImageRef],
) -> (Counts, Counts, f64) {
    let client = client_for(reg);
    let mut first = Counts::new();
    let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
    for (tag, r) in tags.iter().zip(refs) {
        let mark = reg.mark();
        let before = client.stats().registry_requests();
        let inspection = rt
            .block_on(client.inspect(r, &PlatformChoice::Default))
            .unwrap_or_else(|e| panic!("inspect {r}: {e}"));
        let entries = client_requests(reg.access_log_since(mark));
        assert_eq!(inspection.digest, tag.manifest_digest, "digest of {r}");
        assert_eq!(inspection.images.len(), 1, "one image for {r}");
        let counted = client.stats().registry_requests() - before;
        assert_eq!(
            counted as usize,
            entries.len(),
            "client counters and access log disagree for {r}: {entries:?}"
        );
        for e in &entries {
            assert_eq!(e.status, 200, "{e:?}");
            let kind = if e.is_manifest() {
                "manifest"
            } else if e.path().ends_with(&tag.config_digest) {
                "config blob"
            } else {
                "other"
            };
            *kinds.entry(format!("{} {kind}", e.method)).or_default() += 1;
        }
        first.add(entries.len());
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!("first inspections sent: {}", kinds.join(", "));

    let mut recheck = Counts::new();
    let mut heads = 0;
    for (tag, r) in tags.iter().zip(refs) {
        let mark = reg.mark();
        let result = rt
            .block_on(client.check(r, Some(&tag.manifest_digest)))
            .unwrap_or_else(|e| panic!("check {r}: {e}"));
        let entries = client_requests(reg.access_log_since(mark));
        assert!(
            matches!(result, CheckResult::Unchanged { .. }),
            "{r} should be unchanged: {result:?}"
        );
        heads += entries
            .iter()
            .filter(|e| e.method == "HEAD" && e.is_manifest())
            .count();
        recheck.add(entries.len());
    }
    println!(
        "unchanged re-checks sent: {heads} HEAD manifest of {} requests",
        recheck.total
    );
    let stats = client.stats();
    assert_eq!(stats.retries, 0, "no retries expected: {stats:?}");

    let mark = reg.mark();
    let n = 10;
    for t in &tags[..n] {
        support::skopeo_inspect_config(&reg.reference(&format!("{REPO}:{}", t.tag)), None);
    }
    let skopeo = client_requests(reg.access_log_since(mark)).len() as f64 / n as f64;
    (first, recheck, skopeo)
}

/// CPU time of this process, its waited-for children (wrk, skopeo) and the registry, from
/// `/proc`, so each run also shows where the CPU went.
struct Meter {
    registry_pid: Option<String>,
    ticks_per_sec: f64,
}

/// One timed run.
struct Sample {
    tags: usize,
    secs: f64,
    /// CPU seconds of the load generator (this process for ours, the child for wrk/skopeo).
    client_cpu: f64,
    registry_cpu: f64,
    requests_per_tag: usize,
}

impl Sample {
    fn tags_per_sec(&self) -> f64 {
        self.tags as f64 / self.secs
    }

    fn describe(&self, who: &str) -> String {
        let per_tag = |cpu: f64| cpu * 1000.0 / self.tags.max(1) as f64;
        format!(
            "{:.1} tags/s ({} tags in {:.2} s; CPU per tag: {who} {:.2} ms, registry {:.2} ms \
             for {} requests)",
            self.tags_per_sec(),
            self.tags,
            self.secs,
            per_tag(self.client_cpu),
            per_tag(self.registry_cpu),
            self.requests_per_tag
        )
    }
}

impl Meter {
    fn new(reg: &TestRegistry) -> Self {
        let ticks_per_sec = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0);
        Meter {
            registry_pid: registry_pid(reg),
            ticks_per_sec,
        }
    }

    /// (self, children, registry) CPU seconds so far.
    fn now(&self) -> (f64, f64, f64) {
        let own = proc_ticks("self").unwrap_or_default();
        let reg = self
            .registry_pid
            .as_deref()
            .and_then(proc_ticks)
            .unwrap_or_default();
        let s = |t: u64| t as f64 / self.ticks_per_sec;
        (s(own[0] + own[1]), s(own[2] + own[3]), s(reg[0] + reg[1]))
    }

    /// Times `f`, which handles `tags` tags (`requests_per_tag` requests each) and either runs
    /// in this process or in one child process at a time.
    fn measure(&self, tags: usize, requests_per_tag: usize, f: impl FnOnce()) -> Sample {
        let (own0, kids0, reg0) = self.now();
        let t = Instant::now();
        f();
        let secs = t.elapsed().as_secs_f64();
        let (own1, kids1, reg1) = self.now();
        Sample {
            tags,
            secs,
            client_cpu: (own1 - own0) + (kids1 - kids0),
            registry_cpu: reg1 - reg0,
            requests_per_tag,
        }
    }
}

/// utime, stime, cutime, cstime (clock ticks) of `/proc/<pid>/stat`.
fn proc_ticks(pid: &str) -> Option<[u64; 4]> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is field 3.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let f = |n: usize| fields.get(n - 3).and_then(|v| v.parse().ok());
    Some([f(14)?, f(15)?, f(16)?, f(17)?])
}

/// The registry's pid: the process whose command line names its config file.
fn registry_pid(reg: &TestRegistry) -> Option<String> {
    let config = reg.storage_dir().parent()?.join("config.yml");
    let config = config.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid = e.file_name().to_string_lossy().into_owned();
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        (pid.bytes().all(|b| b.is_ascii_digit())
            && cmdline.contains("docker-registry")
            && cmdline.split('\0').any(|a| a == config))
        .then_some(pid)
    })
}

/// Distinct client connections (remote address and port) of microbadger's requests in a
/// slice of the registry's application log: few means HTTP keep-alive works.
fn connections_used(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("http.request.useragent=microbadger/"))
        .filter_map(|l| {
            let rest = l.split_once("http.request.remoteaddr=")?.1;
            Some(rest.split(' ').next()?.trim_matches('"').to_string())
        })
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// Inspects `count` tags (cycling over `refs`) with `CONCURRENCY` in flight.
async fn inspect_many(client: &RegistryClient, refs: &[ImageRef], count: usize) {
    let choice = PlatformChoice::Default;
    let mut results = futures::stream::iter(refs.iter().cycle().take(count))
        .map(|r| client.inspect(r, &choice))
        .buffer_unordered(CONCURRENCY);
    while let Some(result) = results.next().await {
        let inspection = result.unwrap_or_else(|e| panic!("inspect: {e}"));
        assert_eq!(inspection.images.len(), 1);
    }
}

/// A fresh client that has inspected every tag once (warm-up: connections open); returns it
/// with the number of whole passes over the tags that should last about `RUN_SECS`.
async fn warm_client(reg: &TestRegistry, refs: &[ImageRef]) -> (RegistryClient, usize) {
    let client = client_for(reg);
    let t = Instant::now();
    inspect_many(&client, refs, refs.len()).await;
    let rate = refs.len() as f64 / t.elapsed().as_secs_f64();
    let passes = (rate * RUN_SECS as f64 / refs.len() as f64).ceil().max(1.0) as usize;
    (client, passes)
}

/// A wrk script sending, on each connection in turn, the manifest GET (with the manifest
/// `Accept` header) and the config blob GET of each tag: the requests one inspection makes.
fn write_wrk_script(tags: &[Tag]) -> tempfile::TempDir {
    let dir = support::scratch_dir("bench-wrk-");
    let list = |f: &dyn Fn(&Tag) -> String| {
        tags.iter()
            .map(|t| format!("\"{}\"", f(t)))
            .collect::<Vec<_>>()
            .join(",\n  ")
    };
    let manifests = list(&|t| format!("/v2/{REPO}/manifests/{}", t.tag));
    let blobs = list(&|t| format!("/v2/{REPO}/blobs/{}", t.config_digest));
    let script = format!(
        r#"-- Generated by benches/inspect.rs: one inspection = manifest GET + config blob GET.
local manifests = {{
  {manifests}
}}
local blobs = {{
  {blobs}
}}
local n = #manifests
local accept = "{accept}"
local i = 0
local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  -- Threads start at different tags.
  i = 2 * math.floor(id * n / {threads})
end

function request()
  local k = math.floor(i / 2) % n + 1
  local req
  if i % 2 == 0 then
    req = wrk.format("GET", manifests[k], {{ ["Accept"] = accept }})
  else
    req = wrk.format("GET", blobs[k])
  end
  i = i + 1
  return req
end
"#,
        accept = media::ACCEPT_ALL_MANIFESTS,
        threads = WRK_THREADS,
    );
    std::fs::write(dir.path().join("bench.lua"), script).expect("write wrk script");
    dir
}

/// (b), registry bound: wrk with as many connections as our concurrency.
fn wrk_run(reg: &TestRegistry, script: &std::path::Path, meter: &Meter) -> Sample {
    let mut out = None;
    let mut sample = meter.measure(0, 2, || {
        out = Some(support::run_tool(
            Command::new("wrk")
                .arg(format!("-t{WRK_THREADS}"))
                .arg(format!("-c{CONCURRENCY}"))
                .arg(format!("-d{RUN_SECS}s"))
                .arg("-s")
                .arg(script)
                .arg(reg.url()),
        ))
    });
    let out = out.expect("wrk ran");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "wrk saw errors:\n{text}"
    );
    // "  1321 requests in 5.05s, 1.18MB read"
    let (requests, secs) = text
        .lines()
        .find_map(|l| {
            let (n, rest) = l.trim().split_once(" requests in ")?;
            let secs = rest.split_once("s,")?.0;
            Some((n.parse::<usize>().ok()?, secs.parse::<f64>().ok()?))
        })
        .unwrap_or_else(|| panic!("no request count in wrk output:\n{text}"));
    // One tag = one manifest GET + one config blob GET.
    sample.tags = requests / 2;
    sample.secs = secs;
    sample
}

/// (b), baseline: `skopeo inspect --config` over `tags`, one at a time.
fn skopeo_loop(reg: &TestRegistry, tags: &[Tag]) {
    for tag in tags {
        let config =
            support::skopeo_inspect_config(&reg.reference(&format!("{REPO}:{}", tag.tag)), None);
        assert!(config["config"]["Labels"].is_object(), "skopeo config");
    }
}
