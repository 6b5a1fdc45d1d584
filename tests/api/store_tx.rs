//! Store conformance for write transactions (`StoreTx`) and keyset lists, on both backends.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;
use wagate::store::{
    now, CallRow, ContactRow, ConversationRow, Direction, DynStore, MessageFilter, MessageRow,
    Prefetch, ProcessingStatus, Seek, StoreInspect as _,
};

use crate::store::new_number;
use crate::store_tests;

/// A project with one connected number: `(project, number internal id)`.
pub(crate) async fn number(store: &DynStore) -> (Uuid, Uuid) {
    let project = store.create_project("p").await.unwrap();
    let n = store
        .insert_phone_number(new_number(project.id, "111", "900", "t1"))
        .await
        .unwrap();
    (project.id, n.internal_id)
}

fn contact(project: Uuid, number: Uuid, wa_id: &str, at: DateTime<Utc>) -> ContactRow {
    ContactRow {
        id: Uuid::now_v7(),
        project_id: project,
        phone_number_internal_id: number,
        wa_id: Some(wa_id.into()),
        business_scoped_user_id: Some(format!("US.{wa_id}")),
        parent_business_scoped_user_id: None,
        username: None,
        profile_name: Some("Ann".into()),
        display_name: None,
        customer_id: None,
        metadata: "{}".into(),
        created_at: at,
        updated_at: at,
    }
}

pub(crate) fn message(project: Uuid, number: Uuid, wamid: &str, at: DateTime<Utc>) -> MessageRow {
    MessageRow {
        id: Uuid::now_v7(),
        project_id: project,
        phone_number_internal_id: number,
        wamid: wamid.into(),
        direction: Direction::Inbound,
        message_type: "text".into(),
        status: "delivered".into(),
        processing_status: ProcessingStatus::Pending,
        origin: "cloud_api".into(),
        meta_timestamp: at.timestamp(),
        contact_id: None,
        conversation_id: None,
        has_media: false,
        body: "{}".into(),
        errors: None,
        statuses: "[]".into(),
        created_at: at,
        updated_at: at,
        group_id: None,
        edits: None,
        revoked_at: None,
    }
}

fn call(project: Uuid, number: Uuid, call_id: &str, at: DateTime<Utc>) -> CallRow {
    CallRow {
        id: Uuid::now_v7(),
        project_id: project,
        phone_number_internal_id: number,
        call_id: call_id.into(),
        direction: Direction::Inbound,
        status: "ringing".into(),
        from_number: Some("15550001".into()),
        to_number: None,
        contact_id: None,
        conversation_id: None,
        started_at: at,
        session_started_at: None,
        ended_at: None,
        duration_seconds: None,
        events: "[]".into(),
        created_at: at,
        updated_at: at,
    }
}

/// Contacts, conversations, messages and calls written in one transaction read back inside it
/// and, after commit, outside it; second inserts of the same keys are refused without error.
async fn tx_writes_and_reads_back(store: DynStore) {
    let (project, number) = number(&store).await;
    let at = now();
    let mut tx = store.begin().await.unwrap();
    tx.lock_key(number, "wamid.1").await.unwrap();
    assert_eq!(
        tx.find_contact_by_wa_id(number, "1555").await.unwrap(),
        None
    );
    let c = contact(project, number, "1555", at);
    assert!(tx.insert_contact(&c).await.unwrap());
    assert!(!tx
        .insert_contact(&contact(project, number, "1555", at))
        .await
        .unwrap());
    assert_eq!(
        tx.find_contact_by_wa_id(number, "1555").await.unwrap(),
        Some(c.clone())
    );
    assert_eq!(
        tx.find_contact_by_bsuid(number, "US.1555").await.unwrap(),
        Some(c.clone())
    );
    let mut updated = c.clone();
    updated.display_name = Some("Annie".into());
    tx.update_contact(&updated).await.unwrap();

    let conv = ConversationRow::opened(project, number, c.id, at);
    assert!(tx.insert_conversation(&conv).await.unwrap());
    let second = ConversationRow::opened(project, number, c.id, at);
    assert!(
        !tx.insert_conversation(&second).await.unwrap(),
        "one active per contact"
    );
    let mut conv2 = tx
        .find_active_conversation(number, c.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conv2.id, conv.id);
    conv2.messages_count = 1;
    conv2.last_message_id = Some("wamid.1".into());
    tx.update_conversation(&conv2).await.unwrap();

    let mut m = message(project, number, "wamid.1", at);
    m.contact_id = Some(c.id);
    m.conversation_id = Some(conv.id);
    assert_eq!(
        tx.message_presence(number, "wamid.1").await.unwrap(),
        (false, false)
    );
    assert!(tx.insert_message(&m).await.unwrap());
    assert!(!tx
        .insert_message(&message(project, number, "wamid.1", at))
        .await
        .unwrap());
    assert_eq!(
        tx.find_message(number, "wamid.1").await.unwrap(),
        Some(m.clone())
    );
    let mut read = m.clone();
    read.status = "read".into();
    read.statuses = r#"[{"status":"read"}]"#.into();
    tx.update_message_state(&read).await.unwrap();
    assert_eq!(
        tx.message_presence(number, "wamid.1").await.unwrap(),
        (true, false)
    );

    let k = call(project, number, "call.1", at);
    assert!(tx.insert_call(&k).await.unwrap());
    assert!(!tx
        .insert_call(&call(project, number, "call.1", at))
        .await
        .unwrap());
    let mut answered = tx.find_call(number, "call.1").await.unwrap().unwrap();
    assert_eq!(answered, k);
    answered.status = "answered".into();
    answered.session_started_at = Some(at);
    tx.update_call(&answered).await.unwrap();
    tx.insert_identity_change(c.id, "wa_id", None, Some("1555"), at)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    assert_eq!(store.contacts_of(number).await.unwrap(), vec![updated]);
    assert_eq!(
        store.conversations_of(number).await.unwrap(),
        vec![conv2.clone()]
    );
    assert_eq!(store.find_conversation(conv.id).await.unwrap(), Some(conv2));
    assert_eq!(store.messages_of(number).await.unwrap(), vec![read.clone()]);
    assert_eq!(
        store.find_message(number, "wamid.1").await.unwrap(),
        Some(read)
    );
    assert_eq!(
        store.calls_of(number).await.unwrap(),
        vec![answered.clone()]
    );
    assert_eq!(
        store.find_call(number, "call.1").await.unwrap(),
        Some(answered)
    );
    assert_eq!(
        store.identity_changes(c.id).await.unwrap(),
        vec![("wa_id".to_string(), None, Some("1555".to_string()))]
    );
}

/// A transaction dropped without commit leaves nothing behind, buffered rows included.
async fn dropped_tx_rolls_back(store: DynStore) {
    let (project, number) = number(&store).await;
    let at = now();
    let mut tx = store.begin().await.unwrap();
    let c = contact(project, number, "1555", at);
    tx.insert_contact(&c).await.unwrap();
    tx.insert_conversation(&ConversationRow::opened(project, number, c.id, at))
        .await
        .unwrap();
    tx.lock_key(number, "wamid.1").await.unwrap();
    tx.insert_message(&message(project, number, "wamid.1", at))
        .await
        .unwrap();
    tx.insert_call(&call(project, number, "call.1", at))
        .await
        .unwrap();
    drop(tx);
    assert!(store.contacts_of(number).await.unwrap().is_empty());
    assert!(store.conversations_of(number).await.unwrap().is_empty());
    assert!(store.messages_of(number).await.unwrap().is_empty());
    assert!(store.calls_of(number).await.unwrap().is_empty());
    // The store is usable afterwards (no lock or writer slot left behind).
    let mut tx = store.begin().await.unwrap();
    tx.lock_keys(&[(number, "wamid.1".into()), (number, "wamid.2".into())])
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Statuses that arrive before their message are parked, found by `message_presence`, and taken
/// once, oldest first; the sweeper drops old ones.
async fn parked_statuses(store: DynStore) {
    let (_, number) = number(&store).await;
    let at = now();
    let mut tx = store.begin().await.unwrap();
    tx.lock_key(number, "wamid.9").await.unwrap();
    tx.park_status(number, "wamid.9", "delivered", at)
        .await
        .unwrap();
    tx.park_status(number, "wamid.9", "read", at).await.unwrap();
    assert_eq!(
        tx.message_presence(number, "wamid.9").await.unwrap(),
        (false, true)
    );
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.message_presence(number, "wamid.9").await.unwrap(),
        (false, true)
    );
    let taken = tx.take_parked_statuses(number, "wamid.9").await.unwrap();
    assert_eq!(
        taken.iter().map(|p| p.status.as_str()).collect::<Vec<_>>(),
        ["delivered", "read"]
    );
    assert!(tx
        .take_parked_statuses(number, "wamid.9")
        .await
        .unwrap()
        .is_empty());
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    tx.park_status(number, "wamid.8", "sent", at).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.delete_parked_statuses_before(at).await.unwrap(), 0);
    let later = at + Duration::seconds(1);
    assert_eq!(store.delete_parked_statuses_before(later).await.unwrap(), 1);
}

/// A prefetch (of messages, parked statuses, contacts and conversations) changes no answer:
/// reads after it return what plain reads return, and absent rows stay absent until inserted.
async fn prefetch_then_cached_reads(store: DynStore) {
    let (project, number) = number(&store).await;
    let at = now();
    let c = contact(project, number, "1555", at);
    let m = message(project, number, "wamid.1", at);
    let conv = ConversationRow::opened(project, number, c.id, at);
    let mut tx = store.begin().await.unwrap();
    tx.insert_contact(&c).await.unwrap();
    tx.insert_conversation(&conv).await.unwrap();
    tx.lock_key(number, "wamid.1").await.unwrap();
    tx.insert_message(&m).await.unwrap();
    tx.commit().await.unwrap();

    let batch = Prefetch {
        messages: vec![(number, "wamid.1".into()), (number, "wamid.2".into())],
        wa_ids: vec![(number, "1555".into()), (number, "1666".into())],
        bsuids: vec![(number, "US.1555".into())],
    };
    let mut tx = store.begin().await.unwrap();
    tx.lock_keys(&batch.messages).await.unwrap();
    tx.prefetch(&batch).await.unwrap();
    assert_eq!(tx.find_message(number, "wamid.1").await.unwrap(), Some(m));
    assert_eq!(tx.find_message(number, "wamid.2").await.unwrap(), None);
    assert_eq!(
        tx.find_contact_by_wa_id(number, "1555").await.unwrap(),
        Some(c.clone())
    );
    assert_eq!(
        tx.find_contact_by_bsuid(number, "US.1555").await.unwrap(),
        Some(c.clone())
    );
    assert_eq!(
        tx.find_contact_by_wa_id(number, "1666").await.unwrap(),
        None
    );
    assert_eq!(
        tx.find_active_conversation(number, c.id).await.unwrap(),
        Some(conv)
    );
    let fresh = message(project, number, "wamid.2", at);
    assert!(tx.insert_message(&fresh).await.unwrap());
    assert_eq!(
        tx.find_message(number, "wamid.2").await.unwrap(),
        Some(fresh.clone())
    );
    let other = contact(project, number, "1666", at);
    assert!(tx.insert_contact(&other).await.unwrap());
    assert_eq!(
        tx.find_contact_by_wa_id(number, "1666").await.unwrap(),
        Some(other)
    );
    tx.commit().await.unwrap();
    assert_eq!(
        store.find_message(number, "wamid.2").await.unwrap(),
        Some(fresh)
    );
}

/// A prefetch by one kind of key only (phone numbers, or BSUIDs: PostgreSQL then asks with
/// one branch instead of two) finds the contact and its conversation by that key.
async fn prefetch_by_one_kind_of_key(store: DynStore) {
    let (project, number) = number(&store).await;
    let at = now();
    let c = contact(project, number, "1777", at);
    let conv = ConversationRow::opened(project, number, c.id, at);
    let mut tx = store.begin().await.unwrap();
    tx.insert_contact(&c).await.unwrap();
    tx.insert_conversation(&conv).await.unwrap();
    tx.commit().await.unwrap();

    let by_wa_id = Prefetch {
        wa_ids: vec![(number, "1777".into()), (number, "1888".into())],
        ..Prefetch::default()
    };
    let by_bsuid = Prefetch {
        bsuids: vec![(number, "US.1777".into())],
        ..Prefetch::default()
    };
    for batch in [by_wa_id, by_bsuid] {
        let mut tx = store.begin().await.unwrap();
        tx.prefetch(&batch).await.unwrap();
        assert_eq!(
            tx.find_contact_by_wa_id(number, "1777").await.unwrap(),
            Some(c.clone())
        );
        assert_eq!(
            tx.find_contact_by_bsuid(number, "US.1777").await.unwrap(),
            Some(c.clone())
        );
        assert_eq!(
            tx.find_contact_by_wa_id(number, "1888").await.unwrap(),
            None
        );
        assert_eq!(
            tx.find_active_conversation(number, c.id).await.unwrap(),
            Some(conv.clone())
        );
        tx.commit().await.unwrap();
    }
}

/// A batch over several numbers (PostgreSQL looks their keys up as pairs, one number's as an
/// array; SQLite asks per number): each number gets exactly its own rows and parked statuses,
/// and a key asked of one number is neither taken as absent nor answered with another number's
/// row when read for a number that did not ask it.
async fn prefetch_over_several_numbers(store: DynStore) {
    let (project, a) = number(&store).await;
    let b = store
        .insert_phone_number(new_number(project, "222", "901", "t2"))
        .await
        .unwrap()
        .internal_id;
    let at = now();
    let ann = contact(project, a, "1777", at);
    let bob = contact(project, b, "1888", at);
    // Number a's contact with the key the batch asks of number b, and a's message with b's
    // wamid: both in the product, neither asked.
    let other = contact(project, a, "1888", at);
    let conversations = [&ann, &bob, &other]
        .map(|c| ConversationRow::opened(project, c.phone_number_internal_id, c.id, at));
    let on_a = message(project, a, "wamid.a", at);
    let on_b = message(project, b, "wamid.b", at);
    let stray = message(project, a, "wamid.b", at);
    let mut tx = store.begin().await.unwrap();
    for c in [&ann, &bob, &other] {
        tx.insert_contact(c).await.unwrap();
    }
    for conv in &conversations {
        tx.insert_conversation(conv).await.unwrap();
    }
    for m in [&on_a, &on_b, &stray] {
        tx.insert_message(m).await.unwrap();
    }
    // A status waits for wamid.p on number b only.
    tx.lock_key(b, "wamid.p").await.unwrap();
    tx.park_status(b, "wamid.p", "delivered", at).await.unwrap();
    tx.commit().await.unwrap();

    let batch = Prefetch {
        messages: vec![
            (a, "wamid.a".into()),
            (b, "wamid.b".into()),
            (a, "wamid.p".into()),
            (b, "wamid.p".into()),
        ],
        wa_ids: vec![(a, "1777".into()), (b, "1888".into())],
        ..Prefetch::default()
    };
    let mut tx = store.begin().await.unwrap();
    tx.lock_keys(&batch.messages).await.unwrap();
    tx.prefetch(&batch).await.unwrap();
    for (number, wamid, presence) in [
        (a, "wamid.a", (true, false)),
        (b, "wamid.p", (false, true)),
        (a, "wamid.p", (false, false)),
    ] {
        let found = tx.message_presence(number, wamid).await.unwrap();
        assert_eq!(found, presence, "(stored, parked) of {wamid} of its number");
    }
    for (number, wamid, id) in [
        (a, "wamid.a", on_a.id),
        (b, "wamid.b", on_b.id),
        (a, "wamid.b", stray.id),
    ] {
        let found = tx.find_message(number, wamid).await.unwrap();
        assert_eq!(found.map(|m| m.id), Some(id), "{wamid} of its number");
    }
    for (number, wa_id, row) in [(a, "1777", &ann), (b, "1888", &bob), (a, "1888", &other)] {
        let found = tx.find_contact_by_wa_id(number, wa_id).await.unwrap();
        assert_eq!(found.as_ref(), Some(row), "{wa_id} of its number");
    }
    for conv in &conversations {
        let found = tx
            .find_active_conversation(conv.phone_number_internal_id, conv.contact_id)
            .await
            .unwrap();
        assert_eq!(found.as_ref(), Some(conv));
    }
    assert_eq!(tx.find_contact_by_wa_id(b, "1777").await.unwrap(), None);
    tx.commit().await.unwrap();
}

/// Keyset pages: newest first, `After` continues older, `Before` comes back oldest first, rows
/// with equal timestamps are ordered by id and none is skipped or repeated; filters narrow.
async fn message_lists_page_both_ways(store: DynStore) {
    let (project, number) = number(&store).await;
    let at = now();
    let mut rows = Vec::new();
    let mut tx = store.begin().await.unwrap();
    for i in 0..5 {
        // Two pairs share a timestamp.
        let mut m = message(
            project,
            number,
            &format!("wamid.{i}"),
            at + Duration::seconds(i / 2),
        );
        if i == 4 {
            m.direction = Direction::Outbound;
            m.status = "sent".into();
        }
        tx.lock_key(number, &m.wamid).await.unwrap();
        tx.insert_message(&m).await.unwrap();
        rows.push(m);
    }
    tx.commit().await.unwrap();
    rows.sort_by_key(|m| std::cmp::Reverse((m.created_at, m.id)));
    let ids = |rows: &[MessageRow]| rows.iter().map(|m| m.id).collect::<Vec<_>>();

    let all = MessageFilter::default();
    let first = store
        .list_messages(number, &all, Seek::First, 2)
        .await
        .unwrap();
    assert_eq!(ids(&first), ids(&rows[..2]));
    let last = &first[1];
    let next = store
        .list_messages(number, &all, Seek::After(last.created_at, last.id), 2)
        .await
        .unwrap();
    assert_eq!(ids(&next), ids(&rows[2..4]));
    let rest = store
        .list_messages(number, &all, Seek::After(next[1].created_at, next[1].id), 2)
        .await
        .unwrap();
    assert_eq!(ids(&rest), ids(&rows[4..]));
    let back = store
        .list_messages(
            number,
            &all,
            Seek::Before(next[0].created_at, next[0].id),
            5,
        )
        .await
        .unwrap();
    let mut newer = ids(&rows[..2]);
    newer.reverse();
    assert_eq!(ids(&back), newer, "Before pages come back oldest first");

    let outbound = MessageFilter {
        direction: Some("outbound".into()),
        ..Default::default()
    };
    let found = store
        .list_messages(number, &outbound, Seek::First, 10)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].wamid, "wamid.4");
    let sent = MessageFilter {
        status: Some("delivered".into()),
        since: Some(at + Duration::seconds(1)),
        ..Default::default()
    };
    let found = store
        .list_messages(number, &sent, Seek::First, 10)
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|m| m.wamid.as_str()).collect::<Vec<_>>(),
        ["wamid.3", "wamid.2"]
    );
}

store_tests!(
    tx_writes_and_reads_back,
    dropped_tx_rolls_back,
    parked_statuses,
    prefetch_then_cached_reads,
    prefetch_by_one_kind_of_key,
    prefetch_over_several_numbers,
    message_lists_page_both_ways
);
