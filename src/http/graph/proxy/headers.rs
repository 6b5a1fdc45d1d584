//! Header hygiene between the caller, wagate and Graph.

use axum::http::header::{self, HeaderMap, HeaderName};

/// The only caller headers Graph sees: what says how to read the body and the answer, and
/// conditional or partial downloads. Everything else stays here: the caller's credentials and
/// `Host`, cookies, `X-Forwarded-For`/`Forwarded` (the caller's address is not Meta's business),
/// hop-by-hop headers, and whatever a client library adds. The number's token is set after.
const FORWARDED_TO_UPSTREAM: [HeaderName; 12] = [
    header::ACCEPT,
    header::ACCEPT_ENCODING,
    header::ACCEPT_LANGUAGE,
    header::CACHE_CONTROL,
    header::CONTENT_ENCODING,
    header::CONTENT_LENGTH,
    header::CONTENT_TYPE,
    header::IF_MODIFIED_SINCE,
    header::IF_NONE_MATCH,
    header::IF_RANGE,
    header::RANGE,
    header::USER_AGENT,
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

/// The caller's headers as Graph gets them: the allow-listed ones only, every value kept (the
/// token is set by the caller of this function).
pub fn for_upstream(headers: HeaderMap) -> HeaderMap {
    let mut upstream = HeaderMap::with_capacity(FORWARDED_TO_UPSTREAM.len() + 1);
    for name in &FORWARDED_TO_UPSTREAM {
        for value in headers.get_all(name) {
            upstream.append(name.clone(), value.clone());
        }
    }
    upstream
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
    fn only_allow_listed_headers_reach_graph() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-api-key", "wag_x"),
            ("authorization", "Bearer caller"),
            ("host", "wagate.local"),
            ("cookie", "session=1"),
            ("x-forwarded-for", "10.0.0.7"),
            ("forwarded", "for=10.0.0.7"),
            ("connection", "keep-alive, x-custom-hop"),
            ("x-custom-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("x-trace", "dropped"),
            ("content-type", "application/json"),
            ("accept-encoding", "gzip"),
            ("range", "bytes=0-99"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let upstream = for_upstream(headers);
        let left: Vec<&str> = upstream.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["accept-encoding", "content-type", "range"]);
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
