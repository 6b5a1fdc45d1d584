//! The events nothing writes at the moment they become true: a buffered batch whose window
//! closed, a conversation that went quiet for a webhook's `inactivity_minutes`, a conversation
//! ended by idleness. Each runs on every instance; the store makes each event happen once (a
//! batch's rows are locked and deleted with the delivery queued; a quiet period is a marker
//! row inserted `on conflict do nothing` with its delivery; an idle conversation is ended under
//! its row lock with its event).

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::events::{self, CONVERSATION_ENDED, CONVERSATION_INACTIVE};
use crate::config::{ConversationsConfig, DeliveryConfig};
use crate::domain::envelope::RoutedNumber;
use crate::domain::number_directory::NumberDirectory;
use crate::store::{ConversationStatus, DynStore, StoreResult};
use crate::time::iso;

/// Most batches, quiet conversations or idle conversations handled per pass.
const PASS_LIMIT: u32 = 500;

/// Flushes due buffers every `delivery.buffer_poll_interval`.
pub async fn flush_buffers(
    store: DynStore,
    config: DeliveryConfig,
    wake: std::sync::Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    while !stop.is_cancelled() {
        match store
            .flush_webhook_buffers(crate::store::now(), PASS_LIMIT)
            .await
        {
            Ok(0) => failures = 0,
            Ok(queued) => {
                failures = 0;
                metrics::counter!("wagate_webhook_batches_total").increment(u64::from(queued));
                wake.notify_one();
                if queued == PASS_LIMIT {
                    continue;
                }
            }
            Err(error) => {
                failures += 1;
                if failures == 1 || failures % 60 == 0 {
                    tracing::warn!(%error, "cannot flush buffered webhook events; retrying");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(config.buffer_poll_interval) => {}
            _ = stop.cancelled() => {}
        }
    }
}

/// Fires `whatsapp.conversation.inactive` and `whatsapp.conversation.ended` every
/// `delivery.inactivity_sweep_interval`.
pub async fn sweep_conversations(
    store: DynStore,
    numbers: NumberDirectory,
    delivery: DeliveryConfig,
    conversations: ConversationsConfig,
    wake: std::sync::Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) {
    let idle = chrono::Duration::from_std(conversations.inactivity)
        .unwrap_or_else(|_| chrono::Duration::hours(24));
    while !stop.is_cancelled() {
        let now = crate::store::now();
        match fire_inactive(&store, &numbers, now).await {
            Ok(0) => {}
            Ok(fired) => {
                tracing::debug!(fired, "conversation inactivity events queued");
                wake.notify_one();
            }
            Err(error) => tracing::warn!(%error, "inactivity sweep failed; will retry"),
        }
        match end_idle(&store, &numbers, now - idle, now).await {
            Ok(0) => {}
            Ok(_) => wake.notify_one(),
            Err(error) => tracing::warn!(%error, "conversation end sweep failed; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delivery.inactivity_sweep_interval) => {}
            _ = stop.cancelled() => {}
        }
    }
}

/// The number as ingest routes it, with its webhooks.
async fn routed(
    numbers: &NumberDirectory,
    phone_number_id: &str,
) -> StoreResult<Option<RoutedNumber>> {
    let Some(number) = numbers.number(phone_number_id).await? else {
        return Ok(None);
    };
    let webhooks = numbers.webhooks_of(number.internal_id).await?;
    Ok(Some(RoutedNumber::new(&number, webhooks)))
}

/// One pass of `whatsapp.conversation.inactive`: per webhook that wants it, the conversations
/// whose last message is older than its `inactivity_minutes` and whose quiet period has not
/// fired yet. Quiet periods that began before the webhook existed are not announced.
pub async fn fire_inactive(
    store: &DynStore,
    numbers: &NumberDirectory,
    now: DateTime<Utc>,
) -> StoreResult<usize> {
    let mut fired = 0;
    for (_, phone_number_id) in store.numbers_subscribed_to(CONVERSATION_INACTIVE).await? {
        let Some(number) = routed(numbers, &phone_number_id).await? else {
            continue;
        };
        for webhook in number
            .webhooks
            .iter()
            .filter(|w| w.wants(CONVERSATION_INACTIVE))
        {
            let quiet = chrono::Duration::minutes(i64::from(webhook.inactivity_minutes));
            let floor = webhook.created_at - quiet;
            let candidates = store
                .quiet_conversations(
                    webhook.id,
                    number.internal_id,
                    floor,
                    now - quiet,
                    PASS_LIMIT,
                )
                .await?;
            for conversation in candidates {
                let anchor = conversation.last_message_id.clone().unwrap_or_default();
                let since = match &conversation.last_message_id {
                    Some(wamid) => store.find_message(number.internal_id, wamid).await?,
                    None => None,
                };
                let contact = store
                    .contacts_by_ids(&[conversation.contact_id])
                    .await?
                    .pop();
                let body = json!({
                    "conversation": events::conversation_object(&conversation, contact.as_ref(), &number),
                    "since_message": since.map(|m| json!({
                        "id": m.id,
                        "whatsapp_message_id": m.wamid,
                        "direction": m.direction,
                        "created_at": iso(m.created_at),
                    })),
                    "inactivity": { "minutes": webhook.inactivity_minutes },
                    "phone_number_id": number.phone_number_id,
                });
                let payload = serde_json::to_vec(&body).expect("JSON serialises");
                let delivery =
                    events::delivery(webhook, &number, CONVERSATION_INACTIVE, payload, "");
                if store
                    .fire_inactivity(conversation.id, &anchor, &delivery)
                    .await?
                {
                    fired += 1;
                }
            }
        }
    }
    Ok(fired)
}

/// Ends the idle conversations of numbers with a webhook that wants `whatsapp.conversation.ended`,
/// one transaction each (the row locked, still idle, ended, its event queued); the conversation
/// sweeper's bulk statement ends everyone else's.
pub async fn end_idle(
    store: &DynStore,
    numbers: &NumberDirectory,
    cutoff: DateTime<Utc>,
    now: DateTime<Utc>,
) -> StoreResult<usize> {
    let mut ended = 0;
    for (_, phone_number_id) in store.numbers_subscribed_to(CONVERSATION_ENDED).await? {
        let Some(number) = routed(numbers, &phone_number_id).await? else {
            continue;
        };
        let idle = store
            .idle_conversations(number.internal_id, cutoff, PASS_LIMIT)
            .await?;
        for candidate in idle {
            let mut tx = store.begin().await?;
            let current = tx
                .find_active_conversation(number.internal_id, candidate.contact_id)
                .await?;
            let Some(mut conversation) = current.filter(|c| c.last_active_at < cutoff) else {
                continue;
            };
            conversation.status = ConversationStatus::Ended;
            conversation.ended_at = Some(now);
            conversation.updated_at = now;
            tx.update_conversation(&conversation).await?;
            let (contact, _) = tx
                .event_context(Some(conversation.contact_id), None)
                .await?;
            events::queue_conversation_event(
                &mut *tx,
                &number,
                CONVERSATION_ENDED,
                &conversation,
                contact.as_ref(),
                now,
            )
            .await?;
            tx.commit().await?;
            ended += 1;
        }
    }
    Ok(ended)
}
