//! The OpenAPI 3.1 document (`GET /openapi.json`) and a browsable page of it (`GET /docs`).
//!
//! The document is built from one table of operations in this file; `tests/api/openapi.rs`
//! compares it with the routes the routers declare and calls every documented operation, so the
//! two cannot drift apart unnoticed. The Graph passthrough is described generically: any method
//! on any path under a Graph mount is forwarded to Meta.

use std::sync::OnceLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

mod meta_state;
mod model;
mod pacing;
mod provisioning;
mod schemas;

use self::model::{responses, Auth, Operation, WebhookOp, HOOK_PAGE, PAGE, PLATFORM_ERRORS};
use self::schemas::schemas;
use crate::http::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(document))
        .route("/docs", get(page))
}

fn operations() -> Vec<Operation> {
    use Auth::*;
    let graph = "/meta/whatsapp/{version}";
    let mut ops = vec![
        Operation { method: "get", path: "/healthz".into(), summary: "Liveness: the process serves", auth: None, query: &[], body: Option::None, responses: responses![(200, "alive", "")] },
        Operation { method: "get", path: "/readyz".into(), summary: "Readiness: the database answers", auth: None, query: &[], body: Option::None, responses: responses![(200, "ready", ""), (503, "database unavailable", "")] },
        Operation { method: "get", path: "/metrics".into(), summary: "Prometheus metrics", auth: None, query: &[], body: Option::None, responses: responses![(200, "Prometheus text format", "")] },
        Operation { method: "get", path: "/openapi.json".into(), summary: "This document", auth: None, query: &[], body: Option::None, responses: responses![(200, "OpenAPI 3.1", "")] },
        Operation { method: "get", path: "/docs".into(), summary: "This document as a page", auth: None, query: &[], body: Option::None, responses: responses![(200, "HTML", "")] },
        Operation { method: "get", path: "/webhooks/whatsapp".into(), summary: "Meta's webhook verification handshake", auth: None,
            query: &[("hub.mode", "subscribe"), ("hub.verify_token", "meta.verify_token"), ("hub.challenge", "echoed back")], body: Option::None,
            responses: responses![(200, "the challenge, as text/plain", ""), (403, "verify token mismatch", "")] },
        Operation { method: "post", path: "/webhooks/whatsapp".into(), summary: "Meta's webhook events (X-Hub-Signature-256 over the raw body)", auth: None, query: &[], body: Some("MetaEnvelope"),
            responses: responses![(200, "stored (with its forwarding queued)", ""), (401, "missing or invalid signature", ""), (413, "over meta.webhook_body_limit", ""), (503, "database unavailable; Meta retries", "")] },
        Operation { method: "get", path: "/setup/{token}".into(), summary: "Hosted onboarding page of a setup link", auth: None, query: &[], body: Option::None,
            responses: responses![(200, "the page (HTML)", ""), (404, "unknown link", ""), (410, "expired, revoked or used link", "")] },
        Operation { method: "post", path: "/setup/{token}/complete".into(), summary: "Completes Embedded Signup for a setup link (form or JSON: code, waba_id, phone_number_id, connection_type)", auth: None, query: &[], body: Option::None,
            responses: responses![(303, "to the link's success or failure URL", ""), (200, "result page when the link has no redirect URL", ""), (400, "failure page", ""), (404, "unknown link", ""), (410, "expired, revoked or used link", "")] },
    ];
    ops.push(Operation { method: "get", path: "/media/{id}".into(),
        summary: "A media file kept by the vault (the message's `kapso.media_url`): with the project's X-API-Key (or the number's Bearer token) always, or with the link's own `expires` and `signature` until it expires. Another project's key, a bad or expired signature and an unknown id all get the same 404. Supports Range (206) and If-None-Match (304)", auth: None,
        query: &[("expires", "Unix time the signed link works until"), ("signature", "the link's signature")], body: Option::None,
        responses: responses![(200, "the file, with Meta's content type, Content-Disposition, ETag, nosniff and a sandboxing CSP", ""), (206, "the requested byte range", ""), (304, "not modified (If-None-Match)", ""), (401, "an X-API-Key or token that is unknown, malformed or revoked", "GraphError"), (404, "no kept file this caller may read", "GraphError"), (416, "range outside the file", ""), (429, "too many failed authentications from this client", "GraphError"), (503, "the database or media store is unavailable", "GraphError")] });
    for mount in ["/meta/whatsapp", "/api/meta"] {
        ops.push(Operation { method: "get", path: format!("{mount}/media_download"),
            summary: "Media bytes behind a signed download link (the `url` wagate puts in media metadata answers); the token is the credential", auth: None,
            query: &[("token", "the signed token from the link (expires; fetch the metadata again for a fresh one)")], body: Option::None,
            responses: responses![(200, "the media, with Meta's content type", ""), (400, "missing, invalid or expired token", "GraphError"), (404, "the number behind the link is gone", "GraphError"), (502, "Graph unreachable", "GraphError"), (504, "Graph did not answer in time", "GraphError")] });
    }
    let platform = [
        (
            "get",
            "/platform/v1/api_keys",
            "List the project's API keys (prefixes only; revoked ones with their time)",
            &[][..],
            Option::None,
            200,
            "ApiKeyList",
        ),
        (
            "post",
            "/platform/v1/api_keys",
            "Issue an API key for the project; the answer is the only time the key is shown",
            &[][..],
            Option::None,
            201,
            "IssuedApiKeyData",
        ),
        (
            "delete",
            "/platform/v1/api_keys/{key_id}",
            "Revoke an API key: it fails at once on this instance, within cache.ttl on the others",
            &[][..],
            Option::None,
            200,
            "ApiKeyData",
        ),
        (
            "post",
            "/platform/v1/whatsapp/phone_numbers",
            "Connect a phone number",
            &[][..],
            Some("ConnectPhoneNumber"),
            201,
            "PhoneNumberData",
        ),
        (
            "get",
            "/platform/v1/whatsapp/phone_numbers",
            "List phone numbers",
            &[
                ("page", "page number"),
                ("per_page", "1 to 100"),
                ("customer_id", "only this customer's"),
            ][..],
            Option::None,
            200,
            "PhoneNumberList",
        ),
        (
            "get",
            "/platform/v1/whatsapp/phone_numbers/{phone_number_id}",
            "One phone number",
            &[][..],
            Option::None,
            200,
            "PhoneNumberData",
        ),
        (
            "patch",
            "/platform/v1/whatsapp/phone_numbers/{phone_number_id}",
            "Update a phone number (token, destination, secret rotation…)",
            &[][..],
            Some("UpdatePhoneNumber"),
            200,
            "PhoneNumberData",
        ),
        (
            "delete",
            "/platform/v1/whatsapp/phone_numbers/{phone_number_id}",
            "Disconnect a phone number",
            &[][..],
            Option::None,
            204,
            "",
        ),
        (
            "post",
            "/platform/v1/customers/{customer_id}/whatsapp/phone_numbers",
            "Connect a phone number for a customer",
            &[][..],
            Some("ConnectPhoneNumber"),
            201,
            "PhoneNumberData",
        ),
        (
            "get",
            "/platform/v1/customers/{customer_id}/whatsapp/phone_numbers",
            "A customer's phone numbers",
            PAGE,
            Option::None,
            200,
            "PhoneNumberList",
        ),
        (
            "post",
            "/platform/v1/whatsapp/phone_numbers/{phone_number_id}/webhook_replays",
            "Re-send the number's webhooks of a time range",
            &[][..],
            Some("WebhookReplay"),
            202,
            "ReplayData",
        ),
        (
            "get",
            "/platform/v1/webhook_deliveries",
            "The delivery log",
            &[
                ("phone_number_id", "Meta's phone number id"),
                ("status", "pending, succeeded, failed, dead or paused"),
                ("since", "ISO 8601"),
                ("until", "ISO 8601"),
                ("limit", "1 to 100"),
                ("after", "cursor"),
                ("before", "cursor"),
            ][..],
            Option::None,
            200,
            "DeliveryList",
        ),
        (
            "get",
            "/platform/v1/webhook_deliveries/{id}",
            "One delivery with its attempts",
            &[][..],
            Option::None,
            200,
            "DeliveryData",
        ),
        (
            "post",
            "/platform/v1/webhook_deliveries/{id}/retry",
            "Send a delivery again now",
            &[][..],
            Option::None,
            202,
            "DeliveryData",
        ),
        (
            "post",
            "/platform/v1/customers",
            "Create a customer",
            &[][..],
            Some("CustomerBody"),
            201,
            "CustomerData",
        ),
        (
            "get",
            "/platform/v1/customers",
            "List customers",
            &[
                ("name", "case-insensitive substring"),
                ("external_customer_id", "exact"),
                ("page", "page number"),
                ("per_page", "1 to 100"),
            ][..],
            Option::None,
            200,
            "CustomerList",
        ),
        (
            "get",
            "/platform/v1/customers/{customer_id}",
            "One customer",
            &[][..],
            Option::None,
            200,
            "CustomerData",
        ),
        (
            "patch",
            "/platform/v1/customers/{customer_id}",
            "Update a customer",
            &[][..],
            Some("CustomerBody"),
            200,
            "CustomerData",
        ),
        (
            "delete",
            "/platform/v1/customers/{customer_id}",
            "Delete a customer (409 with numbers unless force=true)",
            &[("force", "true keeps the numbers, without a customer")][..],
            Option::None,
            204,
            "",
        ),
        (
            "post",
            "/platform/v1/customers/{customer_id}/setup_links",
            "Create a setup link (revokes the active one)",
            &[][..],
            Some("SetupLinkBody"),
            201,
            "SetupLinkData",
        ),
        (
            "get",
            "/platform/v1/customers/{customer_id}/setup_links",
            "A customer's setup links",
            &[
                ("status", "active, used, expired or revoked"),
                ("created_after", "ISO 8601"),
                ("created_before", "ISO 8601"),
                ("page", "page number"),
                ("per_page", "1 to 100"),
            ][..],
            Option::None,
            200,
            "SetupLinkList",
        ),
        (
            "patch",
            "/platform/v1/customers/{customer_id}/setup_links/{link_id}",
            "Revoke a setup link or move its expiry",
            &[][..],
            Some("SetupLinkUpdate"),
            200,
            "SetupLinkData",
        ),
    ];
    let number_hooks = "/platform/v1/whatsapp/phone_numbers/{phone_number_id}/webhooks";
    let project_hooks = "/platform/v1/whatsapp/webhooks";
    let webhooks: [WebhookOp; 11] = [
        ("get", number_hooks.into(), "A phone number's webhooks (kapso and meta), newest first", HOOK_PAGE, Option::None, 200, "WebhookList"),
        ("post", number_hooks.into(), "Create a webhook for a phone number (kind kapso, or meta: the number's webhook_destination_url); secret_key is shown in this answer only", &[][..], Some("WebhookBody"), 201, "WebhookData"),
        ("get", format!("{number_hooks}/{{id}}"), "One of the number's webhooks", &[][..], Option::None, 200, "WebhookData"),
        ("patch", format!("{number_hooks}/{{id}}"), "Update a webhook: any writable field; active true resumes a paused one, rotate_secret_key shows the new key once", &[][..], Some("WebhookBody"), 200, "WebhookData"),
        ("delete", format!("{number_hooks}/{{id}}"), "Delete a webhook (a meta one clears webhook_destination_url)", &[][..], Option::None, 204, ""),
        ("get", project_hooks.into(), "The project's webhooks (connection events), newest first", HOOK_PAGE, Option::None, 200, "WebhookList"),
        ("post", project_hooks.into(), "Create a project webhook (whatsapp.phone_number.created / deleted); secret_key is shown in this answer only", &[][..], Some("WebhookBody"), 201, "WebhookData"),
        ("get", format!("{project_hooks}/{{id}}"), "Any webhook of the project by id", &[][..], Option::None, 200, "WebhookData"),
        ("patch", format!("{project_hooks}/{{id}}"), "Update any webhook of the project by id", &[][..], Some("WebhookBody"), 200, "WebhookData"),
        ("delete", format!("{project_hooks}/{{id}}"), "Delete any webhook of the project by id", &[][..], Option::None, 204, ""),
        ("post", format!("{project_hooks}/{{id}}/test"), "Queue a signed whatsapp.webhook.test delivery to the webhook (422 when paused by hand)", &[][..], Option::None, 202, "DeliveryData"),
    ];
    for (method, path, summary, query, body, status, schema) in webhooks {
        let mut responses: Vec<(u16, &'static str, &'static str)> =
            vec![(status, "success", schema)];
        responses.extend_from_slice(PLATFORM_ERRORS);
        ops.push(Operation {
            method,
            path,
            summary,
            auth: ApiKey,
            query,
            body,
            responses,
        });
    }
    for (method, path, summary, query, body, status, schema) in platform {
        let mut responses: Vec<(u16, &'static str, &'static str)> =
            vec![(status, "success", schema)];
        if path.contains("customers/{customer_id}") && method == "delete" {
            responses.push((409, "the customer has connected numbers", "PlatformError"));
        }
        if method == "post"
            && (path == "/platform/v1/whatsapp/phone_numbers"
                || path.ends_with("{customer_id}/whatsapp/phone_numbers"))
        {
            responses.push((409, "already connected", "PlatformError"));
            responses.push((502, "Graph unreachable while verifying", "PlatformError"));
        }
        if (path == "/platform/v1/customers" && method == "post")
            || (path == "/platform/v1/customers/{customer_id}" && method == "patch")
        {
            responses.push((409, "external_customer_id already used", "PlatformError"));
        }
        if path.ends_with("{phone_number_id}") && method == "patch" {
            responses.push((502, "Graph unreachable while verifying", "PlatformError"));
        }
        responses.extend_from_slice(PLATFORM_ERRORS);
        ops.push(Operation {
            method,
            path: path.into(),
            summary,
            auth: ApiKey,
            query,
            body,
            responses,
        });
    }
    let stored = [
        (
            "get",
            "{phone_number_id}/messages",
            "Stored messages, newest first",
            &[
                ("direction", "inbound or outbound"),
                ("status", "pending, sent, delivered, read or failed"),
                ("since", "ISO 8601"),
                ("until", "ISO 8601"),
                ("conversation_id", "UUID"),
                ("type", "message type"),
                ("has_media", "true or false"),
                ("fields", "kapso(…)"),
                ("limit", "1 to 100"),
                ("after", "cursor"),
                ("before", "cursor"),
            ][..],
            "GraphList",
        ),
        (
            "get",
            "{phone_number_id}/messages/{wamid}",
            "One stored message",
            &[("fields", "kapso(…)")][..],
            "GraphObject",
        ),
        (
            "get",
            "{phone_number_id}/conversations",
            "Stored conversations, by last activity",
            &[
                ("status", "active or ended"),
                ("last_active_since", "ISO 8601"),
                ("last_active_until", "ISO 8601"),
                ("phone_number", "phone or BSUID"),
                ("business_scoped_user_id", "BSUID"),
                ("username", "username"),
                ("fields", "kapso(…)"),
                ("limit", "1 to 100"),
                ("after", "cursor"),
                ("before", "cursor"),
            ][..],
            "GraphList",
        ),
        (
            "get",
            "{phone_number_id}/conversations/{id}",
            "One conversation",
            &[("fields", "kapso(…)")][..],
            "GraphObject",
        ),
        (
            "get",
            "conversations/{id}",
            "One conversation (Python SDK form)",
            &[("fields", "kapso(…)")][..],
            "GraphObject",
        ),
        (
            "patch",
            "conversations/{id}",
            "End or reopen a conversation",
            &[][..],
            "Success",
        ),
        (
            "get",
            "{phone_number_id}/contacts",
            "Stored contacts, newest first",
            &[
                ("wa_id", "phone or BSUID"),
                ("customer_id", "UUID"),
                ("has_customer", "true or false"),
                ("business_scoped_user_id", "BSUID"),
                ("username", "username"),
                ("fields", "kapso(…)"),
                ("limit", "1 to 100"),
                ("after", "cursor"),
                ("before", "cursor"),
            ][..],
            "GraphList",
        ),
        (
            "get",
            "{phone_number_id}/contacts/{wa_id}",
            "One contact by phone, BSUID or id",
            &[("fields", "kapso(…)")][..],
            "GraphObject",
        ),
        (
            "patch",
            "{phone_number_id}/contacts/{wa_id}",
            "Update a contact (JS SDK body)",
            &[][..],
            "Success",
        ),
        (
            "patch",
            "contacts/{id}",
            "Update a contact (Python SDK body)",
            &[][..],
            "Success",
        ),
        (
            "get",
            "{phone_number_id}/calls",
            "Stored calls, newest first",
            &[
                ("direction", "inbound or outbound"),
                ("status", "any case"),
                ("since", "ISO 8601"),
                ("until", "ISO 8601"),
                ("call_id", "Meta's call id"),
                ("limit", "1 to 100"),
                ("after", "cursor"),
                ("before", "cursor"),
            ][..],
            "GraphList",
        ),
        (
            "get",
            "calls",
            "Stored calls (?phone_number_id=)",
            &[("phone_number_id", "required")][..],
            "GraphList",
        ),
        (
            "get",
            "calls/{call_id}",
            "One call (?phone_number_id=)",
            &[("phone_number_id", "required")][..],
            "GraphObject",
        ),
    ];
    for (method, rest, summary, query, schema) in stored {
        ops.push(Operation {
            method,
            path: format!("{graph}/{rest}"),
            summary,
            auth: Graph,
            query,
            body: (method == "patch").then_some("JsonObject"),
            responses: vec![
                (200, "success", schema),
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
                (
                    429,
                    "too many failed authentications from this client or for this key prefix (code 4); Retry-After says when to retry",
                    "GraphError",
                ),
            ],
        });
    }
    ops.extend(provisioning::operations());
    ops.extend(meta_state::operations());
    ops.extend(pacing::operations());
    ops
}

fn build() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for op in operations() {
        let mut parameters: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        parameters.extend(op.query.iter().map(|(name, description)| {
            json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}})
        }));
        let mut responses = Map::new();
        for (status, description, schema) in &op.responses {
            let mut response = json!({"description": description});
            if !schema.is_empty() {
                response["content"] = json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}});
            }
            responses.insert(status.to_string(), response);
        }
        let mut operation =
            json!({"summary": op.summary, "parameters": parameters, "responses": responses});
        match op.auth {
            Auth::None => operation["security"] = json!([]),
            Auth::ApiKey => operation["security"] = json!([{"apiKey": []}]),
            Auth::Graph => operation["security"] = json!([{"apiKey": []}, {"bearer": []}]),
        }
        if let Some(body) = op.body {
            operation["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{body}")}}}});
        }
        paths
            .entry(op.path.clone())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("path item is an object")
            .insert(op.method.to_owned(), operation);
    }
    paths.extend(provisioning::twilio_paths());
    paths.insert("/meta/whatsapp/{version}/{graph_path}".into(), json!({
        "summary": "Graph passthrough (also under /api/meta/{version}/…)",
        "description": "Any method on any Graph path: authenticated, resolved to one of the caller's numbers (path, ?phone_number_id= or the Bearer token) and forwarded to Meta with that number's token. Meta's answers come back unchanged; wagate's own errors use Graph's envelope.",
        "parameters": [
            {"name": "version", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^v[0-9]+\\.[0-9]+$"}},
            {"name": "graph_path", "in": "path", "required": true, "schema": {"type": "string"}}],
        "x-wagate-passthrough": true,
    }));
    json!({
        "openapi": "3.1.0",
        "info": {"title": "wagate", "version": env!("CARGO_PKG_VERSION"),
            "description": "Self-hosted gateway for Meta's WhatsApp Cloud API (Kapso Meta-proxy compatible): the Platform API, the stored-data endpoints under the Graph mounts, Meta's webhook endpoint and the hosted onboarding page."},
        "paths": paths,
        "components": {
            "schemas": all_schemas(),
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer", "description": "the number's own access token (Graph mounts only)"}}},
    })
}

/// Every component schema, the provisioning ones included.
fn all_schemas() -> Value {
    let mut all = schemas();
    for (name, schema) in provisioning::schemas() {
        all[name] = schema;
    }
    for (name, schema) in meta_state::schemas() {
        all[name] = schema;
    }
    for (name, schema) in pacing::schemas() {
        all[name] = schema;
    }
    for (name, schema) in pacing::phone_number_fields() {
        all["PhoneNumber"]["properties"][name] = schema;
    }
    for (name, schema) in meta_state::phone_number_fields() {
        all["PhoneNumber"]["properties"][name] = schema;
    }
    for (name, schema) in provisioning::setup_link_fields() {
        all["SetupLink"]["properties"][name] = schema;
    }
    for (name, schema) in provisioning::setup_link_body_fields() {
        all["SetupLinkBody"]["properties"]["setup_link"]["properties"][name] = schema;
    }
    all
}

/// The document, built once.
pub fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(build)
}

async fn document() -> impl IntoResponse {
    Json(spec().clone())
}

use crate::types::escape_html as escape;

/// Every operation, readable without any script or external asset.
async fn page() -> impl IntoResponse {
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>wagate API</title>\
         <style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#0f172a}\
         code{background:#f1f5f9;padding:0 .3rem;border-radius:4px}.m{display:inline-block;width:4.5rem;font-weight:600;text-transform:uppercase}\
         details{border-bottom:1px solid #e2e8f0;padding:.4rem 0}li{margin:.1rem 0}</style></head><body>\
         <h1>wagate API</h1><p>The machine-readable document is <a href=\"/openapi.json\">/openapi.json</a> \
         (load it in any OpenAPI viewer).</p>",
    );
    let spec = spec();
    for (path, item) in spec["paths"].as_object().into_iter().flatten() {
        if item.get("x-wagate-passthrough").is_some() {
            html.push_str(&format!(
                "<details><summary><span class=\"m\">any</span> <code>{}</code> {}</summary><p>{}</p></details>",
                escape(path),
                escape(item["summary"].as_str().unwrap_or("")),
                escape(item["description"].as_str().unwrap_or(""))
            ));
            continue;
        }
        for (method, op) in item.as_object().into_iter().flatten() {
            let params: Vec<String> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    format!(
                        "<li><code>{}</code> ({}) {}</li>",
                        escape(p["name"].as_str().unwrap_or("")),
                        escape(p["in"].as_str().unwrap_or("")),
                        escape(p["description"].as_str().unwrap_or(""))
                    )
                })
                .collect();
            let responses: Vec<String> = op["responses"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(status, r)| {
                    format!(
                        "<li><code>{status}</code> {}</li>",
                        escape(r["description"].as_str().unwrap_or(""))
                    )
                })
                .collect();
            html.push_str(&format!(
                "<details><summary><span class=\"m\">{method}</span> <code>{}</code> {}</summary><ul>{}</ul><ul>{}</ul></details>",
                escape(path),
                escape(op["summary"].as_str().unwrap_or("")),
                params.join(""),
                responses.join("")
            ));
        }
    }
    html.push_str("</body></html>");
    ([(CONTENT_TYPE, "text/html; charset=utf-8")], Html(html))
}
