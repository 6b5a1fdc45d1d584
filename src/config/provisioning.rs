//! `[provisioning]`: phone numbers for setup links (the providers' API and the reservations).

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisioningConfig {
    /// Twilio's REST API; `serve --sandbox` points it at the emulator's Twilio double.
    pub twilio_api_base: String,
    /// Whole time one provider call may take (search, buy, release).
    #[serde(with = "humantime_serde")]
    pub provider_timeout: Duration,
    /// How often reservations of revoked, expired or used links go back to the pool.
    #[serde(with = "humantime_serde")]
    pub release_interval: Duration,
}

impl ProvisioningConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        match url::Url::parse(&self.twilio_api_base) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => {
                return Err(ConfigError(
                    "provisioning.twilio_api_base: expected an absolute http(s) URL such as https://api.twilio.com".into(),
                ))
            }
        }
        if self.provider_timeout.is_zero() || self.release_interval.is_zero() {
            return Err(ConfigError(
                "provisioning.provider_timeout and provisioning.release_interval must be above zero (e.g. \"15s\", \"60s\")".into(),
            ));
        }
        Ok(())
    }
}
