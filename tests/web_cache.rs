//! Cache invalidation across web instances: Redis pub/sub announcements when the queue is on
//! Redis (real redis-server), and the store's change sequence otherwise.

mod support;

use std::time::{Duration, Instant};

use chrono::Utc;
use microbadger::config::Config;
use microbadger::inspect::{ImageInput, inspect_image};
use microbadger::oci::{ImageConfig, OciImageManifest};
use microbadger::queue::{Queue, QueueOptions};
use microbadger::reference::ImageRef;
use microbadger::registry::{Credentials, Inspection, RegistryClient};
use microbadger::store::Store;
use microbadger::web::AppState;

fn inspection(image: &str, version: &str, n: u8) -> Inspection {
    let digest = |b: u8| format!("sha256:{}", format!("{b:02x}").repeat(32));
    let manifest: OciImageManifest = serde_json::from_value(serde_json::json!({
        "schemaVersion": 2, "mediaType": microbadger::oci::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 100, "digest": digest(n + 1)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 1234, "digest": digest(n + 2)}]
    }))
    .unwrap();
    let config: ImageConfig = serde_json::from_value(serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Labels": {"org.opencontainers.image.version": version}},
        "history": [{"created_by": "ADD x /"}]
    }))
    .unwrap();
    let manifest_digest = digest(n);
    let v = inspect_image(&ImageInput {
        manifest_digest: &manifest_digest,
        media_type: microbadger::oci::OCI_MANIFEST,
        manifest: &manifest,
        config: &config,
        index_annotations: None,
    });
    Inspection {
        reference: ImageRef::parse(image).unwrap(),
        digest: manifest_digest,
        media_type: microbadger::oci::OCI_MANIFEST.into(),
        platforms: vec![],
        images: vec![v],
    }
}

async fn state(queue: Queue, store: Store) -> AppState {
    let config = Config::from_lookup(|_| None).unwrap();
    let registry =
        RegistryClient::with_credentials(config.registry.clone(), Credentials::default()).unwrap();
    AppState::new(&microbadger::app::App {
        config,
        store,
        queue,
        registry,
    })
}

async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !f() {
        assert!(
            started.elapsed() < limit,
            "{what} took longer than {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Serve `state` on a free port until the returned sender is dropped.
async fn serve(state: AppState) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(microbadger::web::serve(listener, state, async move {
        let _ = rx.await;
    }));
    (url, tx)
}

fn get(url: &str) -> String {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    agent
        .get(url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_announcements_reach_every_instance_at_once() {
    let redis = support::redis::TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("mb.db").display()))
        .await
        .unwrap();
    let repo = store
        .add_repository("docker.io", "team/app", Utc::now())
        .await
        .unwrap();
    store
        .save_tag(
            repo.id,
            "1",
            &inspection("team/app:1", "1.0.0", 10),
            Utc::now(),
        )
        .await
        .unwrap();

    // Two web instances, each with its own render cache.
    let mut instances = Vec::new();
    for _ in 0..2 {
        let queue = Queue::redis(&redis.url(), QueueOptions::default())
            .await
            .unwrap();
        let st = state(queue, store.clone()).await;
        let (url, stop) = serve(st.clone()).await;
        assert!(get(&format!("{url}/badges/version/team/app:1.svg")).contains("1.0.0"));
        assert_eq!(st.cache.len(), 1, "the badge is cached");
        instances.push((st, url, stop));
    }
    // Let the subscriptions settle, then announce without touching the store: only pub/sub
    // can empty the caches now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let publisher = Queue::redis(&redis.url(), QueueOptions::default())
        .await
        .unwrap();
    publisher
        .publish_change("docker.io/team/app")
        .await
        .unwrap();
    for (st, _, _) in &instances {
        let took = wait_until("the announcement", Duration::from_secs(2), || {
            st.cache.is_empty()
        })
        .await;
        assert!(took < Duration::from_secs(2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_instances_follow_the_store_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("mb.db").display()))
        .await
        .unwrap();
    let repo = store
        .add_repository("docker.io", "team/app", Utc::now())
        .await
        .unwrap();
    store
        .save_tag(
            repo.id,
            "1",
            &inspection("team/app:1", "1.0.0", 10),
            Utc::now(),
        )
        .await
        .unwrap();
    let queue = Queue::embedded(
        store.sqlite_pool().unwrap().clone(),
        QueueOptions::default(),
    )
    .await
    .unwrap();
    let st = state(queue, store.clone()).await;
    let (url, _stop) = serve(st.clone()).await;
    let badge = format!("{url}/badges/version/team/app:1.svg");
    assert!(get(&badge).contains("1.0.0"));
    assert!(get(&badge).contains("1.0.0"), "served from the cache");

    // A worker (here: the store directly) moves the tag; the badge follows within 2 s.
    store
        .save_tag(
            repo.id,
            "1",
            &inspection("team/app:1", "2.0.0", 20),
            Utc::now(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        if get(&badge).contains("2.0.0") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the change did not arrive within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
