//! A write transaction over the stored-data tables: small primitives the domain layer
//! (`domain::ingest`, `domain::recorder`) composes, so the rules live in Rust once and the SQL
//! stays simple and identical on both backends.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::records::*;
use super::StoreResult;

#[async_trait]
pub trait StoreTx: Send {
    /// Serialises work on one key (a message's wamid) across transactions until commit: on
    /// PostgreSQL an advisory transaction lock, on SQLite nothing (one writer at a time).
    async fn lock_key(&mut self, number: Uuid, key: &str) -> StoreResult<()>;

    async fn insert_webhook_event(&mut self, event: &NewWebhookEvent) -> StoreResult<()>;
    async fn insert_event_route(&mut self, route: &EventRouteRow) -> StoreResult<()>;
    /// Queues a webhook delivery; the commit wakes the delivery workers of every instance.
    async fn queue_delivery(&mut self, delivery: &super::NewDelivery) -> StoreResult<()>;

    async fn find_contact_by_bsuid(
        &mut self,
        number: Uuid,
        bsuid: &str,
    ) -> StoreResult<Option<ContactRow>>;
    /// A contact known only by its parent BSUID (`CC.ENT.…`), when exactly one has it.
    async fn find_contact_by_parent_bsuid(
        &mut self,
        number: Uuid,
        parent: &str,
    ) -> StoreResult<Option<ContactRow>>;
    async fn find_contact_by_wa_id(
        &mut self,
        number: Uuid,
        wa_id: &str,
    ) -> StoreResult<Option<ContactRow>>;
    /// Inserts unless a contact with the same BSUID or wa_id exists; returns whether it inserted.
    async fn insert_contact(&mut self, contact: &ContactRow) -> StoreResult<bool>;
    async fn update_contact(&mut self, contact: &ContactRow) -> StoreResult<()>;
    async fn insert_identity_change(
        &mut self,
        contact_id: Uuid,
        kind: &str,
        old: Option<&str>,
        new: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;

    async fn find_active_conversation(
        &mut self,
        number: Uuid,
        contact: Uuid,
    ) -> StoreResult<Option<ConversationRow>>;
    /// Inserts unless the contact already has an active conversation; returns whether it inserted.
    async fn insert_conversation(&mut self, conversation: &ConversationRow) -> StoreResult<bool>;
    async fn update_conversation(&mut self, conversation: &ConversationRow) -> StoreResult<()>;

    /// Inserts unless (number, wamid) exists; returns whether it inserted.
    async fn insert_message(&mut self, message: &MessageRow) -> StoreResult<bool>;
    async fn find_message(&mut self, number: Uuid, wamid: &str) -> StoreResult<Option<MessageRow>>;
    /// Writes back status, processing status, errors, status history, contact and conversation.
    async fn update_message_state(&mut self, message: &MessageRow) -> StoreResult<()>;
    async fn park_status(
        &mut self,
        number: Uuid,
        wamid: &str,
        status: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Removes and returns the statuses parked for a message, oldest first.
    async fn take_parked_statuses(
        &mut self,
        number: Uuid,
        wamid: &str,
    ) -> StoreResult<Vec<ParkedStatusRow>>;

    async fn find_call(&mut self, number: Uuid, call_id: &str) -> StoreResult<Option<CallRow>>;
    async fn insert_call(&mut self, call: &CallRow) -> StoreResult<bool>;
    async fn update_call(&mut self, call: &CallRow) -> StoreResult<()>;

    async fn set_username(
        &mut self,
        number: Uuid,
        username: Option<&str>,
        status: Option<&str>,
    ) -> StoreResult<()>;

    async fn commit(self: Box<Self>) -> StoreResult<()>;
}

pub(crate) const CONTACT_COLUMNS: &str = "id, project_id, phone_number_internal_id, wa_id, \
    business_scoped_user_id, parent_business_scoped_user_id, username, profile_name, display_name, \
    customer_id, metadata, created_at, updated_at";
pub(crate) const CONVERSATION_COLUMNS: &str =
    "id, project_id, phone_number_internal_id, contact_id, \
    status, last_active_at, ended_at, messages_count, last_message_id, last_message_type, \
    last_message_timestamp, last_message_text, last_inbound_at, last_outbound_at, metadata, \
    created_at, updated_at";
pub(crate) const MESSAGE_COLUMNS: &str =
    "id, project_id, phone_number_internal_id, wamid, direction, \
    message_type, status, processing_status, origin, meta_timestamp, contact_id, conversation_id, \
    has_media, body, content, errors, statuses, created_at, updated_at";
pub(crate) const CALL_COLUMNS: &str =
    "id, project_id, phone_number_internal_id, call_id, direction, \
    status, from_number, to_number, contact_id, conversation_id, started_at, session_started_at, \
    ended_at, duration_seconds, events, created_at, updated_at";

/// Implements [`StoreTx`] for `$tx` (a struct with a `tx: sqlx::Transaction<'static, _>` field).
macro_rules! impl_store_tx {
    ($tx:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::StoreTx for $tx {
            async fn lock_key(&mut self, number: uuid::Uuid, key: &str) -> $crate::store::StoreResult<()> {
                if let Some(sql) = Self::KEY_LOCK {
                    sqlx::query(sql).bind(format!("{number}/{key}")).execute(&mut *self.tx).await?;
                }
                Ok(())
            }

            async fn insert_webhook_event(&mut self, e: &$crate::store::NewWebhookEvent) -> $crate::store::StoreResult<()> {
                sqlx::query("insert into webhook_events (id, received_at, body, state, error) values ($1, $2, $3, $4, $5)")
                    .bind(e.id).bind(e.received_at).bind(&e.body).bind(&e.state).bind(&e.error)
                    .execute(&mut *self.tx).await?;
                Ok(())
            }

            async fn insert_event_route(&mut self, r: &$crate::store::EventRouteRow) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "insert into webhook_event_routes (id, event_id, project_id, phone_number_id, fields, payload, created_at) \
                     values ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(r.id).bind(r.event_id).bind(r.project_id).bind(&r.phone_number_id).bind(&r.fields)
                .bind(&r.payload).bind(r.created_at)
                .execute(&mut *self.tx).await?;
                Ok(())
            }

            async fn find_contact_by_bsuid(&mut self, number: uuid::Uuid, bsuid: &str) -> $crate::store::StoreResult<Option<$crate::store::ContactRow>> {
                let sql = format!("select {} from contacts where phone_number_internal_id = $1 and business_scoped_user_id = $2", $crate::store::tx::CONTACT_COLUMNS);
                Ok(sqlx::query_as(&sql).bind(number).bind(bsuid).fetch_optional(&mut *self.tx).await?)
            }

            async fn find_contact_by_parent_bsuid(&mut self, number: uuid::Uuid, parent: &str) -> $crate::store::StoreResult<Option<$crate::store::ContactRow>> {
                // A parent BSUID spans linked portfolios: with two contacts under one parent it
                // names neither, so only a single match counts.
                let sql = format!("select {} from contacts where phone_number_internal_id = $1 and parent_business_scoped_user_id = $2 order by created_at, id limit 2", $crate::store::tx::CONTACT_COLUMNS);
                let mut rows: Vec<$crate::store::ContactRow> = sqlx::query_as(&sql).bind(number).bind(parent).fetch_all(&mut *self.tx).await?;
                Ok(if rows.len() == 1 { rows.pop() } else { None })
            }

            async fn find_contact_by_wa_id(&mut self, number: uuid::Uuid, wa_id: &str) -> $crate::store::StoreResult<Option<$crate::store::ContactRow>> {
                let sql = format!("select {} from contacts where phone_number_internal_id = $1 and wa_id = $2", $crate::store::tx::CONTACT_COLUMNS);
                Ok(sqlx::query_as(&sql).bind(number).bind(wa_id).fetch_optional(&mut *self.tx).await?)
            }

            async fn insert_contact(&mut self, c: &$crate::store::ContactRow) -> $crate::store::StoreResult<bool> {
                let result = sqlx::query(
                    "insert into contacts (id, project_id, phone_number_internal_id, wa_id, business_scoped_user_id, \
                     parent_business_scoped_user_id, username, profile_name, display_name, customer_id, metadata, \
                     created_at, updated_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                     on conflict do nothing",
                )
                .bind(c.id).bind(c.project_id).bind(c.phone_number_internal_id).bind(&c.wa_id)
                .bind(&c.business_scoped_user_id).bind(&c.parent_business_scoped_user_id).bind(&c.username)
                .bind(&c.profile_name).bind(&c.display_name).bind(c.customer_id).bind(&c.metadata)
                .bind(c.created_at).bind(c.updated_at)
                .execute(&mut *self.tx).await?;
                Ok(result.rows_affected() == 1)
            }

            async fn update_contact(&mut self, c: &$crate::store::ContactRow) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "update contacts set wa_id = $2, business_scoped_user_id = $3, parent_business_scoped_user_id = $4, \
                     username = $5, profile_name = $6, display_name = $7, customer_id = $8, metadata = $9, updated_at = $10 \
                     where id = $1",
                )
                .bind(c.id).bind(&c.wa_id).bind(&c.business_scoped_user_id).bind(&c.parent_business_scoped_user_id)
                .bind(&c.username).bind(&c.profile_name).bind(&c.display_name).bind(c.customer_id).bind(&c.metadata)
                .bind(c.updated_at)
                .execute(&mut *self.tx).await?;
                Ok(())
            }

            async fn insert_identity_change(
                &mut self,
                contact_id: uuid::Uuid,
                kind: &str,
                old: Option<&str>,
                new: Option<&str>,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query("insert into contact_identity_changes (id, contact_id, kind, old_value, new_value, changed_at) values ($1, $2, $3, $4, $5, $6)")
                    .bind(uuid::Uuid::now_v7()).bind(contact_id).bind(kind).bind(old).bind(new).bind(at)
                    .execute(&mut *self.tx).await?;
                Ok(())
            }

            async fn find_active_conversation(&mut self, number: uuid::Uuid, contact: uuid::Uuid) -> $crate::store::StoreResult<Option<$crate::store::ConversationRow>> {
                let sql = format!(
                    "select {} from conversations where phone_number_internal_id = $1 and contact_id = $2 and status = 'active'{}",
                    $crate::store::tx::CONVERSATION_COLUMNS,
                    Self::LOCK_ROWS
                );
                Ok(sqlx::query_as(&sql).bind(number).bind(contact).fetch_optional(&mut *self.tx).await?)
            }

            async fn insert_conversation(&mut self, c: &$crate::store::ConversationRow) -> $crate::store::StoreResult<bool> {
                let result = sqlx::query(
                    "insert into conversations (id, project_id, phone_number_internal_id, contact_id, status, last_active_at, \
                     ended_at, messages_count, last_message_id, last_message_type, last_message_timestamp, last_message_text, \
                     last_inbound_at, last_outbound_at, metadata, created_at, updated_at) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
                     on conflict (phone_number_internal_id, contact_id) where status = 'active' do nothing",
                )
                .bind(c.id).bind(c.project_id).bind(c.phone_number_internal_id).bind(c.contact_id).bind(&c.status)
                .bind(c.last_active_at).bind(c.ended_at).bind(c.messages_count).bind(&c.last_message_id)
                .bind(&c.last_message_type).bind(&c.last_message_timestamp).bind(&c.last_message_text)
                .bind(c.last_inbound_at).bind(c.last_outbound_at).bind(&c.metadata).bind(c.created_at).bind(c.updated_at)
                .execute(&mut *self.tx).await?;
                Ok(result.rows_affected() == 1)
            }

            async fn update_conversation(&mut self, c: &$crate::store::ConversationRow) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "update conversations set status = $2, last_active_at = $3, ended_at = $4, messages_count = $5, \
                     last_message_id = $6, last_message_type = $7, last_message_timestamp = $8, last_message_text = $9, \
                     last_inbound_at = $10, last_outbound_at = $11, metadata = $12, updated_at = $13 where id = $1",
                )
                .bind(c.id).bind(&c.status).bind(c.last_active_at).bind(c.ended_at).bind(c.messages_count)
                .bind(&c.last_message_id).bind(&c.last_message_type).bind(&c.last_message_timestamp)
                .bind(&c.last_message_text).bind(c.last_inbound_at).bind(c.last_outbound_at).bind(&c.metadata)
                .bind(c.updated_at)
                .execute(&mut *self.tx).await?;
                Ok(())
            }

            async fn insert_message(&mut self, m: &$crate::store::MessageRow) -> $crate::store::StoreResult<bool> {
                let result = sqlx::query(
                    "insert into messages (id, project_id, phone_number_internal_id, wamid, direction, message_type, status, \
                     processing_status, origin, meta_timestamp, contact_id, conversation_id, has_media, body, content, errors, \
                     statuses, created_at, updated_at) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
                     on conflict (phone_number_internal_id, wamid) do nothing",
                )
                .bind(m.id).bind(m.project_id).bind(m.phone_number_internal_id).bind(&m.wamid).bind(&m.direction)
                .bind(&m.message_type).bind(&m.status).bind(&m.processing_status).bind(&m.origin).bind(m.meta_timestamp)
                .bind(m.contact_id).bind(m.conversation_id).bind(m.has_media).bind(&m.body).bind(&m.content)
                .bind(&m.errors).bind(&m.statuses).bind(m.created_at).bind(m.updated_at)
                .execute(&mut *self.tx).await?;
                Ok(result.rows_affected() == 1)
            }

            async fn find_message(&mut self, number: uuid::Uuid, wamid: &str) -> $crate::store::StoreResult<Option<$crate::store::MessageRow>> {
                let sql = format!(
                    "select {} from messages where phone_number_internal_id = $1 and wamid = $2{}",
                    $crate::store::tx::MESSAGE_COLUMNS,
                    Self::LOCK_ROWS
                );
                Ok(sqlx::query_as(&sql).bind(number).bind(wamid).fetch_optional(&mut *self.tx).await?)
            }

            async fn update_message_state(&mut self, m: &$crate::store::MessageRow) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "update messages set status = $2, processing_status = $3, errors = $4, statuses = $5, contact_id = $6, \
                     conversation_id = $7, updated_at = $8 where id = $1",
                )
                .bind(m.id).bind(&m.status).bind(&m.processing_status).bind(&m.errors).bind(&m.statuses)
                .bind(m.contact_id).bind(m.conversation_id).bind(m.updated_at)
                .execute(&mut *self.tx).await?;
                Ok(())
            }

            async fn park_status(&mut self, number: uuid::Uuid, wamid: &str, status: &str, at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<()> {
                sqlx::query("insert into parked_statuses (id, phone_number_internal_id, wamid, status, received_at) values ($1, $2, $3, $4, $5)")
                    .bind(uuid::Uuid::now_v7()).bind(number).bind(wamid).bind(status).bind(at)
                    .execute(&mut *self.tx).await?;
                Ok(())
            }

            async fn take_parked_statuses(&mut self, number: uuid::Uuid, wamid: &str) -> $crate::store::StoreResult<Vec<$crate::store::ParkedStatusRow>> {
                let rows: Vec<$crate::store::ParkedStatusRow> = sqlx::query_as(
                    "delete from parked_statuses where phone_number_internal_id = $1 and wamid = $2 returning id, status",
                )
                .bind(number).bind(wamid)
                .fetch_all(&mut *self.tx).await?;
                let mut rows = rows;
                // UUIDv7 ids are in arrival order.
                rows.sort_by_key(|r| r.id);
                Ok(rows)
            }

            async fn find_call(&mut self, number: uuid::Uuid, call_id: &str) -> $crate::store::StoreResult<Option<$crate::store::CallRow>> {
                let sql = format!(
                    "select {} from calls where phone_number_internal_id = $1 and call_id = $2{}",
                    $crate::store::tx::CALL_COLUMNS,
                    Self::LOCK_ROWS
                );
                Ok(sqlx::query_as(&sql).bind(number).bind(call_id).fetch_optional(&mut *self.tx).await?)
            }

            async fn insert_call(&mut self, c: &$crate::store::CallRow) -> $crate::store::StoreResult<bool> {
                let result = sqlx::query(
                    "insert into calls (id, project_id, phone_number_internal_id, call_id, direction, status, from_number, \
                     to_number, contact_id, conversation_id, started_at, session_started_at, ended_at, duration_seconds, \
                     events, created_at, updated_at) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
                     on conflict (phone_number_internal_id, call_id) do nothing",
                )
                .bind(c.id).bind(c.project_id).bind(c.phone_number_internal_id).bind(&c.call_id).bind(&c.direction)
                .bind(&c.status).bind(&c.from_number).bind(&c.to_number).bind(c.contact_id).bind(c.conversation_id)
                .bind(c.started_at).bind(c.session_started_at).bind(c.ended_at).bind(c.duration_seconds)
                .bind(&c.events).bind(c.created_at).bind(c.updated_at)
                .execute(&mut *self.tx).await?;
                Ok(result.rows_affected() == 1)
            }

            async fn update_call(&mut self, c: &$crate::store::CallRow) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "update calls set direction = $2, status = $3, from_number = $4, to_number = $5, contact_id = $6, \
                     conversation_id = $7, session_started_at = $8, ended_at = $9, duration_seconds = $10, events = $11, \
                     updated_at = $12 where id = $1",
                )
                .bind(c.id).bind(&c.direction).bind(&c.status).bind(&c.from_number).bind(&c.to_number)
                .bind(c.contact_id).bind(c.conversation_id).bind(c.session_started_at).bind(c.ended_at)
                .bind(c.duration_seconds).bind(&c.events).bind(c.updated_at)
                .execute(&mut *self.tx).await?;
                Ok(())
            }

            async fn set_username(&mut self, number: uuid::Uuid, username: Option<&str>, status: Option<&str>) -> $crate::store::StoreResult<()> {
                sqlx::query("update phone_numbers set username = $2, username_status = $3, updated_at = $4 where internal_id = $1")
                    .bind(number).bind(username).bind(status).bind($crate::store::common::now())
                    .execute(&mut *self.tx).await?;
                Ok(())
            }

            async fn queue_delivery(&mut self, d: &$crate::store::NewDelivery) -> $crate::store::StoreResult<()> {
                $crate::store::outbox::insert_delivery!(&mut *self.tx, d);
                self.queued_deliveries = true;
                Ok(())
            }

            async fn commit(mut self: Box<Self>) -> $crate::store::StoreResult<()> {
                if self.queued_deliveries {
                    if let Some(sql) = Self::NOTIFY {
                        sqlx::query(sql).execute(&mut *self.tx).await?;
                    }
                }
                self.tx.commit().await?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_store_tx;
