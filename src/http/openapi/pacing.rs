//! Pacing and queued sends in the document: a number's send rate, the project's pair-rate mode,
//! and the broadcasts (Kapso's Broadcasts API).

use serde_json::{json, Value};

use super::model::{Auth, Operation, PLATFORM_ERRORS};

/// The Platform errors plus 409 (a lifecycle change the broadcast's status does not allow).
fn with_conflict(success: (u16, &'static str)) -> Vec<(u16, &'static str, &'static str)> {
    let mut responses = vec![(success.0, "success", success.1)];
    responses.extend_from_slice(PLATFORM_ERRORS);
    responses.push((
        409,
        "not allowed in the broadcast's status (the message says which)",
        "PlatformError",
    ));
    responses
}

fn plain(success: (u16, &'static str)) -> Vec<(u16, &'static str, &'static str)> {
    let mut responses = vec![(success.0, "success", success.1)];
    responses.extend_from_slice(PLATFORM_ERRORS);
    responses
}

const LIST_QUERY: &[(&str, &str)] = &[("limit", "1 to 100, default 20"), ("after", "cursor")];

pub(super) fn operations() -> Vec<Operation> {
    let number = "/platform/v1/whatsapp/phone_numbers/{phone_number_id}/pacing";
    let broadcasts = "/platform/v1/whatsapp/broadcasts";
    let one = "/platform/v1/whatsapp/broadcasts/{broadcast_id}";
    let op = |method, path: String, summary, query, body, responses| Operation {
        method,
        path,
        summary,
        auth: Auth::ApiKey,
        query,
        body,
        responses,
    };
    vec![
        op("get", number.into(), "The number's send rate: its tier's (STANDARD, HIGH, coexistence) or its own, this instance's share, and any pause (131057)", &[], None, plain((200, "NumberPacingData"))),
        op("patch", number.into(), "Sets the number's own send rate in messages per second (1 to 10000), or null for its tier's", &[], Some("NumberPacingInput"), plain((200, "NumberPacingData"))),
        op("get", "/platform/v1/pacing".into(), "The project's business-user pair-rate mode (observe, enforce, off) and the pacing limits", &[], None, plain((200, "ProjectPacingData"))),
        op("patch", "/platform/v1/pacing".into(), "Sets the project's pair-rate mode, or null for the server's default", &[], Some("ProjectPacingInput"), plain((200, "ProjectPacingData"))),
        op("post", broadcasts.into(), "Creates a broadcast (draft, 201); with recipients in the body it starts sending at once (202)", &[], Some("BroadcastCreate"), {
            let mut r = plain((201, "BroadcastData"));
            r.push((202, "created and sending", "BroadcastData"));
            r
        }),
        op("get", broadcasts.into(), "The project's broadcasts, newest first", LIST_QUERY, None, plain((200, "BroadcastList"))),
        op("get", one.into(), "A broadcast with its counts by recipient state", &[], None, plain((200, "BroadcastData"))),
        op("post", format!("{one}/recipients"), "Adds up to 1000 recipients (draft or scheduled); duplicates are skipped; a bad item refuses the call, naming its index", &[], Some("BroadcastRecipientsInput"), with_conflict((200, "RecipientsAdded"))),
        op("get", format!("{one}/recipients"), "Per-recipient results in the order they were added (status, wamid, Meta's error)", &[("limit", "1 to 100, default 20"), ("after", "cursor"), ("status", "pending, sending, sent or failed")], None, plain((200, "BroadcastRecipientList"))),
        op("post", format!("{one}/send"), "Starts sending now (asynchronous: poll the broadcast)", &[], None, with_conflict((202, "BroadcastData"))),
        op("post", format!("{one}/schedule"), "Schedules a draft to start at scheduled_at", &[], Some("BroadcastSchedule"), with_conflict((200, "BroadcastData"))),
        op("post", format!("{one}/cancel"), "Returns a scheduled broadcast to draft", &[], None, with_conflict((200, "BroadcastData"))),
        op("post", format!("{one}/stop"), "Stops a sending broadcast; recipients not yet sent stay pending", &[], None, with_conflict((200, "BroadcastData"))),
    ]
}

pub(super) fn schemas() -> Vec<(&'static str, Value)> {
    let nullable = |t: &str| json!({"type": [t, "null"]});
    let data = |schema: Value| json!({"type": "object", "required": ["data"], "properties": {"data": schema}});
    let number_pacing = json!({"type": "object", "required": ["phone_number_id", "rate", "rate_source", "live_instances", "instance_rate"], "properties": {
        "phone_number_id": {"type": "string"}, "enabled": {"type": "boolean"},
        "throughput_tier": nullable("string"), "is_coexistence": {"type": "boolean"},
        "pacing_rate": nullable("integer"), "rate": {"type": "integer"},
        "rate_source": {"type": "string", "enum": ["override", "HIGH", "STANDARD", "coexistence"]},
        "live_instances": {"type": "integer"}, "instance_rate": {"type": "number"},
        "paused_until": nullable("string")}});
    let project_pacing = json!({"type": "object", "required": ["pair_rate_mode", "pair_rate_mode_source"], "properties": {
        "pair_rate_mode": {"type": "string", "enum": ["observe", "enforce", "off"]},
        "pair_rate_mode_source": {"type": "string", "enum": ["project", "default"]},
        "pair_burst": {"type": "integer"}, "pair_interval_seconds": {"type": "number"},
        "max_wait_ms": {"type": "integer"}, "enabled": {"type": "boolean"}}});
    let recipient_item = json!({"type": "object", "description": "{phone_number, components} for the broadcast's template, or a whole Graph send body with to and type",
        "properties": {"phone_number": {"type": "string"}, "components": {"type": "array", "items": {"type": "object"}},
            "to": {"type": "string"}, "type": {"type": "string"}}});
    let broadcast = json!({"type": "object", "required": ["id", "name", "status", "phone_number_id", "total_recipients", "pending_count", "sent_count", "failed_count", "created_at"], "properties": {
        "id": {"type": "string", "format": "uuid"}, "name": {"type": "string"},
        "status": {"type": "string", "enum": ["draft", "scheduled", "sending", "completed", "stopped", "failed"]},
        "phone_number_id": {"type": "string"},
        "whatsapp_template": {"type": ["object", "null"], "properties": {"id": nullable("string"), "name": {"type": "string"}, "language_code": nullable("string")}},
        "total_recipients": {"type": "integer"}, "pending_count": {"type": "integer"}, "sending_count": {"type": "integer"},
        "sent_count": {"type": "integer"}, "failed_count": {"type": "integer"}, "delivered_count": {"type": "integer"},
        "read_count": {"type": "integer"}, "scheduled_at": nullable("string"), "started_at": nullable("string"),
        "completed_at": nullable("string"), "stopped_at": nullable("string"),
        "created_at": {"type": "string"}, "updated_at": {"type": "string"}}});
    let recipient = json!({"type": "object", "required": ["id", "phone_number", "status", "attempts"], "properties": {
        "id": {"type": "string", "format": "uuid"}, "phone_number": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "sending", "sent", "failed"]},
        "wamid": nullable("string"), "error": {"type": ["object", "null"]}, "attempts": {"type": "integer"},
        "next_attempt_at": nullable("string"), "sent_at": nullable("string"), "updated_at": {"type": "string"}}});
    let paging = json!({"type": "object", "properties": {"cursors": {"type": "object"}, "next": nullable("string"), "previous": nullable("string")}});
    vec![
        ("NumberPacingData", data(number_pacing)),
        (
            "NumberPacingInput",
            json!({"type": "object", "required": ["pacing_rate"], "properties": {"pacing_rate": {"type": ["integer", "null"], "minimum": 1, "maximum": 10000}}}),
        ),
        ("ProjectPacingData", data(project_pacing)),
        (
            "ProjectPacingInput",
            json!({"type": "object", "required": ["pair_rate_mode"], "properties": {"pair_rate_mode": {"type": ["string", "null"], "enum": ["observe", "enforce", "off", null]}}}),
        ),
        (
            "BroadcastCreate",
            json!({"type": "object", "required": ["whatsapp_broadcast"], "properties": {"whatsapp_broadcast": {"type": "object", "required": ["phone_number_id"], "properties": {
            "name": {"type": "string"}, "phone_number_id": {"type": "string"},
            "whatsapp_template_id": {"type": "string"},
            "template": {"type": "object", "properties": {"name": {"type": "string"}, "language": {"type": "string"}}},
            "recipients": {"type": "array", "maxItems": 1000, "items": recipient_item.clone()}}}}}),
        ),
        (
            "BroadcastRecipientsInput",
            json!({"type": "object", "required": ["whatsapp_broadcast"], "properties": {"whatsapp_broadcast": {"type": "object", "required": ["recipients"], "properties": {
            "recipients": {"type": "array", "maxItems": 1000, "items": recipient_item}}}}}),
        ),
        (
            "BroadcastSchedule",
            json!({"type": "object", "required": ["whatsapp_broadcast"], "properties": {"whatsapp_broadcast": {"type": "object", "required": ["scheduled_at"], "properties": {
            "scheduled_at": {"type": "string", "format": "date-time"}}}}}),
        ),
        ("BroadcastData", data(broadcast.clone())),
        (
            "BroadcastList",
            json!({"type": "object", "required": ["data", "paging"], "properties": {"data": {"type": "array", "items": broadcast}, "paging": paging.clone()}}),
        ),
        (
            "RecipientsAdded",
            data(
                json!({"type": "object", "required": ["added", "duplicates", "errors"], "properties": {
            "added": {"type": "integer"}, "duplicates": {"type": "integer"}, "errors": {"type": "array", "items": {"type": "string"}}}}),
            ),
        ),
        (
            "BroadcastRecipientList",
            json!({"type": "object", "required": ["data", "paging"], "properties": {"data": {"type": "array", "items": recipient}, "paging": paging}}),
        ),
    ]
}

/// The phone-number object's pacing values (added to the `PhoneNumber` schema).
pub(super) fn phone_number_fields() -> Vec<(&'static str, Value)> {
    vec![
        ("pacing_rate", json!({"type": ["integer", "null"]})),
        ("paused_until", json!({"type": ["string", "null"]})),
    ]
}
