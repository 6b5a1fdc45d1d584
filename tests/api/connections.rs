//! Connections as a load balancer sees them: idle keep-alive outlives the header timeout, silent
//! connections are closed, `server.max_connections` and `server.request_timeout` answer 503 in
//! the route's envelope, and a SIGTERM drains with `Connection: close` before the port closes.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wagate::config::Backend;

use crate::common::process;
use crate::common::read_response;
use crate::common::TestApp;

const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);

async fn app(adjust: impl FnOnce(&mut wagate::config::Config)) -> TestApp {
    TestApp::spawn_with(Backend::Sqlite, |config| {
        config.server.header_read_timeout = HEADER_TIMEOUT;
        config.server.idle_timeout = IDLE_TIMEOUT;
        adjust(config);
    })
    .await
}

/// How long until the server closes the connection (EOF), at most `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut chunk = [0u8; 512];
    loop {
        match tokio::time::timeout(
            limit.saturating_sub(start.elapsed()),
            stream.read(&mut chunk),
        )
        .await
        {
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
}

#[tokio::test]
async fn idle_keep_alive_outlives_the_header_timeout() {
    let app = app(|_| {}).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(get("/healthz").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);

    // Idle past the header timeout (a load balancer's pooled connection): still served.
    tokio::time::sleep(HEADER_TIMEOUT * 2).await;
    stream.write_all(get("/healthz").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);

    // Idle past server.idle_timeout: closed then, not before.
    let closed = closed_within(&mut stream, IDLE_TIMEOUT * 3)
        .await
        .expect("idle connection closed");
    assert!(
        closed >= IDLE_TIMEOUT - Duration::from_millis(100),
        "closed too early: {closed:?}"
    );
    assert!(closed < IDLE_TIMEOUT * 2, "closed too late: {closed:?}");
}

/// Waits until the socket holds the beginnings of `count` responses, none of them read yet.
async fn responses_waiting(stream: &TcpStream, count: usize) {
    crate::common::eventually(Duration::from_secs(10), "the responses", || async {
        let mut peeked = [0u8; 8192];
        // Bounded, so a server that never answers fails here instead of hanging the test.
        let n = tokio::time::timeout(Duration::from_secs(1), stream.peek(&mut peeked))
            .await
            .map_or(0, Result::unwrap);
        let heads = peeked[..n].windows(9).filter(|w| w == b"HTTP/1.1 ").count();
        (heads >= count).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_idle_connection_parks_and_serves_its_next_request() {
    let app = app(|config| config.server.park_after = Duration::from_millis(200)).await;
    let before = app.parked_settled(0, Duration::from_millis(200)).await;

    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(get("/healthz").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);
    app.parked_reaches(before + 1, "the idle connection parked")
        .await;

    // Its next requests are served on the same socket, including a pipelined pair.
    stream.write_all(get("/healthz").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);
    app.parked_reaches(before + 1, "parked again").await;
    let pair = format!("{}{}", get("/healthz"), get("/readyz"));
    stream.write_all(pair.as_bytes()).await.unwrap();
    // Both answers wait in the socket before either is read, as a slow client sees them: each
    // read must take its own response and leave the next one (CI once lost the second here).
    responses_waiting(&stream, 2).await;
    assert_eq!(read_response(&mut stream).await.0, 200);
    assert_eq!(read_response(&mut stream).await.0, 200);

    // Closed by the client while parked: no longer held.
    app.parked_reaches(before + 1, "parked after the pair")
        .await;
    drop(stream);
    app.parked_reaches(before, "the closed connection unparked")
        .await;
}

#[tokio::test]
async fn silent_and_slow_connections_are_closed_after_the_header_timeout() {
    let app = app(|_| {}).await;
    // Never a byte: closed after the header timeout (it used to stay open for good).
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let closed = closed_within(&mut silent, HEADER_TIMEOUT * 5)
        .await
        .expect("a silent connection is closed");
    assert!(
        closed >= HEADER_TIMEOUT - Duration::from_millis(100),
        "{closed:?}"
    );

    // After a response, the next head trickling in is held to the header timeout from its
    // first byte, not to the idle timeout.
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(get("/healthz").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut slow).await.0, 200);
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let closed = closed_within(&mut slow, IDLE_TIMEOUT)
        .await
        .expect("an unfinished head is cut off before the idle timeout");
    assert!(
        closed >= HEADER_TIMEOUT - Duration::from_millis(100),
        "{closed:?}"
    );

    // Many silent connections do not starve the others.
    let mut held = Vec::new();
    for _ in 0..50 {
        held.push(TcpStream::connect(app.addr).await.unwrap());
    }
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("wagate_http_connections_closed_total{reason=\"silent_new\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn over_max_connections_is_answered_503_in_the_routes_envelope() {
    let app = app(|config| config.server.max_connections = 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        stream.write_all(get("/healthz").as_bytes()).await.unwrap();
        assert_eq!(read_response(&mut stream).await.0, 200);
        held.push(stream);
    }

    let mut graph = TcpStream::connect(app.addr).await.unwrap();
    graph
        .write_all(get("/meta/whatsapp/v24.0/123/messages").as_bytes())
        .await
        .unwrap();
    let (status, head, body) = read_response(&mut graph).await;
    assert_eq!(status, 503);
    assert!(head.contains("retry-after: 1"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(body["error"]["code"], 2, "{body}");
    assert!(body["error"]["fbtrace_id"].is_string(), "{body}");
    assert!(closed_within(&mut graph, Duration::from_secs(2))
        .await
        .is_some());

    let mut platform = TcpStream::connect(app.addr).await.unwrap();
    platform
        .write_all(get("/platform/v1/whatsapp/phone_numbers").as_bytes())
        .await
        .unwrap();
    let (status, _, body) = read_response(&mut platform).await;
    assert_eq!(status, 503);
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("server.max_connections"), "{message}");

    // A slot frees when a connection closes.
    drop(held);
    crate::common::eventually(Duration::from_secs(5), "a slot again", || async {
        let response = app.client.get(app.url("/healthz")).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_request_past_server_request_timeout_is_answered_503() {
    let app = app(|config| {
        config.graph.timeout = Duration::from_millis(500);
        config.pacing.max_wait = Duration::from_millis(100);
        config.server.request_timeout = Duration::from_secs(1);
        config.server.body_idle_timeout = Duration::from_secs(2);
    })
    .await;
    // A body that keeps progressing (so body_idle_timeout never fires) for longer than the
    // request deadline.
    let body = br#"{"whatsapp_phone_number": {}}"#;
    let head = format!(
        "POST /platform/v1/whatsapp/phone_numbers HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        app.api_key,
        body.len()
    );
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let (mut read, mut write) = stream.into_split();
        for byte in body {
            if write.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).into_owned()
    });
    let answer = writer.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("server.request_timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(6));
}

/// SIGTERM with `server.drain_delay`: readiness fails and responses say `Connection: close`
/// while the port still serves, then the port closes and the process exits.
#[tokio::test]
async fn sigterm_drains_before_closing_the_port() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::fresh_database_url(Backend::Sqlite, dir.path()).await;
    let mut instance = process::spawn(
        dir.path(),
        &db,
        &[("WAGATE__SERVER__DRAIN_DELAY", "2s".to_owned())],
    );
    let http = reqwest::Client::new();
    let ready = http
        .get(format!("{}/readyz", instance.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    instance.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready = http
        .get(format!("{}/readyz", instance.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let live = http
        .get(format!("{}/healthz", instance.base))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200, "still serving while draining");
    assert_eq!(live.headers()["connection"], "close");

    assert!(
        instance.exited_within(Duration::from_secs(10)),
        "exited after the drain"
    );
    assert!(
        http.get(format!("{}/healthz", instance.base))
            .send()
            .await
            .is_err(),
        "the port is closed"
    );
}

/// A connection accepted before SIGTERM whose request comes after the listener closed is still
/// answered (with `Connection: close`), not reset: a load balancer that had just connected sends
/// its request there, and a reset POST is a 502 it does not retry.
#[tokio::test]
async fn a_request_on_a_connection_accepted_before_sigterm_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::fresh_database_url(Backend::Sqlite, dir.path()).await;
    let mut instance = process::spawn(dir.path(), &db, &[]);
    let mut stream = TcpStream::connect(instance.base.trim_start_matches("http://"))
        .await
        .unwrap();
    // Accepted (the accept loop is idle), still silent.
    tokio::time::sleep(Duration::from_millis(200)).await;
    instance.terminate();
    // Once the port refuses connections, the listeners are closed and the stop has begun.
    let addr = instance.base.trim_start_matches("http://").to_owned();
    crate::common::eventually(Duration::from_secs(10), "the listener to close", || {
        let addr = addr.clone();
        async move { TcpStream::connect(&addr).await.err().map(drop) }
    })
    .await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: wagate\r\n\r\n")
        .await
        .unwrap();
    let (status, head, _) = read_response(&mut stream).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(
        instance.exited_within(Duration::from_secs(10)),
        "exited once that connection was served"
    );
}
