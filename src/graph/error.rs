//! How one of wagate's own Graph calls failed, and the one place Meta's error body is read.

use serde_json::Value;

/// A failed call of wagate's own to Graph (never the passthrough: the proxy answers Meta's bytes
/// unchanged). Transport errors are described without the URL: it can hold a code or the app
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphCallError {
    /// Graph did not answer within the deadline.
    #[error("Graph did not answer in time")]
    Timeout,
    /// No connection, or it broke before an answer; `detail` is the transport's own words.
    #[error("could not connect to Graph")]
    Connect { detail: String },
    /// Graph answered, but not with what the call needed.
    #[error("Graph refused the call (HTTP {status}: {message})")]
    Refused {
        status: u16,
        /// Meta's `error.code`, when the body had one.
        code: Option<i64>,
        /// Meta's `error.message`, or "no details".
        message: String,
    },
}

impl GraphCallError {
    /// Whether the same call may succeed later: transport failures, throttling and Meta's own
    /// server errors.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Timeout | Self::Connect { .. } => true,
            Self::Refused { status, .. } => *status == 429 || *status >= 500,
        }
    }

    /// `Refused` from Graph's status and (error) body.
    pub(super) fn refused(status: u16, body: &Value) -> Self {
        Self::Refused {
            status,
            code: body.pointer("/error/code").and_then(Value::as_i64),
            message: meta_message(body),
        }
    }

    /// A transport failure: timeouts apart, the rest as `Connect`.
    pub(super) fn transport(error: reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::Timeout
        } else {
            Self::connect(error)
        }
    }

    pub(super) fn connect(error: reqwest::Error) -> Self {
        Self::Connect {
            detail: error.without_url().to_string(),
        }
    }
}

/// Meta's `error.message` in a Graph error body, or "no details".
fn meta_message(body: &Value) -> String {
    body.pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("no details")
        .to_owned()
}

/// Meta's words for an object a token cannot reach (code 100, subcode 33): the emulator answers
/// with them, and so does wagate when it refuses another project's object, so that refusal reads
/// exactly like Meta's answer for an id that does not exist.
pub fn unsupported_object_message(method: &str, id: &str) -> String {
    format!(
        "Unsupported {} request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation. Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api",
        method.to_ascii_lowercase()
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn refusals_read_meta_error_and_say_when_to_retry() {
        let body = json!({"error": {"message": "Invalid OAuth access token", "code": 190}});
        let refused = GraphCallError::refused(401, &body);
        assert_eq!(
            refused,
            GraphCallError::Refused {
                status: 401,
                code: Some(190),
                message: "Invalid OAuth access token".into()
            }
        );
        assert!(!refused.retryable());
        let bare = GraphCallError::refused(503, &Value::Null);
        assert!(
            matches!(&bare, GraphCallError::Refused { message, code: None, .. } if message == "no details")
        );
        assert!(bare.retryable());
        assert!(GraphCallError::refused(429, &Value::Null).retryable());
        assert!(GraphCallError::Timeout.retryable());
    }
}
