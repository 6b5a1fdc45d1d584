//! The document's component schemas: every body the API takes and answers.

use serde_json::{json, Value};

pub(super) fn schemas() -> Value {
    let loose = |properties: Value| json!({"type": "object", "properties": properties, "additionalProperties": true});
    let data = |name: &str| json!({"type": "object", "required": ["data"], "properties": {"data": {"$ref": format!("#/components/schemas/{name}")}}});
    let list = |name: &str| {
        json!({"type": "object", "required": ["data", "meta"], "properties": {
        "data": {"type": "array", "items": {"$ref": format!("#/components/schemas/{name}")}},
        "meta": {"$ref": "#/components/schemas/PageMeta"}}})
    };
    let nullable = |t: &str| json!({"type": [t, "null"]});
    let mut schemas = json!({
        "PlatformError": {"type": "object", "required": ["error"], "properties": {
            "error": {"type": "string"},
            "details": {"type": "array", "items": {"type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}}}},
        "GraphError": {"type": "object", "required": ["error"], "properties": {"error": loose(json!({
            "message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "integer"},
            "error_subcode": {"type": "integer"}, "fbtrace_id": {"type": "string"},
            "error_data": loose(json!({"messaging_product": {"type": "string"}, "details": {"type": "string"}}))}))}},
        "PageMeta": {"type": "object", "required": ["page", "per_page", "total_pages", "total_count"], "properties": {
            "page": {"type": "integer"}, "per_page": {"type": "integer"}, "total_pages": {"type": "integer"}, "total_count": {"type": "integer"}}},
        "GraphPaging": {"type": "object", "required": ["cursors", "next", "previous"], "properties": {
            "cursors": {"type": "object", "properties": {"before": nullable("string"), "after": nullable("string")}},
            "next": nullable("string"), "previous": nullable("string")}},
        "GraphList": {"type": "object", "required": ["data", "paging"], "properties": {
            "data": {"type": "array", "items": {"type": "object"}}, "paging": {"$ref": "#/components/schemas/GraphPaging"}}},
        "GraphObject": {"type": "object"},
        "JsonObject": {"type": "object"},
        "MetaEnvelope": loose(json!({"object": {"type": "string"}, "entry": {"type": "array"}})),
        "Success": {"type": "object", "required": ["success"], "properties": {"success": {"type": "boolean"}}},
        "PhoneNumber": loose(json!({
            "id": {"type": "string"}, "internal_id": {"type": "string", "format": "uuid"}, "phone_number_id": {"type": "string"},
            "business_account_id": {"type": "string"}, "name": nullable("string"), "kind": {"type": "string"},
            "customer_id": nullable("string"), "webhook_destination_url": nullable("string"),
            "is_coexistence": {"type": "boolean"}, "username": nullable("string"), "username_status": nullable("string"),
            "created_at": {"type": "string"}, "updated_at": {"type": "string"}, "webhook_secret": {"type": "string", "description": "only when generated or rotated"}})),
        "PhoneNumberData": data("PhoneNumber"),
        "PhoneNumberList": list("PhoneNumber"),
        "ConnectPhoneNumber": {"type": "object", "required": ["whatsapp_phone_number"], "properties": {"whatsapp_phone_number": loose(json!({
            "phone_number_id": {"type": "string"}, "business_account_id": {"type": "string"}, "access_token": {"type": "string"},
            "name": {"type": "string"}, "webhook_destination_url": {"type": "string"}, "webhook_secret": {"type": "string"}}))}},
        "UpdatePhoneNumber": {"type": "object", "required": ["whatsapp_phone_number"], "properties": {"whatsapp_phone_number": loose(json!({
            "access_token": {"type": "string"}, "webhook_destination_url": nullable("string"), "name": nullable("string"),
            "webhook_secret": {"type": "string"}, "rotate_webhook_secret": {"type": "boolean"}}))}},
        "Customer": loose(json!({"id": {"type": "string", "format": "uuid"}, "name": {"type": "string"},
            "external_customer_id": nullable("string"), "created_at": {"type": "string"}, "updated_at": {"type": "string"}})),
        "CustomerData": data("Customer"),
        "CustomerList": list("Customer"),
        "CustomerBody": {"type": "object", "required": ["customer"], "properties": {"customer": loose(json!({
            "name": {"type": "string"}, "external_customer_id": nullable("string")}))}},
        "SetupLink": loose(json!({"id": {"type": "string", "format": "uuid"}, "status": {"type": "string", "enum": ["active", "used", "expired", "revoked"]},
            "url": nullable("string"), "expires_at": {"type": "string"}, "allowed_connection_types": {"type": "array", "items": {"type": "string"}},
            "theme_config": {"type": "object"}})),
        "SetupLinkData": data("SetupLink"),
        "SetupLinkList": list("SetupLink"),
        "SetupLinkBody": {"type": "object", "properties": {"setup_link": loose(json!({
            "success_redirect_url": {"type": "string"}, "failure_redirect_url": {"type": "string"},
            "allowed_connection_types": {"type": "array", "items": {"type": "string", "enum": ["coexistence", "dedicated"]}},
            "theme_config": {"type": "object"}, "language": {"type": "string"}, "provision_phone_number": {"type": "boolean"},
            "phone_number_country_isos": {"type": "array", "items": {"type": "string"}}, "reconnect_phone_number": {"type": "string"}}))}},
        "SetupLinkUpdate": {"type": "object", "required": ["setup_link"], "properties": {"setup_link": loose(json!({
            "status": {"type": "string", "enum": ["revoked"]}, "expires_at": {"type": "string"}}))}},
        "Delivery": loose(json!({"id": {"type": "string", "format": "uuid"}, "phone_number_id": {"type": "string"},
            "status": {"type": "string", "enum": ["pending", "succeeded", "failed", "dead", "paused"]}, "attempt_count": {"type": "integer"},
            "idempotency_key": {"type": "string"}, "attempts": {"type": "array", "items": {"type": "object"}}})),
        "DeliveryData": data("Delivery"),
        "DeliveryList": {"type": "object", "required": ["data", "paging"], "properties": {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Delivery"}}, "paging": {"$ref": "#/components/schemas/GraphPaging"}}},
        "WebhookReplay": loose(json!({"since": {"type": "string"}, "until": {"type": "string"}, "webhook_replay": {"type": "object"}})),
        "ReplayData": {"type": "object", "required": ["data"], "properties": {"data": loose(json!({"queued": {"type": "integer"}, "truncated": {"type": "boolean"}}))}},
    });
    // Added apart: one more entry in the literal above exceeds json!'s recursion limit.
    let key = |extra: Value| {
        let mut properties = json!({"id": {"type": "string", "format": "uuid"}, "display_prefix": {"type": "string"},
            "created_at": {"type": "string"}, "revoked_at": nullable("string")});
        if let (Some(properties), Value::Object(extra)) = (properties.as_object_mut(), extra) {
            properties.extend(extra);
        }
        loose(properties)
    };
    let api_keys = [
        ("ApiKey", key(json!({}))),
        ("ApiKeyData", data("ApiKey")),
        (
            "ApiKeyList",
            json!({"type": "object", "required": ["data"], "properties": {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/ApiKey"}}}}),
        ),
        ("IssuedApiKey", key(json!({"key": {"type": "string"}}))),
        ("IssuedApiKeyData", data("IssuedApiKey")),
    ];
    for (name, schema) in api_keys {
        schemas[name] = schema;
    }
    let strings = json!({"type": "array", "items": {"type": "string"}});
    let webhook = loose(json!({
        "id": {"type": "string", "format": "uuid"}, "url": {"type": "string"},
        "kind": {"type": "string", "enum": ["kapso", "meta"]}, "events": strings, "active": {"type": "boolean"},
        "secret_key": {"type": ["string", "null"], "description": "only in the answer to create and to a rotation"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "buffer_enabled": {"type": "boolean"}, "buffer_window_seconds": nullable("integer"),
        "max_buffer_size": nullable("integer"), "buffer_events": strings,
        "inactivity_minutes": nullable("integer"), "payload_version": {"type": "string", "enum": ["v2"]},
        "project_id": {"type": "string", "format": "uuid"}, "phone_number_id": nullable("string"),
        "paused_reason": nullable("string"), "paused_at": nullable("string"), "consecutive_failures": {"type": "integer"},
        "created_at": {"type": "string"}, "updated_at": {"type": "string"}}));
    let input = json!({"type": "object", "additionalProperties": false, "properties": {
        "url": {"type": "string"}, "kind": {"type": "string", "enum": ["kapso", "meta"]}, "events": strings,
        "active": {"type": "boolean"}, "secret_key": {"type": "string"}, "rotate_secret_key": {"type": "boolean"},
        "headers": {"type": ["object", "null"], "additionalProperties": {"type": "string"}, "maxProperties": 20},
        "buffer_enabled": {"type": "boolean"},
        "buffer_window_seconds": {"type": ["integer", "null"], "minimum": 1, "maximum": 60},
        "max_buffer_size": {"type": ["integer", "null"], "minimum": 1, "maximum": 100},
        "buffer_events": {"type": ["array", "null"], "items": {"type": "string", "enum": ["whatsapp.message.received"]}},
        "inactivity_minutes": {"type": ["integer", "null"], "minimum": 1, "maximum": 1440},
        "payload_version": {"type": "string", "enum": ["v2"]}}});
    let webhook_schemas = [
        ("Webhook", webhook),
        ("WebhookData", data("Webhook")),
        (
            "WebhookList",
            json!({"type": "object", "required": ["data", "paging"], "properties": {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Webhook"}},
            "paging": {"$ref": "#/components/schemas/GraphPaging"}}}),
        ),
        (
            "WebhookBody",
            json!({"type": "object", "required": ["whatsapp_webhook"], "properties": {"whatsapp_webhook": input}}),
        ),
    ];
    for (name, schema) in webhook_schemas {
        schemas[name] = schema;
    }
    schemas
}
