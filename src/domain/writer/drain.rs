//! Applies held recordings once the database answers: the memory buffer first (into the spill
//! file when the database is still away), then the spill file, a chunk at a time, each chunk
//! marked drained only after every record in it was applied. A crash between the two applies the
//! chunk again, which changes nothing (`recorder` is idempotent: a send is stored once per wamid
//! and touches its conversation only then; a call event, a read mark, a username or a PIN is
//! written once); so every record reaches the database exactly once. Runs at start-up too, which
//! is how a spill file left by a crash is replayed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::hold::Held;
use super::job::{Shards, WriterStats};
use crate::domain::number_directory::NumberDirectory;
use crate::domain::recorder::Recording;
use crate::domain::spill::Spill;
use crate::store::StoreError;

/// Bytes of spilled records read back per round.
const CHUNK: usize = 1 << 20;

pub(super) struct Drain {
    pub(super) shards: Shards,
    pub(super) held: Arc<Held>,
    pub(super) numbers: NumberDirectory,
    pub(super) stats: Arc<WriterStats>,
}

impl Drain {
    pub(super) async fn run(self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.retry_memory().await;
            if let Some(spill) = &self.held.spill {
                self.drain_spill(spill).await;
            }
        }
    }

    /// Tries the memory buffer again, oldest first: into the spill file while it holds records
    /// (so nothing overtakes them), else straight to the database, else into the spill file.
    /// A recording that still finds no place goes back to the front of the buffer with the rest
    /// behind it, in order, and is not counted again: it was counted when it was first held.
    async fn retry_memory(&self) {
        let pending = self.held.take_memory();
        if pending.is_empty() {
            return;
        }
        tracing::info!(count = pending.len(), "retrying buffered recordings");
        let mut pending = pending.into_iter();
        let mut still_held = None;
        for recording in pending.by_ref() {
            match self.retry_one(recording).await {
                Ok(()) => self.held.placed_from_memory(),
                Err(recording) => {
                    still_held = Some(recording);
                    break;
                }
            }
        }
        self.held
            .return_to_memory(still_held.into_iter().chain(pending).collect());
        // Counted once the round is over, so a reader of the counter sees the buffer as the
        // round left it.
        self.stats.buffer_retries.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("wagate_recording_buffer_retries_total").increment(1);
    }

    /// Gives the recording back when neither the database nor the spill file took it.
    async fn retry_one(&self, recording: Recording) -> Result<(), Recording> {
        if !self.held.spill_holds_records() {
            match self.shards.replay(recording.clone()).await {
                Ok(()) => {
                    self.stats.count_drained(1);
                    return Ok(());
                }
                Err(StoreError::Unavailable(_)) => {}
                Err(error) => {
                    // Not retryable (a bug or bad data), as when it was first recorded.
                    tracing::error!(error = ?error, "a buffered recording could not be applied; skipped");
                    return Ok(());
                }
            }
        }
        self.held.spill_again(recording).await
    }

    async fn drain_spill(&self, spill: &Spill) {
        while spill.stats.records.load(Ordering::Acquire) > 0 {
            let pending = match spill.pending(CHUNK).await {
                Ok(pending) => pending,
                Err(error) => {
                    tracing::error!(%error, "could not read the spill file back");
                    return;
                }
            };
            let Some(&(end, _)) = pending.records.last() else {
                return;
            };
            let count = pending.records.len() as u64;
            let mut recordings = Vec::with_capacity(pending.records.len());
            for (_, payload) in pending.records {
                match serde_json::from_slice::<Recording>(&payload) {
                    Ok(mut recording) => {
                        if let Some(number) = recording.routed_number_mut() {
                            match self.numbers.webhooks_of(number.internal_id).await {
                                Ok(webhooks) => number.webhooks = webhooks,
                                Err(error) => {
                                    tracing::debug!(%error, "spill drain waits for the database");
                                    return;
                                }
                            }
                        }
                        recordings.push(recording);
                    }
                    Err(error) => {
                        // Checksummed, so written by a wagate whose recordings differ from this
                        // one's (a downgrade): nothing here can apply it.
                        tracing::error!(%error, "a spilled recording this version cannot read; skipped");
                        metrics::counter!("wagate_recordings_dropped_total").increment(1);
                    }
                }
            }
            let applied = recordings.len() as u64;
            let results =
                futures::future::join_all(recordings.into_iter().map(|r| self.shards.replay(r)))
                    .await;
            if results
                .iter()
                .any(|r| matches!(r, Err(StoreError::Unavailable(_))))
            {
                return;
            }
            for error in results.iter().filter_map(|r| r.as_ref().err()) {
                tracing::error!(error = ?error, "a spilled recording could not be applied; skipped");
            }
            if let Err(error) = spill.drained(end, count).await {
                tracing::error!(%error, "could not mark spilled recordings drained (they will be applied again, which changes nothing)");
                return;
            }
            self.stats.count_drained(applied);
            tracing::info!(
                records = count,
                "spilled recordings applied to the database"
            );
        }
    }
}
