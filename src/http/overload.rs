//! Answers for a server that cannot take more: too many connections, a request past its deadline,
//! an instance draining before it stops. Each is a fast 503 in the envelope of the route (Graph's
//! on proxy routes, `{"error": …}` elsewhere) with a `Retry-After`, never a queue.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::graph::path::is_graph_path;
use super::graph_error::GraphError;

/// A 503 for `path` in its route's envelope, with `Retry-After: 1`.
pub fn unavailable(path: &str, reason: &str) -> Response {
    unavailable_in(is_graph_path(path), reason)
}

/// A 503 in Graph's envelope (`graph_route`) or the API's, with `Retry-After: 1`.
pub fn unavailable_in(graph_route: bool, reason: &str) -> Response {
    let mut response = if graph_route {
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
