//! SQLite backend: the embedded default. WAL mode so readers never wait for the writer, a busy
//! timeout so concurrent writers queue instead of failing, and foreign keys switched on.

use std::path::Path;
use std::str::FromStr;

use anyhow::Context as _;
use secrecy::ExposeSecret;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

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
pub struct SqliteStore {
    pool: SqlitePool,
    /// The batched writer's own connection (`Store::begin`), apart from `pool`: SQLite drops a
    /// connection's page cache whenever another connection wrote since its last transaction, so
    /// a writer handed a different pooled connection per batch re-read its index pages from the
    /// file every time (measured: recorded sends 1.07x, their added p50 at c=1 591 -> 541 µs).
    /// Nor do readers holding every pooled connection hold up ingest. The same pool for an
    /// in-memory database, which only it can see.
    writer: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(config.url.expose_secret())
            .context("parsing database.url")?;
        let on_disk = config.sqlite_data_dir().is_some();
        if let Some(dir) = config.sqlite_data_dir() {
            if !dir.as_os_str().is_empty() {
                create_private_dir(&dir)
                    .with_context(|| format!("creating the data folder {}", dir.display()))?;
            }
            create_private_file(options.get_filename())?;
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable across application crashes in WAL mode and avoids an fsync per
            // commit; a power loss may drop the last commits, as documented in the README.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(config.busy_timeout)
            .pragma(
                "wal_autocheckpoint",
                config.sqlite_wal_autocheckpoint.to_string(),
            )
            .foreign_keys(true);
        let pool = pool_options(config)
            // SQLite has one writer; a small pool avoids lock contention between our own tasks.
            .max_connections(config.max_connections.clamp(1, 8))
            .connect_with(options.clone())
            .await
            .context("opening the SQLite database")?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .context("applying SQLite migrations")?;
        let writer = if on_disk {
            warn_if_readable_by_others(options.get_filename());
            writer_pool(config, options).await?
        } else {
            pool.clone()
        };
        Ok(Self { pool, writer })
    }

    /// The pool `Store::begin` takes the batched writer's transactions from.
    fn writer(&self) -> &SqlitePool {
        &self.writer
    }
}

/// The writer's pool: one connection, kept for the life of the process so its page cache stays
/// warm (the migrations already ran on the main pool).
async fn writer_pool(
    config: &DatabaseConfig,
    options: SqliteConnectOptions,
) -> anyhow::Result<SqlitePool> {
    pool_options(config)
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await
        .context("opening the SQLite database's writer connection")
}

/// What both pools share. An in-process connection cannot go stale: no ping (one more round
/// trip to the connection's worker thread) on acquire.
fn pool_options(config: &DatabaseConfig) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .acquire_timeout(config.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, _| Box::pin(async move { Ok(out_of_transaction(conn)) }))
}

/// Whether a pooled connection may be handed out. A COMMIT that fails with a full disk or an I/O
/// error is rolled back by SQLite itself; sqlx's own ROLLBACK then fails, and the connection keeps
/// a transaction depth it can never leave (every later `begin` fails). Such a connection is
/// closed rather than handed out (an atomic load; the fault suite's disk-full test).
fn out_of_transaction(conn: &mut sqlx::SqliteConnection) -> bool {
    use sqlx::TransactionManager as _;
    sqlx::sqlite::SqliteTransactionManager::get_transaction_depth(conn) == 0
}

/// Creates a data folder only its owner can enter (0700), whatever the umask; an existing one is
/// left as it is.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates the database file 0600 before SQLite does, whatever the umask: SQLite gives the `-wal`
/// and `-shm` files it creates later the database file's permissions, so they are 0600 too.
/// The file holds sealed tokens, message contents and customers' phone numbers.
fn create_private_file(path: &Path) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating the database {}", path.display())),
    }
}

/// A database created by an older wagate (or copied in) may be readable by other users; its
/// permissions are the operator's, so they are reported rather than changed.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            let file = Path::new(&file);
            if let Ok(meta) = std::fs::metadata(file) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    tracing::warn!(
                        path = %file.display(),
                        mode = format!("{mode:o}"),
                        "the database file is accessible to other users; `chmod 600` it (wagate creates new ones 0600)"
                    );
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// A write transaction on this backend.
pub struct SqliteTx {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    queued_deliveries: bool,
    state: super::tx_state::TxState,
}

impl_common_store!(SqliteStore, SqliteTx);
impl_store_tx!(SqliteTx, SqliteStore);
impl_outbox!(SqliteStore);
impl_onboarding!(SqliteStore);
impl_media_files!(SqliteStore);
impl_webhooks!(SqliteStore);
impl_provisioning!(SqliteStore);
impl_meta_state!(SqliteStore);
impl_meta_state_tx!(SqliteTx, SqliteStore);
impl_webhook_sweeps!(SqliteStore);
impl_pacing!(SqliteStore);
impl_broadcasts!(SqliteStore);
impl_broadcasts_tx!(SqliteTx);
impl_sealed_values!(SqliteStore);
impl_store_inspect!(SqliteStore);

impl SqliteStore {
    /// `Outbox::finish_deliveries`: statement by statement (cheap in process).
    async fn finish_batch(
        pool: &SqlitePool,
        outcomes: &[super::DeliveryOutcome],
        pause_after: u32,
    ) -> super::StoreResult<()> {
        let mut tx = pool.begin().await?;
        let mut moved_ids = std::collections::HashSet::new();
        for o in outcomes {
            if let Some(a) = &o.attempt {
                // Not for a delivery deleted meanwhile (its number or project was): the
                // foreign key would fail the whole batch, and every outcome in it.
                sqlx::query(
                    "insert into webhook_delivery_attempts (id, delivery_id, attempt, started_at, \
                     duration_ms, destination, status_code, response_excerpt, error) \
                     select $1, $2, $3, $4, $5, $6, $7, $8, $9 \
                     where exists (select 1 from webhook_deliveries where id = $2)",
                )
                .bind(a.id)
                .bind(a.delivery_id)
                .bind(a.attempt)
                .bind(a.started_at)
                .bind(a.duration_ms)
                .bind(&a.destination)
                .bind(a.status_code)
                .bind(&a.response_excerpt)
                .bind(&a.error)
                .execute(&mut *tx)
                .await?;
            }
            let counted = i32::from(o.attempt.is_some());
            let moved = sqlx::query(
                "update webhook_deliveries set status = $3, attempts = attempts + $4, \
                 next_attempt_at = $5, last_status_code = case when $4 = 1 then $6 else last_status_code end, \
                 last_error = case when $4 = 1 then $7 else last_error end, \
                 delivered_at = coalesce($8, delivered_at), lease_token = null, updated_at = $9 \
                 where id = $1 and lease_token = $2",
            )
            .bind(o.delivery_id).bind(o.lease_token).bind(o.status).bind(counted)
            .bind(o.next_attempt_at).bind(o.last_status_code).bind(&o.last_error)
            .bind(o.delivered_at).bind(o.at)
            .execute(&mut *tx).await?
            .rows_affected();
            if moved == 0 {
                // Claimed again after our lease ran out: the newer claim decides.
                continue;
            }
            moved_ids.insert(o.delivery_id);
            if let Some(status) = o.processing_status {
                for wamid in o.message_wamids.split_whitespace() {
                    sqlx::query(
                        "update messages set processing_status = $3, updated_at = $4 \
                         where phone_number_internal_id = $1 and wamid = $2 and direction = 'inbound'",
                    )
                    .bind(o.phone_number_internal_id).bind(wamid).bind(status).bind(o.at)
                    .execute(&mut *tx).await?;
                }
            }
        }
        let runs =
            super::webhook_outbox::failure_runs(outcomes, |o| moved_ids.contains(&o.delivery_id));
        let now = super::now();
        super::webhook_outbox::record_failure_runs!(tx, runs, pause_after, now);
        tx.commit().await?;
        Ok(())
    }
}

impl Dialect for SqliteStore {
    type Db = sqlx::Sqlite;

    const BACKEND: Backend = Backend::Sqlite;
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const BEGIN_BATCH: &'static str = Self::BEGIN_WRITE;
    /// `BEGIN IMMEDIATE` already serialises bootstraps.
    const BOOTSTRAP_LOCK: Option<&'static str> = None;
    /// One writer at a time: nothing to lock.
    const KEY_LOCK: Option<&'static str> = None;
    const LOCK_ROWS: &'static str = "";
    /// The single writer already serialises claims.
    const SKIP_LOCKED: &'static str = "";
    /// Every writer is in this process, which wakes its workers itself.
    const NOTIFY: Option<&'static str> = None;
    const COMMIT_PLANS: Option<&'static str> = None;
    const PACK_PAYLOADS: bool = true;

    /// Rows are read and cached as the batch asks for them. A prefetch like PostgreSQL's (four
    /// statements joining a `VALUES` list through the unique indexes) was measured here: ingest
    /// went from about 250 to about 390 µs of CPU per event, so SQLite keeps the per-job reads.
    async fn prefetch_rows(
        _tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        _batch: &super::Prefetch,
    ) -> super::StoreResult<Option<super::tx_state::Prefetched>> {
        Ok(None)
    }

    /// One writer at a time: nothing to lock.
    async fn lock_many(
        _tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        _keys: &[String],
    ) -> Result<(), sqlx::Error> {
        Ok(())
    }

    async fn listen(_pool: &SqlitePool, _wake: std::sync::Arc<tokio::sync::Notify>) {}

    async fn watch_cache_changes(
        pool: &SqlitePool,
        changes: tokio::sync::mpsc::Sender<super::CacheChange>,
        poll: std::time::Duration,
    ) {
        super::cache_changes::poll_sqlite(pool, changes, poll).await
    }
}

/// Commit-time writes of the rows a transaction buffered (see `tx_state`): multi-row statements
/// built per batch (SQLite prepares them cheaply).
impl SqliteTx {
    /// Inserts the buffered append-only rows: parents before children (foreign keys).
    async fn flush_pending(&mut self) -> crate::store::StoreResult<()> {
        use crate::store::tx::INSERT_CHUNK;
        let events = std::mem::take(&mut self.state.events);
        for chunk in events.chunks(INSERT_CHUNK) {
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(concat!(
                "insert into webhook_events (",
                super::columns::webhook_event_columns!(),
                ") ",
            ));
            query.push_values(chunk, |mut row, e| {
                row.push_bind(e.id)
                    .push_bind(e.received_at)
                    .push_bind(&e.body)
                    .push_bind(&e.state)
                    .push_bind(&e.error);
            });
            query.build().execute(&mut *self.tx).await?;
        }
        let routes = std::mem::take(&mut self.state.routes);
        for chunk in routes.chunks(INSERT_CHUNK) {
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(concat!(
                "insert into webhook_event_routes (",
                super::columns::event_route_columns!(),
                ") ",
            ));
            query.push_values(chunk, |mut row, r| {
                row.push_bind(r.id)
                    .push_bind(r.event_id)
                    .push_bind(r.project_id)
                    .push_bind(&r.phone_number_id)
                    .push_bind(&r.fields)
                    .push_bind(&r.payload)
                    .push_bind(r.created_at);
            });
            query.build().execute(&mut *self.tx).await?;
        }
        let deliveries = std::mem::take(&mut self.state.deliveries);
        for chunk in deliveries.chunks(INSERT_CHUNK) {
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "insert into webhook_deliveries (id, project_id, phone_number_internal_id, \
                 phone_number_id, event_id, route_id, fields, idempotency_key, message_wamids, \
                 status, attempts, next_attempt_at, replay_of, created_at, updated_at, webhook_id, \
                 event_type, payload, batch_size) ",
            );
            query.push_values(chunk, |mut row, d| {
                row.push_bind(d.id)
                    .push_bind(d.project_id)
                    .push_bind(d.phone_number_internal_id)
                    .push_bind(&d.phone_number_id)
                    .push_bind(d.event_id)
                    .push_bind(d.route_id)
                    .push_bind(&d.fields)
                    .push_bind(&d.idempotency_key)
                    .push_bind(&d.message_wamids)
                    .push_bind(d.status)
                    .push("0")
                    .push_bind(d.created_at)
                    .push_bind(d.replay_of)
                    .push_bind(d.created_at)
                    .push_bind(d.created_at)
                    .push_bind(d.webhook_id)
                    .push_bind(&d.event_type)
                    .push_bind(super::packed::at_rest(
                        <SqliteStore as Dialect>::PACK_PAYLOADS,
                        d.payload.as_deref(),
                    ))
                    .push_bind(d.batch_size);
            });
            query.build().execute(&mut *self.tx).await?;
        }
        let buffered = std::mem::take(&mut self.state.buffered);
        for chunk in buffered.chunks(INSERT_CHUNK) {
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "insert into webhook_buffered_events (id, webhook_id, conversation_id, project_id, \
                 phone_number_internal_id, phone_number_id, payload, flush_at, created_at) ",
            );
            query.push_values(chunk, |mut row, e| {
                row.push_bind(e.id)
                    .push_bind(e.webhook_id)
                    .push_bind(e.conversation_id)
                    .push_bind(e.project_id)
                    .push_bind(e.phone_number_internal_id)
                    .push_bind(&e.phone_number_id)
                    .push_bind(&e.payload)
                    .push_bind(e.flush_at)
                    .push_bind(e.created_at);
            });
            query.build().execute(&mut *self.tx).await?;
        }
        let media = std::mem::take(&mut self.state.media);
        for chunk in media.chunks(INSERT_CHUNK) {
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "insert into media_files (id, project_id, phone_number_internal_id, \
                 phone_number_id, wamid, direction, media_id, source_url, expected_sha256, \
                 content_type, filename, state, attempts, next_attempt_at, created_at, updated_at) ",
            );
            query.push_values(chunk, |mut row, m| {
                row.push_bind(m.id)
                    .push_bind(m.project_id)
                    .push_bind(m.phone_number_internal_id)
                    .push_bind(&m.phone_number_id)
                    .push_bind(&m.wamid)
                    .push_bind(&m.direction)
                    .push_bind(&m.media_id)
                    .push_bind(&m.source_url)
                    .push_bind(&m.expected_sha256)
                    .push_bind(&m.content_type)
                    .push_bind(&m.filename)
                    .push("'pending'")
                    .push("0")
                    .push_bind(m.created_at)
                    .push_bind(m.created_at)
                    .push_bind(m.created_at);
            });
            query.push(" on conflict (phone_number_internal_id, wamid) do nothing");
            query.build().execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Writes every changed conversation, one statement per chunk.
    async fn flush_conversations(&mut self) -> crate::store::StoreResult<()> {
        let rows = self.state.take_conversation_writes();
        for chunk in rows.chunks(crate::store::tx::INSERT_CHUNK) {
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "update conversations set status = v.status, last_active_at = v.last_active_at, \
                 ended_at = v.ended_at, messages_count = v.messages_count, \
                 last_message_id = v.last_message_id, last_message_type = v.last_message_type, \
                 last_message_timestamp = v.last_message_timestamp, \
                 last_message_text = v.last_message_text, last_inbound_at = v.last_inbound_at, \
                 last_outbound_at = v.last_outbound_at, metadata = v.metadata, \
                 updated_at = v.updated_at, active_second = v.active_second from (",
            );
            for (i, c) in chunk.iter().enumerate() {
                query.push(if i == 0 {
                    "select "
                } else {
                    " union all select "
                });
                query
                    .push_bind(c.id)
                    .push(" as id, ")
                    .push_bind(c.status)
                    .push(" as status, ")
                    .push_bind(c.last_active_at)
                    .push(" as last_active_at, ")
                    .push_bind(c.ended_at)
                    .push(" as ended_at, ")
                    .push_bind(c.messages_count)
                    .push(" as messages_count, ")
                    .push_bind(&c.last_message_id)
                    .push(" as last_message_id, ")
                    .push_bind(&c.last_message_type)
                    .push(" as last_message_type, ")
                    .push_bind(&c.last_message_timestamp)
                    .push(" as last_message_timestamp, ")
                    .push_bind(&c.last_message_text)
                    .push(" as last_message_text, ")
                    .push_bind(c.last_inbound_at)
                    .push(" as last_inbound_at, ")
                    .push_bind(c.last_outbound_at)
                    .push(" as last_outbound_at, ")
                    .push_bind(&c.metadata)
                    .push(" as metadata, ")
                    .push_bind(c.updated_at)
                    .push(" as updated_at, ")
                    .push_bind(c.active_second())
                    .push(" as active_second");
            }
            query.push(") as v where conversations.id = v.id");
            query.build().execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Inserts the messages recorded in this transaction (a unique-key clash fails the
    /// batch: the writer then retries its jobs one by one) and writes changed ones.
    async fn flush_messages(&mut self) -> crate::store::StoreResult<()> {
        let (inserts, updates) = self.state.take_message_writes();
        for chunk in inserts.chunks(crate::store::tx::INSERT_CHUNK) {
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(concat!(
                "insert into messages (",
                super::columns::message_columns!(),
                ") ",
            ));
            query.push_values(chunk, |mut row, m| {
                row.push_bind(m.id)
                    .push_bind(m.project_id)
                    .push_bind(m.phone_number_internal_id)
                    .push_bind(&m.wamid)
                    .push_bind(m.direction)
                    .push_bind(&m.message_type)
                    .push_bind(&m.status)
                    .push_bind(m.processing_status)
                    .push_bind(&m.origin)
                    .push_bind(m.meta_timestamp)
                    .push_bind(m.contact_id)
                    .push_bind(m.conversation_id)
                    .push_bind(m.has_media)
                    .push_bind(&m.body)
                    .push_bind(&m.errors)
                    .push_bind(&m.statuses)
                    .push_bind(m.created_at)
                    .push_bind(m.updated_at)
                    .push_bind(&m.group_id)
                    .push_bind(&m.edits)
                    .push_bind(m.revoked_at);
            });
            query.build().execute(&mut *self.tx).await?;
        }
        for chunk in updates.chunks(crate::store::tx::INSERT_CHUNK) {
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "update messages set status = v.status, processing_status = v.processing_status, \
                 errors = v.errors, statuses = v.statuses, contact_id = v.contact_id, \
                 conversation_id = v.conversation_id, updated_at = v.updated_at from (",
            );
            for (i, m) in chunk.iter().enumerate() {
                query.push(if i == 0 {
                    "select "
                } else {
                    " union all select "
                });
                query
                    .push_bind(m.id)
                    .push(" as id, ")
                    .push_bind(&m.status)
                    .push(" as status, ")
                    .push_bind(m.processing_status)
                    .push(" as processing_status, ")
                    .push_bind(&m.errors)
                    .push(" as errors, ")
                    .push_bind(&m.statuses)
                    .push(" as statuses, ")
                    .push_bind(m.contact_id)
                    .push(" as contact_id, ")
                    .push_bind(m.conversation_id)
                    .push(" as conversation_id, ")
                    .push_bind(m.updated_at)
                    .push(" as updated_at");
            }
            query.push(") as v where messages.id = v.id");
            query.build().execute(&mut *self.tx).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_connection_checkpoints_at_the_configured_wal_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::config::Config::defaults().database;
        config.url = format!("sqlite://{}/w.db", dir.path().display()).into();
        config.sqlite_wal_autocheckpoint = 1234;
        let store = SqliteStore::connect(&config).await.unwrap();
        // Hold two connections at once so both the first and a later one are asked.
        let mut first = store.pool.acquire().await.unwrap();
        let mut second = store.pool.acquire().await.unwrap();
        for conn in [&mut first, &mut second] {
            let pages: i64 = sqlx::query_scalar("pragma wal_autocheckpoint")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(pages, 1234);
        }
    }

    /// Readers holding every pooled connection do not hold up the writer's batches.
    #[tokio::test]
    async fn the_writer_begins_while_readers_hold_the_whole_pool() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::config::Config::defaults().database;
        config.url = format!("sqlite://{}/w.db", dir.path().display()).into();
        config.max_connections = 2;
        config.acquire_timeout = std::time::Duration::from_secs(2);
        let store = SqliteStore::connect(&config).await.unwrap();
        let _held = (
            store.pool.acquire().await.unwrap(),
            store.pool.acquire().await.unwrap(),
        );
        let tx = crate::store::Store::begin(&store)
            .await
            .expect("the writer has a connection of its own");
        tx.commit().await.unwrap();
    }
}
