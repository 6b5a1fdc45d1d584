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
    pub(super) tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    pub(super) state: super::tx_state::TxState,
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

    /// The batch's messages, parked statuses and users: see `sqlite_prefetch`.
    async fn prefetch_rows(
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        batch: &super::Prefetch,
    ) -> super::StoreResult<super::tx_state::Prefetched> {
        super::sqlite_prefetch::prefetch(tx, batch).await
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The default database settings on a file in `dir`.
    fn on_disk(dir: &tempfile::TempDir) -> DatabaseConfig {
        let mut config = crate::config::Config::defaults().database;
        config.url = format!("sqlite://{}/w.db", dir.path().display()).into();
        config
    }

    #[tokio::test]
    async fn every_connection_checkpoints_at_the_configured_wal_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = on_disk(&dir);
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
        let mut config = on_disk(&dir);
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

    /// Every prefetch statement probes a unique index per key, on an empty database (no
    /// statistics) and on one whose statistics were gathered, and never scans a table or an
    /// index by a column the keys do not name.
    #[tokio::test]
    async fn each_key_probes_its_unique_index() {
        use crate::store::sqlite_prefetch as prefetch;
        use sqlx::Row as _;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(&on_disk(&dir)).await.unwrap();
        let mut conn = store.pool.acquire().await.unwrap();
        for analyzed in [false, true] {
            if analyzed {
                sqlx::query("analyze").execute(&mut *conn).await.unwrap();
            }
            for (sql, probes) in [
                (
                    prefetch::MESSAGES,
                    &["messages_wamid_key", "parked_statuses_wamid_idx"][..],
                ),
                (
                    prefetch::CONTACTS,
                    &["contacts_wa_id_key", "contacts_bsuid_key"][..],
                ),
                (
                    prefetch::CONVERSATIONS,
                    &["conversations_one_active_key"][..],
                ),
            ] {
                let plan: Vec<String> = sqlx::query(&format!("explain query plan {sql}"))
                    .fetch_all(&mut *conn)
                    .await
                    .unwrap()
                    .iter()
                    .map(|row| row.get::<String, _>("detail"))
                    .collect();
                let plan = plan.join("\n");
                for table in ["messages", "parked_statuses", "contacts", "conversations"] {
                    assert!(
                        !plan.contains(&format!("SCAN {table}")),
                        "{table} scanned (analyzed: {analyzed}):\n{plan}"
                    );
                }
                for index in probes {
                    assert!(
                        plan.lines()
                            .any(|l| l.starts_with("SEARCH") && l.contains(index)),
                        "no probe of {index} (analyzed: {analyzed}):\n{plan}"
                    );
                }
                assert!(!plan.contains("sweep_idx"), "{plan}");
            }
        }
    }
}
