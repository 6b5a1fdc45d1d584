//! `/_sandbox/knobs`: the switches that make the emulator misbehave the way Meta sometimes does
//! (reordered, duplicated or dropped statuses, failing sends, template review, Meta's send
//! limits, lost answers). `POST` sets the knobs it names and keeps the others, `GET` shows them
//! all (`lose_answers.count` is what is left), `DELETE` puts every knob back to its default.
//!
//! A body is checked whole before anything changes, so a bad value leaves all knobs as they were.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Map, Value};

use super::control::{parse, ControlError};
use super::limits::LimitKnobs;
use super::lost_answers::LostAnswers;
use super::state::{Knobs, World};
use super::Shared;

pub fn routes() -> Router<Arc<Shared>> {
    Router::new().route(
        "/_sandbox/knobs",
        post(set_knobs).get(get_knobs).delete(reset_knobs),
    )
}

/// Returns the knobs as JSON.
fn knobs_json(world: &World) -> Json<Value> {
    Json(serde_json::to_value(&world.knobs).unwrap_or_default())
}

/// `POST /_sandbox/knobs`: sets the given knobs, keeps the others, answers all of them.
async fn set_knobs(
    State(shared): State<Arc<Shared>>,
    body: bytes::Bytes,
) -> Result<Json<Value>, ControlError> {
    let Value::Object(updates) = parse(&body)? else {
        return Err(ControlError::bad("the body must be a JSON object"));
    };
    let mut world = shared.world();
    let mut knobs = world.knobs.clone();
    apply(&mut knobs, updates)?;
    world.knobs = knobs;
    Ok(knobs_json(&world))
}

async fn get_knobs(State(shared): State<Arc<Shared>>) -> Json<Value> {
    knobs_json(&shared.world())
}

async fn reset_knobs(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let mut world = shared.world();
    world.knobs = Knobs::default();
    knobs_json(&world)
}

/// An optional Meta error code: a number, or `null` for none.
fn optional_code(value: &Value) -> Option<Option<u32>> {
    match value {
        Value::Null => Some(None),
        v => v.as_u64().and_then(|c| u32::try_from(c).ok()).map(Some),
    }
}

/// Applies `updates` to `knobs`; the first bad key or value is the error.
fn apply(knobs: &mut Knobs, updates: Map<String, Value>) -> Result<(), ControlError> {
    for (key, value) in updates {
        let invalid = || ControlError::bad(format!("invalid value for {key}: {value}"));
        match key.as_str() {
            "reorder" => knobs.reorder = value.as_bool().ok_or_else(invalid)?,
            "duplicate" => knobs.duplicate = value.as_bool().ok_or_else(invalid)?,
            "drop" => {
                let list = value
                    .as_array()
                    .and_then(|l| {
                        l.iter()
                            .map(|s| s.as_str().map(str::to_owned))
                            .collect::<Option<Vec<_>>>()
                    })
                    .filter(|l| {
                        l.iter()
                            .all(|s| matches!(s.as_str(), "sent" | "delivered" | "read" | "failed"))
                    })
                    .ok_or_else(invalid)?;
                knobs.drop = list;
            }
            "fail_sends_with" => {
                knobs.fail_sends_with = optional_code(&value).ok_or_else(invalid)?
            }
            "fail_usernames_with" => {
                knobs.fail_usernames_with = optional_code(&value).ok_or_else(invalid)?
            }
            "lose_answers" => {
                knobs.lose_answers = LostAnswers::parse(&value).map_err(ControlError::bad)?
            }
            "limits" => knobs.limits = limit_knobs(&knobs.limits, &value).ok_or_else(invalid)??,
            "template_review" => match value.as_str() {
                Some(r @ ("approve" | "reject" | "pending")) => {
                    knobs.template_review = r.to_owned()
                }
                _ => return Err(invalid()),
            },
            _ => return Err(ControlError::bad(format!("unknown knob \"{key}\""))),
        }
    }
    Ok(())
}

/// `limits` changes only the fields it names. `None`: not an object or a bad value; an unknown
/// field is its own error.
fn limit_knobs(current: &LimitKnobs, value: &Value) -> Option<Result<LimitKnobs, ControlError>> {
    let Value::Object(fields) = value else {
        return None;
    };
    let mut limits = current.clone();
    for (name, v) in fields {
        let small = || {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
        };
        match name.as_str() {
            "enabled" => limits.enabled = v.as_bool()?,
            "standard_mps" => limits.standard_mps = small()?,
            "high_mps" => limits.high_mps = small()?,
            "pair_burst" => limits.pair_burst = small()?,
            "pair_interval_ms" => limits.pair_interval_ms = v.as_u64()?,
            "upgrade_ms" => limits.upgrade_ms = v.as_u64()?,
            _ => {
                return Some(Err(ControlError::bad(format!(
                    "unknown limits field \"{name}\""
                ))))
            }
        }
    }
    Some(Ok(limits))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(knobs: &mut Knobs, body: Value) -> Result<(), ControlError> {
        let Value::Object(updates) = body else {
            panic!("an object")
        };
        apply(knobs, updates)
    }

    #[test]
    fn knobs_merge_and_bad_values_are_refused() {
        let mut knobs = Knobs::default();
        set(
            &mut knobs,
            json!({"reorder": true, "limits": {"enabled": true, "standard_mps": 4},
                "lose_answers": {"count": 2, "hold_ms": 10}, "fail_sends_with": 131026}),
        )
        .unwrap();
        assert!(knobs.reorder && knobs.limits.enabled);
        assert_eq!(knobs.limits.standard_mps, 4);
        assert_eq!(knobs.limits.high_mps, 1_000);
        assert_eq!(knobs.lose_answers.count, 2);
        assert_eq!(knobs.fail_sends_with, Some(131026));
        set(
            &mut knobs,
            json!({"limits": {"upgrade_ms": 5}, "fail_sends_with": null}),
        )
        .unwrap();
        assert_eq!(knobs.limits.standard_mps, 4, "limits fields merge");
        assert_eq!(knobs.fail_sends_with, None);
        for bad in [
            json!({"limits": {"standard_mps": 0}}),
            json!({"limits": {"nope": 1}}),
            json!({"limits": 3}),
            json!({"lose_answers": {"hold_ms": 1}}),
            json!({"drop": ["gone"]}),
            json!({"nope": true}),
        ] {
            assert!(set(&mut knobs.clone(), bad.clone()).is_err(), "{bad}");
        }
    }
}
