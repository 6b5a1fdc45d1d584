//! What Meta reports beyond messages, in the document: a number's usage (the pricing ledger),
//! its templates' state, and the groups it takes part in.

use serde_json::{json, Value};

use super::model::{Auth, Operation, PLATFORM_ERRORS};

const GRAPH_ERRORS: &[(u16, &str, &str)] = &[
    (
        400,
        "bad parameter: error_data.details names it",
        "GraphError",
    ),
    (401, "missing or invalid credentials", "GraphError"),
    (
        404,
        "unknown or not the caller's (code 100, subcode 33)",
        "GraphError",
    ),
];

fn with_errors(
    success: (u16, &'static str),
    errors: &[(u16, &'static str, &'static str)],
) -> Vec<(u16, &'static str, &'static str)> {
    let mut responses = vec![(success.0, "success", success.1)];
    responses.extend_from_slice(errors);
    responses
}

pub(super) fn operations() -> Vec<Operation> {
    let number = "/platform/v1/whatsapp/phone_numbers/{phone_number_id}";
    let mut ops = vec![
        Operation {
            method: "get",
            path: format!("{number}/usage"),
            summary: "Messages Meta priced, per day, category and pricing type (billable and free), from the pricing of status webhooks",
            auth: Auth::ApiKey,
            query: &[
                ("since", "first day, YYYY-MM-DD (default: 29 days before until)"),
                ("until", "last day, YYYY-MM-DD (default: today, UTC)"),
                ("granularity", "day (the only one)"),
            ],
            body: None,
            responses: with_errors((200, "UsageData"), PLATFORM_ERRORS),
        },
        Operation {
            method: "get",
            path: format!("{number}/templates"),
            summary: "Each template's state as Meta's template webhooks reported it (status, quality, category)",
            auth: Auth::ApiKey,
            query: &[],
            body: None,
            responses: with_errors((200, "TemplateStateList"), PLATFORM_ERRORS),
        },
    ];
    // Stored-data routes are served on both Graph mounts and documented on the first, like
    // the others.
    {
        let mount = "/meta/whatsapp/{version}";
        ops.push(Operation {
            method: "get",
            path: format!("{mount}/{{phone_number_id}}/groups"),
            summary: "Stored groups the number takes part in (Groups API webhooks), newest first",
            auth: Auth::Graph,
            query: &[
                ("state", "active, deleted, suspended or failed"),
                ("limit", "1 to 100"),
                ("after", "cursor"),
                ("before", "cursor"),
            ],
            body: None,
            responses: with_errors((200, "GraphList"), GRAPH_ERRORS),
        });
        ops.push(Operation {
            method: "get",
            path: format!("{mount}/{{phone_number_id}}/groups/{{group_id}}"),
            summary: "One stored group with its participants",
            auth: Auth::Graph,
            query: &[],
            body: None,
            responses: with_errors((200, "Group"), GRAPH_ERRORS),
        });
    }
    ops
}

pub(super) fn schemas() -> Vec<(&'static str, Value)> {
    let nullable = |t: &str| json!({"type": [t, "null"]});
    let count = json!({"type": "object", "required": ["category", "pricing_type", "billable", "count"], "properties": {
        "category": {"type": "string"}, "pricing_type": {"type": "string"}, "billable": {"type": "boolean"},
        "count": {"type": "integer"}}});
    let day = json!({"type": "object", "required": ["date", "total", "billable", "free", "categories"], "properties": {
        "date": {"type": "string", "format": "date"}, "total": {"type": "integer"}, "billable": {"type": "integer"},
        "free": {"type": "integer"}, "categories": {"type": "array", "items": count.clone()}}});
    let usage = json!({"type": "object", "required": ["phone_number_id", "since", "until", "granularity", "total", "billable", "free", "by_category", "days"], "properties": {
        "phone_number_id": {"type": "string"}, "since": {"type": "string", "format": "date"},
        "until": {"type": "string", "format": "date"}, "granularity": {"type": "string", "enum": ["day"]},
        "total": {"type": "integer"}, "billable": {"type": "integer"}, "free": {"type": "integer"},
        "by_category": {"type": "array", "items": count}, "days": {"type": "array", "items": day}}});
    let template = json!({"type": "object", "required": ["id", "name", "language", "status", "quality_score", "category", "reason", "updated_at"], "properties": {
        "id": {"type": "string"}, "name": nullable("string"), "language": nullable("string"), "status": nullable("string"),
        "quality_score": nullable("string"), "category": nullable("string"), "reason": nullable("string"),
        "updated_at": {"type": "string"}}});
    let participant = json!({"type": "object", "properties": {
        "wa_id": nullable("string"), "user_id": nullable("string"),
        "state": {"type": "string", "enum": ["joined", "removed", "requested"]}, "updated_at": {"type": "string"}}});
    let group = json!({"type": "object", "required": ["id", "state", "participants", "participant_count", "created_at", "updated_at"], "properties": {
        "id": {"type": "string"}, "subject": nullable("string"), "description": nullable("string"),
        "invite_link": nullable("string"), "join_approval_mode": nullable("string"),
        "state": {"type": "string", "enum": ["active", "deleted", "suspended", "failed"]},
        "participants": {"type": "array", "items": participant}, "participant_count": {"type": "integer"},
        "created_at": {"type": "string"}, "updated_at": {"type": "string"}}});
    vec![
        (
            "UsageData",
            json!({"type": "object", "required": ["data"], "properties": {"data": usage}}),
        ),
        (
            "TemplateStateList",
            json!({"type": "object", "required": ["data"], "properties": {"data": {"type": "array", "items": template}}}),
        ),
        ("Group", group),
    ]
}

/// The phone-number object's values Meta reports (added to the `PhoneNumber` schema).
pub(super) fn phone_number_fields() -> Vec<(&'static str, Value)> {
    let nullable = |t: &str| json!({"type": [t, "null"]});
    vec![
        ("throughput_tier", nullable("string")),
        (
            "whatsapp_business_manager_messaging_limit",
            nullable("integer"),
        ),
        ("is_official_business_account", json!({"type": "boolean"})),
        ("is_pin_enabled", json!({"type": "boolean"})),
        ("webhook_verified_at", nullable("string")),
        ("account_state", nullable("string")),
        ("account_state_updated_at", nullable("string")),
        (
            "blocked_templates",
            json!({"type": "array", "items": {"type": "object", "required": ["name", "language", "status"], "properties": {
            "name": {"type": "string"}, "language": {"type": "string"}, "status": {"type": "string", "enum": ["PAUSED", "DISABLED"]}}}}),
        ),
    ]
}
