//! `/platform/v1/webhook_deliveries` (the delivery log, retry) and
//! `/platform/v1/whatsapp/phone_numbers/{id}/webhook_replays` (re-send a time range).

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::error::PlatformError;
use super::extract::{time_param, PlatformJson, ProjectKey};
use crate::domain::phone_numbers::FieldError;
use crate::http::graph::stored::paging::{self, ListContext, Query};
use crate::http::state::AppState;
use crate::store::{DeliveryFilter, PhoneNumber};
use crate::time::parse_time;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhook_deliveries", get(list))
        .route("/webhook_deliveries/{id}", get(show))
        .route("/webhook_deliveries/{id}/retry", post(retry))
        .route(
            "/whatsapp/phone_numbers/{phone_number_id}/webhook_replays",
            post(replay),
        )
}

const STATUSES: &[&str] = &["pending", "succeeded", "failed", "dead", "paused"];

/// Another project's number and an unknown one give the same 404.
async fn own_number(
    state: &AppState,
    project_id: Uuid,
    phone_number_id: &str,
) -> Result<PhoneNumber, PlatformError> {
    state
        .store
        .find_phone_number(phone_number_id)
        .await?
        .filter(|n| n.project_id == project_id)
        .ok_or(PlatformError::NotFound("phone number"))
}

fn bad(error: crate::http::graph_error::GraphError) -> PlatformError {
    PlatformError::BadRequest(error.details.unwrap_or(error.message))
}

async fn list(
    State(state): State<AppState>,
    key: ProjectKey,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, PlatformError> {
    let query = Query::parse(raw.as_deref());
    let mut filter = DeliveryFilter {
        since: time_param("since", query.get("since"))?,
        until: time_param("until", query.get("until"))?,
        ..DeliveryFilter::default()
    };
    if let Some(status) = query.get("status") {
        if !STATUSES.contains(&status) {
            return Err(PlatformError::BadRequest(format!(
                "status: must be one of {}, got '{status}'",
                STATUSES.join(", ")
            )));
        }
        filter.status = Some(status.to_owned());
    }
    if let Some(pnid) = query.get("phone_number_id") {
        filter.phone_number_internal_id =
            Some(own_number(&state, key.project_id, pnid).await?.internal_id);
    }
    let page = paging::parse(&query, "d", key.project_id).map_err(bad)?;
    let rows = state
        .store
        .list_deliveries(key.project_id, &filter, page.seek, page.limit + 1)
        .await?;
    let context = ListContext {
        kind: "d",
        number: key.project_id,
        request: page,
        base_url: format!(
            "{}/platform/v1/webhook_deliveries",
            state.origin.for_request(&headers)
        ),
        query: &query,
    };
    Ok(Json(paging::envelope(
        rows,
        &context,
        |row| (row.created_at, row.id),
        crate::delivery::to_json,
    )))
}

fn parse_id(raw: &str) -> Result<Uuid, PlatformError> {
    // A malformed id cannot exist: the same 404 as an unknown one.
    Uuid::parse_str(raw).map_err(|_| PlatformError::NotFound("webhook delivery"))
}

async fn show(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(id): Path<String>,
) -> Result<Json<Value>, PlatformError> {
    let id = parse_id(&id)?;
    let row = state
        .store
        .find_delivery(key.project_id, id)
        .await?
        .ok_or(PlatformError::NotFound("webhook delivery"))?;
    let attempts = state.store.delivery_attempts(id).await?;
    let mut data = crate::delivery::to_json(&row);
    data["attempts"] = attempts.iter().map(crate::delivery::attempt_json).collect();
    Ok(Json(json!({ "data": data })))
}

async fn retry(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), PlatformError> {
    let id = parse_id(&id)?;
    let row = state
        .store
        .retry_delivery(key.project_id, id, crate::store::now())
        .await?
        .ok_or(PlatformError::NotFound("webhook delivery"))?;
    state.delivery_wake.notify_one();
    tracing::info!(delivery_id = %id, "webhook delivery retry requested");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "data": crate::delivery::to_json(&row) })),
    ))
}

#[derive(Debug, Deserialize)]
struct ReplayInput {
    since: Option<String>,
    until: Option<String>,
}

/// `{"since", "until"}`, bare or wrapped as `{"webhook_replay": {…}}` like other resources.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ReplayBody {
    Wrapped { webhook_replay: ReplayInput },
    Bare(ReplayInput),
}

async fn replay(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(phone_number_id): Path<String>,
    PlatformJson(body): PlatformJson<ReplayBody>,
) -> Result<(StatusCode, Json<Value>), PlatformError> {
    let number = own_number(&state, key.project_id, &phone_number_id).await?;
    let input = match body {
        ReplayBody::Wrapped { webhook_replay } => webhook_replay,
        ReplayBody::Bare(input) => input,
    };
    let mut errors = Vec::new();
    let mut time = |field: &str, raw: Option<&str>| match raw.map(|r| (r, parse_time(r))) {
        None => None,
        Some((_, Some(t))) => Some(t),
        Some((raw, None)) => {
            errors.push(FieldError::new(
                field,
                format!("must be an ISO 8601 time such as 2026-01-15T12:00:00Z, got '{raw}'"),
            ));
            None
        }
    };
    let since = time("since", input.since.as_deref());
    let until = time("until", input.until.as_deref());
    if input.since.is_none() {
        errors.push(FieldError::new("since", "is required"));
    }
    let until = until.unwrap_or_else(crate::store::now);
    if since.is_some_and(|s| s > until) {
        errors.push(FieldError::new("until", "must not be before since"));
    }
    if number.webhook_destination_url.is_none() {
        errors.push(FieldError::new(
            "webhook_destination_url",
            "the number has none; PATCH one before replaying",
        ));
    }
    if !errors.is_empty() {
        return Err(PlatformError::Validation(errors));
    }
    let since = since.expect("validated above");
    let limit = u32::try_from(state.config.delivery.replay_limit).unwrap_or(u32::MAX);
    let (queued, truncated) =
        crate::delivery::replay(&*state.store, &number, since, until, limit).await?;
    state.delivery_wake.notify_one();
    tracing::info!(%phone_number_id, queued, truncated, "webhook replay queued");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "data": {
            "phone_number_id": number.phone_number_id,
            "since": crate::time::iso(since),
            "until": crate::time::iso(until),
            "queued": queued,
            // More events lie in the range than delivery.replay_limit: replay from the last
            // queued event's time on.
            "truncated": truncated,
        }})),
    ))
}
