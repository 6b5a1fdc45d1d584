//! What Meta reported about a number's traffic and templates:
//! `GET /platform/v1/whatsapp/phone_numbers/{id}/usage` (the pricing ledger, by day) and
//! `GET …/{id}/templates` (each template's state from the template webhooks).

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::PlatformError;
use super::extract::ProjectKey;
use super::present::Data;
use crate::domain::field_error::FieldError;
use crate::domain::pricing::{by_day, UsageCount};
use crate::http::state::AppState;
use crate::time::iso;

/// The longest range one usage request may span, in days.
pub const MAX_USAGE_DAYS: i64 = 366;
/// The range when `since` is not given: the last 30 days up to `until`.
const DEFAULT_USAGE_DAYS: i64 = 30;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/whatsapp/phone_numbers/{phone_number_id}/usage",
            get(usage),
        )
        .route(
            "/whatsapp/phone_numbers/{phone_number_id}/templates",
            get(templates),
        )
}

#[derive(Debug, Deserialize)]
struct UsageQuery {
    since: Option<String>,
    until: Option<String>,
    granularity: Option<String>,
}

/// A day as `YYYY-MM-DD`, or the UTC day of an ISO 8601 time.
fn day(field: &str, raw: &str) -> Result<NaiveDate, FieldError> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(raw)
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc).date_naive())
        })
        .ok_or_else(|| FieldError::new(field, "must be a date (YYYY-MM-DD) or an ISO 8601 time"))
}

/// The validated range of a usage request.
fn range(query: &UsageQuery, today: NaiveDate) -> Result<(NaiveDate, NaiveDate), PlatformError> {
    let mut errors = Vec::new();
    if let Some(g) = query.granularity.as_deref().filter(|g| *g != "day") {
        errors.push(FieldError::new(
            "granularity",
            format!("must be day (got {g})"),
        ));
    }
    let until = match query.until.as_deref() {
        Some(raw) => day("until", raw).map_err(|e| errors.push(e)).ok(),
        None => Some(today),
    };
    let since = match (query.since.as_deref(), until) {
        (Some(raw), _) => day("since", raw).map_err(|e| errors.push(e)).ok(),
        (None, Some(until)) => Some(until - chrono::Days::new(DEFAULT_USAGE_DAYS as u64 - 1)),
        (None, None) => None,
    };
    if let (Some(since), Some(until)) = (since, until) {
        if since > until {
            errors.push(FieldError::new("since", "must not be after until"));
        } else if (until - since).num_days() >= MAX_USAGE_DAYS {
            errors.push(FieldError::new(
                "since",
                format!("the range may span at most {MAX_USAGE_DAYS} days; ask in parts"),
            ));
        }
    }
    match (since, until) {
        (Some(since), Some(until)) if errors.is_empty() => Ok((since, until)),
        _ => Err(PlatformError::Validation(errors)),
    }
}

async fn usage(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(phone_number_id): Path<String>,
    Query(query): Query<UsageQuery>,
) -> Result<Json<Data<Value>>, PlatformError> {
    // Another project's number and an unknown one give the same 404.
    let number = state
        .phone_numbers
        .get(key.project_id, &phone_number_id)
        .await?;
    let (since, until) = range(&query, crate::store::now().date_naive())?;
    let days = by_day(state.store.usage(number.internal_id, since, until).await?);
    let mut totals: Vec<UsageCount> = Vec::new();
    for count in days.iter().flat_map(|d| &d.categories) {
        match totals.iter_mut().find(|t| {
            t.category == count.category
                && t.pricing_type == count.pricing_type
                && t.billable == count.billable
        }) {
            Some(total) => total.count += count.count,
            None => totals.push(count.clone()),
        }
    }
    totals.sort_by(|a, b| (&a.category, &a.pricing_type).cmp(&(&b.category, &b.pricing_type)));
    let sum =
        |pick: fn(&crate::domain::pricing::UsageDay) -> i64| days.iter().map(pick).sum::<i64>();
    Ok(Json(Data {
        data: json!({
            "phone_number_id": number.phone_number_id,
            "since": since.to_string(),
            "until": until.to_string(),
            "granularity": "day",
            "total": sum(|d| d.total),
            "billable": sum(|d| d.billable),
            "free": sum(|d| d.free),
            "by_category": totals,
            "days": days,
        }),
    }))
}

async fn templates(
    State(state): State<AppState>,
    key: ProjectKey,
    Path(phone_number_id): Path<String>,
) -> Result<Json<Data<Vec<Value>>>, PlatformError> {
    let number = state
        .phone_numbers
        .get(key.project_id, &phone_number_id)
        .await?;
    let rows = state.store.templates(number.internal_id).await?;
    Ok(Json(Data {
        data: rows
            .into_iter()
            .map(|t| {
                json!({
                    "id": t.template_id,
                    "name": t.name,
                    "language": t.language,
                    "status": t.status,
                    "quality_score": t.quality_score,
                    "category": t.category,
                    "reason": t.reason,
                    "updated_at": iso(t.updated_at),
                })
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(since: Option<&str>, until: Option<&str>, granularity: Option<&str>) -> UsageQuery {
        UsageQuery {
            since: since.map(str::to_owned),
            until: until.map(str::to_owned),
            granularity: granularity.map(str::to_owned),
        }
    }

    #[test]
    fn ranges() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap();
        let (since, until) = range(&query(None, None, None), today).unwrap();
        assert_eq!(
            (since.to_string(), until.to_string()),
            ("2026-11-05".into(), "2026-12-04".into())
        );
        let (since, _) = range(
            &query(Some("2026-12-01T10:00:00Z"), None, Some("day")),
            today,
        )
        .unwrap();
        assert_eq!(since.to_string(), "2026-12-01");
        assert!(range(&query(Some("2026-12-05"), Some("2026-12-04"), None), today).is_err());
        assert!(range(&query(Some("2025-01-01"), None, None), today).is_err());
        assert!(range(&query(None, None, Some("hour")), today).is_err());
        assert!(range(&query(Some("yesterday"), None, None), today).is_err());
    }
}
