//! The hosted onboarding ([`Onboarding`]): finding a setup link by its URL token and completing
//! it. (Creating and managing the links is [`super::setup_links`].)
//!
//! Completing a setup link: what happens after the customer finished Meta's Embedded Signup on
//! the hosted page (`/setup/{token}`). The page sends the OAuth code and the WABA and phone number
//! Meta reported; this exchanges the code for a token, subscribes the app to the WABA, registers
//! a dedicated number, connects the number to the link's customer (or, for a reconnect link,
//! gives the existing number the new token) and marks the link used.
//!
//! Every failure carries one of Kapso's error codes (contract §11.3) for the failure redirect.
//! The OAuth code and the token are never logged, and neither is a URL that holds them.

mod failure;
mod input;

use rand::Rng as _;
use secrecy::{ExposeSecret, SecretString};

pub use self::failure::{CompleteError, Failure, FailureCode};
use self::input::check_input;
#[cfg(test)]
pub(crate) use self::input::sample_link;
pub use self::input::CompleteInput;

use super::phone_numbers::{ConnectInput, PhoneNumberError, PhoneNumbers, UpdateInput};
use super::provisioning::NumberProvisioning;
use super::verify::{self, VerifyError};
use crate::config::Config;
use crate::graph::{GraphCallError, GraphClient};
use crate::store::{
    DynStore, PhoneNumber, ProvisionedNumber, SetupCompletion, SetupLinkRow, StoreError,
};

/// A completed signup.
#[derive(Debug)]
pub struct Completed {
    pub number: PhoneNumber,
    /// A reconnect link gave an existing number a new token.
    pub reconnected: bool,
    pub connection_type: &'static str,
    /// The provisioned number the signup connected (a `provision_phone_number` link).
    pub provisioned: Option<ProvisionedNumber>,
}

/// The hosted onboarding service: what completing a signup needs from the running server.
#[derive(Clone)]
pub struct Onboarding {
    store: DynStore,
    /// Wagate's own Graph client (code exchange, `subscribed_apps`, `register`).
    graph: GraphClient,
    /// Connects or reconnects the number, verifying it unless `graph.verify_numbers` is off.
    numbers: PhoneNumbers,
    /// The number a `provision_phone_number` link reserved, checked against the signup's.
    provisioning: NumberProvisioning,
    app_id: String,
    app_secret: SecretString,
    /// `onboarding.graph_version`.
    graph_version: String,
}

/// Tokens are URL-safe base64; anything else cannot be a link.
fn plausible_token(token: &str) -> bool {
    (16..=128).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The error code a link that is not active gets, if it is not.
pub fn link_problem(
    link: &SetupLinkRow,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<FailureCode> {
    match link.status_at(now) {
        "active" => None,
        "used" => Some(FailureCode::AlreadyUsed),
        _ => Some(FailureCode::LinkExpired),
    }
}

impl Onboarding {
    pub fn new(
        store: DynStore,
        graph: GraphClient,
        numbers: PhoneNumbers,
        provisioning: NumberProvisioning,
        config: &Config,
    ) -> Self {
        Self {
            store,
            graph,
            numbers,
            provisioning,
            app_id: config.meta.app_id.clone(),
            app_secret: config.meta.app_secret.clone(),
            graph_version: config.onboarding.graph_version.clone(),
        }
    }

    /// The link whose URL token this is (looked up by its hash), if any.
    pub async fn link_by_token(&self, token: &str) -> Result<Option<SetupLinkRow>, StoreError> {
        if !plausible_token(token) {
            return Ok(None);
        }
        let hash = crate::crypto::sha256_hex(token.as_bytes());
        self.store.setup_link_by_token(&hash).await
    }

    /// Completes `link` with what Meta's flow returned. Records a failure on the link (its
    /// `whatsapp_setup_error`) unless the link itself was the problem.
    pub async fn complete(
        &self,
        link: &SetupLinkRow,
        input: CompleteInput,
    ) -> Result<Completed, CompleteError> {
        let result = self.run(link, input).await;
        if let Err(CompleteError::Failed(failure)) = &result {
            // A failed signup gives its reserved number back; reopening the page reserves again.
            if link.provision_phone_number {
                if let Err(error) = self.provisioning.release_for_link(link.id).await {
                    tracing::warn!(setup_link_id = %link.id, %error,
                        "could not release the failed signup's number; the sweep will");
                }
            }
            if !failure.code.is_link_state() {
                if let Err(error) = self
                    .store
                    .fail_setup_link(link.id, failure.code.as_str(), crate::store::now())
                    .await
                {
                    tracing::warn!(setup_link_id = %link.id, %error, "could not record the failed signup");
                }
            }
        }
        result
    }
}

impl Onboarding {
    async fn run(
        &self,
        link: &SetupLinkRow,
        input: CompleteInput,
    ) -> Result<Completed, CompleteError> {
        use FailureCode::*;
        if let Some(code) = link_problem(link, crate::store::now()) {
            return Err(Failure::new(
                code,
                format!("the link is {}", link.status_at(crate::store::now())),
            )
            .into());
        }
        let checked = check_input(link, input)?;
        let waba = checked.waba_id.as_str();
        // A coexistence finish may name only the WABA: a reconnect link's number is its own.
        let named = checked
            .phone_number_id
            .clone()
            .or_else(|| link.reconnect_phone_number_id.clone());

        // A reconnect is locked to its number and WABA; checked before anything is asked of Meta.
        let existing = match (&link.reconnect_phone_number_id, named.as_deref()) {
            (None, _) => None,
            (Some(locked), Some(pnid)) if locked != pnid => {
                return Err(Failure::new(
                    PhoneVerificationFailed,
                    format!(
                        "this reconnect link is for phone number {locked}, the signup chose {pnid}"
                    ),
                )
                .into())
            }
            (Some(locked), _) => {
                let number = self
                .store
                .find_phone_number(locked)
                .await?
                .filter(|n| n.project_id == link.project_id && n.customer_id == Some(link.customer_id))
                .ok_or_else(|| {
                    Failure::new(
                        PhoneVerificationFailed,
                        format!("phone number {locked} is no longer connected to this customer; create a new (non-reconnect) setup link"),
                    )
                })?;
                if number.business_account_id != waba {
                    return Err(Failure::new(
                        PhoneVerificationFailed,
                        format!(
                        "this reconnect link is for business account {}, the signup chose {waba}",
                        number.business_account_id
                    ),
                    )
                    .into());
                }
                Some(number)
            }
        };

        let token = self.exchange_code(&checked.code).await?;
        let pnid = match named {
            Some(pnid) => pnid,
            None => self.only_number_of(token.expose_secret(), waba).await?,
        };
        let pnid = pnid.as_str();

        // Control of the number is proven before "already connected" is said about it.
        if let Some(verifier) = self.numbers.verifier() {
            verify::number(verifier, token.expose_secret(), pnid, Some(waba))
                .await
                .map_err(|e| Failure::new(PhoneVerificationFailed, verify_reason(&e)))?;
        }
        let provisioned = if link.provision_phone_number
            && checked.connection_type == "dedicated"
            && existing.is_none()
        {
            Some(
                self.check_provisioned(link, token.expose_secret(), pnid)
                    .await?,
            )
        } else {
            None
        };
        if existing.is_none() && self.store.find_phone_number(pnid).await?.is_some() {
            return Err(Failure::new(
            PhoneVerificationFailed,
            format!("phone number {pnid} is already connected to wagate; disconnect it first, or send a reconnect link to refresh its token"),
        )
        .into());
        }

        self.subscribe_app(token.expose_secret(), waba).await?;
        // A reconnected number keeps its registration (and the PIN set when it first connected).
        if checked.connection_type == "dedicated" && existing.is_none() {
            self.register(token.expose_secret(), pnid).await?;
        }

        let number = match &existing {
            Some(_) => {
                self.numbers
                    .update(
                        link.project_id,
                        pnid,
                        UpdateInput {
                            access_token: Some(token),
                            ..UpdateInput::default()
                        },
                    )
                    .await
            }
            None => {
                self.numbers
                    .connect(
                        link.project_id,
                        Some(link.customer_id),
                        ConnectInput {
                            phone_number_id: Some(pnid.to_owned()),
                            business_account_id: Some(waba.to_owned()),
                            access_token: Some(token),
                            name: None,
                            // "production", or "sandbox" under `serve --sandbox`.
                            kind: None,
                            display_phone_number: None,
                            verified_name: None,
                            customer_id: None,
                            webhook_destination_url: None,
                            webhook_secret: None,
                            webhook_verify_token: None,
                            is_coexistence: Some(checked.connection_type == "coexistence"),
                            inbound_processing_enabled: None,
                            calls_enabled: None,
                        },
                    )
                    .await
            }
        }
        .map_err(connect_failure)?
        .number;

        let completion = SetupCompletion {
            phone_number_id: pnid.to_owned(),
            business_account_id: waba.to_owned(),
        };
        if !self
            .store
            .complete_setup_link(link.id, &completion, crate::store::now())
            .await?
        {
            // Completed, revoked or expired while this ran: put the number back as it was.
            self.undo(link, &number, existing.as_ref()).await;
            let now = crate::store::now();
            let code = match self.store.setup_link(link.customer_id, link.id).await? {
                Some(current) => link_problem(&current, now).unwrap_or(AlreadyUsed),
                None => LinkExpired,
            };
            return Err(Failure::new(
                code,
                "the link stopped being active while the signup completed; the number was put back",
            )
            .into());
        }
        if existing.is_some() {
            // A reconnect keeps the number's row, so no insert announced it: announce it here
            // (connection detection after a setup link must not depend on the number being new).
            if let Err(error) = self
                .store
                .announce_connection(&number, crate::store::webhook_outbox::PHONE_NUMBER_CREATED)
                .await
            {
                tracing::error!(phone_number_id = %number.phone_number_id, %error,
                    "could not queue whatsapp.phone_number.created for a reconnected number");
            }
        }
        let provisioned = match provisioned {
            Some(_) => self.provisioning.reservation(link.id).await?,
            None => None,
        };
        Ok(Completed {
            number,
            reconnected: existing.is_some(),
            connection_type: checked.connection_type,
            provisioned,
        })
    }

    /// Puts the number back as it was before this signup wrote it.
    async fn undo(
        &self,
        link: &SetupLinkRow,
        number: &PhoneNumber,
        existing: Option<&PhoneNumber>,
    ) {
        let result = match existing {
            None => {
                self.numbers
                    .disconnect(link.project_id, &number.phone_number_id)
                    .await
            }
            Some(old) => {
                self.numbers
                    .restore_access_token(link.project_id, old)
                    .await
            }
        };
        if let Err(error) = result {
            tracing::error!(setup_link_id = %link.id, phone_number_id = %number.phone_number_id, %error,
            "could not undo the number written by a signup whose link is no longer active");
        }
    }
}

impl Onboarding {
    /// A provisioned link must connect the number it reserved: Graph says which number the
    /// signup chose, and it must be that one, or nothing is connected.
    async fn check_provisioned(
        &self,
        link: &SetupLinkRow,
        token: &str,
        pnid: &str,
    ) -> Result<ProvisionedNumber, Failure> {
        use FailureCode::PhoneVerificationFailed;
        let reserved = self
            .provisioning
            .reservation(link.id)
            .await
            .map_err(|e| Failure::new(PhoneVerificationFailed, format!("could not read the reserved number: {e}")))?
            .ok_or_else(|| {
                Failure::new(
                    PhoneVerificationFailed,
                    "no number is reserved for this link; open the setup page again and pick Dedicated",
                )
            })?;
        let node = self
            .graph
            .phone_number(&self.graph_version, token, pnid)
            .await
            .map_err(|error| {
                graph_failure(PhoneVerificationFailed, "phone number lookup", error, |status, message| {
                    format!("Graph refused to describe phone number {pnid} (HTTP {status}: {message})")
                })
            })?;
        let chosen = node
            .display_phone_number
            .as_deref()
            .and_then(crate::telephony::e164::parse)
            .map(|n| n.e164);
        if chosen.as_deref() != Some(reserved.phone_number.as_str()) {
            return Err(Failure::new(
                PhoneVerificationFailed,
                format!(
                    "the signup chose {}, not the reserved number {}; nothing was connected",
                    chosen
                        .as_deref()
                        .unwrap_or("a number without a display number"),
                    reserved.phone_number
                ),
            ));
        }
        Ok(reserved)
    }
}

fn verify_reason(error: &VerifyError) -> String {
    match error {
        VerifyError::Refused(field) => field.message.clone(),
        VerifyError::Unreachable(why) => {
            format!("could not reach Graph to verify the number ({why}); try again")
        }
    }
}

fn connect_failure(error: PhoneNumberError) -> CompleteError {
    use FailureCode::PhoneVerificationFailed;
    match error {
        PhoneNumberError::Store(error) => CompleteError::Store(error),
        PhoneNumberError::AlreadyConnected(id) => Failure::new(
            PhoneVerificationFailed,
            format!("phone number {id} is already connected to wagate"),
        )
        .into(),
        PhoneNumberError::Unverified(e) => {
            Failure::new(PhoneVerificationFailed, verify_reason(&e)).into()
        }
        PhoneNumberError::NotFound => Failure::new(
            PhoneVerificationFailed,
            "the customer or the number to reconnect no longer exists",
        )
        .into(),
        other => Failure::new(PhoneVerificationFailed, other.to_string()).into(),
    }
}

/// A failed Graph call of the completion as a `Failure`: transport failures name the `step`,
/// refusals get `refused(status, Meta's message)`. Never the URL (it can hold the code and the
/// app secret).
fn graph_failure(
    code: FailureCode,
    step: &str,
    error: GraphCallError,
    refused: impl FnOnce(u16, &str) -> String,
) -> Failure {
    match error {
        GraphCallError::Refused {
            status, message, ..
        } => Failure::new(code, refused(status, &message)),
        transport => Failure::new(code, format!("{step}: {transport}")),
    }
}

impl Onboarding {
    /// The OAuth code exchanged for the customer's token.
    async fn exchange_code(&self, code: &SecretString) -> Result<SecretString, Failure> {
        use FailureCode::TokenExchangeFailed;
        let app_secret = self.app_secret.expose_secret();
        if self.app_id.is_empty() || app_secret.is_empty() {
            return Err(Failure::new(
            TokenExchangeFailed,
            "meta.app_id and meta.app_secret must be configured to exchange Embedded Signup codes",
        ));
        }
        let code = code.expose_secret().trim();
        self.graph
        .exchange_code(&self.graph_version, &self.app_id, app_secret, code)
        .await
        .map_err(|error| {
            graph_failure(TokenExchangeFailed, "code exchange", error, |status, message| {
                format!("Graph refused the code exchange (HTTP {status}: {message}); the customer should sign in again")
            })
        })
    }

    /// The number of a coexistence signup whose finish named only the WABA (Meta documents just
    /// `waba_id` for `FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING`): the WABA's one number.
    async fn only_number_of(&self, token: &str, waba: &str) -> Result<String, Failure> {
        let ids = self
            .graph
            .business_phone_number_ids(&self.graph_version, token, waba)
            .await
            .map_err(|error| {
                graph_failure(FailureCode::PhoneVerificationFailed, "phone_numbers", error, |status, message| {
                    format!("Graph refused to list business account {waba}'s numbers (HTTP {status}: {message})")
                })
            })?;
        match ids.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(Failure::new(
                FailureCode::PhoneVerificationFailed,
                format!("the signup named no phone number and business account {waba} has none"),
            )),
            several => Err(Failure::new(
                FailureCode::PhoneVerificationFailed,
                format!("the signup named no phone number and business account {waba} has {}; the customer should sign in again and pick one", several.len()),
            )),
        }
    }

    /// The WABA's webhooks go to this app (and so to wagate).
    async fn subscribe_app(&self, token: &str, waba: &str) -> Result<(), Failure> {
        self.graph
        .subscribe_app(&self.graph_version, token, waba)
        .await
        .map_err(|error| {
            graph_failure(FailureCode::FacebookAuthFailed, "subscribed_apps", error, |status, message| {
                format!("Graph refused to subscribe the app to business account {waba} (HTTP {status}: {message})")
            })
        })
    }

    /// Registers a dedicated number with a random two-step verification PIN (not kept).
    async fn register(&self, token: &str, pnid: &str) -> Result<(), Failure> {
        let pin = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000));
        self.graph
            .register_number(&self.graph_version, token, pnid, &pin)
            .await
            .map_err(|error| {
                graph_failure(
                    FailureCode::PhoneVerificationFailed,
                    "register",
                    error,
                    |status, message| {
                        format!(
                        "Graph refused to register phone number {pnid} (HTTP {status}: {message})"
                    )
                    },
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plausible_tokens_are_looked_up() {
        assert!(!plausible_token("../etc"));
        assert!(plausible_token("aBcD_123-xyzXYZ0123456789"));
    }

    #[test]
    fn link_states_map_to_codes() {
        let mut l = sample_link("dedicated");
        let now = crate::store::now();
        assert_eq!(link_problem(&l, now), None);
        l.expires_at = now - chrono::Duration::seconds(1);
        assert_eq!(link_problem(&l, now), Some(FailureCode::LinkExpired));
        l.status = "revoked".into();
        assert_eq!(link_problem(&l, now), Some(FailureCode::LinkExpired));
        l.status = "used".into();
        assert_eq!(link_problem(&l, now), Some(FailureCode::AlreadyUsed));
    }
}
