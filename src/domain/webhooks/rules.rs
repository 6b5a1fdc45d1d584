//! The field rules of a webhook resource: events per scope, buffering and inactivity ranges,
//! custom headers (none that wagate or HTTP sets), the fields a `meta` webhook refuses. Each rule
//! adds a `FieldError` naming its field, so one answer names every bad field.

use secrecy::ExposeSecret as _;

use secrecy::SecretString;
use serde::Deserialize;

use super::{
    BUFFERABLE_EVENT, DEFAULT_BUFFER_WINDOW_SECONDS, DEFAULT_MAX_BUFFER_SIZE, NUMBER_EVENTS,
    PROJECT_EVENTS,
};
use crate::domain::field_error::double_option;
use crate::domain::field_error::FieldError;
use crate::store::WebhookRow;

/// At most this many custom headers per webhook.
pub const MAX_HEADERS: usize = 20;
const MAX_HEADER_NAME_LEN: usize = 256;
const MAX_HEADER_VALUE_LEN: usize = 4096;
pub(super) const MAX_SECRET_LEN: usize = 255;

/// Headers wagate sets itself (or the HTTP layer owns): a custom header may not replace them.
const RESERVED_HEADERS: [&str; 12] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "x-webhook-signature",
    "x-webhook-event",
    "x-idempotency-key",
    "x-webhook-payload-version",
    "x-webhook-batch",
    "x-batch-size",
    "x-hub-signature-256",
];
const RESERVED_HEADER_PREFIX: &str = "x-wagate-";

/// Body of a create or PATCH (`{"whatsapp_webhook": {…}}`). Absent keys are left alone; `null`
/// clears a nullable field (back to its default).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    pub url: Option<String>,
    pub kind: Option<String>,
    pub events: Option<Vec<String>>,
    pub active: Option<bool>,
    pub secret_key: Option<SecretString>,
    /// PATCH: `true` generates a new `secret_key`, shown once in the answer.
    pub rotate_secret_key: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    pub headers: Option<Option<serde_json::Map<String, serde_json::Value>>>,
    pub buffer_enabled: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    pub buffer_window_seconds: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double_option")]
    pub max_buffer_size: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double_option")]
    pub buffer_events: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "double_option")]
    pub inactivity_minutes: Option<Option<i64>>,
    pub payload_version: Option<String>,
}

pub(super) fn list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

pub(super) fn already_has_meta() -> FieldError {
    FieldError::new(
        "kind",
        "the phone number already has a meta webhook (its webhook_destination_url); PATCH or delete that one",
    )
}

/// Rules every webhook shares: payload version, the secret's shape.
pub(super) fn check_common(input: &WebhookInput, errors: &mut Vec<FieldError>) {
    match input.payload_version.as_deref() {
        None | Some("v2") => {}
        Some("v1") => errors.push(FieldError::new(
            "payload_version",
            "v1 is Kapso's legacy payload format and is not supported; use v2",
        )),
        Some(_) => errors.push(FieldError::new("payload_version", "must be \"v2\"")),
    }
    if let Some(secret) = &input.secret_key {
        let s = secret.expose_secret().trim();
        if s.is_empty() {
            errors.push(FieldError::new("secret_key", "must not be empty"));
        } else if s.len() > MAX_SECRET_LEN || !s.bytes().all(|b| b.is_ascii_graphic()) {
            errors.push(FieldError::new(
                "secret_key",
                format!(
                    "must be visible ASCII characters without spaces, at most {MAX_SECRET_LEN}"
                ),
            ));
        }
    }
}

/// A meta webhook forwards Meta's payload unfiltered and unbuffered: these fields do not apply.
pub(super) fn forbid_for_meta(input: &WebhookInput, errors: &mut Vec<FieldError>) {
    let given = [
        ("events", input.events.is_some()),
        ("buffer_enabled", input.buffer_enabled.is_some()),
        (
            "buffer_window_seconds",
            input.buffer_window_seconds.is_some(),
        ),
        ("max_buffer_size", input.max_buffer_size.is_some()),
        ("buffer_events", input.buffer_events.is_some()),
        ("inactivity_minutes", input.inactivity_minutes.is_some()),
    ];
    for (field, _) in given.into_iter().filter(|(_, given)| *given) {
        errors.push(FieldError::new(
            field,
            "does not apply to a meta webhook (it forwards Meta's payload unfiltered and unbuffered); leave it out",
        ));
    }
}

/// Checks an event list against a scope's events; returns it without duplicates.
pub(super) fn check_events(
    field: &'static str,
    events: &[String],
    number: bool,
    errors: &mut Vec<FieldError>,
) -> Vec<String> {
    let valid: &[&str] = if number {
        &NUMBER_EVENTS
    } else {
        &PROJECT_EVENTS
    };
    let mut kept: Vec<String> = Vec::new();
    for event in events {
        if valid.contains(&event.as_str()) {
            if !kept.contains(event) {
                kept.push(event.clone());
            }
        } else if !number && NUMBER_EVENTS.contains(&event.as_str()) {
            errors.push(FieldError::new(
                field,
                format!(
                    "{event} never goes to project webhooks (message and conversation events go to a phone number's webhooks); project webhooks take {}",
                    PROJECT_EVENTS.join(", ")
                ),
            ));
        } else if number && PROJECT_EVENTS.contains(&event.as_str()) {
            errors.push(FieldError::new(
                field,
                format!(
                    "{event} is a project event; subscribe a project webhook (/platform/v1/whatsapp/webhooks) to it. A phone number's webhooks take {}",
                    NUMBER_EVENTS.join(", ")
                ),
            ));
        } else {
            errors.push(FieldError::new(
                field,
                format!(
                    "unknown event '{event}'; valid events: {}",
                    valid.join(", ")
                ),
            ));
        }
    }
    kept
}

pub(super) fn in_range(
    field: &'static str,
    value: i64,
    range: std::ops::RangeInclusive<i64>,
    errors: &mut Vec<FieldError>,
) -> Option<i32> {
    if range.contains(&value) {
        i32::try_from(value).ok()
    } else {
        errors.push(FieldError::new(
            field,
            format!(
                "must be an integer from {} to {}",
                range.start(),
                range.end()
            ),
        ));
        None
    }
}

/// Events, buffering and inactivity of a kapso webhook, from `input` over `row`.
pub(super) fn apply_kapso_fields(
    input: &WebhookInput,
    row: &mut WebhookRow,
    number: bool,
    errors: &mut Vec<FieldError>,
) {
    if let Some(events) = &input.events {
        if events.is_empty() {
            errors.push(FieldError::new(
                "events",
                "must name at least one event; to stop deliveries, PATCH active: false",
            ));
        }
        let kept = check_events("events", events, number, errors);
        row.events = serde_json::to_string(&kept).expect("strings serialise");
    }
    let window = match input.buffer_window_seconds {
        Some(Some(v)) => in_range("buffer_window_seconds", v, 1..=60, errors),
        Some(None) => None,
        None => row.buffer_window_seconds,
    };
    let size = match input.max_buffer_size {
        Some(Some(v)) => in_range("max_buffer_size", v, 1..=100, errors),
        Some(None) => None,
        None => row.max_buffer_size,
    };
    let buffer_events = match &input.buffer_events {
        Some(Some(events)) => {
            for event in events.iter().filter(|e| *e != BUFFERABLE_EVENT) {
                errors.push(FieldError::new(
                    "buffer_events",
                    format!("'{event}' cannot be buffered; only {BUFFERABLE_EVENT} can"),
                ));
            }
            let mut kept: Vec<String> = Vec::new();
            for event in events {
                if !kept.contains(event) {
                    kept.push(event.clone());
                }
            }
            kept
        }
        Some(None) => Vec::new(),
        None => list(&row.buffer_events),
    };
    if input.buffer_enabled == Some(true) && !number {
        errors.push(FieldError::new(
            "buffer_enabled",
            format!("only a phone number's webhooks buffer ({BUFFERABLE_EVENT}); project webhooks receive connection events one by one"),
        ));
    }
    row.buffer_enabled = input.buffer_enabled.unwrap_or(row.buffer_enabled);
    if row.buffer_enabled {
        row.buffer_window_seconds = Some(window.unwrap_or(DEFAULT_BUFFER_WINDOW_SECONDS));
        row.max_buffer_size = Some(size.unwrap_or(DEFAULT_MAX_BUFFER_SIZE));
        let buffer_events = if buffer_events.is_empty() {
            vec![BUFFERABLE_EVENT.to_owned()]
        } else {
            buffer_events
        };
        row.buffer_events = serde_json::to_string(&buffer_events).expect("strings serialise");
    } else {
        // Values sent with buffering off are checked, then dropped: they mean nothing.
        row.buffer_window_seconds = None;
        row.max_buffer_size = None;
        row.buffer_events = "[]".into();
    }
    match input.inactivity_minutes {
        Some(Some(v)) => {
            row.inactivity_minutes = in_range("inactivity_minutes", v, 1..=1440, errors);
        }
        Some(None) => row.inactivity_minutes = None,
        None => {}
    }
}

/// Custom headers: a JSON object of string values, valid names and values, none that wagate or
/// HTTP itself sets, at most [`MAX_HEADERS`].
pub(super) fn apply_headers(
    input: &WebhookInput,
    row: &mut WebhookRow,
    errors: &mut Vec<FieldError>,
) {
    let Some(headers) = &input.headers else {
        return;
    };
    let Some(headers) = headers else {
        row.headers = "{}".into();
        return;
    };
    let before = errors.len();
    if headers.len() > MAX_HEADERS {
        errors.push(FieldError::new(
            "headers",
            format!("at most {MAX_HEADERS} headers"),
        ));
    }
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if name.is_empty() || name.len() > MAX_HEADER_NAME_LEN || !name.bytes().all(is_tchar) {
            errors.push(FieldError::new(
                "headers",
                format!("'{name}' is not a valid header name"),
            ));
        } else if RESERVED_HEADERS.contains(&lower.as_str())
            || lower.starts_with(RESERVED_HEADER_PREFIX)
        {
            errors.push(FieldError::new(
                "headers",
                format!("'{name}' is set by wagate or by HTTP itself and cannot be overridden"),
            ));
        } else if seen.contains(&lower) {
            errors.push(FieldError::new(
                "headers",
                format!("'{name}' is given twice (header names are case-insensitive)"),
            ));
        }
        seen.push(lower);
        match value.as_str() {
            None => errors.push(FieldError::new(
                "headers",
                format!("the value of '{name}' must be a string"),
            )),
            Some(v)
                if v.len() > MAX_HEADER_VALUE_LEN
                    || !v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) =>
            {
                errors.push(FieldError::new(
                    "headers",
                    format!(
                        "the value of '{name}' must be printable ASCII, at most {MAX_HEADER_VALUE_LEN} characters"
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    if errors.len() == before {
        row.headers = serde_json::Value::Object(headers.clone()).to_string();
    }
}

/// A character of an HTTP token (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn events_are_checked_per_scope() {
        let mut errors = Vec::new();
        let kept = check_events(
            "events",
            &[
                "whatsapp.message.received".into(),
                "whatsapp.message.received".into(),
            ],
            true,
            &mut errors,
        );
        assert_eq!(kept, ["whatsapp.message.received"]);
        assert!(errors.is_empty());
        check_events(
            "events",
            &["whatsapp.message.received".into()],
            false,
            &mut errors,
        );
        assert!(errors[0].message.contains("never goes to project webhooks"));
        check_events("events", &["nope".into()], true, &mut errors);
        assert!(errors[1].message.contains("valid events"));
    }

    #[test]
    fn reserved_headers_are_refused_in_any_case() {
        for name in [
            "content-TYPE",
            "X-Wagate-Anything",
            "x-hub-signature-256",
            "Bad Name",
        ] {
            let mut headers = serde_json::Map::new();
            headers.insert(name.into(), "v".into());
            let input = WebhookInput {
                headers: Some(Some(headers)),
                ..WebhookInput::default()
            };
            let mut row_errors = Vec::new();
            let mut row = sample_row();
            apply_headers(&input, &mut row, &mut row_errors);
            assert_eq!(row_errors.len(), 1, "{name}");
            assert_eq!(row.headers, "{}");
        }
    }

    fn sample_row() -> WebhookRow {
        let now = crate::store::now();
        WebhookRow::new(
            Uuid::now_v7(),
            Uuid::now_v7(),
            None,
            "kapso",
            "https://example.com".into(),
            now,
        )
    }
}
