//! What Meta says about a number's standing and its templates, from the WABA-level webhooks:
//! `account_update` (partner app uninstalled, offboarded, deleted, banned; official business
//! account), `phone_number_quality_update` (messaging limit, throughput upgrade) and the template
//! webhooks. A number or template Meta will refuse to send for is refused by the proxy itself
//! ([`refusal`]), answered from the number cache without a call to Meta.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::contacts::text;
use super::envelope::RoutedNumber;
use crate::store::{NumberFacts, StoreResult, StoreTx, TemplateRow};

/// Account states under which Meta no longer sends for the number.
pub const PARTNER_APP_UNINSTALLED: &str = "partner_app_uninstalled";
pub const OFFBOARDED: &str = "offboarded";
pub const DELETED: &str = "deleted";
pub const DISABLED: &str = "disabled";

/// The account state an `account_update` event sets: `Some(None)` clears it (reinstated,
/// reconnected), `None` leaves it.
fn account_state(value: &Value) -> Option<Option<&'static str>> {
    let event = text(value, "event")?;
    Some(match event.as_str() {
        "PARTNER_APP_UNINSTALLED" => Some(PARTNER_APP_UNINSTALLED),
        "ACCOUNT_OFFBOARDED" | "PARTNER_REMOVED" => Some(OFFBOARDED),
        "ACCOUNT_DELETED" => Some(DELETED),
        "PARTNER_APP_INSTALLED" | "ACCOUNT_RECONNECTED" | "PARTNER_ADDED" => None,
        "DISABLED_UPDATE" => {
            let ban = value
                .pointer("/ban_info/waba_ban_state")
                .and_then(Value::as_str)
                .unwrap_or("");
            match ban {
                "DISABLE" => Some(DISABLED),
                "REINSTATE" => None,
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// `account_update`: the number's account state, and the official-business-account badge.
pub async fn apply_account_update(
    tx: &mut dyn StoreTx,
    number: &RoutedNumber,
    value: &Value,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    if let Some(state) = account_state(value) {
        tx.set_account_state(number.internal_id, state, now).await?;
    }
    if text(value, "event").as_deref() == Some("VERIFIED_ACCOUNT") {
        let facts = NumberFacts {
            is_official_business_account: Some(true),
            ..NumberFacts::default()
        };
        tx.apply_number_facts(number.internal_id, &facts, now)
            .await?;
    }
    Ok(())
}

/// `phone_number_quality_update`: the messaging limit (`max_daily_conversations_per_business`,
/// before Feb 2026 `current_limit`) or, with `THROUGHPUT_UPGRADE` / `TIER_UNLIMITED`, the
/// higher throughput level (which also ends a pause for the upgrade: Meta's upgrade is done).
pub async fn apply_quality_update(
    tx: &mut dyn StoreTx,
    number: &RoutedNumber,
    value: &Value,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let event = text(value, "event").unwrap_or_default();
    let limit = text(value, "max_daily_conversations_per_business")
        .or_else(|| text(value, "current_limit"));
    let mut facts = NumberFacts::default();
    if event == "THROUGHPUT_UPGRADE" || limit.as_deref() == Some("TIER_UNLIMITED") {
        facts.throughput_tier = Some("HIGH".into());
    }
    facts.messaging_limit = limit.filter(|l| l.starts_with("TIER_") && l != "TIER_UNLIMITED");
    tx.apply_number_facts(number.internal_id, &facts, now).await
}

/// A template id as Meta sends it (a number, sometimes a string).
fn template_id(value: &Value) -> Option<String> {
    match value.get("message_template_id")? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// The template webhooks: status, quality and category changes, kept per template.
pub async fn apply_template_event(
    tx: &mut dyn StoreTx,
    number: &RoutedNumber,
    field: &str,
    value: &Value,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let Some(template_id) = template_id(value) else {
        return Ok(());
    };
    let mut row = TemplateRow {
        phone_number_internal_id: number.internal_id,
        template_id,
        name: text(value, "message_template_name"),
        language: text(value, "message_template_language"),
        updated_at: now,
        ..TemplateRow::default()
    };
    match field {
        "message_template_status_update" => {
            row.status = text(value, "event").map(|e| e.to_ascii_uppercase());
            row.reason = text(value, "reason").filter(|r| r != "NONE");
        }
        "message_template_quality_update" => {
            row.quality_score = text(value, "new_quality_score");
        }
        "template_category_update" => {
            row.category = text(value, "new_category").or_else(|| text(value, "correct_category"));
        }
        _ => return Ok(()),
    }
    tx.save_template(&row).await
}

/// The template webhook fields.
pub const TEMPLATE_FIELDS: [&str; 3] = [
    "message_template_status_update",
    "message_template_quality_update",
    "template_category_update",
];

/// Why the proxy answers a send itself, in Graph's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: u32,
    pub title: &'static str,
    pub details: String,
}

/// Whether Meta would refuse this send for the number's account state or a paused or disabled
/// template; answered from what the number cache holds (no database read).
pub fn refusal(
    account_state: Option<&str>,
    blocked_templates: &[String],
    body: &Value,
) -> Option<Refusal> {
    if let Some(state) = account_state {
        // Meta answers a send for a banned account with 131031, and one for an account the app
        // can no longer reach (uninstalled, offboarded, deleted) with a permission error.
        return Some(if state == DISABLED {
            Refusal {
                status: 403,
                code: 131031,
                title: "Business Account locked",
                details: "Meta has disabled this WhatsApp Business Account (account_update DISABLED_UPDATE); wagate did not send the message. Resolve the ban in WhatsApp Manager.".into(),
            }
        } else {
            Refusal {
                status: 403,
                code: 200,
                title: "Permissions error",
                details: format!("this number's WhatsApp Business Account is {state} (account_update); wagate did not send the message. Connect the number again to send from it."),
            }
        });
    }
    if body.get("type").and_then(Value::as_str) != Some("template") || blocked_templates.is_empty()
    {
        return None;
    }
    let template = body.get("template")?;
    let name = text(template, "name")?;
    let language = template
        .pointer("/language/code")
        .and_then(Value::as_str)
        .unwrap_or("");
    let status = blocked_templates.iter().find_map(|entry| {
        let mut parts = entry.splitn(3, ':');
        let (status, blocked_name, blocked_language) =
            (parts.next()?, parts.next()?, parts.next()?);
        // An empty language: Meta did not say which one, so every language is held back.
        (blocked_name == name && (blocked_language == language || blocked_language.is_empty()))
            .then_some(status)
    })?;
    let (code, title, what) = if status == "DISABLED" {
        (132016, "Template is disabled", "disabled")
    } else {
        (132015, "Template is paused", "paused")
    };
    Some(Refusal {
        status: 400,
        code,
        title,
        details: format!("Meta has {what} the template {name} ({language}); wagate did not send the message. Edit the template or wait for Meta to reinstate it."),
    })
}
