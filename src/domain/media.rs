//! The media vault's downloads: every media message recorded (inbound, echoes, outbound by id)
//! queues a `media_files` row in its own transaction; workers here claim due rows, ask Graph
//! where the bytes are (`GET /{media_id}` with the number's token), stream them into the
//! [`MediaVault`] checked against Meta's sha256, and record the outcome under the claim's lease.
//!
//! Failures that can pass (Graph 5xx or throttling, timeouts, the store unavailable) are retried
//! with doubling delays until `media.give_up_after`; the rest (hash mismatch, too large, Meta no
//! longer has the media, the number is gone) are recorded once as `failed`, with a reason the
//! message then shows. A crash mid-download leaves the row leased; the lease expires and any
//! instance downloads it again, and content addressing keeps one copy.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::number_directory::NumberDirectory;
use crate::config::MediaConfig;
use crate::graph::{Download, GraphCallError, GraphClient, LinkClient, LinkError};
use crate::store::{
    DynStore, FinishedDownload, MediaFileRow, MediaOutcome, MediaState, MessageRow,
};
use crate::vault::{MediaVault, VaultError};

/// The Graph version of the media calls.
const VERSION: &str = "v23.0";

/// The download row for a media message just recorded, when it names something to download.
pub fn queued_download(
    message: &MessageRow,
    phone_number_id: &str,
    raw: &Value,
    now: DateTime<Utc>,
) -> Option<MediaFileRow> {
    let payload = raw.get(&message.message_type)?;
    let text = |key: &str| {
        payload
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    // Media names what to download by Meta's id (inbound, echoes, uploads) or by the link an
    // outbound message gave; without either there is nothing to keep.
    let media_id = text("id");
    let source_url = text("link");
    if media_id.is_none() && source_url.is_none() {
        return None;
    }
    Some(MediaFileRow {
        id: Uuid::now_v7(),
        project_id: message.project_id,
        phone_number_internal_id: message.phone_number_internal_id,
        phone_number_id: phone_number_id.to_owned(),
        wamid: message.wamid.clone(),
        direction: message.direction.to_string(),
        media_id,
        source_url,
        expected_sha256: text("sha256"),
        sha256: None,
        content_type: text("mime_type"),
        filename: text("filename"),
        byte_size: None,
        state: MediaState::Pending.as_str().into(),
        attempts: 0,
        next_attempt_at: now,
        lease_token: None,
        last_error: None,
        created_at: now,
        updated_at: now,
        stored_at: None,
    })
}

/// Removes files no message uses any more (a disconnected number's). A file some message
/// started using meanwhile (a download finishing right now) is kept: each is checked again
/// just before it goes. Failures are logged; the file then stays, unused.
pub async fn remove_files(store: &dyn crate::store::Store, vault: &MediaVault, sha256s: &[String]) {
    for sha256 in sha256s {
        match store.media_file_in_use(sha256).await {
            Ok(false) => {
                if let Err(error) = vault.delete(sha256).await {
                    tracing::warn!(%error, "removing a media file failed; it stays in the store unused");
                }
            }
            Ok(true) => {}
            Err(error) => tracing::warn!(%error, "checking a media file's use failed; it stays"),
        }
    }
}

/// How many rows one retention statement expires; a sweep repeats until fewer come back.
const EXPIRE_BATCH: u32 = 500;

/// `media.retention`: every `media.sweep_interval`, marks files stored longer ago than the
/// retention as `expired` and removes those no stored row still uses (the same file kept for a
/// newer message stays). Each instance may run it: the update claims rows with `skip locked`.
pub async fn expire_old_files(
    store: DynStore,
    vault: MediaVault,
    config: MediaConfig,
    stop: CancellationToken,
) {
    let Some(retention) = config.retention else {
        return;
    };
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let mut tick = tokio::time::interval(config.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut expired = 0usize;
        loop {
            let now = crate::store::now();
            let Some(before) = now.checked_sub_signed(retention) else {
                break;
            };
            match store.expire_stored_media(before, now, EXPIRE_BATCH).await {
                Ok(files) => {
                    let done = files.len() < EXPIRE_BATCH as usize;
                    expired += files.len();
                    remove_files(store.as_ref(), &vault, &files).await;
                    if done {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "the media retention sweep failed; it runs again after media.sweep_interval");
                    break;
                }
            }
        }
        if expired > 0 {
            tracing::info!(files = expired, "media past media.retention removed");
        }
    }
}

/// What a download worker needs. Cheap to clone.
#[derive(Clone)]
pub struct MediaDownloads {
    store: DynStore,
    numbers: NumberDirectory,
    graph: GraphClient,
    links: LinkClient,
    vault: MediaVault,
    config: MediaConfig,
}

impl MediaDownloads {
    pub fn new(
        store: DynStore,
        numbers: NumberDirectory,
        graph: GraphClient,
        links: LinkClient,
        vault: MediaVault,
        config: MediaConfig,
    ) -> Self {
        Self {
            store,
            numbers,
            graph,
            links,
            vault,
            config,
        }
    }

    /// Claims and downloads until `stop`: at once when `wake` fires (a local ingest queued
    /// something), else every `media.poll_interval`.
    pub async fn run(self, wake: Arc<Notify>, stop: CancellationToken) {
        // Writes a killed process left half-done: their claims have expired after a lease.
        self.vault.sweep_incoming(self.config.lease).await;
        let max = self.config.max_in_flight.max(1);
        // Claims wait until half the slots are free, so a busy queue costs one claim statement
        // per several downloads (on SQLite every statement takes the one write lock ingest
        // needs too).
        let refill_at = (max / 2).max(1);
        let slots = Arc::new(Semaphore::new(max));
        let freed = Arc::new(Notify::new());
        let (finished, outcomes) = mpsc::unbounded_channel();
        tokio::spawn(self.clone().record_outcomes(outcomes));
        let mut last_depth_report = tokio::time::Instant::now();
        loop {
            if stop.is_cancelled() {
                return;
            }
            if last_depth_report.elapsed() >= Duration::from_secs(5) {
                self.report_depth().await;
                last_depth_report = tokio::time::Instant::now();
            }
            let free = slots.available_permits();
            if free < refill_at {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = freed.notified() => {}
                }
                continue;
            }
            let claimed = match self
                .store
                .claim_media_downloads(crate::store::now(), self.config.lease, free as u32)
                .await
            {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::warn!(%error, "claiming media downloads failed; retrying after the poll interval");
                    Vec::new()
                }
            };
            let drained = claimed.len() < free;
            for row in claimed {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    break;
                };
                let (this, finished, freed) = (self.clone(), finished.clone(), freed.clone());
                tokio::spawn(async move {
                    let outcome = this.outcome(&row).await;
                    // Claimed rows always carry their lease token.
                    if let Some(lease_token) = row.lease_token {
                        let _ = finished.send(FinishedDownload {
                            id: row.id,
                            lease_token,
                            outcome,
                        });
                    }
                    drop(permit);
                    freed.notify_one();
                });
            }
            if drained {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(self.config.poll_interval) => {}
                }
            }
        }
    }

    /// Records finished downloads in batches (one transaction for all that finished meanwhile),
    /// each under its claim's lease, until every download task has ended.
    async fn record_outcomes(self, mut outcomes: mpsc::UnboundedReceiver<FinishedDownload>) {
        const BATCH: usize = 256;
        // Outcomes that finish within this of the first share its transaction: at hundreds of
        // downloads a second, a few write transactions a second instead of one per download,
        // each of which would hold SQLite's write lock that webhook ingest waits on.
        const LINGER: Duration = Duration::from_millis(10);
        while let Some(first) = outcomes.recv().await {
            tokio::time::sleep(LINGER).await;
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match outcomes.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            match self
                .store
                .finish_media_downloads(&batch, crate::store::now())
                .await
            {
                Ok(recorded) => {
                    for (done, kept) in batch.iter().zip(recorded) {
                        if kept {
                            self.confirm_still_kept(done).await;
                        } else {
                            tracing::info!(media = %done.id, "media download finished after its lease ran out; the newer claim decides");
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, downloads = batch.len(), "recording media downloads failed; their leases expire and they run again")
                }
            }
        }
    }

    /// With `media.retention`, a sweep may have removed this very file (an older message's copy)
    /// between the download and its record; the row then goes back in the queue rather than
    /// point at nothing.
    async fn confirm_still_kept(&self, done: &FinishedDownload) {
        let MediaOutcome::Stored { sha256, .. } = &done.outcome else {
            return;
        };
        if self.config.retention.is_none() {
            return;
        }
        if let Ok(false) = self.vault.contains(sha256).await {
            tracing::info!(media = %done.id, "a retention sweep removed the file just kept; downloading it again");
            if let Err(error) = self
                .store
                .requeue_media_file(done.id, crate::store::now())
                .await
            {
                tracing::warn!(media = %done.id, %error, "re-queueing a media download failed");
            }
        }
    }

    async fn report_depth(&self) {
        let now = crate::store::now();
        if let Ok((depth, oldest)) = self.store.media_queue_depth(now).await {
            metrics::gauge!("wagate_media_queue_depth").set(depth as f64);
            let age = oldest.map_or(0.0, |t| (now - t).num_milliseconds() as f64 / 1000.0);
            metrics::gauge!("wagate_media_queue_oldest_seconds").set(age.max(0.0));
        }
    }

    /// Runs one claimed download to the outcome to record (counted in the metrics).
    async fn outcome(&self, row: &MediaFileRow) -> MediaOutcome {
        let outcome = match self.download(row).await {
            Ok(outcome) => outcome,
            Err(failure) => self.outcome_of(row, failure),
        };
        let label = match &outcome {
            MediaOutcome::Stored { byte_size, .. } => {
                metrics::counter!("wagate_media_bytes_total").increment(*byte_size as u64);
                "stored"
            }
            MediaOutcome::Retry { .. } => "retry",
            MediaOutcome::Failed { .. } => "failed",
        };
        metrics::counter!("wagate_media_downloads_total", "outcome" => label).increment(1);
        outcome
    }

    /// Keeps one message's media: `Ok` with the outcome to record, `Err` with why not.
    async fn download(&self, row: &MediaFileRow) -> Result<MediaOutcome, Failure> {
        let number = self
            .numbers
            .number(&row.phone_number_id)
            .await
            .map_err(|e| Failure::Retry(format!("reading the number failed: {e}")))?
            .filter(|n| n.internal_id == row.phone_number_internal_id)
            .ok_or_else(|| Failure::Permanent("the phone number is no longer connected".into()))?;
        // Already kept (the same file in another message): no download at all.
        if let Some(hex) = row
            .expected_sha256
            .as_deref()
            .and_then(crate::vault::checksum_hex)
        {
            if let Some(size) = self.vault.size_of(&hex).await.map_err(store_failure)? {
                return Ok(stored(hex, size, row.content_type.clone()));
            }
        }
        let Some(media_id) = row.media_id.as_deref() else {
            return self.fetch_link(row).await;
        };
        // Uploaded through wagate: kept while it streamed to Meta, nothing to download.
        if let Some(upload) = self
            .store
            .kept_upload(row.phone_number_internal_id, media_id)
            .await
            .map_err(|e| Failure::Retry(format!("reading the kept upload failed: {e}")))?
        {
            if let Some(hex) = upload.sha256 {
                if let Some(size) = self.vault.size_of(&hex).await.map_err(store_failure)? {
                    return Ok(stored(
                        hex,
                        size,
                        upload.content_type.or(row.content_type.clone()),
                    ));
                }
            }
        }
        let node = self
            .graph
            .media_node(
                VERSION,
                number.authorization.clone(),
                media_id,
                &row.phone_number_id,
            )
            .await
            .map_err(graph_failure)?;
        if node
            .file_size
            .is_some_and(|size| size > self.config.max_bytes)
        {
            return Err(too_large(self.config.max_bytes));
        }
        if !self.graph.is_media_host(&node.url) {
            return Err(Failure::Permanent(
                "Graph named a media URL outside Meta's media hosts".into(),
            ));
        }
        let expected = row.expected_sha256.clone().or(node.sha256.clone());
        let response = self
            .graph
            .media_bytes(&node.url, number.authorization.clone())
            .await
            .map_err(graph_failure)?;
        self.keep(
            response,
            expected.as_deref(),
            node.mime_type.or(row.content_type.clone()),
        )
        .await
    }

    /// Media an outbound message sent by `link`: fetched once, through the SSRF rules.
    async fn fetch_link(&self, row: &MediaFileRow) -> Result<MediaOutcome, Failure> {
        let Some(link) = row.source_url.as_deref() else {
            return Err(Failure::Permanent(
                "the message names no media to keep".into(),
            ));
        };
        let response = self.links.fetch(link).await.map_err(|error| match error {
            LinkError::Refused(reason) => Failure::Permanent(reason),
            LinkError::Unavailable(reason) => Failure::Retry(reason),
        })?;
        if response
            .content_length
            .is_some_and(|size| size > self.config.max_bytes)
        {
            return Err(too_large(self.config.max_bytes));
        }
        let content_type = row.content_type.clone().or(response.content_type.clone());
        self.keep(response, None, content_type).await
    }

    /// Streams a download's body into the vault, within the size cap and the time limit.
    async fn keep(
        &self,
        response: Download,
        expected: Option<&str>,
        content_type: Option<String>,
    ) -> Result<MediaOutcome, Failure> {
        let put = self
            .vault
            .put_stream(response.body, expected, self.config.max_bytes);
        let blob = tokio::time::timeout(self.config.download_timeout, put)
            .await
            .map_err(|_| {
                Failure::Retry("the download took longer than media.download_timeout".into())
            })?
            .map_err(vault_failure)?;
        Ok(stored(blob.sha256, blob.byte_size, content_type))
    }

    fn outcome_of(&self, row: &MediaFileRow, failure: Failure) -> MediaOutcome {
        let now = crate::store::now();
        match failure {
            Failure::Permanent(error) => MediaOutcome::Failed { error },
            Failure::Retry(error) => {
                let give_up = chrono::Duration::from_std(self.config.give_up_after)
                    .unwrap_or(chrono::Duration::days(7));
                if now - row.created_at >= give_up {
                    return MediaOutcome::Failed {
                        error: format!("gave up after media.give_up_after: {error}"),
                    };
                }
                MediaOutcome::Retry {
                    at: now + backoff(&self.config, row.attempts),
                    error,
                }
            }
        }
    }
}

/// Why a download did not keep the file.
enum Failure {
    Retry(String),
    Permanent(String),
}

fn stored(sha256: String, byte_size: u64, content_type: Option<String>) -> MediaOutcome {
    MediaOutcome::Stored {
        sha256,
        byte_size: i64::try_from(byte_size).unwrap_or(i64::MAX),
        content_type,
    }
}

fn too_large(limit: u64) -> Failure {
    Failure::Permanent(format!(
        "the file is larger than media.max_bytes ({limit} bytes)"
    ))
}

fn graph_failure(error: GraphCallError) -> Failure {
    if error.retryable() {
        return Failure::Retry(error.to_string());
    }
    match &error {
        GraphCallError::Refused { status: 404, .. }
        | GraphCallError::Refused {
            code: Some(100), ..
        } => Failure::Permanent(format!("Meta no longer has this media ({error})")),
        _ => Failure::Permanent(error.to_string()),
    }
}

/// Store errors can name paths or buckets: those go to the log, a neutral reason to the row.
fn store_failure(error: VaultError) -> Failure {
    tracing::warn!(%error, "media store unavailable; the download is retried");
    Failure::Retry("the media store is unavailable".into())
}

fn vault_failure(error: VaultError) -> Failure {
    match error {
        VaultError::TooLarge { limit } => too_large(limit),
        VaultError::HashMismatch { .. } => Failure::Permanent(error.to_string()),
        VaultError::Source(detail) => Failure::Retry(format!("the download broke off: {detail}")),
        other => store_failure(other),
    }
}

/// `backoff_initial` doubled per attempt, at most `backoff_max`.
fn backoff(config: &MediaConfig, attempts: i32) -> chrono::Duration {
    let factor = 2u32.saturating_pow(attempts.clamp(0, 30) as u32);
    let delay = config
        .backoff_initial
        .saturating_mul(factor)
        .min(config.backoff_max);
    chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::minutes(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = crate::config::Config::defaults().media;
        assert_eq!(backoff(&config, 0), chrono::Duration::seconds(2));
        assert_eq!(backoff(&config, 3), chrono::Duration::seconds(16));
        assert_eq!(backoff(&config, 40), chrono::Duration::minutes(10));
    }
}
