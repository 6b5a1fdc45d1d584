//! Phone-number providers: where wagate finds, buys and releases the numbers it provisions for
//! setup links ([`NumberProvider`]), and how it tells their inbound webhooks are genuine.
//!
//! Twilio is the one implementation ([`TwilioClient`], its documented REST API under
//! `/2010-04-01`); another provider (Telnyx, Vonage) is one more type implementing the trait. The
//! API's base URL is configurable, so tests and `serve --sandbox` point it at the emulator's
//! Twilio double. A leaf: no knowledge of the store or of setup links.

pub mod e164;
pub mod signature;
mod twilio;

use async_trait::async_trait;

pub use self::twilio::{TwilioClient, TwilioCredentials};

/// A number a provider offers for sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailableNumber {
    /// E.164, e.g. `+14155550123`.
    pub phone_number: String,
    pub country_iso: String,
}

/// A number bought from (or owned at) a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedNumber {
    /// The provider's id for it (Twilio: the `PN…` sid of the IncomingPhoneNumber).
    pub provider_ref: String,
    pub phone_number: String,
}

/// Where the provider sends the number's inbound SMS and calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundUrls {
    pub sms_url: String,
    pub voice_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused the credentials (Twilio 20003): they are wrong or revoked.
    #[error(
        "the provider refused the credentials ({0}); register the account SID and auth token again"
    )]
    Unauthorized(String),
    /// The provider answered with an error of its own.
    #[error("the provider refused the request (HTTP {status}, code {code}: {message})")]
    Refused {
        status: u16,
        code: i64,
        message: String,
    },
    /// The provider could not be reached or answered with something unreadable.
    #[error("the provider could not be reached ({0}); try again")]
    Unreachable(String),
}

/// What wagate asks of a phone-number provider.
#[async_trait]
pub trait NumberProvider: Send + Sync {
    /// Checks the credentials (one cheap authenticated read).
    async fn check(&self) -> Result<(), ProviderError>;
    /// Local numbers with SMS in `country_iso`, in the area code when one is given.
    async fn search(
        &self,
        country_iso: &str,
        area_code: Option<&str>,
    ) -> Result<Vec<AvailableNumber>, ProviderError>;
    /// Buys `phone_number`, its inbound SMS and calls sent to `urls`.
    async fn buy(
        &self,
        phone_number: &str,
        urls: &InboundUrls,
    ) -> Result<OwnedNumber, ProviderError>;
    /// Points an owned number's inbound SMS and calls at `urls`.
    async fn configure(&self, provider_ref: &str, urls: &InboundUrls) -> Result<(), ProviderError>;
    /// Gives an owned number back to the provider (it stops being billed).
    async fn release(&self, provider_ref: &str) -> Result<(), ProviderError>;
}
