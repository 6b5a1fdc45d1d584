//! Lost answers (`POST /_sandbox/knobs {"lose_answers": {"count": N, "hold_ms": M}}`): the next
//! N accepted sends are accepted exactly as usual (stored, counted in the send log, status
//! webhooks delivered) but their HTTP answer is held for `hold_ms` and then replaced by Meta's
//! transient `500` (code `2`, "Service temporarily unavailable"), as when the connection to
//! Meta breaks after Meta took the message. A client whose timeout is shorter than the hold sees
//! a timeout and cannot tell that the message went out: this is what a queued-send worker must
//! survive without sending twice.
//!
//! The decision is taken under the world lock the send already holds, at the moment the send is
//! accepted, so "the next N" is exact even under concurrent sends, a refused send (limits,
//! validation) never uses one up, and a send costs no extra lock when the knob is off.

use std::time::Duration;

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;

use super::graph_errors::GraphError;

/// How long an answer is held when `lose_answers` does not say: longer than any sensible client
/// timeout, so the client gives up first.
pub const DEFAULT_HOLD_MS: u64 = 30_000;

/// `lose_answers`: how many accepted sends still lose their answer, and how long each is held.
/// `GET /_sandbox/knobs` shows the remaining `count`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LostAnswers {
    pub count: u32,
    pub hold_ms: u64,
}

impl Default for LostAnswers {
    fn default() -> Self {
        Self {
            count: 0,
            hold_ms: DEFAULT_HOLD_MS,
        }
    }
}

impl LostAnswers {
    /// Parses the knob's value. Each setting replaces the previous one whole (an omitted
    /// `hold_ms` is 30 s again, not the last value), so a test never inherits another's hold;
    /// `null` turns the knob off.
    pub fn parse(value: &Value) -> Result<Self, String> {
        let fields = match value {
            Value::Null => return Ok(Self::default()),
            Value::Object(fields) => fields,
            other => {
                return Err(format!(
                    "lose_answers must be {{\"count\", \"hold_ms\"?}} or null, got {other}"
                ))
            }
        };
        let mut knob = Self::default();
        let mut counted = false;
        for (name, v) in fields {
            let invalid = || format!("invalid value for lose_answers.{name}: {v}");
            match name.as_str() {
                "count" => {
                    knob.count = v
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(invalid)?;
                    counted = true;
                }
                "hold_ms" => knob.hold_ms = v.as_u64().ok_or_else(invalid)?,
                _ => return Err(format!("unknown lose_answers field \"{name}\"")),
            }
        }
        if !counted {
            return Err("lose_answers.count is required".into());
        }
        Ok(knob)
    }

    /// Called for an accepted send, under the world lock: uses up one lost answer, if any is
    /// left, and says how long to hold it.
    pub fn take(&mut self) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        self.count -= 1;
        Some(Duration::from_millis(self.hold_ms))
    }
}

/// What a held answer finally says: Meta's transient service error. A client that waited this
/// long learns nothing about the message, which was accepted.
pub fn lost_answer() -> GraphError {
    GraphError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        kind: "OAuthException",
        code: 2,
        subcode: None,
        message: "(#2) Service temporarily unavailable".into(),
        details: Some(
            "The message was accepted; its answer was lost (sandbox lose_answers knob).".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_setting_replaces_the_last_and_counts_down() {
        let mut knob = LostAnswers::parse(&json!({"count": 2, "hold_ms": 50})).unwrap();
        assert_eq!(knob.take(), Some(Duration::from_millis(50)));
        assert_eq!(knob.take(), Some(Duration::from_millis(50)));
        assert_eq!(knob.take(), None);
        assert_eq!(knob.count, 0);
        let knob = LostAnswers::parse(&json!({"count": 1})).unwrap();
        assert_eq!(knob.hold_ms, DEFAULT_HOLD_MS);
        assert_eq!(LostAnswers::parse(&Value::Null).unwrap().count, 0);
        for bad in [
            json!({"hold_ms": 5}),
            json!({"count": -1}),
            json!({"count": 1, "hold": 5}),
            json!({"count": "1"}),
            json!(3),
        ] {
            assert!(LostAnswers::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_held_answer_is_a_transient_500() {
        let error = lost_answer();
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
        let body = error.to_json();
        assert_eq!(body["error"]["code"], 2);
        assert_eq!(
            body["error"]["message"],
            "(#2) Service temporarily unavailable"
        );
    }
}
