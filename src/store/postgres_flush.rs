//! PostgreSQL's commit-time writes: every row a writer batch buffered (see `tx_state`) goes to
//! the database in one statement, a data-modifying `WITH` part per kind of row the batch holds,
//! each over arrays (`unnest`).
//!
//! One statement instead of one per table because a batch's time on PostgreSQL is as much
//! outside the executor as in it: every statement is a round trip, a backend wake-up and its
//! own bind and execute (stop 49's `pg_stat_statements` reading: executing and planning were
//! about half of the database's CPU per event). The parts are independent (an insert never
//! targets a row another part updates: `TxState` keeps new and changed messages apart), and
//! foreign keys are checked at the end of the statement, so the order PostgreSQL runs them in
//! does not matter. The statement's text depends only on which kinds of rows the batch holds,
//! so its plan is cached like a single table's (`Dialect::COMMIT_PLANS`).

use sqlx::postgres::{PgArguments, Postgres};
use sqlx::Arguments as _;

use super::outbox::DELIVERY_CHANNEL;
use super::postgres::PgTx;
use super::StoreResult;

/// A statement being built: its `WITH` parts and their parameters, bound in the order the
/// parts name them.
#[derive(Default)]
struct CommitStatement {
    parts: Vec<String>,
    args: PgArguments,
    named: usize,
    bound: usize,
}

impl CommitStatement {
    /// `unnest(...)` over the next parameters, one array per column type (`types`: separated by
    /// spaces); the caller then binds one array per type, in the same order.
    fn unnest(&mut self, types: &str) -> String {
        let arrays: Vec<String> = types
            .split_whitespace()
            .map(|t| {
                self.named += 1;
                format!("${}::{t}[]", self.named)
            })
            .collect();
        format!("unnest({})", arrays.join(", "))
    }

    /// Binds the next array: `value` of each of `rows`.
    fn column<'r, R, T>(&mut self, rows: &'r [R], value: impl Fn(&'r R) -> T) -> StoreResult<()>
    where
        Vec<T>: sqlx::Encode<'r, Postgres> + sqlx::Type<Postgres> + 'r,
    {
        let array: Vec<T> = rows.iter().map(value).collect();
        self.args.add(array).map_err(sqlx::Error::Encode)?;
        self.bound += 1;
        Ok(())
    }

    fn part(&mut self, sql: String) {
        self.parts.push(format!("w{} as ({sql})", self.parts.len()));
    }

    /// Runs the statement (nothing when there is nothing to write or announce); `notify`: the
    /// batch queued deliveries, so other instances' workers are woken at commit.
    async fn run(self, tx: &mut sqlx::PgConnection, notify: bool) -> StoreResult<()> {
        debug_assert_eq!(self.named, self.bound, "every named array is bound");
        let tail = if notify {
            format!("select pg_notify('{DELIVERY_CHANNEL}', '')")
        } else if self.parts.is_empty() {
            return Ok(());
        } else {
            "select 1".to_owned()
        };
        let sql = if self.parts.is_empty() {
            tail
        } else {
            format!("with {} {tail}", self.parts.join(", "))
        };
        sqlx::query_with(&sql, self.args).execute(tx).await?;
        Ok(())
    }
}

impl PgTx {
    /// Writes everything the transaction buffered, and wakes other instances' delivery workers
    /// if it queued deliveries: one statement.
    pub(super) async fn flush_buffered(&mut self) -> StoreResult<()> {
        let notify = !self.state.deliveries.is_empty() || !self.state.buffered.is_empty();
        let mut statement = CommitStatement::default();
        self.events_and_routes(&mut statement)?;
        self.deliveries(&mut statement)?;
        self.buffered_and_media(&mut statement)?;
        self.conversations(&mut statement)?;
        self.messages(&mut statement)?;
        statement.run(&mut self.tx, notify).await
    }

    /// Writes the conversations changed so far (before a conversation is inserted: one ended
    /// earlier in the transaction must be ended in the table first).
    pub(super) async fn flush_conversations(&mut self) -> StoreResult<()> {
        let mut statement = CommitStatement::default();
        self.conversations(&mut statement)?;
        statement.run(&mut self.tx, false).await
    }

    fn events_and_routes(&mut self, s: &mut CommitStatement) -> StoreResult<()> {
        let events = std::mem::take(&mut self.state.events);
        if !events.is_empty() {
            let rows = s.unnest("uuid timestamptz bytea text text");
            s.part(format!(
                "insert into webhook_events ({}) select * from {rows}",
                super::columns::webhook_event_columns!()
            ));
            s.column(&events, |e| e.id)?;
            s.column(&events, |e| e.received_at)?;
            s.column(&events, |e| e.body.as_slice())?;
            s.column(&events, |e| e.state.as_str())?;
            s.column(&events, |e| e.error.as_deref())?;
        }
        let routes = std::mem::take(&mut self.state.routes);
        if !routes.is_empty() {
            let rows = s.unnest("uuid uuid uuid text text bytea timestamptz");
            s.part(format!(
                "insert into webhook_event_routes ({}) select * from {rows}",
                super::columns::event_route_columns!()
            ));
            s.column(&routes, |r| r.id)?;
            s.column(&routes, |r| r.event_id)?;
            s.column(&routes, |r| r.project_id)?;
            s.column(&routes, |r| r.phone_number_id.as_str())?;
            s.column(&routes, |r| r.fields.as_str())?;
            s.column(&routes, |r| r.payload.as_slice())?;
            s.column(&routes, |r| r.created_at)?;
        }
        Ok(())
    }

    fn deliveries(&mut self, s: &mut CommitStatement) -> StoreResult<()> {
        let deliveries = std::mem::take(&mut self.state.deliveries);
        if deliveries.is_empty() {
            return Ok(());
        }
        let rows = s.unnest(
            "uuid uuid uuid text uuid uuid text text text uuid timestamptz \
             text uuid text bytea int4",
        );
        s.part(format!(
            "insert into webhook_deliveries (id, project_id, phone_number_internal_id, \
             phone_number_id, event_id, route_id, fields, idempotency_key, message_wamids, \
             status, attempts, next_attempt_at, replay_of, created_at, updated_at, webhook_id, \
             event_type, payload, batch_size) \
             select id, project_id, internal_id, pnid, event_id, route_id, fields, idem, wamids, \
             status, 0, created_at, replay_of, created_at, created_at, webhook_id, event_type, \
             payload, batch_size \
             from {rows} as d(id, project_id, internal_id, pnid, event_id, route_id, fields, \
             idem, wamids, replay_of, created_at, status, webhook_id, event_type, payload, \
             batch_size)"
        ));
        s.column(&deliveries, |d| d.id)?;
        s.column(&deliveries, |d| d.project_id)?;
        s.column(&deliveries, |d| d.phone_number_internal_id)?;
        s.column(&deliveries, |d| d.phone_number_id.as_str())?;
        s.column(&deliveries, |d| d.event_id)?;
        s.column(&deliveries, |d| d.route_id)?;
        s.column(&deliveries, |d| d.fields.as_str())?;
        s.column(&deliveries, |d| d.idempotency_key.as_str())?;
        s.column(&deliveries, |d| d.message_wamids.as_str())?;
        s.column(&deliveries, |d| d.replay_of)?;
        s.column(&deliveries, |d| d.created_at)?;
        s.column(&deliveries, |d| d.status.as_str())?;
        s.column(&deliveries, |d| d.webhook_id)?;
        s.column(&deliveries, |d| d.event_type.as_deref())?;
        s.column(&deliveries, |d| d.payload.as_deref())?;
        s.column(&deliveries, |d| d.batch_size)?;
        Ok(())
    }

    fn buffered_and_media(&mut self, s: &mut CommitStatement) -> StoreResult<()> {
        let buffered = std::mem::take(&mut self.state.buffered);
        if !buffered.is_empty() {
            let rows = s.unnest("uuid uuid uuid uuid uuid text bytea timestamptz timestamptz");
            s.part(format!(
                "insert into webhook_buffered_events (id, webhook_id, conversation_id, \
                 project_id, phone_number_internal_id, phone_number_id, payload, flush_at, \
                 created_at) select * from {rows}"
            ));
            s.column(&buffered, |e| e.id)?;
            s.column(&buffered, |e| e.webhook_id)?;
            s.column(&buffered, |e| e.conversation_id)?;
            s.column(&buffered, |e| e.project_id)?;
            s.column(&buffered, |e| e.phone_number_internal_id)?;
            s.column(&buffered, |e| e.phone_number_id.as_str())?;
            s.column(&buffered, |e| e.payload.as_slice())?;
            s.column(&buffered, |e| e.flush_at)?;
            s.column(&buffered, |e| e.created_at)?;
        }
        let media = std::mem::take(&mut self.state.media);
        if !media.is_empty() {
            let rows = s.unnest(
                "uuid uuid uuid text text text text text text text text \
                 timestamptz",
            );
            s.part(format!(
                "insert into media_files (id, project_id, phone_number_internal_id, \
                 phone_number_id, wamid, direction, media_id, source_url, expected_sha256, \
                 content_type, filename, state, attempts, next_attempt_at, created_at, \
                 updated_at) \
                 select id, project_id, internal_id, pnid, wamid, direction, media_id, \
                 source_url, expected, content_type, filename, 'pending', 0, created_at, \
                 created_at, created_at \
                 from {rows} as m(id, project_id, internal_id, pnid, wamid, direction, \
                 media_id, source_url, expected, content_type, filename, created_at) \
                 on conflict (phone_number_internal_id, wamid) do nothing"
            ));
            s.column(&media, |m| m.id)?;
            s.column(&media, |m| m.project_id)?;
            s.column(&media, |m| m.phone_number_internal_id)?;
            s.column(&media, |m| m.phone_number_id.as_str())?;
            s.column(&media, |m| m.wamid.as_str())?;
            s.column(&media, |m| m.direction.as_str())?;
            s.column(&media, |m| m.media_id.as_deref())?;
            s.column(&media, |m| m.source_url.as_deref())?;
            s.column(&media, |m| m.expected_sha256.as_deref())?;
            s.column(&media, |m| m.content_type.as_deref())?;
            s.column(&media, |m| m.filename.as_deref())?;
            s.column(&media, |m| m.created_at)?;
        }
        Ok(())
    }

    fn conversations(&mut self, s: &mut CommitStatement) -> StoreResult<()> {
        // PostgreSQL leaves index entries alone when the indexed values did not change (a HOT
        // update), whatever the statement sets.
        let rows: Vec<_> = self
            .state
            .take_conversation_writes()
            .into_iter()
            .map(|w| w.row)
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        let values = s.unnest(
            "uuid text timestamptz timestamptz int4 text text text text \
             timestamptz timestamptz text timestamptz timestamptz",
        );
        s.part(format!(
            "update conversations as c set status = v.status, \
             last_active_at = v.last_active_at, ended_at = v.ended_at, \
             messages_count = v.messages_count, last_message_id = v.last_message_id, \
             last_message_type = v.last_message_type, \
             last_message_timestamp = v.last_message_timestamp, \
             last_message_text = v.last_message_text, last_inbound_at = v.last_inbound_at, \
             last_outbound_at = v.last_outbound_at, metadata = v.metadata, \
             updated_at = v.updated_at, active_second = v.active_second \
             from {values} as v(id, status, last_active_at, ended_at, messages_count, \
             last_message_id, last_message_type, last_message_timestamp, last_message_text, \
             last_inbound_at, last_outbound_at, metadata, updated_at, active_second) \
             where c.id = v.id"
        ));
        s.column(&rows, |c| c.id)?;
        s.column(&rows, |c| c.status.as_str())?;
        s.column(&rows, |c| c.last_active_at)?;
        s.column(&rows, |c| c.ended_at)?;
        s.column(&rows, |c| c.messages_count)?;
        s.column(&rows, |c| c.last_message_id.as_deref())?;
        s.column(&rows, |c| c.last_message_type.as_deref())?;
        s.column(&rows, |c| c.last_message_timestamp.as_deref())?;
        s.column(&rows, |c| c.last_message_text.as_deref())?;
        s.column(&rows, |c| c.last_inbound_at)?;
        s.column(&rows, |c| c.last_outbound_at)?;
        s.column(&rows, |c| c.metadata.as_str())?;
        s.column(&rows, |c| c.updated_at)?;
        s.column(&rows, |c| c.active_second())?;
        Ok(())
    }

    fn messages(&mut self, s: &mut CommitStatement) -> StoreResult<()> {
        let (inserts, updates) = self.state.take_message_writes();
        if !inserts.is_empty() {
            let rows = s.unnest(
                "uuid uuid uuid text text text text text text int8 uuid uuid \
                 bool text text text timestamptz timestamptz text text timestamptz",
            );
            s.part(format!(
                "insert into messages ({}) select * from {rows}",
                super::columns::message_columns!()
            ));
            s.column(&inserts, |m| m.id)?;
            s.column(&inserts, |m| m.project_id)?;
            s.column(&inserts, |m| m.phone_number_internal_id)?;
            s.column(&inserts, |m| m.wamid.as_str())?;
            s.column(&inserts, |m| m.direction.as_str())?;
            s.column(&inserts, |m| m.message_type.as_str())?;
            s.column(&inserts, |m| m.status.as_str())?;
            s.column(&inserts, |m| m.processing_status.as_str())?;
            s.column(&inserts, |m| m.origin.as_str())?;
            s.column(&inserts, |m| m.meta_timestamp)?;
            s.column(&inserts, |m| m.contact_id)?;
            s.column(&inserts, |m| m.conversation_id)?;
            s.column(&inserts, |m| m.has_media)?;
            s.column(&inserts, |m| m.body.as_str())?;
            s.column(&inserts, |m| m.errors.as_deref())?;
            s.column(&inserts, |m| m.statuses.as_str())?;
            s.column(&inserts, |m| m.created_at)?;
            s.column(&inserts, |m| m.updated_at)?;
            s.column(&inserts, |m| m.group_id.as_deref())?;
            s.column(&inserts, |m| m.edits.as_deref())?;
            s.column(&inserts, |m| m.revoked_at)?;
        }
        if !updates.is_empty() {
            let values = s.unnest("uuid text text text text uuid uuid timestamptz");
            s.part(format!(
                "update messages as m set status = v.status, \
                 processing_status = v.processing_status, errors = v.errors, \
                 statuses = v.statuses, contact_id = v.contact_id, \
                 conversation_id = v.conversation_id, updated_at = v.updated_at \
                 from {values} as v(id, status, processing_status, errors, statuses, \
                 contact_id, conversation_id, updated_at) \
                 where m.id = v.id"
            ));
            s.column(&updates, |m| m.id)?;
            s.column(&updates, |m| m.status.as_str())?;
            s.column(&updates, |m| m.processing_status.as_str())?;
            s.column(&updates, |m| m.errors.as_deref())?;
            s.column(&updates, |m| m.statuses.as_str())?;
            s.column(&updates, |m| m.contact_id)?;
            s.column(&updates, |m| m.conversation_id)?;
            s.column(&updates, |m| m.updated_at)?;
        }
        Ok(())
    }
}
