//! PostgreSQL plans on the write path do not depend on statistics. A fresh database has none
//! (autovacuum off, or not run yet); a plan cached while `messages` was empty must not stay a
//! full scan of `messages` once it holds many rows (issue #24: sends fell from 2,330 to 681 req/s
//! as the table grew, until one `ANALYZE`).

use std::time::Duration;

use sqlx::Connection as _;
use wagate::config::Backend;

use crate::ingest::Env;

/// `(seq_scan, seq_tup_read)` of `messages`, once PostgreSQL's statistics of other backends
/// have settled: a busy backend flushes them at most once a second, an idle one within 10 s, so
/// the figures must hold still for 11 s.
async fn seq_scans_of_messages(conn: &mut sqlx::PgConnection) -> (i64, i64) {
    let mut last = (-1, -1);
    let mut since = std::time::Instant::now();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let _: Option<()> = sqlx::query_scalar("select pg_stat_clear_snapshot()")
            .fetch_optional(&mut *conn)
            .await
            .unwrap();
        let now: (i64, i64) = sqlx::query_as(
            "select coalesce(seq_scan, 0), coalesce(seq_tup_read, 0) from pg_stat_user_tables \
             where relname = 'messages'",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        if now != last {
            last = now;
            since = std::time::Instant::now();
        } else if since.elapsed() >= Duration::from_secs(11) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    last
}

/// `count` sends to distinct recipients, 8 at a time (so the writer's batches hold several).
async fn send_many(env: &Env, prefix: &str, count: usize) -> Vec<String> {
    let mut sent = Vec::new();
    for chunk in (0..count).collect::<Vec<_>>().chunks(8) {
        let sends = chunk
            .iter()
            .map(|i| env.send_text_to(format!("{prefix}{i:04}")));
        sent.extend(futures::future::join_all(sends).await);
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_never_scan_messages_on_a_database_without_statistics() {
    if !crate::common::postgres::available().await {
        return;
    }
    let env = Env::start(Backend::Postgres).await;
    let url = secrecy::ExposeSecret::expose_secret(&env.app.config.database.url);
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("alter table messages set (autovacuum_enabled = false)")
        .execute(&mut conn)
        .await
        .unwrap();
    // Enough sends on the pool's connections that a cached plan would be a generic one, made
    // while `messages` is nearly empty.
    send_many(&env, "1666000", 120).await;
    // Then the table grows (another number's rows, written past wagate) with no ANALYZE.
    sqlx::query(
        "insert into messages (id, project_id, phone_number_internal_id, wamid, direction, \
         message_type, status, processing_status, origin, meta_timestamp, body, content, \
         created_at, updated_at) \
         select gen_random_uuid(), project_id, phone_number_internal_id, 'wamid.seed.' || g, \
         'inbound', 'text', 'received', 'processed', 'webhook', 0, repeat('x', 400), 'x', now(), now() \
         from (select project_id, phone_number_internal_id from messages limit 1) m, \
         generate_series(1, 30000) g",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let analyzed: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "select coalesce(last_analyze, last_autoanalyze) from pg_stat_user_tables \
         where relname = 'messages'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(analyzed.is_none(), "the table must be without statistics");

    let before = seq_scans_of_messages(&mut conn).await;
    let sent = send_many(&env, "1666100", 40).await;
    for wamid in &sent {
        env.wait_message(wamid, |_| true).await;
    }
    let after = seq_scans_of_messages(&mut conn).await;
    // Scans of the small table the warm-up made (the right plan for 120 rows) may be flushed
    // late, into this window; a scan of the grown table reads 30,000 rows at once.
    let rows_scanned = after.1 - before.1;
    assert!(
        rows_scanned < 30_000,
        "recording 40 sends read {rows_scanned} rows of messages by full scans ({} scans): a \
         plan scans the whole table",
        after.0 - before.0
    );
}
