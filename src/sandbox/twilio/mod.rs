//! A Twilio double, from Twilio's published REST API (`2010-04-01`): the calls wagate's
//! provisioning makes (account check, local-number search, buy, update, release) under `/twilio`,
//! with Twilio's JSON fields and error bodies (`{"code", "message", "more_info", "status"}`,
//! 20003 authenticate, 20404 not found, 21421/21422 bad or unavailable number, 21451 bad area code), and Twilio's
//! side of inbound traffic: an SMS or a call to an owned number posted to its `SmsUrl` /
//! `VoiceUrl`, form-encoded and signed with `X-Twilio-Signature` (the call's `<Record
//! transcribeCallback>` answered with a signed transcript).
//!
//! Stock is generated (fictional ranges, e.g. `+1 {area} 555-01NN`), never a number an account
//! already owns. The control routes (`/_sandbox/twilio/…`) create accounts, give an account a
//! number it "already owns", switch a country's stock off and inject inbound SMS and calls.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{MutexGuard, PoisonError};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

mod control;
mod rest;

pub use self::control::control_routes;
pub(crate) use self::control::{deliver_call, deliver_sms};
pub use self::rest::routes;

use super::Shared;

/// An account the double knows: its SID and auth token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioAccount {
    pub account_sid: String,
    pub auth_token: String,
}

impl TwilioAccount {
    /// The demo account `SandboxConfig::demo()` holds (fixed, so `serve --sandbox` can name it).
    pub fn demo() -> Self {
        Self {
            account_sid: "AC5a0db000000000000000000000000001".into(),
            auth_token: "5a0db0c0de5a0db0c0de5a0db0c0de00".into(),
        }
    }

    pub(super) fn generate() -> Self {
        Self {
            account_sid: format!("AC{}", hex32()),
            auth_token: hex32(),
        }
    }
}

pub(super) fn hex32() -> String {
    use rand::Rng as _;
    let bytes: [u8; 16] = rand::thread_rng().gen();
    hex::encode(bytes)
}

/// An IncomingPhoneNumber.
#[derive(Debug, Clone)]
pub(super) struct Incoming {
    pub(super) sid: String,
    pub(super) account_sid: String,
    pub(super) phone_number: String,
    pub(super) friendly_name: String,
    pub(super) sms_url: String,
    pub(super) voice_url: String,
    pub(super) date_created: String,
}

impl Incoming {
    pub(super) fn json(&self) -> Value {
        let uri = format!(
            "/2010-04-01/Accounts/{}/IncomingPhoneNumbers/{}.json",
            self.account_sid, self.sid
        );
        json!({
            "sid": self.sid, "account_sid": self.account_sid, "phone_number": self.phone_number,
            "friendly_name": self.friendly_name, "sms_url": self.sms_url, "sms_method": "POST",
            "voice_url": self.voice_url, "voice_method": "POST", "status": "in-use",
            "capabilities": {"voice": true, "sms": true, "mms": true, "fax": false},
            "date_created": self.date_created, "date_updated": self.date_created,
            "api_version": "2010-04-01", "uri": uri,
        })
    }
}

#[derive(Debug, Default)]
pub(crate) struct TwilioWorld {
    pub(super) accounts: HashMap<String, String>,
    /// By `PN…` sid.
    pub(super) numbers: BTreeMap<String, Incoming>,
    pub(super) stock_off: HashSet<String>,
    pub(super) deliveries: Vec<Value>,
}

impl TwilioWorld {
    pub fn new(accounts: &[TwilioAccount]) -> Self {
        Self {
            accounts: accounts
                .iter()
                .map(|a| (a.account_sid.clone(), a.auth_token.clone()))
                .collect(),
            ..Self::default()
        }
    }

    pub(super) fn owned(&self, phone_number: &str) -> Option<&Incoming> {
        self.numbers
            .values()
            .find(|n| n.phone_number == phone_number)
    }

    pub(super) fn token(&self, account_sid: &str) -> Option<String> {
        self.accounts.get(account_sid).cloned()
    }
}

impl Shared {
    pub(crate) fn twilio(&self) -> MutexGuard<'_, TwilioWorld> {
        self.twilio.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A Twilio error answer.
pub(super) fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({
        "code": code, "message": message, "status": status.as_u16(),
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
    });
    (status, Json(body)).into_response()
}

pub(super) fn authenticate_error() -> Response {
    twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate")
}

pub(super) fn not_found(what: &str) -> Response {
    twilio_error(
        StatusCode::NOT_FOUND,
        20404,
        &format!("The requested resource {what} was not found"),
    )
}

/// The account the request's basic auth proves, if it is `account_sid`.
pub(super) fn authorised(
    shared: &Shared,
    headers: &HeaderMap,
    account_sid: &str,
) -> Result<(), Box<Response>> {
    use base64::Engine as _;
    let credentials = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let Some((user, password)) = credentials.as_deref().and_then(|c| c.split_once(':')) else {
        return Err(Box::new(authenticate_error()));
    };
    let known = shared.twilio().token(user);
    match known {
        Some(token)
            if user == account_sid
                && crate::crypto::constant_time_eq(token.as_bytes(), password.as_bytes()) =>
        {
            Ok(())
        }
        _ => Err(Box::new(authenticate_error())),
    }
}

/// `{what}.json` → `what`.
pub(super) fn json_segment(segment: &str) -> Option<&str> {
    segment.strip_suffix(".json")
}

/// A country's generated stock: (prefix, digits after it).
pub(super) fn stock_pattern(country: &str, area_code: Option<&str>) -> Option<(String, usize)> {
    Some(match country {
        "US" => (format!("+1{}55501", area_code.unwrap_or("415")), 2),
        "CA" => (format!("+1{}55501", area_code.unwrap_or("416")), 2),
        "GB" => ("+447700900".to_owned(), 3),
        "CL" => ("+5699000".to_owned(), 4),
        "BR" => ("+5511900000".to_owned(), 3),
        "MX" => ("+5255000000".to_owned(), 2),
        _ => return None,
    })
}

/// Whether `phone_number` is one the double could sell (any area code for the NANP).
pub(super) fn in_stock_range(phone_number: &str) -> Option<&'static str> {
    let nanp = phone_number.len() == 12
        && phone_number.starts_with("+1")
        && phone_number.get(5..10) == Some("55501")
        && phone_number[2..].bytes().all(|b| b.is_ascii_digit());
    if nanp {
        return Some("US");
    }
    ["GB", "CL", "BR", "MX"].into_iter().find(|country| {
        stock_pattern(country, None).is_some_and(|(prefix, digits)| {
            phone_number.len() == prefix.len() + digits
                && phone_number.starts_with(&prefix)
                && phone_number[prefix.len()..]
                    .bytes()
                    .all(|b| b.is_ascii_digit())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::control::transcribe_callback;
    use super::*;

    #[test]
    fn stock_ranges_and_twiml() {
        assert_eq!(in_stock_range("+12125550142"), Some("US"));
        assert_eq!(in_stock_range("+447700900123"), Some("GB"));
        assert_eq!(in_stock_range("+14155550199x"), None);
        assert_eq!(in_stock_range("+14155551234"), None);
        let twiml =
            "<Response><Record maxLength=\"60\" transcribeCallback=\"/t?a=1&amp;b=2\"/></Response>";
        assert_eq!(
            transcribe_callback(twiml, "http://h:1/providers/twilio/p/voice").as_deref(),
            Some("http://h:1/t?a=1&b=2")
        );
        assert_eq!(transcribe_callback("<Response/>", "http://h"), None);
        let demo = TwilioAccount::demo();
        assert_eq!(demo.account_sid.len(), 34);
        assert!(demo.account_sid[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
