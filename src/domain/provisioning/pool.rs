//! A project's pools: numbers it already owns, per country, added for setup links to use.

use serde::Deserialize;
use uuid::Uuid;

use super::{NumberProvisioning, TWILIO};
use crate::domain::field_error::FieldError;
use crate::store::{
    Page, PoolCount, PoolFilter, PoolRemoval, ProvisionedNumber, StoreError, NUMBER_STATES,
};
use crate::telephony::{e164, ProviderError};

/// Body of `POST /platform/v1/phone_number_pools/{country_iso}/numbers` (`{"pool_number": …}`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddPoolNumber {
    pub phone_number: Option<String>,
    pub area_code: Option<String>,
    /// `twilio`: wagate points the number's inbound SMS and calls at itself.
    pub provider: Option<String>,
    /// The provider's id for the number (Twilio's `PN…` sid).
    pub provider_reference: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("validation failed")]
    Invalid(Vec<FieldError>),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unreachable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `US`, checked against libphonenumber's regions.
pub fn country(raw: &str) -> Option<String> {
    let upper = raw.trim().to_ascii_uppercase();
    (upper.len() == 2 && e164::dial_code(&upper).is_some()).then_some(upper)
}

impl NumberProvisioning {
    /// Adds a number the project owns to its pool of `country_iso`, `available`.
    pub async fn add_pool_number(
        &self,
        project_id: Uuid,
        country_iso: &str,
        input: AddPoolNumber,
        inbound_base: &str,
    ) -> Result<ProvisionedNumber, PoolError> {
        let mut errors = Vec::new();
        let Some(country_iso) = country(country_iso) else {
            return Err(PoolError::NotFound);
        };
        let parsed = input.phone_number.as_deref().and_then(e164::parse);
        match (&input.phone_number, &parsed) {
            (None, _) => errors.push(FieldError::new(
                "phone_number",
                "is required: the number in E.164, e.g. +14155550123",
            )),
            (Some(_), None) => errors.push(FieldError::new(
                "phone_number",
                "must be an E.164 number such as +14155550123",
            )),
            (Some(_), Some(number)) => {
                if e164::dial_code(&country_iso) != Some(number.dial_code) {
                    errors.push(FieldError::new(
                        "phone_number",
                        format!(
                            "+{} is not {country_iso}'s calling code (+{})",
                            number.dial_code,
                            e164::dial_code(&country_iso).unwrap_or_default()
                        ),
                    ));
                }
            }
        }
        if let Some(code) = &input.area_code {
            if code.is_empty() || code.len() > 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
                errors.push(FieldError::new("area_code", "must be 1 to 6 digits"));
            }
        }
        let provider = match input.provider.as_deref() {
            None if input.provider_reference.is_some() => Some(TWILIO),
            None => None,
            Some(TWILIO) => Some(TWILIO),
            Some(other) => {
                errors.push(FieldError::new(
                    "provider",
                    format!("'{other}' is not a provider wagate knows; use twilio"),
                ));
                None
            }
        };
        if let Some(reference) = &input.provider_reference {
            if reference.is_empty()
                || reference.len() > 64
                || !reference.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                errors.push(FieldError::new(
                    "provider_reference",
                    "must be the provider's id for the number (Twilio: PN followed by 32 hex digits)",
                ));
            }
        }
        if provider.is_some() && input.provider_reference.is_none() {
            errors.push(FieldError::new(
                "provider_reference",
                "is required with provider: the number's id at the provider (Twilio: its PN… sid)",
            ));
        }
        if !errors.is_empty() {
            return Err(PoolError::Invalid(errors));
        }
        let number = parsed.expect("validated above");
        if let Some(reference) = &input.provider_reference {
            self.point_at_wagate(project_id, reference, inbound_base)
                .await?;
        }
        let now = crate::store::now();
        let row = ProvisionedNumber {
            id: Uuid::now_v7(),
            project_id,
            phone_number: number.e164,
            country_iso,
            area_code: input.area_code.or(number.area_code),
            provider: provider.map(str::to_owned),
            provider_ref: input.provider_reference,
            origin: "pool".into(),
            state: "available".into(),
            setup_link_id: None,
            phone_number_id: None,
            last_code: None,
            last_message: None,
            last_code_at: None,
            created_at: now,
            updated_at: now,
        };
        match self.store.insert_provisioned_number(&row).await {
            Err(StoreError::Conflict { .. }) => Err(PoolError::Conflict(format!(
                "{} is already in this project's pools",
                row.phone_number
            ))),
            other => Ok(other?),
        }
    }

    /// Points a provider number's inbound SMS and calls at wagate (so the verification code
    /// reaches the setup page).
    async fn point_at_wagate(
        &self,
        project_id: Uuid,
        reference: &str,
        inbound_base: &str,
    ) -> Result<(), PoolError> {
        let Some(provider) = self.provider(project_id).await? else {
            return Err(PoolError::Invalid(vec![FieldError::new(
                "provider_reference",
                "the project has no Twilio account: register it first (PUT /platform/v1/phone_number_providers/twilio)",
            )]));
        };
        let urls = Self::inbound_urls(inbound_base, project_id);
        match provider.configure(reference, &urls).await {
            Ok(()) => Ok(()),
            Err(ProviderError::Refused { status: 404, .. }) => {
                Err(PoolError::Invalid(vec![FieldError::new(
                    "provider_reference",
                    "Twilio has no such number in this account",
                )]))
            }
            Err(ProviderError::Unauthorized(message)) => Err(PoolError::Unreachable(format!(
                "Twilio refused the project's credentials ({message}); register the account again"
            ))),
            Err(error) => Err(PoolError::Unreachable(error.to_string())),
        }
    }

    pub async fn pool_counts(&self, project_id: Uuid) -> Result<Vec<PoolCount>, StoreError> {
        self.store.pool_counts(project_id).await
    }

    pub async fn list_pool(
        &self,
        project_id: Uuid,
        country_iso: &str,
        state: Option<String>,
        page: u32,
        per_page: u32,
    ) -> Result<Page<ProvisionedNumber>, PoolError> {
        let country_iso = country(country_iso).ok_or(PoolError::NotFound)?;
        if let Some(state) = &state {
            if !NUMBER_STATES.contains(&state.as_str()) {
                return Err(PoolError::Invalid(vec![FieldError::new(
                    "state",
                    format!("must be one of {}", NUMBER_STATES.join(", ")),
                )]));
            }
        }
        let filter = PoolFilter {
            country_iso: Some(country_iso),
            state,
        };
        Ok(self
            .store
            .list_provisioned_numbers(project_id, &filter, page, per_page)
            .await?)
    }

    /// The number, if it is in this project's pool of `country_iso`.
    pub async fn pool_number(
        &self,
        project_id: Uuid,
        country_iso: &str,
        id: Uuid,
    ) -> Result<ProvisionedNumber, PoolError> {
        let country_iso = country(country_iso).ok_or(PoolError::NotFound)?;
        self.store
            .provisioned_number(project_id, id)
            .await?
            .filter(|n| n.country_iso == country_iso)
            .ok_or(PoolError::NotFound)
    }

    /// Removes a number nobody holds (`available`, `released`, `failed`). Wagate forgets it;
    /// the provider keeps billing it until it is released there.
    pub async fn remove_pool_number(
        &self,
        project_id: Uuid,
        country_iso: &str,
        id: Uuid,
    ) -> Result<(), PoolError> {
        self.pool_number(project_id, country_iso, id).await?;
        match self.store.remove_provisioned_number(project_id, id).await? {
            PoolRemoval::Removed => Ok(()),
            PoolRemoval::NotFound => Err(PoolError::NotFound),
            PoolRemoval::InUse(state) => Err(PoolError::Conflict(format!(
                "the number is {state}: only available, released or failed numbers can be removed"
            ))),
        }
    }

    /// Marks a number nobody holds as `failed` (it cannot receive Meta's code: reservations skip
    /// it) or puts a failed one back as `available`.
    pub async fn set_pool_number_state(
        &self,
        project_id: Uuid,
        country_iso: &str,
        id: Uuid,
        state: Option<&str>,
    ) -> Result<ProvisionedNumber, PoolError> {
        let number = self.pool_number(project_id, country_iso, id).await?;
        let from: &[&str] = match state {
            Some("failed") => &["available", "failed"],
            Some("available") => &["failed", "available"],
            _ => {
                return Err(PoolError::Invalid(vec![FieldError::new(
                    "state",
                    "can be set to failed (a number that cannot receive Meta's code) or back to available",
                )]))
            }
        };
        let to = state.expect("matched above");
        self.store
            .set_provisioned_state(project_id, id, from, to)
            .await?
            .ok_or_else(|| {
                PoolError::Conflict(format!(
                    "the number is {}: only available and failed numbers change state by hand",
                    number.state
                ))
            })
    }

    /// Gives a provider number nobody holds back to the provider (billing stops) and keeps it
    /// as `released`.
    pub async fn release_pool_number(
        &self,
        project_id: Uuid,
        country_iso: &str,
        id: Uuid,
    ) -> Result<ProvisionedNumber, PoolError> {
        let number = self.pool_number(project_id, country_iso, id).await?;
        if !matches!(number.state.as_str(), "available" | "failed") {
            return Err(PoolError::Conflict(format!(
                "the number is {}: only available or failed numbers can be released",
                number.state
            )));
        }
        let Some(reference) = number.provider_ref.as_deref() else {
            return Err(PoolError::Conflict(
                "the number has no provider reference: release it where it is owned, then remove it".into(),
            ));
        };
        let Some(provider) = self.provider(project_id).await? else {
            return Err(PoolError::Conflict(
                "the project has no Twilio account to release the number with; register it first"
                    .into(),
            ));
        };
        match provider.release(reference).await {
            // Already gone at Twilio: the row catches up.
            Ok(()) | Err(ProviderError::Refused { status: 404, .. }) => {}
            Err(error) => return Err(PoolError::Unreachable(error.to_string())),
        }
        self.store
            .set_provisioned_state(project_id, id, &["available", "failed"], "released")
            .await?
            .ok_or_else(|| PoolError::Conflict("the number was reserved meanwhile".into()))
    }
}
