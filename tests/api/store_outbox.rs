//! Store conformance for the webhook outbox (`Outbox`), on both backends.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;
use wagate::store::{
    now, AttemptRow, DeliveryFilter, DeliveryOutcome, DeliveryStatus, DynStore, EventRouteRow,
    NewDelivery, NewWebhookEvent, ProcessingStatus, Seek, WebhookResult,
};

use crate::store_tests;
use crate::store_tx::{message, number};

/// Queues one delivery (with its event and route) in a transaction, for message `wamid`.
async fn queue(
    store: &DynStore,
    project: Uuid,
    number: Uuid,
    wamid: &str,
    at: DateTime<Utc>,
) -> Uuid {
    queue_with(store, project, number, wamid, at, None).await
}

/// [`queue`], with the delivery's own payload (a Kapso-format event's) instead of its route's.
async fn queue_with(
    store: &DynStore,
    project: Uuid,
    number: Uuid,
    wamid: &str,
    at: DateTime<Utc>,
    payload: Option<Vec<u8>>,
) -> Uuid {
    let event = NewWebhookEvent {
        id: Uuid::now_v7(),
        received_at: at,
        body: b"{}".to_vec(),
        state: "processed".into(),
        error: None,
    };
    let route = EventRouteRow {
        id: Uuid::now_v7(),
        event_id: event.id,
        project_id: Some(project),
        phone_number_id: "111".into(),
        fields: "messages".into(),
        payload: format!("payload {wamid}").into_bytes(),
        created_at: at,
    };
    let delivery = new_delivery(project, number, &route, wamid, at, payload);
    let mut tx = store.begin().await.unwrap();
    tx.insert_webhook_event(&event).await.unwrap();
    tx.insert_event_route(&route).await.unwrap();
    tx.queue_delivery(&delivery).await.unwrap();
    tx.lock_key(number, wamid).await.unwrap();
    tx.insert_message(&message(project, number, wamid, at))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    delivery.id
}

fn new_delivery(
    project: Uuid,
    number: Uuid,
    route: &EventRouteRow,
    wamid: &str,
    at: DateTime<Utc>,
    payload: Option<Vec<u8>>,
) -> NewDelivery {
    NewDelivery {
        id: Uuid::now_v7(),
        project_id: project,
        phone_number_internal_id: Some(number),
        phone_number_id: "111".into(),
        event_id: Some(route.event_id),
        route_id: Some(route.id),
        fields: "messages".into(),
        idempotency_key: format!("idem-{wamid}"),
        message_wamids: wamid.into(),
        replay_of: None,
        created_at: at,
        webhook_id: number,
        event_type: payload.as_ref().map(|_| "whatsapp.message.received".into()),
        payload,
        batch_size: 1,
        status: DeliveryStatus::Pending,
    }
}

fn outcome(
    id: Uuid,
    token: Uuid,
    number: Uuid,
    wamid: &str,
    status: DeliveryStatus,
    at: DateTime<Utc>,
) -> DeliveryOutcome {
    let succeeded = status == DeliveryStatus::Succeeded;
    DeliveryOutcome {
        delivery_id: id,
        lease_token: token,
        attempt: Some(AttemptRow {
            id: Uuid::now_v7(),
            delivery_id: id,
            attempt: 1,
            started_at: at,
            duration_ms: 12,
            destination: "https://example.com/hook".into(),
            status_code: Some(if succeeded { 200 } else { 500 }),
            response_excerpt: None,
            error: (!succeeded).then(|| "HTTP 500".into()),
        }),
        status,
        next_attempt_at: at + Duration::seconds(30),
        last_status_code: Some(if succeeded { 200 } else { 500 }),
        last_error: (!succeeded).then(|| "HTTP 500".into()),
        delivered_at: succeeded.then_some(at),
        processing_status: match status {
            DeliveryStatus::Succeeded => Some(ProcessingStatus::Completed),
            DeliveryStatus::Dead => Some(ProcessingStatus::Failed),
            _ => None,
        },
        phone_number_internal_id: Some(number),
        message_wamids: wamid.into(),
        at,
        webhook_id: Some(number),
        webhook_result: if succeeded {
            WebhookResult::Succeeded
        } else {
            WebhookResult::Failed
        },
    }
}

/// Queue in a transaction, claim under a lease (a claimed row is not claimed again until the
/// lease runs out), finish: success completes the message, failure re-queues, dead is final.
async fn outbox_claim_and_finish(store: DynStore) {
    let (project, number) = number(&store).await;
    let at = now();
    let a = queue(&store, project, number, "wamid.a", at).await;
    let b = queue(&store, project, number, "wamid.b", at).await;
    assert_eq!(store.outbox_depth(at).await.unwrap().0, 2);

    let lease = StdDuration::from_secs(60);
    let claimed = store.claim_deliveries(at, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].row.id, a);
    assert_eq!(claimed[0].payload, b"payload wamid.a");
    assert!(store
        .claim_deliveries(at, lease, 10)
        .await
        .unwrap()
        .is_empty());
    let token = |i: usize| claimed[i].row.lease_token.unwrap();

    let done = at + Duration::seconds(1);
    store
        .finish_deliveries(
            &[
                outcome(
                    a,
                    token(0),
                    number,
                    "wamid.a",
                    DeliveryStatus::Succeeded,
                    done,
                ),
                outcome(b, token(1), number, "wamid.b", DeliveryStatus::Failed, done),
            ],
            0,
        )
        .await
        .unwrap();
    let row_a = store.find_delivery(project, a).await.unwrap().unwrap();
    assert_eq!(row_a.status, "succeeded");
    assert_eq!(row_a.attempts, 1);
    assert_eq!(row_a.lease_token, None);
    assert_eq!(row_a.delivered_at, Some(done));
    assert_eq!(store.delivery_attempts(a).await.unwrap().len(), 1);
    let message_a = store
        .find_message(number, "wamid.a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message_a.processing_status, "completed");
    let row_b = store.find_delivery(project, b).await.unwrap().unwrap();
    assert_eq!(row_b.status, "failed");
    assert_eq!(row_b.last_status_code, Some(500));
    let message_b = store
        .find_message(number, "wamid.b")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message_b.processing_status, "pending");

    // The failed one comes due again at its next attempt time; dead is final.
    let later = done + Duration::seconds(31);
    let again = store.claim_deliveries(later, lease, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    let token_b = again[0].row.lease_token.unwrap();
    store
        .finish_deliveries(
            &[outcome(
                b,
                token_b,
                number,
                "wamid.b",
                DeliveryStatus::Dead,
                later,
            )],
            0,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .find_delivery(project, b)
            .await
            .unwrap()
            .unwrap()
            .status,
        "dead"
    );
    let message_b = store
        .find_message(number, "wamid.b")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message_b.processing_status, "failed");
    let much_later = later + Duration::days(1);
    assert!(store
        .claim_deliveries(much_later, lease, 10)
        .await
        .unwrap()
        .is_empty());

    // Another project sees none of it.
    let other = store.create_project("other").await.unwrap();
    assert_eq!(store.find_delivery(other.id, a).await.unwrap(), None);
}

/// A worker whose lease ran out (and whose row was claimed again) records its attempt but does
/// not overwrite the newer claim's state.
async fn stale_lease_finish_is_ignored(store: DynStore) {
    let (project, number) = number(&store).await;
    let at = now();
    let id = queue(&store, project, number, "wamid.s", at).await;
    let lease = StdDuration::from_secs(10);
    let first = store.claim_deliveries(at, lease, 10).await.unwrap();
    let stale = first[0].row.lease_token.unwrap();
    let expired = at + Duration::seconds(11);
    let second = store.claim_deliveries(expired, lease, 10).await.unwrap();
    assert_eq!(second.len(), 1, "an expired lease comes due again");
    let fresh = second[0].row.lease_token.unwrap();
    assert_ne!(stale, fresh);

    store
        .finish_deliveries(
            &[outcome(
                id,
                stale,
                number,
                "wamid.s",
                DeliveryStatus::Succeeded,
                expired,
            )],
            0,
        )
        .await
        .unwrap();
    let row = store.find_delivery(project, id).await.unwrap().unwrap();
    assert_eq!(row.status, "pending", "the stale finish moved nothing");
    assert_eq!(row.lease_token, Some(fresh));
    assert_eq!(row.attempts, 0);
    let message = store
        .find_message(number, "wamid.s")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.processing_status, "pending");

    store
        .finish_deliveries(
            &[outcome(
                id,
                fresh,
                number,
                "wamid.s",
                DeliveryStatus::Succeeded,
                expired,
            )],
            0,
        )
        .await
        .unwrap();
    let row = store.find_delivery(project, id).await.unwrap().unwrap();
    assert_eq!(row.status, "succeeded");
    assert_eq!(row.attempts, 1);
}

/// The delivery log lists newest first with keyset pages and filters by status and number.
async fn delivery_log_filters(store: DynStore) {
    let (project, number) = number(&store).await;
    let at = now();
    let mut ids = Vec::new();
    for (i, wamid) in ["wamid.1", "wamid.2", "wamid.3"].iter().enumerate() {
        ids.push(
            queue(
                &store,
                project,
                number,
                wamid,
                at + Duration::seconds(i as i64),
            )
            .await,
        );
    }
    let claimed = store
        .claim_deliveries(at, StdDuration::from_secs(60), 1)
        .await
        .unwrap();
    let token = claimed[0].row.lease_token.unwrap();
    store
        .finish_deliveries(
            &[outcome(
                ids[0],
                token,
                number,
                "wamid.1",
                DeliveryStatus::Succeeded,
                at,
            )],
            0,
        )
        .await
        .unwrap();

    let all = DeliveryFilter::default();
    let page = store
        .list_deliveries(project, &all, Seek::First, 2)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|d| d.id).collect::<Vec<_>>(),
        [ids[2], ids[1]]
    );
    let rest = store
        .list_deliveries(
            project,
            &all,
            Seek::After(page[1].created_at, page[1].id),
            2,
        )
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|d| d.id).collect::<Vec<_>>(), [ids[0]]);

    let succeeded = DeliveryFilter {
        status: Some("succeeded".into()),
        ..Default::default()
    };
    let found = store
        .list_deliveries(project, &succeeded, Seek::First, 10)
        .await
        .unwrap();
    assert_eq!(found.iter().map(|d| d.id).collect::<Vec<_>>(), [ids[0]]);
    let elsewhere = DeliveryFilter {
        phone_number_internal_id: Some(Uuid::now_v7()),
        ..Default::default()
    };
    assert!(store
        .list_deliveries(project, &elsewhere, Seek::First, 10)
        .await
        .unwrap()
        .is_empty());
    let other = store.create_project("other").await.unwrap();
    assert!(store
        .list_deliveries(other.id, &all, Seek::First, 10)
        .await
        .unwrap()
        .is_empty());
}

/// A delivery's own payload (a Kapso-format event's) comes back from a claim byte for byte,
/// large or small, queued in an ingest transaction or on its own: the store packs large ones at
/// rest (`store::packed`), and the worker must send exactly what was queued.
async fn own_payloads_come_back_unchanged(store: DynStore) {
    let (project, number) = number(&store).await;
    let at = now();
    let text = "a message that says the same thing twice, ".repeat(60);
    let large = serde_json::to_vec(&serde_json::json!({
        "message": { "text": { "body": text } },
        "conversation": { "kapso": { "last_message_text": text } },
    }))
    .unwrap();
    let small = br#"{"event":"whatsapp.message.received"}"#.to_vec();
    let in_ingest = queue_with(
        &store,
        project,
        number,
        "wamid.large",
        at,
        Some(large.clone()),
    )
    .await;
    let small_id = queue_with(
        &store,
        project,
        number,
        "wamid.small",
        at,
        Some(small.clone()),
    )
    .await;
    let route = EventRouteRow {
        id: Uuid::now_v7(),
        event_id: Uuid::now_v7(),
        project_id: Some(project),
        phone_number_id: "111".into(),
        fields: "messages".into(),
        payload: b"{}".to_vec(),
        created_at: at,
    };
    let mut tx = store.begin().await.unwrap();
    tx.insert_webhook_event(&NewWebhookEvent {
        id: route.event_id,
        received_at: at,
        body: b"{}".to_vec(),
        state: "processed".into(),
        error: None,
    })
    .await
    .unwrap();
    tx.insert_event_route(&route).await.unwrap();
    tx.commit().await.unwrap();
    let alone = new_delivery(
        project,
        number,
        &route,
        "wamid.alone",
        at,
        Some(large.clone()),
    );
    store
        .queue_deliveries(std::slice::from_ref(&alone))
        .await
        .unwrap();

    let claimed = store
        .claim_deliveries(at, StdDuration::from_secs(60), 10)
        .await
        .unwrap();
    let payload_of = |id: Uuid| {
        claimed
            .iter()
            .find(|c| c.row.id == id)
            .map(|c| c.payload.clone())
            .expect("claimed")
    };
    assert_eq!(claimed.len(), 3);
    assert_eq!(payload_of(in_ingest), large);
    assert_eq!(payload_of(small_id), small);
    assert_eq!(payload_of(alone.id), large);
}

store_tests!(
    own_payloads_come_back_unchanged,
    outbox_claim_and_finish,
    stale_lease_finish_is_ignored,
    delivery_log_filters
);
