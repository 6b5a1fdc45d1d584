//! Where a recording goes when the database cannot take it: the spill file first (answered after
//! its group's fsync), the memory buffer when there is no spill file or it is full or failing.
//!
//! A full spill file cannot push back: Meta already accepted the send. The recording is kept in
//! memory (oldest dropped beyond `writer.retry_buffer`, counted in
//! `wagate_recordings_dropped_total`), counted in `wagate_recordings_not_durable_total`, logged
//! with what to do, and `/readyz` answers 503 until the file has room again.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::job::{Durability, Job, WriterStats};
use crate::domain::recorder::Recording;
use crate::domain::spill::{Spill, SpillError};
use crate::store::{StoreError, StoreResult};

type Reply = Option<oneshot::Sender<Durability>>;

/// Recordings held only in memory: those queued, and those the drain took out for a retry round
/// and has not placed yet. Both count as held (the gauge, `/readyz`'s `memory_only`): while a
/// round runs they are still in this process only.
#[derive(Default)]
struct MemoryBuffer {
    queue: VecDeque<Recording>,
    in_retry: usize,
}

impl MemoryBuffer {
    fn depth(&self) -> usize {
        self.queue.len() + self.in_retry
    }
}

pub(super) struct Held {
    pub(super) spill: Option<Spill>,
    memory: Mutex<MemoryBuffer>,
    capacity: usize,
    stats: Arc<WriterStats>,
}

impl Held {
    pub(super) fn new(spill: Option<Spill>, capacity: usize, stats: Arc<WriterStats>) -> Self {
        Self {
            spill,
            memory: Mutex::new(MemoryBuffer::default()),
            capacity,
            stats,
        }
    }

    /// Answers each job of a batch with its outcome; recordings the database could not take are
    /// held (one spill group for the whole batch).
    pub(super) fn finish(
        self: &Arc<Self>,
        jobs: Vec<Job>,
        mut outcome: impl FnMut() -> StoreResult<()>,
    ) {
        let mut to_hold = Vec::new();
        for job in jobs {
            let result = outcome();
            match job {
                Job::Ingest(_, reply) => {
                    let _ = reply.send(result);
                }
                Job::Replay(_, reply) => {
                    let _ = reply.send(result);
                }
                Job::Record(recording, reply) => match result {
                    Err(StoreError::Unavailable(_)) => to_hold.push((recording, reply)),
                    Ok(()) => answer(reply, Durability::Committed),
                    Err(error) => {
                        // Not retryable (a bug or bad data): logged, never blocks the client.
                        tracing::error!(error = ?error, "could not record a proxied message");
                        answer(reply, Durability::Committed);
                    }
                },
            }
        }
        if !to_hold.is_empty() {
            self.hold(to_hold);
        }
    }

    pub(super) fn spill_holds_records(&self) -> bool {
        self.spill.as_ref().is_some_and(|s| s.stats.holds_records())
    }

    /// Spills one recording (queued behind records already in the file).
    pub(super) async fn spill_one(self: &Arc<Self>, recording: Recording) -> Durability {
        let (tx, rx) = oneshot::channel();
        self.hold(vec![(recording, Some(tx))]);
        rx.await.unwrap_or(Durability::Buffered)
    }

    /// Moves a recording the memory buffer held into the spill file; gives it back when the
    /// file cannot take it. Counted as spilled once written, never again as kept in memory.
    pub(super) async fn spill_again(&self, recording: Recording) -> Result<(), Recording> {
        let Some(spill) = &self.spill else {
            return Err(recording);
        };
        let payload = serde_json::to_vec(&recording).expect("a recording serialises");
        match spill.append(vec![payload]).await {
            Ok(()) => {
                self.stats.count_spilled(1);
                Ok(())
            }
            Err(error) => {
                tracing::debug!(%error, "a buffered recording still finds no room in the spill file");
                Err(recording)
            }
        }
    }

    /// Queues the recordings on the spill file in order (synchronously) and answers each after
    /// the fsync; to memory when that fails.
    fn hold(self: &Arc<Self>, recordings: Vec<(Recording, Reply)>) {
        let Some(spill) = &self.spill else {
            for (recording, reply) in recordings {
                answer(reply, self.keep_in_memory(recording));
            }
            return;
        };
        let payloads = recordings
            .iter()
            .map(|(r, _)| serde_json::to_vec(r).expect("a recording serialises"))
            .collect();
        let written = spill.append(payloads);
        let held = self.clone();
        tokio::spawn(async move {
            match written.await {
                Ok(()) => {
                    held.stats.count_spilled(recordings.len() as u64);
                    for (_, reply) in recordings {
                        answer(reply, Durability::Spilled);
                    }
                }
                Err(error) => {
                    let count = recordings.len() as u64;
                    held.stats
                        .not_durable_recordings
                        .fetch_add(count, Ordering::Relaxed);
                    metrics::counter!("wagate_recordings_not_durable_total").increment(count);
                    let advice = match error {
                        SpillError::Full(_) => {
                            "bring the database back or raise writer.spill_max_bytes"
                        }
                        _ => "check the disk holding writer.spill_path",
                    };
                    tracing::error!(
                        %error,
                        recordings = count,
                        "recordings kept in memory only: they are lost if wagate stops before \
                         the database is back; {advice}"
                    );
                    for (recording, reply) in recordings {
                        answer(reply, held.keep_in_memory(recording));
                    }
                }
            }
        });
    }

    fn keep_in_memory(&self, recording: Recording) -> Durability {
        let mut memory = self.memory.lock().expect("buffer lock");
        if memory.queue.len() >= self.capacity {
            memory.queue.pop_front();
            self.stats
                .dropped_recordings
                .fetch_add(1, Ordering::Relaxed);
            metrics::counter!("wagate_recordings_dropped_total").increment(1);
            tracing::error!(
                "recording retry buffer full (writer.retry_buffer); dropped the oldest recording"
            );
        }
        memory.queue.push_back(recording);
        self.stats
            .buffered_recordings
            .fetch_add(1, Ordering::Relaxed);
        metrics::counter!("wagate_recordings_buffered_total").increment(1);
        self.publish(memory.depth());
        Durability::Buffered
    }

    pub(super) fn memory_depth(&self) -> usize {
        self.memory.lock().expect("buffer lock").depth()
    }

    /// Everything in memory, for the drain to try again. Still counted as held until placed
    /// ([`Held::placed_from_memory`]) or given back ([`Held::return_to_memory`]).
    pub(super) fn take_memory(&self) -> Vec<Recording> {
        let mut memory = self.memory.lock().expect("buffer lock");
        let taken: Vec<Recording> = memory.queue.drain(..).collect();
        memory.in_retry = taken.len();
        taken
    }

    /// One recording of a retry round left memory (applied, spilled, or skipped as unusable).
    pub(super) fn placed_from_memory(&self) {
        let mut memory = self.memory.lock().expect("buffer lock");
        memory.in_retry = memory.in_retry.saturating_sub(1);
        self.publish(memory.depth());
    }

    /// Puts back what the drain could not apply, ahead of anything held since; ends the round.
    pub(super) fn return_to_memory(&self, rest: Vec<Recording>) {
        let mut memory = self.memory.lock().expect("buffer lock");
        memory.in_retry = 0;
        for recording in rest.into_iter().rev() {
            memory.queue.push_front(recording);
        }
        while memory.queue.len() > self.capacity {
            memory.queue.pop_front();
            self.stats
                .dropped_recordings
                .fetch_add(1, Ordering::Relaxed);
            metrics::counter!("wagate_recordings_dropped_total").increment(1);
        }
        self.publish(memory.depth());
    }

    fn publish(&self, depth: usize) {
        self.stats
            .buffer_depth
            .store(depth as u64, Ordering::Relaxed);
        metrics::gauge!("wagate_recording_buffer_depth").set(depth as f64);
    }
}

fn answer(reply: Reply, durability: Durability) {
    if let Some(reply) = reply {
        let _ = reply.send(durability);
    }
}
