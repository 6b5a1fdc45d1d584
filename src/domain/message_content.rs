//! What a message says, in words (`kapso.content`, conversation previews), and how statuses order.

use serde_json::Value;

/// Media types: their payload carries a Meta media id.
pub const MEDIA_TYPES: [&str; 5] = ["image", "video", "audio", "document", "sticker"];

pub fn is_media(message_type: &str) -> bool {
    MEDIA_TYPES.contains(&message_type)
}

fn s<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = value;
    for key in path {
        v = v.get(key)?;
    }
    v.as_str()
}

/// A stored message's `kapso.content`. It is not stored: it is always the rendering of the
/// stored body (edits rewrite the body), and nothing once revoked. Storing it wrote a text
/// message's words twice per row (issue #24).
pub fn content_of(row: &crate::store::MessageRow) -> String {
    content_of_body(row, &serde_json::from_str(&row.body).unwrap_or_default())
}

/// `content_of` for a caller that has parsed the row's body already.
pub fn content_of_body(row: &crate::store::MessageRow, body: &Value) -> String {
    if row.revoked_at.is_some() {
        return String::new();
    }
    render(body)
}

/// A plain-text rendering of a Meta message object (inbound or the body of a send).
pub fn render(message: &Value) -> String {
    let kind = message
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("text");
    let payload = message.get(kind).unwrap_or(&Value::Null);
    match kind {
        "text" => s(payload, &["body"]).unwrap_or("").to_owned(),
        "image" | "video" | "audio" | "document" | "sticker" => {
            let label = s(payload, &["caption"])
                .or_else(|| s(payload, &["filename"]))
                .unwrap_or("");
            if label.is_empty() {
                format!("[{kind}]")
            } else {
                format!("[{kind}] {label}")
            }
        }
        "location" => {
            let name = s(payload, &["name"]).unwrap_or("");
            let lat = payload
                .get("latitude")
                .map(Value::to_string)
                .unwrap_or_default();
            let long = payload
                .get("longitude")
                .map(Value::to_string)
                .unwrap_or_default();
            format!("[location] {name} ({lat}, {long})").replace("  ", " ")
        }
        "contacts" => {
            let names: Vec<&str> = payload
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter_map(|c| s(c, &["name", "formatted_name"]))
                        .collect()
                })
                .unwrap_or_default();
            format!("[contacts] {}", names.join(", "))
        }
        "interactive" => {
            let sub = s(payload, &["type"]).unwrap_or("");
            s(payload, &[sub, "title"])
                .or_else(|| s(payload, &["body", "text"]))
                .or_else(|| s(payload, &[sub, "body"]))
                .unwrap_or("[interactive]")
                .to_owned()
        }
        "button" => s(payload, &["text"]).unwrap_or("").to_owned(),
        "reaction" => s(payload, &["emoji"]).unwrap_or("").to_owned(),
        "template" => format!("[template] {}", s(payload, &["name"]).unwrap_or("")),
        "order" => s(payload, &["text"])
            .or_else(|| s(payload, &["order_text"]))
            .unwrap_or("[order]")
            .to_owned(),
        "system" => s(payload, &["body"]).unwrap_or("").to_owned(),
        other => format!("[{other}]"),
    }
}

/// Rank of a message status; statuses only move forward (design §6). `played` counts as `read`.
pub fn status_rank(status: &str) -> Option<u8> {
    Some(match status {
        "pending" => 0,
        "sent" => 1,
        // An inbound message the business got (Kapso's `received`) stands where `delivered` does.
        "delivered" | "received" => 2,
        "read" | "played" => 3,
        "failed" => 1,
        _ => return None,
    })
}

/// The stored status after `incoming` arrives on a message now at `current`.
pub fn next_status(current: &str, incoming: &str) -> Option<&'static str> {
    let new = match incoming {
        "sent" => "sent",
        "delivered" => "delivered",
        "read" | "played" => "read",
        "failed" => "failed",
        _ => return None,
    };
    let (from, to) = (status_rank(current)?, status_rank(new)?);
    // A failure only lands on messages not yet delivered; anything else only moves forward.
    let moves = if new == "failed" {
        from <= 1 && current != "failed"
    } else {
        // `failed` is final at Meta: nothing moves a failed message again.
        current != "failed" && to > from
    };
    moves.then_some(new)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn statuses_never_move_backwards() {
        assert_eq!(next_status("pending", "sent"), Some("sent"));
        assert_eq!(next_status("sent", "read"), Some("read"));
        assert_eq!(next_status("read", "delivered"), None);
        assert_eq!(next_status("delivered", "sent"), None);
        assert_eq!(next_status("sent", "failed"), Some("failed"));
        assert_eq!(next_status("delivered", "failed"), None);
        assert_eq!(next_status("failed", "sent"), None);
        assert_eq!(next_status("delivered", "played"), Some("read"));
        assert_eq!(next_status("pending", "weird"), None);
    }

    #[test]
    fn renders_each_type() {
        assert_eq!(render(&json!({"type":"text","text":{"body":"hi"}})), "hi");
        assert_eq!(
            render(&json!({"type":"image","image":{"caption":"cat"}})),
            "[image] cat"
        );
        assert_eq!(
            render(
                &json!({"type":"interactive","interactive":{"type":"button_reply","button_reply":{"id":"1","title":"Yes"}}})
            ),
            "Yes"
        );
        assert_eq!(
            render(&json!({"type":"reaction","reaction":{"emoji":"👍"}})),
            "👍"
        );
        assert_eq!(
            render(&json!({"type":"template","template":{"name":"hello_world"}})),
            "[template] hello_world"
        );
        assert_eq!(
            render(&json!({"type":"order","order":{"text":"asap"}})),
            "asap"
        );
        assert_eq!(render(&json!({"type":"unsupported"})), "[unsupported]");
    }
}
