//! The HTTP surface: one router per capability, merged here, under one set of layers.

mod app;
pub mod body;
pub mod client_addr;
pub mod connections;
mod edge;
pub mod graph;
pub mod graph_error;
mod health;
mod keep_alive;
pub mod lifecycle;
mod media_vault;
mod onboarding;
pub mod openapi;
pub mod origin;
pub mod overload;
pub mod per_core;
pub mod platform;
mod providers;
pub mod request_id;
pub mod server;
pub mod state;
mod webhooks;

use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{middleware, Json, Router};
use serde_json::json;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::http::state::AppState;
pub use app::HttpApp;

/// Every route under its layers. Connections are served by [`HttpApp`], which answers the Graph
/// mounts without this router (with the same `edge`) and hands it everything else.
fn router(state: AppState, edge: edge::Edge) -> Router {
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
        .layer(RequestBodyTimeoutLayer::new(body_idle_timeout))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(make_request_span)
                .on_request(())
                .on_response(log_response)
                .on_failure(()),
        )
        // Outermost, so the span above sees the request id and the deadline covers it all.
        .layer(middleware::from_fn_with_state(edge, edge::edge))
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
    request_span(route, request)
}

/// The span of one request to `route` (a route template).
fn request_span(route: &str, request: &Request) -> Span {
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
