//! Header hygiene between the caller, wagate and Graph.

use axum::http::header::{self, HeaderMap, HeaderName};

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus the caller's credentials and `Host`, which must
/// never reach Graph: the number's own token replaces them.
const STRIPPED_TO_UPSTREAM: [HeaderName; 11] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    header::AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("x-api-key"),
];

/// Hop-by-hop headers of Graph's response; the rest (content type, length, caching, Graph's own
/// `www-authenticate`, `x-fb-*`) goes back as Meta sent it.
const STRIPPED_FROM_UPSTREAM: [HeaderName; 8] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
];

/// Headers named in `Connection:` are hop-by-hop too.
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

fn strip(headers: &mut HeaderMap, names: &[HeaderName]) {
    for name in connection_listed(headers) {
        headers.remove(name);
    }
    for name in names {
        headers.remove(name);
    }
}

/// Prepares the caller's headers for Graph (the token is set by the caller of this function).
pub fn for_upstream(headers: &mut HeaderMap) {
    strip(headers, &STRIPPED_TO_UPSTREAM);
}

/// Prepares Graph's response headers for the caller.
pub fn for_downstream(headers: &mut HeaderMap) {
    strip(headers, &STRIPPED_FROM_UPSTREAM);
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn credentials_host_and_hop_by_hop_headers_are_removed() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-api-key", "wag_x"),
            ("authorization", "Bearer caller"),
            ("host", "wagate.local"),
            ("connection", "keep-alive, x-custom-hop"),
            ("x-custom-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("content-type", "application/json"),
            ("x-trace", "kept"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        for_upstream(&mut headers);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["content-type", "x-trace"]);
    }

    #[test]
    fn response_keeps_graph_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        headers.insert(
            HeaderName::from_static("x-fb-trace-id"),
            HeaderValue::from_static("abc"),
        );
        for_downstream(&mut headers);
        assert!(headers.contains_key(header::CONTENT_TYPE));
        assert!(headers.contains_key("x-fb-trace-id"));
        assert!(!headers.contains_key(header::CONNECTION));
    }
}
