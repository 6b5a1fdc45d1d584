//! Liveness and readiness for load balancers and orchestrators.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::http::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(live))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
}

/// The process is up and serving HTTP.
async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers, the spill file has room and the instance is not stopping; a load
/// balancer should stop routing here otherwise (a full spill file means what Meta accepts now is
/// held in memory only).
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.lifecycle.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining" })),
        );
    }
    let spill = state.writer.spill_stats().map(|stats| {
        json!({
            "records": stats.records.load(Ordering::Acquire),
            "bytes": stats.bytes.load(Ordering::Acquire),
            "full": stats.full.load(Ordering::Acquire),
        })
    });
    let spill_full = spill.as_ref().is_some_and(|s| s["full"] == true);
    let memory_only = state.writer.memory_depth();
    match state.store.ping().await {
        Ok(()) if !spill_full => (
            StatusCode::OK,
            Json(
                json!({ "status": "ready", "database": "ok", "spill": spill, "memory_only": memory_only }),
            ),
        ),
        Ok(()) => {
            tracing::warn!("readiness check failed: the spill file is full");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    json!({ "status": "unavailable", "database": "ok", "spill": spill, "memory_only": memory_only }),
                ),
            )
        }
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    json!({ "status": "unavailable", "database": "unreachable", "spill": spill, "memory_only": memory_only }),
                ),
            )
        }
    }
}

/// Prometheus text format.
async fn metrics() -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::telemetry::metrics::handle().render(),
    )
}
