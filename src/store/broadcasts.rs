//! Queued sends (migration 0016): broadcasts and their recipients. Shared SQL for both backends,
//! like `common.rs`.
//!
//! A recipient moves `pending` → `sending` (claimed under a lease token, in one statement that
//! skips rows other instances hold) → `sent` or `failed`, or back to `pending` with a later
//! `next_attempt_at` for a retry. `in_doubt_since` is set by the claim, before any request can
//! leave, and cleared only by an outcome Meta answered: a row claimed again while it is still set
//! may have reached Meta already (see ARCHITECTURE.md, "Queued sends are sent once").

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreResult;

pub(crate) const BROADCAST_COLUMNS: &str = "id, project_id, phone_number_internal_id, \
    phone_number_id, name, \
    template_name, template_language, template_id, status, total_recipients, scheduled_at, \
    started_at, completed_at, stopped_at, created_at, updated_at";

pub(crate) const RECIPIENT_COLUMNS: &str = "id, broadcast_id, position, recipient, body, state, \
    attempts, next_attempt_at, lease_token, claimed_at, in_doubt_since, wamid, error, sent_at, \
    updated_at";

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BroadcastRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub phone_number_internal_id: Uuid,
    pub phone_number_id: String,
    pub name: String,
    pub template_name: Option<String>,
    pub template_language: Option<String>,
    pub template_id: Option<String>,
    /// `draft|scheduled|sending|completed|stopped|failed`.
    pub status: String,
    pub total_recipients: i64,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RecipientRow {
    pub id: Uuid,
    pub broadcast_id: Uuid,
    pub position: i64,
    pub recipient: String,
    /// The Graph send body (JSON text).
    pub body: String,
    /// `pending|sending|sent|failed`.
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub lease_token: Option<Uuid>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub in_doubt_since: Option<DateTime<Utc>>,
    pub wamid: Option<String>,
    /// Meta's error object (JSON text).
    pub error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl RecipientRow {
    /// Whether a request for this recipient may have reached Meta before this claim: the claim
    /// stamps `in_doubt_since` with its own time unless an earlier attempt left it set.
    pub fn was_in_doubt(&self) -> bool {
        matches!((self.in_doubt_since, self.claimed_at), (Some(since), Some(claimed)) if since < claimed)
    }
}

/// A recipient to add: its row id, `to` and whole send body.
#[derive(Debug, Clone)]
pub struct NewRecipient {
    pub id: Uuid,
    pub recipient: String,
    pub body: String,
}

/// What adding recipients did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddedRecipients {
    Added {
        added: u32,
        duplicates: u32,
    },
    /// Recipients can be added only while `draft` or `scheduled`.
    NotEditable {
        status: String,
    },
    /// The broadcast would hold more than the limit.
    TooMany {
        total: i64,
    },
}

/// A lifecycle change asked through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastChange {
    /// `draft|scheduled` → `sending`.
    Send,
    /// `draft` → `scheduled` at the time given.
    Schedule(DateTime<Utc>),
    /// `scheduled` → `draft`.
    Cancel,
    /// `sending` → `stopped`.
    Stop,
}

/// What became of one claimed recipient.
#[derive(Debug, Clone)]
pub struct RecipientOutcome {
    pub id: Uuid,
    pub lease_token: Uuid,
    pub state: &'static str,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub in_doubt_since: Option<DateTime<Utc>>,
    pub wamid: Option<String>,
    pub error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

/// Recipients of a broadcast by state, and how many of the sent were delivered or read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastCounts {
    pub pending: i64,
    pub sending: i64,
    pub sent: i64,
    pub failed: i64,
    pub delivered: i64,
    pub read: i64,
}

/// One number's unsent recipients of sending broadcasts.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BroadcastBacklog {
    pub phone_number_id: String,
    pub recipients: i64,
    pub oldest_due: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait Broadcasts {
    async fn create_broadcast(&self, row: &BroadcastRow) -> StoreResult<()>;
    async fn find_broadcast(&self, project: Uuid, id: Uuid) -> StoreResult<Option<BroadcastRow>>;
    /// Newest first, after `before` (`created_at`, `id`) when given.
    async fn list_broadcasts(
        &self,
        project: Uuid,
        before: Option<(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> StoreResult<Vec<BroadcastRow>>;
    /// Adds recipients in order, skipping those already in the broadcast, atomically.
    async fn add_broadcast_recipients(
        &self,
        broadcast: Uuid,
        recipients: &[NewRecipient],
        max_total: u32,
        now: DateTime<Utc>,
    ) -> StoreResult<AddedRecipients>;
    /// Applies `change` if the broadcast is in a state that allows it; `None` otherwise.
    async fn change_broadcast(
        &self,
        project: Uuid,
        id: Uuid,
        change: BroadcastChange,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<BroadcastRow>>;
    async fn broadcast_counts(&self, broadcast: &BroadcastRow) -> StoreResult<BroadcastCounts>;
    /// In position order, after `after` (a position), optionally of one state.
    async fn list_broadcast_recipients(
        &self,
        broadcast: Uuid,
        after: Option<i64>,
        state: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<RecipientRow>>;
    /// Starts scheduled broadcasts that are due; then the ids and numbers of all sending ones.
    async fn sending_broadcasts(&self, now: DateTime<Utc>) -> StoreResult<Vec<(Uuid, Uuid)>>;
    /// Claims due recipients of one broadcast under a new lease token (recipients whose lease
    /// ran out first go back to `pending`, keeping `in_doubt_since`).
    async fn claim_broadcast_recipients(
        &self,
        broadcast: Uuid,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> StoreResult<Vec<RecipientRow>>;
    /// Records outcomes; one whose lease token is no longer the row's, or whose row is already
    /// `sent` (Meta's status said so), changes nothing.
    async fn finish_broadcast_recipients(&self, outcomes: &[RecipientOutcome]) -> StoreResult<()>;
    /// Ends a sending broadcast with nothing left to send: `completed`, or `failed` when every
    /// recipient failed. `true` when it ended.
    async fn complete_broadcast_if_done(&self, id: Uuid, now: DateTime<Utc>) -> StoreResult<bool>;
    async fn broadcast_backlog(&self) -> StoreResult<Vec<BroadcastBacklog>>;
    /// Meta's id of a broadcast's number.
    async fn find_broadcast_number(&self, id: Uuid) -> StoreResult<Option<String>>;
}

/// What ingest writes inside its transaction.
#[async_trait]
pub trait BroadcastsTx {
    /// Meta's status names a broadcast recipient (`biz_opaque_callback_data`): it was sent, with
    /// `wamid`. Returns its send body when this changed it to `sent`. Only a recipient of a
    /// broadcast from `number` that a worker claimed (`in_doubt_since` set: a request may have
    /// left) is changed, so a proxied send that copies the callback data confirms nothing.
    async fn confirm_broadcast_send(
        &mut self,
        number: Uuid,
        recipient: Uuid,
        wamid: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<String>>;
}

/// Implements [`Broadcasts`] for a store type with a `pool` field.
macro_rules! impl_broadcasts {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::broadcasts::Broadcasts for $store {
            async fn create_broadcast(
                &self,
                b: &$crate::store::broadcasts::BroadcastRow,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(&format!(
                    "insert into broadcasts ({}) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                     $10, $11, $12, $13, $14, $15, $16)",
                    $crate::store::broadcasts::BROADCAST_COLUMNS
                ))
                .bind(b.id)
                .bind(b.project_id)
                .bind(b.phone_number_internal_id)
                .bind(&b.phone_number_id)
                .bind(&b.name)
                .bind(&b.template_name)
                .bind(&b.template_language)
                .bind(&b.template_id)
                .bind(&b.status)
                .bind(b.total_recipients)
                .bind(b.scheduled_at)
                .bind(b.started_at)
                .bind(b.completed_at)
                .bind(b.stopped_at)
                .bind(b.created_at)
                .bind(b.updated_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn find_broadcast(
                &self,
                project: uuid::Uuid,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::broadcasts::BroadcastRow>> {
                Ok(sqlx::query_as(&format!(
                    "select {} from broadcasts where id = $1 and project_id = $2",
                    $crate::store::broadcasts::BROADCAST_COLUMNS
                ))
                .bind(id)
                .bind(project)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn list_broadcasts(
                &self,
                project: uuid::Uuid,
                before: Option<(chrono::DateTime<chrono::Utc>, uuid::Uuid)>,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::store::broadcasts::BroadcastRow>> {
                let columns = $crate::store::broadcasts::BROADCAST_COLUMNS;
                let rows = match before {
                    Some((at, id)) => {
                        sqlx::query_as(&format!(
                            "select {columns} from broadcasts where project_id = $1 and \
                             (created_at < $2 or (created_at = $2 and id < $3)) \
                             order by created_at desc, id desc limit $4"
                        ))
                        .bind(project)
                        .bind(at)
                        .bind(id)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?
                    }
                    None => {
                        sqlx::query_as(&format!(
                            "select {columns} from broadcasts where project_id = $1 \
                             order by created_at desc, id desc limit $2"
                        ))
                        .bind(project)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?
                    }
                };
                Ok(rows)
            }

            async fn add_broadcast_recipients(
                &self,
                broadcast: uuid::Uuid,
                recipients: &[$crate::store::broadcasts::NewRecipient],
                max_total: u32,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::broadcasts::AddedRecipients> {
                use $crate::store::broadcasts::AddedRecipients;
                let mut tx = self
                    .pool
                    .begin_with(<Self as $crate::store::dialect::Dialect>::BEGIN_WRITE)
                    .await?;
                let (status, total): (String, i64) = sqlx::query_as(&format!(
                    "select status, total_recipients from broadcasts where id = $1{}",
                    <Self as $crate::store::dialect::Dialect>::LOCK_ROWS
                ))
                .bind(broadcast)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or($crate::store::StoreError::NotFound)?;
                if status != "draft" && status != "scheduled" {
                    return Ok(AddedRecipients::NotEditable { status });
                }
                if total + recipients.len() as i64 > i64::from(max_total) {
                    return Ok(AddedRecipients::TooMany { total });
                }
                let mut added = 0u32;
                for r in recipients {
                    let done = sqlx::query(
                        "insert into broadcast_recipients (id, broadcast_id, position, \
                         recipient, body, state, attempts, next_attempt_at, updated_at) \
                         values ($1, $2, $3, $4, $5, 'pending', 0, $6, $6) \
                         on conflict (broadcast_id, recipient) do nothing",
                    )
                    .bind(r.id)
                    .bind(broadcast)
                    .bind(total + i64::from(added))
                    .bind(&r.recipient)
                    .bind(&r.body)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    added += done.rows_affected() as u32;
                }
                sqlx::query(
                    "update broadcasts set total_recipients = total_recipients + $2, \
                     updated_at = $3 where id = $1",
                )
                .bind(broadcast)
                .bind(i64::from(added))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(AddedRecipients::Added {
                    added,
                    duplicates: recipients.len() as u32 - added,
                })
            }

            async fn change_broadcast(
                &self,
                project: uuid::Uuid,
                id: uuid::Uuid,
                change: $crate::store::broadcasts::BroadcastChange,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<$crate::store::broadcasts::BroadcastRow>> {
                use $crate::store::broadcasts::BroadcastChange;
                // `$3` is `updated_at` (now); `$4` the change's own time, where it has one
                // (PostgreSQL must be able to type every parameter a statement names).
                let (set, from, at) = match change {
                    BroadcastChange::Send => (
                        "status = 'sending', started_at = coalesce(started_at, $4)",
                        "('draft', 'scheduled')",
                        Some(now),
                    ),
                    BroadcastChange::Schedule(at) => {
                        ("status = 'scheduled', scheduled_at = $4", "('draft')", Some(at))
                    }
                    BroadcastChange::Cancel => {
                        ("status = 'draft', scheduled_at = null", "('scheduled')", None)
                    }
                    BroadcastChange::Stop => {
                        ("status = 'stopped', stopped_at = $4", "('sending')", Some(now))
                    }
                };
                let sql = format!(
                    "update broadcasts set {set}, updated_at = $3 where id = $1 and \
                     project_id = $2 and status in {from} returning {}",
                    $crate::store::broadcasts::BROADCAST_COLUMNS
                );
                let mut query = sqlx::query_as(&sql).bind(id).bind(project).bind(now);
                if let Some(at) = at {
                    query = query.bind(at);
                }
                Ok(query.fetch_optional(&self.pool).await?)
            }

            async fn broadcast_counts(
                &self,
                b: &$crate::store::broadcasts::BroadcastRow,
            ) -> $crate::store::StoreResult<$crate::store::broadcasts::BroadcastCounts> {
                let mut counts = $crate::store::broadcasts::BroadcastCounts::default();
                let states: Vec<(String, i64)> = sqlx::query_as(
                    "select state, count(*) from broadcast_recipients where broadcast_id = $1 \
                     group by state",
                )
                .bind(b.id)
                .fetch_all(&self.pool)
                .await?;
                for (state, n) in states {
                    match state.as_str() {
                        "pending" => counts.pending = n,
                        "sending" => counts.sending = n,
                        "sent" => counts.sent = n,
                        "failed" => counts.failed = n,
                        _ => {}
                    }
                }
                // Delivery and reads come from the stored messages' statuses.
                let statuses: Vec<(String, i64)> = sqlx::query_as(
                    "select m.status, count(*) from broadcast_recipients r join messages m \
                     on m.phone_number_internal_id = $2 and m.wamid = r.wamid \
                     where r.broadcast_id = $1 and r.state = 'sent' group by m.status",
                )
                .bind(b.id)
                .bind(b.phone_number_internal_id)
                .fetch_all(&self.pool)
                .await?;
                for (status, n) in statuses {
                    match status.as_str() {
                        "delivered" => counts.delivered += n,
                        "read" | "played" => {
                            counts.delivered += n;
                            counts.read += n;
                        }
                        _ => {}
                    }
                }
                Ok(counts)
            }

            async fn list_broadcast_recipients(
                &self,
                broadcast: uuid::Uuid,
                after: Option<i64>,
                state: Option<&str>,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::store::broadcasts::RecipientRow>> {
                let state_filter = if state.is_some() { " and state = $4" } else { "" };
                let sql = format!(
                    "select {} from broadcast_recipients where broadcast_id = $1 and \
                     position > $2{state_filter} order by position limit $3",
                    $crate::store::broadcasts::RECIPIENT_COLUMNS
                );
                let mut query = sqlx::query_as(&sql)
                    .bind(broadcast)
                    .bind(after.unwrap_or(-1))
                    .bind(i64::from(limit));
                if let Some(state) = state {
                    query = query.bind(state);
                }
                Ok(query.fetch_all(&self.pool).await?)
            }

            async fn sending_broadcasts(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Vec<(uuid::Uuid, uuid::Uuid)>> {
                sqlx::query(
                    "update broadcasts set status = 'sending', started_at = $1, updated_at = $1 \
                     where status = 'scheduled' and scheduled_at <= $1",
                )
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(sqlx::query_as(
                    "select id, phone_number_internal_id from broadcasts \
                     where status = 'sending' order by created_at, id",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn claim_broadcast_recipients(
                &self,
                broadcast: uuid::Uuid,
                now: chrono::DateTime<chrono::Utc>,
                lease: std::time::Duration,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::store::broadcasts::RecipientRow>> {
                // A lease that ran out: the worker died or hung. Back to pending; its
                // `in_doubt_since` says a request may have left.
                sqlx::query(
                    "update broadcast_recipients set state = 'pending', lease_token = null \
                     where broadcast_id = $1 and state = 'sending' and next_attempt_at <= $2",
                )
                .bind(broadcast)
                .bind(now)
                .execute(&self.pool)
                .await?;
                let until = now
                    + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60));
                let sql = format!(
                    "update broadcast_recipients set state = 'sending', lease_token = $1, \
                     claimed_at = $2, next_attempt_at = $3, \
                     in_doubt_since = coalesce(in_doubt_since, $2), updated_at = $2 \
                     where id in (select id from broadcast_recipients where broadcast_id = $4 \
                     and state = 'pending' and next_attempt_at <= $2 \
                     order by next_attempt_at, position limit $5{}) returning {}",
                    <Self as $crate::store::dialect::Dialect>::SKIP_LOCKED,
                    $crate::store::broadcasts::RECIPIENT_COLUMNS
                );
                let mut rows: Vec<$crate::store::broadcasts::RecipientRow> =
                    sqlx::query_as(&sql)
                        .bind(uuid::Uuid::now_v7())
                        .bind(now)
                        .bind(until)
                        .bind(broadcast)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?;
                rows.sort_by_key(|r| r.position);
                Ok(rows)
            }

            async fn finish_broadcast_recipients(
                &self,
                outcomes: &[$crate::store::broadcasts::RecipientOutcome],
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self
                    .pool
                    .begin_with(<Self as $crate::store::dialect::Dialect>::BEGIN_WRITE)
                    .await?;
                for o in outcomes {
                    sqlx::query(
                        "update broadcast_recipients set state = $3, attempts = $4, \
                         next_attempt_at = $5, in_doubt_since = $6, wamid = coalesce($7, wamid), \
                         error = $8, sent_at = coalesce(sent_at, $9), lease_token = null, \
                         updated_at = $10 \
                         where id = $1 and lease_token = $2 and state <> 'sent'",
                    )
                    .bind(o.id)
                    .bind(o.lease_token)
                    .bind(o.state)
                    .bind(o.attempts)
                    .bind(o.next_attempt_at)
                    .bind(o.in_doubt_since)
                    .bind(&o.wamid)
                    .bind(&o.error)
                    .bind(o.sent_at)
                    .bind(o.at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn complete_broadcast_if_done(
                &self,
                id: uuid::Uuid,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query(
                    "update broadcasts set status = case when exists (select 1 from \
                     broadcast_recipients where broadcast_id = $1 and state = 'sent') or \
                     total_recipients = 0 then 'completed' else 'failed' end, \
                     completed_at = $2, updated_at = $2 \
                     where id = $1 and status = 'sending' and not exists (select 1 from \
                     broadcast_recipients where broadcast_id = $1 and state in ('pending', 'sending'))",
                )
                .bind(id)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn find_broadcast_number(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<String>> {
                let row: Option<(String,)> =
                    sqlx::query_as("select phone_number_id from broadcasts where id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(|(pnid,)| pnid))
            }

            async fn broadcast_backlog(
                &self,
            ) -> $crate::store::StoreResult<Vec<$crate::store::broadcasts::BroadcastBacklog>> {
                Ok(sqlx::query_as(
                    "select b.phone_number_id, count(*) as recipients, \
                     min(r.next_attempt_at) as oldest_due from broadcast_recipients r \
                     join broadcasts b on b.id = r.broadcast_id \
                     where b.status = 'sending' and r.state in ('pending', 'sending') \
                     group by b.phone_number_id",
                )
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}

pub(crate) use impl_broadcasts;

/// Implements [`BroadcastsTx`] for a transaction type with a `tx` field.
macro_rules! impl_broadcasts_tx {
    ($tx:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::broadcasts::BroadcastsTx for $tx {
            async fn confirm_broadcast_send(
                &mut self,
                number: uuid::Uuid,
                recipient: uuid::Uuid,
                wamid: &str,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<String>> {
                // Meta's status can overtake the worker's own outcome (still `sending`): that
                // attempt is counted here, since the outcome write then finds it sent.
                let row: Option<(String,)> = sqlx::query_as(
                    "update broadcast_recipients set state = 'sent', wamid = $2, \
                     attempts = attempts + case when state = 'sending' then 1 else 0 end, \
                     lease_token = null, in_doubt_since = null, error = null, \
                     sent_at = coalesce(sent_at, $3), updated_at = $3 where id = $1 and state <> 'sent' \
                     and in_doubt_since is not null and broadcast_id in \
                     (select id from broadcasts where phone_number_internal_id = $4) \
                     returning body",
                )
                .bind(recipient)
                .bind(wamid)
                .bind(at)
                .bind(number)
                .fetch_optional(&mut *self.tx)
                .await?;
                Ok(row.map(|(body,)| body))
            }
        }
    };
}

pub(crate) use impl_broadcasts_tx;
