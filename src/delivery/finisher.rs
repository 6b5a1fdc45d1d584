//! Commits delivery outcomes in batches (thousands of deliveries a second cost a few
//! transactions).
//!
//! If the database is away, a batch is held and retried; a lease that ends meanwhile brings its
//! deliveries back (at least once, never lost). If a batch fails for any other reason, one bad
//! outcome must not stall the rest until their leases end: the batch is committed one by one, an
//! outcome that still fails is retried once stripped to its state (no attempt row, no error
//! text), and one that fails even then is quarantined — logged with its delivery id, counted
//! (`wagate_delivery_outcomes_quarantined_total`), and left to its lease.

use std::collections::HashSet;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::{DeliveryOutcome, DeliveryStatus, DynStore, StoreError, StoreResult};

/// Most outcomes committed in one transaction.
pub(super) const FINISH_BATCH: usize = 512;

/// Where outcomes are committed (the store; a fake in unit tests).
#[async_trait::async_trait]
pub(super) trait OutcomeSink: Send + Sync {
    async fn commit(&self, outcomes: &[DeliveryOutcome]) -> StoreResult<()>;
}

struct StoreSink {
    store: DynStore,
    pause_after: u32,
}

#[async_trait::async_trait]
impl OutcomeSink for StoreSink {
    async fn commit(&self, outcomes: &[DeliveryOutcome]) -> StoreResult<()> {
        self.store
            .finish_deliveries(outcomes, self.pause_after)
            .await
    }
}

/// Commits what `finished` receives until every sender is gone, or, once `closing` is cancelled,
/// until nothing is waiting (a stopping instance does not wait for attempts it handed back).
pub(super) async fn run(
    store: DynStore,
    mut finished: mpsc::Receiver<DeliveryOutcome>,
    pause_after: u32,
    closing: CancellationToken,
) {
    let sink = StoreSink {
        store: store.clone(),
        pause_after,
    };
    // Numbers known to have `webhook_verified_at`: stamped once each, not once per delivery.
    let mut verified = HashSet::new();
    loop {
        let first = tokio::select! {
            biased;
            received = finished.recv() => match received {
                Some(outcome) => outcome,
                None => break,
            },
            () = closing.cancelled() => match finished.try_recv() {
                Ok(outcome) => outcome,
                Err(_) => break,
            },
        };
        let mut batch = vec![first];
        while batch.len() < FINISH_BATCH {
            match finished.try_recv() {
                Ok(outcome) => batch.push(outcome),
                Err(_) => break,
            }
        }
        if commit(&sink, &batch).await {
            stamp_verified_webhooks(&store, &batch, &mut verified).await;
        }
    }
}

/// Commits a batch: retried while the database is away, one by one if it fails otherwise.
/// False when the database stayed away (the leases bring the batch back).
pub(super) async fn commit(sink: &dyn OutcomeSink, batch: &[DeliveryOutcome]) -> bool {
    let mut pause = Duration::from_millis(100);
    for attempt in 1.. {
        match sink.commit(batch).await {
            Ok(()) => return true,
            Err(error @ StoreError::Unavailable(_)) if attempt < 20 => {
                if attempt == 1 {
                    tracing::warn!(%error, outcomes = batch.len(), "cannot record delivery outcomes; retrying");
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(StoreError::Unavailable(error)) => {
                tracing::error!(%error, outcomes = batch.len(), "gave up recording delivery outcomes; their leases will bring them back");
                return false;
            }
            Err(error) => {
                tracing::warn!(%error, outcomes = batch.len(), "a batch of delivery outcomes failed to commit; committing them one by one");
                one_by_one(sink, batch).await;
                return true;
            }
        }
    }
    false
}

async fn one_by_one(sink: &dyn OutcomeSink, batch: &[DeliveryOutcome]) {
    for outcome in batch {
        let error = match sink.commit(std::slice::from_ref(outcome)).await {
            Ok(()) => continue,
            Err(StoreError::Unavailable(error)) => {
                tracing::warn!(delivery_id = %outcome.delivery_id, %error, "database away while recording a delivery outcome; its lease will bring it back");
                continue;
            }
            Err(error) => error,
        };
        let stripped = stripped(outcome);
        if sink.commit(std::slice::from_ref(&stripped)).await.is_ok() {
            tracing::warn!(delivery_id = %outcome.delivery_id, %error, "delivery outcome recorded without its attempt details, which the database refused");
            continue;
        }
        metrics::counter!("wagate_delivery_outcomes_quarantined_total").increment(1);
        tracing::error!(
            delivery_id = %outcome.delivery_id,
            %error,
            "quarantined a delivery outcome the database refuses; the other outcomes of its batch are recorded, this delivery comes back when its lease ends — check the database log for the constraint or trigger"
        );
    }
}

/// The outcome without what is most likely to be refused: the attempt row and the error text.
fn stripped(outcome: &DeliveryOutcome) -> DeliveryOutcome {
    DeliveryOutcome {
        attempt: None,
        last_error: None,
        ..outcome.clone()
    }
}

/// The first delivery a number's webhook accepted is when its webhook was verified
/// (`webhook_verified_at` on the phone-number object).
async fn stamp_verified_webhooks(
    store: &DynStore,
    batch: &[DeliveryOutcome],
    verified: &mut HashSet<Uuid>,
) {
    for outcome in batch {
        let (DeliveryStatus::Succeeded, Some(number)) =
            (outcome.status, outcome.phone_number_internal_id)
        else {
            continue;
        };
        if verified.contains(&number) {
            continue;
        }
        match store
            .mark_webhook_verified(number, outcome.delivered_at.unwrap_or(outcome.at))
            .await
        {
            Ok(_) => {
                verified.insert(number);
            }
            Err(error) => tracing::warn!(%error, "could not stamp webhook_verified_at; will retry"),
        }
    }
}
