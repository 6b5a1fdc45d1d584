//! What a write transaction remembers between its statements, so a batch of webhooks costs a
//! handful of statements instead of several per webhook.
//!
//! - **Append-only rows** (raw events, routes, outbox rows) are never read back by the
//!   transaction that writes them: buffered, inserted at commit with one multi-row statement
//!   per table.
//! - **Rows the transaction owns** are cached once read (or prefetched for the whole batch):
//!   messages of wamids it holds the key lock for, conversation rows it has locked, contacts. A
//!   write to a cached message or conversation only updates the cache; commit writes each
//!   changed row once, with one multi-row statement per table.
//!
//! Invariants: a cached "absent" message is only trusted for a key this transaction has locked
//! (every message insert takes that lock first), and a cached "absent" contact or conversation is
//! forgotten as soon as an insert finds it exists after all (another writer won the race).

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::records::{
    BufferedEvent, ContactRow, ConversationRow, EventRouteRow, MessageRow, NewWebhookEvent,
};
use super::status::ConversationStatus;
use super::NewDelivery;

type MessageKey = (Uuid, String);

/// Rows and locks one transaction holds until commit.
#[derive(Default)]
pub(crate) struct TxState {
    pub events: Vec<NewWebhookEvent>,
    pub routes: Vec<EventRouteRow>,
    pub deliveries: Vec<NewDelivery>,
    /// Events held for buffering webhooks, inserted at commit.
    pub buffered: Vec<BufferedEvent>,
    /// Media downloads to queue at commit.
    pub media: Vec<super::MediaFileRow>,
    /// `number/key` of every key this transaction has locked.
    pub locked: HashSet<String>,
    /// `Some(row)`: stored, or to be inserted at commit; `None`: known not stored.
    messages: HashMap<MessageKey, Option<MessageRow>>,
    /// Messages to insert at commit, in the order they were recorded.
    new_messages: Vec<MessageKey>,
    new_message_set: HashSet<MessageKey>,
    /// Stored messages whose state changed (written at commit).
    dirty_messages: Vec<MessageKey>,
    dirty_message_set: HashSet<MessageKey>,
    /// Whether statuses are parked for a message (known for locked keys).
    parked: HashMap<MessageKey, bool>,
    contacts: HashMap<Uuid, ContactRow>,
    by_wa_id: HashMap<MessageKey, Option<Uuid>>,
    by_bsuid: HashMap<MessageKey, Option<Uuid>>,
    /// The active conversation of (number, contact), `None` when it has none.
    conversations: HashMap<(Uuid, Uuid), Option<ConversationRow>>,
    /// Changed conversations by id (the last version wins), in first-changed order.
    dirty_conversations: Vec<Uuid>,
    dirty_conversation_rows: HashMap<Uuid, ConversationRow>,
    /// The indexed columns each changed conversation has in the table, when known: the row as
    /// this transaction found (or inserted, or last wrote) it before its first change.
    stored_conversation_keys: HashMap<Uuid, ConversationIndexKey>,
}

/// What a conversation's indexes hold besides its fixed (number, contact): `status` (the
/// condition of the one-active index, and the sweep index) and the activity second.
type ConversationIndexKey = (ConversationStatus, chrono::DateTime<chrono::Utc>);

/// A changed conversation to write at commit.
#[derive(Debug)]
pub(crate) struct ConversationWrite {
    pub row: ConversationRow,
    /// Its status differs from the table's (or may: true when not known).
    pub status_changed: bool,
    /// Its activity second differs from the table's (or may).
    pub active_second_changed: bool,
}

/// A cache answer: `Known(x)` is authoritative, `Unknown` means ask the database.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cached<T> {
    Known(T),
    Unknown,
}

/// The name a key lock is taken and remembered under.
pub(crate) fn lock_name(number: Uuid, key: &str) -> String {
    format!("{number}/{key}")
}

impl TxState {
    pub fn has_lock(&self, number: Uuid, key: &str) -> bool {
        self.locked.contains(&lock_name(number, key))
    }

    // ---- messages ----

    pub fn message(&self, number: Uuid, wamid: &str) -> Cached<Option<MessageRow>> {
        match self.messages.get(&(number, wamid.to_owned())) {
            Some(row) => Cached::Known(row.clone()),
            None => Cached::Unknown,
        }
    }

    pub fn parked(&self, number: Uuid, wamid: &str) -> Cached<bool> {
        match self.parked.get(&(number, wamid.to_owned())) {
            Some(parked) => Cached::Known(*parked),
            None => Cached::Unknown,
        }
    }

    /// Remembers what the database said about a message. `trusted_absent`: the caller holds the
    /// key lock (or is the only writer), so "not stored" stays true until this transaction
    /// inserts it.
    pub fn remember_message(
        &mut self,
        number: Uuid,
        wamid: &str,
        row: Option<MessageRow>,
        trusted_absent: bool,
    ) {
        if row.is_some() || trusted_absent {
            self.messages.insert((number, wamid.to_owned()), row);
        }
    }

    pub fn remember_parked(&mut self, number: Uuid, wamid: &str, parked: bool) {
        self.parked.insert((number, wamid.to_owned()), parked);
    }

    /// Queues a message insert when the cache knows it is absent. `None`: unknown, insert now;
    /// `Some(false)`: already stored.
    pub fn insert_message(&mut self, row: &MessageRow) -> Option<bool> {
        let key = (row.phone_number_internal_id, row.wamid.clone());
        match self.messages.get(&key) {
            Some(Some(_)) => Some(false),
            Some(None) => {
                self.messages.insert(key.clone(), Some(row.clone()));
                if self.new_message_set.insert(key.clone()) {
                    self.new_messages.push(key);
                }
                Some(true)
            }
            None => None,
        }
    }

    /// Records a changed message; `false` when it is not cached (write it now).
    pub fn update_message(&mut self, row: &MessageRow) -> bool {
        let key = (row.phone_number_internal_id, row.wamid.clone());
        let Some(Some(cached)) = self.messages.get_mut(&key) else {
            return false;
        };
        // SQLite's commit-time update does not write them (an indexed column set to the same
        // value still rewrites its index entry).
        debug_assert_eq!(
            (cached.contact_id, cached.conversation_id),
            (row.contact_id, row.conversation_id),
            "a stored message's contact and conversation never change"
        );
        *cached = row.clone();
        if !self.new_message_set.contains(&key) && self.dirty_message_set.insert(key.clone()) {
            self.dirty_messages.push(key);
        }
        true
    }

    /// Records a message whose content changed (an edit or a revoke): `true` when its insert is
    /// still pending (the insert at commit carries the new content); otherwise the cached copy,
    /// if any, is replaced and the caller writes the content now (the commit-time update only
    /// writes a message's state).
    pub fn rewrite_message(&mut self, row: &MessageRow) -> bool {
        let key = (row.phone_number_internal_id, row.wamid.clone());
        if let Some(Some(cached)) = self.messages.get_mut(&key) {
            *cached = row.clone();
        }
        self.new_message_set.contains(&key)
    }

    /// The messages to insert and to update at commit.
    pub fn take_message_writes(&mut self) -> (Vec<MessageRow>, Vec<MessageRow>) {
        let row = |key: &MessageKey| self.messages.get(key).cloned().flatten();
        let inserts = self.new_messages.iter().filter_map(row).collect();
        let updates = self.dirty_messages.iter().filter_map(row).collect();
        self.new_messages.clear();
        self.new_message_set.clear();
        self.dirty_messages.clear();
        self.dirty_message_set.clear();
        (inserts, updates)
    }

    // ---- contacts ----

    pub fn contact_by_wa_id(&self, number: Uuid, wa_id: &str) -> Cached<Option<ContactRow>> {
        self.contact_via(&self.by_wa_id, number, wa_id)
    }

    pub fn contact_by_bsuid(&self, number: Uuid, bsuid: &str) -> Cached<Option<ContactRow>> {
        self.contact_via(&self.by_bsuid, number, bsuid)
    }

    fn contact_via(
        &self,
        index: &HashMap<MessageKey, Option<Uuid>>,
        number: Uuid,
        key: &str,
    ) -> Cached<Option<ContactRow>> {
        match index.get(&(number, key.to_owned())) {
            Some(Some(id)) => match self.contacts.get(id) {
                Some(row) => Cached::Known(Some(row.clone())),
                None => Cached::Unknown,
            },
            Some(None) => Cached::Known(None),
            None => Cached::Unknown,
        }
    }

    /// Remembers a contact row (found, inserted or updated), re-indexing its identifiers.
    pub fn remember_contact(&mut self, row: &ContactRow) {
        let number = row.phone_number_internal_id;
        self.by_wa_id.retain(|_, id| *id != Some(row.id));
        self.by_bsuid.retain(|_, id| *id != Some(row.id));
        if let Some(wa_id) = &row.wa_id {
            self.by_wa_id.insert((number, wa_id.clone()), Some(row.id));
        }
        if let Some(bsuid) = &row.business_scoped_user_id {
            self.by_bsuid.insert((number, bsuid.clone()), Some(row.id));
        }
        self.contacts.insert(row.id, row.clone());
    }

    pub fn remember_no_contact_by_wa_id(&mut self, number: Uuid, wa_id: &str) {
        self.by_wa_id
            .entry((number, wa_id.to_owned()))
            .or_insert(None);
    }

    pub fn remember_no_contact_by_bsuid(&mut self, number: Uuid, bsuid: &str) {
        self.by_bsuid
            .entry((number, bsuid.to_owned()))
            .or_insert(None);
    }

    /// An insert found the contact exists after all: forget what said it did not.
    pub fn forget_absent_contact(&mut self, row: &ContactRow) {
        let number = row.phone_number_internal_id;
        for (index, key) in [
            (&mut self.by_wa_id, &row.wa_id),
            (&mut self.by_bsuid, &row.business_scoped_user_id),
        ] {
            if let Some(key) = key {
                let key = (number, key.clone());
                if matches!(index.get(&key), Some(None)) {
                    index.remove(&key);
                }
            }
        }
    }

    // ---- conversations ----

    pub fn active_conversation(
        &self,
        number: Uuid,
        contact: Uuid,
    ) -> Cached<Option<ConversationRow>> {
        match self.conversations.get(&(number, contact)) {
            Some(row) => Cached::Known(row.clone()),
            None => Cached::Unknown,
        }
    }

    /// Remembers a contact's active conversation (found locked, or inserted), or that it has none.
    pub fn remember_conversation(
        &mut self,
        number: Uuid,
        contact: Uuid,
        row: Option<ConversationRow>,
    ) {
        self.conversations.insert((number, contact), row);
    }

    /// An insert found an active conversation after all.
    pub fn forget_conversation(&mut self, number: Uuid, contact: Uuid) {
        self.conversations.remove(&(number, contact));
    }

    /// Records a changed conversation, written at commit. Only conversations this transaction
    /// has locked pass through here (found `for update`, or inserted by it).
    pub fn update_conversation(&mut self, row: &ConversationRow) {
        let key = (row.phone_number_internal_id, row.contact_id);
        if !self.dirty_conversation_rows.contains_key(&row.id) {
            // Not changed since it was read, inserted or last written: the cached version is
            // the table's.
            if let Some(Some(stored)) = self.conversations.get(&key) {
                if stored.id == row.id {
                    self.stored_conversation_keys
                        .insert(row.id, (stored.status, stored.active_second()));
                }
            }
        }
        if row.status == ConversationStatus::Active {
            self.conversations.insert(key, Some(row.clone()));
        } else if matches!(self.conversations.get(&key), Some(Some(c)) if c.id == row.id) {
            self.conversations.insert(key, None);
        }
        if self
            .dirty_conversation_rows
            .insert(row.id, row.clone())
            .is_none()
        {
            self.dirty_conversations.push(row.id);
        }
    }

    /// A contact this transaction has read or written, by id.
    pub fn contact_by_id(&self, id: Uuid) -> Option<ContactRow> {
        self.contacts.get(&id).cloned()
    }

    /// A conversation this transaction has read or written, by id (its latest version).
    pub fn conversation_by_id(&self, id: Uuid) -> Option<ConversationRow> {
        self.dirty_conversation_rows.get(&id).cloned().or_else(|| {
            self.conversations
                .values()
                .flatten()
                .find(|c| c.id == id)
                .cloned()
        })
    }

    pub fn take_conversation_writes(&mut self) -> Vec<ConversationWrite> {
        let writes = self
            .dirty_conversations
            .iter()
            .filter_map(|id| {
                let row = self.dirty_conversation_rows.get(id)?.clone();
                let stored = self.stored_conversation_keys.get(id);
                Some(ConversationWrite {
                    status_changed: stored.is_none_or(|(status, _)| *status != row.status),
                    active_second_changed: stored
                        .is_none_or(|(_, second)| *second != row.active_second()),
                    row,
                })
            })
            .collect();
        self.dirty_conversations.clear();
        self.dirty_conversation_rows.clear();
        self.stored_conversation_keys.clear();
        writes
    }
}

/// What a batch will touch, so it can be read with a few statements up front.
#[derive(Debug, Default)]
pub struct Prefetch {
    /// (number, wamid) of every message the batch records or updates (also its lock keys).
    pub messages: Vec<(Uuid, String)>,
    /// (number, wa_id) and (number, BSUID) of the users it is about.
    pub wa_ids: Vec<(Uuid, String)>,
    pub bsuids: Vec<(Uuid, String)>,
}

/// What the database returned for a [`Prefetch`].
#[derive(Debug, Default)]
pub(crate) struct Prefetched {
    pub messages: Vec<MessageRow>,
    pub parked: Vec<(Uuid, String)>,
    pub contacts: Vec<ContactRow>,
    pub conversations: Vec<ConversationRow>,
}

impl TxState {
    /// Fills the cache from a prefetch; every key asked for becomes known, found or not.
    pub fn remember_prefetched(&mut self, asked: &Prefetch, got: Prefetched) {
        let parked: HashSet<(Uuid, String)> = got.parked.into_iter().collect();
        // A batch asks for a key once per job that touches it (a message and its statuses), so
        // look rows up rather than take them: the second ask must not read as "absent".
        let found: HashMap<(Uuid, String), MessageRow> = got
            .messages
            .into_iter()
            .map(|m| ((m.phone_number_internal_id, m.wamid.clone()), m))
            .collect();
        for key in &asked.messages {
            let row = found.get(key).cloned();
            self.remember_message(key.0, &key.1, row, true);
            self.remember_parked(key.0, &key.1, parked.contains(key));
        }
        let contact_ids: Vec<(Uuid, Uuid)> = got
            .contacts
            .iter()
            .map(|c| (c.phone_number_internal_id, c.id))
            .collect();
        for contact in &got.contacts {
            self.remember_contact(contact);
        }
        for (number, wa_id) in &asked.wa_ids {
            self.remember_no_contact_by_wa_id(*number, wa_id);
        }
        for (number, bsuid) in &asked.bsuids {
            self.remember_no_contact_by_bsuid(*number, bsuid);
        }
        // A contact found by both its wa_id and its BSUID comes back twice; same rule.
        let active: HashMap<(Uuid, Uuid), ConversationRow> = got
            .conversations
            .into_iter()
            .map(|c| ((c.phone_number_internal_id, c.contact_id), c))
            .collect();
        for key in contact_ids {
            let row = active.get(&key).cloned();
            self.remember_conversation(key.0, key.1, row);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn message(number: Uuid, wamid: &str) -> MessageRow {
        let now = Utc::now();
        MessageRow {
            id: Uuid::now_v7(),
            project_id: Uuid::nil(),
            phone_number_internal_id: number,
            wamid: wamid.into(),
            direction: super::super::Direction::Inbound,
            message_type: "text".into(),
            status: "delivered".into(),
            processing_status: super::super::ProcessingStatus::Completed,
            origin: "cloud_api".into(),
            meta_timestamp: 0,
            contact_id: None,
            conversation_id: None,
            has_media: false,
            body: "{}".into(),
            errors: None,
            statuses: "[]".into(),
            created_at: now,
            updated_at: now,
            group_id: None,
            edits: None,
            revoked_at: None,
        }
    }

    fn contact(number: Uuid, wa_id: Option<&str>, bsuid: Option<&str>) -> ContactRow {
        let now = Utc::now();
        ContactRow {
            id: Uuid::now_v7(),
            project_id: Uuid::nil(),
            phone_number_internal_id: number,
            wa_id: wa_id.map(Into::into),
            business_scoped_user_id: bsuid.map(Into::into),
            parent_business_scoped_user_id: None,
            username: None,
            profile_name: None,
            display_name: None,
            customer_id: None,
            metadata: "{}".into(),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn an_unknown_message_is_never_assumed_absent() {
        let mut state = TxState::default();
        let number = Uuid::now_v7();
        state.remember_message(number, "w1", None, false);
        assert_eq!(state.message(number, "w1"), Cached::Unknown);
        assert_eq!(state.insert_message(&message(number, "w1")), None);
    }

    #[test]
    fn a_message_recorded_then_updated_is_inserted_once_in_its_last_state() {
        let mut state = TxState::default();
        let number = Uuid::now_v7();
        state.remember_message(number, "w1", None, true);
        let mut row = message(number, "w1");
        assert_eq!(state.insert_message(&row), Some(true));
        assert_eq!(
            state.insert_message(&row),
            Some(false),
            "duplicate in the batch"
        );
        row.status = "read".into();
        assert!(state.update_message(&row));
        let (inserts, updates) = state.take_message_writes();
        assert_eq!(inserts.len(), 1);
        assert_eq!(inserts[0].status, "read");
        assert!(updates.is_empty());
    }

    #[test]
    fn a_stored_message_changed_twice_is_written_once() {
        let mut state = TxState::default();
        let number = Uuid::now_v7();
        let mut row = message(number, "w1");
        state.remember_message(number, "w1", Some(row.clone()), false);
        row.status = "sent".into();
        assert!(state.update_message(&row));
        row.status = "delivered".into();
        assert!(state.update_message(&row));
        let (inserts, updates) = state.take_message_writes();
        assert!(inserts.is_empty());
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].status, "delivered");
    }

    #[test]
    fn a_contact_that_changes_identifiers_is_found_only_by_the_new_ones() {
        let mut state = TxState::default();
        let number = Uuid::now_v7();
        let mut contact = contact(number, Some("15550001"), None);
        state.remember_contact(&contact);
        state.remember_no_contact_by_bsuid(number, "US.1");
        contact.wa_id = None;
        contact.business_scoped_user_id = Some("US.1".into());
        state.remember_contact(&contact);
        assert_eq!(state.contact_by_wa_id(number, "15550001"), Cached::Unknown);
        assert_eq!(
            state.contact_by_bsuid(number, "US.1"),
            Cached::Known(Some(contact.clone()))
        );
        // An insert that lost a race forgets the "absent" it was based on.
        state.remember_no_contact_by_wa_id(number, "15550002");
        contact.wa_id = Some("15550002".into());
        state.forget_absent_contact(&contact);
        assert_eq!(state.contact_by_wa_id(number, "15550002"), Cached::Unknown);
    }

    /// A batch asks for a wamid once per job (the message and each of its statuses) and can get
    /// a contact back twice (by wa_id and by BSUID); every ask must see the row. (Taking the row
    /// on the first ask made the later ones "absent": statuses parked for a stored message.)
    #[test]
    fn rows_asked_for_twice_in_a_prefetch_are_found_for_every_ask() {
        let mut state = TxState::default();
        let number = Uuid::now_v7();
        let now = Utc::now();
        let stored = message(number, "w1");
        let contact = contact(number, Some("15550001"), Some("US.1"));
        let mut conversation = ConversationRow::opened(Uuid::nil(), number, contact.id, now);
        conversation.messages_count = 1;
        let key = (number, "w1".to_owned());
        let asked = Prefetch {
            messages: vec![key.clone(), key.clone(), key],
            wa_ids: vec![(number, "15550001".into())],
            bsuids: vec![(number, "US.1".into())],
        };
        let got = Prefetched {
            messages: vec![stored.clone()],
            parked: Vec::new(),
            contacts: vec![contact.clone(), contact.clone()],
            conversations: vec![conversation.clone()],
        };
        state.remember_prefetched(&asked, got);
        assert_eq!(state.message(number, "w1"), Cached::Known(Some(stored)));
        assert_eq!(state.parked(number, "w1"), Cached::Known(false));
        assert_eq!(
            state.active_conversation(number, contact.id),
            Cached::Known(Some(conversation))
        );
    }

    /// SQLite sets a conversation's indexed columns only when they changed, which it learns
    /// from here: against the row as read (or last written), unknown rows counted as changed.
    #[test]
    fn conversation_writes_say_which_indexed_columns_changed() {
        let mut state = TxState::default();
        let number = Uuid::now_v7();
        let at = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00.100Z")
            .unwrap()
            .with_timezone(&Utc);
        let stored = ConversationRow::opened(Uuid::nil(), number, Uuid::now_v7(), at);
        let key = (number, stored.contact_id);
        state.remember_conversation(key.0, key.1, Some(stored.clone()));
        let changed = |w: &ConversationWrite| (w.status_changed, w.active_second_changed);

        let mut row = stored.clone();
        row.messages_count += 1;
        row.last_active_at = at + chrono::Duration::milliseconds(800);
        state.update_conversation(&row);
        row.messages_count += 1;
        state.update_conversation(&row);
        let writes = state.take_conversation_writes();
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].row.messages_count, 2);
        assert_eq!(changed(&writes[0]), (false, false), "the same second");

        // The written row is now the table's: a later second moves it.
        row.last_active_at = at + chrono::Duration::seconds(1);
        state.update_conversation(&row);
        assert_eq!(changed(&state.take_conversation_writes()[0]), (false, true));

        row.status = ConversationStatus::Ended;
        state.update_conversation(&row);
        assert_eq!(changed(&state.take_conversation_writes()[0]), (true, false));

        // Ended, it is no longer cached as the contact's active one: nothing to compare with.
        row.metadata = "{\"a\":1}".into();
        state.update_conversation(&row);
        assert_eq!(changed(&state.take_conversation_writes()[0]), (true, true));
    }
}
