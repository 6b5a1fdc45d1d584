//! `/platform/v1/whatsapp/broadcasts`: queued sends in the shape of Kapso's Broadcasts API
//! (create, add recipients, send, schedule, cancel, stop, progress, per-recipient results).

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};
use uuid::Uuid;

use super::error::PlatformError;
use super::extract::{wrapper_missing, PlatformJson, ProjectKey};
use super::present::Data;
use crate::domain::broadcasts::{BroadcastError, BroadcastView};
use crate::http::graph::stored::paging::{self, ListContext, Query};
use crate::http::state::AppState;
use crate::store::broadcasts::{BroadcastChange, RecipientRow};
use crate::store::Seek;
use crate::time::iso;

/// Recipient states a list may be filtered by.
const RECIPIENT_STATES: [&str; 4] = ["pending", "sending", "sent", "failed"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/whatsapp/broadcasts", post(create).get(list))
        .route("/whatsapp/broadcasts/{broadcast_id}", get(show))
        .route(
            "/whatsapp/broadcasts/{broadcast_id}/recipients",
            post(add_recipients).get(list_recipients),
        )
        .route("/whatsapp/broadcasts/{broadcast_id}/send", post(send))
        .route(
            "/whatsapp/broadcasts/{broadcast_id}/schedule",
            post(schedule),
        )
        .route("/whatsapp/broadcasts/{broadcast_id}/cancel", post(cancel))
        .route("/whatsapp/broadcasts/{broadcast_id}/stop", post(stop))
}

impl From<BroadcastError> for PlatformError {
    fn from(error: BroadcastError) -> Self {
        match error {
            BroadcastError::NotFound(what) => Self::NotFound(what),
            BroadcastError::Validation(errors) => Self::Validation(errors),
            BroadcastError::Conflict(message) => Self::Conflict(message),
            BroadcastError::Store(error) => error.into(),
        }
    }
}

/// The broadcast object: Kapso's fields, with the counts by recipient state.
fn present(view: &BroadcastView) -> Value {
    let b = &view.row;
    let c = &view.counts;
    let template = b.template_name.as_ref().map(|name| {
        json!({
            "id": b.template_id,
            "name": name,
            "language_code": b.template_language,
        })
    });
    json!({
        "id": b.id,
        "name": b.name,
        "status": b.status,
        "phone_number_id": b.phone_number_id,
        "whatsapp_template": template,
        "total_recipients": b.total_recipients,
        "pending_count": c.pending,
        "sending_count": c.sending,
        "sent_count": c.sent,
        "failed_count": c.failed,
        "delivered_count": c.delivered,
        "read_count": c.read,
        "scheduled_at": b.scheduled_at.map(iso),
        "started_at": b.started_at.map(iso),
        "completed_at": b.completed_at.map(iso),
        "stopped_at": b.stopped_at.map(iso),
        "created_at": iso(b.created_at),
        "updated_at": iso(b.updated_at),
    })
}

fn present_recipient(r: &RecipientRow) -> Value {
    let error = r
        .error
        .as_deref()
        .and_then(|e| serde_json::from_str::<Value>(e).ok())
        .filter(|_| r.state != "sent");
    json!({
        "id": r.id,
        "phone_number": r.recipient,
        "status": r.state,
        "wamid": r.wamid,
        "error": error,
        "attempts": r.attempts,
        "next_attempt_at": (r.state == "pending").then(|| iso(r.next_attempt_at)),
        "sent_at": r.sent_at.map(iso),
        "updated_at": iso(r.updated_at),
    })
}

/// A broadcast id; a malformed one cannot exist, so it is the same 404.
fn parse_id(raw: &str) -> Result<Uuid, PlatformError> {
    Uuid::parse_str(raw).map_err(|_| PlatformError::NotFound("broadcast"))
}

/// Kapso wraps bodies in `whatsapp_broadcast`.
fn wrapped(body: &Value) -> Result<&Value, PlatformError> {
    body.get("whatsapp_broadcast")
        .filter(|v| v.is_object())
        .ok_or_else(|| wrapper_missing("whatsapp_broadcast"))
}

async fn create(
    State(state): State<AppState>,
    key: ProjectKey,
    PlatformJson(body): PlatformJson<Value>,
) -> Result<Response, PlatformError> {
    let input = wrapped(&body)?;
    let (view, started) = state.broadcasts.create(key.project_id, input).await?;
    tracing::info!(broadcast_id = %view.row.id, started, "broadcast created");
    let status = if started {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(Data {
            data: present(&view),
        }),
    )
        .into_response())
}

async fn list(
    State(state): State<AppState>,
    key: ProjectKey,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, PlatformError> {
    let query = Query::parse(raw.as_deref());
    let page = paging::parse(&query, "b", key.project_id)
        .map_err(|e| PlatformError::BadRequest(e.details.unwrap_or(e.message)))?;
    let before = match page.seek {
        Seek::First => None,
        Seek::After(at, id) => Some((at, id)),
        Seek::Before(..) => {
            return Err(PlatformError::BadRequest(
                "before: this list pages forward only; use the after cursor".into(),
            ))
        }
    };
    let views = state
        .broadcasts
        .list(key.project_id, before, page.limit + 1)
        .await?;
    let context = ListContext {
        kind: "b",
        number: key.project_id,
        request: page,
        base_url: format!(
            "{}/platform/v1/whatsapp/broadcasts",
            state.origin.for_request(&headers)
        ),
        query: &query,
    };
    Ok(Json(paging::envelope(
        views,
        &context,
        |v| (v.row.created_at, v.row.id),
        present,
    )))
}

async fn show(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(id): Path<String>,
) -> Result<Json<Data<Value>>, PlatformError> {
    let view = state.broadcasts.get(key.project_id, parse_id(&id)?).await?;
    Ok(Json(Data {
        data: present(&view),
    }))
}

async fn add_recipients(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(id): Path<String>,
    PlatformJson(body): PlatformJson<Value>,
) -> Result<Json<Data<Value>>, PlatformError> {
    let id = parse_id(&id)?;
    let items = wrapped(&body)?
        .get("recipients")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            PlatformError::Validation(vec![crate::domain::field_error::FieldError::new(
                "recipients",
                "is required: an array of up to 1000 recipients",
            )])
        })?;
    let (added, duplicates) = state.broadcasts.add(key.project_id, id, items).await?;
    Ok(Json(Data {
        data: json!({ "added": added, "duplicates": duplicates, "errors": [] }),
    }))
}

/// A recipients cursor: the broadcast and the last position seen.
fn recipient_cursor(broadcast: Uuid, position: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"b": broadcast, "p": position}).to_string())
}

fn parse_recipient_cursor(broadcast: Uuid, raw: &str) -> Result<i64, PlatformError> {
    let malformed = || PlatformError::BadRequest("after: malformed cursor".into());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| malformed())?;
    let cursor: Value = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
    if cursor.get("b").and_then(Value::as_str) != Some(broadcast.to_string().as_str()) {
        return Err(PlatformError::BadRequest(
            "after: cursor belongs to another list".into(),
        ));
    }
    cursor
        .get("p")
        .and_then(Value::as_i64)
        .ok_or_else(malformed)
}

async fn list_recipients(
    State(state): State<AppState>,
    key: ProjectKey,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, PlatformError> {
    let id = parse_id(&id)?;
    let query = Query::parse(raw.as_deref());
    let limit = match query.get("limit") {
        None => paging::DEFAULT_LIMIT,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=paging::MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                PlatformError::BadRequest(format!(
                    "limit: must be an integer from 1 to {}, got '{raw}'",
                    paging::MAX_LIMIT
                ))
            })?,
    };
    let after = query
        .get("after")
        .map(|raw| parse_recipient_cursor(id, raw))
        .transpose()?;
    let status = query.get("status");
    if let Some(status) = status.filter(|s| !RECIPIENT_STATES.contains(s)) {
        return Err(PlatformError::BadRequest(format!(
            "status: must be one of {}, got '{status}'",
            RECIPIENT_STATES.join(", ")
        )));
    }
    let mut rows = state
        .broadcasts
        .recipients(key.project_id, id, after, status, limit + 1)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = rows
        .last()
        .filter(|_| more)
        .map(|r| recipient_cursor(id, r.position));
    let next = next_cursor.as_ref().map(|cursor| {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in query.pairs.iter().filter(|(k, _)| k != "after") {
            out.append_pair(k, v);
        }
        out.append_pair("after", cursor);
        format!(
            "{}/platform/v1/whatsapp/broadcasts/{id}/recipients?{}",
            state.origin.for_request(&headers),
            out.finish()
        )
    });
    Ok(Json(json!({
        "data": rows.iter().map(present_recipient).collect::<Vec<_>>(),
        "paging": {
            "cursors": { "before": null, "after": next_cursor },
            "next": next,
            "previous": null,
        }
    })))
}

async fn change(
    state: &AppState,
    key: &ProjectKey,
    id: &str,
    change: BroadcastChange,
) -> Result<Json<Data<Value>>, PlatformError> {
    let view = state
        .broadcasts
        .change(key.project_id, parse_id(id)?, change)
        .await?;
    Ok(Json(Data {
        data: present(&view),
    }))
}

/// Starts sending now (asynchronously: poll the broadcast for progress).
async fn send(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(id): Path<String>,
) -> Result<Response, PlatformError> {
    let answer = change(&state, &key, &id, BroadcastChange::Send).await?;
    Ok((StatusCode::ACCEPTED, answer).into_response())
}

/// `{"whatsapp_broadcast": {"scheduled_at": "2026-12-24T09:00:00Z"}}` (or `scheduled_at` at the
/// top level): starts by itself then.
async fn schedule(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(id): Path<String>,
    PlatformJson(body): PlatformJson<Value>,
) -> Result<Json<Data<Value>>, PlatformError> {
    let raw = body
        .pointer("/whatsapp_broadcast/scheduled_at")
        .or_else(|| body.get("scheduled_at"))
        .and_then(Value::as_str);
    let invalid = |message: &str| {
        PlatformError::Validation(vec![crate::domain::field_error::FieldError::new(
            "scheduled_at",
            message,
        )])
    };
    let at = raw
        .ok_or_else(|| invalid("is required: an ISO 8601 time in the future"))
        .and_then(|raw| {
            chrono::DateTime::parse_from_rfc3339(raw)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| invalid("must be an ISO 8601 time such as 2026-12-24T09:00:00Z"))
        })?;
    if at <= crate::store::now() {
        return Err(invalid("must be in the future; send now with POST …/send"));
    }
    change(&state, &key, &id, BroadcastChange::Schedule(at)).await
}

/// A scheduled broadcast goes back to `draft`.
async fn cancel(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(id): Path<String>,
) -> Result<Json<Data<Value>>, PlatformError> {
    change(&state, &key, &id, BroadcastChange::Cancel).await
}

/// A sending broadcast stops: recipients not yet sent stay pending.
async fn stop(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(id): Path<String>,
) -> Result<Json<Data<Value>>, PlatformError> {
    change(&state, &key, &id, BroadcastChange::Stop).await
}
