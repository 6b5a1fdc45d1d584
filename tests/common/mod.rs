//! The test kit every test crate shares (`tests/api`, `tests/delivery`, `tests/sandbox.rs`):
//!
//! - [`app`]: a real wagate on an ephemeral port, on a temporary SQLite file or a fresh
//!   PostgreSQL database ([`TestApp`]), with Platform API calls and signed Meta webhooks;
//! - [`postgres`]: where the PostgreSQL half runs, and what happens when PostgreSQL is absent;
//! - [`meta`]: Meta's webhook envelopes and their signatures, computed independently of wagate;
//! - [`graph`]: a recording Graph double ([`graph::GraphMock`]), and [`emulator`] to start the
//!   Graph emulator (`wagate::sandbox`) on an ephemeral port;
//! - [`receiver`]: a recording, programmable webhook receiver ([`receiver::Hook`]);
//! - [`process`]: real `wagate serve` processes, to SIGKILL or to run several on one database;
//! - [`s3`]: the S3-compatible test server and a test's own prefix of its bucket
//!   ([`s3::TestBucket`]);
//! - [`ports`]: a free port for a child process, and one that refuses connections;
//! - [`tcp_switch`]: a TCP forwarder switched down and up, a server going away and coming back;
//! - [`both_backends!`](crate::both_backends): one test body, run on SQLite and PostgreSQL.
//!
//! Each crate includes it as `mod common;` (with `#[path = "../common/mod.rs"]` from a
//! directory crate); not every crate uses every piece.
#![allow(dead_code, unused_imports)]

pub mod app;
pub mod graph;
pub mod meta;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod receiver;
pub mod s3;
pub mod tcp_switch;

use std::future::Future;
use std::time::{Duration, Instant};

pub use app::{fresh_database_url, open_store, test_config, Number, TestApp};
pub use meta::{APP_SECRET, VERIFY_TOKEN};

/// Starts the Graph emulator on 127.0.0.1:0 with the demo configuration changed by `adjust`;
/// returns it (it stops when dropped) and its base URL.
pub async fn emulator(
    adjust: impl FnOnce(&mut wagate::sandbox::SandboxConfig),
) -> (wagate::sandbox::Sandbox, String) {
    let mut config = wagate::sandbox::SandboxConfig::demo();
    adjust(&mut config);
    let (addr, sandbox) = wagate::sandbox::Sandbox::spawn(config).await.unwrap();
    (sandbox, format!("http://{addr}"))
}

/// Every file below `dir`, at any depth.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// A media upload body as the SDKs send `POST {pnid}/media`: `messaging_product`, `type`, then
/// the `file` part named `filename` with `content_type`.
pub fn media_upload(boundary: &str, filename: &str, content_type: &str, file: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"messaging_product\"\r\n\r\nwhatsapp\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\n{content_type}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One HTTP/1.1 response read off a kept-alive connection: status line, headers, body. It
/// reads exactly that response, so a pipelined one behind it stays in the socket for the next
/// call.
pub async fn read_response(stream: &mut tokio::net::TcpStream) -> (u16, String, serde_json::Value) {
    use tokio::io::AsyncReadExt as _;
    let mut head = Vec::new();
    // The head a byte at a time: a larger read could take the next response's bytes too.
    tokio::time::timeout(Duration::from_secs(10), async {
        while !head.ends_with(b"\r\n\r\n") {
            let byte = stream.read_u8().await;
            head.push(byte.expect("connection closed before a response"));
        }
    })
    .await
    .expect("response within 10 s");
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    stream
        .read_exact(&mut body)
        .await
        .expect("connection closed inside a body");
    let status = head[9..12].parse().unwrap();
    let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (status, head, body)
}

/// Polls `probe` every 25 ms until it yields a value; panics with `what` after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(ms(25)).await;
    }
}

/// Runs one test body on both backends: each `name` becomes a module `name` holding the tests
/// `name::sqlite` and `name::postgres`. The PostgreSQL half goes through
/// [`postgres::available`]: without a reachable server it says SKIPPED and passes, unless
/// `WAGATE_REQUIRE_POSTGRES=1` makes that a failure.
///
/// - `both_backends!(app: name, …)`: `async fn name(app: TestApp)`, a fresh app per backend;
/// - `both_backends!(app with adjust: name, …)`: the same with `fn adjust(&mut Config)` (in
///   scope where the macro is called) applied to the configuration first;
/// - `both_backends!(backend: name, …)`: `async fn name(backend: Backend)` for tests that build
///   their own environment;
/// - `both_backends!(store: name, …)`: `async fn name(store: DynStore)` on a fresh, migrated
///   store (no server).
#[macro_export]
macro_rules! both_backends {
    (app: $($name:ident),* $(,)?) => {$(
        $crate::both_backends!(@pair $name, backend => {
            super::$name($crate::common::TestApp::spawn(backend).await).await
        });
    )*};
    (app with $adjust:ident: $($name:ident),* $(,)?) => {$(
        $crate::both_backends!(@pair $name, backend => {
            super::$name($crate::common::TestApp::spawn_with(backend, super::$adjust).await).await
        });
    )*};
    (backend: $($name:ident),* $(,)?) => {$(
        $crate::both_backends!(@pair $name, backend => { super::$name(backend).await });
    )*};
    (store: $($name:ident),* $(,)?) => {$(
        $crate::both_backends!(@pair $name, backend => {
            let (store, _dir) = $crate::common::open_store(backend).await;
            super::$name(store).await
        });
    )*};
    (@pair $name:ident, $backend:ident => $body:block) => {
        mod $name {
            async fn run($backend: wagate::config::Backend) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(wagate::config::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::common::postgres::available().await {
                    run(wagate::config::Backend::Postgres).await
                }
            }
        }
    };
}

/// The store tests' name for `both_backends!(store: …)`, kept so `tests/api/store.rs` reads as
/// before.
#[macro_export]
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        $crate::both_backends!(store: $($name),*);
    };
}

/// `$body` with `$conn` a fresh connection to the database `$url` names (either backend: the
/// two connection types share no trait sqlx's queries accept).
#[macro_export]
macro_rules! with_connection {
    ($url:expr, $conn:ident => $body:expr) => {
        if $url.starts_with("sqlite") {
            let mut $conn = <sqlx::SqliteConnection as sqlx::Connection>::connect($url)
                .await
                .unwrap();
            $body
        } else {
            let mut $conn = <sqlx::PgConnection as sqlx::Connection>::connect($url)
                .await
                .unwrap();
            $body
        }
    };
}
