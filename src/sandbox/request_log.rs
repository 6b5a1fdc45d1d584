//! The last Graph requests the emulator received, exactly as received, so gateway tests can
//! check what the gateway forwarded: stripped headers, the swapped-in access token, the body.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use axum::http::{HeaderMap, Method, Uri};
use serde_json::{json, Map, Value};

/// Requests kept; older ones are dropped first.
pub const CAPACITY: usize = 200;
/// Bodies up to this size that are valid UTF-8 are logged inline; others as `"<N bytes>"`.
pub const INLINE_BODY_LIMIT: usize = 64 * 1024;

#[derive(Default)]
pub struct RequestLog {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_seq: u64,
    entries: VecDeque<Value>,
}

/// A request seen but not answered yet.
pub struct Pending {
    entry: Map<String, Value>,
}

impl RequestLog {
    /// Notes method, path, query and every header at arrival.
    pub fn start(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Pending {
        let seq = {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            inner.next_seq += 1;
            inner.next_seq
        };
        let mut header_map = Map::new();
        for (name, value) in headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            // A repeated header is combined as HTTP allows (`a, b`), keeping every value.
            match header_map.get_mut(name.as_str()) {
                Some(Value::String(existing)) => {
                    existing.push_str(", ");
                    existing.push_str(&value);
                }
                _ => {
                    header_map.insert(name.as_str().to_owned(), Value::String(value));
                }
            }
        }
        let mut entry = Map::new();
        entry.insert("seq".into(), json!(seq));
        entry.insert("at".into(), json!(crate::time::iso(chrono::Utc::now())));
        entry.insert("method".into(), json!(method.as_str()));
        entry.insert("path".into(), json!(uri.path()));
        entry.insert("query".into(), json!(uri.query().unwrap_or("")));
        entry.insert("headers".into(), Value::Object(header_map));
        Pending { entry }
    }

    /// Completes the entry with the body and the answer's status, and stores it.
    pub fn finish(&self, mut pending: Pending, body: String, status: u16) {
        pending.entry.insert("body".into(), Value::String(body));
        pending.entry.insert("status".into(), json!(status));
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.entries.len() >= CAPACITY {
            inner.entries.pop_front();
        }
        inner.entries.push_back(Value::Object(pending.entry));
    }

    /// The newest `limit` entries, oldest first (by arrival).
    pub fn list(&self, limit: usize) -> Vec<Value> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut entries: Vec<Value> = inner.entries.iter().cloned().collect();
        entries.sort_by_key(|e| e["seq"].as_u64().unwrap_or_default());
        let skip = entries.len().saturating_sub(limit);
        entries.split_off(skip)
    }

    pub fn clear(&self) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .clear();
    }
}

/// A body as the log shows it: the text when small and UTF-8, otherwise its size.
pub fn describe_body(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(text) if body.len() <= INLINE_BODY_LIMIT => text.to_owned(),
        _ => format!("<{} bytes>", body.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_entries_in_order() {
        let log = RequestLog::default();
        let uri: Uri = "/v23.0/1/messages?x=1".parse().expect("static uri");
        for i in 0..(CAPACITY + 5) {
            let pending = log.start(&Method::POST, &uri, &HeaderMap::new());
            log.finish(pending, i.to_string(), 200);
        }
        let all = log.list(1000);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0]["body"], "5");
        assert_eq!(all[CAPACITY - 1]["body"], (CAPACITY + 4).to_string());
        assert_eq!(log.list(2).len(), 2);
        assert_eq!(all[0]["query"], "x=1");
    }

    #[test]
    fn large_or_binary_bodies_are_sizes() {
        assert_eq!(describe_body(b"{}"), "{}");
        assert_eq!(describe_body(&[0xff, 0xfe]), "<2 bytes>");
        assert_eq!(
            describe_body(&vec![b'a'; INLINE_BODY_LIMIT + 1]),
            format!("<{} bytes>", INLINE_BODY_LIMIT + 1)
        );
    }
}
