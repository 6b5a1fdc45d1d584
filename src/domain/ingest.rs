//! Meta webhook ingest: route each change to its number, then, inside one transaction, store the
//! raw event, one route per number (the envelope restricted to it) and every effect (contacts,
//! conversations, messages, statuses, calls, usernames, identity changes).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::contacts::{self, array, text, Identity};
use super::envelope::RoutedNumber;
use super::envelope::{self, Change, ChangeTarget};
use super::message_content::next_status;
use super::record::{
    fold_status, record_message, IngestSettings, Recorded, ORIGIN_BUSINESS_APP, ORIGIN_CLOUD_API,
};
use super::webhooks::events;
use crate::domain::number_directory::NumberDirectory;
use crate::store::{
    Direction, DynStore, EventRouteRow, NewDelivery, NewWebhookEvent, Prefetch, StoreResult,
    StoreTx,
};

#[derive(Debug, Clone)]
pub struct Route {
    /// `None`: no connected number matched; kept as unrouted for operators.
    pub number: Option<RoutedNumber>,
    /// Meta's phone number ID, or `waba:<id>` for WABA-level changes nobody claimed.
    pub phone_number_id: String,
    pub changes: Vec<Change>,
    pub payload: Vec<u8>,
}

/// Everything one webhook POST writes, prepared outside the transaction.
#[derive(Debug, Clone)]
pub struct IngestJob {
    pub event: NewWebhookEvent,
    pub routes: Vec<Route>,
}

impl IngestJob {
    /// Picks a writer shard: the first routed number and the user its first change is about,
    /// so one user's events keep their order while a busy number's users are written in
    /// parallel (the store's row and wamid locks keep concurrent shards consistent).
    pub fn shard_key(&self) -> u64 {
        let Some(route) = self.routes.iter().find(|r| r.number.is_some()) else {
            return 0;
        };
        let number = route
            .number
            .as_ref()
            .map(|n| n.internal_id)
            .unwrap_or_default();
        let value = route.changes.first().map(|c| &c.value);
        let user = value.and_then(|v| {
            ["messages", "statuses", "calls", "message_echoes"]
                .iter()
                .find_map(|list| {
                    let first = v.get(list)?.get(0)?;
                    [
                        "from",
                        "from_user_id",
                        "recipient_id",
                        "recipient_user_id",
                        "to",
                    ]
                    .iter()
                    .find_map(|key| text(first, key))
                })
        });
        shard_hash(number, user.as_deref().unwrap_or(""))
    }

    /// What this job will read and lock: its messages' wamids and its users' identifiers, so a
    /// batch can lock and read them all at once.
    pub fn prefetch(&self, batch: &mut Prefetch) {
        for route in &self.routes {
            let Some(number) = &route.number else {
                continue;
            };
            let number = number.internal_id;
            for change in &route.changes {
                let (lists, user_keys): (&[&str], &[&str]) = match change.field.as_str() {
                    "messages" => (
                        &["messages", "statuses"],
                        &["from", "from_user_id", "recipient_id", "recipient_user_id"],
                    ),
                    "smb_message_echoes" => (&["message_echoes"], &["to", "to_user_id"]),
                    _ => continue,
                };
                for list in lists {
                    for item in array(&change.value, list) {
                        if let Some(id) = text(item, "id") {
                            batch.messages.push((number, id));
                        }
                        for key in user_keys {
                            prefetch_user(batch, number, text(item, key));
                        }
                    }
                }
                for contact in array(&change.value, "contacts") {
                    prefetch_user(batch, number, text(contact, "wa_id"));
                    prefetch_user(batch, number, text(contact, "user_id"));
                }
            }
        }
    }
}

/// Adds a user identifier (phone number or BSUID) to a prefetch.
pub fn prefetch_user(batch: &mut Prefetch, number: Uuid, id: Option<String>) {
    let Some(id) = id else { return };
    if contacts::is_bsuid(&id) {
        batch.bsuids.push((number, id));
    } else if let Some(wa_id) = contacts::normalize_wa_id(&id) {
        batch.wa_ids.push((number, wa_id));
    }
}

/// Parses and routes a verified webhook body. Invalid JSON yields a job that stores only the raw
/// event (state `invalid_json`), so Meta stops retrying and operators can see it.
pub async fn prepare(
    numbers: &NumberDirectory,
    store: &DynStore,
    body: &[u8],
    now: DateTime<Utc>,
) -> StoreResult<IngestJob> {
    let mut event = NewWebhookEvent {
        id: Uuid::now_v7(),
        received_at: now,
        body: body.to_vec(),
        state: "processed".into(),
        error: None,
    };
    let parsed: Result<Value, _> = serde_json::from_slice(body);
    let (envelope, all) = match parsed
        .as_ref()
        .ok()
        .and_then(|v| Some((v, envelope::changes(v)?)))
    {
        Some((envelope, all)) => (envelope.clone(), all),
        None => {
            event.state = "invalid_json".into();
            event.error = Some(match parsed {
                Err(e) => format!("not JSON: {e}"),
                Ok(_) => "JSON without Meta's entry[].changes[] shape".into(),
            });
            return Ok(IngestJob {
                event,
                routes: Vec::new(),
            });
        }
    };

    // Group change indexes by the number (or unclaimed WABA) they belong to, in first-seen order.
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, (Option<RoutedNumber>, Vec<usize>)> = HashMap::new();
    for (index, change) in all.iter().enumerate() {
        let targets: Vec<(String, Option<RoutedNumber>)> = match &change.target {
            ChangeTarget::Number(pnid) => {
                let number = match numbers.number(pnid).await? {
                    Some(n) => Some(RoutedNumber::new(
                        &n,
                        numbers.webhooks_of(n.internal_id).await?,
                    )),
                    None => None,
                };
                vec![(pnid.clone(), number)]
            }
            ChangeTarget::Waba {
                waba_id,
                display_phone_number,
            } => {
                let numbers_of_waba = store.find_phone_numbers_by_waba_any(waba_id).await?;
                let concerned = concerned_numbers(
                    &change.field,
                    waba_id,
                    display_phone_number.as_deref(),
                    numbers_of_waba,
                );
                let mut matching = Vec::new();
                for n in concerned {
                    let routed = RoutedNumber {
                        internal_id: n.internal_id,
                        phone_number_id: n.phone_number_id.clone(),
                        project_id: n.project_id,
                        forwarding: n.webhook_destination_url.is_some(),
                        webhooks: numbers.webhooks_of(n.internal_id).await?,
                    };
                    matching.push((n.phone_number_id, Some(routed)));
                }
                if matching.is_empty() {
                    vec![(format!("waba:{waba_id}"), None)]
                } else {
                    matching
                }
            }
        };
        for (key, number) in targets {
            let group = groups.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                (number, Vec::new())
            });
            group.1.push(index);
        }
    }

    let single = order.len() == 1 && groups[&order[0]].1.len() == all.len();
    let mut routes = Vec::with_capacity(order.len());
    for key in order {
        let (number, indexes) = groups.remove(&key).expect("grouped above");
        let payload = if single {
            body.to_vec()
        } else {
            serde_json::to_vec(&envelope::restricted(&envelope, &all, &indexes))
                .expect("JSON serialises")
        };
        routes.push(Route {
            number,
            phone_number_id: key,
            changes: indexes.iter().map(|&i| all[i].clone()).collect(),
            payload,
        });
    }
    if routes.iter().all(|r| r.number.is_none()) {
        event.state = "unrouted".into();
    }
    Ok(IngestJob { event, routes })
}

/// A stable shard hash of (number, user).
pub fn shard_hash(number: Uuid, user: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    number.hash(&mut hasher);
    crate::domain::contacts::normalize_wa_id(user)
        .unwrap_or_else(|| user.to_owned())
        .hash(&mut hasher);
    hasher.finish()
}

/// Writes the job inside `tx` (the caller commits).
pub async fn apply(
    tx: &mut dyn StoreTx,
    job: &IngestJob,
    settings: IngestSettings,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    tx.insert_webhook_event(&job.event).await?;
    for route in &job.routes {
        let mut fields: Vec<&str> = route.changes.iter().map(|c| c.field.as_str()).collect();
        fields.dedup();
        let route_id = Uuid::now_v7();
        let fields = fields.join(",");
        tx.insert_event_route(&EventRouteRow {
            id: route_id,
            event_id: job.event.id,
            project_id: route.number.as_ref().map(|n| n.project_id),
            phone_number_id: route.phone_number_id.clone(),
            fields: fields.clone(),
            payload: route.payload.clone(),
            created_at: now,
        })
        .await?;
        let Some(number) = &route.number else {
            continue;
        };
        let meta_hook = number.webhooks.iter().find(|w| w.is_meta);
        // Paused by hand: nothing new for it; paused by wagate: held until it is resumed.
        let meta_status = match meta_hook {
            Some(hook) if !hook.receives() => None,
            Some(hook) if !hook.active => Some(crate::store::DeliveryStatus::Paused),
            _ => Some(crate::store::DeliveryStatus::Pending),
        };
        if let (true, Some(status)) = (number.forwarding, meta_status) {
            // The outbox row commits with the event: nothing stored goes unforwarded.
            tx.queue_delivery(&NewDelivery {
                id: Uuid::now_v7(),
                project_id: number.project_id,
                phone_number_internal_id: Some(number.internal_id),
                phone_number_id: route.phone_number_id.clone(),
                event_id: Some(job.event.id),
                route_id: Some(route_id),
                fields,
                idempotency_key: crate::crypto::sha256_hex(&route.payload),
                message_wamids: inbound_wamids(&route.changes),
                replay_of: None,
                created_at: now,
                webhook_id: number.internal_id,
                event_type: None,
                payload: None,
                batch_size: 1,
                status,
            })
            .await?;
        }
        for change in &route.changes {
            apply_change(tx, number, change, settings, now).await?;
        }
    }
    Ok(())
}

/// The wamids of the inbound messages among `changes`, space-separated (their processing status
/// follows the delivery).
pub fn inbound_wamids(changes: &[Change]) -> String {
    changes
        .iter()
        .filter(|c| c.field == "messages")
        .flat_map(|c| array(&c.value, "messages"))
        .filter_map(|m| m.get("id").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The profile entry of `contacts[]` that matches a user, else the only one.
fn profile_for<'a>(
    contacts: &'a [Value],
    wa_id: Option<&str>,
    bsuid: Option<&str>,
) -> Option<&'a Value> {
    contacts
        .iter()
        .find(|c| {
            (wa_id.is_some() && text(c, "wa_id").as_deref() == wa_id)
                || (bsuid.is_some() && text(c, "user_id").as_deref() == bsuid)
        })
        .or(if contacts.len() == 1 {
            contacts.first()
        } else {
            None
        })
}

fn identity(
    wa_id: Option<String>,
    bsuid: Option<String>,
    parent: Option<String>,
    contacts: &[Value],
) -> Identity {
    let wa_id = wa_id.and_then(|w| contacts::normalize_wa_id(&w));
    let profile = profile_for(contacts, wa_id.as_deref(), bsuid.as_deref());
    let bsuid = bsuid.or_else(|| profile.and_then(|p| text(p, "user_id")));
    Identity {
        wa_id: wa_id.or_else(|| {
            profile
                .and_then(|p| text(p, "wa_id"))
                .and_then(|w| contacts::normalize_wa_id(&w))
        }),
        parent_bsuid: parent.or_else(|| profile.and_then(|p| text(p, "parent_user_id"))),
        profile_name: profile
            .and_then(|p| p.pointer("/profile/name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        username: profile
            .and_then(|p| p.pointer("/profile/username"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        bsuid,
    }
}

async fn apply_change(
    tx: &mut dyn StoreTx,
    number: &RoutedNumber,
    change: &Change,
    settings: IngestSettings,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let value = &change.value;
    match change.field.as_str() {
        "messages" => {
            let contacts = array(value, "contacts");
            for message in array(value, "messages") {
                inbound_message(tx, number, message, contacts, settings, now).await?;
            }
            for status in array(value, "statuses") {
                apply_status(tx, number, status, settings, now).await?;
            }
            if array(value, "messages").is_empty() && !array(value, "statuses").is_empty() {
                refresh_contacts(tx, number, contacts, now).await?;
            }
        }
        "smb_message_echoes" => {
            let contacts = array(value, "contacts");
            for echo in array(value, "message_echoes") {
                let who = identity(text(echo, "to"), text(echo, "to_user_id"), None, contacts);
                let recorded = Recorded {
                    direction: Direction::Outbound,
                    status: "sent",
                    origin: ORIGIN_BUSINESS_APP,
                };
                record_message(tx, number, echo, &who, recorded, settings, now).await?;
            }
        }
        "calls" => {
            let contacts = array(value, "contacts");
            for call in array(value, "calls") {
                super::calls::apply_event(tx, number, call, contacts, now).await?;
            }
            for status in array(value, "statuses") {
                super::calls::apply_status(tx, number.internal_id, status, now).await?;
            }
        }
        "business_username_updates" => {
            // One form everywhere: lower case, as the proxy stores the statuses it reads.
            let status = value
                .get("status")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase);
            let username = text(value, "username").filter(|_| status.as_deref() != Some("deleted"));
            tx.set_username(number.internal_id, username.as_deref(), status.as_deref())
                .await?;
        }
        "user_id_update" => {
            for update in array(value, "user_id_update") {
                let old = Identity {
                    bsuid: update
                        .pointer("/user_id/previous")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    wa_id: text(update, "wa_id").and_then(|w| contacts::normalize_wa_id(&w)),
                    ..Identity::default()
                };
                let new = Identity {
                    bsuid: update
                        .pointer("/user_id/current")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    ..Identity::default()
                };
                contacts::change_identity(tx, number.internal_id, &old, &new, now).await?;
            }
        }
        "history" => super::coexistence::import_history(tx, number, value, settings, now).await?,
        "smb_app_state_sync" => super::coexistence::sync_app_state(tx, number, value, now).await?,
        "account_update" => {
            super::account_state::apply_account_update(tx, number, value, now).await?;
        }
        "phone_number_quality_update" => {
            super::account_state::apply_quality_update(tx, number, value, now).await?;
        }
        field if super::account_state::TEMPLATE_FIELDS.contains(&field) => {
            super::account_state::apply_template_event(tx, number, field, value, now).await?;
        }
        field if super::groups::FIELDS.contains(&field) => {
            super::groups::apply(tx, number, field, value, now).await?;
        }
        // Everything else (errors, flows, …) is kept raw for forwarding.
        _ => {}
    }
    Ok(())
}

/// The numbers a WABA-level change concerns: those with its display number when it names one,
/// else every number of the WABA (template and account updates concern them all). A username
/// update belongs to one number only: without a display number it goes to the WABA's only
/// number, and with several it stays unrouted (stored, applied to none) rather than give every
/// number, in every project, one number's username.
fn concerned_numbers(
    field: &str,
    waba_id: &str,
    display_digits: Option<&str>,
    numbers: Vec<crate::store::PhoneNumber>,
) -> Vec<crate::store::PhoneNumber> {
    if let Some(digits) = display_digits.filter(|d| !d.is_empty()) {
        return numbers
            .into_iter()
            .filter(|n| {
                n.display_phone_number
                    .as_deref()
                    .map(|d| d.chars().filter(char::is_ascii_digit).collect::<String>())
                    .is_some_and(|d| d == digits)
            })
            .collect();
    }
    if field == "business_username_updates" && numbers.len() > 1 {
        tracing::warn!(waba_id, numbers = numbers.len(),
            "a business_username_updates change names no display number and its WABA has several numbers; kept unrouted");
        return Vec::new();
    }
    numbers
}

/// Status webhooks carry the recipients' `contacts[]` (2026): what they reveal (a phone number
/// for a BSUID-only contact, a new username or profile name) is added to contacts wagate already
/// has. Nobody new is created from a status.
async fn refresh_contacts(
    tx: &mut dyn StoreTx,
    number: &RoutedNumber,
    contacts: &[Value],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    for entry in contacts {
        let who = identity(
            text(entry, "wa_id"),
            text(entry, "user_id"),
            text(entry, "parent_user_id"),
            std::slice::from_ref(entry),
        );
        if !who.is_empty() {
            contacts::change_identity(tx, number.internal_id, &who, &who, now).await?;
        }
    }
    Ok(())
}

async fn inbound_message(
    tx: &mut dyn StoreTx,
    number: &RoutedNumber,
    message: &Value,
    contacts: &[Value],
    settings: IngestSettings,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    // Coexistence: an edit or a revoke changes a message already stored.
    match message.get("type").and_then(Value::as_str) {
        Some("edit") => return super::coexistence::apply_edit(tx, number, message, now).await,
        Some("revoke") => return super::coexistence::apply_revoke(tx, number, message, now).await,
        _ => {}
    }
    let mut who = identity(
        text(message, "from"),
        text(message, "from_user_id"),
        text(message, "from_parent_user_id"),
        contacts,
    );
    if message.get("type").and_then(Value::as_str) == Some("system") {
        let system = message.get("system").unwrap_or(&Value::Null);
        let new = Identity {
            wa_id: text(system, "wa_id").and_then(|w| contacts::normalize_wa_id(&w)),
            bsuid: text(system, "user_id").filter(|b| contacts::is_bsuid(b)),
            ..Identity::default()
        };
        if let Some(contact) =
            contacts::change_identity(tx, number.internal_id, &who, &new, now).await?
        {
            // The notice belongs to the re-keyed contact: looking it up by the identifiers the
            // user just left would give them back (or make a second contact).
            who = Identity {
                wa_id: contact.wa_id,
                bsuid: contact.business_scoped_user_id,
                parent_bsuid: contact.parent_business_scoped_user_id,
                ..who
            };
        }
    }
    // Kapso's status of a message the business received (contract §15.2).
    let recorded = Recorded {
        direction: Direction::Inbound,
        status: "received",
        origin: ORIGIN_CLOUD_API,
    };
    record_message(tx, number, message, &who, recorded, settings, now).await?;
    Ok(())
}

/// A message status webhook: applied to the stored message, or parked until it is recorded.
pub async fn apply_status(
    tx: &mut dyn StoreTx,
    routed: &RoutedNumber,
    status: &Value,
    settings: IngestSettings,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let number = routed.internal_id;
    let Some(wamid) = text(status, "id") else {
        return Ok(());
    };
    super::pricing::record(tx, routed, status, now).await?;
    tx.lock_key(number, &wamid).await?;
    confirm_queued_send(tx, routed, status, &wamid, settings, now).await?;
    match tx.find_message(number, &wamid).await? {
        Some(mut row) => {
            let moved = fold_status(&mut row, status);
            row.updated_at = now;
            tx.update_message_state(&row).await?;
            let event = events::status_event(&row.status).filter(|_| moved);
            if let Some(event) = event.filter(|e| events::wanted(routed, e)) {
                let (contact, conversation) = tx
                    .event_context(row.contact_id, row.conversation_id)
                    .await?;
                events::queue_message_event(
                    tx,
                    routed,
                    event,
                    &row,
                    contact.as_ref(),
                    conversation.as_ref(),
                    false,
                    now,
                )
                .await?;
            }
            Ok(())
        }
        None => {
            tx.park_status(number, &wamid, &status.to_string(), now)
                .await
        }
    }
}

/// A status of a queued (broadcast) send names its recipient in `biz_opaque_callback_data`: the
/// recipient is sent, whatever became of the worker's request. The callback data is the caller's
/// to set on any send, so only a claimed recipient of a broadcast from this same number is
/// confirmed (see `BroadcastsTx::confirm_broadcast_send`). When the worker never got Meta's
/// answer (lost, timed out, killed), the message is recorded here from the recipient's body, so
/// it exists as if the answer had come, and the status below applies to it.
async fn confirm_queued_send(
    tx: &mut dyn StoreTx,
    routed: &RoutedNumber,
    status: &Value,
    wamid: &str,
    settings: IngestSettings,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let Some(recipient) = text(status, "biz_opaque_callback_data")
        .and_then(|data| {
            data.strip_prefix(super::broadcasts::CALLBACK_PREFIX)
                .map(str::to_owned)
        })
        .and_then(|id| uuid::Uuid::parse_str(&id).ok())
    else {
        return Ok(());
    };
    let Some(body) = tx
        .confirm_broadcast_send(routed.internal_id, recipient, wamid, now)
        .await?
    else {
        return Ok(());
    };
    if tx.find_message(routed.internal_id, wamid).await?.is_some() {
        return Ok(());
    }
    let Ok(request) = serde_json::from_str::<Value>(&body) else {
        return Ok(());
    };
    let response = serde_json::json!({"messages": [{"id": wamid}]});
    let at = text(status, "timestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|t| DateTime::from_timestamp(t, 0))
        .unwrap_or(now);
    super::outbound::record_send(tx, routed, &request, &response, settings, at).await
}

/// Marks a stored inbound message read (the business sent `status: read` through the proxy).
pub async fn mark_read(
    tx: &mut dyn StoreTx,
    number: Uuid,
    wamid: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    if let Some(mut row) = tx.find_message(number, wamid).await? {
        if row.direction == Direction::Inbound && next_status(&row.status, "read").is_some() {
            row.status = "read".into();
            row.updated_at = now;
            tx.update_message_state(&row).await?;
        }
    }
    Ok(())
}
