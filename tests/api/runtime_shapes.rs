//! Both runtime shapes (`server.runtime`) serve the whole path: a send recorded through the
//! proxy, Meta's status and inbound webhooks, the stored-data read. In the thread-per-core
//! shape the listeners on all threads share one `server.max_connections`, the kernel spreads
//! connections over them, and SIGTERM still ends the process.

use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wagate::config::{Backend, RuntimeShape};

use crate::common::process;
use crate::common::read_response;
use crate::ingest::{wamid_of, Env, PNID};
use crate::stored::get_ok;

async fn serves_sends_webhooks_and_reads(backend: Backend, shape: RuntimeShape) {
    let env = Env::start_with(backend, |config| {
        config.server.runtime = shape;
        config.server.threads = 2;
    })
    .await;
    let sent = env.send_text("15551234567").await;
    // The emulator's status webhooks come back through ingest.
    env.wait_message(&sent, |row| {
        row.status == "delivered" || row.status == "read"
    })
    .await;
    let envelope = env
        .inbound(json!({"from": "15557654321", "type": "text", "text": {"body": "hi"}}))
        .await;
    let received = wamid_of(&envelope);
    let page = get_ok(&env, &format!("{PNID}/messages?limit=10")).await;
    let listed: Vec<&str> = page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a page of messages: {page}"))
        .iter()
        .filter_map(|message| message["id"].as_str())
        .collect();
    assert!(listed.contains(&sent.as_str()), "{page}");
    assert!(listed.contains(&received.as_str()), "{page}");
}

async fn multi_thread(backend: Backend) {
    serves_sends_webhooks_and_reads(backend, RuntimeShape::MultiThread).await;
}

async fn thread_per_core(backend: Backend) {
    serves_sends_webhooks_and_reads(backend, RuntimeShape::ThreadPerCore).await;
}

crate::both_backends!(backend: multi_thread, thread_per_core);

/// A kept-alive connection that has had one `GET /healthz` answered (`Err`: refused, with
/// the status it got).
async fn open_served(base: &str) -> Result<TcpStream, u16> {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: wagate\r\n\r\n")
        .await
        .unwrap();
    match read_response(&mut stream).await {
        (200, _, _) => Ok(stream),
        (status, _, _) => Err(status),
    }
}

/// `wagate_http_connections_accepted_total` per listener, from `/metrics`.
async fn accepted_per_listener(base: &str) -> Vec<(String, u64)> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix("wagate_http_connections_accepted_total{listener=\""))
        .filter_map(|rest| {
            let (listener, count) = rest.split_once("\"} ")?;
            Some((listener.to_owned(), count.trim().parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn thread_per_core_shares_one_limit_and_spreads_connections() {
    const LIMIT: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::fresh_database_url(Backend::Sqlite, dir.path()).await;
    let mut instance = process::spawn(
        dir.path(),
        &db,
        &[
            ("WAGATE__SERVER__RUNTIME", "thread_per_core".to_owned()),
            ("WAGATE__SERVER__THREADS", "2".to_owned()),
            ("WAGATE__SERVER__MAX_CONNECTIONS", LIMIT.to_string()),
        ],
    );

    // One limit for both listeners: with one per thread, more than LIMIT would be served.
    let mut held = Vec::new();
    for _ in 0..LIMIT {
        held.push(open_served(&instance.base).await.expect("within the limit"));
    }
    for _ in 0..4 {
        assert_eq!(
            open_served(&instance.base).await.err(),
            Some(503),
            "a connection over server.max_connections is refused on every listener"
        );
    }
    drop(held);

    // Slots free as the held connections close; then each new connection is served, and the
    // kernel hands them to both listeners (40 connections all on one: odds of 2^-39).
    let mut served = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while served < 40 && std::time::Instant::now() < deadline {
        match open_served(&instance.base).await {
            Ok(_) => served += 1,
            Err(503) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(status) => panic!("unexpected {status}"),
        }
    }
    assert_eq!(served, 40, "connections are served again once slots free");
    let accepted = accepted_per_listener(&instance.base).await;
    assert_eq!(accepted.len(), 2, "one counter per listener: {accepted:?}");
    assert!(
        accepted.iter().all(|(_, count)| *count > 0),
        "both threads accepted connections: {accepted:?}"
    );

    instance.terminate();
    assert!(
        instance.exited_within(Duration::from_secs(10)),
        "the HTTP threads end on SIGTERM"
    );
}
