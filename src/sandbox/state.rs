//! The emulator's world: numbers, WABAs, templates, media, sent messages and knobs, plus the
//! identifier generators. All of it lives behind one mutex in [`super::Shared`]; nothing here is
//! async, so the lock is never held across an await.

use std::collections::{BTreeMap, HashMap, VecDeque};

use base64::Engine as _;
use bytes::Bytes;
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::SandboxNumber;

/// How many accepted messages `GET /_sandbox/sent` remembers; older ones are forgotten.
pub const SENT_CAPACITY: usize = 10_000;

/// Global behaviour switches for status webhooks and sends (`POST /_sandbox/knobs`).
#[derive(Debug, Clone, Serialize)]
pub struct Knobs {
    /// Deliver `read`, then `delivered`, then `sent`.
    pub reorder: bool,
    /// Deliver every status webhook twice.
    pub duplicate: bool,
    /// Statuses never delivered (`"sent"`, `"delivered"`, `"read"`).
    pub drop: Vec<String>,
    /// While set, sends fail with this Meta error code (synchronously or through a `failed`
    /// status webhook, as Meta reports that code).
    pub fail_sends_with: Option<u32>,
    /// What review does to new or edited templates: `approve`, `reject` or `pending`.
    pub template_review: String,
    /// While set, username claims fail with this Meta error code (147002 not eligible, 147003
    /// link a Facebook Page, 147004 link Instagram, …).
    pub fail_usernames_with: Option<u32>,
    /// Meta's send limits (throughput, pair rate, upgrades); off by default.
    pub limits: super::limits::LimitKnobs,
    /// How many more accepted sends lose their answer, and for how long it is held
    /// ([`super::lost_answers`]).
    pub lose_answers: super::lost_answers::LostAnswers,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            reorder: false,
            duplicate: false,
            drop: Vec::new(),
            fail_sends_with: None,
            template_review: "approve".into(),
            fail_usernames_with: None,
            limits: super::limits::LimitKnobs::default(),
            lose_answers: super::lost_answers::LostAnswers::default(),
        }
    }
}

/// A served phone number and what the Graph API stores about it.
#[derive(Debug, Clone)]
pub struct NumberState {
    pub info: SandboxNumber,
    pub registered: bool,
    pub code_requested: bool,
    /// `whatsapp_business_profile` fields.
    pub profile: Map<String, Value>,
    /// `/{pnid}/settings`, deep-merged on POST.
    pub settings: Value,
    pub flows: Vec<Value>,
    /// The username the number holds (as claimed; compared ignoring case), if any.
    pub username: Option<String>,
    /// `reserved` (claimed, not visible until usernames launch), `approved` or `deleted`;
    /// `None` before any claim.
    pub username_status: Option<String>,
    /// Users who granted call permission, with the permission's expiry (Unix seconds).
    pub call_permissions: HashMap<String, i64>,
    /// `throughput.level`: `STANDARD` until a `THROUGHPUT_UPGRADE`.
    pub throughput_level: String,
    /// The portfolio's messaging limit tier, moved by `phone_number_quality_update`.
    pub messaging_limit_tier: String,
    /// Set by an `account_update` `VERIFIED_ACCOUNT`.
    pub is_official_business_account: bool,
}

impl NumberState {
    fn new(info: SandboxNumber, registered: bool) -> Self {
        let mut profile = Map::new();
        for (key, value) in [
            ("about", json!("Hello from the wagate sandbox")),
            ("address", json!("1 Sandbox Way, Menlo Park, CA")),
            (
                "description",
                json!("A local stand-in for the WhatsApp Cloud API"),
            ),
            ("email", json!("sandbox@example.com")),
            ("websites", json!([])),
            ("vertical", json!("OTHER")),
            ("profile_picture_url", json!("")),
        ] {
            profile.insert(key.into(), value);
        }
        Self {
            info,
            registered,
            code_requested: false,
            profile,
            settings: json!({
                "calling": { "status": "DISABLED" },
                "user_identity_change": { "enable_identity_key_check": false },
            }),
            flows: Vec::new(),
            username: None,
            username_status: None,
            call_permissions: HashMap::new(),
            throughput_level: "STANDARD".into(),
            messaging_limit_tier: "TIER_1K".into(),
            is_official_business_account: false,
        }
    }

    /// The display number as Meta writes it in webhook metadata: digits only.
    pub fn display_digits(&self) -> String {
        digits(&self.info.display_phone_number)
    }
}

/// `subscribed_apps` state of a WABA.
#[derive(Debug, Clone)]
pub struct WabaState {
    pub subscribed: bool,
    /// Per-WABA webhook target set through `override_callback_uri`; wins over the global one.
    pub override_callback_uri: Option<String>,
}

/// A sandbox WABA starts subscribed to the sandbox app, as after a finished onboarding.
impl Default for WabaState {
    fn default() -> Self {
        Self {
            subscribed: true,
            override_callback_uri: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Template {
    pub id: String,
    pub waba_id: String,
    pub name: String,
    pub language: String,
    pub category: String,
    pub status: String,
    pub components: Value,
    pub parameter_format: String,
}

impl Template {
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "parameter_format": self.parameter_format,
            "components": self.components,
            "language": self.language,
            "status": self.status,
            "category": self.category,
            "id": self.id,
        })
    }
}

#[derive(Debug, Clone)]
pub struct MediaObject {
    pub id: String,
    pub owner: String,
    pub mime_type: String,
    pub sha256: String,
    pub bytes: Bytes,
}

/// A message the emulator accepted, for `GET /_sandbox/sent` and for status webhooks.
#[derive(Debug, Clone, Serialize)]
pub struct SentMessage {
    pub id: String,
    pub phone_number_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub timestamp: i64,
    /// Pricing category Meta would bill (`service` for free-form, the template's otherwise).
    pub category: String,
    pub conversation_id: String,
    pub request: Value,
    /// Status webhooks delivered so far, in delivery order.
    pub statuses: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CallState {
    pub phone_number_id: String,
    pub to: String,
    pub status: String,
}

/// Everything the Graph routes read and write.
#[derive(Debug, Default)]
pub struct World {
    pub numbers: BTreeMap<String, NumberState>,
    pub wabas: BTreeMap<String, WabaState>,
    pub templates: BTreeMap<String, Template>,
    pub media: HashMap<String, MediaObject>,
    pub sent: VecDeque<SentMessage>,
    pub calls: HashMap<String, CallState>,
    pub knobs: Knobs,
    /// Whether usernames have launched (`POST /_sandbox/usernames/launch`): claims are then
    /// `approved` at once instead of `reserved`.
    pub usernames_launched: bool,
    /// Numbers typed in the simulated Embedded Signup's phone step, waiting for their code
    /// (`super::signup`); a verified one moves to `numbers`.
    pub signups: HashMap<String, super::signup::PendingSignup>,
    /// Recent sends per number and pair, and throughput upgrades under way.
    pub limiter: super::limits::Limiter,
    /// Accepted sends and refusals per number, for benchmarks.
    pub send_log: super::send_log::SendLog,
}

/// What a Graph object ID names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Number(String),
    Waba(String),
    Template(String),
    Media(String),
}

impl World {
    /// Adds (or replaces) a number. A new WABA gets Meta's stock `hello_world` template, as
    /// every real WABA does, so template sends work out of the box.
    pub fn add_number(&mut self, info: SandboxNumber, registered: bool) -> Result<(), String> {
        for (field, value) in [
            ("phone_number_id", &info.phone_number_id),
            ("business_account_id", &info.business_account_id),
        ] {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("{field} must be a non-empty string of digits"));
            }
        }
        if info.access_token.trim().is_empty() {
            return Err("access_token must not be empty".into());
        }
        let waba = info.business_account_id.clone();
        if !self.wabas.contains_key(&waba) {
            self.wabas.insert(waba.clone(), WabaState::default());
            let id = numeric_id(15);
            self.templates.insert(
                id.clone(),
                Template {
                    id,
                    waba_id: waba,
                    name: "hello_world".into(),
                    language: "en_US".into(),
                    category: "UTILITY".into(),
                    status: "APPROVED".into(),
                    parameter_format: "POSITIONAL".into(),
                    components: json!([
                        { "type": "HEADER", "format": "TEXT", "text": "Hello World" },
                        { "type": "BODY", "text": "Welcome and congratulations!! This message demonstrates your ability to send a WhatsApp message notification from the Cloud API, hosted by Meta. Thank you for taking the time to test with us." },
                        { "type": "FOOTER", "text": "WhatsApp Business Platform sample message" }
                    ]),
                },
            );
        }
        let state = NumberState::new(info, registered);
        self.numbers
            .insert(state.info.phone_number_id.clone(), state);
        Ok(())
    }

    pub fn token_known(&self, token: &str) -> bool {
        self.numbers.values().any(|n| n.info.access_token == token)
    }

    /// A token grants every object of every WABA one of its numbers belongs to (Meta tokens
    /// are scoped to business assets, not to a single number).
    pub fn token_grants(&self, token: &str, waba: &str) -> bool {
        self.numbers
            .values()
            .any(|n| n.info.access_token == token && n.info.business_account_id == waba)
    }

    /// The object an ID names and the WABA that owns it.
    pub fn resolve(&self, id: &str) -> Option<(Object, String)> {
        if let Some(number) = self.numbers.get(id) {
            return Some((
                Object::Number(id.into()),
                number.info.business_account_id.clone(),
            ));
        }
        if self.wabas.contains_key(id) {
            return Some((Object::Waba(id.into()), id.into()));
        }
        if let Some(template) = self.templates.get(id) {
            return Some((Object::Template(id.into()), template.waba_id.clone()));
        }
        let media = self.media.get(id)?;
        let waba = self
            .numbers
            .get(&media.owner)?
            .info
            .business_account_id
            .clone();
        Some((Object::Media(id.into()), waba))
    }

    pub fn waba_of(&self, pnid: &str) -> Option<String> {
        self.numbers
            .get(pnid)
            .map(|n| n.info.business_account_id.clone())
    }

    pub fn record_sent(&mut self, message: SentMessage) {
        if self.sent.len() >= SENT_CAPACITY {
            self.sent.pop_front();
        }
        self.sent.push_back(message);
    }

    pub fn sent_mut(&mut self, wamid: &str) -> Option<&mut SentMessage> {
        self.sent.iter_mut().rev().find(|m| m.id == wamid)
    }

    /// The newest message sent to a user (phone digits or BSUID), to quote in injected
    /// replies and reactions.
    pub fn last_sent_to(&self, pnid: &str, user: &str) -> Option<String> {
        self.sent
            .iter()
            .rev()
            .find(|m| {
                m.phone_number_id == pnid
                    && (m.wa_id.as_deref() == Some(user) || m.recipient.as_deref() == Some(user))
            })
            .map(|m| m.id.clone())
    }
}

/// Keeps only ASCII digits (`+1 555-000-0001` → `15550000001`).
pub fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// A random decimal ID of `len` digits without a leading zero, like Graph object IDs.
pub fn numeric_id(len: usize) -> String {
    let mut rng = rand::thread_rng();
    let mut id = String::with_capacity(len);
    id.push(char::from(b'1' + rng.gen_range(0..9u8)));
    for _ in 1..len {
        id.push(char::from(b'0' + rng.gen_range(0..10u8)));
    }
    id
}

/// A message ID shaped like Meta's: `wamid.` + base64 of a small protobuf-like record holding
/// the user's number and 16 random bytes (hex), e.g. `wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBA…`.
pub fn wamid(user: &str) -> String {
    let user = user.as_bytes();
    let mut random = [0u8; 8];
    rand::thread_rng().fill(&mut random);
    let mut raw = Vec::with_capacity(user.len() + 32);
    raw.extend_from_slice(&[0x1c, 0x18, user.len().min(255) as u8]);
    raw.extend_from_slice(&user[..user.len().min(255)]);
    raw.extend_from_slice(&[0x15, 0x02, 0x00, 0x11, 0x18, 0x10]);
    raw.extend_from_slice(hex::encode_upper(random).as_bytes());
    raw.push(0x00);
    format!(
        "wamid.{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// A call ID shaped like Meta's `wacid.…`.
pub fn wacid() -> String {
    let mut random = [0u8; 24];
    rand::thread_rng().fill(&mut random);
    format!(
        "wacid.{}",
        base64::engine::general_purpose::STANDARD.encode(random)
    )
}

/// A fresh business-scoped user ID (`US.` + 20 digits).
pub fn bsuid() -> String {
    format!("US.{}", numeric_id(20))
}

/// `CC.` + up to 128 alphanumerics, or a parent BSUID `CC.ENT.…` (contract.md §10.1).
pub fn is_bsuid(s: &str) -> bool {
    let mut parts = s.split('.');
    let country = parts.next().unwrap_or_default();
    let mut rest = parts.next().unwrap_or_default();
    if rest == "ENT" {
        rest = parts.next().unwrap_or_default();
    }
    country.len() == 2
        && country.bytes().all(|b| b.is_ascii_uppercase())
        && (1..=128).contains(&rest.len())
        && rest.bytes().all(|b| b.is_ascii_alphanumeric())
        && parts.next().is_none()
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wamids_are_unique_and_prefixed() {
        let a = wamid("15551234567");
        let b = wamid("15551234567");
        assert!(a.starts_with("wamid.HBgL"), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn bsuid_shapes() {
        assert!(is_bsuid("US.13491208655302741918"));
        assert!(is_bsuid("US.ENT.11815799212886844830"));
        assert!(is_bsuid(&bsuid()));
        assert!(!is_bsuid("us.123"));
        assert!(!is_bsuid("US."));
        assert!(!is_bsuid("15551234567"));
        assert!(!is_bsuid("US.ENT.1.2"));
    }

    #[test]
    fn numeric_ids_have_no_leading_zero() {
        let id = numeric_id(16);
        assert_eq!(id.len(), 16);
        assert!(!id.starts_with('0'));
    }
}
