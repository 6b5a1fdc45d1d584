//! Meta's webhook endpoint: the verification handshake and signed event ingest.
//!
//! `POST` answers 200 only after the raw event and every effect are committed (through the
//! writer's group commit). A bad or missing signature stores nothing (401); invalid JSON with a
//! valid signature is stored as a failed raw event and answered 200 so Meta stops retrying; a
//! database outage answers 503 so Meta retries later and nothing is lost.

use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use crate::crypto;
use crate::domain::ingest;
use crate::http::body::{read_limited, BodyError};
use crate::http::state::AppState;
use crate::store::StoreError;

pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/whatsapp", get(verify).post(receive))
}

#[derive(Debug, Deserialize)]
struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn verify(State(state): State<AppState>, Query(handshake): Query<Handshake>) -> Response {
    let expected = state.config.meta.verify_token.expose_secret();
    let given = handshake.verify_token.unwrap_or_default();
    let ok = handshake.mode.as_deref() == Some("subscribe")
        && !expected.is_empty()
        && crypto::constant_time_eq(given.as_bytes(), expected.as_bytes());
    match (ok, handshake.challenge) {
        (true, Some(challenge)) => {
            ([(header::CONTENT_TYPE, "text/plain")], challenge).into_response()
        }
        _ => error(
            StatusCode::FORBIDDEN,
            "verification failed: hub.verify_token does not match meta.verify_token",
        ),
    }
}

fn signature_ok(state: &AppState, headers: &HeaderMap, body: &Bytes) -> bool {
    let Some(signature) = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    // Several app secrets may be configured; each is compared in constant time.
    state
        .config
        .meta
        .app_secrets()
        .any(|secret| crypto::verify_hub_signature(secret.as_bytes(), body, signature))
}

async fn receive(State(state): State<AppState>, request: Request) -> Response {
    let limit = state.config.meta.webhook_body_limit;
    let headers = request.headers().clone();
    let body = match read_limited(request, limit).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "webhook body exceeds meta.webhook_body_limit",
            )
        }
        Err(BodyError::Stalled) => {
            return error(StatusCode::REQUEST_TIMEOUT, "webhook body stalled")
        }
        Err(BodyError::Read(message)) => return error(StatusCode::BAD_REQUEST, &message),
    };
    if state.config.meta.app_secrets().next().is_none() {
        tracing::error!(
            "webhook refused: meta.app_secret is not configured, so signatures cannot be checked"
        );
        return error(
            StatusCode::UNAUTHORIZED,
            "signature cannot be verified: meta.app_secret is not configured",
        );
    }
    if !signature_ok(&state, &headers, &body) {
        tracing::warn!("webhook refused: missing or invalid X-Hub-Signature-256");
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or invalid X-Hub-Signature-256",
        );
    }
    let now = crate::store::now();
    let job = match ingest::prepare(&state.numbers, &state.store, &body, now).await {
        Ok(job) => job,
        Err(e) => return unavailable(e),
    };
    let state_name = job.event.state.clone();
    let routes = job.routes.len();
    let fields: Vec<&'static str> = job
        .routes
        .iter()
        .flat_map(|r| r.changes.iter().map(|c| field_label(&c.field)))
        .collect();
    match state.writer.ingest(job).await {
        Ok(()) => {
            metrics::counter!("wagate_webhook_events_total", "state" => state_name.clone())
                .increment(1);
            for field in fields {
                metrics::counter!("wagate_webhook_changes_total", "field" => field).increment(1);
            }
            tracing::info!(state = %state_name, routes, "webhook ingested");
            (StatusCode::OK, Json(json!({ "success": true }))).into_response()
        }
        Err(e) => unavailable(e),
    }
}

/// Meta's webhook fields as metric labels; anything else is `other`, so a label set stays bounded.
fn field_label(field: &str) -> &'static str {
    const KNOWN: [&str; 14] = [
        "messages",
        "calls",
        "smb_message_echoes",
        "smb_app_state_sync",
        "history",
        "business_username_updates",
        "user_id_update",
        "user_preferences",
        "message_template_status_update",
        "message_template_quality_update",
        "phone_number_quality_update",
        "phone_number_name_update",
        "account_update",
        "account_alerts",
    ];
    KNOWN.into_iter().find(|k| *k == field).unwrap_or("other")
}

fn unavailable(error: StoreError) -> Response {
    match error {
        StoreError::Unavailable(message) => {
            tracing::warn!(%message, "webhook not stored: database unavailable; Meta will retry");
            error_response(StatusCode::SERVICE_UNAVAILABLE)
        }
        other => {
            tracing::error!(error = ?other, "webhook not stored");
            error_response(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

fn error_response(status: StatusCode) -> Response {
    error(status, "webhook not stored; retry later")
}
