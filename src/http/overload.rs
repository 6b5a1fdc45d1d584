//! Answers for a server that cannot take more: too many connections, a request past its deadline,
//! an instance draining before it stops. Each is a fast 503 in the envelope of the route (Graph's
//! on proxy routes, `{"error": …}` elsewhere) with a `Retry-After`, never a queue.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::graph::path::is_graph_path;
use super::graph_error::GraphError;
use super::state::AppState;

/// A 503 for `path` in its route's envelope, with `Retry-After: 1`.
pub fn unavailable(path: &str, reason: &str) -> Response {
    let mut response = if is_graph_path(path) {
        let mut error = GraphError::unavailable();
        error.details = Some(reason.to_owned());
        error.into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": format!("service temporarily unavailable: {reason}; retry later") })),
        )
            .into_response()
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// What an over-limit connection is served: every request answered 503, then the connection
/// closed.
pub fn too_many_connections(path: &str) -> Response {
    metrics::counter!("wagate_http_overload_total", "reason" => "max_connections").increment(1);
    let mut response = unavailable(
        path,
        "this instance is at server.max_connections; retry, or add instances",
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// `server.request_timeout`: a request whose handler has not answered within it gets a 503
/// instead of waiting on (uploads stream under `body_idle_timeout` and are exempt).
pub async fn deadline(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit: Duration = state.config.server.request_timeout;
    let streamed = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/"));
    if streamed {
        return next.run(request).await;
    }
    let path = request.uri().path().to_owned();
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("wagate_http_overload_total", "reason" => "request_timeout")
                .increment(1);
            tracing::warn!(
                limit = ?limit,
                "request did not finish within server.request_timeout; answered 503"
            );
            unavailable(
                &path,
                "the request did not finish within server.request_timeout",
            )
        }
    }
}

/// While draining, every response asks the client (or load balancer) to close its connection, so
/// no kept-alive connection is reused while this instance closes it.
pub async fn close_when_draining(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if state.lifecycle.is_draining() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
