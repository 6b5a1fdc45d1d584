//! The origin clients reach wagate at, for the absolute URLs wagate hands out (paging links,
//! media download links, setup-link URLs).

use axum::http::HeaderMap;

use crate::config::Config;

/// `server.public_url`, else the request's Host (and `X-Forwarded-Proto` from a load balancer).
pub fn public_origin(config: &Config, headers: &HeaderMap) -> String {
    if let Some(url) = config.public_url() {
        return url.to_owned();
    }
    let header = |name: &str, default: &'static str| {
        headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .unwrap_or(default)
            .to_owned()
    };
    format!(
        "{}://{}",
        header("x-forwarded-proto", "http"),
        header("host", "localhost")
    )
}
