//! The delivery worker: claim due outbox rows, POST each to its number's destination outside any
//! transaction, and record the outcome.
//!
//! Concurrency is bounded twice: `max_in_flight` attempts per instance, and `per_destination`
//! attempts per destination origin. A claimed delivery whose destination is at its limit is put
//! back (due again shortly, no attempt counted) instead of waiting on a slot, so one slow
//! receiver can hold at most `per_destination` slots and never delays the others. Outcomes are
//! committed in batches by one finisher task, so thousands of deliveries a second cost a few
//! transactions (`finisher`). A crash loses nothing: an unfinished claim comes due again when its
//! lease ends. A stop (SIGTERM) claims nothing more, puts back at once what waits for a
//! destination slot, lets attempts in flight finish within `server.shutdown_grace`, and hands the
//! rest back (due now) instead of leaving them to their leases.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng as _;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::finisher::{self, FINISH_BATCH};
pub use super::request::client;
use super::request::{self, Answer, Ready, Signing};
use super::schedule::Backoff;
use crate::config::DeliveryConfig;
use crate::destination_guard::{self as guard, DestinationPolicy};
use crate::domain::number_directory::NumberDirectory;
use crate::store::{
    AttemptRow, ClaimedDelivery, DeliveryOutcome, DeliveryRow, DeliveryStatus, DynStore,
    ProcessingStatus, StoreError, WebhookResult,
};

/// How long a delivery put back for a busy destination waits.
const BUSY_DESTINATION_DELAY: Duration = Duration::from_millis(500);

/// One destination's attempts in flight, and the claimed deliveries queued for it here.
struct Destination {
    slots: Arc<Semaphore>,
    waiting: std::sync::atomic::AtomicUsize,
}
pub struct Worker {
    store: DynStore,
    numbers: NumberDirectory,
    client: reqwest::Client,
    config: DeliveryConfig,
    policy: DestinationPolicy,
    backoff: Backoff,
    wake: Arc<Notify>,
    in_flight: Arc<Semaphore>,
    destinations: Mutex<HashMap<String, Arc<Destination>>>,
    outcomes: mpsc::Sender<DeliveryOutcome>,
    /// Claimed here and not yet finished: what a stop hands back (due now, no attempt counted).
    leased: Mutex<HashMap<Uuid, DeliveryOutcome>>,
    stop: CancellationToken,
}

/// Starts the worker and its finisher on the current runtime; they stop claiming when `stop`
/// is cancelled. The handle resolves once the worker has drained (within `grace`) and its
/// outcomes are committed.
pub fn start(
    store: DynStore,
    numbers: NumberDirectory,
    config: DeliveryConfig,
    wake: Arc<Notify>,
    stop: CancellationToken,
    grace: Duration,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (outcomes, finished) = mpsc::channel(FINISH_BATCH * 4);
    let closing = CancellationToken::new();
    let finisher = tokio::spawn(finisher::run(
        store.clone(),
        finished,
        config.pause_after_failures,
        closing.clone(),
    ));
    tokio::spawn(depth_reporter(store.clone(), stop.clone()));
    let worker = Arc::new(Worker {
        client: client(&config)?,
        policy: DestinationPolicy::from_config(&config),
        backoff: Backoff::from_config(&config),
        in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
        destinations: Mutex::default(),
        store,
        numbers,
        config,
        wake,
        outcomes,
        leased: Mutex::default(),
        stop: stop.clone(),
    });
    Ok(tokio::spawn(async move {
        worker.clone().run(stop).await;
        worker.drain(grace).await;
        closing.cancel();
        if tokio::time::timeout(Duration::from_secs(10), finisher)
            .await
            .is_err()
        {
            tracing::warn!(
                "delivery outcomes still being recorded at exit; their leases will bring them back"
            );
        }
    }))
}

impl Worker {
    async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut failures = 0u32;
        while !stop.is_cancelled() {
            // Claim only what can start now, so claimed rows never wait on this instance.
            let free = match self.in_flight.clone().acquire_owned().await {
                Ok(permit) => {
                    drop(permit);
                    self.in_flight.available_permits()
                }
                Err(_) => return,
            };
            let limit = free.min(self.config.claim_batch) as u32;
            let claimed = self
                .store
                .claim_deliveries(crate::store::now(), self.config.lease, limit)
                .await;
            let claimed = match claimed {
                Ok(claimed) => {
                    failures = 0;
                    claimed
                }
                Err(error) => {
                    failures += 1;
                    if failures == 1 || failures % 60 == 0 {
                        tracing::warn!(%error, "cannot claim webhook deliveries; retrying");
                    }
                    self.idle(&stop).await;
                    continue;
                }
            };
            let full = claimed.len() as u32 == limit;
            {
                let mut leased = self.leased.lock().expect("leased lock");
                for delivery in &claimed {
                    leased.insert(delivery.row.id, handed_back(&delivery.row));
                }
            }
            for delivery in claimed {
                let permit = self
                    .in_flight
                    .clone()
                    .try_acquire_owned()
                    .expect("claimed no more than the free slots");
                tokio::spawn(self.clone().deliver(delivery, permit));
            }
            if !full {
                self.idle(&stop).await;
            }
        }
    }

    /// After a stop: attempts in flight get until `grace`; what is still claimed then is handed
    /// back, due now, so another instance (or this one restarted) takes it without waiting for
    /// the lease.
    async fn drain(&self, grace: Duration) {
        let all = u32::try_from(self.config.max_in_flight).unwrap_or(u32::MAX);
        let finished = tokio::time::timeout(grace, self.in_flight.acquire_many(all))
            .await
            .is_ok();
        let rest: Vec<DeliveryOutcome> = self
            .leased
            .lock()
            .expect("leased lock")
            .drain()
            .map(|(_, outcome)| outcome)
            .collect();
        if rest.is_empty() {
            tracing::info!("delivery worker stopped; nothing left in flight");
            return;
        }
        if !finished {
            tracing::warn!(
                deliveries = rest.len(),
                grace = ?grace,
                "deliveries still in flight after server.shutdown_grace are handed back; their receivers may get them twice"
            );
        }
        let handed = rest.len();
        for outcome in rest {
            if self.outcomes.send(outcome).await.is_err() {
                break;
            }
        }
        metrics::counter!("wagate_deliveries_handed_back_total").increment(handed as u64);
        tracing::info!(
            deliveries = handed,
            "handed claimed deliveries back for others to take now"
        );
    }

    /// Waits for a wake-up (new rows here or, on PostgreSQL, anywhere) or the poll interval.
    async fn idle(&self, stop: &CancellationToken) {
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(self.config.poll_interval) => {}
            _ = stop.cancelled() => {}
        }
    }

    fn destination(&self, origin: &str) -> Arc<Destination> {
        let mut map = self.destinations.lock().expect("destinations lock");
        map.entry(origin.to_owned())
            .or_insert_with(|| {
                Arc::new(Destination {
                    slots: Arc::new(Semaphore::new(self.config.per_destination)),
                    waiting: std::sync::atomic::AtomicUsize::new(0),
                })
            })
            .clone()
    }

    /// A slot of the destination: at once, or after queueing behind its running attempts. A
    /// destination may queue at most half of this instance's in-flight slots (so a slow one
    /// never holds them all), and a delivery waits at most half of what its lease leaves after
    /// the attempt's own timeout (so it is never claimed again while it waits); otherwise `None`
    /// and the delivery goes back to the outbox.
    async fn destination_slot(&self, origin: &str) -> Option<OwnedSemaphorePermit> {
        use std::sync::atomic::Ordering;
        let destination = self.destination(origin);
        if let Ok(slot) = destination.slots.clone().try_acquire_owned() {
            return Some(slot);
        }
        let cap = (self.config.max_in_flight / 2).max(1);
        if destination.waiting.fetch_add(1, Ordering::SeqCst) >= cap {
            destination.waiting.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let patience = self
            .config
            .lease
            .saturating_sub(self.config.request_timeout)
            / 2;
        let slot = tokio::select! {
            slot = tokio::time::timeout(patience, destination.slots.clone().acquire_owned()) => {
                slot.ok().and_then(Result::ok)
            }
            // Stopping: back to the outbox now rather than after the wait.
            () = self.stop.cancelled() => None,
        };
        destination.waiting.fetch_sub(1, Ordering::SeqCst);
        slot
    }

    async fn deliver(self: Arc<Self>, claimed: ClaimedDelivery, _slot: OwnedSemaphorePermit) {
        let outcome = self.attempt(&claimed).await;
        if self
            .leased
            .lock()
            .expect("leased lock")
            .remove(&claimed.row.id)
            .is_none()
        {
            // Handed back by a stop while this attempt ran: the hand-back is what counts.
            return;
        }
        // Per number: bounded by the numbers connected, and where an operator looks first.
        metrics::counter!(
            "wagate_deliveries_total",
            "outcome" => outcome_label(&outcome),
            "phone_number_id" => claimed.row.phone_number_id.clone()
        )
        .increment(1);
        if self.outcomes.send(outcome).await.is_err() {
            tracing::error!("delivery finisher stopped; the lease will bring this delivery back");
        }
    }

    async fn attempt(&self, claimed: &ClaimedDelivery) -> DeliveryOutcome {
        let row = &claimed.row;
        let now = crate::store::now();
        let mut outcome = DeliveryOutcome {
            delivery_id: row.id,
            lease_token: row.lease_token.unwrap_or_default(),
            attempt: None,
            status: DeliveryStatus::Pending,
            next_attempt_at: now,
            last_status_code: None,
            last_error: None,
            delivered_at: None,
            processing_status: None,
            phone_number_internal_id: row.phone_number_internal_id,
            message_wamids: row.message_wamids.clone(),
            at: now,
            webhook_id: None,
            webhook_result: WebhookResult::Untried,
        };
        outcome.webhook_id = row.webhook_id;
        let target = match self.target(row).await {
            Ok(target) => target,
            Err(error) => {
                // The database is away: try again after a short pause, no attempt counted.
                outcome.status = if row.attempts == 0 {
                    DeliveryStatus::Pending
                } else {
                    DeliveryStatus::Failed
                };
                outcome.next_attempt_at = now + chrono::Duration::seconds(5);
                outcome.last_error = Some(format!("could not load the webhook: {error}"));
                return outcome;
            }
        };
        let target = match target {
            Target::Gone(why) => {
                outcome.status = DeliveryStatus::Dead;
                outcome.processing_status = Some(ProcessingStatus::Failed);
                let never_sent = Try {
                    delivery_id: row.id,
                    attempt: row.attempts + 1,
                    started_at: now,
                    duration_ms: 0,
                    destination: "",
                };
                outcome.attempt = Some(never_sent.row(None, None, Some(why)));
                outcome.last_error = Some(why.into());
                return outcome;
            }
            Target::Paused => {
                // Held until the webhook is resumed (PATCH active: true makes it due again).
                outcome.status = DeliveryStatus::Paused;
                outcome.last_error = row.last_error.clone();
                return outcome;
            }
            Target::Ready(target) => target,
        };
        let url = target.url.clone();
        let origin = url::Url::parse(&url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| url.clone());
        let Some(_destination) = self.destination_slot(&origin).await else {
            // Busy destination: back in the queue, no attempt counted.
            outcome.status = if row.attempts == 0 {
                DeliveryStatus::Pending
            } else {
                DeliveryStatus::Failed
            };
            outcome.next_attempt_at =
                now + chrono::Duration::from_std(BUSY_DESTINATION_DELAY).expect("small duration");
            outcome.last_error = row.last_error.clone();
            return outcome;
        };

        // The attempt starts once the destination has a slot (queueing is not the receiver's).
        let now = crate::store::now();
        let started = Instant::now();
        let result = self.post(&url, claimed, &target).await;
        let elapsed = started.elapsed();
        metrics::histogram!("wagate_delivery_duration_seconds").record(elapsed.as_secs_f64());
        let duration_ms = i32::try_from(elapsed.as_millis()).unwrap_or(i32::MAX);
        let attempt_no = row.attempts + 1;
        let finished = crate::store::now();
        outcome.at = finished;
        let this_try = Try {
            delivery_id: row.id,
            attempt: attempt_no,
            started_at: now,
            duration_ms,
            destination: &url,
        };
        match result {
            Ok(answer) if (200..300).contains(&answer.status) => {
                outcome.webhook_result = WebhookResult::Succeeded;
                outcome.status = DeliveryStatus::Succeeded;
                outcome.delivered_at = Some(finished);
                outcome.processing_status = Some(ProcessingStatus::Completed);
                outcome.last_status_code = Some(i32::from(answer.status));
                outcome.attempt =
                    Some(this_try.row(Some(answer.status), Some(answer.excerpt), None));
            }
            Ok(answer) => {
                outcome.webhook_result = WebhookResult::Failed;
                let error = format!("receiver answered {}", answer.status);
                outcome.last_status_code = Some(i32::from(answer.status));
                outcome.attempt =
                    Some(this_try.row(Some(answer.status), Some(answer.excerpt), Some(&error)));
                self.schedule_retry(
                    &mut outcome,
                    row.created_at,
                    attempt_no,
                    answer.retry_after,
                    error,
                );
            }
            Err(error) => {
                outcome.webhook_result = WebhookResult::Failed;
                outcome.attempt = Some(this_try.row(None, None, Some(&error)));
                self.schedule_retry(&mut outcome, row.created_at, attempt_no, None, error);
            }
        }
        outcome
    }

    fn schedule_retry(
        &self,
        outcome: &mut DeliveryOutcome,
        created_at: DateTime<Utc>,
        failures: i32,
        retry_after: Option<Duration>,
        error: String,
    ) {
        let unit = rand::thread_rng().gen::<f64>();
        let next = self.backoff.next_attempt(
            created_at,
            outcome.at,
            u32::try_from(failures).unwrap_or(u32::MAX),
            retry_after,
            unit,
        );
        outcome.last_error = Some(error);
        match next {
            Some(at) => {
                outcome.status = DeliveryStatus::Failed;
                outcome.next_attempt_at = at;
            }
            None => {
                outcome.status = DeliveryStatus::Dead;
                outcome.next_attempt_at = outcome.at;
                outcome.processing_status = Some(ProcessingStatus::Failed);
                tracing::warn!(
                    delivery_id = %outcome.delivery_id,
                    "webhook delivery dead-lettered after its retry schedule; replay it once the receiver is fixed"
                );
            }
        }
    }

    /// Where a delivery goes: its webhook, with the secret that signs it.
    /// One POST. `Err` is a transport failure or a refused destination, said plainly.
    async fn post(
        &self,
        url: &str,
        claimed: &ClaimedDelivery,
        target: &Ready,
    ) -> Result<Answer, String> {
        let url =
            guard::check_url(url, self.policy).map_err(|r| format!("destination refused: {r}"))?;
        request::post(
            &self.client,
            url,
            claimed,
            target,
            self.config.response_excerpt_bytes,
        )
        .await
    }

    async fn target(&self, row: &DeliveryRow) -> Result<Target, StoreError> {
        // Rows queued before webhooks were resources name no webhook: the number's meta one.
        let webhook_id = row
            .webhook_id
            .or(row.phone_number_internal_id)
            .unwrap_or_default();
        let Some(webhook) = self
            .numbers
            .webhook(row.phone_number_internal_id, webhook_id)
            .await?
        else {
            return Ok(Target::Gone(
                "the webhook was deleted (or the number has no webhook_destination_url any more); \
                 create one and replay",
            ));
        };
        if !webhook.active {
            return Ok(Target::Paused);
        }
        let signing = if webhook.is_meta {
            let number = self.numbers.number(&row.phone_number_id).await?;
            match number.and_then(|n| n.webhook_secret.clone()) {
                Some(secret) => Signing::Meta(secret),
                None => Signing::Missing(
                    "the number has no usable webhook secret; rotate it (PATCH rotate_webhook_secret)",
                ),
            }
        } else {
            match webhook.secret.clone() {
                Some(secret) => Signing::Kapso(secret),
                None => Signing::Missing(
                    "the webhook's secret_key cannot be opened; rotate it (PATCH rotate_secret_key)",
                ),
            }
        };
        Ok(Target::Ready(Box::new(Ready {
            url: webhook.url.clone(),
            headers: webhook.headers.clone(),
            signing,
        })))
    }
}

enum Target {
    Ready(Box<Ready>),
    /// The webhook is paused: hold the delivery.
    Paused,
    /// The webhook is gone: dead-letter with this reason.
    Gone(&'static str),
}

/// What the attempt rows of one try share: which delivery, which attempt, when, how long, where.
struct Try<'a> {
    delivery_id: Uuid,
    attempt: i32,
    started_at: DateTime<Utc>,
    duration_ms: i32,
    destination: &'a str,
}

impl Try<'_> {
    /// The attempt row with the try's outcome.
    fn row(
        &self,
        status_code: Option<u16>,
        excerpt: Option<String>,
        error: Option<&str>,
    ) -> AttemptRow {
        AttemptRow {
            id: Uuid::now_v7(),
            delivery_id: self.delivery_id,
            attempt: self.attempt,
            started_at: self.started_at,
            duration_ms: self.duration_ms,
            destination: self.destination.to_owned(),
            status_code: status_code.map(i32::from),
            response_excerpt: excerpt,
            error: error.map(str::to_owned),
        }
    }
}

/// The metric label of an outcome: what happened on this pass.
fn outcome_label(outcome: &DeliveryOutcome) -> &'static str {
    if outcome.attempt.is_none() && outcome.status != DeliveryStatus::Dead {
        "deferred"
    } else {
        outcome.status.as_str()
    }
}

/// A claimed delivery put back without an attempt, due now.
fn handed_back(row: &DeliveryRow) -> DeliveryOutcome {
    let now = crate::store::now();
    DeliveryOutcome {
        delivery_id: row.id,
        lease_token: row.lease_token.unwrap_or_default(),
        attempt: None,
        status: if row.attempts == 0 {
            DeliveryStatus::Pending
        } else {
            DeliveryStatus::Failed
        },
        next_attempt_at: now,
        last_status_code: row.last_status_code,
        last_error: row.last_error.clone(),
        delivered_at: None,
        processing_status: None,
        phone_number_internal_id: row.phone_number_internal_id,
        message_wamids: row.message_wamids.clone(),
        at: now,
        webhook_id: row.webhook_id,
        webhook_result: WebhookResult::Untried,
    }
}

/// Publishes the outbox depth and the age of the oldest due delivery every few seconds.
async fn depth_reporter(store: DynStore, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    while !stop.is_cancelled() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let now = crate::store::now();
        if let Ok((depth, oldest)) = store.outbox_depth(now).await {
            metrics::gauge!("wagate_outbox_due").set(depth as f64);
            let age = oldest.map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
            metrics::gauge!("wagate_outbox_oldest_due_seconds").set(age);
        }
    }
}
