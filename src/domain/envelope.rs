//! Splitting Meta's webhook envelope by phone number (pure; no I/O).
//!
//! Meta batches changes for several numbers (and WABAs) in one POST. Each number gets its own
//! envelope with only its changes, in Meta's order; when the POST concerned a single number the
//! original bytes are kept, so a forwarded body is byte-identical to Meta's.

use serde_json::{json, Map, Value};
use uuid::Uuid;

/// Where a change belongs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChangeTarget {
    /// `value.metadata.phone_number_id`.
    Number(String),
    /// WABA-level (templates, account updates, username updates without a phone number id):
    /// `entry.id` and, when present, the display phone number.
    Waba {
        waba_id: String,
        display_phone_number: Option<String>,
    },
}

/// One `entry[].changes[]` item with its place in the envelope.
#[derive(Debug, Clone)]
pub struct Change {
    pub entry_index: usize,
    pub waba_id: String,
    pub field: String,
    pub value: Value,
    pub raw: Value,
    pub target: ChangeTarget,
}

/// Reads every change of an envelope; `None` when it is not Meta's shape at all.
pub fn changes(envelope: &Value) -> Option<Vec<Change>> {
    let entries = envelope.get("entry")?.as_array()?;
    let mut out = Vec::new();
    for (entry_index, entry) in entries.iter().enumerate() {
        let waba_id = match entry.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let Some(list) = entry.get("changes").and_then(Value::as_array) else {
            continue;
        };
        for raw in list {
            let field = raw
                .get("field")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let value = raw.get("value").cloned().unwrap_or(Value::Null);
            let pnid = value.pointer("/metadata/phone_number_id").and_then(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .or_else(|| v.as_u64().map(|n| n.to_string()))
            });
            let target = match pnid {
                Some(pnid) if !pnid.is_empty() => ChangeTarget::Number(pnid),
                _ => ChangeTarget::Waba {
                    waba_id: waba_id.clone(),
                    // `account_update` names its number as `phone_number`.
                    display_phone_number: value
                        .get("display_phone_number")
                        .or_else(|| value.get("phone_number"))
                        .and_then(Value::as_str)
                        .map(|d| d.chars().filter(char::is_ascii_digit).collect()),
                },
            };
            out.push(Change {
                entry_index,
                waba_id: waba_id.clone(),
                field,
                value,
                raw: raw.clone(),
                target,
            });
        }
    }
    Some(out)
}

/// Meta's envelope with only `selected` changes (indexes into `all`), entries kept in order and
/// with their other keys (`id`, `time`).
pub fn restricted(envelope: &Value, all: &[Change], selected: &[usize]) -> Value {
    let object = envelope
        .get("object")
        .cloned()
        .unwrap_or(json!("whatsapp_business_account"));
    let entries = envelope
        .get("entry")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out_entries = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let changes: Vec<Value> = selected
            .iter()
            .filter(|&&i| all[i].entry_index == index)
            .map(|&i| all[i].raw.clone())
            .collect();
        if changes.is_empty() {
            continue;
        }
        let mut entry = entry.as_object().cloned().unwrap_or_else(Map::new);
        entry.insert("changes".into(), Value::Array(changes));
        out_entries.push(Value::Object(entry));
    }
    json!({ "object": object, "entry": out_entries })
}

/// The number a route belongs to, as ingest needs it. It serialises without its webhooks (they
/// hold secrets): whoever reads one back looks them up again.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RoutedNumber {
    pub internal_id: Uuid,
    /// Meta's id of the number (media downloads name it to Graph).
    pub phone_number_id: String,
    pub project_id: Uuid,
    /// Meta's payload goes to the number's `meta` webhook (`webhook_destination_url`).
    pub forwarding: bool,
    /// The number's webhooks: kapso ones get the events this write causes.
    #[serde(skip)]
    pub webhooks: super::webhooks::NumberWebhooks,
}

impl RoutedNumber {
    pub fn new(
        number: &super::number_directory::NumberConfig,
        webhooks: super::webhooks::NumberWebhooks,
    ) -> Self {
        Self {
            internal_id: number.internal_id,
            phone_number_id: number.phone_number_id.clone(),
            project_id: number.project_id,
            forwarding: number.webhook_destination_url.is_some(),
            webhooks,
        }
    }

    /// Whether an inbound message is handed to a receiver (its `processing_status` starts
    /// `pending` and follows that delivery).
    pub fn hands_off_inbound(&self) -> bool {
        self.forwarding
            || self
                .webhooks
                .iter()
                .any(|w| w.wants(super::webhooks::BUFFERABLE_EVENT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Value {
        json!({"object": "whatsapp_business_account", "entry": [
            {"id": "W1", "changes": [
                {"field": "messages", "value": {"metadata": {"phone_number_id": "1"}, "messages": []}},
                {"field": "messages", "value": {"metadata": {"phone_number_id": "2"}, "statuses": []}}
            ]},
            {"id": "W2", "time": 5, "changes": [
                {"field": "business_username_updates", "value": {"display_phone_number": "+1 555", "status": "approved"}},
                {"field": "calls", "value": {"metadata": {"phone_number_id": "1"}, "calls": []}}
            ]}
        ]})
    }

    #[test]
    fn changes_are_targeted_by_number_or_waba() {
        let all = changes(&envelope()).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].target, ChangeTarget::Number("1".into()));
        assert_eq!(
            all[2].target,
            ChangeTarget::Waba {
                waba_id: "W2".into(),
                display_phone_number: Some("1555".into())
            }
        );
        assert!(changes(&json!({"nope": 1})).is_none());
    }

    #[test]
    fn restriction_keeps_entry_keys_and_order() {
        let env = envelope();
        let all = changes(&env).unwrap();
        let for_one = restricted(&env, &all, &[0, 3]);
        assert_eq!(for_one["entry"].as_array().unwrap().len(), 2);
        assert_eq!(for_one["entry"][0]["changes"].as_array().unwrap().len(), 1);
        assert_eq!(for_one["entry"][1]["time"], 5);
        assert_eq!(for_one["entry"][1]["changes"][0]["field"], "calls");
    }
}
