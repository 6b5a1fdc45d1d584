//! The writer's jobs, how they reach a shard, and what operators can read about them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::domain::ingest::IngestJob;
use crate::domain::record::IngestSettings;
use crate::domain::recorder::Recording;
use crate::store::{StoreError, StoreResult};

/// How a recording ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Committed,
    /// In the spill file (fsynced) until the database is back: survives a crash.
    Spilled,
    /// Kept in memory only (no spill file, or it is full or failing): lost if wagate stops
    /// before the database is back.
    Buffered,
}

impl Durability {
    /// Logs a recording of `what` the database could not take yet.
    pub fn warn_if_held(self, what: &str) {
        match self {
            Self::Committed => {}
            Self::Spilled => {
                tracing::warn!("{what} recorded in the spill file: database unavailable");
            }
            Self::Buffered => tracing::warn!(
                "{what} recorded in memory only: database unavailable and the spill file full, \
                 failing or off"
            ),
        }
    }
}

pub(super) enum Job {
    Ingest(Box<IngestJob>, oneshot::Sender<StoreResult<()>>),
    Record(Recording, Option<oneshot::Sender<Durability>>),
    /// A held recording applied again: the outcome goes back to the drain, never to the buffer.
    Replay(Recording, oneshot::Sender<StoreResult<()>>),
}

impl Job {
    pub(super) fn queues_deliveries(&self) -> bool {
        match self {
            Job::Ingest(job, _) => job
                .routes
                .iter()
                .any(|r| r.number.as_ref().is_some_and(|n| n.forwarding)),
            Job::Record(..) | Job::Replay(..) => false,
        }
    }
}

/// Counters for operators (exported as metrics).
#[derive(Debug, Default)]
pub struct WriterStats {
    pub batches: AtomicU64,
    pub jobs: AtomicU64,
    pub buffered_recordings: AtomicU64,
    pub dropped_recordings: AtomicU64,
    pub buffer_depth: AtomicU64,
    /// Recordings written to the spill file.
    pub spilled_recordings: AtomicU64,
    /// Recordings the spill file could not take (full or failing), kept in memory instead.
    pub not_durable_recordings: AtomicU64,
    /// Held recordings the drain applied to the database.
    pub drained_recordings: AtomicU64,
    /// Rounds in which the drain retried the memory buffer.
    pub buffer_retries: AtomicU64,
}

impl WriterStats {
    /// Counts recordings written to the spill file, here and in `/metrics`.
    pub(super) fn count_spilled(&self, count: u64) {
        self.spilled_recordings.fetch_add(count, Ordering::Relaxed);
        metrics::counter!("wagate_recordings_spilled_total").increment(count);
    }

    /// Counts held recordings applied to the database, here and in `/metrics`.
    pub(super) fn count_drained(&self, count: u64) {
        self.drained_recordings.fetch_add(count, Ordering::Relaxed);
        metrics::counter!("wagate_recordings_drained_total").increment(count);
    }
}

#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    pub shards: usize,
    pub max_batch: usize,
    pub retry_buffer: usize,
    pub retry_interval: Duration,
    pub ingest: IngestSettings,
}

/// The shard queues: jobs about one number and user always go to the same one.
#[derive(Clone)]
pub(super) struct Shards(pub(super) Arc<Vec<mpsc::Sender<Job>>>);

impl Shards {
    pub(super) fn of(&self, key: u64) -> &mpsc::Sender<Job> {
        &self.0[(key % self.0.len() as u64) as usize]
    }

    /// Sends a recording to its shard; `None` when the writer has stopped.
    pub(super) async fn record(&self, recording: Recording) -> Option<Durability> {
        let (tx, rx) = oneshot::channel();
        let shard = self.of(recording.shard_key());
        shard.send(Job::Record(recording, Some(tx))).await.ok()?;
        rx.await.ok()
    }

    pub(super) async fn replay(&self, recording: Recording) -> StoreResult<()> {
        let (tx, rx) = oneshot::channel();
        let stopped = || StoreError::Unavailable("writer stopped".into());
        self.of(recording.shard_key())
            .send(Job::Replay(recording, tx))
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}
