//! Phone-number provisioning in the document: the project's Twilio account, its pools, the
//! setup page's reservation endpoints and Twilio's signed callbacks.

use serde_json::{json, Map, Value};

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

const UNREACHABLE: (u16, &str, &str) = (
    502,
    "Twilio could not be reached (or, for a stored account, refused its credentials: register it again)",
    "PlatformError",
);

fn conflict(description: &'static str) -> (u16, &'static str, &'static str) {
    (409, description, "PlatformError")
}

pub(super) fn operations() -> Vec<Operation> {
    let provider = "/phone_number_providers/twilio";
    let numbers = "/phone_number_pools/{country_iso}/numbers";
    let number = "/phone_number_pools/{country_iso}/numbers/{id}";
    let check_failed = (
        502,
        "Twilio could not be reached to check the credentials (nothing is stored)",
        "PlatformError",
    );
    let mut ops = vec![
        platform("put", provider, "Register (or replace) the project's Twilio account for provisioned setup links. Twilio checks the credentials first: 422 when it refuses them. The auth token is sealed and never returned", &[], Some("ProviderBody"), (200, "ProviderData"), &[check_failed]),
        platform("get", provider, "The project's Twilio account (without its token) and the inbound URLs wagate gives Twilio; 404 when none is registered", &[], None, (200, "ProviderData"), &[]),
        platform("delete", provider, "Forget the project's Twilio account (pooled and reserved numbers stay; nothing more is bought)", &[], None, (204, ""), &[]),
        platform("get", "/phone_number_pools", "The project's pools: how many numbers each country holds in each state", &[], None, (200, "PoolList"), &[]),
        platform("get", numbers, "The numbers of a country's pool, newest first (404 for a code that is no country, 422 for an unknown state)", POOL_QUERY, None, (200, "PoolNumberList"), &[]),
        platform("post", numbers, "Add a number the project owns to a country's pool, available (a provider_reference points its Twilio SMS and voice webhooks at wagate)", &[], Some("PoolNumberBody"), (201, "PoolNumberData"), &[conflict("the number is already in the project's pools"), UNREACHABLE]),
        platform("get", number, "One pool number", &[], None, (200, "PoolNumberData"), &[]),
        platform("patch", number, "Mark a number nobody holds as failed (reservations skip it) or put a failed one back as available", &[], Some("PoolNumberState"), (200, "PoolNumberData"), &[conflict("the number is reserved, in use or released")]),
        platform("delete", number, "Remove a number nobody holds (available, released or failed); Twilio keeps billing it until released", &[], None, (204, ""), &[conflict("the number is reserved or in use")]),
        platform("post", &format!("{number}/release"), "Give a Twilio number nobody holds (available or failed) back to Twilio; it stays listed as released", &[], None, (200, "PoolNumberData"),
            &[conflict("the number is reserved, in use or released, has no provider_reference, or the project has no Twilio account"), UNREACHABLE]),
    ];
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

/// Twilio's signed callbacks, as path items: form bodies and plain-text or TwiML answers, which
/// the operation table (JSON only) does not describe.
pub(super) fn twilio_paths() -> Map<String, Value> {
    let text = |description: &str| json!({"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}});
    let mut paths = Map::new();
    for (path, summary, form) in [
        ("sms", "Twilio's inbound SMS webhook for a project's provisioned numbers (signed with the project's auth token); records Meta's verification code", "TwilioSmsForm"),
        ("voice", "Twilio's inbound call webhook (signed); answers TwiML that records the call and asks for its transcription", "TwilioVoiceForm"),
        ("voice/transcription", "Twilio's transcription callback (signed); records the code read out", "TwilioTranscriptionForm"),
    ] {
        let operation = json!({
            "summary": summary,
            "security": [],
            "parameters": [
                {"name": "project_id", "in": "path", "required": true, "description": "the project whose Twilio account owns the number", "schema": {"type": "string"}},
                {"name": "X-Twilio-Signature", "in": "header", "required": true,
                    "description": "base64 HMAC-SHA1, keyed with the project's auth token, of the URL Twilio called (server.public_url behind a proxy) followed by the form parameters sorted by name, each name then value",
                    "schema": {"type": "string"}}],
            "requestBody": {"required": true, "content": {"application/x-www-form-urlencoded": {"schema": {"$ref": format!("#/components/schemas/{form}")}}}},
            "responses": {
                "200": {"description": "accepted; TwiML", "content": {"text/xml": {"schema": {"type": "string"}}}},
                "400": text("unreadable form body (over 64 KiB, or it stopped arriving)"),
                "403": text("missing or wrong X-Twilio-Signature, an AccountSid other than the project's, a project without a Twilio account or an unknown project; nothing changes"),
                "503": text("database unavailable; Twilio retries"),
            },
        });
        paths.insert(
            format!("/providers/twilio/{{project_id}}/{path}"),
            json!({"post": operation}),
        );
    }
    paths
}

/// The form parameters of Twilio's callbacks that wagate reads; Twilio sends more, all strings.
fn twilio_form(properties: Value) -> Value {
    let mut common = json!({
        "AccountSid": {"type": "string", "description": "must be the project's account"},
        "From": {"type": "string"},
        "To": {"type": "string", "description": "the provisioned number, E.164"}});
    if let (Some(common), Value::Object(extra)) = (common.as_object_mut(), properties) {
        common.extend(extra);
    }
    json!({"type": "object", "required": ["AccountSid", "To"], "properties": common,
        "additionalProperties": {"type": "string"}})
}

/// A link's provisioned number, as the setup-link object shows it (or `null`).
pub(super) fn provisioned_number() -> Value {
    json!({"type": ["object", "null"],
        "description": "the number the link holds: reserved by the setup page, in_use once connected; null before a reservation and after the number went back to the pool",
        "required": ["area_code", "country_dial_code", "country_iso", "display_number", "id", "phone_number", "status"], "properties": {
        "id": {"type": "string", "format": "uuid"}, "phone_number": {"type": "string"},
        "status": {"type": "string", "enum": ["reserved", "in_use"]}, "area_code": {"type": ["string", "null"]},
        "country_iso": {"type": "string"}, "country_dial_code": {"type": ["string", "null"]},
        "display_number": {"type": "string"}}})
}

/// The provisioning fields of the setup-link object.
pub(super) fn setup_link_fields() -> Vec<(&'static str, Value)> {
    vec![
        ("provisioned_phone_number", provisioned_number()),
        ("provision_phone_number", json!({"type": "boolean"})),
        (
            "phone_number_country_isos",
            json!({"type": "array", "items": {"type": "string"}}),
        ),
        (
            "phone_number_area_code",
            json!({"type": ["string", "null"]}),
        ),
    ]
}

/// The provisioning fields of a setup link's create body.
pub(super) fn setup_link_body_fields() -> Vec<(&'static str, Value)> {
    vec![
        (
            "provision_phone_number",
            json!({"type": "boolean", "description": "the setup page reserves a new number for the customer (from the project's pool of one of phone_number_country_isos, else bought from its Twilio account). Needs \"dedicated\" among allowed_connection_types, no reconnect_phone_number, and a registered provider or a pool number (not released) in one of the countries (else 422)"}),
        ),
        (
            "phone_number_country_isos",
            json!({"type": "array", "items": {"type": "string"}, "description": "ISO 3166 alpha-2 codes the number may come from, in order; default [\"US\"]"}),
        ),
        (
            "phone_number_area_code",
            json!({"type": "string", "pattern": "^[0-9]{1,6}$", "description": "preferred area code of a provisioned number"}),
        ),
    ]
}

pub(super) fn schemas() -> Vec<(&'static str, Value)> {
    let nullable = |t: &str| json!({"type": [t, "null"]});
    let data = |name: &str| json!({"type": "object", "required": ["data"], "properties": {"data": {"$ref": format!("#/components/schemas/{name}")}}});
    let count = json!({"type": "integer", "minimum": 0});
    let states = json!({"type": "string", "enum": ["available", "reserved", "in_use", "released", "failed"]});
    vec![
        (
            "ProviderBody",
            json!({"type": "object", "required": ["phone_number_provider"], "properties": {
            "phone_number_provider": {"type": "object", "required": ["account_sid", "auth_token"], "additionalProperties": false, "properties": {
                "account_sid": {"type": "string", "pattern": "^AC[0-9a-fA-F]{32}$", "description": "AC and 32 hex digits"},
                "auth_token": {"type": "string", "pattern": "^[A-Za-z0-9]{16,128}$",
                    "description": "the account's auth token (32 letters and digits); Twilio must accept it with the SID (else 422); sealed, never returned"}}}}}),
        ),
        (
            "Provider",
            json!({"type": "object", "required": ["account_sid", "created_at", "inbound_sms_url", "inbound_voice_url", "kind", "updated_at"], "properties": {
            "account_sid": {"type": "string"}, "kind": {"type": "string", "enum": ["twilio"]},
            "inbound_sms_url": {"type": "string", "description": "where the project's numbers send SMS: {public origin}/providers/twilio/{project_id}/sms"},
            "inbound_voice_url": {"type": "string", "description": "where they send calls: …/voice"},
            "created_at": {"type": "string"}, "updated_at": {"type": "string"}}}),
        ),
        ("ProviderData", data("Provider")),
        (
            "Pool",
            json!({"type": "object", "required": ["available", "country_iso", "failed", "in_use", "released", "reserved", "total"], "properties": {
            "country_iso": {"type": "string"}, "available": count, "reserved": count,
            "in_use": count, "released": count, "failed": count, "total": count}}),
        ),
        (
            "PoolList",
            json!({"type": "object", "required": ["data"], "properties": {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Pool"}}}}),
        ),
        (
            "PoolNumber",
            json!({"type": "object", "required": ["area_code", "country_dial_code", "country_iso", "created_at", "display_number", "id",
                "origin", "phone_number", "phone_number_id", "provider", "provider_reference", "setup_link_id", "state", "updated_at"], "properties": {
            "id": {"type": "string", "format": "uuid"}, "phone_number": {"type": "string"}, "display_number": {"type": "string"},
            "country_iso": {"type": "string"}, "country_dial_code": nullable("string"), "area_code": nullable("string"),
            "state": states, "origin": {"type": "string", "enum": ["pool", "purchased"]}, "provider": nullable("string"),
            "provider_reference": nullable("string"),
            "setup_link_id": {"type": ["string", "null"], "format": "uuid", "description": "the link holding the number (reserved or in_use)"},
            "phone_number_id": {"type": ["string", "null"], "description": "Meta's phone number id once a link connected it"},
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
            "pool_number": {"type": "object", "required": ["phone_number"], "additionalProperties": false, "properties": {
                "phone_number": {"type": "string", "description": "E.164 with the pool country's calling code"},
                "area_code": {"type": "string", "pattern": "^[0-9]{1,6}$", "description": "default: the number's own"},
                "provider": {"type": "string", "enum": ["twilio"], "description": "implied by provider_reference"},
                "provider_reference": {"type": "string", "pattern": "^[A-Za-z0-9]{1,64}$",
                    "description": "Twilio's PN… sid of the number: wagate points its SMS and voice webhooks at itself (needs the project's Twilio account; 422 when Twilio has no such number)"}}}}}),
        ),
        (
            "PoolNumberState",
            json!({"type": "object", "required": ["pool_number"], "properties": {
            "pool_number": {"type": "object", "required": ["state"], "additionalProperties": false, "properties": {
                "state": {"type": "string", "enum": ["failed", "available"]}}}}}),
        ),
        (
            "TwilioSmsForm",
            twilio_form(
                json!({"MessageSid": {"type": "string"}, "Body": {"type": "string", "description": "the text, where the code is looked for"}}),
            ),
        ),
        (
            "TwilioVoiceForm",
            twilio_form(json!({"CallSid": {"type": "string"}, "CallStatus": {"type": "string"}})),
        ),
        (
            "TwilioTranscriptionForm",
            twilio_form(
                json!({"CallSid": {"type": "string"}, "RecordingSid": {"type": "string"}, "TranscriptionSid": {"type": "string"},
                "TranscriptionStatus": {"type": "string"}, "TranscriptionText": {"type": "string", "description": "the transcript, where the code is looked for"}}),
            ),
        ),
    ]
}
