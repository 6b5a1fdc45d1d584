//! Persistence behind one [`Store`] trait with a SQLite and a PostgreSQL implementation.
//!
//! The two backends share their SQL through the `impl_common_store!` macro in `common.rs`: both
//! dialects accept `$n` placeholders, `returning`, and `on conflict`, so a query is written once
//! and compiled against each driver. What differs (key locks, row locks, the claim's `skip
//! locked`, LISTEN/NOTIFY, the prefetch) is each backend's `dialect::Dialect` implementation.
//! sqlx types never leave this module: callers see domain models and [`StoreError`].

pub mod broadcasts;
pub(crate) mod cache_changes;
mod columns;
mod common;
mod dialect;
pub(crate) mod inspect;
pub(crate) mod lists;
pub(crate) mod media;
pub(crate) mod meta_state;
mod models;
pub(crate) mod onboarding;
pub(crate) mod outbox;
pub mod pacing;
pub(crate) mod packed;
mod postgres;
mod postgres_flush;
mod postgres_prefetch;
pub(crate) mod provisioning;
mod records;
pub(crate) mod sealed;
mod sqlite;
mod sqlite_flush;
mod sqlite_prefetch;
mod status;
pub(crate) mod tx;
pub(crate) mod tx_state;
pub(crate) mod webhook_outbox;
pub(crate) mod webhooks;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

pub use broadcasts::{Broadcasts, BroadcastsTx};
pub use cache_changes::CacheChange;
pub use inspect::StoreInspect;
pub use lists::{CallFilter, ContactFilter, ConversationFilter, MessageFilter, Seek};
pub use media::{
    upload_key, FinishedDownload, KeptUpload, MediaFileRow, MediaFiles, MediaOutcome, MediaState,
};
pub use meta_state::{
    GroupRow, MetaState, MetaStateTx, NumberFacts, PricedMessage, TemplateRow, UsageRow,
    BLOCKED_TEMPLATE_STATUSES,
};
pub use models::*;
pub use onboarding::{
    CustomerFilter, CustomerPatch, Onboarding, SetupCompletion, SetupLinkFilter, SetupLinkPatch,
    SetupLinkRow,
};
pub use outbox::{
    AttemptRow, ClaimedDelivery, DeliveryFilter, DeliveryOutcome, DeliveryRow, NewDelivery, Outbox,
    WebhookResult,
};
pub use pacing::Pacing;
pub use postgres::PgStore;
pub use provisioning::{
    PoolCount, PoolFilter, PoolRemoval, ProviderRow, ProvisionedNumber, Provisioning, NUMBER_STATES,
};
pub use records::*;
pub use sealed::{Resealed, SealedValue, SealedValues};
pub use sqlite::{create_private_dir, SqliteStore};
pub use status::{ConversationStatus, DeliveryStatus, Direction, ProcessingStatus, UnknownValue};
pub use tx::StoreTx;
pub use tx_state::Prefetch;
pub use webhook_outbox::WebhookSweeps;
pub use webhooks::{WebhookRow, WebhookScope, Webhooks};

use crate::config::{Backend, DatabaseConfig};

/// Current time at the precision both backends keep (microseconds), so a value read back equals
/// the value written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// What can go wrong in the store, in terms callers act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique or foreign-key constraint refused the write.
    #[error("conflict{}", .constraint.as_deref().map(|c| format!(" on {c}")).unwrap_or_default())]
    Conflict { constraint: Option<String> },
    /// The database cannot be reached now (pool timeout, closed pool, I/O); retrying later may work.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db)
                if matches!(
                    db.kind(),
                    sqlx::error::ErrorKind::UniqueViolation
                        | sqlx::error::ErrorKind::ForeignKeyViolation
                ) =>
            {
                StoreError::Conflict {
                    constraint: db.constraint().map(str::to_owned),
                }
            }
            sqlx::Error::Database(db) if is_transient(db.code().as_deref()) => {
                StoreError::Unavailable(db.to_string())
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error.to_string()),
            other => StoreError::Other(anyhow::Error::new(other)),
        }
    }
}

/// Database error codes that mean "not now" rather than "never": SQLite busy/locked, disk full
/// and I/O errors (`SQLITE_IOERR` and its extended codes), PostgreSQL connection failures,
/// shutdowns, a full disk, lock timeouts, deadlocks, serialization failures and too many
/// connections. A full disk is answered 503 (Meta retries) and recovers once space returns.
fn is_transient(code: Option<&str>) -> bool {
    let Some(code) = code else { return false };
    let sqlite_io_error = code.parse::<u32>().is_ok_and(|c| c & 0xff == 10);
    sqlite_io_error
        || matches!(
            code,
            "5" | "6"
                | "13"
                | "261"
                | "517"
                | "53100"
                | "55P03"
                | "53300"
                | "57P01"
                | "57P02"
                | "57P03"
                | "40001"
                | "40P01"
        )
        || code.starts_with("08")
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One page of a Platform-style (page/per_page) listing.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total_count: i64,
}

/// Everything wagate persists. Implementations must behave identically; `tests/api/store.rs`
/// runs the same conformance suite against both.
#[async_trait]
pub trait Store:
    Outbox
    + Onboarding
    + Provisioning
    + MetaState
    + Broadcasts
    + Pacing
    + SealedValues
    + MediaFiles
    + Webhooks
    + WebhookSweeps
    + Send
    + Sync
    + 'static
{
    fn backend(&self) -> Backend;
    /// Cheap round trip for readiness checks.
    async fn ping(&self) -> StoreResult<()>;
    /// Runs until `changes` is closed, sending what other writers changed in cached rows
    /// (numbers, API keys): pushed at commit on PostgreSQL, polled every `poll` on SQLite.
    async fn watch_cache_changes(
        &self,
        changes: tokio::sync::mpsc::Sender<CacheChange>,
        poll: std::time::Duration,
    );
    /// Closes the pool; every later call fails with [`StoreError::Unavailable`].
    async fn close(&self);
    /// The whole-table reads tests use (see [`StoreInspect`]).
    fn inspect(&self) -> &dyn StoreInspect;

    // Projects and API keys.
    async fn create_project(&self, name: &str) -> StoreResult<Project>;
    async fn get_project(&self, id: Uuid) -> StoreResult<Project>;
    async fn count_projects(&self) -> StoreResult<i64>;
    /// Numbers of every project whose `kind` is not `kind` (`serve --sandbox` refuses a database
    /// holding any but its own).
    async fn count_phone_numbers_not_of_kind(&self, kind: &str) -> StoreResult<i64>;
    /// Creates a project only if there is none yet, atomically across instances.
    async fn create_first_project(&self, name: &str) -> StoreResult<Option<Project>>;
    async fn create_api_key(&self, key: NewApiKey) -> StoreResult<ApiKeyRecord>;
    async fn list_api_keys(&self, project_id: Uuid) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Marks a key revoked; returns the key as it now stands.
    async fn revoke_api_key(&self, id: Uuid) -> StoreResult<ApiKeyRecord>;
    async fn find_api_key_by_hash(&self, key_sha256: &str) -> StoreResult<Option<ApiKeyRecord>>;
    /// Display prefixes of the unrevoked keys issued before keyed checksums (migration 0011).
    async fn live_legacy_api_key_prefixes(&self) -> StoreResult<Vec<String>>;

    // Customers.
    async fn create_customer(&self, customer: NewCustomer) -> StoreResult<Customer>;
    async fn get_customer(&self, project_id: Uuid, id: Uuid) -> StoreResult<Customer>;

    // Phone numbers (WhatsApp configurations).
    async fn insert_phone_number(&self, number: NewPhoneNumber) -> StoreResult<PhoneNumber>;
    /// A number by Meta's phone number ID, in any project (webhook routing, auth cache fill).
    async fn find_phone_number(&self, phone_number_id: &str) -> StoreResult<Option<PhoneNumber>>;
    async fn find_phone_numbers_by_waba(
        &self,
        project_id: Uuid,
        business_account_id: &str,
    ) -> StoreResult<Vec<PhoneNumber>>;
    async fn find_phone_number_by_internal_id(
        &self,
        internal_id: Uuid,
    ) -> StoreResult<Option<PhoneNumber>>;
    /// Numbers of a WABA in any project (routing WABA-level webhooks).
    async fn find_phone_numbers_by_waba_any(
        &self,
        business_account_id: &str,
    ) -> StoreResult<Vec<PhoneNumber>>;
    async fn find_phone_numbers_by_token_hash(
        &self,
        access_token_sha256: &str,
    ) -> StoreResult<Vec<PhoneNumber>>;
    async fn list_phone_numbers(
        &self,
        project_id: Uuid,
        customer_id: Option<Uuid>,
        page: u32,
        per_page: u32,
    ) -> StoreResult<Page<PhoneNumber>>;
    /// Applies the patch to a number of `project_id`; [`StoreError::NotFound`] otherwise.
    async fn update_phone_number(
        &self,
        project_id: Uuid,
        phone_number_id: &str,
        patch: PhoneNumberPatch,
    ) -> StoreResult<PhoneNumber>;
    /// Deletes a number with its stored data; answers the SHA-256 of media files no other
    /// message uses any more (the caller removes them from the media store).
    async fn delete_phone_number(
        &self,
        project_id: Uuid,
        phone_number_id: &str,
    ) -> StoreResult<Vec<String>>;

    // Stored data.
    /// A write transaction (on SQLite `BEGIN IMMEDIATE`, so read-then-write never deadlocks).
    async fn begin(&self) -> StoreResult<Box<dyn StoreTx>>;
    /// Ends active conversations idle since before `cutoff`; returns how many ended.
    async fn end_idle_conversations(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<u64>;
    /// Drops statuses parked before `cutoff` whose message never arrived (sent outside wagate).
    async fn delete_parked_statuses_before(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<u64>;
    async fn find_message(&self, number: Uuid, wamid: &str) -> StoreResult<Option<MessageRow>>;
    /// Newest raw webhook events, optionally of one state (`invalid_json`, `unrouted`, …).
    async fn webhook_events(
        &self,
        state: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<WebhookEventRow>>;
    // Keyset lists (at most `limit` rows; `Seek::Before` pages come back oldest first).
    async fn list_messages(
        &self,
        number: Uuid,
        filter: &MessageFilter,
        seek: Seek,
        limit: u32,
    ) -> StoreResult<Vec<MessageRow>>;
    async fn list_conversations(
        &self,
        number: Uuid,
        filter: &ConversationFilter,
        seek: Seek,
        limit: u32,
    ) -> StoreResult<Vec<ConversationRow>>;
    async fn list_contacts(
        &self,
        number: Uuid,
        filter: &ContactFilter,
        seek: Seek,
        limit: u32,
    ) -> StoreResult<Vec<ContactRow>>;
    async fn list_calls(
        &self,
        number: Uuid,
        filter: &CallFilter,
        seek: Seek,
        limit: u32,
    ) -> StoreResult<Vec<CallRow>>;
    async fn find_conversation(&self, id: Uuid) -> StoreResult<Option<ConversationRow>>;
    async fn contacts_by_ids(&self, ids: &[Uuid]) -> StoreResult<Vec<ContactRow>>;
    async fn find_call(&self, number: Uuid, call_id: &str) -> StoreResult<Option<CallRow>>;
    /// Sets a conversation's status; ending stamps `ended_at`.
    async fn set_conversation_status(
        &self,
        id: Uuid,
        status: ConversationStatus,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<()>;
    /// Writes back a contact's editable fields.
    async fn save_contact(&self, contact: &ContactRow) -> StoreResult<()>;
}

pub type DynStore = Arc<dyn Store>;

/// Opens (creating when needed) and migrates the database the config names.
pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<DynStore> {
    Ok(match config.backend()? {
        Backend::Sqlite => Arc::new(SqliteStore::connect(config).await?),
        Backend::Postgres => Arc::new(PgStore::connect(config).await?),
    })
}
