//! Pacing settings: `GET|PATCH /platform/v1/whatsapp/phone_numbers/{id}/pacing` (a number's rate:
//! its tier's, or its own) and `GET|PATCH /platform/v1/pacing` (the project's pair-rate mode).

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::error::PlatformError;
use super::extract::{PlatformJson, ProjectKey};
use super::present::Data;
use crate::config::PairRateMode;
use crate::domain::field_error::FieldError;
use crate::http::state::AppState;
use crate::store::PhoneNumber;
use crate::time::iso;

/// The highest rate a number may be given (Meta's highest tier is 1,000 messages per second).
pub const MAX_PACING_RATE: i64 = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/whatsapp/phone_numbers/{phone_number_id}/pacing",
            get(show_number).patch(update_number),
        )
        .route("/pacing", get(show_project).patch(update_project))
}

fn number_pacing(state: &AppState, n: &PhoneNumber) -> Value {
    let own = n.pacing_rate.and_then(|r| u32::try_from(r).ok());
    let rate = state
        .pacer
        .rate_for(own, n.is_coexistence, n.throughput_tier.as_deref());
    let live = state.pacer.live_instances();
    json!({
        "phone_number_id": n.phone_number_id,
        "enabled": state.config.pacing.enabled,
        "throughput_tier": n.throughput_tier,
        "is_coexistence": n.is_coexistence,
        "pacing_rate": n.pacing_rate,
        "rate": rate.rate,
        "rate_source": rate.source,
        "live_instances": live,
        "instance_rate": f64::from(rate.rate) / f64::from(live),
        "paused_until": n.paused_until.filter(|u| *u > crate::store::now()).map(iso),
    })
}

async fn show_number(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(phone_number_id): Path<String>,
) -> Result<Json<Data<Value>>, PlatformError> {
    let number = state
        .phone_numbers
        .get(key.project_id, &phone_number_id)
        .await?;
    Ok(Json(Data {
        data: number_pacing(&state, &number),
    }))
}

/// `{"pacing_rate": 50}` sets the number's own rate; `{"pacing_rate": null}` returns it to its
/// tier's.
async fn update_number(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(phone_number_id): Path<String>,
    PlatformJson(body): PlatformJson<Value>,
) -> Result<Json<Data<Value>>, PlatformError> {
    let number = state
        .phone_numbers
        .get(key.project_id, &phone_number_id)
        .await?;
    let rate = match body.get("pacing_rate") {
        None => {
            return Err(PlatformError::Validation(vec![FieldError::new(
                "pacing_rate",
                "is required: messages per second (1 to 10000), or null for the tier's rate",
            )]))
        }
        Some(Value::Null) => None,
        Some(value) => match value.as_i64() {
            Some(rate) if (1..=MAX_PACING_RATE).contains(&rate) => Some(rate),
            _ => {
                return Err(PlatformError::Validation(vec![FieldError::new(
                    "pacing_rate",
                    format!("must be a whole number of messages per second from 1 to {MAX_PACING_RATE}, or null"),
                )]))
            }
        },
    };
    state
        .store
        .set_number_pacing_rate(number.internal_id, rate, crate::store::now())
        .await?;
    state.numbers.invalidate();
    let number = state
        .phone_numbers
        .get(key.project_id, &phone_number_id)
        .await?;
    tracing::info!(phone_number_id = %number.phone_number_id, ?rate, "number's send rate set");
    Ok(Json(Data {
        data: number_pacing(&state, &number),
    }))
}

async fn project_pacing(state: &AppState, project: uuid::Uuid) -> Result<Value, PlatformError> {
    let chosen = state.store.project_pair_rate_mode(project).await?;
    let default = state.config.pacing.pair_rate_mode;
    let mode = chosen
        .as_deref()
        .and_then(PairRateMode::parse)
        .unwrap_or(default);
    Ok(json!({
        "pair_rate_mode": mode.as_str(),
        "pair_rate_mode_source": if chosen.is_some() { "project" } else { "default" },
        "pair_burst": state.config.pacing.pair_burst,
        "pair_interval_seconds": state.config.pacing.pair_interval.as_secs_f64(),
        "max_wait_ms": state.config.pacing.max_wait.as_millis() as u64,
        "enabled": state.config.pacing.enabled,
    }))
}

async fn show_project(
    State(state): State<AppState>,
    key: ProjectKey,
) -> Result<Json<Data<Value>>, PlatformError> {
    Ok(Json(Data {
        data: project_pacing(&state, key.project_id).await?,
    }))
}

/// `{"pair_rate_mode": "observe"|"enforce"|"off"}`, or `null` for the configured default.
async fn update_project(
    State(state): State<AppState>,
    key: ProjectKey,
    PlatformJson(body): PlatformJson<Value>,
) -> Result<Json<Data<Value>>, PlatformError> {
    let mode = match body.get("pair_rate_mode") {
        Some(Value::Null) => None,
        Some(Value::String(mode)) if PairRateMode::parse(mode).is_some() => Some(mode.as_str()),
        _ => {
            return Err(PlatformError::Validation(vec![FieldError::new(
                "pair_rate_mode",
                "must be observe, enforce or off (or null for the server's default)",
            )]))
        }
    };
    state
        .store
        .set_project_pair_rate_mode(key.project_id, mode)
        .await?;
    state.numbers.invalidate();
    Ok(Json(Data {
        data: project_pacing(&state, key.project_id).await?,
    }))
}
