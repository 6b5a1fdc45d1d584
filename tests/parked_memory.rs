//! What a parked keep-alive connection holds on the heap (issue #24, target 4: 10,000 idle
//! connections within 150 MiB). In a binary of its own, with a counting global allocator: the
//! count is process-wide, so nothing but this test's app and clients may allocate meanwhile
//! (nextest runs each test in its own process as well).
//!
//! Bytes held, not time or RSS: a parked connection that kept hyper's 8 KiB read buffer (an
//! empty `Bytes` left over from the hyper connection still shares it) held about 10 KiB here,
//! where one that lets go of it holds about 2 KiB, so the bound below tells them apart with room
//! for the allocations of the app's background work.

mod common;

use std::alloc::System;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wagate::config::Backend;

use common::TestApp;

#[global_allocator]
static ALLOCATOR: cap::Cap<System> = cap::Cap::new(System, usize::MAX);

/// Idle this long, a connection parks.
const PARK_AFTER: Duration = Duration::from_millis(200);

/// Connections measured together, so one connection's share is an average over many.
const CONNECTIONS: usize = 300;

/// Heap a parked connection may hold, server and client side together (the client's socket is
/// in this process too): its task, its watch and both sockets' registrations.
const PARKED_BYTES_MAX: usize = 5 * 1024;

/// Opens `count` connections that each make one request and then stay open, idle.
async fn idle_connections(app: &TestApp, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // The whole response (head, then `content-length` bytes), so nothing waits unread.
        let mut response = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before its response");
            response.extend_from_slice(&chunk[..n]);
            let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .expect("a content-length")
                .trim()
                .parse()
                .unwrap();
            if response.len() >= end + 4 + length {
                break;
            }
        }
        assert!(response.starts_with(b"HTTP/1.1 200"), "{response:?}");
        streams.push(stream);
    }
    streams
}

#[tokio::test]
async fn a_parked_connection_lets_go_of_its_request_buffers() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.server.park_after = PARK_AFTER;
        config.server.idle_timeout = Duration::from_secs(120);
    })
    .await;
    // A first round warms what the first connections set up once (timer wheels, metric
    // handles, pools), so the measured round adds only what its connections hold.
    let warm = idle_connections(&app, 20).await;
    // Connections the test client pooled while the app started park too, so the count to build
    // on is the one that holds still for longer than it takes an idle connection to park.
    let mut settled = app.parked_connections().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(PARK_AFTER * 2).await;
        let now = app.parked_connections().await;
        if now >= warm.len() && now == settled {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the warm-up never settled: {now} parked"
        );
        settled = now;
    }
    let before = ALLOCATOR.allocated();

    let idle = idle_connections(&app, CONNECTIONS).await;
    app.parked_reaches(settled + CONNECTIONS, "every idle connection parked")
        .await;
    let held = ALLOCATOR.allocated().saturating_sub(before);
    let per_connection = held / CONNECTIONS;
    assert!(
        per_connection <= PARKED_BYTES_MAX,
        "{CONNECTIONS} parked connections hold {held} bytes, {per_connection} each (at most \
         {PARKED_BYTES_MAX}): a parked connection keeps something of its request"
    );

    // Parked, not closed: each still serves its next request.
    let mut next = idle;
    for stream in next.iter_mut().take(5) {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
    }
    drop(warm);
}
