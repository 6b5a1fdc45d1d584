//! Property tests over the parsers that read untrusted input: Meta's webhook envelopes, the
//! webhook signature header, paging cursors, the `fields=kapso(…)` grammar and API keys. They
//! run in CI with a fixed case budget (`PROPTEST_CASES` raises it for longer runs) and assert
//! that no input panics and that valid input round-trips. cargo-fuzz needs a nightly toolchain,
//! which a fresh CI machine does not have; these use the same idea on stable.

use proptest::prelude::*;
use serde_json::Value;

/// Arbitrary JSON, biased towards Meta's envelope shape so the parser's deeper paths run.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-z0-9_.:+ -]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("entry"),
            Just("changes"),
            Just("value"),
            Just("field"),
            Just("metadata"),
            Just("phone_number_id"),
            Just("messages"),
            Just("statuses"),
            Just("id"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        let key = prop_oneof![
            Just("entry".to_owned()),
            Just("changes".to_owned()),
            Just("value".to_owned()),
            Just("field".to_owned()),
            Just("metadata".to_owned()),
            Just("phone_number_id".to_owned()),
            Just("display_phone_number".to_owned()),
            Just("id".to_owned()),
            Just("messages".to_owned()),
            "[a-z_]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn webhook_envelopes_never_panic(envelope in json_value()) {
        if let Some(all) = crate::domain::envelope::changes(&envelope) {
            let every: Vec<usize> = (0..all.len()).collect();
            let restricted = crate::domain::envelope::restricted(&envelope, &all, &every);
            // Restricting to every change loses no change.
            let again = crate::domain::envelope::changes(&restricted).unwrap_or_default();
            prop_assert_eq!(again.len(), all.len());
            let _ = crate::domain::ingest::inbound_wamids(&all);
        }
    }

    #[test]
    fn webhook_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(value) = serde_json::from_slice::<Value>(&body) {
            let _ = crate::domain::envelope::changes(&value);
        }
        let _ = crate::delivery::inbound_wamids(&body);
    }

    #[test]
    fn signature_headers_never_panic_and_only_the_right_one_passes(
        header in ".{0,80}",
        body in prop::collection::vec(any::<u8>(), 0..256),
        flip in 7usize..71,
    ) {
        let secret = b"app-secret";
        let right = crate::crypto::hub_signature(secret, &body);
        prop_assert_eq!(
            crate::crypto::verify_hub_signature(secret, &body, &header),
            header.trim().eq_ignore_ascii_case(&right)
        );
        prop_assert!(crate::crypto::verify_hub_signature(secret, &body, &right.to_ascii_uppercase()));
        prop_assert!(crate::crypto::verify_hub_signature(secret, &body, &right));
        // One hex digit changed anywhere in the MAC: refused.
        let mut forged = right.clone().into_bytes();
        forged[flip] = if forged[flip] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(forged).unwrap();
        prop_assert!(!crate::crypto::verify_hub_signature(secret, &body, &forged));
    }

    #[test]
    fn cursors_never_panic(raw in ".{0,200}", b64 in "[A-Za-z0-9_-]{0,120}") {
        let number = uuid::Uuid::nil();
        for cursor in [raw.as_str(), b64.as_str()] {
            let query = crate::http::graph::stored::paging::Query::parse(Some(&format!("after={}", urlencode(cursor))));
            match crate::http::graph::stored::paging::parse(&query, "m", number) {
                Ok(_) | Err(_) => {}
            }
        }
    }

    #[test]
    fn fields_grammar_never_panics(raw in ".{0,80}", names in prop::collection::vec("[a-z_]{1,12}", 0..6)) {
        let _ = crate::http::graph::stored::fields::parse(Some(&raw));
        let list = format!("kapso({})", names.join(","));
        let parsed = crate::http::graph::stored::fields::parse(Some(&list));
        prop_assert!(parsed.is_ok(), "{} refused", list);
        let parsed = parsed.unwrap();
        for name in &names {
            prop_assert!(parsed.includes(name, false), "{} lost from {}", name, list);
        }
    }

    #[test]
    fn usernames_never_panic_and_accepted_ones_follow_the_rules(raw in ".{0,40}", shaped in "[a-zA-Z0-9._]{1,40}") {
        let _ = crate::domain::usernames::problem(&raw);
        if crate::domain::usernames::problem(&shaped).is_none() {
            let lower = shaped.to_ascii_lowercase();
            prop_assert!((3..=35).contains(&shaped.len()), "{}", shaped);
            prop_assert!(shaped.bytes().any(|b| b.is_ascii_alphabetic()), "{}", shaped);
            prop_assert!(!shaped.starts_with('.') && !shaped.ends_with('.') && !shaped.contains(".."), "{}", shaped);
            prop_assert!(!lower.starts_with("www"), "{}", shaped);
            prop_assert!(![".com", ".org", ".net", ".io", ".ai"].iter().any(|s| lower.ends_with(s)), "{}", shaped);
        }
    }

    /// Without the server's secret no key passes: a made-up checksum, the unkeyed SHA-256 one
    /// anyone can compute, or one keyed by another master key; a key the server mints always
    /// passes. (Legacy-shaped keys are only looked up for a live legacy key's prefix.)
    #[test]
    fn api_keys_pass_only_with_the_servers_secret(
        raw in ".{0,80}",
        body in "[A-Za-z0-9_-]{43}",
        check in "[0-9a-f]{8}",
        master in any::<[u8; 32]>(),
        other in any::<[u8; 32]>(),
    ) {
        use sha2::Digest as _;
        let checksum = crate::crypto::ApiKeyChecksum::new(&master);
        let _ = checksum.verify(&raw);
        let _ = crate::crypto::api_key_legacy_shaped(&raw);
        let prefixed = format!("wag_{raw}");
        prop_assert!(!checksum.verify(&prefixed));
        let body = format!("wag_{body}");
        prop_assume!(check != checksum.check(&body));
        let made_up = format!("{body}{check}");
        prop_assert!(!checksum.verify(&made_up));
        let unkeyed = hex::encode(&sha2::Sha256::digest(body.as_bytes())[..4]);
        let unkeyed = format!("{body}{unkeyed}");
        prop_assert!(!checksum.verify(&unkeyed));
        prop_assume!(master != other);
        let foreign = crate::crypto::ApiKeyChecksum::new(&other).new_key();
        prop_assert!(!checksum.verify(&foreign));
        let minted = checksum.new_key();
        prop_assert!(checksum.verify(&minted));
    }

    #[test]
    fn destinations_never_panic(raw in ".{0,80}", host in "[a-z0-9.:\\[\\]-]{0,40}") {
        let policy = crate::destination_guard::DestinationPolicy {
            allow_http: true,
            allow_private_networks: false,
            ports: crate::destination_guard::AllowedPorts::from_config(&[], true),
        };
        let _ = crate::destination_guard::check_url(&raw, policy);
        let _ = crate::destination_guard::check_url(&format!("http://{host}/hook"), policy);
    }
}

fn urlencode(raw: &str) -> String {
    url::form_urlencoded::byte_serialize(raw.as_bytes()).collect()
}

#[test]
fn a_valid_cursor_round_trips() {
    use crate::http::graph::stored::paging::{envelope, parse, ListContext, PageRequest, Query};
    let number = uuid::Uuid::now_v7();
    let rows: Vec<(chrono::DateTime<chrono::Utc>, uuid::Uuid)> = (0..3)
        .map(|_| (crate::store::now(), uuid::Uuid::now_v7()))
        .collect();
    let query = Query::default();
    let context = ListContext {
        kind: "m",
        number,
        request: PageRequest {
            limit: 2,
            seek: crate::store::Seek::First,
        },
        base_url: "http://x".into(),
        query: &query,
    };
    let page = envelope(rows.clone(), &context, |r| *r, |_| Value::Null);
    let after = page["paging"]["cursors"]["after"].as_str().unwrap();
    let next = parse(&Query::parse(Some(&format!("after={after}"))), "m", number).unwrap();
    assert_eq!(next.seek, crate::store::Seek::After(rows[1].0, rows[1].1));
    assert!(parse(&Query::parse(Some(&format!("after={after}"))), "c", number).is_err());
}
