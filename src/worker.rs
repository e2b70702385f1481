//! The worker: takes refresh jobs off the queue and brings the store up to date with the
//! registry, as cheaply as the registry allows.
//!
//! A refresh of a whole repository lists its tags (bounded), `HEAD`s every known tag (one
//! request each; unchanged digests cost nothing more), inspects only new or moved tags, and
//! records deleted ones. A refresh of one tag (a person waiting, or a webhook naming the tag)
//! does the same for that tag alone.
//!
//! Failure handling follows what the registry said: a repository that does not exist is marked
//! missing and checked again only daily; 429 and Docker Hub's falling `ratelimit-remaining`
//! reschedule the job instead of failing it; transient errors go back to the queue, which
//! retries with backoff and dead-letters after the last attempt; permanent errors (unauthorized,
//! broken manifests) are recorded on the repository and not retried until the next period.
//!
//! Shutdown: on the signal the worker stops claiming, lets jobs in hand finish within the grace
//! period, and releases the rest to the queue. A worker killed outright loses nothing either:
//! its leases expire and other workers take the jobs.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::WorkerConfig;
use crate::queue::{ClaimedJob, JobKind, Queue, QueueError};
use crate::reference::ImageRef;
use crate::registry::{CheckResult, PlatformChoice, RegistryClient, RegistryError};
use crate::store::{RepoStatus, Repository, Store, StoreError};

/// How often an idle worker looks for work.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// Tags `HEAD`ed at once during a repository refresh.
const HEAD_CONCURRENCY: usize = 16;
/// A repository the registry says does not exist is looked at again after this long.
const MISSING_RECHECK: chrono::TimeDelta = chrono::TimeDelta::hours(24);
/// Below this many remaining requests (Docker Hub's `ratelimit-remaining`), slow down.
const RATE_LIMIT_LOW_WATER: u64 = 20;
/// How long to wait when the remaining allowance is exhausted and no `Retry-After` was given.
const RATE_LIMIT_PAUSE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Why a job did not complete.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth retrying soon (network, 5xx, timeouts): the queue's backoff applies.
    #[error("{0}")]
    Transient(String),
    /// The registry asked us to slow down: reschedule at this time, no failure counted.
    #[error("rate limited until {0}")]
    RateLimited(DateTime<Utc>),
    /// Store or queue trouble: retry.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
}

/// What one refresh did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshReport {
    pub unchanged: usize,
    pub inspected: usize,
    pub deleted: usize,
    /// Set when the repository ended in a terminal state (missing, failed permanently).
    pub status: Option<String>,
}

/// Everything a worker needs; cheap to clone into tasks.
#[derive(Clone)]
pub struct Worker {
    pub store: Store,
    pub queue: Queue,
    pub registry: RegistryClient,
    pub config: WorkerConfig,
    /// Identifies this worker in leases and logs.
    pub id: String,
}

impl Worker {
    /// Run until `shutdown` resolves, then drain: finish jobs in hand within the grace period,
    /// release the rest. Returns the number of jobs completed.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> u64 {
        let slots = Arc::new(Semaphore::new(self.config.concurrency));
        let mut tasks: JoinSet<Option<ClaimedJob>> = JoinSet::new();
        let mut in_hand: BTreeMap<tokio::task::Id, ClaimedJob> = BTreeMap::new();
        let mut completed = 0u64;
        tokio::pin!(shutdown);
        tracing::info!(worker = %self.id, concurrency = self.config.concurrency, "worker started");
        loop {
            // Reap finished tasks.
            while let Some(done) = tasks.try_join_next_with_id() {
                if let Ok((id, _)) = &done {
                    in_hand.remove(id);
                    completed += 1;
                }
            }
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                p = slots.clone().acquire_owned() => p.expect("semaphore is never closed"),
            };
            let claimed = match self.queue.claim(&self.id).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(worker = %self.id, error = %e, "claiming a job failed");
                    None
                }
            };
            let Some(job) = claimed else {
                drop(permit);
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(IDLE_POLL) => continue,
                }
            };
            let me = self.clone();
            let held = job.clone();
            let span = tracing::info_span!("job", id = %job.id, kind = ?job.kind, priority = ?job.priority, attempt = job.attempt);
            let handle = tasks.spawn(
                async move {
                    me.process(job).await;
                    drop(permit);
                    None
                }
                .instrument(span),
            );
            in_hand.insert(handle.id(), held);
        }

        tracing::info!(worker = %self.id, in_flight = tasks.len(), "stopping: finishing jobs in hand");
        let deadline = tokio::time::sleep(self.config.shutdown_grace);
        tokio::pin!(deadline);
        while !tasks.is_empty() {
            tokio::select! {
                _ = &mut deadline => break,
                done = tasks.join_next_with_id() => {
                    if let Some(Ok((id, _))) = done {
                        in_hand.remove(&id);
                        completed += 1;
                    }
                }
            }
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        for job in in_hand.values() {
            match self.queue.release(job).await {
                Ok(()) => {
                    tracing::info!(worker = %self.id, job = %job.id, "released unfinished job")
                }
                Err(e) => {
                    tracing::warn!(worker = %self.id, job = %job.id, error = %e, "releasing job failed; its lease will expire")
                }
            }
        }
        tracing::info!(worker = %self.id, completed, "worker stopped");
        completed
    }

    /// Run one claimed job to its end: ack, fail, or reschedule. Keeps the lease alive while
    /// the job runs.
    pub async fn process(&self, job: ClaimedJob) {
        let renew_every = (self.config.lease / 3).max(Duration::from_millis(200));
        let work = self.execute(&job.kind);
        tokio::pin!(work);
        let result = loop {
            tokio::select! {
                r = &mut work => break r,
                _ = tokio::time::sleep(renew_every) => {
                    match self.queue.renew(&job).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!("lease lost; another worker has the job");
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "renewing the lease failed"),
                    }
                }
            }
        };
        let outcome = match result {
            Ok(report) => {
                tracing::info!(?report, "job done");
                self.queue.ack(&job).await
            }
            Err(JobError::RateLimited(at)) => {
                tracing::info!(%at, "rate limited; rescheduled");
                self.queue.retry_at(&job, at).await
            }
            Err(e) => {
                tracing::warn!(error = %e, "job failed");
                match self.queue.fail(&job, &e.to_string()).await {
                    Ok(crate::queue::FailOutcome::Dead) => {
                        self.record_dead(&job.kind, &e.to_string()).await;
                        Ok(())
                    }
                    Ok(crate::queue::FailOutcome::Retry { at }) => {
                        tracing::info!(%at, "will retry");
                        Ok(())
                    }
                    Err(q) => Err(q),
                }
            }
        };
        match outcome {
            Ok(()) => {}
            Err(QueueError::LeaseLost { .. }) => {
                tracing::info!("the lease was lost meanwhile; another worker has the job");
            }
            Err(e) => {
                tracing::warn!(error = %e, "recording the job outcome failed; the lease will expire and the job rerun");
            }
        }
    }

    /// Do the work of a job.
    pub async fn execute(&self, kind: &JobKind) -> Result<RefreshReport, JobError> {
        match kind {
            JobKind::Refresh { image, tag } => self.refresh(image, tag.as_deref()).await,
        }
    }

    async fn record_dead(&self, kind: &JobKind, reason: &str) {
        let JobKind::Refresh { image, .. } = kind;
        let Ok(r) = ImageRef::parse(image) else {
            return;
        };
        if let Ok(Some(repo)) = self.store.repository(r.registry(), r.repository()).await {
            let status = RepoStatus::Failed {
                reason: reason.to_string(),
                next_retry: Some(repo.next_refresh_at),
            };
            let _ = self.store.set_status(repo.id, &status, Utc::now()).await;
        }
    }

    /// Refresh a repository (all tags) or one tag of it.
    pub async fn refresh(&self, image: &str, tag: Option<&str>) -> Result<RefreshReport, JobError> {
        let r = match ImageRef::parse(image) {
            Ok(r) => r,
            Err(e) => {
                // A malformed job can never succeed; drop it loudly.
                tracing::error!(image = %image.escape_debug(), error = %e, "job names an invalid image; dropped");
                return Ok(RefreshReport {
                    status: Some(format!("invalid image name: {e}")),
                    ..Default::default()
                });
            }
        };
        let now = Utc::now();
        let first = crate::scheduler::first_slot(
            r.registry(),
            r.repository(),
            now,
            self.config.refresh_period,
        );
        let repo = self
            .store
            .add_repository(r.registry(), r.repository(), first)
            .await?;
        if let Err(e) = self.registry.check_allowed(&r) {
            return self.settle(&repo, e).await;
        }
        let result = match tag {
            Some(tag) => self.refresh_tag(&repo, &r, tag).await,
            None => self.refresh_repository(&repo, &r).await,
        };
        match result {
            Ok(report) => {
                if report.inspected > 0 || report.deleted > 0 || report.status.is_some() {
                    // Web instances on Redis drop their cached renders now; a lost message
                    // only delays that until they see the store's change sequence.
                    if let Err(e) = self.queue.publish_change(&r.full_name()).await {
                        tracing::warn!(error = %e, "announcing the change failed");
                    }
                }
                Ok(report)
            }
            Err(Failure::Registry(e)) => self.settle(&repo, e).await,
            Err(Failure::Job(e)) => Err(e),
        }
    }

    /// Turn a registry error into a repository status, a reschedule, or a retry.
    async fn settle(&self, repo: &Repository, e: RegistryError) -> Result<RefreshReport, JobError> {
        let now = Utc::now();
        match e {
            RegistryError::RateLimited { retry_after, .. } => {
                let wait = retry_after
                    .and_then(|d| chrono::TimeDelta::from_std(d).ok())
                    .unwrap_or(RATE_LIMIT_PAUSE);
                Err(JobError::RateLimited(now + wait))
            }
            e if e.is_transient() => Err(JobError::Transient(e.to_string())),
            RegistryError::NotFound { .. } => {
                let status = RepoStatus::Missing {
                    reason: e.to_string(),
                };
                self.store.set_status(repo.id, &status, now).await?;
                self.store
                    .set_next_refresh(repo.id, now + MISSING_RECHECK)
                    .await?;
                Ok(RefreshReport {
                    status: Some(e.to_string()),
                    ..Default::default()
                })
            }
            e => {
                let status = RepoStatus::Failed {
                    reason: e.to_string(),
                    next_retry: Some(repo.next_refresh_at.max(now)),
                };
                self.store.set_status(repo.id, &status, now).await?;
                Ok(RefreshReport {
                    status: Some(e.to_string()),
                    ..Default::default()
                })
            }
        }
    }

    async fn refresh_tag(
        &self,
        repo: &Repository,
        r: &ImageRef,
        tag: &str,
    ) -> Result<RefreshReport, Failure> {
        let known: BTreeMap<String, String> = self
            .store
            .tags(repo.id)
            .await
            .map_err(JobError::from)?
            .into_iter()
            .map(|t| (t.tag, t.digest))
            .collect();
        let tagged = r.with_tag(tag).map_err(|e| Failure::Registry(e.into()))?;
        let mut report = RefreshReport::default();
        match self
            .check_one(
                repo,
                &tagged,
                known.get(tag).map(String::as_str),
                &mut report,
            )
            .await
        {
            Ok(()) => Ok(report),
            Err(Failure::Registry(RegistryError::NotFound { .. })) if known.contains_key(tag) => {
                // The tag is gone (the repository may still exist): record the deletion.
                let now = Utc::now();
                self.store
                    .delete_tags(repo.id, &[tag.to_string()], now)
                    .await
                    .map_err(JobError::from)?;
                report.deleted = 1;
                Ok(report)
            }
            Err(Failure::Registry(RegistryError::NotFound { .. })) => {
                // A tag we never saw is not there. Does the repository exist at all? If so and
                // we know none of its tags yet (someone asked for `latest` of an image that has
                // no `latest`), read the whole repository so there is something to show.
                self.registry.list_tags(r).await?;
                if known.is_empty() {
                    let mut full = self.refresh_repository(repo, r).await?;
                    full.status = Some(format!("no tag {tag}"));
                    return Ok(full);
                }
                // Mark the repository checked, so the web tier can tell "not there" from
                // "not looked yet".
                self.store
                    .set_status(repo.id, &RepoStatus::Inspected, Utc::now())
                    .await
                    .map_err(JobError::from)?;
                report.status = Some(format!("no tag {tag}"));
                Ok(report)
            }
            Err(e) => Err(e),
        }
    }

    /// `HEAD` one tag; inspect and save it only if it is new or moved.
    async fn check_one(
        &self,
        repo: &Repository,
        tagged: &ImageRef,
        known: Option<&str>,
        report: &mut RefreshReport,
    ) -> Result<(), Failure> {
        self.pace(tagged).await?;
        let tag = tagged.tag_or_default().to_string();
        match self.registry.check(tagged, known).await? {
            CheckResult::Unchanged { .. } => {
                self.store
                    .touch_tag(repo.id, &tag, Utc::now())
                    .await
                    .map_err(JobError::from)?;
                report.unchanged += 1;
            }
            CheckResult::Changed { digest } => {
                let pinned = tagged
                    .with_digest(&digest)
                    .map_err(|e| Failure::Registry(e.into()))?;
                self.pace(tagged).await?;
                let inspection = self
                    .registry
                    .inspect(&pinned, &PlatformChoice::Default)
                    .await?;
                self.store
                    .save_tag(repo.id, &tag, &inspection, Utc::now())
                    .await
                    .map_err(JobError::from)?;
                report.inspected += 1;
            }
        }
        Ok(())
    }

    async fn refresh_repository(
        &self,
        repo: &Repository,
        r: &ImageRef,
    ) -> Result<RefreshReport, Failure> {
        let listed = self.registry.list_tags(r).await?;
        let complete = listed.len() < self.registry.config().max_tags;
        let known: BTreeMap<String, String> = self
            .store
            .tags(repo.id)
            .await
            .map_err(JobError::from)?
            .into_iter()
            .map(|t| (t.tag, t.digest))
            .collect();
        let mut report = RefreshReport::default();
        let results: Vec<(String, Result<RefreshReport, Failure>)> =
            futures::stream::iter(listed.iter().cloned())
                .map(|tag| {
                    let known = known.get(&tag).cloned();
                    async move {
                        let mut one = RefreshReport::default();
                        let result = match r.with_tag(&tag) {
                            Ok(tagged) => self
                                .check_one(repo, &tagged, known.as_deref(), &mut one)
                                .await
                                .map(|()| one),
                            Err(e) => Err(Failure::Registry(e.into())),
                        };
                        (tag, result)
                    }
                })
                .buffer_unordered(HEAD_CONCURRENCY)
                .collect()
                .await;
        let mut first_error: Option<Failure> = None;
        for (tag, result) in results {
            match result {
                Ok(one) => {
                    report.unchanged += one.unchanged;
                    report.inspected += one.inspected;
                }
                // A tag deleted between the listing and the HEAD: its deletion is seen next time.
                Err(Failure::Registry(RegistryError::NotFound { .. })) => {
                    tracing::debug!(%tag, "tag vanished during refresh");
                }
                Err(e) => {
                    tracing::warn!(%tag, error = %e, "tag refresh failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if complete {
            let listed: BTreeSet<&String> = listed.iter().collect();
            let gone: Vec<String> = known
                .keys()
                .filter(|t| !listed.contains(t))
                .cloned()
                .collect();
            if !gone.is_empty() {
                self.store
                    .delete_tags(repo.id, &gone, Utc::now())
                    .await
                    .map_err(JobError::from)?;
                report.deleted = gone.len();
            }
        }
        if listed.is_empty() {
            // An empty repository is as good as missing for a metadata service.
            self.store
                .set_status(
                    repo.id,
                    &RepoStatus::Missing {
                        reason: "the repository has no tags".into(),
                    },
                    Utc::now(),
                )
                .await
                .map_err(JobError::from)?;
        }
        if let Some(info) = self.registry.hub_info(r).await {
            self.store
                .set_hub_info(repo.id, &info)
                .await
                .map_err(JobError::from)?;
        }
        Ok(report)
    }

    /// Slow down as the registry's advertised allowance runs out; stop at zero.
    async fn pace(&self, r: &ImageRef) -> Result<(), Failure> {
        let Some(limit) = self.registry.rate_limit(r.registry()) else {
            return Ok(());
        };
        if limit.remaining == 0 {
            return Err(Failure::Job(JobError::RateLimited(
                Utc::now() + RATE_LIMIT_PAUSE,
            )));
        }
        if limit.remaining < RATE_LIMIT_LOW_WATER {
            let pause = Duration::from_millis(100 * (RATE_LIMIT_LOW_WATER - limit.remaining));
            tracing::debug!(
                remaining = limit.remaining,
                ?pause,
                "registry allowance low; pacing"
            );
            tokio::time::sleep(pause).await;
        }
        Ok(())
    }
}

/// Internal: a registry error (to be settled into a status) or a job error (to propagate).
#[derive(Debug)]
enum Failure {
    Registry(RegistryError),
    Job(JobError),
}

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        Failure::Registry(e)
    }
}

impl From<JobError> for Failure {
    fn from(e: JobError) -> Self {
        Failure::Job(e)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Registry(e) => e.fmt(f),
            Failure::Job(e) => e.fmt(f),
        }
    }
}

/// A unique-enough worker id: host name and process id.
pub fn worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}
