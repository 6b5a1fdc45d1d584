//! Property tests over the parsers that read untrusted input: Meta's webhook envelopes, the
//! webhook signature header, paging cursors, the `fields=kapso(…)` grammar and API keys. They
//! run in CI with a fixed case budget (`PROPTEST_CASES` raises it for longer runs) and assert
//! that no input panics, that valid input round-trips, and the security property each parser
//! exists for: a cursor never crosses lists, a destination is refused exactly when its address
//! is in the reserved set (written out here independently of the guard), a signature verifies
//! exactly when it is the right one. cargo-fuzz needs a nightly toolchain,
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

    /// A signature verifies exactly when it is HMAC-SHA256 of this body with this secret
    /// (computed here independently), in either case of hex: one flipped bit of the body, the
    /// secret or the MAC is refused.
    #[test]
    fn signatures_verify_iff_right(
        secret in prop::collection::vec(any::<u8>(), 1..64),
        body in prop::collection::vec(any::<u8>(), 0..512),
        bit in any::<usize>(),
    ) {
        use hmac::{Hmac, Mac};
        let mac = |secret: &[u8], body: &[u8]| {
            let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).unwrap();
            mac.update(body);
            mac.finalize().into_bytes().to_vec()
        };
        let right = mac(&secret, &body);
        let header = |mac: &[u8]| format!("sha256={}", hex::encode(mac));
        let verify = |body: &[u8], header: &str| crate::crypto::verify_hub_signature(&secret, body, header);
        prop_assert!(verify(&body, &header(&right)));
        prop_assert!(verify(&body, &header(&right).to_ascii_uppercase()));
        let padded = format!("  {}\n", header(&right));
        prop_assert!(verify(&body, &padded));

        let mut wrong_mac = right.clone();
        wrong_mac[bit % 32] ^= 1 << (bit % 8);
        prop_assert!(!verify(&body, &header(&wrong_mac)));
        if !body.is_empty() {
            let mut flipped = body.clone();
            flipped[bit % body.len()] ^= 1 << (bit % 8);
            prop_assert!(!verify(&flipped, &header(&right)));
        }
        let mut other_secret = secret.clone();
        other_secret[bit % secret.len()] ^= 1 << (bit % 8);
        prop_assert!(!crate::crypto::verify_hub_signature(&other_secret, &body, &header(&right)));
        // One bit of the header's text flipped: it still verifies only if it is the same
        // signature in another case (bit 5 of a letter), never otherwise.
        let text = header(&right);
        let mut bytes = text.clone().into_bytes();
        let at = bit % bytes.len();
        bytes[at] ^= 1 << (bit % 7);
        if let Ok(flipped) = String::from_utf8(bytes) {
            prop_assert_eq!(verify(&body, &flipped), flipped.eq_ignore_ascii_case(&text), "{}", flipped);
        }
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

    /// A cursor minted for one list (kind and number) pages that list, from where it was
    /// minted, and is refused by every other list: it never crosses lists.
    #[test]
    fn cursors_never_cross_lists(
        kind in 0usize..4,
        other_kind in 0usize..4,
        number in any::<u128>(),
        other_number in any::<u128>(),
        same_number in any::<bool>(),
        seconds in 1_000_000_000i64..4_000_000_000,
        micros in 0u32..1_000_000,
        ids in any::<[u128; 3]>(),
    ) {
        const KINDS: [&str; 4] = ["m", "v", "c", "l"];
        let (kind, other_kind) = (KINDS[kind], KINDS[other_kind]);
        let other_number = if same_number { number } else { other_number };
        let (number, other_number) = (uuid::Uuid::from_u128(number), uuid::Uuid::from_u128(other_number));
        let rows: Vec<(chrono::DateTime<chrono::Utc>, uuid::Uuid)> = ids
            .iter()
            .enumerate()
            .map(|(n, id)| {
                let t = chrono::DateTime::from_timestamp(seconds - n as i64, micros * 1000).unwrap();
                (t, uuid::Uuid::from_u128(*id))
            })
            .collect();
        let after = mint_after(kind, number, &rows);
        for param in ["after", "before"] {
            let query = Query::parse(Some(&format!("{param}={after}")));
            let same = crate::http::graph::stored::paging::parse(&query, kind, number);
            let expected = if param == "after" {
                crate::store::Seek::After(rows[1].0, rows[1].1)
            } else {
                crate::store::Seek::Before(rows[1].0, rows[1].1)
            };
            prop_assert_eq!(same.map(|p| p.seek).ok(), Some(expected));
            let crossed = crate::http::graph::stored::paging::parse(&query, other_kind, other_number);
            prop_assert_eq!(
                crossed.is_ok(),
                (other_kind, other_number) == (kind, number),
                "a {} cursor of {} read as {} of {}", kind, number, other_kind, other_number
            );
        }
    }

    #[test]
    fn fields_grammar_never_panics(raw in ".{0,80}", names in prop::collection::vec("[a-z_]{1,12}", 0..6)) {
        let _ = crate::domain::present::fields::parse(Some(&raw));
        let list = format!("kapso({})", names.join(","));
        let parsed = crate::domain::present::fields::parse(Some(&list));
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

    /// An address is refused exactly when it is in the reserved set written out below
    /// (independently of the guard), as a bare address and as a URL in every spelling.
    #[test]
    fn destinations_are_refused_iff_reserved(ip in address()) {
        let reserved = reserved(ip);
        prop_assert_eq!(crate::destination_guard::is_forbidden(ip), reserved, "{}", ip);
        let policy = crate::destination_guard::DestinationPolicy {
            allow_http: true,
            allow_private_networks: false,
            ports: crate::destination_guard::AllowedPorts::from_config(&[], true),
        };
        let mut urls = vec![match ip {
            IpAddr::V4(v4) => format!("http://{v4}/hook"),
            IpAddr::V6(v6) => format!("http://[{v6}]/hook"),
        }];
        if let IpAddr::V4(v4) = ip {
            // The spellings the URL parser normalises: one integer, hex, and v4-mapped IPv6.
            urls.push(format!("http://{}/hook", u32::from(v4)));
            urls.push(format!("http://0x{:x}/hook", u32::from(v4)));
            urls.push(format!("http://[::ffff:{v4}]/hook"));
        }
        for url in urls {
            let checked = crate::destination_guard::check_url(&url, policy);
            prop_assert_eq!(checked.is_err(), reserved, "{}: {:?}", url, checked);
        }
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

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::http::graph::stored::paging::Query;

/// The `after` cursor of the first page (limit 2) of `rows` in list (`kind`, `number`): it
/// points at `rows[1]`.
fn mint_after(
    kind: &'static str,
    number: uuid::Uuid,
    rows: &[(chrono::DateTime<chrono::Utc>, uuid::Uuid)],
) -> String {
    use crate::http::graph::stored::paging::{envelope, ListContext, PageRequest};
    let query = Query::default();
    let context = ListContext {
        kind,
        number,
        request: PageRequest {
            limit: 2,
            seek: crate::store::Seek::First,
        },
        base_url: "http://x".into(),
        query: &query,
    };
    let page = envelope(rows.to_vec(), &context, |r| *r, |_| Value::Null);
    page["paging"]["cursors"]["after"]
        .as_str()
        .expect("a first page of three rows has an after cursor")
        .to_owned()
}

/// IPv4 ranges webhooks must never reach: IANA's special-purpose registry (not globally
/// reachable), multicast and reserved space, and CGNAT (where cloud metadata also lives).
const RESERVED_V4: &[(&str, u8)] = &[
    ("0.0.0.0", 8),
    ("10.0.0.0", 8),
    ("100.64.0.0", 10),
    ("127.0.0.0", 8),
    ("169.254.0.0", 16),
    ("172.16.0.0", 12),
    ("192.0.0.0", 24),
    ("192.0.2.0", 24),
    ("192.168.0.0", 16),
    ("198.18.0.0", 15),
    ("198.51.100.0", 24),
    ("203.0.113.0", 24),
    ("224.0.0.0", 4),
    ("240.0.0.0", 4),
];

/// IPv6 ranges that are off limits in themselves (those embedding an IPv4 address are judged by
/// it, below).
const RESERVED_V6: &[(&str, u8)] = &[
    ("::", 128),
    ("::1", 128),
    ("64:ff9b:1::", 48),
    ("100::", 64),
    ("2001::", 32),
    ("2001:db8::", 32),
    ("fc00::", 7),
    ("fe80::", 10),
    ("fec0::", 10),
    ("ff00::", 8),
];

/// Prefixes whose addresses carry an IPv4 address, and where: mapped, translated (SIIT),
/// compatible, NAT64 (last 32 bits) and 6to4 (bits 16..48).
const EMBEDDING_V6: &[(&str, u8)] = &[
    ("::ffff:0:0", 96),
    ("::ffff:0:0:0", 96),
    ("::", 96),
    ("64:ff9b::", 96),
];

fn in_v4(ip: Ipv4Addr, (net, len): (&str, u8)) -> bool {
    let net: Ipv4Addr = net.parse().unwrap();
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, (net, len): (&str, u8)) -> bool {
    let net: Ipv6Addr = net.parse().unwrap();
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

/// Whether the guard must refuse `ip`, decided from the tables above.
fn reserved(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4 == Ipv4Addr::BROADCAST || RESERVED_V4.iter().any(|range| in_v4(v4, *range))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            if v6.is_unspecified() || v6.is_loopback() {
                return true;
            }
            if EMBEDDING_V6.iter().any(|range| in_v6(v6, *range)) {
                return reserved(IpAddr::V4(Ipv4Addr::from(bits as u32)));
            }
            if in_v6(v6, ("2002::", 16)) {
                return reserved(IpAddr::V4(Ipv4Addr::from((bits >> 80) as u32)));
            }
            RESERVED_V6.iter().any(|range| in_v6(v6, *range))
        }
    }
}

/// Addresses of every kind, most drawn from inside (or at the edges of) the ranges above, so
/// both answers come up often.
fn address() -> impl Strategy<Value = IpAddr> {
    let v4_ranges: Vec<(&str, u8)> = RESERVED_V4
        .iter()
        .copied()
        .chain([
            ("8.8.8.0", 24),
            ("100.128.0.0", 10),
            ("172.32.0.0", 12),
            ("198.20.0.0", 15),
        ])
        .collect();
    let in_range =
        (0..v4_ranges.len(), any::<u32>(), any::<bool>()).prop_map(move |(n, r, edge)| {
            let (net, len) = v4_ranges[n];
            let base = u32::from(net.parse::<Ipv4Addr>().unwrap());
            let size = 1u64 << (32 - u32::from(len));
            // Inside the range, or just past either end of it.
            let offset = if edge {
                [size, u64::MAX][r as usize % 2]
            } else {
                u64::from(r) % size
            };
            Ipv4Addr::from((u64::from(base).wrapping_add(offset)) as u32)
        });
    let v4 = prop_oneof![any::<u32>().prop_map(Ipv4Addr::from), in_range];
    let v6_prefixes: Vec<(&str, u8)> = RESERVED_V6
        .iter()
        .chain(EMBEDDING_V6)
        .copied()
        .chain([("2002::", 16), ("2001:4860::", 32), ("2600::", 12)])
        .collect();
    let v6_in_range = (0..v6_prefixes.len(), any::<u128>()).prop_map(move |(n, r)| {
        let (net, len) = v6_prefixes[n];
        let net = u128::from(net.parse::<Ipv6Addr>().unwrap());
        let host = r.checked_shr(u32::from(len)).unwrap_or(0);
        Ipv6Addr::from(net | host)
    });
    let embedded = (v4.clone(), 0usize..5).prop_map(|(v4, form)| {
        let v4 = u128::from(u32::from(v4));
        let bits = match form {
            0 => 0xffff << 32 | v4,
            1 => 0xffff << 64 | v4,
            2 => v4,
            3 => 0x0064_ff9b << 96 | v4,
            _ => 0x2002 << 112 | v4 << 80,
        };
        Ipv6Addr::from(bits)
    });
    prop_oneof![
        v4.prop_map(IpAddr::V4),
        any::<u128>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        v6_in_range.prop_map(IpAddr::V6),
        embedded.prop_map(IpAddr::V6),
    ]
}

fn urlencode(raw: &str) -> String {
    url::form_urlencoded::byte_serialize(raw.as_bytes()).collect()
}

#[test]
fn a_valid_cursor_round_trips() {
    use crate::http::graph::stored::paging::parse;
    let number = uuid::Uuid::now_v7();
    let rows: Vec<(chrono::DateTime<chrono::Utc>, uuid::Uuid)> = (0..3)
        .map(|_| (crate::store::now(), uuid::Uuid::now_v7()))
        .collect();
    let after = mint_after("m", number, &rows);
    let next = parse(&Query::parse(Some(&format!("after={after}"))), "m", number).unwrap();
    assert_eq!(next.seek, crate::store::Seek::After(rows[1].0, rows[1].1));
    assert!(parse(&Query::parse(Some(&format!("after={after}"))), "c", number).is_err());
}
