//! Reserving one number for a setup link: the first requested country with an available pool
//! number, else one bought live from the project's provider in the first country where one is
//! found. A link keeps its reservation until it is used, revoked, expires or its signup fails.

use uuid::Uuid;

use super::{NumberProvisioning, TWILIO};
use crate::store::{ProvisionedNumber, SetupLinkRow, StoreError};
use crate::telephony::{e164, NumberProvider, ProviderError};

/// A link's number.
pub type Reservation = ProvisionedNumber;

/// Why no number could be reserved; the page explains it and the link stays usable.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error(
        "no number is available in {0}, and the project has no phone number provider to buy one"
    )]
    NoNumber(String),
    #[error("the phone number provider has no number in {0} right now")]
    ProviderEmpty(String),
    #[error("the phone number provider could not be reached ({0})")]
    ProviderFailed(String),
    #[error("the setup link is no longer active")]
    LinkEnded,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The link's countries, as stored (`["US"]` when unreadable).
pub fn link_countries(link: &SetupLinkRow) -> Vec<String> {
    serde_json::from_str(&link.phone_number_country_isos).unwrap_or_else(|_| vec!["US".into()])
}

impl NumberProvisioning {
    /// The number the link holds, if any.
    pub async fn reservation(&self, link_id: Uuid) -> Result<Option<Reservation>, StoreError> {
        self.store.reservation(link_id).await
    }

    /// The numbers a page of links holds.
    pub async fn reservations(&self, link_ids: &[Uuid]) -> Result<Vec<Reservation>, StoreError> {
        self.store.reservations(link_ids).await
    }

    /// Reserves a number for `link` (or returns the one it holds). `inbound_base` is the origin
    /// a bought number's SMS and calls are sent to.
    pub async fn reserve(
        &self,
        link: &SetupLinkRow,
        inbound_base: &str,
    ) -> Result<Reservation, Unavailable> {
        if let Some(held) = self.store.reservation(link.id).await? {
            return Ok(held);
        }
        let countries = link_countries(link);
        let area_code = link.phone_number_area_code.as_deref();
        let now = crate::store::now();
        for country in &countries {
            if let Some(number) = self
                .store
                .reserve_pool_number(link.project_id, link.id, country, area_code, now)
                .await?
            {
                tracing::info!(setup_link_id = %link.id, provisioned_number_id = %number.id,
                    country_iso = %country, "reserved a pool number for a setup link");
                return Ok(number);
            }
            // A concurrent request for this link may have reserved meanwhile.
            if let Some(held) = self.store.reservation(link.id).await? {
                return Ok(held);
            }
        }
        if link.status_at(now) != "active" {
            return Err(Unavailable::LinkEnded);
        }
        let Some(provider) = self.provider(link.project_id).await? else {
            return Err(Unavailable::NoNumber(countries.join(", ")));
        };
        self.buy_for(link, &*provider, &countries, inbound_base)
            .await
    }

    async fn buy_for(
        &self,
        link: &SetupLinkRow,
        provider: &dyn NumberProvider,
        countries: &[String],
        inbound_base: &str,
    ) -> Result<Reservation, Unavailable> {
        let urls = Self::inbound_urls(inbound_base, link.project_id);
        let area_code = link.phone_number_area_code.as_deref();
        let mut last_failure = None;
        for country in countries {
            // The area code is a preference: a number elsewhere in the country beats none.
            let mut candidates = match provider.search(country, area_code).await {
                Ok(found) => found,
                Err(error) => {
                    last_failure = Some(error);
                    continue;
                }
            };
            if candidates.is_empty() && area_code.is_some() {
                candidates = provider.search(country, None).await.unwrap_or_default();
            }
            for candidate in candidates {
                let owned = match provider.buy(&candidate.phone_number, &urls).await {
                    Ok(owned) => owned,
                    // Sold to someone else between the search and the buy: try the next one.
                    Err(ProviderError::Refused { code: 21422, .. }) => continue,
                    Err(error) => {
                        last_failure = Some(error);
                        break;
                    }
                };
                let parsed = e164::parse(&owned.phone_number);
                let now = crate::store::now();
                let row = ProvisionedNumber {
                    id: Uuid::now_v7(),
                    project_id: link.project_id,
                    phone_number: parsed
                        .as_ref()
                        .map_or_else(|| owned.phone_number.clone(), |p| p.e164.clone()),
                    country_iso: candidate.country_iso.to_ascii_uppercase(),
                    area_code: parsed.and_then(|p| p.area_code),
                    provider: Some(TWILIO.into()),
                    provider_ref: Some(owned.provider_ref),
                    origin: "purchased".into(),
                    state: "reserved".into(),
                    setup_link_id: Some(link.id),
                    phone_number_id: None,
                    last_code: None,
                    last_message: None,
                    last_code_at: None,
                    created_at: now,
                    updated_at: now,
                };
                let stored = self
                    .store
                    .insert_purchased_number(&row, link.id, now)
                    .await
                    .inspect_err(|error| {
                        tracing::error!(setup_link_id = %link.id, phone_number = %row.phone_number,
                            provider_ref = ?row.provider_ref, %error,
                            "bought a number but could not store it: add it to the pool by hand");
                    })?;
                tracing::info!(setup_link_id = %link.id, provisioned_number_id = %stored.id,
                    country_iso = %stored.country_iso, state = %stored.state,
                    "bought a number from the project's Twilio account");
                if stored.setup_link_id == Some(link.id) {
                    return Ok(stored);
                }
                // The link got a number (or ended) while this one was bought: it stays in the
                // pool, and the link keeps what it holds.
                return match self.store.reservation(link.id).await? {
                    Some(held) => Ok(held),
                    None => Err(Unavailable::LinkEnded),
                };
            }
        }
        Err(match last_failure {
            Some(error) => Unavailable::ProviderFailed(error.to_string()),
            None => Unavailable::ProviderEmpty(countries.join(", ")),
        })
    }

    /// Gives the link's reservation back to the pool (its signup failed).
    pub async fn release_for_link(&self, link_id: Uuid) -> Result<bool, StoreError> {
        self.store
            .release_reservation(link_id, crate::store::now())
            .await
    }
}
