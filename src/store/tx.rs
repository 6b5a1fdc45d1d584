//! A write transaction over the stored-data tables: small primitives the domain layer
//! (`domain::ingest`, `domain::recorder`) composes, so the rules live in Rust once and the SQL
//! stays simple and identical on both backends.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::records::*;
use super::StoreResult;

#[async_trait]
pub trait StoreTx: super::meta_state::MetaStateTx + super::BroadcastsTx + Send {
    /// Serialises work on one key (a message's wamid) across transactions until commit: on
    /// PostgreSQL an advisory transaction lock, on SQLite nothing (one writer at a time).
    async fn lock_key(&mut self, number: Uuid, key: &str) -> StoreResult<()>;
    /// Locks several keys with one statement, in one global order (two transactions locking
    /// overlapping sets never deadlock); a key locked once stays locked until commit, so later
    /// `lock_key` calls for it cost nothing.
    async fn lock_keys(&mut self, keys: &[(Uuid, String)]) -> StoreResult<()>;
    /// Reads what a batch will touch (its messages, contacts and their active conversations)
    /// with a few statements, locking the message and conversation rows; the batch's keys must
    /// be locked first. A no-op on SQLite, where it measured slower than per-job reads.
    async fn prefetch(&mut self, batch: &super::Prefetch) -> StoreResult<()>;

    /// The raw event, its routes and their outbox rows are append-only and never read back by
    /// the transaction that writes them: they are buffered and inserted at commit, one
    /// multi-row statement per table, so a batch of N webhooks costs three statements, not 3N.
    async fn insert_webhook_event(&mut self, event: &NewWebhookEvent) -> StoreResult<()>;
    async fn insert_event_route(&mut self, route: &EventRouteRow) -> StoreResult<()>;
    /// Queues a webhook delivery; the commit wakes the delivery workers of every instance.
    async fn queue_delivery(&mut self, delivery: &super::NewDelivery) -> StoreResult<()>;
    /// Queues a media message's download (nothing when the message has a row already).
    async fn queue_media(&mut self, media: &super::MediaFileRow) -> StoreResult<()>;

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
    /// Whether (number, wamid) is stored, and whether statuses are parked for it (one query).
    async fn message_presence(&mut self, number: Uuid, wamid: &str) -> StoreResult<(bool, bool)>;
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
    /// Records that wagate registered the number with a two-step PIN (once: a repeat is a no-op).
    async fn set_pin_enabled(&mut self, number: Uuid, now: DateTime<Utc>) -> StoreResult<()>;

    /// The contact and conversation a message names (as this transaction sees them), for the
    /// Kapso-format events it queues.
    async fn event_context(
        &mut self,
        contact_id: Option<Uuid>,
        conversation_id: Option<Uuid>,
    ) -> StoreResult<(Option<ContactRow>, Option<ConversationRow>)>;
    /// Holds a rendered `whatsapp.message.received` for a buffering webhook until its batch is due.
    async fn buffer_webhook_event(&mut self, event: &BufferedEvent) -> StoreResult<()>;

    /// Whether this transaction queued a media download (`queue_media`): after its commit the
    /// media workers have something to claim.
    fn queued_media(&self) -> bool;

    async fn commit(self: Box<Self>) -> StoreResult<()>;
}

/// Rows per multi-row insert: far below either backend's bound-parameter limit.
pub(crate) const INSERT_CHUNK: usize = 200;

/// Implements [`StoreTx`] for `$tx` (a struct with a `tx: sqlx::Transaction<'static, _>` field
/// and a `state: TxState` field) over the backend `$dialect`, which provides the key locks and
/// the prefetch; `$tx` provides `flush_buffered`, the commit-time writes.
macro_rules! impl_store_tx {
    ($tx:ty, $dialect:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::StoreTx for $tx {
            async fn lock_key(
                &mut self,
                number: uuid::Uuid,
                key: &str,
            ) -> $crate::store::StoreResult<()> {
                if let Some(sql) = <$dialect as $crate::store::dialect::Dialect>::KEY_LOCK
                {
                    let key = $crate::store::tx_state::lock_name(number, key);
                    if !self.state.locked.contains(&key) {
                        sqlx::query(sql).bind(&key).execute(&mut *self.tx).await?;
                        self.state.locked.insert(key);
                    }
                }
                Ok(())
            }

            async fn lock_keys(
                &mut self,
                keys: &[(uuid::Uuid, String)],
            ) -> $crate::store::StoreResult<()> {
                if <$dialect as $crate::store::dialect::Dialect>::KEY_LOCK.is_some() {
                    let fresh: Vec<String> = keys
                        .iter()
                        .map(|(number, key)| $crate::store::tx_state::lock_name(*number, key))
                        .filter(|key| !self.state.locked.contains(key))
                        .collect();
                    if !fresh.is_empty() {
                        <$dialect as $crate::store::dialect::Dialect>::lock_many(
                            &mut self.tx,
                            &fresh,
                        )
                        .await?;
                        self.state.locked.extend(fresh);
                    }
                }
                Ok(())
            }

            async fn insert_webhook_event(
                &mut self,
                e: &$crate::store::NewWebhookEvent,
            ) -> $crate::store::StoreResult<()> {
                self.state.events.push(e.clone());
                Ok(())
            }

            async fn insert_event_route(
                &mut self,
                r: &$crate::store::EventRouteRow,
            ) -> $crate::store::StoreResult<()> {
                self.state.routes.push(r.clone());
                Ok(())
            }

            async fn prefetch(
                &mut self,
                batch: &$crate::store::Prefetch,
            ) -> $crate::store::StoreResult<()> {
                let rows = <$dialect as $crate::store::dialect::Dialect>::prefetch_rows(
                    &mut self.tx,
                    batch,
                )
                .await?;
                self.state.remember_prefetched(batch, rows);
                Ok(())
            }

            async fn find_contact_by_bsuid(
                &mut self,
                number: uuid::Uuid,
                bsuid: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::ContactRow>> {
                if let $crate::store::tx_state::Cached::Known(row) =
                    self.state.contact_by_bsuid(number, bsuid)
                {
                    return Ok(row);
                }
                let sql = format!(
                    "select {} from contacts where phone_number_internal_id = $1 \
                 and business_scoped_user_id = $2",
                    $crate::store::columns::CONTACT_COLUMNS
                );
                let row: Option<$crate::store::ContactRow> = sqlx::query_as(&sql)
                    .bind(number)
                    .bind(bsuid)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                match &row {
                    Some(row) => self.state.remember_contact(row),
                    None => self.state.remember_no_contact_by_bsuid(number, bsuid),
                }
                Ok(row)
            }

            async fn find_contact_by_parent_bsuid(
                &mut self,
                number: uuid::Uuid,
                parent: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::ContactRow>> {
                // A parent BSUID spans linked portfolios: with two contacts under one parent it
                // names neither, so only a single match counts.
                let sql = format!(
                    "select {} from contacts where phone_number_internal_id = $1 \
                 and parent_business_scoped_user_id = $2 order by created_at, id limit 2",
                    $crate::store::columns::CONTACT_COLUMNS
                );
                let mut rows: Vec<$crate::store::ContactRow> = sqlx::query_as(&sql)
                    .bind(number)
                    .bind(parent)
                    .fetch_all(&mut *self.tx)
                    .await?;
                Ok(if rows.len() == 1 { rows.pop() } else { None })
            }

            async fn find_contact_by_wa_id(
                &mut self,
                number: uuid::Uuid,
                wa_id: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::ContactRow>> {
                if let $crate::store::tx_state::Cached::Known(row) =
                    self.state.contact_by_wa_id(number, wa_id)
                {
                    return Ok(row);
                }
                let sql = format!(
                    "select {} from contacts where phone_number_internal_id = $1 and wa_id = $2",
                    $crate::store::columns::CONTACT_COLUMNS
                );
                let row: Option<$crate::store::ContactRow> = sqlx::query_as(&sql)
                    .bind(number)
                    .bind(wa_id)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                match &row {
                    Some(row) => self.state.remember_contact(row),
                    None => self.state.remember_no_contact_by_wa_id(number, wa_id),
                }
                Ok(row)
            }

            async fn insert_contact(
                &mut self,
                c: &$crate::store::ContactRow,
            ) -> $crate::store::StoreResult<bool> {
                let result = sqlx::query(concat!(
                    "insert into contacts (",
                    $crate::store::columns::contact_columns!(),
                    ") values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) on ",
                    "conflict do nothing",
                ))
                .bind(c.id)
                .bind(c.project_id)
                .bind(c.phone_number_internal_id)
                .bind(&c.wa_id)
                .bind(&c.business_scoped_user_id)
                .bind(&c.parent_business_scoped_user_id)
                .bind(&c.username)
                .bind(&c.profile_name)
                .bind(&c.display_name)
                .bind(c.customer_id)
                .bind(&c.metadata)
                .bind(c.created_at)
                .bind(c.updated_at)
                .execute(&mut *self.tx)
                .await?;
                let inserted = result.rows_affected() == 1;
                if inserted {
                    self.state.remember_contact(c);
                } else {
                    self.state.forget_absent_contact(c);
                }
                Ok(inserted)
            }

            async fn update_contact(
                &mut self,
                c: &$crate::store::ContactRow,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "update contacts set wa_id = $2, business_scoped_user_id = $3, \
                             parent_business_scoped_user_id = $4, \
                             username = $5, profile_name = $6, display_name = $7, customer_id = \
                             $8, metadata = $9, updated_at = $10 \
                             where id = $1",
                )
                .bind(c.id)
                .bind(&c.wa_id)
                .bind(&c.business_scoped_user_id)
                .bind(&c.parent_business_scoped_user_id)
                .bind(&c.username)
                .bind(&c.profile_name)
                .bind(&c.display_name)
                .bind(c.customer_id)
                .bind(&c.metadata)
                .bind(c.updated_at)
                .execute(&mut *self.tx)
                .await?;
                self.state.remember_contact(c);
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
                sqlx::query(
                    "insert into contact_identity_changes (id, contact_id, kind, \
                 old_value, new_value, changed_at) values ($1, $2, $3, $4, $5, $6)",
                )
                .bind(uuid::Uuid::now_v7())
                .bind(contact_id)
                .bind(kind)
                .bind(old)
                .bind(new)
                .bind(at)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn find_active_conversation(
                &mut self,
                number: uuid::Uuid,
                contact: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::ConversationRow>> {
                if let $crate::store::tx_state::Cached::Known(row) =
                    self.state.active_conversation(number, contact)
                {
                    return Ok(row);
                }
                let sql = format!(
                    "select {} from conversations where phone_number_internal_id = $1 and \
                             contact_id = $2 and status = 'active'{}",
                    $crate::store::columns::CONVERSATION_COLUMNS,
                    <$dialect as $crate::store::dialect::Dialect>::LOCK_ROWS
                );
                let row: Option<$crate::store::ConversationRow> = sqlx::query_as(&sql)
                    .bind(number)
                    .bind(contact)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                self.state
                    .remember_conversation(number, contact, row.clone());
                Ok(row)
            }

            async fn insert_conversation(
                &mut self,
                c: &$crate::store::ConversationRow,
            ) -> $crate::store::StoreResult<bool> {
                // A conversation ended earlier in this transaction must be ended in the table
                // before its successor can take the "one active" slot.
                self.flush_conversations().await?;
                let result = sqlx::query(concat!(
                    "insert into conversations (",
                    $crate::store::columns::conversation_columns!(),
                    ", active_second) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, ",
                    "$13, $14, $15, $16, $17, $18) on conflict (phone_number_internal_id, contact_id) where ",
                    "status = 'active' do nothing",
                ))
                .bind(c.id)
                .bind(c.project_id)
                .bind(c.phone_number_internal_id)
                .bind(c.contact_id)
                .bind(&c.status)
                .bind(c.last_active_at)
                .bind(c.ended_at)
                .bind(c.messages_count)
                .bind(&c.last_message_id)
                .bind(&c.last_message_type)
                .bind(&c.last_message_timestamp)
                .bind(&c.last_message_text)
                .bind(c.last_inbound_at)
                .bind(c.last_outbound_at)
                .bind(&c.metadata)
                .bind(c.created_at)
                .bind(c.updated_at)
                .bind(c.active_second())
                .execute(&mut *self.tx)
                .await?;
                let inserted = result.rows_affected() == 1;
                if inserted {
                    self.state.remember_conversation(
                        c.phone_number_internal_id,
                        c.contact_id,
                        Some(c.clone()),
                    );
                } else {
                    self.state
                        .forget_conversation(c.phone_number_internal_id, c.contact_id);
                }
                Ok(inserted)
            }

            async fn update_conversation(
                &mut self,
                c: &$crate::store::ConversationRow,
            ) -> $crate::store::StoreResult<()> {
                self.state.update_conversation(c);
                Ok(())
            }

            async fn insert_message(
                &mut self,
                m: &$crate::store::MessageRow,
            ) -> $crate::store::StoreResult<bool> {
                if let Some(inserted) = self.state.insert_message(m) {
                    return Ok(inserted);
                }
                let result = sqlx::query(concat!(
                    "insert into messages (",
                    $crate::store::columns::message_columns!(),
                    ") values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, ",
                    "$15, $16, $17, $18, $19, $20, $21) ",
                    "on conflict (phone_number_internal_id, wamid) ",
                    "do nothing",
                ))
                .bind(m.id)
                .bind(m.project_id)
                .bind(m.phone_number_internal_id)
                .bind(&m.wamid)
                .bind(&m.direction)
                .bind(&m.message_type)
                .bind(&m.status)
                .bind(&m.processing_status)
                .bind(&m.origin)
                .bind(m.meta_timestamp)
                .bind(m.contact_id)
                .bind(m.conversation_id)
                .bind(m.has_media)
                .bind(&m.body)
                .bind(&m.errors)
                .bind(&m.statuses)
                .bind(m.created_at)
                .bind(m.updated_at)
                .bind(&m.group_id)
                .bind(&m.edits)
                .bind(m.revoked_at)
                .execute(&mut *self.tx)
                .await?;
                let inserted = result.rows_affected() == 1;
                if inserted {
                    self.state.remember_message(
                        m.phone_number_internal_id,
                        &m.wamid,
                        Some(m.clone()),
                        true,
                    );
                }
                Ok(inserted)
            }

            async fn find_message(
                &mut self,
                number: uuid::Uuid,
                wamid: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::MessageRow>> {
                if let $crate::store::tx_state::Cached::Known(row) =
                    self.state.message(number, wamid)
                {
                    return Ok(row);
                }
                let sql = format!(
                    "select {} from messages where phone_number_internal_id = $1 and wamid = $2{}",
                    $crate::store::columns::MESSAGE_COLUMNS,
                    <$dialect as $crate::store::dialect::Dialect>::LOCK_ROWS
                );
                let row: Option<$crate::store::MessageRow> = sqlx::query_as(&sql)
                    .bind(number)
                    .bind(wamid)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                let trusted = <$dialect as $crate::store::dialect::Dialect>::KEY_LOCK
                    .is_none()
                    || self.state.has_lock(number, wamid);
                self.state
                    .remember_message(number, wamid, row.clone(), trusted);
                Ok(row)
            }

            async fn message_presence(
                &mut self,
                number: uuid::Uuid,
                wamid: &str,
            ) -> $crate::store::StoreResult<(bool, bool)> {
                use $crate::store::tx_state::Cached;
                let stored = match self.state.message(number, wamid) {
                    Cached::Known(row) => Some(row.is_some()),
                    Cached::Unknown => None,
                };
                let parked = match self.state.parked(number, wamid) {
                    Cached::Known(parked) => Some(parked),
                    Cached::Unknown => None,
                };
                if let (Some(stored), Some(parked)) = (stored, parked) {
                    return Ok((stored, parked));
                }
                let (in_table, parked_in_table): (bool, bool) = sqlx::query_as(
                    "select exists(select 1 from messages where phone_number_internal_id \
                             = $1 and wamid = $2), \
                             exists(select 1 from parked_statuses where phone_number_internal_id \
                             = $1 and wamid = $2)",
                )
                .bind(number)
                .bind(wamid)
                .fetch_one(&mut *self.tx)
                .await?;
                let stored = stored.unwrap_or(in_table);
                let parked = parked.unwrap_or(parked_in_table);
                if <$dialect as $crate::store::dialect::Dialect>::KEY_LOCK.is_none()
                    || self.state.has_lock(number, wamid)
                {
                    if !stored {
                        self.state.remember_message(number, wamid, None, true);
                    }
                    self.state.remember_parked(number, wamid, parked);
                }
                Ok((stored, parked))
            }

            async fn update_message_state(
                &mut self,
                m: &$crate::store::MessageRow,
            ) -> $crate::store::StoreResult<()> {
                if self.state.update_message(m) {
                    return Ok(());
                }
                sqlx::query(
                    "update messages set status = $2, processing_status = $3, errors = \
                             $4, statuses = $5, contact_id = $6, \
                             conversation_id = $7, updated_at = $8 where id = $1",
                )
                .bind(m.id)
                .bind(&m.status)
                .bind(&m.processing_status)
                .bind(&m.errors)
                .bind(&m.statuses)
                .bind(m.contact_id)
                .bind(m.conversation_id)
                .bind(m.updated_at)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn park_status(
                &mut self,
                number: uuid::Uuid,
                wamid: &str,
                status: &str,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "insert into parked_statuses (id, phone_number_internal_id, wamid, \
                 status, received_at) values ($1, $2, $3, $4, $5)",
                )
                .bind(uuid::Uuid::now_v7())
                .bind(number)
                .bind(wamid)
                .bind(status)
                .bind(at)
                .execute(&mut *self.tx)
                .await?;
                if <$dialect as $crate::store::dialect::Dialect>::KEY_LOCK.is_none()
                    || self.state.has_lock(number, wamid)
                {
                    self.state.remember_parked(number, wamid, true);
                }
                Ok(())
            }

            async fn take_parked_statuses(
                &mut self,
                number: uuid::Uuid,
                wamid: &str,
            ) -> $crate::store::StoreResult<Vec<$crate::store::ParkedStatusRow>> {
                if self.state.parked(number, wamid)
                    == $crate::store::tx_state::Cached::Known(false)
                {
                    return Ok(Vec::new());
                }
                if <$dialect as $crate::store::dialect::Dialect>::KEY_LOCK.is_none()
                    || self.state.has_lock(number, wamid)
                {
                    self.state.remember_parked(number, wamid, false);
                }
                let rows: Vec<$crate::store::ParkedStatusRow> = sqlx::query_as(
                    "delete from parked_statuses where phone_number_internal_id = $1 and \
                             wamid = $2 returning id, status",
                )
                .bind(number)
                .bind(wamid)
                .fetch_all(&mut *self.tx)
                .await?;
                let mut rows = rows;
                // UUIDv7 ids are in arrival order.
                rows.sort_by_key(|r| r.id);
                Ok(rows)
            }

            async fn find_call(
                &mut self,
                number: uuid::Uuid,
                call_id: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::CallRow>> {
                let sql = format!(
                    "select {} from calls where phone_number_internal_id = $1 and call_id = $2{}",
                    $crate::store::columns::CALL_COLUMNS,
                    <$dialect as $crate::store::dialect::Dialect>::LOCK_ROWS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(number)
                    .bind(call_id)
                    .fetch_optional(&mut *self.tx)
                    .await?)
            }

            async fn insert_call(
                &mut self,
                c: &$crate::store::CallRow,
            ) -> $crate::store::StoreResult<bool> {
                let result = sqlx::query(concat!(
                    "insert into calls (",
                    $crate::store::columns::call_columns!(),
                    ") values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, ",
                    "$15, $16, $17) on conflict (phone_number_internal_id, call_id) do ",
                    "nothing",
                ))
                .bind(c.id)
                .bind(c.project_id)
                .bind(c.phone_number_internal_id)
                .bind(&c.call_id)
                .bind(&c.direction)
                .bind(&c.status)
                .bind(&c.from_number)
                .bind(&c.to_number)
                .bind(c.contact_id)
                .bind(c.conversation_id)
                .bind(c.started_at)
                .bind(c.session_started_at)
                .bind(c.ended_at)
                .bind(c.duration_seconds)
                .bind(&c.events)
                .bind(c.created_at)
                .bind(c.updated_at)
                .execute(&mut *self.tx)
                .await?;
                Ok(result.rows_affected() == 1)
            }

            async fn update_call(
                &mut self,
                c: &$crate::store::CallRow,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "update calls set direction = $2, status = $3, from_number = $4, \
                             to_number = $5, contact_id = $6, \
                             conversation_id = $7, session_started_at = $8, ended_at = $9, \
                             duration_seconds = $10, events = $11, \
                             updated_at = $12 where id = $1",
                )
                .bind(c.id)
                .bind(&c.direction)
                .bind(&c.status)
                .bind(&c.from_number)
                .bind(&c.to_number)
                .bind(c.contact_id)
                .bind(c.conversation_id)
                .bind(c.session_started_at)
                .bind(c.ended_at)
                .bind(c.duration_seconds)
                .bind(&c.events)
                .bind(c.updated_at)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn set_username(
                &mut self,
                number: uuid::Uuid,
                username: Option<&str>,
                status: Option<&str>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "update phone_numbers set username = $2, username_status = $3, \
                 updated_at = $4 where internal_id = $1",
                )
                .bind(number)
                .bind(username)
                .bind(status)
                .bind($crate::store::now())
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn set_pin_enabled(
                &mut self,
                number: uuid::Uuid,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "update phone_numbers set is_pin_enabled = $2, updated_at = $3 \
                     where internal_id = $1 and is_pin_enabled = $4",
                )
                .bind(number)
                .bind(true)
                .bind(now)
                .bind(false)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn queue_delivery(
                &mut self,
                d: &$crate::store::NewDelivery,
            ) -> $crate::store::StoreResult<()> {
                self.state.deliveries.push(d.clone());
                Ok(())
            }

            async fn queue_media(
                &mut self,
                m: &$crate::store::MediaFileRow,
            ) -> $crate::store::StoreResult<()> {
                // Written with the batch's other rows at commit, one statement for all.
                self.state.media.push(m.clone());
                Ok(())
            }

            async fn event_context(
                &mut self,
                contact_id: Option<uuid::Uuid>,
                conversation_id: Option<uuid::Uuid>,
            ) -> $crate::store::StoreResult<(
                Option<$crate::store::ContactRow>,
                Option<$crate::store::ConversationRow>,
            )> {
                let mut contact = contact_id.and_then(|id| self.state.contact_by_id(id));
                if let (None, Some(id)) = (&contact, contact_id) {
                    let sql = format!(
                        "select {} from contacts where id = $1",
                        $crate::store::columns::CONTACT_COLUMNS
                    );
                    contact = sqlx::query_as(&sql)
                        .bind(id)
                        .fetch_optional(&mut *self.tx)
                        .await?;
                }
                let mut conversation =
                    conversation_id.and_then(|id| self.state.conversation_by_id(id));
                if let (None, Some(id)) = (&conversation, conversation_id) {
                    let sql = format!(
                        "select {} from conversations where id = $1",
                        $crate::store::columns::CONVERSATION_COLUMNS
                    );
                    conversation = sqlx::query_as(&sql)
                        .bind(id)
                        .fetch_optional(&mut *self.tx)
                        .await?;
                }
                Ok((contact, conversation))
            }

            async fn buffer_webhook_event(
                &mut self,
                e: &$crate::store::BufferedEvent,
            ) -> $crate::store::StoreResult<()> {
                // Written with the batch's other rows at commit, one statement for all.
                self.state.buffered.push(e.clone());
                Ok(())
            }

            fn queued_media(&self) -> bool {
                !self.state.media.is_empty()
            }

            async fn commit(mut self: Box<Self>) -> $crate::store::StoreResult<()> {
                if let Some(sql) =
                    <$dialect as $crate::store::dialect::Dialect>::COMMIT_PLANS
                {
                    // A plain string goes as a simple query: nothing to prepare or cache.
                    sqlx::Executor::execute(&mut *self.tx, sql).await?;
                }
                // Every buffered row, and the `NOTIFY` of a transaction that queued deliveries.
                self.flush_buffered().await?;
                self.tx.commit().await?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_store_tx;
