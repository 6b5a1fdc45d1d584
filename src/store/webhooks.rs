//! Webhook resources (`webhooks`, migration 0013): where a number's or a project's events go.
//!
//! Two kinds share the table. `kapso` webhooks receive Kapso-format events (filtered, optionally
//! buffered, signed with their own sealed `secret_key`). A `meta` webhook is a number's
//! `webhook_destination_url` seen as a resource: at most one per number, its id is the number's
//! internal id, and it signs with the number's webhook secret. The store keeps the two in step
//! inside each writing transaction (writing `phone_numbers.webhook_destination_url` upserts or
//! deletes the `meta` row; writing a `meta` row sets or clears the column), so either API shows
//! the other's change and no reader ever sees them disagree.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::lists::Seek;
use super::StoreResult;

pub(crate) const WEBHOOK_COLUMNS: &str = "id, project_id, phone_number_internal_id, kind, url, \
    events, active, paused_reason, paused_at, consecutive_failures, secret_sealed, secret_key_id, \
    headers, buffer_enabled, buffer_window_seconds, max_buffer_size, buffer_events, \
    inactivity_minutes, payload_version, created_at, updated_at";

/// One webhook as stored. JSON-valued columns (`events`, `headers`, `buffer_events`) hold text
/// the domain wrote and validated.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WebhookRow {
    pub id: Uuid,
    pub project_id: Uuid,
    /// `None`: a project webhook (connection events).
    pub phone_number_internal_id: Option<Uuid>,
    /// `kapso` or `meta`.
    pub kind: String,
    pub url: String,
    /// JSON array of event names.
    pub events: String,
    pub active: bool,
    /// Why wagate paused it (a run of failed deliveries); `None` when active or paused by hand.
    pub paused_reason: Option<String>,
    pub paused_at: Option<DateTime<Utc>>,
    pub consecutive_failures: i32,
    /// The sealed `secret_key` (`SealedField::WebhookKey`); `None` for `meta` webhooks.
    pub secret_sealed: Option<Vec<u8>>,
    pub secret_key_id: Option<String>,
    /// JSON object of custom headers.
    pub headers: String,
    pub buffer_enabled: bool,
    pub buffer_window_seconds: Option<i32>,
    pub max_buffer_size: Option<i32>,
    /// JSON array of event names.
    pub buffer_events: String,
    pub inactivity_minutes: Option<i32>,
    pub payload_version: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl WebhookRow {
    /// A new webhook with every optional setting at its default (the caller sets the rest).
    pub fn new(
        id: Uuid,
        project_id: Uuid,
        phone_number_internal_id: Option<Uuid>,
        kind: &str,
        url: String,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            project_id,
            phone_number_internal_id,
            kind: kind.to_owned(),
            url,
            events: "[]".into(),
            active: true,
            paused_reason: None,
            paused_at: None,
            consecutive_failures: 0,
            secret_sealed: None,
            secret_key_id: None,
            headers: "{}".into(),
            buffer_enabled: false,
            buffer_window_seconds: None,
            max_buffer_size: None,
            buffer_events: "[]".into(),
            inactivity_minutes: None,
            payload_version: "v2".into(),
            created_at: now,
            updated_at: now,
        }
    }

    pub fn is_meta(&self) -> bool {
        self.kind == "meta"
    }
}

/// Which webhooks a list is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookScope {
    /// The project's own webhooks (no number).
    Project,
    /// One number's webhooks (both kinds).
    Number(Uuid),
}

/// The webhook half of the store (a supertrait of [`super::Store`]).
#[async_trait]
pub trait Webhooks: Send + Sync {
    /// Inserts a webhook. A `meta` webhook also sets its number's `webhook_destination_url` in
    /// the same transaction; a second `meta` webhook for a number is `Conflict`.
    async fn create_webhook(&self, webhook: &WebhookRow) -> StoreResult<WebhookRow>;
    /// The webhooks of a scope, newest first, keyset-paged on (created_at, id).
    async fn list_webhooks(
        &self,
        project_id: Uuid,
        scope: WebhookScope,
        seek: Seek,
        limit: u32,
    ) -> StoreResult<Vec<WebhookRow>>;
    /// A webhook of `project_id` (another project's is `None`, like an unknown id).
    async fn get_webhook(&self, project_id: Uuid, id: Uuid) -> StoreResult<Option<WebhookRow>>;
    /// Replaces a webhook's writable columns with `webhook`'s (the domain applied the patch to
    /// the row it read). A `meta` webhook's URL goes to its number in the same transaction. When
    /// the webhook becomes active again, its held (`paused`) deliveries become due now.
    async fn update_webhook(&self, webhook: &WebhookRow) -> StoreResult<WebhookRow>;
    /// Deletes a webhook of `project_id`; a `meta` one clears its number's
    /// `webhook_destination_url`. `NotFound` when it is not there.
    async fn delete_webhook(&self, project_id: Uuid, id: Uuid) -> StoreResult<()>;
    /// Every webhook of a number (both kinds), for the number directory.
    async fn webhooks_of_number(
        &self,
        phone_number_internal_id: Uuid,
    ) -> StoreResult<Vec<WebhookRow>>;
    /// A webhook by id, whatever its project (the delivery worker).
    async fn find_webhook(&self, id: Uuid) -> StoreResult<Option<WebhookRow>>;
}

pub(crate) fn list_sql(
    project_id: Uuid,
    scope: WebhookScope,
    seek: Seek,
    limit: u32,
) -> super::lists::Sql {
    use super::lists::{Arg, Sql};
    let mut sql = Sql::new(&format!("select {WEBHOOK_COLUMNS} from webhooks where"));
    sql.push(" project_id = ?", [Arg::Uuid(project_id)]);
    match scope {
        WebhookScope::Project => sql.push(" and phone_number_internal_id is null", []),
        WebhookScope::Number(number) => {
            sql.push(" and phone_number_internal_id = ?", [Arg::Uuid(number)])
        }
    }
    sql.page("created_at", "id", seek, limit);
    sql
}

/// Sets (or clears) a number's `webhook_destination_url` from its `meta` webhook, inside `$tx`.
macro_rules! sync_number_url {
    ($tx:expr, $number:expr, $url:expr, $now:expr) => {{
        sqlx::query(
            "update phone_numbers set webhook_destination_url = $2, updated_at = $3 \
             where internal_id = $1",
        )
        .bind($number)
        .bind($url)
        .bind($now)
        .execute(&mut *$tx)
        .await?;
    }};
}

/// Makes a number's `meta` webhook match its `webhook_destination_url`, inside `$tx`: upserted
/// while there is a URL, deleted when there is none. Called by every phone-number write.
macro_rules! sync_meta_webhook {
    ($tx:expr, $number:expr) => {{
        let n: &$crate::store::PhoneNumber = $number;
        match &n.webhook_destination_url {
            Some(url) => {
                sqlx::query(
                    "insert into webhooks (id, project_id, phone_number_internal_id, kind, url, \
                     created_at, updated_at) values ($1, $2, $1, 'meta', $3, $4, $4) \
                     on conflict (id) do update set url = excluded.url, \
                     updated_at = excluded.updated_at where webhooks.url <> excluded.url",
                )
                .bind(n.internal_id)
                .bind(n.project_id)
                .bind(url)
                .bind(n.updated_at)
                .execute(&mut *$tx)
                .await?;
            }
            None => {
                sqlx::query("delete from webhooks where id = $1 and kind = 'meta'")
                    .bind(n.internal_id)
                    .execute(&mut *$tx)
                    .await?;
            }
        }
    }};
}

pub(crate) use sync_meta_webhook;
pub(crate) use sync_number_url;

/// Implements [`Webhooks`] for a store type with a `pool` field.
macro_rules! impl_webhooks {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::webhooks::Webhooks for $store {
            async fn create_webhook(
                &self,
                w: &$crate::store::WebhookRow,
            ) -> $crate::store::StoreResult<$crate::store::WebhookRow> {
                use $crate::store::webhooks::WEBHOOK_COLUMNS;
                let mut tx = self
                    .pool
                    .begin_with(<Self as $crate::store::dialect::Dialect>::BEGIN_WRITE)
                    .await?;
                let sql = format!(
                    "insert into webhooks ({WEBHOOK_COLUMNS}) values ($1, $2, $3, $4, $5, $6, \
                     $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) \
                     returning {WEBHOOK_COLUMNS}"
                );
                let row: $crate::store::WebhookRow =
                    $crate::store::webhooks::bind_webhook!(sqlx::query_as(&sql), w)
                        .fetch_one(&mut *tx)
                        .await?;
                if let (true, Some(number)) = (row.is_meta(), row.phone_number_internal_id) {
                    $crate::store::webhooks::sync_number_url!(
                        tx,
                        number,
                        Some(&row.url),
                        row.updated_at
                    );
                }
                tx.commit().await?;
                Ok(row)
            }

            async fn list_webhooks(
                &self,
                project_id: uuid::Uuid,
                scope: $crate::store::WebhookScope,
                seek: $crate::store::Seek,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::store::WebhookRow>> {
                let sql = $crate::store::webhooks::list_sql(project_id, scope, seek, limit);
                let query = $crate::store::lists::bind_args!(sqlx::query_as(&sql.text), &sql.args);
                Ok(query.fetch_all(&self.pool).await?)
            }

            async fn get_webhook(
                &self,
                project_id: uuid::Uuid,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::WebhookRow>> {
                let sql = format!(
                    "select {} from webhooks where project_id = $1 and id = $2",
                    $crate::store::webhooks::WEBHOOK_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(project_id)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn update_webhook(
                &self,
                w: &$crate::store::WebhookRow,
            ) -> $crate::store::StoreResult<$crate::store::WebhookRow> {
                use $crate::store::webhooks::WEBHOOK_COLUMNS;
                let mut tx = self
                    .pool
                    .begin_with(<Self as $crate::store::dialect::Dialect>::BEGIN_WRITE)
                    .await?;
                let sql = format!(
                    "update webhooks set url = $3, events = $4, active = $5, \
                     paused_reason = $6, paused_at = $7, consecutive_failures = $8, \
                     secret_sealed = $9, secret_key_id = $10, headers = $11, \
                     buffer_enabled = $12, buffer_window_seconds = $13, max_buffer_size = $14, \
                     buffer_events = $15, inactivity_minutes = $16, payload_version = $17, \
                     updated_at = $18 where project_id = $1 and id = $2 \
                     returning {WEBHOOK_COLUMNS}"
                );
                let row: Option<$crate::store::WebhookRow> = sqlx::query_as(&sql)
                    .bind(w.project_id)
                    .bind(w.id)
                    .bind(&w.url)
                    .bind(&w.events)
                    .bind(w.active)
                    .bind(&w.paused_reason)
                    .bind(w.paused_at)
                    .bind(w.consecutive_failures)
                    .bind(&w.secret_sealed)
                    .bind(&w.secret_key_id)
                    .bind(&w.headers)
                    .bind(w.buffer_enabled)
                    .bind(w.buffer_window_seconds)
                    .bind(w.max_buffer_size)
                    .bind(&w.buffer_events)
                    .bind(w.inactivity_minutes)
                    .bind(&w.payload_version)
                    .bind(w.updated_at)
                    .fetch_optional(&mut *tx)
                    .await?;
                let row = row.ok_or($crate::store::StoreError::NotFound)?;
                if let (true, Some(number)) = (row.is_meta(), row.phone_number_internal_id) {
                    $crate::store::webhooks::sync_number_url!(
                        tx,
                        number,
                        Some(&row.url),
                        row.updated_at
                    );
                }
                if row.active {
                    // Deliveries held while it was paused go out now.
                    sqlx::query(
                        "update webhook_deliveries set status = 'pending', next_attempt_at = $2, \
                         updated_at = $2 where webhook_id = $1 and status = 'paused'",
                    )
                    .bind(row.id)
                    .bind(row.updated_at)
                    .execute(&mut *tx)
                    .await?;
                    if let Some(sql) = <Self as $crate::store::dialect::Dialect>::NOTIFY {
                        sqlx::query(sql).execute(&mut *tx).await?;
                    }
                }
                tx.commit().await?;
                Ok(row)
            }

            async fn delete_webhook(
                &self,
                project_id: uuid::Uuid,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self
                    .pool
                    .begin_with(<Self as $crate::store::dialect::Dialect>::BEGIN_WRITE)
                    .await?;
                let deleted: Option<(Option<uuid::Uuid>, String)> = sqlx::query_as(
                    "delete from webhooks where project_id = $1 and id = $2 \
                     returning phone_number_internal_id, kind",
                )
                .bind(project_id)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((number, kind)) = deleted else {
                    return Err($crate::store::StoreError::NotFound);
                };
                if let (true, Some(number)) = (kind == "meta", number) {
                    $crate::store::webhooks::sync_number_url!(
                        tx,
                        number,
                        None::<String>,
                        $crate::store::now()
                    );
                }
                tx.commit().await?;
                Ok(())
            }

            async fn webhooks_of_number(
                &self,
                number: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::WebhookRow>> {
                let sql = format!(
                    "select {} from webhooks where phone_number_internal_id = $1 \
                     order by created_at, id",
                    $crate::store::webhooks::WEBHOOK_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(number)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn find_webhook(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::WebhookRow>> {
                let sql = format!(
                    "select {} from webhooks where id = $1",
                    $crate::store::webhooks::WEBHOOK_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }
        }
    };
}

pub(crate) use impl_webhooks;

/// Binds every column of `WEBHOOK_COLUMNS`, in order.
macro_rules! bind_webhook {
    ($query:expr, $w:expr) => {{
        let w: &$crate::store::WebhookRow = $w;
        $query
            .bind(w.id)
            .bind(w.project_id)
            .bind(w.phone_number_internal_id)
            .bind(&w.kind)
            .bind(&w.url)
            .bind(&w.events)
            .bind(w.active)
            .bind(&w.paused_reason)
            .bind(w.paused_at)
            .bind(w.consecutive_failures)
            .bind(&w.secret_sealed)
            .bind(&w.secret_key_id)
            .bind(&w.headers)
            .bind(w.buffer_enabled)
            .bind(w.buffer_window_seconds)
            .bind(w.max_buffer_size)
            .bind(&w.buffer_events)
            .bind(w.inactivity_minutes)
            .bind(&w.payload_version)
            .bind(w.created_at)
            .bind(w.updated_at)
    }};
}

pub(crate) use bind_webhook;
