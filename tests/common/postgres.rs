//! The PostgreSQL half of the suite: where its server is, and what a test does without one.
//!
//! `WAGATE_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) names a
//! server on which every test creates its own database. When it cannot be reached, a PostgreSQL
//! test prints a `SKIPPED: …` line and passes, so `cargo test` on a machine without PostgreSQL
//! still runs the SQLite half, unless `WAGATE_REQUIRE_POSTGRES=1` (set by `scripts/test.sh`, and
//! so by CI), which makes a missing server a failure.

use std::io::Write as _;
use std::time::Duration;

use sqlx::Connection as _;
use tokio::sync::OnceCell;

pub const URL_VAR: &str = "WAGATE_TEST_POSTGRES_URL";
pub const REQUIRE_VAR: &str = "WAGATE_REQUIRE_POSTGRES";

/// Base URL of the PostgreSQL server tests create their databases on.
pub fn admin_url() -> String {
    std::env::var(URL_VAR)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Whether `WAGATE_REQUIRE_POSTGRES` asks for the PostgreSQL half to run (`1`, `true`, `yes`).
pub fn required() -> bool {
    std::env::var(REQUIRE_VAR)
        .map(|v| matches!(v.trim(), "1" | "true" | "yes"))
        .unwrap_or(false)
}

/// Connects to the admin URL once per test process (10 s at most); the error when that failed.
async fn probe() -> &'static Result<(), String> {
    static PROBE: OnceCell<Result<(), String>> = OnceCell::const_new();
    PROBE
        .get_or_init(|| async {
            let url = admin_url();
            match tokio::time::timeout(Duration::from_secs(10), sqlx::PgConnection::connect(&url))
                .await
            {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    Ok(())
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer within 10 s".to_owned()),
            }
        })
        .await
}

/// Whether a PostgreSQL test should run. A reachable server: true. None: with
/// `WAGATE_REQUIRE_POSTGRES=1` the test fails here; without it a `SKIPPED` line goes straight to
/// stderr (past the test harness's capture, so `cargo test` shows it) and the answer is false.
pub async fn available() -> bool {
    let Err(error) = probe().await else {
        return true;
    };
    let url = admin_url();
    let test = std::thread::current()
        .name()
        .unwrap_or("a PostgreSQL test")
        .to_owned();
    if required() {
        panic!(
            "PostgreSQL not reachable at {url} ({error}), and {REQUIRE_VAR}=1 requires it: start \
             PostgreSQL or set {URL_VAR}"
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {test}: PostgreSQL not reachable at {url} ({error}) — set {URL_VAR}; the \
         PostgreSQL half of this test was NOT run ({REQUIRE_VAR}=1 makes this a failure)"
    );
    false
}

/// A fresh, empty database on the server; its URL.
pub async fn fresh_database() -> String {
    let admin = admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL tests need a server at {admin} (set {URL_VAR}): {e}")
        });
    let name = format!("wagate_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("create database {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{name}")
}
