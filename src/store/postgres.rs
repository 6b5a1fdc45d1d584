//! PostgreSQL backend: the production store, shared by every wagate instance behind a load
//! balancer.

use std::str::FromStr;

use anyhow::Context as _;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use super::broadcasts::{impl_broadcasts, impl_broadcasts_tx};
use super::common::impl_common_store;
use super::dialect::Dialect;
use super::inspect::impl_store_inspect;
use super::media::impl_media_files;
use super::meta_state::{impl_meta_state, impl_meta_state_tx};
use super::onboarding::impl_onboarding;
use super::outbox::impl_outbox;
use super::pacing::impl_pacing;
use super::provisioning::impl_provisioning;
use super::sealed::impl_sealed_values;
use super::tx::impl_store_tx;
use super::webhook_outbox::impl_webhook_sweeps;
use super::webhooks::impl_webhooks;
use crate::config::{Backend, DatabaseConfig};

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(config.url.expose_secret())
            .context("parsing database.url")?
            .application_name("wagate")
            // A write never waits on a lock longer than this: it fails as "unavailable" (503, or
            // the retry buffer) instead of hanging a request.
            .options([
                (
                    "lock_timeout",
                    format!("{}ms", config.busy_timeout.as_millis()),
                ),
                // Every statement is planned with its parameters and the tables' sizes of the
                // moment. A cached generic plan is made once, when the tables may still be empty
                // (and without statistics: autovacuum may be off, or not have run yet), and is
                // kept until an ANALYZE: a batch's prefetch planned as a scan of an empty
                // `messages` stayed a full scan as the table grew to millions of rows. Planning
                // these short statements costs microseconds; the parse is still cached. (What a
                // batch writes at commit keeps its plans: `Dialect::COMMIT_PLANS`.)
                ("plan_cache_mode", "force_custom_plan".to_owned()),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .test_before_acquire(false)
            .before_acquire({
                let ping_after_idle = config.ping_after_idle;
                move |conn, meta| Box::pin(alive_if_idle(conn, meta, ping_after_idle))
            })
            .connect_with(options)
            .await
            .context("connecting to PostgreSQL (is it running, and does database.url name it?)")?;
        // Several instances may start at once; sqlx takes an advisory lock around migrations.
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .context("applying PostgreSQL migrations")?;
        Ok(Self { pool })
    }

    /// The pool `Store::begin` takes the batched writer's transactions from: the one pool
    /// (SQLite gives its writer a connection of its own).
    fn writer(&self) -> &PgPool {
        &self.pool
    }
}

/// Whether a pooled connection may be handed out (`before_acquire`). sqlx's own check pings every
/// connection on every acquire: one more round trip before each writer batch and each read,
/// which on a busy instance only ever finds connections used a moment ago (and with the database
/// on another host, a network round trip added to every request). So only a connection idle for
/// `database.ping_after_idle` is pinged: one the server may have closed since (a restart, an
/// idle timeout, a proxy in between). A connection lost while in use fails its statement, as it
/// would after a ping, and the pool drops it.
async fn alive_if_idle(
    conn: &mut sqlx::PgConnection,
    meta: sqlx::pool::PoolConnectionMetadata,
    ping_after_idle: std::time::Duration,
) -> Result<bool, sqlx::Error> {
    if meta.idle_for < ping_after_idle {
        return Ok(true);
    }
    Ok(sqlx::Connection::ping(conn).await.is_ok())
}

/// A write transaction on this backend.
pub struct PgTx {
    pub(super) tx: sqlx::Transaction<'static, sqlx::Postgres>,
    pub(super) state: super::tx_state::TxState,
}

impl_common_store!(PgStore, PgTx);
impl_store_tx!(PgTx, PgStore);
impl_outbox!(PgStore);
impl_onboarding!(PgStore);
impl_media_files!(PgStore);
impl_webhooks!(PgStore);
impl_provisioning!(PgStore);
impl_meta_state!(PgStore);
impl_meta_state_tx!(PgTx, PgStore);
impl_webhook_sweeps!(PgStore);
impl_pacing!(PgStore);
impl_broadcasts!(PgStore);
impl_broadcasts_tx!(PgTx);
impl_sealed_values!(PgStore);
impl_store_inspect!(PgStore);

impl Dialect for PgStore {
    type Db = sqlx::Postgres;

    const BACKEND: Backend = Backend::Postgres;
    const BEGIN_WRITE: &'static str = "BEGIN";
    /// Serialises first-start bootstraps of instances starting together.
    const BOOTSTRAP_LOCK: Option<&'static str> = Some("select pg_advisory_xact_lock(7715001)");
    /// An advisory transaction lock on the key's hash.
    const KEY_LOCK: Option<&'static str> =
        Some("select pg_advisory_xact_lock(hashtextextended($1, 0))");
    const LOCK_ROWS: &'static str = " for update";
    /// Concurrent claimers (other workers, other instances) skip each other's rows.
    const SKIP_LOCKED: &'static str = " for update skip locked";
    /// Sent inside a transaction that queued deliveries: PostgreSQL delivers it at commit, once.
    const NOTIFY: Option<&'static str> = Some("select pg_notify('wagate_deliveries', '')");
    const PACK_PAYLOADS: bool = false;
    /// A writer batch (or a sweep's `StoreTx`) finds its rows by key (a parent BSUID: among one
    /// number's contacts), so the planner may not pick a sequential scan, hash or merge join for
    /// it: each statement finds its rows through the index its keys name, at any table size,
    /// with or without statistics. Chosen per call, a scan (or a hash of the batch's keys joined
    /// to one) of a small table looked cheaper than probing it and took 2–6 times longer than
    /// the probes (the prefetch's contacts and conversations, 1,000 rows: 118 and 183 against 23
    /// and 29 µs). `SET LOCAL` ends with the transaction; everything else keeps the planner's
    /// own choice.
    const BEGIN_BATCH: &'static str = "BEGIN; set local enable_seqscan = off; \
         set local enable_hashjoin = off; set local enable_mergejoin = off";
    /// The connection plans every statement afresh (`plan_cache_mode`, see `connect`), which is
    /// a third of a webhook batch's database time (`pg_stat_statements` with
    /// `track_planning`). What a batch writes at commit needs no fresh plan: multi-row inserts
    /// from `unnest` (a function scan, whatever the tables hold) and updates by primary key,
    /// planned under `BEGIN_BATCH`'s settings. So from here to the commit a statement's first
    /// plan is kept (generic): a plan made while a table was empty still finds each row through
    /// its key as the table grows. `SET LOCAL` ends with the transaction.
    ///
    /// Not from the `BEGIN`: the key lock and the prefetch lookups, which run before this, stay
    /// planned per call, as a lookup's right plan needs its keys. Kept generic too (tried in
    /// stop 46), the messages lookup's plan, made while the table was small, read all of a
    /// number's messages through an index that named only the number
    /// (`tests/api/write_plans.rs`: 572,833 rows fetched to record 40 sends), even with scans
    /// and hash joins ruled out.
    const COMMIT_PLANS: Option<&'static str> =
        Some("set local plan_cache_mode = force_generic_plan");

    /// LISTENs for deliveries queued anywhere; reconnects after a lost connection.
    async fn listen(pool: &PgPool, wake: std::sync::Arc<tokio::sync::Notify>) {
        loop {
            let listened = async {
                let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
                listener.listen(super::outbox::DELIVERY_CHANNEL).await?;
                loop {
                    listener.recv().await?;
                    wake.notify_one();
                }
                #[allow(unreachable_code)]
                Ok::<(), sqlx::Error>(())
            }
            .await;
            if let Err(error) = listened {
                tracing::warn!(%error, "delivery LISTEN connection lost; polling until it is back");
            }
            // The poll interval covers the gap; retry the connection shortly.
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            wake.notify_one();
        }
    }

    async fn watch_cache_changes(
        pool: &PgPool,
        changes: tokio::sync::mpsc::Sender<super::CacheChange>,
        _poll: std::time::Duration,
    ) {
        super::cache_changes::listen_postgres(pool, changes).await
    }

    /// `StoreTx::prefetch`: the batch's messages (locked, in id order), whether statuses are
    /// parked for them, its contacts and their active conversations (locked, in id order).
    async fn prefetch_rows(
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        batch: &super::Prefetch,
    ) -> super::StoreResult<super::tx_state::Prefetched> {
        super::postgres_prefetch::prefetch(tx, batch).await
    }

    /// `StoreTx::lock_keys`: sorted by the lock's own key (the subquery's DISTINCT keeps the sort
    /// below the locking), so concurrent batches take shared keys in the same order.
    async fn lock_many(
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        keys: &[String],
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "select pg_advisory_xact_lock(h) from (select distinct hashtextextended(k, 0) as h \
             from unnest($1::text[]) as k order by h) as keys",
        )
        .bind(keys)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

impl PgStore {
    /// `Outbox::finish_deliveries`: three statements over arrays for the whole batch (attempts,
    /// deliveries whose lease still holds, their messages' processing status).
    async fn finish_batch(
        pool: &PgPool,
        outcomes: &[super::DeliveryOutcome],
        pause_after: u32,
    ) -> super::StoreResult<()> {
        let mut tx = pool.begin().await?;
        let attempts: Vec<&super::AttemptRow> =
            outcomes.iter().filter_map(|o| o.attempt.as_ref()).collect();
        if !attempts.is_empty() {
            let a = &attempts;
            // Not for a delivery deleted meanwhile (with its number).
            sqlx::query(
                "insert into webhook_delivery_attempts (id, delivery_id, attempt, started_at, \
                 duration_ms, destination, status_code, response_excerpt, error) \
                 select a.* from unnest($1::uuid[], $2::uuid[], $3::int4[], $4::timestamptz[], \
                 $5::int4[], $6::text[], $7::int4[], $8::text[], $9::text[]) as a(id, delivery_id, \
                 attempt, started_at, duration_ms, destination, status_code, response_excerpt, error) \
                 where exists (select 1 from webhook_deliveries d where d.id = a.delivery_id)",
            )
            .bind(a.iter().map(|a| a.id).collect::<Vec<_>>())
            .bind(a.iter().map(|a| a.delivery_id).collect::<Vec<_>>())
            .bind(a.iter().map(|a| a.attempt).collect::<Vec<_>>())
            .bind(a.iter().map(|a| a.started_at).collect::<Vec<_>>())
            .bind(a.iter().map(|a| a.duration_ms).collect::<Vec<_>>())
            .bind(a.iter().map(|a| a.destination.as_str()).collect::<Vec<_>>())
            .bind(a.iter().map(|a| a.status_code).collect::<Vec<_>>())
            .bind(a.iter().map(|a| a.response_excerpt.as_deref()).collect::<Vec<_>>())
            .bind(a.iter().map(|a| a.error.as_deref()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        let o = outcomes;
        // A delivery claimed again after our lease ran out keeps the newer claim's state.
        let moved: Vec<uuid::Uuid> = sqlx::query_scalar(
            "update webhook_deliveries as d set status = v.status, attempts = d.attempts + v.counted, \
             next_attempt_at = v.next_attempt_at, \
             last_status_code = case when v.counted = 1 then v.code else d.last_status_code end, \
             last_error = case when v.counted = 1 then v.error else d.last_error end, \
             delivered_at = coalesce(v.delivered_at, d.delivered_at), lease_token = null, \
             updated_at = v.at \
             from unnest($1::uuid[], $2::uuid[], $3::text[], $4::int4[], $5::timestamptz[], \
             $6::int4[], $7::text[], $8::timestamptz[], $9::timestamptz[]) as v(id, token, status, \
             counted, next_attempt_at, code, error, delivered_at, at) \
             where d.id = v.id and d.lease_token = v.token returning d.id",
        )
        .bind(o.iter().map(|o| o.delivery_id).collect::<Vec<_>>())
        .bind(o.iter().map(|o| o.lease_token).collect::<Vec<_>>())
        .bind(o.iter().map(|o| o.status.as_str()).collect::<Vec<_>>())
        .bind(o.iter().map(|o| i32::from(o.attempt.is_some())).collect::<Vec<_>>())
        .bind(o.iter().map(|o| o.next_attempt_at).collect::<Vec<_>>())
        .bind(o.iter().map(|o| o.last_status_code).collect::<Vec<_>>())
        .bind(o.iter().map(|o| o.last_error.as_deref()).collect::<Vec<_>>())
        .bind(o.iter().map(|o| o.delivered_at).collect::<Vec<_>>())
        .bind(o.iter().map(|o| o.at).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        let moved: std::collections::HashSet<uuid::Uuid> = moved.into_iter().collect();
        // The last outcome for a message wins (outcomes are in finishing order).
        let mut statuses: std::collections::HashMap<
            (uuid::Uuid, &str),
            (&str, chrono::DateTime<chrono::Utc>),
        > = std::collections::HashMap::new();
        for o in outcomes.iter().filter(|o| moved.contains(&o.delivery_id)) {
            if let (Some(status), Some(number)) = (o.processing_status, o.phone_number_internal_id)
            {
                for wamid in o.message_wamids.split_whitespace() {
                    statuses.insert((number, wamid), (status.as_str(), o.at));
                }
            }
        }
        if !statuses.is_empty() {
            let (keys, values): (Vec<_>, Vec<_>) = statuses.into_iter().unzip();
            sqlx::query(
                "update messages as m set processing_status = v.status, updated_at = v.at \
                 from unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[]) \
                 as v(number, wamid, status, at) \
                 where m.phone_number_internal_id = v.number and m.wamid = v.wamid \
                 and m.direction = 'inbound'",
            )
            .bind(keys.iter().map(|k| k.0).collect::<Vec<_>>())
            .bind(keys.iter().map(|k| k.1).collect::<Vec<_>>())
            .bind(values.iter().map(|v| v.0).collect::<Vec<_>>())
            .bind(values.iter().map(|v| v.1).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        let runs =
            super::webhook_outbox::failure_runs(outcomes, |o| moved.contains(&o.delivery_id));
        let now = super::now();
        super::webhook_outbox::record_failure_runs!(tx, runs, pause_after, now);
        tx.commit().await?;
        Ok(())
    }
}
