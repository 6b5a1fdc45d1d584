//! Database outages: webhooks get 503 (Meta retries) and succeed after recovery; sends still get
//! Meta's answer and are written from the spill file once the database is back.

use std::time::Duration;

use serde_json::json;
use sqlx::Connection as _;
use wagate::config::Backend;

use crate::common::meta;
use crate::ingest::{Env, PNID, WABA};

/// Holds a lock that blocks every write of the app until released.
pub(crate) enum Blocker {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Blocker {
    pub(crate) async fn hold(env: &Env) -> Self {
        use secrecy::ExposeSecret as _;
        let url = env.app.config.database.url.expose_secret().to_owned();
        if url.starts_with("sqlite") {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("begin exclusive")
                .execute(&mut conn)
                .await
                .unwrap();
            Self::Sqlite(conn)
        } else {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query("begin").execute(&mut conn).await.unwrap();
            sqlx::query("lock table webhook_events, messages in access exclusive mode")
                .execute(&mut conn)
                .await
                .unwrap();
            Self::Postgres(conn)
        }
    }

    pub(crate) async fn release(self) {
        match self {
            Self::Sqlite(mut conn) => {
                sqlx::query("rollback").execute(&mut conn).await.unwrap();
            }
            Self::Postgres(mut conn) => {
                sqlx::query("rollback").execute(&mut conn).await.unwrap();
            }
        }
    }
}

fn inbound(wamid: &str) -> Vec<u8> {
    meta::envelope(WABA, "messages", json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000001", "phone_number_id": PNID},
        "contacts": [{"profile": {"name": "Ada"}, "wa_id": "15551234567"}],
        "messages": [{"from": "15551234567", "id": wamid, "timestamp": "1750000000", "type": "text", "text": {"body": "during the outage"}}]
    }))
    .to_string()
    .into_bytes()
}

async fn outage_then_recovery(backend: Backend) {
    let env = Env::start_with(backend, |c| {
        c.database.busy_timeout = Duration::from_millis(300);
        c.writer.retry_interval = Duration::from_millis(200);
    })
    .await;
    // Warm the caches so the proxy needs no database for auth and routing.
    let warm = env.send_text("15551234567").await;
    env.wait_message(&warm, |_| true).await;

    let blocker = Blocker::hold(&env).await;
    let body = inbound("wamid.OUTAGE1");
    let refused = env.post_signed(&body).await;
    assert_eq!(refused.status(), 503, "Meta must retry later");
    // A send still returns Meta's answer: the client must not resend what Meta accepted.
    let wamid = env.send_text("15551234567").await;
    assert!(wamid.starts_with("wamid."));
    blocker.release().await;

    // Meta's retry of the same bytes now succeeds, and the buffered send is written.
    assert_eq!(env.post_signed(&body).await.status(), 200);
    assert!(env.stored_message("wamid.OUTAGE1").await.is_some());
    let row = env.wait_message(&wamid, |_| true).await;
    assert_eq!(row.direction, "outbound");
    // The recording waited in the spill file (fsynced) and was drained from it.
    let stats = &env.app.state.writer.stats;
    assert_eq!(
        stats
            .spilled_recordings
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let stored = env.messages().await;
    assert_eq!(
        stored.iter().filter(|m| m.wamid == "wamid.OUTAGE1").count(),
        1
    );
}

crate::both_backends!(backend: outage_then_recovery);

/// PostgreSQL closed every connection of the gateway's pool (a restart, an idle-session timeout,
/// a proxy in between) while they sat idle: the next reads and the next webhook still succeed, on
/// fresh connections, because a connection idle for `database.ping_after_idle` is pinged before
/// use. (Asked soon after the close: given long enough, the background workers' own failed polls
/// would have cleared the pool of dead connections before the requests came.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_server_closed_while_idle_are_replaced() {
    if !crate::common::postgres::available().await {
        return;
    }
    let ping_after_idle = Duration::from_millis(100);
    let env = Env::start_with(Backend::Postgres, |c| {
        c.database.ping_after_idle = ping_after_idle
    })
    .await;
    let list = format!("{PNID}/messages");
    let before = env.post_signed(&inbound("wamid.BEFORE_CLOSE")).await;
    assert_eq!(before.status(), 200);
    crate::stored::get_ok(&env, &list).await;

    use secrecy::ExposeSecret as _;
    let url = env.app.config.database.url.expose_secret().to_owned();
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let closed: i64 = sqlx::query_scalar(
        "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity \
         where datname = current_database() and application_name = 'wagate' \
         and pid <> pg_backend_pid()) as t",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(closed > 0, "the gateway had no connection to close");
    tokio::time::sleep(ping_after_idle * 2).await;

    for _ in 0..3 {
        let (status, body) = crate::stored::get(&env, &list).await;
        assert_eq!(
            status, 200,
            "a read after the server closed the pool: {body}"
        );
    }
    let answer = env.post_signed(&inbound("wamid.AFTER_CLOSE")).await;
    assert_eq!(
        answer.status(),
        200,
        "a webhook after the server closed the pool"
    );
    assert!(env.stored_message("wamid.AFTER_CLOSE").await.is_some());
}
