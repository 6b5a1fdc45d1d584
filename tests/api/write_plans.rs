//! PostgreSQL's write path. Its plans do not depend on statistics: a fresh database has none
//! (autovacuum off, or not run yet), and a plan cached while `messages` was empty must not stay a
//! full scan of `messages` once it holds many rows (issue #24: sends fell from 2,330 to 681 req/s
//! as the table grew, until one `ANALYZE`). And a batch's commit-time writes, one statement for
//! every kind of row, land whole and announce the deliveries they queued.

use std::time::Duration;

use serde_json::json;
use sqlx::Connection as _;
use wagate::config::Backend;
use wagate::store::StoreInspect as _;

use crate::common::receiver::Hook;
use crate::ingest::{Env, PNID, WABA};

/// Two counters of `pg_stat_user_tables` for `table`, once PostgreSQL's statistics of other
/// backends have settled: a busy backend flushes them at most once a second, an idle one within
/// 10 s, so the figures must hold still for 11 s.
async fn settled_counters(
    conn: &mut sqlx::PgConnection,
    table: &str,
    counters: (&str, &str),
) -> (i64, i64) {
    let sql = format!(
        "select coalesce({}, 0), coalesce({}, 0) from pg_stat_user_tables where relname = $1",
        counters.0, counters.1
    );
    let mut last = (-1, -1);
    let mut since = std::time::Instant::now();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let _: Option<()> = sqlx::query_scalar("select pg_stat_clear_snapshot()")
            .fetch_optional(&mut *conn)
            .await
            .unwrap();
        let now: (i64, i64) = sqlx::query_as(&sql)
            .bind(table)
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

/// Rows of `messages` read by full scans and fetched through indexes.
async fn rows_read_from_messages(conn: &mut sqlx::PgConnection) -> (i64, i64) {
    settled_counters(conn, "messages", ("seq_tup_read", "idx_tup_fetch")).await
}

/// An app on its own PostgreSQL database and a connection of the test's own to it; `None` when
/// PostgreSQL is not available here.
async fn start_on_postgres() -> Option<(Env, sqlx::PgConnection)> {
    if !crate::common::postgres::available().await {
        return None;
    }
    let env = Env::start(Backend::Postgres).await;
    let url = secrecy::ExposeSecret::expose_secret(&env.app.config.database.url);
    let conn = sqlx::PgConnection::connect(url).await.unwrap();
    Some((env, conn))
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
    let Some((env, mut conn)) = start_on_postgres().await else {
        return;
    };
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
         message_type, status, processing_status, origin, meta_timestamp, body, \
         created_at, updated_at) \
         select gen_random_uuid(), project_id, phone_number_internal_id, 'wamid.seed.' || g, \
         'inbound', 'text', 'received', 'processed', 'webhook', 0, repeat('x', 400), now(), now() \
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

    let before = rows_read_from_messages(&mut conn).await;
    let sent = send_many(&env, "1666100", 40).await;
    for wamid in &sent {
        env.wait_message(wamid, |_| true).await;
    }
    let after = rows_read_from_messages(&mut conn).await;
    // Scans of the small table the warm-up made (the right plan for 120 rows) may be flushed
    // late, into this window; a scan of the grown table reads 30,000 rows at once. So does an
    // index scan on the number alone (the seeded rows are the sends' number), filtering wamids.
    let (scanned, fetched) = (after.0 - before.0, after.1 - before.1);
    assert!(
        scanned < 30_000,
        "recording 40 sends read {scanned} rows of messages by full scans: a plan scans the \
         whole table"
    );
    assert!(
        fetched < 30_000,
        "recording 40 sends fetched {fetched} rows of messages through indexes: a plan reads \
         every message of the number instead of probing its wamids"
    );
}

/// Every recorded message updates its conversation; those updates are HOT (no index changes),
/// so a busy conversation neither rewrites its index entries nor bloats them (issue #24: 1 HOT
/// update in 10,008 while `last_active_at` was indexed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_updates_of_a_busy_conversation_are_hot() {
    let Some((env, mut conn)) = start_on_postgres().await else {
        return;
    };
    let mut sent = Vec::new();
    for _ in 0..25 {
        let sends = (0..8).map(|_| env.send_text_to("16660009999".to_owned()));
        sent.extend(futures::future::join_all(sends).await);
    }
    for wamid in &sent {
        env.wait_message(wamid, |_| true).await;
    }
    let (updates, hot) =
        settled_counters(&mut conn, "conversations", ("n_tup_upd", "n_tup_hot_upd")).await;
    let count: i32 = sqlx::query_scalar("select messages_count from conversations")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, 200, "one conversation counted every send");
    assert!(updates > 0, "the conversation was updated");
    // One update a second may move the indexed second; a test run lasts a few seconds.
    assert!(
        hot * 10 >= updates * 8,
        "{hot} of {updates} conversation updates were HOT"
    );
}

/// One webhook whose batch writes every kind of row a batch commits together (the event, its
/// route, a delivery, a new message with its media row, a changed message, a changed
/// conversation) stores all of them, and its `NOTIFY` reaches a listener of another connection,
/// as it reaches other instances' delivery workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_every_kind_of_row_commits_whole_and_wakes_other_instances() {
    let Some((env, _conn)) = start_on_postgres().await else {
        return;
    };
    // The test's own statuses only: the emulator sends none for the send.
    env.knobs(json!({"drop": ["sent", "delivered", "read"]}))
        .await;
    let hook = Hook::start().await;
    env.forward_to(&hook.url).await;
    let customer = "15550002222";
    let sent = env.send_text(customer).await;
    let recorded = env.wait_message(&sent, |_| true).await;
    let before = env.app.store.conversations_of(env.number).await.unwrap();
    assert_eq!(before.len(), 1);

    let url = secrecy::ExposeSecret::expose_secret(&env.app.config.database.url).to_owned();
    let mut listener = sqlx::postgres::PgListener::connect(&url).await.unwrap();
    listener.listen("wagate_deliveries").await.unwrap();

    let image = "wamid.EVERY_KIND_IMAGE";
    let metadata = json!({"display_phone_number": "15550000001", "phone_number_id": PNID});
    let envelope = json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [
        {"field": "messages", "value": {
            "messaging_product": "whatsapp", "metadata": metadata,
            "contacts": [{"profile": {"name": "Grace"}, "wa_id": customer}],
            "messages": [{"from": customer, "id": image, "timestamp": "1750000100", "type": "image",
                "image": {"id": "990000000000001", "mime_type": "image/jpeg", "sha256": "abc"}}]
        }},
        {"field": "messages", "value": {
            "messaging_product": "whatsapp", "metadata": metadata,
            "statuses": [{"id": sent, "status": "delivered", "timestamp": "1750000101",
                "recipient_id": customer}]
        }}
    ]}]});
    let answer = env.post_signed(envelope.to_string().as_bytes()).await;
    assert_eq!(answer.status(), 200);

    let notified = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("no NOTIFY for the deliveries the batch queued")
        .unwrap();
    assert_eq!(notified.channel(), "wagate_deliveries");

    // The acknowledgement came after the commit: everything is there now.
    let stored = env.stored_message(image).await.expect("new message stored");
    assert_eq!(
        (stored.direction.as_str(), stored.has_media),
        ("inbound", true)
    );
    let media = env
        .app
        .store
        .media_files_of(env.number, &[image.to_owned()])
        .await
        .unwrap();
    assert_eq!(media.len(), 1, "the image's media row");
    assert_eq!(media[0].media_id.as_deref(), Some("990000000000001"));
    let changed = env.stored_message(&sent).await.unwrap();
    assert_eq!(
        (changed.id, changed.status.as_str()),
        (recorded.id, "delivered")
    );
    let after = env.app.store.conversations_of(env.number).await.unwrap();
    assert_eq!(after.len(), 1, "the customer's one conversation");
    assert_eq!(
        after[0].messages_count,
        before[0].messages_count + 1,
        "the conversation counted the image"
    );
    assert_eq!(after[0].last_message_id.as_deref(), Some(image));
    let forwarded = hook.wait_for(1, Duration::from_secs(15)).await;
    assert!(
        forwarded
            .iter()
            .any(|hit| String::from_utf8_lossy(&hit.body).contains(image)),
        "the destination got the envelope"
    );
}
