//! Reliable forwarding of Meta's webhooks to each number's `webhook_destination_url`.
//!
//! Ingest queues one delivery per (event, number) in the same transaction as the event
//! (`domain::ingest`); `worker` claims and sends them; `schedule` decides retries; `guard` keeps
//! deliveries off private networks. This module also holds what the Platform API does with
//! deliveries: present them, retry one, replay a time range.

mod finisher;
pub(crate) mod request;
pub mod schedule;
pub mod worker;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::store::{AttemptRow, DeliveryRow, NewDelivery, PhoneNumber, Store, StoreResult};
use crate::time::iso;

/// The wamids of the inbound messages an envelope carries, space-separated.
pub fn inbound_wamids(payload: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(payload) else {
        return String::new();
    };
    let changes = crate::domain::envelope::changes(&value).unwrap_or_default();
    crate::domain::ingest::inbound_wamids(&changes)
}

/// Queues a new delivery of every event route of `number` stored in `[since, until]` (at most
/// `limit`, oldest first). Returns how many were queued and whether the range held more.
pub async fn replay(
    store: &dyn Store,
    number: &PhoneNumber,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: u32,
) -> StoreResult<(usize, bool)> {
    let routes = store
        .event_routes_between(number, since, until, limit.saturating_add(1))
        .await?;
    let truncated = routes.len() > limit as usize;
    let now = crate::store::now();
    let deliveries: Vec<NewDelivery> = routes
        .into_iter()
        .take(limit as usize)
        .map(|route| NewDelivery {
            id: Uuid::now_v7(),
            project_id: number.project_id,
            phone_number_internal_id: Some(number.internal_id),
            phone_number_id: number.phone_number_id.clone(),
            event_id: Some(route.event_id),
            route_id: Some(route.id),
            idempotency_key: crate::crypto::sha256_hex(&route.payload),
            message_wamids: inbound_wamids(&route.payload),
            fields: route.fields,
            replay_of: None,
            created_at: now,
            // A number's `meta` webhook has the number's internal id.
            webhook_id: number.internal_id,
            event_type: None,
            payload: None,
            batch_size: 1,
            status: crate::store::DeliveryStatus::Pending,
        })
        .collect();
    store.queue_deliveries(&deliveries).await?;
    Ok((deliveries.len(), truncated))
}

/// The Platform API's delivery object.
pub fn to_json(row: &DeliveryRow) -> Value {
    json!({
        "id": row.id,
        "phone_number_id": row.phone_number_id,
        "webhook_id": row.webhook_id,
        "event": row.event_type,
        "batch_size": row.batch_size,
        "event_id": row.event_id,
        "fields": row.fields.split(',').filter(|f| !f.is_empty()).collect::<Vec<_>>(),
        "status": row.status,
        "attempt_count": row.attempts,
        "next_attempt_at": row.status.is_due_state().then(|| iso(row.next_attempt_at)),
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "idempotency_key": row.idempotency_key,
        "message_ids": row.wamids().collect::<Vec<_>>(),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "delivered_at": row.delivered_at.map(iso),
    })
}

pub fn attempt_json(attempt: &AttemptRow) -> Value {
    json!({
        "attempt": attempt.attempt,
        "started_at": iso(attempt.started_at),
        "duration_ms": attempt.duration_ms,
        "destination": attempt.destination,
        "status_code": attempt.status_code,
        "response_excerpt": attempt.response_excerpt,
        "error": attempt.error,
    })
}
