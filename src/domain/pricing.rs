//! The pricing ledger: since July 2025 Meta's status webhooks carry `pricing` (`pricing_model`,
//! `type`, `category`, and the deprecated `billable`). The first status of a message that
//! carries it enters the ledger (one row per message, whatever arrives after), counted by day,
//! category and pricing type for the usage route and as `wagate_priced_messages_total`.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde_json::Value;

use super::contacts::text;
use super::envelope::RoutedNumber;
use crate::store::{PricedMessage, StoreResult, StoreTx, UsageRow};

/// Pricing types Meta does not bill (everything else, `regular` included, is billed).
const FREE_TYPES: [&str; 2] = ["free_customer_service", "free_entry_point"];

/// Whether a priced message is billed: Meta's `billable` when it still sends it, else by type.
fn billable(pricing: &Value, pricing_type: &str) -> bool {
    pricing
        .get("billable")
        .and_then(Value::as_bool)
        .unwrap_or(!FREE_TYPES.contains(&pricing_type))
}

/// The ledger row a status webhook makes, if it carries `pricing`.
pub fn priced(number: &RoutedNumber, status: &Value, now: DateTime<Utc>) -> Option<PricedMessage> {
    let pricing = status.get("pricing")?;
    let wamid = text(status, "id")?;
    let category = text(pricing, "category")?;
    // Before PMP (July 2025) Meta sent no `type`: a conversation-based price is `regular`.
    let pricing_type = text(pricing, "type").unwrap_or_else(|| "regular".into());
    let at = status
        .get("timestamp")
        .and_then(|t| {
            t.as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| t.as_i64())
        })
        .and_then(|secs| Utc.timestamp_opt(secs, 0).single())
        .unwrap_or(now);
    Some(PricedMessage {
        phone_number_internal_id: number.internal_id,
        wamid,
        project_id: number.project_id,
        day: at.date_naive(),
        billable: billable(pricing, &pricing_type),
        category,
        pricing_type,
        pricing_model: text(pricing, "pricing_model"),
        created_at: now,
    })
}

/// Adds a status's pricing to the ledger (once per message).
pub async fn record(
    tx: &mut dyn StoreTx,
    number: &RoutedNumber,
    status: &Value,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let Some(priced) = priced(number, status, now) else {
        return Ok(());
    };
    if tx.record_pricing(&priced).await? {
        metrics::counter!(
            "wagate_priced_messages_total",
            "category" => priced.category.clone(),
            "pricing_type" => priced.pricing_type.clone(),
            "billable" => if priced.billable { "true" } else { "false" },
        )
        .increment(1);
    }
    Ok(())
}

/// One day of a number's usage.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageDay {
    pub date: NaiveDate,
    pub total: i64,
    pub billable: i64,
    pub free: i64,
    pub categories: Vec<UsageCount>,
}

/// Priced messages of one category and pricing type on a day.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageCount {
    pub category: String,
    pub pricing_type: String,
    pub billable: bool,
    pub count: i64,
}

/// The ledger's rows grouped by day (days without priced messages are left out).
pub fn by_day(rows: Vec<UsageRow>) -> Vec<UsageDay> {
    let mut days: Vec<UsageDay> = Vec::new();
    for row in rows {
        if days.last().map(|d| d.date) != Some(row.day) {
            days.push(UsageDay {
                date: row.day,
                total: 0,
                billable: 0,
                free: 0,
                categories: Vec::new(),
            });
        }
        let day = days.last_mut().expect("pushed above");
        day.total += row.count;
        if row.billable {
            day.billable += row.count;
        } else {
            day.free += row.count;
        }
        day.categories.push(UsageCount {
            category: row.category,
            pricing_type: row.pricing_type,
            billable: row.billable,
            count: row.count,
        });
    }
    days
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    fn number() -> RoutedNumber {
        RoutedNumber {
            internal_id: Uuid::nil(),
            phone_number_id: "1".into(),
            project_id: Uuid::nil(),
            forwarding: false,
            webhooks: Default::default(),
        }
    }

    #[test]
    fn free_types_are_not_billable_unless_meta_says_so() {
        let now = Utc::now();
        let status = |pricing: Value| json!({"id": "wamid.1", "status": "sent", "timestamp": "1767225600", "pricing": pricing});
        let p = priced(&number(), &status(json!({"pricing_model": "PMP", "type": "free_customer_service", "category": "service"})), now).unwrap();
        assert!(!p.billable);
        assert_eq!(p.day, NaiveDate::from_ymd_opt(2026, 1, 1).unwrap());
        let p = priced(
            &number(),
            &status(json!({"type": "regular", "category": "marketing"})),
            now,
        )
        .unwrap();
        assert!(p.billable);
        let p = priced(
            &number(),
            &status(json!({"billable": false, "category": "utility"})),
            now,
        )
        .unwrap();
        assert!(!p.billable);
        assert_eq!(p.pricing_type, "regular");
        assert!(priced(&number(), &json!({"id": "wamid.1", "status": "read"}), now).is_none());
    }
}
