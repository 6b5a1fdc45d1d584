//! Request ids: taken from `x-request-id` when the caller (or the load balancer) sent a sane one,
//! generated otherwise, echoed on the response, recorded in the request span, and made available
//! to error builders (Graph's `fbtrace_id`) through a task-local.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// A client-supplied id is kept only when it is short and printable, so it cannot forge log lines.
fn accept_incoming(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| s.to_owned())
}

pub async fn middleware(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(accept_incoming)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    let header = HeaderValue::from_str(&id).expect("request ids are ASCII");
    request
        .headers_mut()
        .insert(REQUEST_ID_HEADER, header.clone());
    let mut response = REQUEST_ID.scope(id, next.run(request)).await;
    response.headers_mut().insert(REQUEST_ID_HEADER, header);
    response
}
