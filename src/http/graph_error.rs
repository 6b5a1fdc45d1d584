//! The Graph error envelope: the one error shape of every `/meta/whatsapp` and `/api/meta` route,
//! so clients written for Meta (and the Kapso SDKs) parse wagate's own errors like Meta's.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::request_id::current_request_id;

/// A Graph-shaped error produced by wagate itself (Meta's own errors pass through untouched).
#[derive(Debug, Clone)]
pub struct GraphError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: u32,
    pub subcode: Option<u32>,
    pub message: String,
    pub details: Option<String>,
    /// Seconds for a `Retry-After` header (429 only).
    pub retry_after: Option<u64>,
}

impl GraphError {
    /// 401 code 104: no credentials at all.
    pub fn missing_credentials() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            kind: "OAuthException",
            code: 104,
            subcode: None,
            message: "An access token is required to request this resource. Send X-API-Key: <project key> or Authorization: Bearer <access token>.".into(),
            details: None,
            retry_after: None,
        }
    }

    /// 401 code 190: a key or token that is unknown, malformed or revoked.
    pub fn invalid_credentials() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            kind: "OAuthException",
            code: 190,
            subcode: None,
            message: "Invalid OAuth access token - Cannot parse access token, or the API key is unknown or revoked.".into(),
            details: None,
            retry_after: None,
        }
    }

    /// 404 code 100 subcode 33: the same answer whether the object is missing or belongs to
    /// another project, so IDs cannot be probed across tenants.
    pub fn unreachable_object(id: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            kind: "GraphMethodException",
            code: 100,
            subcode: Some(33),
            message: format!(
                "Unsupported request - method type: get. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."
            ),
            details: None,
            retry_after: None,
        }
    }

    /// Meta's own answer for an object the token cannot reach (400, code 100, subcode 33, its
    /// wording), given locally for another project's number or WABA so the caller cannot tell it
    /// from an id that does not exist, which Meta answers the same way.
    pub fn object_unreachable_with_token(method: &str, id: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "GraphMethodException",
            code: 100,
            subcode: Some(33),
            message: crate::graph::unsupported_object_message(method, id),
            details: None,
            retry_after: None,
        }
    }

    /// Meta's own refusal of a send, given locally because wagate already knows Meta's answer
    /// (the number's account state, a paused or disabled template).
    pub fn meta_refusal(refusal: crate::domain::account_state::Refusal) -> Self {
        Self {
            status: StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST),
            kind: "OAuthException",
            code: refusal.code,
            subcode: None,
            message: format!("(#{}) {}", refusal.code, refusal.title),
            details: Some(refusal.details),
            retry_after: None,
        }
    }

    /// A send wagate's pacer answered itself (Meta's code, Meta's status), with `Retry-After`.
    pub fn paced(refusal: crate::domain::pacing::Refusal) -> Self {
        use crate::domain::pacing::Refusal;
        let retry_after = retry_after_seconds(refusal.retry_after());
        let (status, title, details) = match refusal {
            Refusal::Throughput { .. } => (
                StatusCode::BAD_REQUEST,
                "Rate limit hit",
                format!("wagate paced this send: the number's throughput has no free slot within pacing.max_wait; retry after {retry_after} s"),
            ),
            Refusal::PairRate { .. } => (
                StatusCode::BAD_REQUEST,
                "(Business Account, Consumer Account) pair rate limit hit",
                format!("wagate paced this send: too many messages to this user in a short time (pair rate mode enforce); retry after {retry_after} s"),
            ),
            Refusal::Upgrading { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Account in maintenance mode",
                format!("Meta is upgrading this number's throughput; wagate holds its sends; retry after {retry_after} s"),
            ),
        };
        Self {
            status,
            kind: "OAuthException",
            code: refusal.code(),
            subcode: None,
            message: format!("(#{}) {title}", refusal.code()),
            details: Some(details),
            retry_after: Some(retry_after),
        }
    }

    /// 400 code 100 for a bad parameter; `details` names the parameter and the problem.
    pub fn invalid_parameter(details: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "OAuthException",
            code: 100,
            subcode: None,
            message: "(#100) Invalid parameter".into(),
            details: Some(details.into()),
            retry_after: None,
        }
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "OAuthException",
            code: 100,
            subcode: None,
            message: "(#100) Request body too large".into(),
            details: Some(format!(
                "the request body exceeds the limit of {limit} bytes"
            )),
            retry_after: None,
        }
    }

    /// A request body that could not be read within `limit`: 413, 408 or 400.
    pub fn unreadable_body(error: super::body::BodyError, limit: usize) -> Self {
        use super::body::BodyError;
        match error {
            BodyError::TooLarge => Self::payload_too_large(limit),
            BodyError::Stalled => Self::request_timeout(),
            BodyError::Read(message) => {
                Self::invalid_parameter(format!("body: could not be read ({message})"))
            }
        }
    }

    /// 408: the caller stopped sending its body for longer than `server.body_idle_timeout`.
    pub fn request_timeout() -> Self {
        Self {
            status: StatusCode::REQUEST_TIMEOUT,
            kind: "OAuthException",
            code: 100,
            subcode: None,
            message: "(#100) Request body timed out".into(),
            details: Some("the request body stopped arriving; send it without pauses".into()),
            retry_after: None,
        }
    }

    /// 502: Graph could not be reached or answered garbage.
    pub fn bad_gateway(details: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_GATEWAY,
            kind: "OAuthException",
            code: 2,
            subcode: None,
            message:
                "(#2) Service temporarily unavailable: the upstream Graph API could not be reached"
                    .into(),
            details: Some(details.into()),
            retry_after: None,
        }
    }

    /// 504: Graph did not answer within `graph.timeout`.
    pub fn gateway_timeout(details: impl Into<String>) -> Self {
        Self {
            status: StatusCode::GATEWAY_TIMEOUT,
            kind: "OAuthException",
            code: 2,
            subcode: None,
            message: "(#2) Service temporarily unavailable: the upstream Graph API timed out"
                .into(),
            details: Some(details.into()),
            retry_after: None,
        }
    }

    /// 429 code 4 (Meta's "Application request limit reached", which clients written for Graph
    /// already back off on): too many failed authentications from this client or with this
    /// credential prefix. `Retry-After` says when the next attempt is checked.
    pub fn too_many_failed_authentications(retry_after: std::time::Duration) -> Self {
        let seconds = retry_after_seconds(retry_after);
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            kind: "OAuthException",
            code: 4,
            subcode: None,
            message: "(#4) Application request limit reached: too many failed authentications".into(),
            details: Some(format!(
                "too many requests with unknown or invalid credentials from this client or for this key; retry after {seconds} seconds"
            )),
            retry_after: Some(seconds),
        }
    }

    /// 503: wagate's own database is unavailable.
    pub fn unavailable() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "OAuthException",
            code: 2,
            subcode: None,
            message: "(#2) Service temporarily unavailable; retry later".into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn internal() -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "OAuthException",
            code: 1,
            subcode: None,
            message: "(#1) An unknown error occurred".into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut error = json!({
            "message": self.message,
            "type": self.kind,
            "code": self.code,
            "fbtrace_id": current_request_id().unwrap_or_default(),
        });
        if let Some(subcode) = self.subcode {
            error["error_subcode"] = json!(subcode);
        }
        if let Some(details) = &self.details {
            error["error_data"] = json!({"messaging_product": "whatsapp", "details": details});
        }
        json!({ "error": error })
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.to_json())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("OAuth \"Facebook Platform\" \"invalid_token\""),
            );
        }
        response
    }
}

/// Whole seconds for `Retry-After`, rounded up (never 0: that would invite an instant retry).
pub fn retry_after_seconds(wait: std::time::Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

impl From<crate::store::StoreError> for GraphError {
    fn from(error: crate::store::StoreError) -> Self {
        match error {
            crate::store::StoreError::Unavailable(_) => {
                tracing::warn!(error = %error, "database unavailable");
                Self::unavailable()
            }
            other => {
                tracing::error!(error = ?other, "store error on a Graph route");
                Self::internal()
            }
        }
    }
}
