//! The write path for stored data: batched, sharded group commit.
//!
//! Webhook ingests and proxy recordings become jobs (`job`). Each shard task takes every job
//! waiting in its queue, applies them in one transaction and commits once, so concurrent
//! requests share a commit. Jobs are sharded by phone number so one number's events stay in
//! order; SQLite (one writer) uses a single shard. If a batch fails for a reason other than
//! availability, its jobs are retried one by one so one bad job cannot sink the others.
//!
//! When the database is unavailable, ingest jobs fail (the handler answers 503 and Meta retries),
//! while proxy recordings are held (`hold`): the client already has Meta's answer and must never
//! resend a message Meta accepted. They go to this instance's spill file (`domain::spill`),
//! answered once fsynced, or to a bounded memory buffer when the file is full or failing;
//! `drain` applies them once the database answers (a spill file left by a crash at start-up).

mod drain;
mod hold;
mod job;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use self::hold::Held;
pub use self::job::{Durability, WriterSettings, WriterStats};
use self::job::{Job, Shards};
use super::ingest::{self, IngestJob};
use super::number_directory::NumberDirectory;
use super::recorder::{self, Recording};
use super::spill::{Spill, SpillStats};
use crate::store::{DynStore, StoreError, StoreResult, StoreTx};

#[derive(Clone)]
pub struct Writer {
    shards: Shards,
    pub stats: Arc<WriterStats>,
    held: Arc<Held>,
}

struct Shard {
    store: DynStore,
    deliveries: Arc<tokio::sync::Notify>,
    /// Wakes the media downloads after a batch that may have queued some.
    media: Arc<tokio::sync::Notify>,
    settings: WriterSettings,
    held: Arc<Held>,
    stats: Arc<WriterStats>,
}

/// What the writer needs beside the store.
pub struct WriterParts {
    pub deliveries: Arc<tokio::sync::Notify>,
    pub media: Arc<tokio::sync::Notify>,
    /// This instance's spill file (`None`: memory only, `writer.spill_max_bytes = 0`).
    pub spill: Option<Spill>,
    /// Spilled sends and calls come back without their number's webhooks; looked up here.
    pub numbers: NumberDirectory,
}

impl Writer {
    /// Starts the shard tasks and the drain on the current runtime.
    pub fn start(store: DynStore, settings: WriterSettings, parts: WriterParts) -> Self {
        let stats = Arc::new(WriterStats::default());
        let held = Arc::new(Held::new(parts.spill, settings.retry_buffer, stats.clone()));
        let mut senders = Vec::with_capacity(settings.shards.max(1));
        for _ in 0..settings.shards.max(1) {
            let (tx, rx) = mpsc::channel(settings.max_batch * 4);
            senders.push(tx);
            let shard = Shard {
                store: store.clone(),
                deliveries: parts.deliveries.clone(),
                media: parts.media.clone(),
                settings,
                held: held.clone(),
                stats: stats.clone(),
            };
            tokio::spawn(shard.run(rx));
        }
        let shards = Shards(Arc::new(senders));
        let drain = drain::Drain {
            shards: shards.clone(),
            held: held.clone(),
            numbers: parts.numbers,
            stats: stats.clone(),
        };
        tokio::spawn(drain.run(settings.retry_interval));
        Self {
            shards,
            stats,
            held,
        }
    }

    /// The spill file's state (`None` without one).
    pub fn spill_stats(&self) -> Option<&Arc<SpillStats>> {
        self.held.spill.as_ref().map(|s| &s.stats)
    }

    /// Recordings held in memory only (not durable).
    pub fn memory_depth(&self) -> usize {
        self.held.memory_depth()
    }

    /// Writes a webhook event and its effects; returns once committed (or failed).
    pub async fn ingest(&self, job: IngestJob) -> StoreResult<()> {
        let (tx, rx) = oneshot::channel();
        let shard = self.shards.of(job.shard_key());
        shard
            .send(Job::Ingest(Box::new(job), tx))
            .await
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))?
    }

    /// Records what the proxy saw; returns once committed, spilled (fsynced) or buffered.
    pub async fn record(&self, recording: Recording) -> Durability {
        // While the spill file holds records, new ones queue behind them, so a later change (a
        // username, say) is never applied before an earlier one.
        if self.held.spill_holds_records() {
            return self.held.spill_one(recording).await;
        }
        self.shards
            .record(recording)
            .await
            .unwrap_or(Durability::Buffered)
    }

    /// Applies a recording again, as the drain does with held ones; applying one twice changes
    /// nothing (see `recorder`).
    pub async fn replay(&self, recording: Recording) -> StoreResult<()> {
        self.shards.replay(recording).await
    }
}

impl Shard {
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < self.settings.max_batch {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.run_batch(batch).await;
        }
    }

    async fn apply(&self, tx: &mut dyn StoreTx, job: &Job, now: DateTime<Utc>) -> StoreResult<()> {
        match job {
            Job::Ingest(job, _) => ingest::apply(tx, job, self.settings.ingest, now).await,
            Job::Record(recording, _) | Job::Replay(recording, _) => {
                recorder::apply(tx, recording, self.settings.ingest).await
            }
        }
    }

    /// Applies `jobs` in one transaction; `Ok(true)` when what it committed queued a media
    /// download.
    async fn try_batch(&self, jobs: &[Job]) -> StoreResult<bool> {
        let now = crate::store::now();
        let mut tx = self.store.begin().await?;
        let mut batch = crate::store::Prefetch::default();
        for job in jobs {
            match job {
                Job::Ingest(job, _) => job.prefetch(&mut batch),
                Job::Record(recording, _) | Job::Replay(recording, _) => {
                    recording.prefetch(&mut batch)
                }
            }
        }
        tx.lock_keys(&batch.messages).await?;
        tx.prefetch(&batch).await?;
        for job in jobs {
            self.apply(&mut *tx, job, now).await?;
        }
        let queued_media = tx.queued_media();
        tx.commit().await?;
        Ok(queued_media)
    }

    async fn run_batch(&self, batch: Vec<Job>) {
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("wagate_writer_batches_total").increment(1);
        metrics::histogram!("wagate_writer_batch_size").record(batch.len() as f64);
        self.stats
            .jobs
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        // A spurious wake-up (the batch failed) costs the worker one empty claim.
        let wake_deliveries = batch.iter().any(Job::queues_deliveries);
        let queued_media = self.run_batch_inner(batch).await;
        if wake_deliveries {
            self.deliveries.notify_one();
        }
        // Only a batch that queued a download wakes the media workers: waking them after every
        // batch cost a claim for nothing per batch of sends (on SQLite a write on another
        // connection; about 3 of a recorded send's 120 µs of CPU). One permit at most is
        // stored, so a busy writer costs the media worker one claim per round, not one per batch.
        if queued_media {
            self.media.notify_one();
        }
    }

    /// Runs the batch (its jobs one by one if it fails); returns whether what it committed
    /// queued a media download.
    async fn run_batch_inner(&self, batch: Vec<Job>) -> bool {
        match self.try_batch(&batch).await {
            Ok(queued_media) => {
                self.held.finish(batch, || Ok(()));
                queued_media
            }
            Err(error @ StoreError::Unavailable(_)) => {
                tracing::warn!(%error, jobs = batch.len(), "database unavailable; ingest refused, recordings held");
                let message = error.to_string();
                self.held
                    .finish(batch, || Err(StoreError::Unavailable(message.clone())));
                false
            }
            Err(error) if batch.len() > 1 => {
                tracing::warn!(error = ?error, "batch failed; retrying its jobs one by one");
                let mut queued_media = false;
                for job in batch {
                    let outcome = self.try_batch(std::slice::from_ref(&job)).await;
                    queued_media |= matches!(outcome, Ok(true));
                    let mut result = Some(outcome.map(|_| ()));
                    self.held
                        .finish(vec![job], || result.take().unwrap_or(Ok(())));
                }
                queued_media
            }
            Err(error) => {
                tracing::error!(error = ?error, "write failed");
                self.held
                    .finish(batch, || Err(StoreError::Other(anyhow::anyhow!("{error}"))));
                false
            }
        }
    }
}
