//! A recording stand-in for Graph, for tests where exact bytes and headers matter.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use futures::StreamExt as _;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
    /// Bodies over 1 MiB are not kept; their size and hash are.
    pub body: Bytes,
    pub body_len: usize,
    pub body_sha256: String,
}

#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub delay: Duration,
}

#[derive(Default)]
struct Inner {
    recorded: Mutex<Vec<Recorded>>,
    canned: Mutex<Option<Canned>>,
    /// Signalled when the first chunk of a streamed upload arrives.
    upload_started: Notify,
    /// The streaming download waits on this after its first chunk.
    download_gate: Notify,
    /// Which token Meta issued for which number and WABA ([`GraphMock::own`]): number
    /// verification and every request about a registered number or WABA are answered as Meta
    /// answers that token.
    owners: Mutex<Vec<Owned>>,
    /// `Some`: bare objects (`/{version}/{id}`, any method) are answered as Meta answers a token
    /// that reaches exactly these ids (a broad system-user token): 200 for them, Meta's
    /// "does not exist, cannot be loaded" 400 for any other id.
    reachable: Mutex<Option<Vec<String>>>,
    /// Answer like a Graph version that predates a field wagate asks for: 400 code 100.
    older: std::sync::atomic::AtomicBool,
}

/// One grant: `token` reaches the phone number `pnid` and its business account `waba`.
#[derive(Debug, Clone)]
struct Owned {
    token: String,
    pnid: String,
    waba: String,
}

#[derive(Clone)]
pub struct GraphMock {
    pub url: String,
    inner: Arc<Inner>,
}

pub const STREAM_CHUNK: usize = 64 * 1024;

impl GraphMock {
    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, inner }
    }

    /// The next responses (until changed) are this one.
    pub fn respond(&self, canned: Canned) {
        *self.inner.canned.lock().unwrap() = Some(canned);
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        self.inner.recorded.lock().unwrap().clone()
    }

    pub fn last(&self) -> Recorded {
        self.recorded().pop().expect("Graph received a request")
    }

    /// From now on, answer bare objects like Meta with a token that reaches `ids` (and nothing
    /// else): what a caller would get from Meta if wagate forwarded the request.
    /// From now on, a request naming `whatsapp_business_manager_messaging_limit` (October 2025)
    /// is refused as an older Graph version refuses an unknown field.
    pub fn like_an_older_graph(&self) {
        self.inner
            .older
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn reach_like_meta(&self, ids: &[&str]) {
        *self.inner.reachable.lock().unwrap() = Some(ids.iter().map(|s| s.to_string()).collect());
    }

    /// Meta issued `token` for the phone number `pnid` of business account `waba`: from now on
    /// that token reaches both (a token may own several numbers; a number may have several
    /// tokens). The connect helpers of [`TestApp`](super::TestApp) call this before they
    /// connect a number; a test connecting by hand calls it itself, as its owner got a token
    /// from Meta.
    ///
    /// Like Meta, the double then answers a request about a registered number or WABA (number
    /// verification included) with 401 code 190 for a token it never issued, and with 400 code
    /// 100 subcode 33 ("does not exist, cannot be loaded due to missing permissions") for a
    /// token issued for other objects. Ids nobody registered keep the lenient answers below.
    pub fn own(&self, token: &str, pnid: &str, waba: &str) {
        self.inner.owners.lock().unwrap().push(Owned {
            token: token.to_owned(),
            pnid: pnid.to_owned(),
            waba: waba.to_owned(),
        });
    }

    pub async fn upload_started(&self) {
        self.inner.upload_started.notified().await;
    }

    pub fn open_download_gate(&self) {
        self.inner.download_gate.notify_one();
    }
}

async fn handle(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();

    // Read the body as a stream, announcing the first chunk, so tests can prove that wagate
    // forwards uploads while they are still arriving.
    let mut stream = body.into_data_stream();
    let mut kept = Vec::new();
    let mut len = 0usize;
    let mut hasher = Sha256::new();
    let mut first = true;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { break };
        if first && !chunk.is_empty() {
            inner.upload_started.notify_one();
            first = false;
        }
        len += chunk.len();
        hasher.update(&chunk);
        if kept.len() < 1 << 20 {
            kept.extend_from_slice(&chunk);
        }
    }
    inner.recorded.lock().unwrap().push(Recorded {
        method: parts.method.clone(),
        path_and_query: path_and_query.clone(),
        headers: parts.headers.clone(),
        body: if len <= 1 << 20 {
            Bytes::from(kept)
        } else {
            Bytes::new()
        },
        body_len: len,
        body_sha256: hex::encode(hasher.finalize()),
    });

    if let Some(size) = parts.uri.path().strip_suffix("/stream-download").and(
        parts
            .uri
            .query()
            .and_then(|q| q.strip_prefix("bytes="))
            .and_then(|n| n.parse::<usize>().ok()),
    ) {
        // One chunk, then wait for the test to confirm it reached the client, then the rest.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let gate = inner.clone();
        tokio::spawn(async move {
            let _ = tx.send(Ok(Bytes::from(vec![b'a'; STREAM_CHUNK]))).await;
            gate.download_gate.notified().await;
            let mut sent = STREAM_CHUNK;
            while sent < size {
                let n = STREAM_CHUNK.min(size - sent);
                if tx.send(Ok(Bytes::from(vec![b'b'; n]))).await.is_err() {
                    return;
                }
                sent += n;
            }
        });
        return Response::builder()
            .header("content-type", "application/octet-stream")
            .body(Body::from_stream(tokio_stream_from(rx)))
            .unwrap();
    }

    if let Some(reachable) = inner.reachable.lock().unwrap().clone() {
        let segments: Vec<&str> = parts.uri.path().split('/').collect();
        if segments.len() == 3 && segments[2].bytes().all(|b| b.is_ascii_digit()) {
            let id = segments[2];
            if reachable.iter().any(|r| r == id) {
                let body = serde_json::json!({"id": id, "name": "reached with a broad token"});
                return json_response(200, body);
            }
            return unsupported_object(&parts.method, id);
        }
    }

    // Requests about a registered number or WABA (number verification included, unless
    // `reach_like_meta` answered above), as Meta answers the token they carry.
    let segments: Vec<&str> = parts.uri.path().split('/').collect();
    let token = bearer(&parts.headers);
    if let Some(object) = segments.get(2).copied() {
        let owners = inner.owners.lock().unwrap().clone();
        let is_pnid = owners.iter().any(|o| o.pnid == object);
        let is_waba = owners.iter().any(|o| o.waba == object);
        if is_pnid || is_waba {
            let issued: Vec<&Owned> = owners
                .iter()
                .filter(|o| Some(o.token.as_str()) == token)
                .collect();
            if issued.is_empty() {
                return invalid_token();
            }
            let reaches = issued.iter().any(|o| o.pnid == object || o.waba == object);
            if !reaches {
                return unsupported_object(&parts.method, object);
            }
            let query = parts.uri.query().unwrap_or("");
            if inner.older.load(std::sync::atomic::Ordering::SeqCst)
                && query.contains("whatsapp_business_manager_messaging_limit")
            {
                return json_response(
                    400,
                    serde_json::json!({"error": {
                        "message": "(#100) Tried accessing nonexisting field (whatsapp_business_manager_messaging_limit) on node type (WhatsAppBusinessPhoneNumber)",
                        "type": "OAuthException", "code": 100, "fbtrace_id": "mock-trace"}}),
                );
            }
            if parts.method == Method::GET
                && is_pnid
                && segments.len() == 3
                && query.contains("display_phone_number")
            {
                let body = serde_json::json!({"id": object, "display_phone_number": "+1 555-000-0001", "verified_name": "Mock Business"});
                return json_response(200, body);
            }
            if parts.method == Method::GET
                && is_waba
                && segments.len() == 4
                && segments[3] == "phone_numbers"
            {
                let mut ids: Vec<&str> = owners
                    .iter()
                    .filter(|o| o.waba == object)
                    .map(|o| o.pnid.as_str())
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                let data: Vec<_> = ids.iter().map(|id| serde_json::json!({"id": id})).collect();
                return json_response(200, serde_json::json!({ "data": data }));
            }
        }
    }

    let canned = inner.canned.lock().unwrap().clone();
    match canned {
        Some(canned) => {
            tokio::time::sleep(canned.delay).await;
            Response::builder()
                .status(StatusCode::from_u16(canned.status).unwrap())
                .header("content-type", canned.content_type)
                .header("x-fb-trace-id", "mock-trace")
                .body(Body::from(canned.body))
                .unwrap()
        }
        None => {
            let body = serde_json::json!({"echo": path_and_query, "method": parts.method.as_str()});
            Response::builder()
                .header("content-type", "application/json; charset=UTF-8")
                .header("x-fb-trace-id", "mock-trace")
                .body(Body::from(body.to_string()))
                .unwrap()
        }
    }
}

/// The token of `Authorization: Bearer …` (how wagate sends every number's token).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn json_response(status: u16, body: serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=UTF-8")
        .header("x-fb-trace-id", "mock-trace")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// Meta's answer to a token it did not issue (or that was revoked).
fn invalid_token() -> Response {
    json_response(
        401,
        serde_json::json!({"error": {
            "message": "Invalid OAuth access token - Cannot parse access token",
            "type": "OAuthException", "code": 190, "fbtrace_id": "mock-trace"}}),
    )
}

/// Meta's answer about an object the token cannot reach, in Meta's words (written here
/// independently of wagate's copy).
fn unsupported_object(method: &Method, id: &str) -> Response {
    json_response(
        400,
        serde_json::json!({"error": {
            "message": format!("Unsupported {} request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation. Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api", method.as_str().to_ascii_lowercase()),
            "type": "GraphMethodException", "code": 100, "error_subcode": 33,
            "fbtrace_id": "mock-trace"}}),
    )
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
