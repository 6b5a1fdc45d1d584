//! The HTTP surface: one router per capability, merged here, under one set of layers.

pub mod body;
pub mod client_addr;
pub mod connections;
pub mod graph;
pub mod graph_error;
mod health;
pub mod lifecycle;
mod media_vault;
mod onboarding;
pub mod openapi;
pub mod origin;
pub mod overload;
pub mod platform;
mod providers;
pub mod request_id;
pub mod server;
pub mod state;
mod webhooks;

use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderName, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{middleware, Json, Router};
use serde_json::json;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::http::state::AppState;

pub fn router(state: AppState) -> Router {
    let body_idle_timeout = state.config.server.body_idle_timeout;
    Router::new()
        .merge(health::router())
        .merge(openapi::router())
        .nest("/platform/v1", platform::router())
        .merge(graph::router())
        .merge(media_vault::router())
        .merge(webhooks::router())
        .merge(onboarding::router())
        .merge(providers::router())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            overload::deadline,
        ))
        .layer(middleware::from_fn(count_request))
        .layer(RequestBodyTimeoutLayer::new(body_idle_timeout))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(make_request_span)
                .on_request(())
                .on_response(log_response)
                .on_failure(()),
        )
        .layer(SetSensitiveRequestHeadersLayer::new([
            AUTHORIZATION,
            HeaderName::from_static("x-api-key"),
        ]))
        .layer(middleware::from_fn(request_id::middleware))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            overload::close_when_draining,
        ))
        .with_state(state)
}

/// The request span names the matched route, never the raw URI: query strings can carry
/// `access_token` or `hub.verify_token`.
fn make_request_span(request: &Request) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("unmatched");
    let request_id = request
        .headers()
        .get(request_id::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // `project_id` and `phone_number_id` are filled in by whoever resolves them (the proxy, the
    // Platform API's key extractor), so the request's log line names both.
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        request_id,
        project_id = tracing::field::Empty,
        phone_number_id = tracing::field::Empty,
    )
}

fn log_response(response: &Response, latency: Duration, _span: &Span) {
    tracing::info!(
        status = response.status().as_u16(),
        latency_us = latency.as_micros() as u64,
        "request finished"
    );
}

/// Requests by route template and status, and their latency, for `/metrics`. Route templates
/// (never raw paths) keep the label set bounded.
async fn count_request(request: Request, next: middleware::Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("wagate_http_request_duration_seconds", "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("wagate_http_requests_total", "route" => route, "status" => status)
        .increment(1);
    response
}

async fn not_found(uri: Uri) -> Response {
    if graph::path::is_graph_path(uri.path()) {
        graph_error::GraphError::invalid_parameter(format!("unknown path: {}", uri.path()))
            .into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no such route; see the README for the API" })),
        )
            .into_response()
    }
}
