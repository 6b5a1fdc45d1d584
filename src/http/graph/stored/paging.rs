//! Graph cursor pagination (design §4): `limit` 1..100, opaque `before`/`after` cursors, and the
//! `paging` object with all four keys always present.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::http::graph_error::GraphError;
use crate::store::Seek;

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// What a cursor encodes: which list (kind and number), where, and which way.
#[derive(Debug, Serialize, Deserialize)]
struct CursorBody {
    /// List kind: `m` messages, `v` conversations, `c` contacts, `l` calls.
    k: String,
    /// The phone number the list belongs to.
    n: Uuid,
    t: DateTime<Utc>,
    i: Uuid,
}

fn encode(kind: &str, number: Uuid, t: DateTime<Utc>, id: Uuid) -> String {
    let body = serde_json::to_vec(&CursorBody {
        k: kind.into(),
        n: number,
        t,
        i: id,
    })
    .expect("serialises");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body)
}

fn decode(
    param: &str,
    raw: &str,
    kind: &str,
    number: Uuid,
) -> Result<(DateTime<Utc>, Uuid), GraphError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| GraphError::invalid_parameter(format!("{param}: malformed cursor")))?;
    let body: CursorBody = serde_json::from_slice(&bytes)
        .map_err(|_| GraphError::invalid_parameter(format!("{param}: malformed cursor")))?;
    if body.k != kind || body.n != number {
        return Err(GraphError::invalid_parameter(format!(
            "{param}: cursor belongs to another list"
        )));
    }
    Ok((body.t, body.i))
}

/// The page a request asks for.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub limit: u32,
    pub seek: Seek,
}

pub fn parse(query: &Query, kind: &str, number: Uuid) -> Result<PageRequest, GraphError> {
    let limit = match query.get("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(GraphError::invalid_parameter(format!(
                    "limit: must be an integer from 1 to {MAX_LIMIT}, got '{raw}'"
                )))
            }
        },
    };
    let seek = match (query.get("after"), query.get("before")) {
        (Some(_), Some(_)) => {
            return Err(GraphError::invalid_parameter(
                "after, before: send one cursor, not both",
            ))
        }
        (Some(after), None) => {
            let (t, i) = decode("after", after, kind, number)?;
            Seek::After(t, i)
        }
        (None, Some(before)) => {
            let (t, i) = decode("before", before, kind, number)?;
            Seek::Before(t, i)
        }
        (None, None) => Seek::First,
    };
    Ok(PageRequest { limit, seek })
}

/// Decoded query parameters, in order, for reading and for rebuilding paging URLs.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        Self { pairs }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The query with the cursors replaced by `key=cursor`.
    fn with_cursor(&self, key: &str, cursor: &str) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.pairs {
            if k != "after" && k != "before" {
                out.append_pair(k, v);
            }
        }
        out.append_pair(key, cursor);
        out.finish()
    }
}

/// Which list a page belongs to and how to link its neighbours.
pub struct ListContext<'a> {
    pub kind: &'static str,
    pub number: Uuid,
    pub request: PageRequest,
    pub base_url: String,
    pub query: &'a Query,
}

/// Builds `{"data": items, "paging": …}` from up to `limit + 1` fetched rows. `key` gives a row's
/// `(timestamp, id)`; rows come newest first, or oldest first for a `before` page.
pub fn envelope<T>(
    mut rows: Vec<T>,
    context: &ListContext<'_>,
    key: impl Fn(&T) -> (DateTime<Utc>, Uuid),
    present: impl Fn(&T) -> Value,
) -> Value {
    let request = context.request;
    let more = rows.len() > request.limit as usize;
    rows.truncate(request.limit as usize);
    if matches!(request.seek, Seek::Before(..)) {
        rows.reverse();
    }
    let cursor = |row: &T| {
        let (t, i) = key(row);
        encode(context.kind, context.number, t, i)
    };
    // Older rows exist when this page was cut going back in time, or when we came from older
    // ones; newer rows likewise.
    let (has_older, has_newer) = match request.seek {
        Seek::First => (more, false),
        Seek::After(..) => (more, true),
        Seek::Before(..) => (true, more),
    };
    let after = rows.last().filter(|_| has_older).map(&cursor);
    let before = rows.first().filter(|_| has_newer).map(&cursor);
    let link = |key: &str, c: &Option<String>| {
        c.as_ref()
            .map(|c| format!("{}?{}", context.base_url, context.query.with_cursor(key, c)))
    };
    json!({
        "data": rows.iter().map(present).collect::<Vec<_>>(),
        "paging": {
            "cursors": { "before": before, "after": after },
            "next": link("after", &after),
            "previous": link("before", &before),
        }
    })
}
