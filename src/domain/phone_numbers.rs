//! Connecting WhatsApp phone numbers to a project: validation, proving control with Graph,
//! sealing secrets, and making the caches forget a number once it changed ([`PhoneNumbers`]).

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use uuid::Uuid;

use super::field_error::double_option;
use super::number_directory::NumberDirectory;
use crate::crypto::{self, SealedField, SecretBox};
use crate::destination_guard::DestinationPolicy;
use crate::graph::GraphClient;
use crate::store::{
    DynStore, NewPhoneNumber, Page, PhoneNumber, PhoneNumberDetails, PhoneNumberPatch,
    SealedSecret, StoreError,
};

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

/// The result of a write: the number, plus a webhook secret when one was just generated.
#[derive(Debug)]
pub struct Written {
    pub number: PhoneNumber,
    pub new_webhook_secret: Option<String>,
}

const MAX_TOKEN_LEN: usize = crate::crypto::MAX_ACCESS_TOKEN_LEN;
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

/// The phone-number service: connects, changes, lists and disconnects a project's numbers.
/// Every write makes this instance's caches forget numbers at once; other instances hear of it
/// through the store's change feed (`cache_sync`).
#[derive(Clone)]
pub struct PhoneNumbers {
    store: DynStore,
    secrets: SecretBox,
    /// Proves control of a number with Graph, unless `graph.verify_numbers` is off.
    verifier: Option<GraphClient>,
    destinations: DestinationPolicy,
    numbers: NumberDirectory,
    /// `serve --sandbox`: numbers are the emulator's, connected as `kind = "sandbox"`.
    sandbox_mode: bool,
    /// The media vault, whose files of a disconnected number go with it.
    vault: Option<crate::vault::MediaVault>,
}

impl PhoneNumbers {
    pub fn new(
        store: DynStore,
        secrets: SecretBox,
        verifier: Option<GraphClient>,
        destinations: DestinationPolicy,
        numbers: NumberDirectory,
    ) -> Self {
        Self {
            store,
            secrets,
            verifier,
            destinations,
            numbers,
            sandbox_mode: false,
            vault: None,
        }
    }

    /// Gives the service the media vault (files of disconnected numbers are removed).
    pub fn with_vault(mut self, vault: Option<crate::vault::MediaVault>) -> Self {
        self.vault = vault;
        self
    }

    /// Marks this service as `serve --sandbox`'s (see [`crate::config::Config::sandbox_mode`]).
    pub fn in_sandbox_mode(mut self, sandbox_mode: bool) -> Self {
        self.sandbox_mode = sandbox_mode;
        self
    }

    /// The client that verifies numbers, unless verification is off.
    pub fn verifier(&self) -> Option<&GraphClient> {
        self.verifier.as_ref()
    }

    /// Connects a number to `project_id`. `customer_id` from the path wins over the body's.
    pub async fn connect(
        &self,
        project_id: Uuid,
        path_customer_id: Option<Uuid>,
        input: ConnectInput,
    ) -> Result<Written, PhoneNumberError> {
        self.forget_numbers(connect(self, project_id, path_customer_id, input).await)
    }

    /// Applies a PATCH to a number of `project_id`.
    pub async fn update(
        &self,
        project_id: Uuid,
        phone_number_id: &str,
        input: UpdateInput,
    ) -> Result<Written, PhoneNumberError> {
        self.forget_numbers(update(self, project_id, phone_number_id, input).await)
    }

    /// A number of `project_id`; another project's number is `NotFound` like an unknown one.
    pub async fn get(
        &self,
        project_id: Uuid,
        phone_number_id: &str,
    ) -> Result<PhoneNumber, PhoneNumberError> {
        // Looked up by Meta's id across projects, then checked.
        self.store
            .find_phone_number(phone_number_id)
            .await?
            .filter(|n| n.project_id == project_id)
            .ok_or(PhoneNumberError::NotFound)
    }

    /// One page of the project's numbers (of one customer, when given).
    pub async fn list(
        &self,
        project_id: Uuid,
        customer_id: Option<Uuid>,
        page: u32,
        per_page: u32,
    ) -> Result<Page<PhoneNumber>, StoreError> {
        self.store
            .list_phone_numbers(project_id, customer_id, page, per_page)
            .await
    }

    /// Disconnects a number of `project_id` (its stored messages go with it).
    pub async fn disconnect(
        &self,
        project_id: Uuid,
        phone_number_id: &str,
    ) -> Result<(), PhoneNumberError> {
        let orphaned = self
            .store
            .delete_phone_number(project_id, phone_number_id)
            .await;
        let orphaned = self.forget_numbers(orphaned.map_err(PhoneNumberError::from))?;
        if let Some(vault) = &self.vault {
            super::media::remove_files(&*self.store, vault, &orphaned).await;
        }
        Ok(())
    }

    /// Puts back the access token `old` had (a write undone).
    pub async fn restore_access_token(
        &self,
        project_id: Uuid,
        old: &PhoneNumber,
    ) -> Result<(), PhoneNumberError> {
        let token = SealedSecret {
            sealed: old.access_token_sealed.clone(),
            key_id: old.access_token_key_id.clone(),
        };
        let patch = PhoneNumberPatch {
            // The old value is bound to its row: it goes back to that row only.
            internal_id: Some(old.internal_id),
            access_token: Some((token, old.access_token_sha256.clone())),
            ..PhoneNumberPatch::default()
        };
        let restored = self
            .store
            .update_phone_number(project_id, &old.phone_number_id, patch)
            .await;
        self.forget_numbers(restored.map(drop).map_err(PhoneNumberError::from))
    }

    /// Passes a write's result on; after a successful one, this instance's caches forget every
    /// number (the next request reads them again).
    fn forget_numbers<T>(
        &self,
        written: Result<T, PhoneNumberError>,
    ) -> Result<T, PhoneNumberError> {
        if written.is_ok() {
            self.numbers.invalidate();
        }
        written
    }
}

async fn connect(
    service: &PhoneNumbers,
    project_id: Uuid,
    path_customer_id: Option<Uuid>,
    input: ConnectInput,
) -> Result<Written, PhoneNumberError> {
    let PhoneNumbers {
        store,
        secrets,
        verifier: graph,
        destinations,
        ..
    } = service;
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
        *destinations,
        &mut errors,
    )
    .await;
    let kind = input.kind.clone().unwrap_or_else(|| {
        // In sandbox mode every number is the emulator's, and marked so: `serve --sandbox`
        // refuses a database holding any other kind.
        if service.sandbox_mode {
            "sandbox"
        } else {
            "production"
        }
        .into()
    });
    if service.sandbox_mode && kind == "production" {
        errors.push(FieldError::new(
            "kind",
            "sandbox mode connects only the emulator's numbers (kind \"sandbox\"); run `wagate serve` for production numbers",
        ));
    } else if !matches!(kind.as_str(), "production" | "sandbox") {
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
    let internal_id = Uuid::now_v7();
    let new = NewPhoneNumber {
        internal_id,
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
            sealed: secrets.seal(SealedField::AccessToken.at(internal_id), token),
            key_id: secrets.key_id().to_owned(),
        },
        access_token_sha256: crypto::sha256_hex(token.as_bytes()),
        webhook_destination_url: input.webhook_destination_url,
        webhook_secret: Some(
            secrets.seal(SealedField::WebhookSecret.at(internal_id), &webhook_secret),
        ),
        webhook_verify_token: input.webhook_verify_token.map(|t| {
            secrets.seal(
                SealedField::WebhookVerifyToken.at(internal_id),
                t.expose_secret(),
            )
        }),
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

async fn update(
    service: &PhoneNumbers,
    project_id: Uuid,
    phone_number_id: &str,
    input: UpdateInput,
) -> Result<Written, PhoneNumberError> {
    let PhoneNumbers {
        store,
        secrets,
        verifier: graph,
        destinations,
        ..
    } = service;
    let mut errors = Vec::new();
    check_token("access_token", input.access_token.as_ref(), &mut errors);
    check_token("webhook_secret", input.webhook_secret.as_ref(), &mut errors);
    check_name(input.name.as_ref().and_then(Option::as_deref), &mut errors);
    check_url(
        input
            .webhook_destination_url
            .as_ref()
            .and_then(Option::as_deref),
        *destinations,
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
    let new_webhook_secret = match (&input.webhook_secret, input.rotate_webhook_secret) {
        (Some(secret), _) => Some(secret.expose_secret().trim().to_owned()),
        (None, Some(true)) => Some(crypto::random_token(32)),
        _ => None,
    };
    // New secrets are sealed for the number's row, so it is read first; only the caller's own
    // number may get them.
    let internal_id = if input.access_token.is_some() || new_webhook_secret.is_some() {
        let row = store
            .find_phone_number(phone_number_id)
            .await?
            .filter(|n| n.project_id == project_id)
            .ok_or(PhoneNumberError::NotFound)?;
        Some(row.internal_id)
    } else {
        None
    };
    if let (Some(graph), Some(token)) = (graph, &input.access_token) {
        // The token must reach the number.
        super::verify::number(graph, token.expose_secret().trim(), phone_number_id, None).await?;
    }
    let patch = PhoneNumberPatch {
        internal_id,
        name: input.name,
        access_token: input.access_token.map(|t| {
            let t = t.expose_secret().trim();
            let row = internal_id.expect("read above when a token is given");
            (
                SealedSecret {
                    sealed: secrets.seal(SealedField::AccessToken.at(row), t),
                    key_id: secrets.key_id().to_owned(),
                },
                crypto::sha256_hex(t.as_bytes()),
            )
        }),
        webhook_destination_url: input.webhook_destination_url,
        webhook_secret: new_webhook_secret.as_deref().map(|s| {
            let row = internal_id.expect("read above when a secret is given");
            secrets.seal(SealedField::WebhookSecret.at(row), s)
        }),
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
