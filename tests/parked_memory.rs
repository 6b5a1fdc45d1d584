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

use tokio::io::AsyncWriteExt;
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
        assert_eq!(common::read_response(&mut stream).await.0, 200);
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
    let settled = app.parked_settled(warm.len(), PARK_AFTER).await;
    let before = ALLOCATOR.allocated();

    let mut idle = idle_connections(&app, CONNECTIONS).await;
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
    for stream in idle.iter_mut().take(5) {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(common::read_response(stream).await.0, 200);
    }
    drop(warm); // open until here, parked with the rest
}
