//! HTTP hygiene: request ids, health, slow clients, body limits, and auth served from memory.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::TestApp;

/// Reads until the server closes the connection (or 15 s pass); returns what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(15), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("server kept a stalled connection open for 15 s"),
        }
    }
    (String::from_utf8_lossy(&buf).into_owned(), start.elapsed())
}

async fn request_ids_are_generated_and_echoed(app: TestApp) {
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(generated.len() >= 16);
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "lb-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "lb-abc-123");
    // A hostile id (too long, or with spaces) is replaced, not echoed into logs.
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "a b c")
        .send()
        .await
        .unwrap();
    assert_ne!(response.headers()["x-request-id"], "a b c");
    let ready: Value = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
}

async fn slow_headers_are_cut_off(app: TestApp) {
    // Timed from before the connection: the server's timer starts at accept, after this.
    let start = Instant::now();
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // ...and never finish the headers: cut off by the timeout (read_until_closed fails if the
    // connection outlives 15 s), never before it.
    read_until_closed(&mut stream).await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= app.config.server.header_read_timeout,
        "cut off too early: {elapsed:?}"
    );
}

/// POSTs to `path` a JSON body declared 100 bytes long, sends its first few, then stalls; what
/// the server answered before closing, and after how long.
async fn stalled_post(app: &TestApp, path: &str) -> (String, Duration) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        app.api_key
    );
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(b"{\"messaging").await.unwrap();
    read_until_closed(&mut stream).await
}

async fn stalled_bodies_are_cut_off_but_progress_is_not(app: TestApp) {
    let (response, _) = stalled_post(&app, "/platform/v1/whatsapp/phone_numbers").await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");

    // A body that keeps arriving, slower overall than the idle timeout, is served.
    let body = format!("{{\"x\": 1{}}}", " ".repeat(7));
    let head = format!(
        "POST /platform/v1/whatsapp/phone_numbers HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        app.api_key,
        body.len()
    );
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let start = Instant::now();
    for byte in body.as_bytes() {
        stream.write_all(&[*byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(start.elapsed() > app.config.server.body_idle_timeout);
    let (response, _) = read_until_closed(&mut stream).await;
    assert!(
        response.starts_with("HTTP/1.1 422"),
        "slow but steady upload was cut: {response}"
    );

    // The Graph mounts (served without the router, `http::app`): the same limit, Graph's envelope.
    app.connect_number(&app.api_key, "8001", "8101", "hygiene-token")
        .await;
    let (response, waited) = stalled_post(&app, "/meta/whatsapp/v24.0/8001/messages").await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("Request body timed out"), "{response}");
    assert!(waited >= app.config.server.body_idle_timeout, "{waited:?}");
    assert!(
        !app.graph
            .recorded()
            .iter()
            .any(|sent| sent.path_and_query.contains("/messages")),
        "a stalled send reached Graph"
    );
}

async fn oversized_bodies_get_413(app: TestApp) {
    let limit = app.config.server.json_body_limit;
    // Declared too large: refused before the body is sent.
    let head = format!(
        "POST /platform/v1/whatsapp/phone_numbers HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        app.api_key,
        limit + 1
    );
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("413 arrives without the body being sent")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"));

    // Chunked (no length): cut off once past the limit.
    let big = vec![b' '; limit + 10];
    let stream = futures::stream::iter(
        big.chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let response = app
        .request(Method::POST, "/platform/v1/whatsapp/phone_numbers")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("limit"));
}

async fn warm_auth_needs_no_database(app: TestApp) {
    let path = "/platform/v1/whatsapp/phone_numbers";
    // Well-formed (this server's checksum) but never issued: looked up once, then remembered.
    let wrong = &app.checksum.new_key();
    assert_eq!(
        app.request(Method::GET, path)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.request_with_key(Method::GET, path, wrong)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    app.store.close().await;

    // The key is still known from memory: the request passes auth and fails only where the
    // handler itself needs the database (503, not 401).
    let response = app.request(Method::GET, path).send().await.unwrap();
    assert_eq!(response.status(), 503);
    // A known-bad key and a malformed one are refused without the database.
    assert_eq!(
        app.request_with_key(Method::GET, path, wrong)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        app.request_with_key(Method::GET, path, "nope")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // An unseen key with a valid checksum cannot be checked: 503, never a wrong 401 or a pass.
    let unseen = &app.checksum.new_key();
    assert_eq!(
        app.request_with_key(Method::GET, path, unseen)
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

async fn unknown_routes_answer_in_the_right_shape(app: TestApp) {
    let platform = app
        .request(Method::GET, "/platform/v1/nope")
        .send()
        .await
        .unwrap();
    assert_eq!(platform.status(), 404);
    let body: Value = platform.json().await.unwrap();
    assert!(body["error"].is_string());
}

crate::both_backends!(app:
    request_ids_are_generated_and_echoed,
    slow_headers_are_cut_off,
    stalled_bodies_are_cut_off_but_progress_is_not,
    oversized_bodies_get_413,
    warm_auth_needs_no_database,
    unknown_routes_answer_in_the_right_shape,
);
