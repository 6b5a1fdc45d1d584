//! A programmable webhook receiver on an ephemeral loopback port.
//!
//! Records every request (headers, raw body, arrival time, what it answered), counts TCP
//! connections accepted and the most requests it held at once, and answers from a script: the
//! queued replies first, in order, then the default reply. With
//! [`answer_verification`](Hook::answer_verification) it also answers Meta's subscription
//! handshake (`GET ?hub.verify_token=…&hub.challenge=…`) as a webhook endpoint must.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// One answer: status, extra headers, and how long to wait before giving it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub delay: Duration,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
            body: format!("answer {status}"),
        }
    }

    pub fn ok() -> Self {
        Self::status(200)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: &str) -> Self {
        self.body = body.to_owned();
        self
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A request as it arrived.
#[derive(Debug, Clone)]
pub struct Hit {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    /// The status the script chose for it (sent unless the caller gave up first).
    pub answered: u16,
    /// How long the script held the answer back.
    pub delay: Duration,
}

impl Hit {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the forwarded body is JSON")
    }
}

struct Inner {
    hits: Mutex<Vec<Hit>>,
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    connections: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    verify_token: Mutex<Option<String>>,
}

#[derive(Clone)]
pub struct Hook {
    /// `http://127.0.0.1:<port>/hook`.
    pub url: String,
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

/// Counts a request in flight until its handler finishes or is dropped (caller went away).
struct InFlight(Arc<Inner>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Hook {
    /// A receiver answering 200 to everything.
    pub async fn start() -> Self {
        Self::bind("127.0.0.1:0").await
    }

    pub async fn bind(addr: &str) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            hits: Mutex::default(),
            script: Mutex::default(),
            default: Mutex::new(Reply::ok()),
            connections: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            verify_token: Mutex::default(),
        });
        let accept = inner.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                accept.connections.fetch_add(1, Ordering::SeqCst);
                let inner = accept.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(inner.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let host = match addr {
            SocketAddr::V4(_) => addr.to_string(),
            SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
        };
        Self {
            url: format!("http://{host}/hook"),
            addr,
            inner,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Queues `reply` for the next request not yet answered by an earlier queued reply.
    pub fn then(&self, reply: Reply) -> &Self {
        self.inner.script.lock().unwrap().push_back(reply);
        self
    }

    /// Every request past the queued replies gets this.
    pub fn always(&self, reply: Reply) {
        *self.inner.default.lock().unwrap() = reply;
    }

    /// From now on every GET is Meta's verification handshake, answered (and not recorded) like
    /// a webhook endpoint does: `hub.challenge` when `hub.verify_token` is `token`, else 403.
    pub fn answer_verification(&self, token: &str) {
        *self.inner.verify_token.lock().unwrap() = Some(token.to_owned());
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.inner.hits.lock().unwrap().clone()
    }

    /// Forgets the requests recorded so far.
    pub fn clear(&self) {
        self.inner.hits.lock().unwrap().clear();
    }

    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::SeqCst)
    }

    /// Requests being answered now (a delayed reply counts until it is sent).
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight.load(Ordering::SeqCst)
    }

    /// Waits (polling, up to `within`) until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Hit> {
        let deadline = Instant::now() + within;
        loop {
            let hits = self.hits();
            if hits.len() >= n {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "{}: expected {n} requests within {within:?}, got {}",
                self.url,
                hits.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(
    inner: Arc<Inner>,
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let now = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    inner.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _in_flight = InFlight(inner.clone());
    let at = Instant::now();
    let verify_token = inner.verify_token.lock().unwrap().clone();
    if let (Some(token), &hyper::Method::GET) = (verify_token, request.method()) {
        return Ok(verification(&token, request.uri().query().unwrap_or("")));
    }
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let reply = {
        let queued = inner.script.lock().unwrap().pop_front();
        queued.unwrap_or_else(|| inner.default.lock().unwrap().clone())
    };
    inner.hits.lock().unwrap().push(Hit {
        headers: parts.headers,
        body,
        at,
        answered: reply.status,
        delay: reply.delay,
    });
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = hyper::Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    Ok(response.body(Full::new(Bytes::from(reply.body))).unwrap())
}

/// Meta's subscription handshake: the challenge back for the right token, 403 otherwise.
fn verification(token: &str, query: &str) -> hyper::Response<Full<Bytes>> {
    let params: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
    let (status, body) = if params.get("hub.verify_token").map(String::as_str) == Some(token) {
        (
            200,
            params.get("hub.challenge").cloned().unwrap_or_default(),
        )
    } else {
        (403, "bad token".to_owned())
    };
    hyper::Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}
