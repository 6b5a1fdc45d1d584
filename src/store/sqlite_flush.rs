//! SQLite's commit-time writes: the rows a transaction buffered (see `tx_state`), written with
//! multi-row statements built per batch (SQLite prepares them cheaply).

use super::dialect::Dialect;
use super::sqlite::{SqliteStore, SqliteTx};

impl SqliteTx {
    /// Writes everything the transaction buffered. (Every writer is in this process: nothing
    /// to announce.)
    pub(super) async fn flush_buffered(&mut self) -> crate::store::StoreResult<()> {
        self.flush_conversations().await?;
        self.flush_pending().await?;
        self.flush_messages().await
    }

    /// Inserts the buffered append-only rows: parents before children (foreign keys).
    async fn flush_pending(&mut self) -> crate::store::StoreResult<()> {
        use crate::store::tx::INSERT_CHUNK;
        let events = std::mem::take(&mut self.state.events);
        let routes = std::mem::take(&mut self.state.routes);
        let kept_by_route = bodies_kept_by_routes(&events, &routes);
        for chunk in events.chunks(INSERT_CHUNK) {
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(concat!(
                "insert into webhook_events (",
                super::columns::webhook_event_columns!(),
                ") ",
            ));
            query.push_values(chunk, |mut row, e| {
                let body: &[u8] = if kept_by_route.contains(&e.id) {
                    &[]
                } else {
                    &e.body
                };
                row.push_bind(e.id)
                    .push_bind(e.received_at)
                    .push_bind(body)
                    .push_bind(&e.state)
                    .push_bind(&e.error);
            });
            query.build().execute(&mut *self.tx).await?;
        }
        for chunk in routes.chunks(INSERT_CHUNK) {
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(concat!(
                "insert into webhook_event_routes (",
                super::columns::event_route_columns!(),
                ") ",
            ));
            query.push_values(chunk, |mut row, r| {
                row.push_bind(r.id)
                    .push_bind(r.event_id)
                    .push_bind(r.project_id)
                    .push_bind(&r.phone_number_id)
                    .push_bind(&r.fields)
                    .push_bind(&r.payload)
                    .push_bind(r.created_at);
            });
            query.build().execute(&mut *self.tx).await?;
        }
        let deliveries = std::mem::take(&mut self.state.deliveries);
        for chunk in deliveries.chunks(INSERT_CHUNK) {
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "insert into webhook_deliveries (id, project_id, phone_number_internal_id, \
                 phone_number_id, event_id, route_id, fields, idempotency_key, message_wamids, \
                 status, attempts, next_attempt_at, replay_of, created_at, updated_at, webhook_id, \
                 event_type, payload, batch_size) ",
            );
            query.push_values(chunk, |mut row, d| {
                row.push_bind(d.id)
                    .push_bind(d.project_id)
                    .push_bind(d.phone_number_internal_id)
                    .push_bind(&d.phone_number_id)
                    .push_bind(d.event_id)
                    .push_bind(d.route_id)
                    .push_bind(&d.fields)
                    .push_bind(&d.idempotency_key)
                    .push_bind(&d.message_wamids)
                    .push_bind(d.status)
                    .push("0")
                    .push_bind(d.created_at)
                    .push_bind(d.replay_of)
                    .push_bind(d.created_at)
                    .push_bind(d.created_at)
                    .push_bind(d.webhook_id)
                    .push_bind(&d.event_type)
                    .push_bind(super::packed::at_rest(
                        <SqliteStore as Dialect>::PACK_PAYLOADS,
                        d.payload.as_deref(),
                    ))
                    .push_bind(d.batch_size);
            });
            query.build().execute(&mut *self.tx).await?;
        }
        let buffered = std::mem::take(&mut self.state.buffered);
        for chunk in buffered.chunks(INSERT_CHUNK) {
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "insert into webhook_buffered_events (id, webhook_id, conversation_id, project_id, \
                 phone_number_internal_id, phone_number_id, payload, flush_at, created_at) ",
            );
            query.push_values(chunk, |mut row, e| {
                row.push_bind(e.id)
                    .push_bind(e.webhook_id)
                    .push_bind(e.conversation_id)
                    .push_bind(e.project_id)
                    .push_bind(e.phone_number_internal_id)
                    .push_bind(&e.phone_number_id)
                    .push_bind(&e.payload)
                    .push_bind(e.flush_at)
                    .push_bind(e.created_at);
            });
            query.build().execute(&mut *self.tx).await?;
        }
        let media = std::mem::take(&mut self.state.media);
        for chunk in media.chunks(INSERT_CHUNK) {
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "insert into media_files (id, project_id, phone_number_internal_id, \
                 phone_number_id, wamid, direction, media_id, source_url, expected_sha256, \
                 content_type, filename, state, attempts, next_attempt_at, created_at, updated_at) ",
            );
            query.push_values(chunk, |mut row, m| {
                row.push_bind(m.id)
                    .push_bind(m.project_id)
                    .push_bind(m.phone_number_internal_id)
                    .push_bind(&m.phone_number_id)
                    .push_bind(&m.wamid)
                    .push_bind(&m.direction)
                    .push_bind(&m.media_id)
                    .push_bind(&m.source_url)
                    .push_bind(&m.expected_sha256)
                    .push_bind(&m.content_type)
                    .push_bind(&m.filename)
                    .push("'pending'")
                    .push("0")
                    .push_bind(m.created_at)
                    .push_bind(m.created_at)
                    .push_bind(m.created_at);
            });
            query.push(" on conflict (phone_number_internal_id, wamid) do nothing");
            query.build().execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Writes every changed conversation, one statement per chunk.
    ///
    /// SQLite rewrites a row's entry in every index that holds a column the update sets (or
    /// whose condition reads one), even when the value is the same: setting `status` and
    /// `active_second` on every message rewrote three index entries per conversation, about a
    /// seventh of ingest's WAL pages. Each is set only on the conversations where it changed.
    pub(super) async fn flush_conversations(&mut self) -> crate::store::StoreResult<()> {
        let writes = self.state.take_conversation_writes();
        for (set_status, set_active_second) in
            [(false, false), (false, true), (true, false), (true, true)]
        {
            let same: Vec<_> = writes
                .iter()
                .filter(|w| {
                    (w.status_changed, w.active_second_changed) == (set_status, set_active_second)
                })
                .collect();
            for chunk in same.chunks(crate::store::tx::INSERT_CHUNK) {
                self.update_conversations(chunk, set_status, set_active_second)
                    .await?;
            }
        }
        Ok(())
    }

    async fn update_conversations(
        &mut self,
        chunk: &[&crate::store::tx_state::ConversationWrite],
        set_status: bool,
        set_active_second: bool,
    ) -> crate::store::StoreResult<()> {
        let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "update conversations set last_active_at = v.last_active_at, \
             ended_at = v.ended_at, messages_count = v.messages_count, \
             last_message_id = v.last_message_id, last_message_type = v.last_message_type, \
             last_message_timestamp = v.last_message_timestamp, \
             last_message_text = v.last_message_text, last_inbound_at = v.last_inbound_at, \
             last_outbound_at = v.last_outbound_at, metadata = v.metadata, \
             updated_at = v.updated_at",
        );
        if set_status {
            query.push(", status = v.status");
        }
        if set_active_second {
            query.push(", active_second = v.active_second");
        }
        query.push(" from (");
        for (i, write) in chunk.iter().enumerate() {
            let c = &write.row;
            query.push(if i == 0 {
                "select "
            } else {
                " union all select "
            });
            query
                .push_bind(c.id)
                .push(" as id, ")
                .push_bind(c.status)
                .push(" as status, ")
                .push_bind(c.last_active_at)
                .push(" as last_active_at, ")
                .push_bind(c.ended_at)
                .push(" as ended_at, ")
                .push_bind(c.messages_count)
                .push(" as messages_count, ")
                .push_bind(&c.last_message_id)
                .push(" as last_message_id, ")
                .push_bind(&c.last_message_type)
                .push(" as last_message_type, ")
                .push_bind(&c.last_message_timestamp)
                .push(" as last_message_timestamp, ")
                .push_bind(&c.last_message_text)
                .push(" as last_message_text, ")
                .push_bind(c.last_inbound_at)
                .push(" as last_inbound_at, ")
                .push_bind(c.last_outbound_at)
                .push(" as last_outbound_at, ")
                .push_bind(&c.metadata)
                .push(" as metadata, ")
                .push_bind(c.updated_at)
                .push(" as updated_at, ")
                .push_bind(c.active_second())
                .push(" as active_second");
        }
        query.push(") as v where conversations.id = v.id");
        query.build().execute(&mut *self.tx).await?;
        Ok(())
    }

    /// Inserts the messages recorded in this transaction (a unique-key clash fails the
    /// batch: the writer then retries its jobs one by one) and writes changed ones.
    async fn flush_messages(&mut self) -> crate::store::StoreResult<()> {
        let (inserts, updates) = self.state.take_message_writes();
        for chunk in inserts.chunks(crate::store::tx::INSERT_CHUNK) {
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(concat!(
                "insert into messages (",
                super::columns::message_columns!(),
                ") ",
            ));
            query.push_values(chunk, |mut row, m| {
                row.push_bind(m.id)
                    .push_bind(m.project_id)
                    .push_bind(m.phone_number_internal_id)
                    .push_bind(&m.wamid)
                    .push_bind(m.direction)
                    .push_bind(&m.message_type)
                    .push_bind(&m.status)
                    .push_bind(m.processing_status)
                    .push_bind(&m.origin)
                    .push_bind(m.meta_timestamp)
                    .push_bind(m.contact_id)
                    .push_bind(m.conversation_id)
                    .push_bind(m.has_media)
                    .push_bind(&m.body)
                    .push_bind(&m.errors)
                    .push_bind(&m.statuses)
                    .push_bind(m.created_at)
                    .push_bind(m.updated_at)
                    .push_bind(&m.group_id)
                    .push_bind(&m.edits)
                    .push_bind(m.revoked_at);
            });
            query.build().execute(&mut *self.tx).await?;
        }
        // A message's contact and conversation are set when it is recorded and never change
        // (`TxState::update_message` checks), so the update leaves them out: setting the indexed
        // `conversation_id` would rewrite the message's entry in `messages_conversation_idx` on
        // every status (see `flush_conversations`).
        for chunk in updates.chunks(crate::store::tx::INSERT_CHUNK) {
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "update messages set status = v.status, processing_status = v.processing_status, \
                 errors = v.errors, statuses = v.statuses, updated_at = v.updated_at from (",
            );
            for (i, m) in chunk.iter().enumerate() {
                query.push(if i == 0 {
                    "select "
                } else {
                    " union all select "
                });
                query
                    .push_bind(m.id)
                    .push(" as id, ")
                    .push_bind(&m.status)
                    .push(" as status, ")
                    .push_bind(m.processing_status)
                    .push(" as processing_status, ")
                    .push_bind(&m.errors)
                    .push(" as errors, ")
                    .push_bind(&m.statuses)
                    .push(" as statuses, ")
                    .push_bind(m.updated_at)
                    .push(" as updated_at");
            }
            query.push(") as v where messages.id = v.id");
            query.build().execute(&mut *self.tx).await?;
        }
        Ok(())
    }
}

/// The events whose body is, byte for byte, the payload of their one route (a POST that
/// concerned one number: nearly every one). Their body is stored empty and read back from the
/// route (`columns::STORED_EVENT_BODY`): it was the second copy of every event's bytes, and
/// SQLite ingest pays for bytes written. The route keeps them because deliveries and replays
/// read them there.
fn bodies_kept_by_routes(
    events: &[crate::store::NewWebhookEvent],
    routes: &[crate::store::EventRouteRow],
) -> std::collections::HashSet<uuid::Uuid> {
    let mut routes_of: std::collections::HashMap<uuid::Uuid, Vec<&[u8]>> = Default::default();
    for route in routes {
        routes_of
            .entry(route.event_id)
            .or_default()
            .push(&route.payload);
    }
    events
        .iter()
        .filter(
            |e| matches!(routes_of.get(&e.id).map(Vec::as_slice), Some([only]) if *only == e.body),
        )
        .map(|e| e.id)
        .collect()
}
