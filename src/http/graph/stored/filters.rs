//! Filter parameters of the stored-data lists: each bad value is a 400 naming the parameter.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::paging::Query;
use crate::domain::auth::NumberConfig;
use crate::http::graph_error::GraphError;
use crate::store::{
    CallFilter, ContactFilter, ContactRow, ConversationFilter, DynStore, MessageFilter, StoreError,
};

fn one_of(query: &Query, name: &str, allowed: &[&str]) -> Result<Option<String>, GraphError> {
    match query.get(name) {
        None => Ok(None),
        Some(raw) => {
            let value = raw.to_ascii_lowercase();
            if allowed.contains(&value.as_str()) {
                Ok(Some(value))
            } else {
                Err(GraphError::invalid_parameter(format!(
                    "{name}: must be one of {}, got '{raw}'",
                    allowed.join(", ")
                )))
            }
        }
    }
}

fn time(query: &Query, name: &str) -> Result<Option<DateTime<Utc>>, GraphError> {
    query
        .get(name)
        .map(|raw| {
            crate::time::parse_time(raw).ok_or_else(|| {
                GraphError::invalid_parameter(format!(
                    "{name}: expected an ISO 8601 time such as 2024-01-15T12:00:00Z, got '{raw}'"
                ))
            })
        })
        .transpose()
}

fn boolean(query: &Query, name: &str) -> Result<Option<bool>, GraphError> {
    match query.get(name) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(raw) => Err(GraphError::invalid_parameter(format!(
            "{name}: must be true or false, got '{raw}'"
        ))),
    }
}

fn uuid(query: &Query, name: &str) -> Result<Option<Uuid>, GraphError> {
    query
        .get(name)
        .map(|raw| {
            Uuid::parse_str(raw).map_err(|_| {
                GraphError::invalid_parameter(format!("{name}: must be a UUID, got '{raw}'"))
            })
        })
        .transpose()
}

fn phone(query: &Query, name: &str) -> Result<Option<String>, GraphError> {
    query
        .get(name)
        .map(|raw| {
            crate::domain::contacts::normalize_wa_id(raw)
                .filter(|_| {
                    raw.trim_start_matches('+')
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b == b' ' || b == b'-')
                })
                .ok_or_else(|| {
                    GraphError::invalid_parameter(format!(
                        "{name}: must be a phone number such as +15551234567, got '{raw}'"
                    ))
                })
        })
        .transpose()
}

pub fn messages(query: &Query) -> Result<MessageFilter, GraphError> {
    Ok(MessageFilter {
        direction: one_of(query, "direction", &["inbound", "outbound"])?,
        status: one_of(
            query,
            "status",
            &["pending", "sent", "delivered", "received", "read", "failed"],
        )?,
        since: time(query, "since")?,
        until: time(query, "until")?,
        conversation_id: uuid(query, "conversation_id")?,
        message_type: query.get("type").map(str::to_owned),
        has_media: boolean(query, "has_media")?,
    })
}

pub fn conversations(query: &Query) -> Result<ConversationFilter, GraphError> {
    let (wa_id, bsuid, parent_bsuid) = user(query, "phone_number")?;
    Ok(ConversationFilter {
        status: one_of(query, "status", &["active", "ended"])?,
        last_active_since: time(query, "last_active_since")?,
        last_active_until: time(query, "last_active_until")?,
        wa_id,
        bsuid,
        parent_bsuid,
        username: query.get("username").map(str::to_owned),
    })
}

/// A user identifier filter: a phone number, or a BSUID wherever a phone is accepted (users
/// without a phone number are known by it). Returns `(wa_id, bsuid, parent_bsuid)`.
type UserKey = (Option<String>, Option<String>, Option<String>);

fn user(query: &Query, phone_name: &str) -> Result<UserKey, GraphError> {
    use crate::domain::contacts::{is_bsuid, is_parent_bsuid};
    let mut key: UserKey = (None, None, None);
    match query.get(phone_name) {
        Some(raw) if is_parent_bsuid(raw) => key.2 = Some(raw.to_owned()),
        Some(raw) if is_bsuid(raw) => key.1 = Some(raw.to_owned()),
        Some(_) => key.0 = phone(query, phone_name)?,
        None => {}
    }
    if let Some(raw) = query.get("business_scoped_user_id") {
        if is_parent_bsuid(raw) {
            key.2 = Some(raw.to_owned());
        } else {
            key.1 = Some(raw.to_owned());
        }
    }
    Ok(key)
}

pub fn contacts(query: &Query) -> Result<ContactFilter, GraphError> {
    let (wa_id, bsuid, parent_bsuid) = user(query, "wa_id")?;
    Ok(ContactFilter {
        wa_id,
        bsuid,
        parent_bsuid,
        customer_id: uuid(query, "customer_id")?,
        has_customer: boolean(query, "has_customer")?,
        username: query.get("username").map(str::to_owned),
    })
}

pub fn calls(query: &Query) -> Result<CallFilter, GraphError> {
    Ok(CallFilter {
        direction: one_of(query, "direction", &["inbound", "outbound"])?,
        status: one_of(
            query,
            "status",
            &["initiated", "ringing", "answered", "completed", "failed"],
        )?,
        since: time(query, "since")?,
        until: time(query, "until")?,
        call_id: query.get("call_id").map(str::to_owned),
    })
}

fn optional_text(body: &Value, key: &str) -> Result<Option<Option<String>>, GraphError> {
    match body.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if s.chars().count() <= 255 => Ok(Some(Some(s.clone()))),
        Some(_) => Err(GraphError::invalid_parameter(format!(
            "{key}: must be a string of at most 255 characters or null"
        ))),
    }
}

/// Applies a contact PATCH (JS: `profile_name`, `display_name`, `metadata`; Python: `name`,
/// `customer_id`, `metadata`). At least one field must be given.
pub async fn apply_contact_patch(
    store: &DynStore,
    number: &NumberConfig,
    contact: &mut ContactRow,
    body: &Value,
) -> Result<(), GraphError> {
    let mut changed = false;
    if let Some(v) = optional_text(body, "profile_name")? {
        contact.profile_name = v;
        changed = true;
    }
    for key in ["display_name", "name"] {
        if let Some(v) = optional_text(body, key)? {
            contact.display_name = v;
            changed = true;
        }
    }
    match body.get("metadata") {
        None => {}
        Some(Value::Object(map)) => {
            contact.metadata = Value::Object(map.clone()).to_string();
            changed = true;
        }
        Some(_) => {
            return Err(GraphError::invalid_parameter(
                "metadata: must be a JSON object",
            ))
        }
    }
    match body.get("customer_id") {
        None => {}
        Some(Value::Null) => {
            contact.customer_id = None;
            changed = true;
        }
        Some(Value::String(raw)) => {
            let id = Uuid::parse_str(raw).map_err(|_| {
                GraphError::invalid_parameter("customer_id: must be a customer UUID")
            })?;
            match store.get_customer(number.project_id, id).await {
                Ok(_) => {}
                Err(StoreError::NotFound) => {
                    return Err(GraphError::invalid_parameter(
                        "customer_id: no such customer in this project",
                    ))
                }
                Err(e) => return Err(e.into()),
            }
            contact.customer_id = Some(id);
            changed = true;
        }
        Some(_) => {
            return Err(GraphError::invalid_parameter(
                "customer_id: must be a customer UUID or null",
            ))
        }
    }
    if !changed {
        return Err(GraphError::invalid_parameter(
            "body: give at least one of profile_name, display_name, name, metadata, customer_id",
        ));
    }
    contact.updated_at = crate::store::now();
    Ok(())
}
