//! The Kubernetes orchestrator against a fake API server (`support::kube`, the documented
//! shapes: Deployments, the `scale` subresource, bearer tokens, `Status` errors), and
//! `microbadger scaler` sizing a Deployment from the real queue's backlog.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use microbadger::queue::{JobKind, Priority, Queue, QueueOptions};
use microbadger::scaler::kubernetes::{Kubernetes, KubernetesConfig};
use microbadger::scaler::orchestrator::{Counts, Orchestrator};
use microbadger::store::Store;
use serde_json::json;
use support::kube::FakeKubernetes;

const TOKEN: &str = "s3cret-service-account-token";

fn token_file(dir: &tempfile::TempDir, token: &str) -> PathBuf {
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path
}

fn config(url: String, token_file: PathBuf) -> KubernetesConfig {
    KubernetesConfig {
        url,
        namespace: "mb".into(),
        deployment_prefix: "microbadger-".into(),
        token_file: Some(token_file),
        ca_file: None,
        poll: Duration::from_millis(100),
    }
}

fn services() -> Vec<String> {
    vec!["web".into(), "worker".into()]
}

/// Why connecting failed, as the operator reads it.
async fn connect_error(config: KubernetesConfig, services: &[String]) -> String {
    match Kubernetes::connect(config, services).await {
        Ok(_) => panic!("connected"),
        Err(e) => e.to_string(),
    }
}

async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn scale_patches_the_scale_subresource_and_counts_follow_the_pods() {
    let fake = FakeKubernetes::start(
        "mb",
        TOKEN,
        &[("microbadger-web", 1), ("microbadger-worker", 1)],
    );
    let dir = tempfile::tempdir().unwrap();
    let k = Kubernetes::connect(config(fake.url(), token_file(&dir, TOKEN)), &services())
        .await
        .unwrap();
    assert_eq!(k.name(), "kubernetes");
    let one = Counts {
        ready: 1,
        starting: 0,
        stopping: 0,
    };
    assert_eq!((k.counts("web"), k.counts("worker")), (one, one));

    k.scale("worker", 3).await.unwrap();
    assert_eq!(fake.replicas("microbadger-worker"), Some(3));
    assert_eq!(
        fake.patches(),
        [(
            "microbadger-worker".to_string(),
            "application/merge-patch+json".to_string(),
            json!({"spec": {"replicas": 3}})
        )]
    );
    // Read back at once: the two new pods are starting until their readiness.
    assert_eq!(
        k.counts("worker"),
        Counts {
            ready: 1,
            starting: 2,
            stopping: 0
        }
    );
    eventually("the new pods to be ready", || k.counts("worker").ready == 3).await;

    // The same target again is no request at all.
    k.scale("worker", 3).await.unwrap();
    assert_eq!(fake.patches().len(), 1);

    // Scale down: the removed pods count as stopping until they are gone.
    k.scale("worker", 1).await.unwrap();
    assert_eq!(
        k.counts("worker"),
        Counts {
            ready: 1,
            starting: 0,
            stopping: 2
        }
    );
    eventually("the removed pods to be gone", || k.counts("worker") == one).await;
    assert_eq!(k.counts("web"), one, "web untouched");

    let e = k.scale("nothing", 2).await.unwrap_err().to_string();
    assert!(e.contains("nothing"), "{e}");

    // Shutting the scaler down leaves the deployments as they are.
    k.shutdown().await;
    assert_eq!(fake.replicas("microbadger-worker"), Some(1));
    assert_eq!(fake.patches().len(), 2);
}

#[tokio::test]
async fn wrong_credentials_names_or_addresses_fail_at_connect_with_the_reason() {
    let fake = FakeKubernetes::start("mb", TOKEN, &[("microbadger-web", 1)]);
    let dir = tempfile::tempdir().unwrap();

    // A wrong token: the API server's refusal, without any token in the message.
    let e = connect_error(
        config(fake.url(), token_file(&dir, "wrong-token")),
        &["web".into()],
    )
    .await;
    assert!(e.contains("401") && e.contains("Unauthorized"), "{e}");
    assert!(!e.contains("wrong-token") && !e.contains(TOKEN), "{e}");

    // A service without its deployment: named, with the namespace.
    let e = connect_error(config(fake.url(), token_file(&dir, TOKEN)), &services()).await;
    assert_eq!(
        e,
        "deployment \"microbadger-worker\" not found in namespace \"mb\""
    );

    // Another namespace, same names: not found either.
    let e = connect_error(
        KubernetesConfig {
            namespace: "other".into(),
            ..config(fake.url(), token_file(&dir, TOKEN))
        },
        &["web".into()],
    )
    .await;
    assert!(e.contains("not found in namespace \"other\""), "{e}");

    // Nothing listening.
    let port = support::free_port();
    let e = connect_error(
        config(format!("http://127.0.0.1:{port}"), token_file(&dir, TOKEN)),
        &["web".into()],
    )
    .await;
    assert!(e.contains("could not be reached"), "{e}");

    // A token file that does not exist, and a CA file that is not a certificate.
    let e = connect_error(
        config(fake.url(), dir.path().join("missing-token")),
        &["web".into()],
    )
    .await;
    assert!(e.contains("missing-token"), "{e}");
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, "not a certificate").unwrap();
    let e = connect_error(
        KubernetesConfig {
            ca_file: Some(ca),
            ..config(fake.url(), token_file(&dir, TOKEN))
        },
        &["web".into()],
    )
    .await;
    assert!(e.contains("ca.crt"), "{e}");
}

/// Over TLS (the API server's real transport): the configured CA verifies the server's
/// certificate; without it the connection is refused.
#[tokio::test]
async fn over_tls_the_ca_file_verifies_the_api_server() {
    let fake = FakeKubernetes::start("mb", TOKEN, &[("microbadger-worker", 1)]);
    let tls = support::kube::TlsFront::start(&fake);
    let dir = tempfile::tempdir().unwrap();
    let workers = ["worker".to_string()];
    let k = Kubernetes::connect(
        KubernetesConfig {
            ca_file: Some(tls.ca_file.clone()),
            ..config(tls.url(), token_file(&dir, TOKEN))
        },
        &workers,
    )
    .await
    .unwrap();
    assert_eq!(k.counts("worker").ready, 1);
    k.scale("worker", 2).await.unwrap();
    assert_eq!(fake.replicas("microbadger-worker"), Some(2));

    let e = connect_error(config(tls.url(), token_file(&dir, TOKEN)), &workers).await;
    assert!(e.contains("could not be reached"), "{e}");
    assert!(e.to_lowercase().contains("certificate"), "{e}");
}

/// The store at `db` with `jobs` refresh jobs queued in its embedded queue.
async fn store_with_backlog(db: &str, jobs: usize) -> Store {
    let store = Store::connect(db).await.unwrap();
    let queue = Queue::embedded(
        store.sqlite_pool().unwrap().clone(),
        QueueOptions::default(),
    )
    .await
    .unwrap();
    for n in 0..jobs {
        let job = JobKind::Refresh {
            image: format!("docker.io/team/app{n}"),
            tag: None,
        };
        queue.enqueue(&job, Priority::Normal).await.unwrap();
    }
    store
}

/// Wait (30 s at most) until `name` is scaled to at least `n`; kill `child` and fail if not.
fn wait_for_replicas(fake: &FakeKubernetes, child: &mut Child, name: &str, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.replicas(name) < Some(n) {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{name} was not scaled to {n}: {:?}", fake.patches());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every size patched onto `name`, in order.
fn patched_sizes(fake: &FakeKubernetes, name: &str) -> Vec<u64> {
    fake.patches()
        .iter()
        .filter(|(deployment, _, _)| deployment == name)
        .filter_map(|(_, _, body)| body.pointer("/spec/replicas").and_then(|n| n.as_u64()))
        .collect()
}

fn scaler(db: &str, fake: &FakeKubernetes, token: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_microbadger"));
    cmd.arg("scaler")
        .env("MICROBADGER_DATABASE_URL", db)
        .env_remove("MICROBADGER_REDIS_URL")
        .env("MICROBADGER_SCALER_TICK_MS", "100")
        .env("MICROBADGER_KUBERNETES_URL", fake.url())
        .env("MICROBADGER_KUBERNETES_NAMESPACE", "mb")
        .env("MICROBADGER_KUBERNETES_TOKEN_FILE", token)
        .env("MICROBADGER_KUBERNETES_CA_FILE", "")
        .stdout(Stdio::null());
    cmd
}

/// `microbadger scaler` with `MICROBADGER_KUBERNETES_URL`: a backlog in the real queue makes it
/// patch the worker Deployment up; a missing Deployment stops it at once with the reason.
#[test]
fn scaler_command_sizes_the_worker_deployment_from_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("mb.db").display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(store_with_backlog(&db, 200));
    let token = token_file(&dir, TOKEN);

    let missing = FakeKubernetes::start("mb", TOKEN, &[("microbadger-web", 1)]);
    let out = scaler(&db, &missing, &token)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("deployment \"microbadger-worker\" not found in namespace \"mb\""),
        "{err}"
    );

    let fake = FakeKubernetes::start(
        "mb",
        TOKEN,
        &[("microbadger-web", 1), ("microbadger-worker", 1)],
    );
    let mut child = scaler(&db, &fake, &token)
        .env("MICROBADGER_CAPACITY", "4")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_replicas(&fake, &mut child, "microbadger-worker", 2);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // Within capacity 4, with web's minimum of 1 kept.
    assert!(fake.replicas("microbadger-worker") <= Some(3));
    assert_eq!(fake.replicas("microbadger-web"), Some(1));
    assert!(
        fake.patches()
            .iter()
            .all(|(_, ct, _)| ct == "application/merge-patch+json")
    );
}

/// Pods that never become ready (a crash loop the Deployment keeps): the scaler asks for a
/// replacement once the start is past its ready timeout, and then holds; it does not keep
/// adding replicas that would crash too until the capacity is used up.
#[test]
fn pods_that_never_become_ready_are_replaced_once_not_without_bound() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("mb.db").display());
    // An empty queue: the law wants the worker's minimum of 1.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        Store::connect(&db).await.unwrap();
    });
    let token = token_file(&dir, TOKEN);
    let config = dir.path().join("scaler.toml");
    std::fs::write(&config, "[control]\nready_timeout = 0.5\n").unwrap();
    let fake = FakeKubernetes::start(
        "mb",
        TOKEN,
        &[("microbadger-web", 1), ("microbadger-worker", 1)],
    );
    fake.crash_loop("microbadger-worker");
    let mut child = scaler(&db, &fake, &token)
        .env("MICROBADGER_CAPACITY", "10")
        .env("MICROBADGER_SCALER_CONFIG", &config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Sixteen ready timeouts.
    std::thread::sleep(Duration::from_secs(8));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let sizes = patched_sizes(&fake, "microbadger-worker");
    assert!(sizes.contains(&2), "one replacement asked for: {sizes:?}");
    assert!(
        sizes.iter().all(|&n| n <= 2),
        "never more than the one wanted plus one replacement: {sizes:?}"
    );
    assert_eq!(fake.replicas("microbadger-web"), Some(1));
}

/// A capacity that counts CPU: 10 units but 2000m, web and worker asking 500m an instance.
/// A backlog of 200 jobs would take the worker to the 9 units web's minimum leaves; the CPU
/// left after web's 500m holds 3 workers, and that is where it stops. The decisions recorded
/// carry the CPU capacity.
#[test]
fn a_cpu_capacity_bounds_the_worker_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("mb.db").display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(store_with_backlog(&db, 200));
    let token = token_file(&dir, TOKEN);
    let config = dir.path().join("scaler.toml");
    std::fs::write(
        &config,
        "cpu_millis = 2000\n[services.web]\ncpu_millis = 500\n[services.worker]\ncpu_millis = 500\n",
    )
    .unwrap();
    let fake = FakeKubernetes::start(
        "mb",
        TOKEN,
        &[("microbadger-web", 1), ("microbadger-worker", 1)],
    );
    let mut child = scaler(&db, &fake, &token)
        .env("MICROBADGER_CAPACITY", "10")
        .env("MICROBADGER_SCALER_CONFIG", &config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_replicas(&fake, &mut child, "microbadger-worker", 3);
    // Some more ticks with the backlog still there.
    std::thread::sleep(Duration::from_secs(2));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
    let sizes = patched_sizes(&fake, "microbadger-worker");
    assert!(sizes.iter().all(|&n| n <= 3), "{sizes:?}");
    assert_eq!(fake.replicas("microbadger-worker"), Some(3));
    let decisions = rt.block_on(store.decisions_since(0.0)).unwrap();
    let last = decisions.last().expect("decisions recorded");
    assert_eq!(last.capacity_cpu_millis, Some(2000));
    assert_eq!(last.capacity_memory_mib, None);
    let worker = last
        .services
        .iter()
        .find(|s| s.service == "worker")
        .unwrap();
    assert!(
        worker.clamps.iter().any(|c| c.why.contains("2000m CPU")),
        "{:?}",
        worker.clamps
    );
}
