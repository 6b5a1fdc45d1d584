//! Why a signup did not complete: Kapso's error codes (contract §11.3) and the completion's error.

use crate::store::StoreError;

/// Why a signup did not complete, as the failure redirect's `error_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCode {
    /// Meta did not give what a signup needs (no code, no WABA, a bad connection type) or
    /// refused to subscribe the app to the WABA.
    FacebookAuthFailed,
    /// The number could not be verified, registered or connected: no phone number chosen, the
    /// token does not reach it, registration failed, it is connected already, or a reconnect
    /// signed in with another number.
    PhoneVerificationFailed,
    /// Meta refused the OAuth code (wrong, expired or already used) or could not be reached.
    TokenExchangeFailed,
    /// The link expired or was revoked.
    LinkExpired,
    /// The link completed already.
    AlreadyUsed,
}

impl FailureCode {
    pub const ALL: [FailureCode; 5] = [
        Self::FacebookAuthFailed,
        Self::PhoneVerificationFailed,
        Self::TokenExchangeFailed,
        Self::LinkExpired,
        Self::AlreadyUsed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::FacebookAuthFailed => "facebook_auth_failed",
            Self::PhoneVerificationFailed => "phone_verification_failed",
            Self::TokenExchangeFailed => "token_exchange_failed",
            Self::LinkExpired => "link_expired",
            Self::AlreadyUsed => "already_used",
        }
    }

    /// Whether the link itself is the problem (it is left exactly as it is).
    pub fn is_link_state(self) -> bool {
        matches!(self, Self::LinkExpired | Self::AlreadyUsed)
    }
}

/// A failed signup: the code for the redirect and a sentence for the operator's log (never the
/// OAuth code or a token).
#[derive(Debug)]
pub struct Failure {
    pub code: FailureCode,
    pub reason: String,
}

impl Failure {
    pub(super) fn new(code: FailureCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompleteError {
    #[error("{}: {}", .0.code.as_str(), .0.reason)]
    Failed(Failure),
    /// The database could not be used; the customer should try again in a moment.
    #[error(transparent)]
    Store(StoreError),
}

impl From<Failure> for CompleteError {
    fn from(failure: Failure) -> Self {
        Self::Failed(failure)
    }
}

impl From<StoreError> for CompleteError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}
