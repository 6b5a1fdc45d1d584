//! Message templates: list with Graph paging, create with Meta's validation, delete by name or
//! ID, get and edit one; reviews finish after `status_delay` with a
//! `message_template_status_update` webhook, as Meta's reviews do.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{json, Value};

use super::graph::{GraphCall, GraphResult};
use super::graph_errors::GraphError;
use super::state::{numeric_id, Template};
use super::webhooks::{change, timed_envelope};
use super::Shared;

const CATEGORIES: [&str; 3] = ["MARKETING", "UTILITY", "AUTHENTICATION"];
const DEFAULT_LIMIT: usize = 25;
const MAX_LIMIT: usize = 100;

/// `GET /{waba}/message_templates` with `name` (substring), `status`, `category`, `language`
/// filters, `limit` and `after`/`before` cursors.
pub fn list(shared: &Arc<Shared>, waba: &str, call: &GraphCall) -> GraphResult {
    let limit = match call.query_str("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|l| *l > 0)
            .ok_or_else(|| GraphError::invalid_parameter("Param limit must be a positive integer"))?
            .min(MAX_LIMIT),
    };
    let upper = |key: &str| call.query_str(key).map(str::to_ascii_uppercase);
    let name = call.query_str("name").map(str::to_ascii_lowercase);
    let (status, category, language) = (
        upper("status"),
        upper("category"),
        call.query_str("language"),
    );
    let world = shared.world();
    let mut matching: Vec<&Template> = world
        .templates
        .values()
        .filter(|t| t.waba_id == waba)
        .filter(|t| name.as_deref().is_none_or(|n| t.name.contains(n)))
        .filter(|t| {
            status
                .as_deref()
                .is_none_or(|s| s.split(',').any(|s| s.trim() == t.status))
        })
        .filter(|t| category.as_deref().is_none_or(|c| c == t.category))
        .filter(|t| language.is_none_or(|l| l == t.language))
        .collect();
    matching.sort_by(|a, b| (&a.name, &a.language).cmp(&(&b.name, &b.language)));

    let start = match (call.query_str("after"), call.query_str("before")) {
        (Some(after), _) => decode_cursor(after)?,
        (None, Some(before)) => decode_cursor(before)?.saturating_sub(limit),
        (None, None) => 0,
    }
    .min(matching.len());
    let end = (start + limit).min(matching.len());
    let fields = call.fields();
    let data: Vec<Value> = matching[start..end]
        .iter()
        .map(|t| select_fields(t.to_json(), fields.as_deref()))
        .collect();
    let mut paging =
        json!({ "cursors": { "before": encode_cursor(start), "after": encode_cursor(end) } });
    if end < matching.len() {
        paging["next"] = json!(format!(
            "http://{}/{}?limit={limit}&after={}",
            call.host,
            call.path.trim_start_matches('/'),
            encode_cursor(end)
        ));
    }
    if start > 0 {
        paging["previous"] = json!(format!(
            "http://{}/{}?limit={limit}&before={}",
            call.host,
            call.path.trim_start_matches('/'),
            encode_cursor(start)
        ));
    }
    Ok(json!({ "data": data, "paging": paging }))
}

/// Cursors are opaque to clients; here they carry a list offset.
fn encode_cursor(offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

fn decode_cursor(cursor: &str) -> Result<usize, GraphError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim_end_matches('='))
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|text| text.strip_prefix("offset:")?.parse().ok())
        .ok_or_else(|| GraphError::invalid_parameter("Param after/before is not a valid cursor"))
}

fn select_fields(template: Value, fields: Option<&[String]>) -> Value {
    let Some(fields) = fields.filter(|f| !f.is_empty()) else {
        return template;
    };
    let mut out = serde_json::Map::new();
    for key in fields.iter().map(String::as_str).chain(["id"]) {
        if let Some(value) = template.get(key) {
            out.insert(key.to_owned(), value.clone());
        }
    }
    Value::Object(out)
}

/// `POST /{waba}/message_templates`.
pub fn create(shared: &Arc<Shared>, waba: &str, call: &GraphCall) -> GraphResult {
    let name = call
        .param_str("name")
        .ok_or_else(|| GraphError::param_message("(#100) The parameter name is required."))?;
    if name.is_empty()
        || name.len() > 512
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(GraphError::invalid_parameter(
            "Param name must contain only lowercase letters, digits and underscores (at most 512 characters)",
        ));
    }
    let category = parse_category(call.param_str("category"))?;
    let language = call
        .param_str("language")
        .ok_or_else(|| GraphError::param_message("(#100) The parameter language is required."))?;
    if !valid_language(language) {
        return Err(GraphError::invalid_parameter(format!(
            "Param language must be a language code such as en or en_US, got \"{language}\""
        )));
    }
    let components = validate_components(call.params.get("components"), &category)?;
    let parameter_format = match call.param_str("parameter_format") {
        None => "POSITIONAL".to_owned(),
        Some(f) if f.eq_ignore_ascii_case("positional") || f.eq_ignore_ascii_case("named") => {
            f.to_ascii_uppercase()
        }
        Some(_) => {
            return Err(GraphError::invalid_parameter(
                "Param parameter_format must be POSITIONAL or NAMED",
            ))
        }
    };

    let mut world = shared.world();
    let duplicate = world
        .templates
        .values()
        .any(|t| t.waba_id == waba && t.name == name && t.language == language);
    if duplicate {
        return Err(GraphError::invalid_parameter(format!(
            "Content in this language already exists: a template named {name} in {language} exists"
        ))
        .with_subcode(2388024));
    }
    let template = Template {
        id: numeric_id(15),
        waba_id: waba.to_owned(),
        name: name.to_owned(),
        language: language.to_owned(),
        category: category.clone(),
        status: "PENDING".into(),
        components,
        parameter_format,
    };
    let id = template.id.clone();
    world.templates.insert(id.clone(), template);
    let review = world.knobs.template_review.clone();
    drop(world);
    spawn_review(shared.clone(), id.clone(), review);
    Ok(json!({ "id": id, "status": "PENDING", "category": category }))
}

fn parse_category(raw: Option<&str>) -> Result<String, GraphError> {
    let raw =
        raw.ok_or_else(|| GraphError::param_message("(#100) The parameter category is required."))?;
    let upper = raw.to_ascii_uppercase();
    if CATEGORIES.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(GraphError::invalid_parameter(format!(
            "Param category must be one of {{MARKETING, UTILITY, AUTHENTICATION}}, got \"{raw}\""
        )))
    }
}

/// `en`, `en_US`, `zh_HK`, `fil`.
fn valid_language(code: &str) -> bool {
    let (lang, region) = match code.split_once('_') {
        Some((lang, region)) => (lang, Some(region)),
        None => (code, None),
    };
    (2..=3).contains(&lang.len())
        && lang.bytes().all(|b| b.is_ascii_lowercase())
        && region.is_none_or(|r| r.len() == 2 && r.bytes().all(|b| b.is_ascii_uppercase()))
}

/// Meta's structural rules: exactly one BODY, at most one HEADER/FOOTER/BUTTONS, text limits.
/// Component and format names are stored uppercase, as Meta returns them.
fn validate_components(raw: Option<&Value>, category: &str) -> Result<Value, GraphError> {
    let Some(list) = raw.and_then(Value::as_array).filter(|l| !l.is_empty()) else {
        return Err(GraphError::param_message(
            "(#100) The parameter components is required.",
        ));
    };
    let mut out = Vec::with_capacity(list.len());
    let mut seen: Vec<String> = Vec::new();
    for (i, component) in list.iter().enumerate() {
        let bad = |why: &str| GraphError::invalid_parameter(format!("components[{i}]: {why}"));
        let mut component = component.clone();
        let Some(kind) = component
            .get("type")
            .and_then(Value::as_str)
            .map(str::to_ascii_uppercase)
        else {
            return Err(bad("type is required"));
        };
        if !matches!(kind.as_str(), "HEADER" | "BODY" | "FOOTER" | "BUTTONS") {
            return Err(bad("type must be HEADER, BODY, FOOTER or BUTTONS"));
        }
        if seen.contains(&kind) {
            return Err(bad("each component type may appear only once"));
        }
        let text_len = component
            .get("text")
            .and_then(Value::as_str)
            .map(|t| t.chars().count());
        match kind.as_str() {
            "HEADER" => {
                let format = component
                    .get("format")
                    .and_then(Value::as_str)
                    .map(str::to_ascii_uppercase)
                    .unwrap_or_else(|| "TEXT".into());
                if !matches!(
                    format.as_str(),
                    "TEXT" | "IMAGE" | "VIDEO" | "DOCUMENT" | "LOCATION"
                ) {
                    return Err(bad(
                        "HEADER format must be TEXT, IMAGE, VIDEO, DOCUMENT or LOCATION",
                    ));
                }
                if format == "TEXT" && !text_len.is_some_and(|n| (1..=60).contains(&n)) {
                    return Err(bad("a TEXT HEADER needs text of 1 to 60 characters"));
                }
                component["format"] = json!(format);
            }
            "BODY"
                if category != "AUTHENTICATION"
                    && !text_len.is_some_and(|n| (1..=1024).contains(&n)) =>
            {
                return Err(bad("BODY needs text of 1 to 1024 characters"));
            }
            "FOOTER"
                if category != "AUTHENTICATION"
                    && !text_len.is_some_and(|n| (1..=60).contains(&n)) =>
            {
                return Err(bad("FOOTER needs text of 1 to 60 characters"));
            }
            "BUTTONS" => {
                let Some(buttons) = component.get_mut("buttons").and_then(Value::as_array_mut)
                else {
                    return Err(bad("BUTTONS needs a buttons array"));
                };
                if !(1..=10).contains(&buttons.len()) {
                    return Err(bad("BUTTONS holds 1 to 10 buttons"));
                }
                for button in buttons.iter_mut() {
                    let Some(kind) = button
                        .get("type")
                        .and_then(Value::as_str)
                        .map(str::to_ascii_uppercase)
                    else {
                        return Err(bad("every button needs a type"));
                    };
                    button["type"] = json!(kind);
                }
            }
            _ => {}
        }
        component["type"] = json!(kind);
        seen.push(kind);
        out.push(component);
    }
    if !seen.iter().any(|k| k == "BODY") {
        return Err(GraphError::invalid_parameter(
            "components must include a BODY component",
        ));
    }
    Ok(Value::Array(out))
}

/// `DELETE /{waba}/message_templates?name=…` (every language) or `?hsm_id=…` (one template).
pub fn delete(shared: &Arc<Shared>, waba: &str, call: &GraphCall) -> GraphResult {
    let name = call.param_str("name");
    let hsm_id = call.param_str("hsm_id");
    if name.is_none() && hsm_id.is_none() {
        return Err(GraphError::param_message(
            "(#100) The parameter name is required.",
        ));
    }
    let mut world = shared.world();
    let doomed: Vec<String> = world
        .templates
        .values()
        .filter(|t| t.waba_id == waba)
        .filter(|t| hsm_id.is_none_or(|id| id == t.id))
        .filter(|t| name.is_none_or(|n| n == t.name))
        .map(|t| t.id.clone())
        .collect();
    if doomed.is_empty() {
        return Err(GraphError::invalid_parameter(format!(
            "No message template matches name={} hsm_id={}",
            name.unwrap_or("-"),
            hsm_id.unwrap_or("-")
        )));
    }
    for id in doomed {
        world.templates.remove(&id);
    }
    Ok(json!({ "success": true }))
}

/// `GET /{template_id}`.
pub fn get_one(shared: &Arc<Shared>, id: &str) -> GraphResult {
    let world = shared.world();
    world
        .templates
        .get(id)
        .map(Template::to_json)
        .ok_or_else(|| GraphError::unsupported("get", id))
}

/// `POST /{template_id}`: new `components` and/or `category`; the template goes back to review.
pub fn edit(shared: &Arc<Shared>, id: &str, call: &GraphCall) -> GraphResult {
    let mut world = shared.world();
    let current = world
        .templates
        .get(id)
        .cloned()
        .ok_or_else(|| GraphError::unsupported("post", id))?;
    let category = match call.param_str("category") {
        Some(raw) => parse_category(Some(raw))?,
        None => current.category.clone(),
    };
    let components = match call.params.get("components") {
        Some(raw) => validate_components(Some(raw), &category)?,
        None if call.param_str("category").is_some() => current.components.clone(),
        None => {
            return Err(GraphError::invalid_parameter(
                "Nothing to edit: pass components and/or category",
            ))
        }
    };
    let review = world.knobs.template_review.clone();
    if let Some(template) = world.templates.get_mut(id) {
        template.category = category;
        template.components = components;
        template.status = "PENDING".into();
    }
    drop(world);
    spawn_review(shared.clone(), id.to_owned(), review);
    Ok(json!({ "success": true }))
}

/// Finishes the review after `status_delay` as the `template_review` knob says, and notifies
/// the WABA's webhook target.
fn spawn_review(shared: Arc<Shared>, id: String, review: String) {
    let (status, reason) = match review.as_str() {
        "reject" => ("REJECTED", "INVALID_FORMAT"),
        "pending" => return,
        _ => ("APPROVED", "NONE"),
    };
    tokio::spawn(async move {
        tokio::time::sleep(shared.status_delay).await;
        let reviewed = {
            let mut world = shared.world();
            match world.templates.get_mut(&id) {
                // An edit or delete in the meantime supersedes this review.
                Some(t) if t.status == "PENDING" => {
                    t.status = status.into();
                    Some(t.clone())
                }
                _ => None,
            }
        };
        let Some(template) = reviewed else {
            return;
        };
        let value = json!({
            "event": status,
            "message_template_id": template.id.parse::<u64>().unwrap_or_default(),
            "message_template_name": template.name,
            "message_template_language": template.language,
            "reason": reason,
        });
        let body = timed_envelope(
            &template.waba_id,
            vec![change("message_template_status_update", value)],
        );
        shared.deliver(Some(&template.waba_id), &body).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        assert_eq!(decode_cursor(&encode_cursor(42)).ok(), Some(42));
        assert!(decode_cursor("garbage!").is_err());
    }

    #[test]
    fn languages() {
        assert!(valid_language("en"));
        assert!(valid_language("en_US"));
        assert!(valid_language("fil"));
        assert!(!valid_language("EN"));
        assert!(!valid_language("en-US"));
    }

    #[test]
    fn components_need_one_body() {
        let ok = json!([{"type": "body", "text": "Hi {{1}}"}, {"type": "BUTTONS", "buttons": [{"type": "quick_reply", "text": "Yes"}]}]);
        let out = validate_components(Some(&ok), "UTILITY").expect("valid");
        assert_eq!(out[0]["type"], "BODY");
        assert_eq!(out[1]["buttons"][0]["type"], "QUICK_REPLY");
        let none = json!([{"type": "FOOTER", "text": "x"}]);
        assert!(validate_components(Some(&none), "UTILITY").is_err());
        let twice = json!([{"type": "BODY", "text": "a"}, {"type": "BODY", "text": "b"}]);
        assert!(validate_components(Some(&twice), "UTILITY").is_err());
    }
}
