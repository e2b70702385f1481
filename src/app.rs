//! The application's shared parts, built once from [`Config`]: the store, the queue and the
//! registry client. Every long-running command (worker, scheduler, up, import) starts here.

use crate::config::Config;
use crate::queue::{Queue, QueueOptions};
use crate::registry::RegistryClient;
use crate::store::Store;

/// The connected backends.
#[derive(Clone)]
pub struct App {
    pub config: Config,
    pub store: Store,
    pub queue: Queue,
    pub registry: RegistryClient,
}

/// Why the application could not start; shown to the operator as one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("queue: {0}")]
    Queue(#[from] crate::queue::QueueError),
    #[error("registry client: {0}")]
    Registry(#[from] crate::registry::RegistryError),
    #[error(
        "the embedded queue needs the SQLite store; set MICROBADGER_REDIS_URL when MICROBADGER_DATABASE_URL is PostgreSQL"
    )]
    NoQueueBackend,
}

impl App {
    /// Connect the store (applying migrations), the queue (Redis when configured, else the
    /// SQLite file) and build the registry client.
    pub async fn connect(config: Config) -> Result<App, StartError> {
        let store = Store::connect(&config.store.database_url).await?;
        let opts = QueueOptions {
            lease: config.worker.lease,
            max_attempts: config.worker.max_attempts,
            ..QueueOptions::default()
        };
        let queue = match (&config.store.redis_url, store.sqlite_pool()) {
            (Some(url), _) => Queue::redis(url, opts).await?,
            (None, Some(pool)) => Queue::embedded(pool.clone(), opts).await?,
            (None, None) => return Err(StartError::NoQueueBackend),
        };
        let registry = RegistryClient::new(config.registry.clone())?;
        Ok(App {
            config,
            store,
            queue,
            registry,
        })
    }

    /// A worker over these backends.
    pub fn worker(&self) -> crate::worker::Worker {
        crate::worker::Worker {
            store: self.store.clone(),
            queue: self.queue.clone(),
            registry: self.registry.clone(),
            config: self.config.worker.clone(),
            id: crate::worker::worker_id(),
        }
    }

    /// The scheduler over these backends.
    pub fn scheduler(&self) -> crate::scheduler::Scheduler {
        crate::scheduler::Scheduler {
            store: self.store.clone(),
            queue: self.queue.clone(),
            period: self.config.worker.refresh_period,
            holder: crate::worker::worker_id(),
            dead_job_retention: self.config.worker.dead_job_retention,
        }
    }
}

/// Resolves when the process is asked to stop (SIGTERM or Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown requested");
}
