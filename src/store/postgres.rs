//! PostgreSQL backend: the production store, shared by every wagate instance behind a load
//! balancer.

use std::str::FromStr;

use anyhow::Context as _;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use super::common::impl_common_store;
use super::onboarding::impl_onboarding;
use super::outbox::impl_outbox;
use super::tx::impl_store_tx;
use crate::config::{Backend, DatabaseConfig};

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    const BEGIN_WRITE: &'static str = "BEGIN";
    /// Serialises first-start bootstraps of instances starting together.
    const BOOTSTRAP_LOCK: Option<&'static str> = Some("select pg_advisory_xact_lock(7715001)");
    const BACKEND: Backend = Backend::Postgres;

    pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(config.url.expose_secret())
            .context("parsing database.url")?
            .application_name("wagate")
            // A write never waits on a lock longer than this: it fails as "unavailable" (503, or
            // the retry buffer) instead of hanging a request.
            .options([(
                "lock_timeout",
                format!("{}ms", config.busy_timeout.as_millis()),
            )]);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
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
}

/// A write transaction on this backend.
pub struct PgTx {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    queued_deliveries: bool,
}

impl_common_store!(PgStore, PgTx);
impl_store_tx!(PgTx);
impl_outbox!(PgStore);
impl_onboarding!(PgStore);

impl PgStore {
    /// Concurrent claimers (other workers, other instances) skip each other's rows.
    const SKIP_LOCKED: &'static str = " for update skip locked";
    /// Sent inside a transaction that queued deliveries: PostgreSQL delivers it at commit, once.
    const NOTIFY: Option<&'static str> = Some("select pg_notify('wagate_deliveries', '')");

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
}

impl PgTx {
    /// Appended to read-then-write selects so concurrent writers of one row queue up.
    const LOCK_ROWS: &'static str = " for update";
    const NOTIFY: Option<&'static str> = PgStore::NOTIFY;
    const KEY_LOCK: Option<&'static str> =
        Some("select pg_advisory_xact_lock(hashtextextended($1, 0))");
}
