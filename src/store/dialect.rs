//! What differs between the two backends, in one place: each backend's store type implements
//! [`Dialect`], and the shared code (`common.rs`, `tx.rs`, `outbox.rs`) asks it instead of
//! branching on the backend. Everything else (placeholders, `returning`, `on conflict`) is the
//! same SQL on both.

use std::future::Future;
use std::sync::Arc;

use super::tx_state::{Prefetch, Prefetched};
use super::StoreResult;
use crate::config::Backend;

/// Per-backend hooks and SQL fragments.
pub(crate) trait Dialect: Send + Sync + 'static {
    type Db: sqlx::Database;

    const BACKEND: Backend;
    /// Starts a write transaction (`BEGIN IMMEDIATE` on SQLite, so read-then-write never
    /// deadlocks).
    const BEGIN_WRITE: &'static str;
    /// Starts a batched write transaction (`Store::begin`, a `StoreTx`): `BEGIN_WRITE`, plus
    /// settings for what such a transaction runs: lookups and writes by key, and searches
    /// within one number's rows.
    const BEGIN_BATCH: &'static str;
    /// Taken before the first-project check, so instances starting together bootstrap once.
    const BOOTSTRAP_LOCK: Option<&'static str>;
    /// Serialises work on one key until commit (`$1` is the key name); `None` where there is
    /// one writer at a time anyway.
    const KEY_LOCK: Option<&'static str>;
    /// Appended to read-then-write selects so concurrent writers of one row queue up.
    const LOCK_ROWS: &'static str;
    /// Appended to the outbox claim's subselect so concurrent claimers skip each other's rows.
    const SKIP_LOCKED: &'static str;
    /// Sent in a transaction that queued deliveries, waking other instances' workers at commit.
    const NOTIFY: Option<&'static str>;
    /// Whether a delivery's own payload is packed at rest (`store::packed`).
    const PACK_PAYLOADS: bool;
    /// Sent (as one simple query) when a batched write transaction starts writing what it
    /// buffered: a setting that makes those writes' plans cacheable; `None` where plans are
    /// not the cost.
    const COMMIT_PLANS: Option<&'static str>;

    /// `StoreTx::lock_keys`: locks every key with one statement, in one global order.
    fn lock_many(
        tx: &mut sqlx::Transaction<'static, Self::Db>,
        keys: &[String],
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// `StoreTx::prefetch`: the rows a batch will touch.
    fn prefetch_rows(
        tx: &mut sqlx::Transaction<'static, Self::Db>,
        batch: &Prefetch,
    ) -> impl Future<Output = StoreResult<Prefetched>> + Send;

    /// `Outbox::listen_for_deliveries`: waits for other instances' `NOTIFY`s, calling `wake`
    /// for each; returns at once where every writer is in this process.
    fn listen(
        pool: &sqlx::Pool<Self::Db>,
        wake: Arc<tokio::sync::Notify>,
    ) -> impl Future<Output = ()> + Send;

    /// `Store::watch_cache_changes`: LISTEN on PostgreSQL, a poll of the log on SQLite.
    fn watch_cache_changes(
        pool: &sqlx::Pool<Self::Db>,
        changes: tokio::sync::mpsc::Sender<super::CacheChange>,
        poll: std::time::Duration,
    ) -> impl Future<Output = ()> + Send;
}
