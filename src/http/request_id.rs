//! Request ids: taken from `x-request-id` when the caller (or the load balancer) sent a sane one,
//! generated otherwise, echoed on the response, recorded in the request span, and made available
//! to error builders (Graph's `fbtrace_id`) through a task-local.

use axum::http::HeaderValue;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// A client-supplied id is kept only when it is short and printable, so it cannot forge log lines.
pub fn accept_incoming(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| s.to_owned())
}

/// A new request id (time-ordered, so log lines sort by it).
pub fn generate() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Runs `future` with `id` as the request id error builders read ([`current_request_id`]).
pub async fn scope<F: std::future::Future>(id: String, future: F) -> F::Output {
    REQUEST_ID.scope(id, future).await
}
