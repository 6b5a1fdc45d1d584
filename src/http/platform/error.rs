//! The Platform API's error type: `{"error": "<message>", "details": [...]}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::domain::customers::CustomerError;
use crate::domain::phone_numbers::{FieldError, PhoneNumberError};
use crate::domain::setup_links::SetupLinkError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("missing X-API-Key header; send your project API key")]
    MissingKey,
    #[error("invalid or revoked API key")]
    InvalidKey,
    /// Answered before the key is checked, with `Retry-After`.
    #[error("too many failed authentications from this client or for this key; retry later")]
    TooManyFailedAuthentications(std::time::Duration),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("request body exceeds the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the request body stopped arriving; send it without pauses")]
    RequestTimeout,
    #[error("service temporarily unavailable; retry later")]
    Unavailable,
    #[error("{0}")]
    BadGateway(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl IntoResponse for PlatformError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::MissingKey | Self::InvalidKey => StatusCode::UNAUTHORIZED,
            Self::TooManyFailedAuthentications(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = match &self {
            Self::Validation(errors) => {
                let message = errors
                    .iter()
                    .map(|e| format!("{} {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                json!({ "error": message, "details": errors })
            }
            Self::Internal(error) => {
                tracing::error!(error = ?error, "internal error on the Platform API");
                json!({ "error": self.to_string() })
            }
            other => json!({ "error": other.to_string() }),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Self::TooManyFailedAuthentications(wait) = self {
            let seconds = crate::http::graph_error::retry_after_seconds(wait);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<StoreError> for PlatformError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound("resource"),
            StoreError::Conflict { constraint } => Self::Conflict(format!(
                "conflicts with an existing record{}",
                constraint.map(|c| format!(" ({c})")).unwrap_or_default()
            )),
            StoreError::Unavailable(message) => {
                tracing::warn!(%message, "database unavailable");
                Self::Unavailable
            }
            StoreError::Other(e) => Self::Internal(e),
        }
    }
}

impl From<PhoneNumberError> for PlatformError {
    fn from(error: PhoneNumberError) -> Self {
        match error {
            PhoneNumberError::Invalid(errors) => Self::Validation(errors),
            PhoneNumberError::AlreadyConnected(_) => Self::Conflict(error.to_string()),
            PhoneNumberError::NotFound => Self::NotFound("phone number"),
            PhoneNumberError::Unverified(crate::domain::verify::VerifyError::Refused(field)) => {
                Self::Validation(vec![field])
            }
            PhoneNumberError::Unverified(
                e @ crate::domain::verify::VerifyError::Unreachable(_),
            ) => Self::BadGateway(e.to_string()),
            PhoneNumberError::Store(e) => e.into(),
        }
    }
}

impl From<CustomerError> for PlatformError {
    fn from(error: CustomerError) -> Self {
        match error {
            CustomerError::Invalid(errors) => Self::Validation(errors),
            CustomerError::NotFound => Self::NotFound("customer"),
            CustomerError::ExternalIdTaken => Self::Conflict(error.to_string()),
            CustomerError::HasNumbers => Self::Conflict(
                "the customer has connected phone numbers; disconnect them first, or delete with ?force=true \
                 to keep them connected to the project without a customer"
                    .into(),
            ),
            CustomerError::Store(e) => e.into(),
        }
    }
}

impl From<SetupLinkError> for PlatformError {
    fn from(error: SetupLinkError) -> Self {
        match error {
            SetupLinkError::Invalid(errors) => Self::Validation(errors),
            SetupLinkError::NotFound => Self::NotFound("setup link"),
            SetupLinkError::Store(e) => e.into(),
        }
    }
}
