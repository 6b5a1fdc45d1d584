//! Contacts with BSUID-first identity (design §7): a user is matched by business-scoped user ID
//! first and phone (`wa_id`) second; either may be missing. Identity changes keep history, and no
//! phone normalisation ever touches a BSUID.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::{ContactRow, StoreResult, StoreTx};

/// Who a message or event is about, as Meta identified them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub wa_id: Option<String>,
    pub bsuid: Option<String>,
    pub parent_bsuid: Option<String>,
    pub profile_name: Option<String>,
    pub username: Option<String>,
}

impl Identity {
    pub fn is_empty(&self) -> bool {
        self.wa_id.is_none() && self.bsuid.is_none()
    }
}

/// Digits of a phone number (`+1 (555) 123-4567` → `15551234567`); `None` when there are none.
/// Only ever applied to phone numbers, never to BSUIDs.
pub fn normalize_wa_id(raw: &str) -> Option<String> {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    (!digits.is_empty() && !is_bsuid(raw)).then_some(digits)
}

/// `CC.<alnum>` or `CC.ENT.<alnum>` (design §7).
pub fn is_bsuid(value: &str) -> bool {
    let mut parts = value.split('.');
    let country = parts.next().unwrap_or("");
    let rest: Vec<&str> = parts.collect();
    let id = match rest.as_slice() {
        [id] => id,
        ["ENT", id] => id,
        _ => return false,
    };
    country.len() == 2
        && country.bytes().all(|b| b.is_ascii_uppercase())
        && !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A non-empty string field of a JSON object (Meta sends `""` for withheld phone numbers).
pub fn text(value: &serde_json::Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The array under `key`, or none.
pub fn array<'a>(value: &'a serde_json::Value, key: &str) -> &'a [serde_json::Value] {
    value
        .get(key)
        .and_then(serde_json::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn set_if_some(field: &mut Option<String>, new: &Option<String>) -> bool {
    match new {
        Some(value) if field.as_ref() != Some(value) => {
            *field = Some(value.clone());
            true
        }
        _ => false,
    }
}

/// The contact an identity names on `number`: by BSUID first, then by phone.
async fn find(
    tx: &mut dyn StoreTx,
    number: Uuid,
    identity: &Identity,
) -> StoreResult<Option<ContactRow>> {
    if let Some(bsuid) = &identity.bsuid {
        if let Some(contact) = tx.find_contact_by_bsuid(number, bsuid).await? {
            return Ok(Some(contact));
        }
    }
    match &identity.wa_id {
        Some(wa_id) => tx.find_contact_by_wa_id(number, wa_id).await,
        None => Ok(None),
    }
}

/// Whether a BSUID is a parent one (`CC.ENT.…`), shared across linked portfolios.
pub fn is_parent_bsuid(value: &str) -> bool {
    is_bsuid(value) && value.split('.').nth(1) == Some("ENT")
}

/// Gives `contact` the identity's BSUID and phone where they differ, with history. An identifier
/// another contact of the number already holds is never taken from it silently.
async fn adopt(
    tx: &mut dyn StoreTx,
    number: Uuid,
    contact: &mut ContactRow,
    identity: &Identity,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let mut changed = false;
    if let Some(bsuid) = identity
        .bsuid
        .as_ref()
        .filter(|b| contact.business_scoped_user_id.as_ref() != Some(*b))
    {
        let holder = tx.find_contact_by_bsuid(number, bsuid).await?;
        if holder.is_none_or(|h| h.id == contact.id) {
            if let Some(old) = contact.business_scoped_user_id.as_deref() {
                tx.insert_identity_change(
                    contact.id,
                    "business_scoped_user_id",
                    Some(old),
                    Some(bsuid),
                    now,
                )
                .await?;
            }
            contact.business_scoped_user_id = Some(bsuid.clone());
            changed = true;
        }
    }
    if let Some(wa_id) = identity
        .wa_id
        .as_ref()
        .filter(|w| contact.wa_id.as_ref() != Some(*w))
    {
        let holder = tx.find_contact_by_wa_id(number, wa_id).await?;
        if holder.is_none_or(|h| h.id == contact.id) {
            if let Some(old) = contact.wa_id.as_deref() {
                tx.insert_identity_change(contact.id, "wa_id", Some(old), Some(wa_id), now)
                    .await?;
            }
            contact.wa_id = Some(wa_id.clone());
            changed = true;
        }
    }
    changed |= set_if_some(
        &mut contact.parent_business_scoped_user_id,
        &identity.parent_bsuid,
    );
    changed |= set_if_some(&mut contact.profile_name, &identity.profile_name);
    changed |= set_if_some(&mut contact.username, &identity.username);
    Ok(changed)
}

/// Finds the contact for `identity` on `number`, creating or updating it.
pub async fn upsert(
    tx: &mut dyn StoreTx,
    project_id: Uuid,
    number: Uuid,
    identity: &Identity,
    now: DateTime<Utc>,
) -> StoreResult<Option<ContactRow>> {
    if identity.is_empty() {
        // Known only by a parent BSUID (a send addressed to it): the one contact under that
        // parent, if any; a parent alone never makes a new contact.
        return match &identity.parent_bsuid {
            Some(parent) => tx.find_contact_by_parent_bsuid(number, parent).await,
            None => Ok(None),
        };
    }
    let Some(mut contact) = find(tx, number, identity).await? else {
        let contact = ContactRow {
            id: Uuid::now_v7(),
            project_id,
            phone_number_internal_id: number,
            wa_id: identity.wa_id.clone(),
            business_scoped_user_id: identity.bsuid.clone(),
            parent_business_scoped_user_id: identity.parent_bsuid.clone(),
            username: identity.username.clone(),
            profile_name: identity.profile_name.clone(),
            display_name: None,
            customer_id: None,
            metadata: "{}".into(),
            created_at: now,
            updated_at: now,
        };
        if tx.insert_contact(&contact).await? {
            return Ok(Some(contact));
        }
        // Another writer created it between our lookup and insert.
        return Box::pin(upsert(tx, project_id, number, identity, now)).await;
    };
    if adopt(tx, number, &mut contact, identity, now).await? {
        contact.updated_at = now;
        tx.update_contact(&contact).await?;
    }
    Ok(Some(contact))
}

/// Applies an explicit identity change (`user_id_update`, `system` messages): the contact found by
/// its old identifiers takes the new ones, with history.
pub async fn change_identity(
    tx: &mut dyn StoreTx,
    number: Uuid,
    old: &Identity,
    new: &Identity,
    now: DateTime<Utc>,
) -> StoreResult<Option<ContactRow>> {
    let Some(mut contact) = find(tx, number, old).await? else {
        return Ok(None);
    };
    if adopt(tx, number, &mut contact, new, now).await? {
        contact.updated_at = now;
        tx.update_contact(&contact).await?;
    }
    Ok(Some(contact))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bsuids_are_recognised_and_never_normalised() {
        assert!(is_bsuid("US.13491208655302741918"));
        assert!(is_bsuid("US.ENT.11815799212886844830"));
        assert!(!is_bsuid("us.123"));
        assert!(!is_bsuid("15551234567"));
        assert!(!is_bsuid("US."));
        assert_eq!(
            normalize_wa_id("+1 (555) 123-4567").as_deref(),
            Some("15551234567")
        );
        assert_eq!(normalize_wa_id("US.13491208655302741918"), None);
        assert_eq!(normalize_wa_id(""), None);
    }
}
