//! Phone-number provisioning in the document: the project's Twilio account, its pools, the
//! setup page's reservation endpoints and Twilio's signed callbacks.

use serde_json::{json, Value};

use super::model::{Auth, Operation, PLATFORM_ERRORS};

fn platform(
    method: &'static str,
    path: &str,
    summary: &'static str,
    query: &'static [(&'static str, &'static str)],
    body: Option<&'static str>,
    success: (u16, &'static str),
    extra: &[(u16, &'static str, &'static str)],
) -> Operation {
    let mut responses = vec![(success.0, "success", success.1)];
    responses.extend_from_slice(extra);
    responses.extend_from_slice(PLATFORM_ERRORS);
    Operation {
        method,
        path: format!("/platform/v1{path}"),
        summary,
        auth: Auth::ApiKey,
        query,
        body,
        responses,
    }
}

const POOL_QUERY: &[(&str, &str)] = &[
    ("state", "available, reserved, in_use, released or failed"),
    ("page", "page number, from 1"),
    ("per_page", "1 to 100, default 20"),
];

const UNREACHABLE: (u16, &str, &str) = (502, "Twilio could not be reached", "PlatformError");
const HELD: (u16, &str, &str) = (
    409,
    "the number is held by a setup link, or already in the pool",
    "PlatformError",
);

pub(super) fn operations() -> Vec<Operation> {
    let provider = "/phone_number_providers/twilio";
    let numbers = "/phone_number_pools/{country_iso}/numbers";
    let number = "/phone_number_pools/{country_iso}/numbers/{id}";
    let mut ops = vec![
        platform("put", provider, "Register (or replace) the project's Twilio account for provisioned setup links; Twilio checks the credentials; the auth token is sealed and never returned", &[], Some("ProviderBody"), (200, "ProviderData"), &[UNREACHABLE]),
        platform("get", provider, "The project's Twilio account (without its token) and the inbound URLs wagate gives Twilio", &[], None, (200, "ProviderData"), &[]),
        platform("delete", provider, "Forget the project's Twilio account (pooled and reserved numbers stay)", &[], None, (204, ""), &[]),
        platform("get", "/phone_number_pools", "The project's pools: numbers per country and state", &[], None, (200, "PoolList"), &[]),
        platform("get", numbers, "The numbers of a country's pool, newest first", POOL_QUERY, None, (200, "PoolNumberList"), &[]),
        platform("post", numbers, "Add a number the project owns to a country's pool (a provider_reference points its Twilio SMS and voice webhooks at wagate)", &[], Some("PoolNumberBody"), (201, "PoolNumberData"), &[HELD, UNREACHABLE]),
        platform("get", number, "One pool number", &[], None, (200, "PoolNumberData"), &[]),
        platform("patch", number, "Mark a number nobody holds as failed (reservations skip it) or put it back as available", &[], Some("PoolNumberState"), (200, "PoolNumberData"), &[HELD]),
        platform("delete", number, "Remove a number nobody holds (available, released or failed)", &[], None, (204, ""), &[HELD]),
        platform("post", &format!("{number}/release"), "Give a Twilio number nobody holds back to Twilio; it stays listed as released", &[], None, (200, "PoolNumberData"), &[HELD, UNREACHABLE]),
    ];
    for (path, summary) in [
        ("sms", "Twilio's inbound SMS webhook for a project's provisioned numbers (form body, X-Twilio-Signature with the project's auth token); records Meta's verification code"),
        ("voice", "Twilio's inbound call webhook (signed); answers TwiML that records the call and asks for its transcription"),
        ("voice/transcription", "Twilio's transcription callback (signed); records the code read out"),
    ] {
        ops.push(Operation {
            method: "post",
            path: format!("/providers/twilio/{{project_id}}/{path}"),
            summary,
            auth: Auth::None,
            query: &[],
            body: None,
            responses: vec![
                (200, "accepted; TwiML (text/xml)", ""),
                (400, "unreadable form body", ""),
                (403, "missing or wrong X-Twilio-Signature, another account, or an unknown project (nothing changes)", ""),
                (503, "database unavailable; Twilio retries", ""),
            ],
        });
    }
    let page_errors = [
        (404, "unknown link", "PlatformError"),
        (409, "the link does not provision a number", "PlatformError"),
        (410, "expired, revoked or used link", "PlatformError"),
        (503, "database unavailable", "PlatformError"),
    ];
    for (method, path, summary) in [
        ("post", "provision", "The setup page reserves a number for its link (pool first, else bought from the project's Twilio); answers the number or status unavailable"),
        ("get", "provisioned", "The setup page's poll: the reserved number and the verification code once it reached the number"),
    ] {
        let mut responses = vec![(200, "the reservation", "")];
        responses.extend_from_slice(&page_errors);
        ops.push(Operation {
            method,
            path: format!("/setup/{{token}}/{path}"),
            summary,
            auth: Auth::None,
            query: &[],
            body: None,
            responses,
        });
    }
    for (path, summary) in [
        ("phone_number", "Simulated sign-in only (onboarding.simulated_signup): Meta's phone step in the emulator, the code sent to the typed number"),
        ("verify", "Simulated sign-in only: the code typed in the emulator's phone step"),
    ] {
        let mut responses = vec![
            (200, "done", ""),
            (400, "refused by the emulator, or a bad body", "PlatformError"),
        ];
        responses.extend_from_slice(&page_errors);
        ops.push(Operation {
            method: "post",
            path: format!("/setup/{{token}}/simulated/{path}"),
            summary,
            auth: Auth::None,
            query: &[],
            body: None,
            responses,
        });
    }
    ops
}

/// A link's provisioned number, as the setup-link object shows it (or `null`).
pub(super) fn provisioned_number() -> Value {
    json!({"type": ["object", "null"], "properties": {
        "id": {"type": "string", "format": "uuid"}, "phone_number": {"type": "string"},
        "status": {"type": "string", "enum": ["reserved", "in_use"]}, "area_code": {"type": ["string", "null"]},
        "country_iso": {"type": "string"}, "country_dial_code": {"type": ["string", "null"]},
        "display_number": {"type": "string"}}})
}

pub(super) fn schemas() -> Vec<(&'static str, Value)> {
    let nullable = |t: &str| json!({"type": [t, "null"]});
    let data = |name: &str| json!({"type": "object", "required": ["data"], "properties": {"data": {"$ref": format!("#/components/schemas/{name}")}}});
    let count = json!({"type": "integer"});
    vec![
        (
            "ProviderBody",
            json!({"type": "object", "required": ["phone_number_provider"], "properties": {
            "phone_number_provider": {"type": "object", "additionalProperties": false, "properties": {
                "account_sid": {"type": "string", "description": "AC and 32 hex digits"},
                "auth_token": {"type": "string"}}}}}),
        ),
        (
            "Provider",
            json!({"type": "object", "required": ["account_sid", "kind", "inbound_sms_url", "inbound_voice_url"], "properties": {
            "account_sid": {"type": "string"}, "kind": {"type": "string", "enum": ["twilio"]},
            "inbound_sms_url": {"type": "string"}, "inbound_voice_url": {"type": "string"},
            "created_at": {"type": "string"}, "updated_at": {"type": "string"}}}),
        ),
        ("ProviderData", data("Provider")),
        (
            "Pool",
            json!({"type": "object", "properties": {"country_iso": {"type": "string"}, "available": count, "reserved": count,
            "in_use": count, "released": count, "failed": count, "total": count}}),
        ),
        (
            "PoolList",
            json!({"type": "object", "required": ["data"], "properties": {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Pool"}}}}),
        ),
        (
            "PoolNumber",
            json!({"type": "object", "required": ["id", "phone_number", "state"], "properties": {
            "id": {"type": "string", "format": "uuid"}, "phone_number": {"type": "string"}, "display_number": {"type": "string"},
            "country_iso": {"type": "string"}, "country_dial_code": nullable("string"), "area_code": nullable("string"),
            "state": {"type": "string", "enum": ["available", "reserved", "in_use", "released", "failed"]},
            "origin": {"type": "string", "enum": ["pool", "purchased"]}, "provider": nullable("string"),
            "provider_reference": nullable("string"), "setup_link_id": nullable("string"), "phone_number_id": nullable("string"),
            "created_at": {"type": "string"}, "updated_at": {"type": "string"}}}),
        ),
        ("PoolNumberData", data("PoolNumber")),
        (
            "PoolNumberList",
            json!({"type": "object", "required": ["data", "meta"], "properties": {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/PoolNumber"}},
            "meta": {"$ref": "#/components/schemas/PageMeta"}}}),
        ),
        (
            "PoolNumberBody",
            json!({"type": "object", "required": ["pool_number"], "properties": {
            "pool_number": {"type": "object", "additionalProperties": false, "properties": {
                "phone_number": {"type": "string", "description": "E.164 with the country's calling code"},
                "area_code": {"type": "string"}, "provider": {"type": "string", "enum": ["twilio"]},
                "provider_reference": {"type": "string", "description": "Twilio's PN… sid of the number"}}}}}),
        ),
    ]
}
