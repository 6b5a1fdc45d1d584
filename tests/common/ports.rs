//! Loopback ports for tests: one a child process will listen on, one nothing ever answers on.
//!
//! Included on its own (`#[path]`) by crates that need nothing else of the kit.

/// A port free now, for a child process to listen on (it fails loudly if another process took
/// the port first).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port that refuses connections for the rest of this test process: bound but not listening,
/// so a connection gets a reset (ECONNREFUSED) and no other process can take the port meanwhile.
/// A port bound and released instead can be handed to a concurrently running test's listener,
/// which then receives this test's requests (CI saw a webhook "nobody" should get answered by
/// another test's receiver, failing both tests).
pub fn refusing_port() -> u16 {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let port = socket.local_addr().unwrap().port();
    // Reserved until the test process exits (nextest runs each test in a process of its own).
    std::mem::forget(socket);
    port
}
