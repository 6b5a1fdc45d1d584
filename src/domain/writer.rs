//! The write path for stored data: batched, sharded group commit.
//!
//! Webhook ingests and proxy recordings become jobs. Each shard task takes every job waiting in
//! its queue, applies them in one transaction and commits once, so concurrent requests share a
//! commit. Jobs are sharded by phone number so one number's events stay in order; SQLite (one
//! writer) uses a single shard. If a batch fails for a reason other than availability, its jobs
//! are retried one by one so one bad job cannot sink the others.
//!
//! When the database is unavailable, ingest jobs fail (the handler answers 503 and Meta retries),
//! while proxy recordings go to a bounded retry buffer: the client already has Meta's answer and
//! must never resend a message Meta accepted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::ingest::{self, IngestJob};
use super::record::IngestSettings;
use super::recorder::{self, Recording};
use crate::store::{DynStore, StoreError, StoreResult, StoreTx};

/// How a recording ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Committed,
    /// Kept in memory until the database is back.
    Buffered,
}

enum Job {
    Ingest(Box<IngestJob>, oneshot::Sender<StoreResult<()>>),
    Record(Recording, Option<oneshot::Sender<Durability>>),
}

/// Counters for operators (exported as metrics).
#[derive(Debug, Default)]
pub struct WriterStats {
    pub batches: AtomicU64,
    pub jobs: AtomicU64,
    pub buffered_recordings: AtomicU64,
    pub dropped_recordings: AtomicU64,
    pub buffer_depth: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    pub shards: usize,
    pub max_batch: usize,
    pub retry_buffer: usize,
    pub retry_interval: Duration,
    pub ingest: IngestSettings,
}

#[derive(Clone)]
pub struct Writer {
    shards: Arc<Vec<mpsc::Sender<Job>>>,
    pub stats: Arc<WriterStats>,
}

struct Shard {
    store: DynStore,
    deliveries: Arc<tokio::sync::Notify>,
    /// Wakes the media downloads after a batch that may have queued some.
    media: Arc<tokio::sync::Notify>,
    settings: WriterSettings,
    buffer: Arc<Mutex<VecDeque<Recording>>>,
    stats: Arc<WriterStats>,
}

impl Writer {
    /// Starts the shard tasks and the retry loop on the current runtime.
    pub fn start(
        store: DynStore,
        settings: WriterSettings,
        deliveries: Arc<tokio::sync::Notify>,
        media: Arc<tokio::sync::Notify>,
    ) -> Self {
        let stats = Arc::new(WriterStats::default());
        let buffer = Arc::new(Mutex::new(VecDeque::new()));
        let mut senders = Vec::with_capacity(settings.shards.max(1));
        for _ in 0..settings.shards.max(1) {
            let (tx, rx) = mpsc::channel(settings.max_batch * 4);
            senders.push(tx);
            let shard = Shard {
                store: store.clone(),
                deliveries: deliveries.clone(),
                media: media.clone(),
                settings,
                buffer: buffer.clone(),
                stats: stats.clone(),
            };
            tokio::spawn(shard.run(rx));
        }
        let writer = Self {
            shards: Arc::new(senders),
            stats: stats.clone(),
        };
        tokio::spawn(retry_loop(
            writer.clone(),
            buffer,
            settings.retry_interval,
            stats,
        ));
        writer
    }

    fn shard(&self, key: u64) -> &mpsc::Sender<Job> {
        &self.shards[(key % self.shards.len() as u64) as usize]
    }

    /// Writes a webhook event and its effects; returns once committed (or failed).
    pub async fn ingest(&self, job: IngestJob) -> StoreResult<()> {
        let (tx, rx) = oneshot::channel();
        let shard = self.shard(job.shard_key());
        shard
            .send(Job::Ingest(Box::new(job), tx))
            .await
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))?
    }

    /// Records what the proxy saw; returns once committed or buffered.
    pub async fn record(&self, recording: Recording) -> Durability {
        let (tx, rx) = oneshot::channel();
        let shard = self.shard(recording.shard_key());
        if shard.send(Job::Record(recording, Some(tx))).await.is_err() {
            return Durability::Buffered;
        }
        rx.await.unwrap_or(Durability::Buffered)
    }
}

impl Job {
    fn queues_deliveries(&self) -> bool {
        match self {
            Job::Ingest(job, _) => job
                .routes
                .iter()
                .any(|r| r.number.as_ref().is_some_and(|n| n.forwarding)),
            Job::Record(..) => false,
        }
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
            Job::Record(recording, _) => recorder::apply(tx, recording, self.settings.ingest).await,
        }
    }

    async fn try_batch(&self, jobs: &[Job]) -> StoreResult<()> {
        let now = crate::store::now();
        let mut tx = self.store.begin().await?;
        let mut batch = crate::store::Prefetch::default();
        for job in jobs {
            match job {
                Job::Ingest(job, _) => job.prefetch(&mut batch),
                Job::Record(recording, _) => recording.prefetch(&mut batch),
            }
        }
        tx.lock_keys(&batch.messages).await?;
        tx.prefetch(&batch).await?;
        for job in jobs {
            self.apply(&mut *tx, job, now).await?;
        }
        tx.commit().await
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
        self.run_batch_inner(batch).await;
        if wake_deliveries {
            self.deliveries.notify_one();
        }
        // One permit at most is stored, so a busy writer costs the media worker one claim per
        // round, not one per batch.
        if self.settings.ingest.media_vault {
            self.media.notify_one();
        }
    }

    async fn run_batch_inner(&self, batch: Vec<Job>) {
        match self.try_batch(&batch).await {
            Ok(()) => batch
                .into_iter()
                .for_each(|job| finish(job, Ok(()), &self.buffer, &self.stats, &self.settings)),
            Err(error @ StoreError::Unavailable(_)) => {
                tracing::warn!(%error, jobs = batch.len(), "database unavailable; ingest refused, recordings buffered");
                let message = error.to_string();
                for job in batch {
                    finish(
                        job,
                        Err(StoreError::Unavailable(message.clone())),
                        &self.buffer,
                        &self.stats,
                        &self.settings,
                    );
                }
            }
            Err(error) if batch.len() > 1 => {
                tracing::warn!(error = ?error, "batch failed; retrying its jobs one by one");
                for job in batch {
                    let result = self.try_batch(std::slice::from_ref(&job)).await;
                    finish(job, result, &self.buffer, &self.stats, &self.settings);
                }
            }
            Err(error) => {
                tracing::error!(error = ?error, "write failed");
                batch.into_iter().for_each(|job| {
                    finish(
                        job,
                        Err(StoreError::Other(anyhow::anyhow!("{error}"))),
                        &self.buffer,
                        &self.stats,
                        &self.settings,
                    )
                });
            }
        }
    }
}

fn finish(
    job: Job,
    result: StoreResult<()>,
    buffer: &Mutex<VecDeque<Recording>>,
    stats: &WriterStats,
    settings: &WriterSettings,
) {
    match job {
        Job::Ingest(_, reply) => {
            let _ = reply.send(result);
        }
        Job::Record(recording, reply) => {
            let durability = match result {
                Ok(()) => Durability::Committed,
                Err(StoreError::Unavailable(_)) => {
                    let mut buffer = buffer.lock().expect("buffer lock");
                    if buffer.len() >= settings.retry_buffer {
                        buffer.pop_front();
                        stats.dropped_recordings.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("wagate_recordings_dropped_total").increment(1);
                        tracing::error!(
                            "recording retry buffer full; dropped the oldest recording"
                        );
                    }
                    buffer.push_back(recording);
                    stats.buffered_recordings.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("wagate_recordings_buffered_total").increment(1);
                    metrics::gauge!("wagate_recording_buffer_depth").set(buffer.len() as f64);
                    stats
                        .buffer_depth
                        .store(buffer.len() as u64, Ordering::Relaxed);
                    Durability::Buffered
                }
                Err(error) => {
                    // Not retryable (a bug or bad data): logged, never blocks the client.
                    tracing::error!(error = ?error, "could not record a proxied message");
                    Durability::Committed
                }
            };
            if let Some(reply) = reply {
                let _ = reply.send(durability);
            }
        }
    }
}

/// Re-submits buffered recordings while the database is back.
async fn retry_loop(
    writer: Writer,
    buffer: Arc<Mutex<VecDeque<Recording>>>,
    every: Duration,
    stats: Arc<WriterStats>,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let pending: Vec<Recording> = {
            let mut buffer = buffer.lock().expect("buffer lock");
            stats.buffer_depth.store(0, Ordering::Relaxed);
            metrics::gauge!("wagate_recording_buffer_depth").set(0.0);
            buffer.drain(..).collect()
        };
        if pending.is_empty() {
            continue;
        }
        tracing::info!(count = pending.len(), "retrying buffered recordings");
        let mut pending = pending.into_iter();
        for recording in pending.by_ref() {
            // Failing again puts it back in the buffer (finish() does that); keep the rest for
            // the next tick instead of hammering a database that is still down.
            if writer.record(recording).await == Durability::Buffered {
                break;
            }
        }
        let rest: Vec<Recording> = pending.collect();
        if !rest.is_empty() {
            let mut buffer = buffer.lock().expect("buffer lock");
            buffer.extend(rest);
            stats
                .buffer_depth
                .store(buffer.len() as u64, Ordering::Relaxed);
        }
    }
}
