//! Sends queued broadcasts. A supervisor looks for sending broadcasts every
//! `pacing.poll_interval` (or when this instance starts one) and runs one runner per broadcast;
//! each runner claims due recipients in small batches (at most a second of the number's rate,
//! so a stop takes effect within about a second), takes a low-priority slot from the number's
//! budget for each, and sends it with the number's token. Outcomes are written in batches by one
//! finisher. Several instances run runners for the same broadcast: the claim skips rows others
//! hold, and each instance paces at its share of the rate.
//!
//! A recipient whose answer was lost (`in_doubt_since` set) is not sent again until
//! `pacing.lost_answer_grace` has passed without Meta's status webhook, which marks it sent
//! (ingest, `biz_opaque_callback_data`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng as _;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::config::PacingConfig;
use crate::domain::envelope::RoutedNumber;
use crate::domain::number_directory::{NumberConfig, NumberDirectory};
use crate::domain::pacing::Pacer;
use crate::domain::recorder::Recording;
use crate::domain::writer::Writer;
use crate::graph::{GraphClient, SendAnswer};
use crate::store::broadcasts::{RecipientOutcome, RecipientRow};
use crate::store::DynStore;

/// Outcomes written per statement batch.
const FINISH_BATCH: usize = 200;

/// What the worker needs from the application.
#[derive(Clone)]
pub struct BroadcastWorker {
    pub store: DynStore,
    pub numbers: NumberDirectory,
    pub graph: GraphClient,
    pub pacer: Arc<Pacer>,
    pub writer: Writer,
    pub config: PacingConfig,
    /// The Graph version queued sends are made with.
    pub graph_version: String,
}

/// Starts the supervisor, the finisher and the backlog gauges; they stop when `stop` is cancelled.
pub fn start(worker: BroadcastWorker, wake: Arc<Notify>, stop: CancellationToken) {
    let (outcomes, finished) = mpsc::channel(FINISH_BATCH * 8);
    tokio::spawn(finisher(worker.store.clone(), finished));
    tokio::spawn(report_backlog(worker.store.clone(), stop.clone()));
    let shared = Arc::new(Shared {
        worker,
        outcomes,
        in_flight: Arc::new(Semaphore::new(0)),
        running: Mutex::default(),
    });
    shared
        .in_flight
        .add_permits(shared.worker.config.broadcast_concurrency);
    tokio::spawn(supervise(shared, wake, stop));
}

struct Shared {
    worker: BroadcastWorker,
    outcomes: mpsc::Sender<RecipientOutcome>,
    in_flight: Arc<Semaphore>,
    /// Runners of this instance by broadcast, each with its own stop.
    running: Mutex<HashMap<Uuid, CancellationToken>>,
}

async fn supervise(shared: Arc<Shared>, wake: Arc<Notify>, stop: CancellationToken) {
    let mut failures = 0u32;
    while !stop.is_cancelled() {
        match shared
            .worker
            .store
            .sending_broadcasts(crate::store::now())
            .await
        {
            Ok(sending) => {
                failures = 0;
                let mut running = shared.running.lock().unwrap_or_else(|e| e.into_inner());
                // Broadcasts stopped (or finished) elsewhere: their runners stop claiming.
                running.retain(|id, token| {
                    let keep = sending.iter().any(|(s, _)| s == id);
                    if !keep {
                        token.cancel();
                    }
                    keep
                });
                for (id, _) in sending {
                    if running.contains_key(&id) {
                        continue;
                    }
                    let token = stop.child_token();
                    running.insert(id, token.clone());
                    let span = tracing::info_span!("broadcast", broadcast_id = %id);
                    tokio::spawn(run(shared.clone(), id, token).instrument(span));
                }
            }
            Err(error) => {
                failures += 1;
                if failures == 1 || failures % 60 == 0 {
                    tracing::warn!(%error, "cannot look for sending broadcasts; retrying");
                }
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(shared.worker.config.poll_interval) => {}
            _ = stop.cancelled() => {}
        }
    }
}

/// Sends one broadcast's due recipients until none is left or the broadcast stops. Claiming
/// runs ahead of sending (`claim`, one batch in hand), so the number's slots are never idle
/// while a claim statement runs.
async fn run(shared: Arc<Shared>, broadcast: Uuid, stop: CancellationToken) {
    let worker = &shared.worker;
    // Up to three batches (three seconds of sends) in hand: a claim held up by other writers
    // (SQLite has one) must not leave the number's slots idle. The lease outlasts them (config
    // validation), and a row whose lease ran out anyway is released, not sent.
    let (claimed, mut due) = mpsc::channel(3 * worker.config.broadcast_claim_batch as usize);
    let claimer = tokio::spawn(claim(shared.clone(), broadcast, claimed, stop.clone()));
    while let Some((row, number)) = due.recv().await {
        // A row whose lease ran out while it waited may be claimed again (here or elsewhere):
        // sending it would send it twice. It goes back instead (ignored if already re-claimed).
        let lease_left = row.next_attempt_at > crate::store::now();
        if stop.is_cancelled() || !lease_left {
            // Stopped, or held too long: what was claimed but not sent goes back, untouched.
            let _ = shared.outcomes.send(release(&row)).await;
            continue;
        }
        if let Some(outcome) = wait_for_doubt(worker, &row) {
            let _ = shared.outcomes.send(outcome).await;
            continue;
        }
        worker.pacer.admit_queued(&number).await;
        let Ok(permit) = shared.in_flight.clone().acquire_owned().await else {
            break;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let (outcome, accepted) = send(&shared.worker, &number, &row).await;
            // The slot is for the exchange with Meta; recording waits on the database, which
            // must not hold back the next sends.
            drop(permit);
            if let Some((request, response, at)) = accepted {
                record(&shared.worker, &number, request, response, at).await;
            }
            let _ = shared.outcomes.send(outcome).await;
        });
    }
    let _ = claimer.await;
    shared
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&broadcast);
}

/// Claims due recipients, at most a second of the number's share at a time, into `due`; ends
/// (closing `due`) when the broadcast is done or stopped.
async fn claim(
    shared: Arc<Shared>,
    broadcast: Uuid,
    due: mpsc::Sender<(RecipientRow, Arc<NumberConfig>)>,
    stop: CancellationToken,
) {
    let worker = &shared.worker;
    let mut idle_rounds = 0u32;
    while !stop.is_cancelled() {
        let number = match worker.store.find_broadcast_number(broadcast).await {
            Ok(Some(pnid)) => worker.numbers.number(&pnid).await.ok().flatten(),
            _ => None,
        };
        let Some(number) = number else {
            tokio::time::sleep(worker.config.poll_interval).await;
            continue;
        };
        let per_second = f64::from(worker.pacer.rate_of(&number).rate)
            / f64::from(worker.pacer.live_instances());
        let batch = (per_second.ceil() as u32).clamp(1, worker.config.broadcast_claim_batch);
        let now = crate::store::now();
        let claimed = worker
            .store
            .claim_broadcast_recipients(broadcast, now, worker.config.broadcast_lease, batch)
            .await;
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, %broadcast, "cannot claim broadcast recipients; retrying");
                tokio::time::sleep(worker.config.poll_interval).await;
                continue;
            }
        };
        if claimed.is_empty() {
            idle_rounds += 1;
            // Everything sent or in flight elsewhere: finish when nothing is left.
            if idle_rounds % 2 == 0 {
                match worker
                    .store
                    .complete_broadcast_if_done(broadcast, now)
                    .await
                {
                    Ok(true) => {
                        tracing::info!(%broadcast, "broadcast completed");
                        return;
                    }
                    Ok(false) => {}
                    Err(error) => tracing::warn!(%error, "cannot complete the broadcast"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(worker.config.poll_interval) => {}
                _ = stop.cancelled() => {}
            }
            continue;
        }
        idle_rounds = 0;
        for row in claimed {
            if due.send((row, number.clone())).await.is_err() {
                return;
            }
        }
    }
}

/// A claimed recipient that was not sent goes back to pending as it was.
fn release(row: &RecipientRow) -> RecipientOutcome {
    let now = crate::store::now();
    RecipientOutcome {
        id: row.id,
        lease_token: row.lease_token.unwrap_or_default(),
        state: "pending",
        attempts: row.attempts,
        next_attempt_at: now,
        in_doubt_since: row.in_doubt_since.filter(|_| row.was_in_doubt()),
        wamid: None,
        error: row.error.clone(),
        sent_at: None,
        at: now,
    }
}

/// A recipient claimed while an earlier request for it may have reached Meta waits out the
/// grace for Meta's status (which marks it sent); after the grace it is sent again.
fn wait_for_doubt(worker: &BroadcastWorker, row: &RecipientRow) -> Option<RecipientOutcome> {
    if !row.was_in_doubt() {
        return None;
    }
    let since = row.in_doubt_since?;
    let grace = chrono::Duration::from_std(worker.config.lost_answer_grace).unwrap_or_default();
    let now = crate::store::now();
    if since + grace <= now {
        metrics::counter!("wagate_broadcast_resent_in_doubt_total").increment(1);
        tracing::warn!(
            recipient = %row.id,
            "no status from Meta within pacing.lost_answer_grace for a send whose answer was lost: sending it again"
        );
        return None;
    }
    Some(RecipientOutcome {
        id: row.id,
        lease_token: row.lease_token?,
        state: "pending",
        attempts: row.attempts,
        next_attempt_at: since + grace,
        in_doubt_since: Some(since),
        wamid: None,
        error: row.error.clone(),
        sent_at: None,
        at: now,
    })
}

/// Meta's errors that may succeed later: throughput, pair rate, upgrade, and Meta's own
/// transient failures.
fn retryable(code: Option<i64>, status: u16) -> bool {
    matches!(
        code,
        Some(130_429 | 131_056 | 131_057 | 131_000 | 1 | 2 | 4 | 80_007 | 133_004)
    ) || status >= 500
        || status == 429
}

/// A send Meta accepted, to record: request, answer, time.
type Accepted = (Value, Value, chrono::DateTime<chrono::Utc>);

/// Sends one recipient and says what became of it (and, when Meta accepted it, what to record).
async fn send(
    worker: &BroadcastWorker,
    number: &NumberConfig,
    row: &RecipientRow,
) -> (RecipientOutcome, Option<Accepted>) {
    let now = crate::store::now();
    let mut outcome = RecipientOutcome {
        id: row.id,
        lease_token: row.lease_token.unwrap_or_default(),
        state: "failed",
        attempts: row.attempts + 1,
        next_attempt_at: now,
        in_doubt_since: None,
        wamid: None,
        error: None,
        sent_at: None,
        at: now,
    };
    let Ok(body) = serde_json::from_str::<Value>(&row.body) else {
        outcome.error = Some(json!({"message": "stored send body is not JSON"}).to_string());
        return (outcome, None);
    };
    // The number's state may have changed since the recipient was added.
    if let Some(refusal) = crate::domain::account_state::refusal(
        number.account_state.as_deref(),
        &number.blocked_templates,
        &body,
    ) {
        outcome.error = Some(
            json!({"code": refusal.code, "title": refusal.title, "message": refusal.details})
                .to_string(),
        );
        metrics::counter!("wagate_broadcast_sends_total", "outcome" => "refused_locally")
            .increment(1);
        return (outcome, None);
    }
    let answer = worker
        .graph
        .send_message(
            &worker.graph_version,
            number.authorization.clone(),
            &number.phone_number_id,
            &body,
        )
        .await;
    let at = crate::store::now();
    outcome.at = at;
    match answer {
        SendAnswer::Answered {
            status,
            body: response,
        } if (200..300).contains(&status) => {
            let wamid = response
                .pointer("/messages/0/id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            outcome.state = "sent";
            outcome.wamid = wamid;
            outcome.sent_at = Some(at);
            metrics::counter!("wagate_broadcast_sends_total", "outcome" => "sent").increment(1);
            return (outcome, Some((body, response, at)));
        }
        SendAnswer::Answered {
            status,
            body: response,
        } => {
            let code = response.pointer("/error/code").and_then(Value::as_i64);
            let error = response
                .get("error")
                .cloned()
                .unwrap_or_else(|| json!({"message": format!("Graph answered HTTP {status}")}));
            outcome.error = Some(error.to_string());
            if let Some(code) = code.and_then(|c| u64::try_from(c).ok()) {
                let to = body.get("to").and_then(Value::as_str);
                if let Some(until) = worker.pacer.meta_refused(number, to, None, code) {
                    match worker.store.pause_number(number.internal_id, until).await {
                        Ok(_) => worker.numbers.invalidate(),
                        Err(error) => tracing::warn!(%error, "could not share the number's pause"),
                    }
                    outcome.next_attempt_at = until;
                }
            }
            if retryable(code, status) {
                retry(worker, &mut outcome, at);
            }
            metrics::counter!("wagate_broadcast_sends_total", "outcome" => if outcome.state == "pending" { "retry" } else { "failed" })
                .increment(1);
        }
        SendAnswer::NotSent(detail) => {
            outcome.error = Some(
                json!({"message": format!("could not connect to Graph: {detail}")}).to_string(),
            );
            retry(worker, &mut outcome, at);
            metrics::counter!("wagate_broadcast_sends_total", "outcome" => "retry").increment(1);
        }
        SendAnswer::Lost(detail) => {
            // Meta may have accepted it: wait for its status before sending again.
            tracing::warn!(recipient = %row.id, %detail, "no answer from Graph for a queued send; waiting for Meta's status before sending it again");
            outcome.error =
                Some(json!({"message": format!("no answer from Graph: {detail}")}).to_string());
            retry(worker, &mut outcome, at);
            outcome.in_doubt_since = row.claimed_at.or(Some(at));
            let grace =
                chrono::Duration::from_std(worker.config.lost_answer_grace).unwrap_or_default();
            outcome.next_attempt_at = outcome.next_attempt_at.max(at + grace);
            metrics::counter!("wagate_broadcast_sends_total", "outcome" => "lost").increment(1);
        }
    }
    (outcome, None)
}

/// Back to `pending` after a backoff with jitter, unless the attempts are used up.
fn retry(
    worker: &BroadcastWorker,
    outcome: &mut RecipientOutcome,
    at: chrono::DateTime<chrono::Utc>,
) {
    if outcome.attempts >= i64::from(worker.config.max_attempts) {
        outcome.state = "failed";
        return;
    }
    let exponent = u32::try_from(outcome.attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    let base = worker.config.retry_base.saturating_mul(1 << exponent);
    let wait = base.min(worker.config.retry_max);
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    let wait = Duration::from_secs_f64(wait.as_secs_f64() * jitter);
    outcome.state = "pending";
    outcome.next_attempt_at = outcome
        .next_attempt_at
        .max(at + chrono::Duration::from_std(wait).unwrap_or_default());
}

/// Records the sent message exactly as a proxied send (same writer, same events).
async fn record(
    worker: &BroadcastWorker,
    number: &NumberConfig,
    request: Value,
    response: Value,
    at: chrono::DateTime<chrono::Utc>,
) {
    let webhooks = worker
        .numbers
        .webhooks_of(number.internal_id)
        .await
        .unwrap_or_default();
    let recording = Recording::Send {
        number: RoutedNumber::new(number, webhooks),
        request,
        response,
        at,
    };
    worker
        .writer
        .record(recording)
        .await
        .warn_if_held("queued send");
}

/// Writes outcomes in batches; a failed write is retried, so no outcome is dropped.
async fn finisher(store: DynStore, mut finished: mpsc::Receiver<RecipientOutcome>) {
    let mut batch = Vec::with_capacity(FINISH_BATCH);
    while finished.recv_many(&mut batch, FINISH_BATCH).await > 0 {
        let mut wait = Duration::from_millis(100);
        while let Err(error) = store.finish_broadcast_recipients(&batch).await {
            tracing::warn!(%error, "cannot record broadcast outcomes; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        batch.clear();
    }
}

/// `wagate_broadcast_backlog{phone_number_id}` and the oldest due recipient's age.
async fn report_backlog(store: DynStore, stop: CancellationToken) {
    let mut known: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        let Ok(backlog) = store.broadcast_backlog().await else {
            continue;
        };
        let now = crate::store::now();
        for gone in known
            .iter()
            .filter(|k| !backlog.iter().any(|b| &b.phone_number_id == *k))
        {
            metrics::gauge!("wagate_broadcast_backlog", "phone_number_id" => gone.clone()).set(0.0);
            metrics::gauge!("wagate_broadcast_oldest_due_seconds", "phone_number_id" => gone.clone()).set(0.0);
        }
        known = backlog.iter().map(|b| b.phone_number_id.clone()).collect();
        for b in backlog {
            let age = b
                .oldest_due
                .map(|due| (now - due).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            metrics::gauge!("wagate_broadcast_backlog", "phone_number_id" => b.phone_number_id.clone())
                .set(b.recipients as f64);
            metrics::gauge!("wagate_broadcast_oldest_due_seconds", "phone_number_id" => b.phone_number_id)
                .set(age);
        }
    }
}
