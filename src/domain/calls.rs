//! Calls: one row per call id, moved forward by `calls` webhooks (connect, status, terminate) and
//! by calls placed through the proxy. Meta's upper-case values become Kapso's lower-case ones.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::contacts::{self, text, Identity};
use super::envelope::RoutedNumber;
use crate::store::{CallRow, Direction, StoreResult, StoreTx};

fn rank(status: &str) -> u8 {
    match status {
        "initiated" => 0,
        "ringing" => 1,
        "answered" => 2,
        _ => 3, // completed, failed: terminal
    }
}

fn advance(call: &mut CallRow, status: &str) {
    if rank(status) > rank(&call.status) {
        call.status = status.to_owned();
    }
}

fn unix(value: Option<&Value>) -> Option<DateTime<Utc>> {
    let secs = value?
        .as_str()
        .and_then(|s| s.parse::<i64>().ok())
        .or_else(|| value?.as_i64())?;
    Utc.timestamp_opt(secs, 0).single()
}

fn direction(meta: Option<&str>) -> Direction {
    match meta {
        Some("BUSINESS_INITIATED") => Direction::Outbound,
        _ => Direction::Inbound,
    }
}

async fn find_or_new(
    tx: &mut dyn StoreTx,
    number: &RoutedNumber,
    call_id: &str,
    direction: Direction,
    user: &Identity,
    now: DateTime<Utc>,
) -> StoreResult<CallRow> {
    if let Some(call) = tx.find_call(number.internal_id, call_id).await? {
        return Ok(call);
    }
    let contact = contacts::upsert(tx, number.project_id, number.internal_id, user, now).await?;
    let conversation = match &contact {
        Some(c) => {
            tx.find_active_conversation(number.internal_id, c.id)
                .await?
        }
        None => None,
    };
    let call = CallRow {
        id: Uuid::now_v7(),
        project_id: number.project_id,
        phone_number_internal_id: number.internal_id,
        call_id: call_id.to_owned(),
        direction,
        status: "initiated".into(),
        from_number: None,
        to_number: None,
        contact_id: contact.map(|c| c.id),
        conversation_id: conversation.map(|c| c.id),
        started_at: now,
        session_started_at: None,
        ended_at: None,
        duration_seconds: None,
        events: "[]".into(),
        created_at: now,
        updated_at: now,
    };
    if tx.insert_call(&call).await? {
        Ok(call)
    } else {
        tx.find_call(number.internal_id, call_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("call {call_id} vanished").into())
    }
}

/// A `calls[]` event: `connect` or `terminate`.
pub async fn apply_event(
    tx: &mut dyn StoreTx,
    number: &RoutedNumber,
    event: &Value,
    contacts_list: &[Value],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let Some(call_id) = text(event, "id") else {
        return Ok(());
    };
    let direction = direction(event.get("direction").and_then(Value::as_str));
    let (user_phone, user_bsuid) = if direction == Direction::Inbound {
        (text(event, "from"), text(event, "from_user_id"))
    } else {
        (text(event, "to"), text(event, "to_user_id"))
    };
    let profile = contacts_list.first();
    let user = Identity {
        wa_id: user_phone.as_deref().and_then(contacts::normalize_wa_id),
        bsuid: user_bsuid.or_else(|| profile.and_then(|p| text(p, "user_id"))),
        profile_name: profile
            .and_then(|p| p.pointer("/profile/name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        ..Identity::default()
    };
    let at = unix(event.get("timestamp")).unwrap_or(now);
    let mut call = find_or_new(tx, number, &call_id, direction, &user, at).await?;
    call.from_number = text(event, "from").or(call.from_number);
    call.to_number = text(event, "to").or(call.to_number);
    match event.get("event").and_then(Value::as_str) {
        Some("connect") => {
            // A user's call rings; a business call's connect carries the user's answer.
            if direction == Direction::Inbound {
                advance(&mut call, "ringing");
            } else {
                advance(&mut call, "answered");
                call.session_started_at.get_or_insert(at);
            }
        }
        Some("terminate") => {
            let failed = event.get("status").and_then(Value::as_str) == Some("FAILED");
            advance(&mut call, if failed { "failed" } else { "completed" });
            if let Some(start) = unix(event.get("start_time")) {
                call.session_started_at = Some(start);
            }
            call.ended_at = unix(event.get("end_time")).or(Some(at));
            call.duration_seconds = event
                .get("duration")
                .and_then(|d| {
                    d.as_i64()
                        .or_else(|| d.as_str().and_then(|s| s.parse().ok()))
                })
                .and_then(|d| i32::try_from(d).ok());
        }
        _ => {}
    }
    push_event(&mut call, event);
    call.updated_at = now;
    tx.update_call(&call).await
}

/// A call status (`statuses[]` with `type: call`): RINGING, ACCEPTED, REJECTED.
pub async fn apply_status(
    tx: &mut dyn StoreTx,
    number: Uuid,
    status: &Value,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let Some(call_id) = text(status, "id") else {
        return Ok(());
    };
    let Some(mut call) = tx.find_call(number, &call_id).await? else {
        return Ok(());
    };
    let mapped = match status.get("status").and_then(Value::as_str) {
        Some("RINGING") => "ringing",
        Some("ACCEPTED") => "answered",
        Some("REJECTED") => "failed",
        _ => return Ok(()),
    };
    advance(&mut call, mapped);
    if mapped == "answered" {
        call.session_started_at.get_or_insert(now);
    }
    push_event(&mut call, status);
    call.updated_at = now;
    tx.update_call(&call).await
}

/// A call placed through the proxy (`POST {pnid}/calls` with `action: connect`) that Meta accepted.
pub async fn record_outbound(
    tx: &mut dyn StoreTx,
    number: &RoutedNumber,
    request: &Value,
    response: &Value,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let Some(call_id) = response.pointer("/calls/0/id").and_then(Value::as_str) else {
        return Ok(());
    };
    let to = text(request, "to");
    let user = Identity {
        wa_id: to.as_deref().and_then(contacts::normalize_wa_id),
        bsuid: to.filter(|t| contacts::is_bsuid(t)),
        ..Identity::default()
    };
    let mut call = find_or_new(tx, number, call_id, Direction::Outbound, &user, now).await?;
    // A recording applied again (replayed from the writer's spill file) adds nothing.
    let events: Vec<Value> = serde_json::from_str(&call.events).unwrap_or_default();
    if events.contains(request) {
        return Ok(());
    }
    call.to_number = text(request, "to");
    push_event(&mut call, request);
    tx.update_call(&call).await
}

/// A stored call row's events list with one more event.
fn push_event(call: &mut CallRow, event: &Value) {
    let mut events: Vec<Value> = serde_json::from_str(&call.events).unwrap_or_default();
    events.push(event.clone());
    call.events = Value::Array(events).to_string();
}
