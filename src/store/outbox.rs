//! The webhook-delivery outbox: rows written in the ingest transaction (`StoreTx::queue_delivery`),
//! claimed by delivery workers in one short statement, finished in batches, and listed for the
//! Platform API. Shared SQL for both backends, like `common.rs`; the claim differs only by
//! PostgreSQL's `for update skip locked`, so several instances never claim the same row.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::lists::{Arg, Seek, Sql};
use super::StoreResult;

/// A delivery to create (at ingest, by a replay).
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: Uuid,
    pub project_id: Uuid,
    /// `None` for project events (a deleted number's event outlives it).
    pub phone_number_internal_id: Option<Uuid>,
    pub phone_number_id: String,
    /// The stored Meta webhook this delivery carries (or was caused by), if any.
    pub event_id: Option<Uuid>,
    /// A `meta` delivery's payload lives on its route.
    pub route_id: Option<Uuid>,
    pub fields: String,
    pub idempotency_key: String,
    pub message_wamids: String,
    pub replay_of: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub webhook_id: Uuid,
    /// The Kapso event name (`X-Webhook-Event`); `None` for Meta's payload.
    pub event_type: Option<String>,
    /// The exact body of a Kapso event, rendered once when queued.
    pub payload: Option<Vec<u8>>,
    /// Events in a buffered batch (1 otherwise).
    pub batch_size: i32,
    /// `pending`, or `paused` when its webhook is paused (held until resumed).
    pub status: super::DeliveryStatus,
}

pub(crate) const DELIVERY_COLUMNS: &str = "id, project_id, phone_number_internal_id, \
    phone_number_id, event_id, route_id, fields, idempotency_key, message_wamids, status, \
    attempts, \
    next_attempt_at, lease_token, last_status_code, last_error, replay_of, created_at, updated_at, \
    delivered_at, webhook_id, event_type, batch_size";

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub phone_number_internal_id: Option<Uuid>,
    pub phone_number_id: String,
    pub event_id: Option<Uuid>,
    pub route_id: Option<Uuid>,
    pub fields: String,
    pub idempotency_key: String,
    pub message_wamids: String,
    pub status: super::DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub lease_token: Option<Uuid>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub replay_of: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub webhook_id: Option<Uuid>,
    pub event_type: Option<String>,
    pub batch_size: i32,
}

impl DeliveryRow {
    pub fn wamids(&self) -> impl Iterator<Item = &str> {
        self.message_wamids.split_whitespace()
    }
}

/// A claimed delivery with the bytes to send.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub row: DeliveryRow,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AttemptRow {
    pub id: Uuid,
    pub delivery_id: Uuid,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub destination: String,
    pub status_code: Option<i32>,
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
}

/// What became of a claimed delivery.
#[derive(Debug, Clone)]
pub struct DeliveryOutcome {
    pub delivery_id: Uuid,
    /// The claim's token: a worker whose lease ran out (and whose row was claimed again) records
    /// its attempt but does not overwrite the newer claim's state.
    pub lease_token: Uuid,
    /// `None` when the delivery was put back without an attempt (destination busy).
    pub attempt: Option<AttemptRow>,
    pub status: super::DeliveryStatus,
    pub next_attempt_at: DateTime<Utc>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// Set on the delivered messages (`completed`, or `failed` when dead-lettered).
    pub processing_status: Option<super::ProcessingStatus>,
    pub phone_number_internal_id: Option<Uuid>,
    pub message_wamids: String,
    pub at: DateTime<Utc>,
    /// The webhook, and what this pass means for its run of failures.
    pub webhook_id: Option<Uuid>,
    pub webhook_result: WebhookResult,
}

/// What one pass tells about a webhook's health (automatic pausing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookResult {
    /// No attempt was made (busy destination, database away, webhook paused).
    Untried,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub phone_number_internal_id: Option<Uuid>,
    pub status: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// The outbox half of the store (a supertrait of [`super::Store`]).
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Claims up to `limit` due deliveries for `lease`: their `next_attempt_at` moves to
    /// `now + lease` under a new token, so a crashed worker's rows come due again by themselves.
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Records attempts and moves deliveries (and their messages' processing status) in one
    /// transaction, with each webhook's run of failures; a run reaching `pause_after` (0: never)
    /// pauses the webhook.
    async fn finish_deliveries(
        &self,
        outcomes: &[DeliveryOutcome],
        pause_after: u32,
    ) -> StoreResult<()>;
    async fn find_delivery(&self, project_id: Uuid, id: Uuid) -> StoreResult<Option<DeliveryRow>>;
    async fn delivery_attempts(&self, delivery_id: Uuid) -> StoreResult<Vec<AttemptRow>>;
    async fn list_deliveries(
        &self,
        project_id: Uuid,
        filter: &DeliveryFilter,
        seek: Seek,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRow>>;
    /// Makes a delivery of `project_id` due now (whatever its state; one with an attempt in
    /// flight is left to that attempt); its messages go back to `pending`. Returns the row as it
    /// now stands.
    async fn retry_delivery(
        &self,
        project_id: Uuid,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<DeliveryRow>>;
    /// A number's stored event routes received in `[since, until]`, oldest first (replays).
    async fn event_routes_between(
        &self,
        number: &super::PhoneNumber,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<super::EventRouteRow>>;
    /// Queues deliveries outside ingest (replays) in one transaction.
    async fn queue_deliveries(&self, deliveries: &[NewDelivery]) -> StoreResult<()>;
    /// Counts of due deliveries and the age of the oldest due one (metrics).
    async fn outbox_depth(&self, now: DateTime<Utc>) -> StoreResult<(i64, Option<DateTime<Utc>>)>;
    /// Waits for deliveries queued by other instances (PostgreSQL LISTEN) and calls `wake` for
    /// each notification; returns at once where there is nothing to listen to (SQLite: every
    /// writer is in this process).
    async fn listen_for_deliveries(&self, wake: std::sync::Arc<tokio::sync::Notify>);
}

/// The channel `NOTIFY` uses when a transaction queued deliveries.
pub const DELIVERY_CHANNEL: &str = "wagate_deliveries";

pub(crate) fn delivery_sql(
    project_id: Uuid,
    filter: &DeliveryFilter,
    seek: Seek,
    limit: u32,
) -> Sql {
    let mut sql = Sql::new(&format!(
        "select {DELIVERY_COLUMNS} from webhook_deliveries where"
    ));
    sql.push(" project_id = ?", [Arg::Uuid(project_id)]);
    if let Some(v) = filter.phone_number_internal_id {
        sql.push(" and phone_number_internal_id = ?", [Arg::Uuid(v)]);
    }
    if let Some(v) = &filter.status {
        sql.push(" and status = ?", [Arg::Text(v.clone())]);
    }
    if let Some(v) = filter.since {
        sql.push(" and created_at >= ?", [Arg::Time(v)]);
    }
    if let Some(v) = filter.until {
        sql.push(" and created_at <= ?", [Arg::Time(v)]);
    }
    sql.page("created_at", "id", seek, limit);
    sql
}

/// Implements [`Outbox`] for a store type with a `pool` field, over its `Dialect`.
macro_rules! impl_outbox {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::Outbox for $store {
            async fn claim_deliveries(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                lease: std::time::Duration,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::store::ClaimedDelivery>> {
                use $crate::store::outbox::DELIVERY_COLUMNS;
                let until = now
                    + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60));
                let token = uuid::Uuid::now_v7();
                // One statement: on SQLite the single writer makes it atomic; on PostgreSQL
                // `skip locked` lets concurrent claimers take different rows.
                let sql = format!(
                    "update webhook_deliveries set next_attempt_at = $1, lease_token = \
                             $2, updated_at = $3 \
                             where id in (select id from webhook_deliveries \
                             where status in ('pending', 'failed') and next_attempt_at <= $3 \
                             order by next_attempt_at, id limit $4{}) returning {DELIVERY_COLUMNS}",
                    <Self as $crate::store::dialect::Dialect>::SKIP_LOCKED
                );
                let rows: Vec<$crate::store::DeliveryRow> = sqlx::query_as(&sql)
                    .bind(until)
                    .bind(token)
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                if rows.is_empty() {
                    return Ok(Vec::new());
                }
                let placeholders = (1..=rows.len())
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                // A Kapso event's body is on the delivery; Meta's payload on its route.
                let sql = format!(
                    "select d.id, coalesce(d.payload, r.payload) from webhook_deliveries d \
                     left join webhook_event_routes r on r.id = d.route_id \
                     where d.id in ({placeholders})"
                );
                let mut query = sqlx::query_as::<_, (uuid::Uuid, Option<Vec<u8>>)>(&sql);
                for row in &rows {
                    query = query.bind(row.id);
                }
                let payloads: std::collections::HashMap<uuid::Uuid, Option<Vec<u8>>> =
                    query.fetch_all(&self.pool).await?.into_iter().collect();
                let mut claimed: Vec<_> = rows
                    .into_iter()
                    .filter_map(|row| {
                        let stored = payloads.get(&row.id)?.clone()?;
                        match $crate::store::packed::unpack(stored) {
                            Ok(payload) => Some($crate::store::ClaimedDelivery { row, payload }),
                            // Skipped, not the whole claim: one damaged row must not hold up
                            // every other delivery.
                            Err(error) => {
                                tracing::error!(delivery_id = %row.id, %error, "skipping a delivery");
                                None
                            }
                        }
                    })
                    .collect();
                claimed.sort_by(|a, b| {
                    (a.row.created_at, a.row.id).cmp(&(b.row.created_at, b.row.id))
                });
                Ok(claimed)
            }

            async fn finish_deliveries(
                &self,
                outcomes: &[$crate::store::DeliveryOutcome],
                pause_after: u32,
            ) -> $crate::store::StoreResult<()> {
                Self::finish_batch(&self.pool, outcomes, pause_after).await
            }

            async fn find_delivery(
                &self,
                project_id: uuid::Uuid,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::DeliveryRow>> {
                let sql = format!(
                    "select {} from webhook_deliveries where project_id = $1 and id = $2",
                    $crate::store::outbox::DELIVERY_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(project_id)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn delivery_attempts(
                &self,
                delivery_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::AttemptRow>> {
                Ok(sqlx::query_as(
                    "select id, delivery_id, attempt, started_at, duration_ms, \
                             destination, status_code, \
                             response_excerpt, error from webhook_delivery_attempts where \
                             delivery_id = $1 \
                             order by attempt, started_at, id",
                )
                .bind(delivery_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn list_deliveries(
                &self,
                project_id: uuid::Uuid,
                filter: &$crate::store::DeliveryFilter,
                seek: $crate::store::Seek,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::store::DeliveryRow>> {
                let sql = $crate::store::outbox::delivery_sql(project_id, filter, seek, limit);
                let query =
                    $crate::store::lists::bind_args!(sqlx::query_as(&sql.text), &sql.args);
                Ok(query.fetch_all(&self.pool).await?)
            }

            async fn retry_delivery(
                &self,
                project_id: uuid::Uuid,
                id: uuid::Uuid,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<$crate::store::DeliveryRow>> {
                let mut tx = self.pool.begin().await?;
                // A row under a live lease has an attempt in flight: it is left to that attempt
                // (whose outcome would otherwise be dropped while a second POST went out).
                let sql = format!(
                    "update webhook_deliveries set status = case when status = \
                             'succeeded' or status = 'dead' \
                             then 'pending' else status end, \
                             next_attempt_at = case when lease_token is not null and \
                             next_attempt_at > $3 \
                             then next_attempt_at else $3 end, \
                             lease_token = case when lease_token is not null and next_attempt_at \
                             > $3 \
                             then lease_token else null end, updated_at = $3 \
                             where project_id = $1 and id = $2 returning {}",
                    $crate::store::outbox::DELIVERY_COLUMNS
                );
                let row: Option<$crate::store::DeliveryRow> = sqlx::query_as(&sql)
                    .bind(project_id)
                    .bind(id)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(row) = &row {
                    for wamid in row.wamids() {
                        sqlx::query(
                            "update messages set processing_status = 'pending', \
                                     updated_at = $3 \
                                     where phone_number_internal_id = $1 and wamid = $2 and \
                                     direction = 'inbound'",
                        )
                        .bind(row.phone_number_internal_id)
                        .bind(wamid)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    if let Some(sql) = <Self as $crate::store::dialect::Dialect>::NOTIFY {
                        sqlx::query(sql).execute(&mut *tx).await?;
                    }
                }
                tx.commit().await?;
                Ok(row)
            }

            async fn event_routes_between(
                &self,
                number: &$crate::store::PhoneNumber,
                since: chrono::DateTime<chrono::Utc>,
                until: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::store::EventRouteRow>> {
                Ok(sqlx::query_as(
                    "select id, event_id, project_id, phone_number_id, fields, payload, \
                             created_at \
                             from webhook_event_routes where phone_number_id = $1 and project_id \
                             = $2 \
                             and created_at >= $3 and created_at <= $4 order by created_at, id \
                             limit $5",
                )
                .bind(&number.phone_number_id)
                .bind(number.project_id)
                .bind(since)
                .bind(until)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn queue_deliveries(
                &self,
                deliveries: &[$crate::store::NewDelivery],
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                for delivery in deliveries {
                    $crate::store::outbox::insert_delivery!(&mut *tx, delivery);
                }
                if !deliveries.is_empty() {
                    if let Some(sql) = <Self as $crate::store::dialect::Dialect>::NOTIFY {
                        sqlx::query(sql).execute(&mut *tx).await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn outbox_depth(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<(i64, Option<chrono::DateTime<chrono::Utc>>)> {
                let (count,): (i64,) = sqlx::query_as(
                    "select count(*) from webhook_deliveries where status in ('pending', \
                             'failed') \
                             and next_attempt_at <= $1",
                )
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
                let oldest: Option<(chrono::DateTime<chrono::Utc>,)> = sqlx::query_as(
                    "select next_attempt_at from webhook_deliveries where status in \
                             ('pending', 'failed') \
                             and next_attempt_at <= $1 order by next_attempt_at, id limit 1",
                )
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                Ok((count, oldest.map(|(t,)| t)))
            }

            async fn listen_for_deliveries(&self, wake: std::sync::Arc<tokio::sync::Notify>) {
                <Self as $crate::store::dialect::Dialect>::listen(&self.pool, wake).await
            }
        }
    };
}

pub(crate) use impl_outbox;

/// Inserts one delivery row on an executor (`&mut *tx`), expanded per backend.
macro_rules! insert_delivery {
    ($executor:expr, $d:expr) => {{
        let d: &$crate::store::NewDelivery = $d;
        sqlx::query(
            "insert into webhook_deliveries (id, project_id, phone_number_internal_id, \
             phone_number_id, \
             event_id, route_id, fields, idempotency_key, message_wamids, status, attempts, \
             next_attempt_at, replay_of, created_at, updated_at, webhook_id, event_type, payload, \
             batch_size) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $12, 0, $10, $11, $10, $10, $13, $14, \
             $15, $16)",
        )
        .bind(d.id)
        .bind(d.project_id)
        .bind(d.phone_number_internal_id)
        .bind(&d.phone_number_id)
        .bind(d.event_id)
        .bind(d.route_id)
        .bind(&d.fields)
        .bind(&d.idempotency_key)
        .bind(&d.message_wamids)
        .bind(d.created_at)
        .bind(d.replay_of)
        .bind(d.status)
        .bind(d.webhook_id)
        .bind(&d.event_type)
        .bind($crate::store::packed::at_rest(
            <Self as $crate::store::dialect::Dialect>::PACK_PAYLOADS,
            d.payload.as_deref(),
        ))
        .bind(d.batch_size)
        .execute($executor)
        .await?;
    }};
}

pub(crate) use insert_delivery;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_sql_is_a_keyset_range_on_the_project_index() {
        let filter = DeliveryFilter {
            status: Some("dead".into()),
            ..Default::default()
        };
        let sql = delivery_sql(
            Uuid::nil(),
            &filter,
            Seek::After(Utc::now(), Uuid::nil()),
            21,
        );
        assert!(
            sql.text.contains("project_id = $1 and status = $2"),
            "{}",
            sql.text
        );
        assert!(sql
            .text
            .contains("(created_at, id) < ($3, $4) order by created_at desc, id desc limit $5"));
    }
}
