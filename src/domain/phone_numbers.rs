//! Connecting WhatsApp phone numbers to a project: validation, sealing secrets, the public view.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::crypto::{self, SecretBox};
use crate::destination_guard::DestinationPolicy;
use crate::store::{
    NewPhoneNumber, PhoneNumber, PhoneNumberDetails, PhoneNumberPatch, SealedSecret, Store,
    StoreError,
};
use crate::time::iso;

pub use super::field_error::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum PhoneNumberError {
    #[error("{}", .0.iter().map(|e| format!("{} {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("phone number {0} is already connected")]
    AlreadyConnected(String),
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Unverified(#[from] super::verify::VerifyError),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for PhoneNumberError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound,
            other => Self::Store(other),
        }
    }
}

/// Body of a connect request (`{"whatsapp_phone_number": {...}}`).
#[derive(Debug, Deserialize)]
pub struct ConnectInput {
    pub phone_number_id: Option<String>,
    pub business_account_id: Option<String>,
    pub access_token: Option<SecretString>,
    pub name: Option<String>,
    pub kind: Option<String>,
    pub display_phone_number: Option<String>,
    pub verified_name: Option<String>,
    pub customer_id: Option<String>,
    pub webhook_destination_url: Option<String>,
    pub webhook_secret: Option<SecretString>,
    pub webhook_verify_token: Option<SecretString>,
    pub is_coexistence: Option<bool>,
    pub inbound_processing_enabled: Option<bool>,
    pub calls_enabled: Option<bool>,
}

/// Body of a PATCH. Absent keys are left alone; `null` clears nullable fields.
#[derive(Debug, Deserialize, Default)]
pub struct UpdateInput {
    #[serde(default, deserialize_with = "double_option")]
    pub name: Option<Option<String>>,
    pub access_token: Option<SecretString>,
    #[serde(default, deserialize_with = "double_option")]
    pub webhook_destination_url: Option<Option<String>>,
    pub webhook_secret: Option<SecretString>,
    /// `true` generates a new webhook secret, returned once in the response.
    pub rotate_webhook_secret: Option<bool>,
    pub inbound_processing_enabled: Option<bool>,
    pub calls_enabled: Option<bool>,
}

fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The result of a write: the number, plus a webhook secret when one was just generated.
#[derive(Debug)]
pub struct Written {
    pub number: PhoneNumber,
    pub new_webhook_secret: Option<String>,
}

const MAX_TOKEN_LEN: usize = 4096;
const MAX_NAME_LEN: usize = 255;

fn meta_id(field: &'static str, value: Option<&str>, errors: &mut Vec<FieldError>) -> String {
    match value.map(str::trim) {
        None | Some("") => {
            errors.push(FieldError::new(field, "is required"));
            String::new()
        }
        Some(v) if !crate::types::MetaId::is_valid(v) => {
            errors.push(FieldError::new(
                field,
                "must be Meta's numeric ID (digits only, at most 32)",
            ));
            String::new()
        }
        Some(v) => v.to_owned(),
    }
}

fn check_name(value: Option<&str>, errors: &mut Vec<FieldError>) {
    if value.is_some_and(|n| n.chars().count() > MAX_NAME_LEN) {
        errors.push(FieldError::new(
            "name",
            format!("must be at most {MAX_NAME_LEN} characters"),
        ));
    }
}

fn check_token(field: &'static str, token: Option<&SecretString>, errors: &mut Vec<FieldError>) {
    if let Some(token) = token {
        let t = token.expose_secret();
        if t.trim().is_empty() {
            errors.push(FieldError::new(field, "must not be empty"));
        } else if t.len() > MAX_TOKEN_LEN || !t.trim().bytes().all(|b| b.is_ascii_graphic()) {
            // It becomes an `Authorization` header value: visible ASCII only.
            errors.push(FieldError::new(
                field,
                format!(
                    "must be a single token of visible ASCII characters, at most {MAX_TOKEN_LEN}"
                ),
            ));
        }
    }
}

/// A destination the delivery worker may POST to: https (or http when allowed), no private,
/// loopback, link-local or metadata address (checked again, after DNS, at every attempt).
async fn check_url(value: Option<&str>, policy: DestinationPolicy, errors: &mut Vec<FieldError>) {
    if let Some(url) = value {
        if let Err(refusal) = crate::destination_guard::check_destination(url, policy).await {
            errors.push(FieldError::new(
                "webhook_destination_url",
                refusal.to_string(),
            ));
        }
    }
}

/// Connects a number to `project_id`. `customer_id` from the path wins over the body's.
#[allow(clippy::too_many_arguments)]
pub async fn connect(
    store: &dyn Store,
    secrets: &SecretBox,
    graph: Option<&crate::graph::GraphClient>,
    destinations: DestinationPolicy,
    project_id: Uuid,
    path_customer_id: Option<Uuid>,
    input: ConnectInput,
) -> Result<Written, PhoneNumberError> {
    let mut errors = Vec::new();
    let phone_number_id = meta_id(
        "phone_number_id",
        input.phone_number_id.as_deref(),
        &mut errors,
    );
    let business_account_id = meta_id(
        "business_account_id",
        input.business_account_id.as_deref(),
        &mut errors,
    );
    match &input.access_token {
        None => errors.push(FieldError::new("access_token", "is required")),
        token => check_token("access_token", token.as_ref(), &mut errors),
    }
    check_token("webhook_secret", input.webhook_secret.as_ref(), &mut errors);
    check_name(input.name.as_deref(), &mut errors);
    check_url(
        input.webhook_destination_url.as_deref(),
        destinations,
        &mut errors,
    )
    .await;
    let kind = input.kind.clone().unwrap_or_else(|| "production".into());
    if !matches!(kind.as_str(), "production" | "sandbox") {
        errors.push(FieldError::new(
            "kind",
            "must be \"production\" or \"sandbox\"",
        ));
    }
    let body_customer = match input.customer_id.as_deref() {
        None => None,
        Some(raw) => match Uuid::parse_str(raw) {
            Ok(id) => Some(id),
            Err(_) => {
                errors.push(FieldError::new("customer_id", "must be a customer UUID"));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(PhoneNumberError::Invalid(errors));
    }
    let customer_id = path_customer_id.or(body_customer);
    if let Some(customer_id) = customer_id {
        // A customer of another project is reported exactly like a missing one.
        store
            .get_customer(project_id, customer_id)
            .await
            .map_err(|e| match e {
                StoreError::NotFound if path_customer_id.is_some() => PhoneNumberError::NotFound,
                StoreError::NotFound => PhoneNumberError::Invalid(vec![FieldError::new(
                    "customer_id",
                    "does not exist",
                )]),
                other => other.into(),
            })?;
    }

    let token = input.access_token.expect("validated above");
    let token = token.expose_secret().trim();
    // Control of the number is proven before anything else is said about it (a 409 would
    // otherwise tell a stranger which numbers are connected).
    let verified = match graph {
        Some(graph) => Some(
            super::verify::number(graph, token, &phone_number_id, Some(&business_account_id))
                .await?,
        ),
        None => None,
    };
    let webhook_secret = input
        .webhook_secret
        .map(|s| s.expose_secret().trim().to_owned())
        .unwrap_or_else(|| crypto::random_token(32));
    let new = NewPhoneNumber {
        project_id,
        customer_id,
        phone_number_id: phone_number_id.clone(),
        business_account_id,
        kind,
        name: input.name,
        // Meta's word wins over the caller's when the number was verified.
        details: verified.unwrap_or(PhoneNumberDetails {
            display_phone_number: input.display_phone_number,
            verified_name: input.verified_name,
            ..PhoneNumberDetails::default()
        }),
        is_coexistence: input.is_coexistence.unwrap_or(false),
        inbound_processing_enabled: input.inbound_processing_enabled.unwrap_or(true),
        calls_enabled: input.calls_enabled.unwrap_or(false),
        access_token: SealedSecret {
            sealed: secrets.seal(token),
            key_id: secrets.key_id().to_owned(),
        },
        access_token_sha256: crypto::sha256_hex(token.as_bytes()),
        webhook_destination_url: input.webhook_destination_url,
        webhook_secret: Some(secrets.seal(&webhook_secret)),
        webhook_verify_token: input
            .webhook_verify_token
            .map(|t| secrets.seal(t.expose_secret())),
    };
    let number = store.insert_phone_number(new).await.map_err(|e| match e {
        StoreError::Conflict { .. } => PhoneNumberError::AlreadyConnected(phone_number_id),
        other => other.into(),
    })?;
    Ok(Written {
        number,
        new_webhook_secret: Some(webhook_secret),
    })
}

/// Applies a PATCH to a number of `project_id`.
pub async fn update(
    store: &dyn Store,
    secrets: &SecretBox,
    graph: Option<&crate::graph::GraphClient>,
    destinations: DestinationPolicy,
    project_id: Uuid,
    phone_number_id: &str,
    input: UpdateInput,
) -> Result<Written, PhoneNumberError> {
    let mut errors = Vec::new();
    check_token("access_token", input.access_token.as_ref(), &mut errors);
    check_token("webhook_secret", input.webhook_secret.as_ref(), &mut errors);
    check_name(input.name.as_ref().and_then(Option::as_deref), &mut errors);
    check_url(
        input
            .webhook_destination_url
            .as_ref()
            .and_then(Option::as_deref),
        destinations,
        &mut errors,
    )
    .await;
    if input.webhook_secret.is_some() && input.rotate_webhook_secret == Some(true) {
        errors.push(FieldError::new(
            "rotate_webhook_secret",
            "cannot be combined with webhook_secret; send one or the other",
        ));
    }
    if !errors.is_empty() {
        return Err(PhoneNumberError::Invalid(errors));
    }
    if let (Some(graph), Some(token)) = (graph, &input.access_token) {
        // Only the caller's own number may get a new token, and the token must reach it.
        store
            .find_phone_number(phone_number_id)
            .await?
            .filter(|n| n.project_id == project_id)
            .ok_or(PhoneNumberError::NotFound)?;
        super::verify::number(graph, token.expose_secret().trim(), phone_number_id, None).await?;
    }
    let new_webhook_secret = match (&input.webhook_secret, input.rotate_webhook_secret) {
        (Some(secret), _) => Some(secret.expose_secret().trim().to_owned()),
        (None, Some(true)) => Some(crypto::random_token(32)),
        _ => None,
    };
    let patch = PhoneNumberPatch {
        name: input.name,
        access_token: input.access_token.map(|t| {
            let t = t.expose_secret().trim();
            (
                SealedSecret {
                    sealed: secrets.seal(t),
                    key_id: secrets.key_id().to_owned(),
                },
                crypto::sha256_hex(t.as_bytes()),
            )
        }),
        webhook_destination_url: input.webhook_destination_url,
        webhook_secret: new_webhook_secret.as_deref().map(|s| secrets.seal(s)),
        inbound_processing_enabled: input.inbound_processing_enabled,
        calls_enabled: input.calls_enabled,
        ..PhoneNumberPatch::default()
    };
    let number = store
        .update_phone_number(project_id, phone_number_id, patch)
        .await?;
    // An explicitly set secret is the caller's own; only a generated one is echoed back.
    let echo = input.rotate_webhook_secret == Some(true);
    Ok(Written {
        number,
        new_webhook_secret: new_webhook_secret.filter(|_| echo),
    })
}

/// Digits of a display number, as Kapso's `display_phone_number_normalized`.
fn normalized(display: &str) -> String {
    display.chars().filter(char::is_ascii_digit).collect()
}

/// The Platform API's phone-number object (contract §11.4). Secrets are never included.
pub fn to_json(n: &PhoneNumber) -> Value {
    json!({
        "id": n.phone_number_id,
        "internal_id": n.internal_id,
        "phone_number_id": n.phone_number_id,
        "name": n.name,
        "kind": n.kind,
        "business_account_id": n.business_account_id,
        "is_coexistence": n.is_coexistence,
        "inbound_processing_enabled": n.inbound_processing_enabled,
        "calls_enabled": n.calls_enabled,
        "webhook_destination_url": n.webhook_destination_url,
        "webhook_verified_at": n.webhook_verified_at.map(iso),
        "created_at": iso(n.created_at),
        "updated_at": iso(n.updated_at),
        "customer_id": n.customer_id,
        "display_name": n.name.as_ref().or(n.verified_name.as_ref()),
        "display_phone_number": n.display_phone_number,
        "display_phone_number_normalized": n.display_phone_number.as_deref().map(normalized),
        "verified_name": n.verified_name,
        "quality_rating": n.quality_rating,
        "code_verification_status": n.code_verification_status,
        "name_status": n.name_status,
        "status": n.status,
        "throughput_tier": n.throughput_tier,
        "whatsapp_business_manager_messaging_limit": n.messaging_limit,
        "is_official_business_account": n.is_official_business_account,
        "is_pin_enabled": n.is_pin_enabled,
        "username": n.username,
        "username_status": n.username_status,
    })
}
