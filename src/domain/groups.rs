//! Groups API: the groups a number takes part in, from Meta's group webhooks
//! (`group_lifecycle_update`, `group_participants_update`, `group_settings_update`,
//! `group_status_update`). Group messages are stored like any message, with their `group_id`
//! and no 1:1 contact or conversation (see `record::record_message`).
//!
//! Payloads are read tolerantly: each change carries a `groups` array of events (a flat value
//! with a `group_id` is read as one event), and fields Meta has not sent are left as stored.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use super::contacts::{array, text};
use super::envelope::RoutedNumber;
use crate::store::{GroupRow, StoreResult, StoreTx};
use crate::time::iso;

/// The group events of one change.
fn events(value: &Value) -> Vec<&Value> {
    let listed = array(value, "groups");
    if listed.is_empty() && value.get("group_id").is_some() {
        vec![value]
    } else {
        listed.iter().collect()
    }
}

/// A participant entry: its WhatsApp id (phone number) or BSUID, whichever Meta sent.
fn member_key(entry: &Value) -> Option<(Option<String>, Option<String>)> {
    let wa_id = text(entry, "wa_id")
        .or_else(|| text(entry, "input"))
        .and_then(|w| super::contacts::normalize_wa_id(&w));
    let user_id = text(entry, "user_id");
    (wa_id.is_some() || user_id.is_some()).then_some((wa_id, user_id))
}

fn set_member(
    members: &mut Vec<Value>,
    (wa_id, user_id): (Option<String>, Option<String>),
    state: &str,
    now: DateTime<Utc>,
) {
    let same = |m: &Value| {
        (wa_id.is_some() && text(m, "wa_id") == wa_id)
            || (user_id.is_some() && text(m, "user_id") == user_id)
    };
    let entry =
        json!({ "wa_id": wa_id, "user_id": user_id, "state": state, "updated_at": iso(now) });
    match members.iter_mut().find(|m| same(m)) {
        Some(existing) => *existing = entry,
        None => members.push(entry),
    }
}

/// Applies one change of a group webhook field to the groups it names.
pub async fn apply(
    tx: &mut dyn StoreTx,
    number: &RoutedNumber,
    field: &str,
    value: &Value,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    for event in events(value) {
        let Some(group_id) = text(event, "group_id") else {
            continue;
        };
        let stored = tx
            .find_group_for_update(number.internal_id, &group_id)
            .await?;
        let mut group = stored.unwrap_or_else(|| GroupRow {
            id: Uuid::now_v7(),
            project_id: number.project_id,
            phone_number_internal_id: number.internal_id,
            group_id: group_id.clone(),
            subject: None,
            description: None,
            invite_link: None,
            join_approval_mode: None,
            state: "active".into(),
            participants: "[]".into(),
            created_at: now,
            updated_at: now,
        });
        let kind = text(event, "type").unwrap_or_default();
        let failed = event.get("errors").is_some();
        match field {
            "group_lifecycle_update" => {
                if kind == "group_delete" && !failed {
                    group.state = "deleted".into();
                } else if kind == "group_create" {
                    group.state = if failed { "failed" } else { "active" }.into();
                }
                let keep = |slot: &mut Option<String>, key: &str| {
                    if let Some(v) = text(event, key) {
                        *slot = Some(v);
                    }
                };
                keep(&mut group.subject, "subject");
                keep(&mut group.description, "description");
                keep(&mut group.invite_link, "invite_link");
                keep(&mut group.join_approval_mode, "join_approval_mode");
            }
            "group_participants_update" => {
                let mut members: Vec<Value> =
                    serde_json::from_str(&group.participants).unwrap_or_default();
                for (list, state) in [
                    ("added_participants", "joined"),
                    ("removed_participants", "removed"),
                    ("join_requests", "requested"),
                ] {
                    for entry in array(event, list) {
                        if let Some(key) = member_key(entry) {
                            set_member(&mut members, key, state, now);
                        }
                    }
                }
                // A join request names its user on the event itself.
                if kind.starts_with("group_join_request") {
                    if let Some(key) = member_key(event) {
                        let state = if kind.ends_with("created") {
                            "requested"
                        } else {
                            "removed"
                        };
                        set_member(&mut members, key, state, now);
                    }
                }
                group.participants = Value::Array(members).to_string();
            }
            "group_settings_update" => {
                // Each setting says whether Meta applied it.
                let applied = |key: &str| {
                    event.get(key).filter(|s| {
                        s.get("update_successful").and_then(Value::as_bool) != Some(false)
                    })
                };
                if let Some(subject) = applied("group_subject").and_then(|s| text(s, "text")) {
                    group.subject = Some(subject);
                }
                if let Some(description) =
                    applied("group_description").and_then(|s| text(s, "text"))
                {
                    group.description = Some(description);
                }
            }
            "group_status_update" => match kind.as_str() {
                "group_suspend" => group.state = "suspended".into(),
                "group_suspend_cleared" => group.state = "active".into(),
                _ => {}
            },
            _ => {}
        }
        group.updated_at = now;
        tx.save_group(&group).await?;
    }
    Ok(())
}

/// The webhook fields this module applies.
pub const FIELDS: [&str; 4] = [
    "group_lifecycle_update",
    "group_participants_update",
    "group_settings_update",
    "group_status_update",
];

/// A stored group as the stored-data route serves it.
pub fn present(row: &GroupRow) -> Value {
    let participants: Vec<Value> = serde_json::from_str(&row.participants).unwrap_or_default();
    let joined = participants
        .iter()
        .filter(|p| p.get("state").and_then(Value::as_str) == Some("joined"))
        .count();
    json!({
        "id": row.group_id,
        "subject": row.subject,
        "description": row.description,
        "invite_link": row.invite_link,
        "join_approval_mode": row.join_approval_mode,
        "state": row.state,
        "participants": participants,
        "participant_count": joined,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    })
}
