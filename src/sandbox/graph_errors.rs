//! Meta's Graph error envelope and the error codes the emulator can produce.
//!
//! Every error the emulator returns on a Graph route goes through [`GraphError`], so a client
//! written against Meta parses it exactly as it would parse Meta's (contract.md §13):
//! `{"error":{"message","type","code","error_subcode"?,"error_data"?,"fbtrace_id"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// How Meta reports a send failure with a given code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// In the HTTP response to the send request.
    Sync,
    /// The send is accepted (a wamid is returned) and a `failed` status webhook follows: this is
    /// how Meta reports re-engagement (131047), undeliverable (131026) and similar failures.
    Webhook,
}

/// One row of Meta's error-code table (contract.md §13).
#[derive(Debug, Clone, Copy)]
pub struct CodeInfo {
    pub title: &'static str,
    pub details: &'static str,
    pub status: StatusCode,
    pub reported: Reported,
}

/// Looks up the title, HTTP status and reporting channel of a Meta error code.
///
/// Unknown codes get a generic entry, so a test can inject any code through the knobs.
pub fn code_info(code: u32) -> CodeInfo {
    use Reported::{Sync, Webhook};
    let (title, details, status, reported) = match code {
        0 => ("AuthException", "Unable to authenticate the app user.", 401, Sync),
        1 => ("API Unknown", "Invalid request or possible server error.", 400, Sync),
        2 => ("API Service", "Temporary due to downtime or due to being overloaded.", 503, Sync),
        3 => ("API Method", "Capability or permissions issue.", 500, Sync),
        4 => ("API Too Many Calls", "The app has reached its API call rate limit.", 400, Sync),
        10 => ("Permission denied", "Permission is either not granted or has been removed.", 403, Sync),
        33 => ("Parameter value is not valid", "The business phone number has been deleted.", 400, Sync),
        100 => ("Invalid parameter", "The request included one or more unsupported or misspelled parameters.", 400, Sync),
        190 => ("Access token has expired", "Your access token has expired.", 401, Sync),
        368 => ("Temporarily blocked for policies violations", "The WhatsApp Business Account is restricted.", 403, Sync),
        80007 => ("Rate limit issues", "The WhatsApp Business Account has reached its rate limit.", 400, Sync),
        130429 => ("Rate limit hit", "Cloud API message throughput has been reached.", 400, Sync),
        130472 => ("User's number is part of an experiment", "Message was not sent as part of an experiment.", 400, Webhook),
        130497 => ("Business account is restricted from messaging users in this country", "The business is restricted from messaging users in this country.", 403, Sync),
        131000 => ("Something went wrong", "Message failed to send due to an unknown error.", 500, Sync),
        131005 => ("Access denied", "Permission is either not granted or has been removed.", 403, Sync),
        131008 => ("Required parameter is missing", "The request is missing a required parameter.", 400, Sync),
        131009 => ("Parameter value is not valid", "One or more parameter values are invalid.", 400, Sync),
        131016 => ("Service unavailable", "A service is temporarily unavailable.", 500, Sync),
        131021 => ("Recipient cannot be sender", "Sender and recipient phone number is the same.", 400, Sync),
        131026 => ("Message undeliverable", "Unable to deliver message.", 400, Webhook),
        131031 => ("Account has been locked", "The WhatsApp Business Account is locked.", 403, Sync),
        131037 => ("WhatsApp provided number needs display name approval before message can be sent.", "The 555 business phone number needs an approved display name.", 400, Sync),
        131042 => ("Business eligibility payment issue", "There was an error related to your payment method.", 400, Webhook),
        131045 => ("Incorrect certificate", "Message failed to send due to a phone number registration error.", 500, Sync),
        131047 => ("Re-engagement message", "Message failed to send because more than 24 hours have passed since the customer last replied to this number.", 400, Webhook),
        131048 => ("Spam rate limit hit", "Message failed to send because there are restrictions on how many messages can be sent from this phone number.", 400, Webhook),
        131049 => ("This message was not delivered to maintain healthy ecosystem engagement.", "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.", 400, Webhook),
        131050 => ("Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business.", "The user has stopped marketing messages from this business.", 400, Webhook),
        131051 => ("Unsupported message type", "Unsupported message type.", 400, Webhook),
        131052 => ("Media download error", "Unable to download the media sent by the user.", 400, Webhook),
        131053 => ("Media upload error", "Unable to upload the media used in the message.", 400, Webhook),
        131056 => ("(Business Account, Consumer Account) pair rate limit hit", "Too many messages sent from the sender phone number to the same recipient phone number in a short period of time.", 400, Sync),
        131057 => ("Account in maintenance mode", "Business Account is in maintenance mode.", 500, Sync),
        131062 => ("Business-scoped user ID recipients not supported", "This message type does not support business-scoped user ID recipients.", 400, Sync),
        132000 => ("Number of parameters does not match the expected number of params", "The number of variable parameter values does not match the template.", 400, Sync),
        132001 => ("Template does not exist", "The template does not exist in the specified language or has not been approved.", 404, Sync),
        132005 => ("Translated text too long", "Translated text is too long.", 400, Sync),
        132007 => ("Template format character policy violated", "Template content violates a WhatsApp policy.", 400, Sync),
        132012 => ("Template parameter format mismatch", "Variable parameter values formatted incorrectly.", 400, Sync),
        132015 => ("Template is paused", "Template is paused due to low quality.", 400, Sync),
        132016 => ("Template is disabled", "Template has been paused too many times due to low quality.", 400, Sync),
        133010 => ("Phone number not registered", "The phone number is not registered on the WhatsApp Business Platform.", 400, Sync),
        136025 => ("Verify code error", "Code couldn't be verified, You have entered the wrong code.", 400, Sync),
        147001 => ("Username not available", "This username is not available.", 400, Sync),
        147002 => ("Account not eligible for a username", "This account is not eligible for a username.", 400, Sync),
        147003 => ("Link a Facebook Page to claim a username", "The business must link a Facebook Page before it can claim a username.", 400, Sync),
        147004 => ("Link an Instagram account to claim a username", "The business must link an Instagram account before it can claim a username.", 400, Sync),
        147005 => ("Username belongs to another number in this portfolio", "Another number in this business portfolio holds this username; retry with transfer_action force_transfer.", 400, Sync),
        137000 => ("Identity key hash mismatch", "The recipient's identity key hash does not match.", 400, Webhook),
        200..=299 => ("API Permission", "Permission is either not granted or has been removed.", 403, Sync),
        _ => ("Sandbox injected error", "This error was injected through the sandbox knobs.", 400, Sync),
    };
    CodeInfo {
        title,
        details,
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        reported,
    }
}

/// The object of a webhook `errors[]` entry for `code` (statuses, unsupported messages).
pub fn webhook_error(code: u32) -> Value {
    let info = code_info(code);
    json!({
        "code": code,
        "title": info.title,
        "message": info.title,
        "error_data": { "details": info.details },
        "href": "https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes",
    })
}

/// A Graph error response.
#[derive(Debug, Clone)]
pub struct GraphError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: u32,
    pub subcode: Option<u32>,
    pub message: String,
    pub details: Option<String>,
}

impl GraphError {
    /// An error from the code table, `(#code) title`, with call-specific details.
    pub fn from_code(code: u32, details: impl Into<String>) -> Self {
        let info = code_info(code);
        Self {
            status: info.status,
            kind: "OAuthException",
            code,
            subcode: None,
            message: format!("(#{code}) {}", info.title),
            details: Some(details.into()),
        }
    }

    /// 400 code 100 naming the bad parameter in `error_data.details`.
    pub fn invalid_parameter(details: impl Into<String>) -> Self {
        Self::from_code(100, details)
    }

    /// 400 code 100 with Meta's own sentence as the message (`(#100) The parameter X is required.`).
    pub fn param_message(message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            details: Some(message.trim_start_matches("(#100) ").to_owned()),
            message,
            ..Self::from_code(100, "")
        }
    }

    /// 400 code 131008: a required field of the message object is missing.
    pub fn missing_parameter(details: impl Into<String>) -> Self {
        Self::from_code(131008, details)
    }

    /// 401 code 104: no access token at all.
    pub fn missing_token() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            kind: "OAuthException",
            code: 104,
            subcode: None,
            message: "An access token is required to request this resource.".into(),
            details: None,
        }
    }

    /// 401 code 190: a token that does not grant access to the object.
    pub fn invalid_token() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            kind: "OAuthException",
            code: 190,
            subcode: None,
            message: "Invalid OAuth access token - Cannot parse access token".into(),
            details: None,
        }
    }

    /// 400 code 100 subcode 33: Meta's answer for an unknown object, or an unsupported
    /// method/edge on a known one.
    pub fn unsupported(method: &str, id: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "GraphMethodException",
            code: 100,
            subcode: Some(33),
            message: crate::graph::unsupported_object_message(method, id),
            details: None,
        }
    }

    /// 400 code 2500: a path that is not `/{version}/{id}[/{edge}]`.
    pub fn unknown_path(path: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "OAuthException",
            code: 2500,
            subcode: None,
            message: format!("Unknown path components: {path}"),
            details: None,
        }
    }

    pub fn with_subcode(mut self, subcode: u32) -> Self {
        self.subcode = Some(subcode);
        self
    }

    pub fn to_json(&self) -> Value {
        let mut error = json!({
            "message": self.message,
            "type": self.kind,
            "code": self.code,
            "fbtrace_id": fbtrace_id(),
        });
        if let Some(subcode) = self.subcode {
            error["error_subcode"] = json!(subcode);
        }
        if let Some(details) = self.details.as_deref().filter(|d| !d.is_empty()) {
            error["error_data"] = json!({ "messaging_product": "whatsapp", "details": details });
        }
        json!({ "error": error })
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.to_json())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // Meta names the OAuth problem in WWW-Authenticate as well; some clients read it.
            let value = format!(
                "OAuth \"Facebook Platform\" \"invalid_token\" \"{}\"",
                self.message.replace('"', "'")
            );
            if let Ok(value) = HeaderValue::from_str(&value) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

/// A random trace id shaped like Meta's (`Az8or2yhqkZfEZ-_4Qn_Bam`).
fn fbtrace_id() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_meta_fields() {
        let body = GraphError::from_code(130429, "slow down").to_json();
        assert_eq!(body["error"]["code"], 130429);
        assert_eq!(body["error"]["message"], "(#130429) Rate limit hit");
        assert_eq!(body["error"]["error_data"]["details"], "slow down");
        assert_eq!(body["error"]["error_data"]["messaging_product"], "whatsapp");
        assert_eq!(body["error"]["fbtrace_id"].as_str().map(str::len), Some(23));
    }

    #[test]
    fn statuses_follow_the_table() {
        assert_eq!(code_info(132001).status, StatusCode::NOT_FOUND);
        assert_eq!(code_info(131000).status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(code_info(131047).reported, Reported::Webhook);
        assert_eq!(code_info(130429).reported, Reported::Sync);
        assert_eq!(code_info(250).status, StatusCode::FORBIDDEN);
    }
}
