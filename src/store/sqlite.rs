//! SQLite backend: the embedded default. WAL mode so readers never wait for the writer, a busy
//! timeout so concurrent writers queue instead of failing, and foreign keys switched on.

use std::str::FromStr;

use anyhow::Context as _;
use secrecy::ExposeSecret;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use super::common::impl_common_store;
use super::onboarding::impl_onboarding;
use super::outbox::impl_outbox;
use super::tx::impl_store_tx;
use crate::config::{Backend, DatabaseConfig};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    /// `BEGIN IMMEDIATE` already serialises bootstraps.
    const BOOTSTRAP_LOCK: Option<&'static str> = None;
    const BACKEND: Backend = Backend::Sqlite;

    pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<Self> {
        if let Some(dir) = config.sqlite_data_dir() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating the data folder {}", dir.display()))?;
            }
        }
        let options = SqliteConnectOptions::from_str(config.url.expose_secret())
            .context("parsing database.url")?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable across application crashes in WAL mode and avoids an fsync per
            // commit; a power loss may drop the last commits, as documented in the README.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(config.busy_timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            // SQLite has one writer; a small pool avoids lock contention between our own tasks.
            .max_connections(config.max_connections.clamp(1, 8))
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await
            .context("opening the SQLite database")?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .context("applying SQLite migrations")?;
        Ok(Self { pool })
    }
}

/// A write transaction on this backend.
pub struct SqliteTx {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    queued_deliveries: bool,
}

impl_common_store!(SqliteStore, SqliteTx);
impl_store_tx!(SqliteTx);
impl_outbox!(SqliteStore);
impl_onboarding!(SqliteStore);

impl SqliteStore {
    /// The single writer already serialises claims.
    const SKIP_LOCKED: &'static str = "";
    /// Every writer is in this process, which wakes its workers itself.
    const NOTIFY: Option<&'static str> = None;

    async fn listen(_pool: &SqlitePool, _wake: std::sync::Arc<tokio::sync::Notify>) {}
}

impl SqliteTx {
    /// Appended to read-then-write selects so concurrent writers of one row queue up.
    const LOCK_ROWS: &'static str = "";
    const KEY_LOCK: Option<&'static str> = None;
    const NOTIFY: Option<&'static str> = SqliteStore::NOTIFY;
}
