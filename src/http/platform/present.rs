//! The Platform API's JSON: one typed object per resource (contract §11.2–11.4), the `{"data": …}`
//! envelope and the paged listing. Only this module shapes what the API answers.
//!
//! Every struct declares its keys in alphabetical order: that is the order the API has always
//! answered in (serde_json's map sorts keys), and clients and the SDK suites compare bytes. The
//! test at the bottom holds each struct to it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::domain::webhooks::resource::WebhookView;
use crate::store::{
    ApiKeyRecord, Customer, Page, PhoneNumber, ProviderRow, ProvisionedNumber, SetupLinkRow,
};
use crate::telephony::e164;
use crate::time::iso;

/// `{"data": …}`.
#[derive(Debug, Serialize)]
pub struct Data<T> {
    pub data: T,
}

/// A page of objects and where it stands.
#[derive(Debug, Serialize)]
pub struct Listing<T> {
    pub data: Vec<T>,
    pub meta: PageMeta,
}

#[derive(Debug, Serialize)]
pub struct PageMeta {
    pub page: u32,
    pub per_page: u32,
    pub total_count: i64,
    pub total_pages: i64,
}

impl<T> Listing<T> {
    /// Page `number` of `per_page` items, each presented by `present`.
    pub fn new<'a, R>(
        page: &'a Page<R>,
        number: u32,
        per_page: u32,
        present: impl FnMut(&'a R) -> T,
    ) -> Self {
        let total_pages = (page.total_count + i64::from(per_page) - 1) / i64::from(per_page);
        Self {
            data: page.items.iter().map(present).collect(),
            meta: PageMeta {
                page: number,
                per_page,
                total_count: page.total_count,
                total_pages,
            },
        }
    }
}

/// An API key as listed: never the key itself, only the prefix shown for recognition.
#[derive(Debug, Serialize)]
pub struct ApiKeyObject {
    pub created_at: String,
    pub display_prefix: String,
    pub id: Uuid,
    pub revoked_at: Option<String>,
}

impl ApiKeyObject {
    pub fn new(key: &ApiKeyRecord) -> Self {
        Self {
            created_at: iso(key.created_at),
            display_prefix: key.display_prefix.clone(),
            id: key.id,
            revoked_at: key.revoked_at.map(iso),
        }
    }
}

/// A key just issued: the only answer that ever carries the key itself.
#[derive(Debug, Serialize)]
pub struct IssuedApiKeyObject {
    pub created_at: String,
    pub display_prefix: String,
    pub id: Uuid,
    pub key: String,
    pub revoked_at: Option<String>,
}

impl IssuedApiKeyObject {
    pub fn new(key: &ApiKeyRecord, plaintext: &str) -> Self {
        Self {
            created_at: iso(key.created_at),
            display_prefix: key.display_prefix.clone(),
            id: key.id,
            key: plaintext.to_owned(),
            revoked_at: None,
        }
    }
}

/// The phone-number object (contract §11.4). Secrets are never included, except a webhook
/// secret just generated or set, shown once.
#[derive(Debug, Serialize)]
pub struct PhoneNumberObject<'a> {
    /// From `account_update` (`partner_app_uninstalled|offboarded|deleted|disabled`); `null`
    /// while Meta sends for the number. Sends for a number in a state are refused locally.
    account_state: Option<&'a str>,
    account_state_updated_at: Option<String>,
    /// Templates Meta paused or disabled: `{name, language, status}`; sends with them are
    /// refused locally.
    blocked_templates: Vec<BlockedTemplate>,
    business_account_id: &'a str,
    calls_enabled: bool,
    code_verification_status: Option<&'a str>,
    created_at: String,
    customer_id: Option<Uuid>,
    display_name: Option<&'a str>,
    display_phone_number: Option<&'a str>,
    display_phone_number_normalized: Option<String>,
    id: &'a str,
    inbound_processing_enabled: bool,
    internal_id: Uuid,
    is_coexistence: bool,
    is_official_business_account: bool,
    is_pin_enabled: bool,
    kind: &'a str,
    name: Option<&'a str>,
    name_status: Option<&'a str>,
    /// The number's own send rate (messages per second); `null`: its tier's.
    pacing_rate: Option<i64>,
    /// Sends are held until then (Meta's throughput upgrade, `131057`).
    paused_until: Option<String>,
    phone_number_id: &'a str,
    quality_rating: Option<&'a str>,
    status: Option<&'a str>,
    throughput_tier: Option<&'a str>,
    updated_at: String,
    username: Option<&'a str>,
    username_status: Option<&'a str>,
    verified_name: Option<&'a str>,
    webhook_destination_url: Option<&'a str>,
    /// Only its sealed form is kept, so it is shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_secret: Option<String>,
    webhook_verified_at: Option<String>,
    /// The messaging limit (messages a day to distinct users), from Meta's tier (`TIER_1K` is
    /// 1000); `null` when unlimited or not set yet.
    whatsapp_business_manager_messaging_limit: Option<u64>,
}

/// A template Meta will not send, as the phone-number object lists it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct BlockedTemplate {
    language: String,
    name: String,
    status: String,
}

/// The number's blocked templates from their cached form (`"STATUS:name:language"`).
fn blocked_templates(raw: Option<&str>) -> Vec<BlockedTemplate> {
    let entries: Vec<String> = raw
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_default();
    entries
        .iter()
        .filter_map(|entry| {
            let mut parts = entry.splitn(3, ':');
            let status = parts.next()?.to_owned();
            Some(BlockedTemplate {
                name: parts.next()?.to_owned(),
                language: parts.next()?.to_owned(),
                status,
            })
        })
        .collect()
}

/// Meta's messaging limit tier as the number of messages it allows a day.
pub fn messaging_limit(tier: &str) -> Option<u64> {
    let amount = tier.strip_prefix("TIER_")?;
    let (digits, scale) = match amount.strip_suffix('K') {
        Some(thousands) => (thousands, 1_000),
        None => (amount, 1),
    };
    digits.parse::<u64>().ok().map(|n| n * scale)
}

/// Digits of a display number, as Kapso's `display_phone_number_normalized`.
fn normalized(display: &str) -> String {
    display.chars().filter(char::is_ascii_digit).collect()
}

impl<'a> PhoneNumberObject<'a> {
    pub fn new(n: &'a PhoneNumber) -> Self {
        Self {
            account_state: n.account_state.as_deref(),
            account_state_updated_at: n.account_state_at.map(iso),
            blocked_templates: blocked_templates(n.blocked_templates.as_deref()),
            business_account_id: &n.business_account_id,
            calls_enabled: n.calls_enabled,
            code_verification_status: n.code_verification_status.as_deref(),
            created_at: iso(n.created_at),
            customer_id: n.customer_id,
            display_name: n.name.as_deref().or(n.verified_name.as_deref()),
            display_phone_number: n.display_phone_number.as_deref(),
            display_phone_number_normalized: n.display_phone_number.as_deref().map(normalized),
            id: &n.phone_number_id,
            inbound_processing_enabled: n.inbound_processing_enabled,
            internal_id: n.internal_id,
            is_coexistence: n.is_coexistence,
            is_official_business_account: n.is_official_business_account,
            is_pin_enabled: n.is_pin_enabled,
            kind: &n.kind,
            name: n.name.as_deref(),
            name_status: n.name_status.as_deref(),
            pacing_rate: n.pacing_rate,
            paused_until: n
                .paused_until
                .filter(|until| *until > crate::store::now())
                .map(iso),
            phone_number_id: &n.phone_number_id,
            quality_rating: n.quality_rating.as_deref(),
            status: n.status.as_deref(),
            throughput_tier: n.throughput_tier.as_deref(),
            updated_at: iso(n.updated_at),
            username: n.username.as_deref(),
            username_status: n.username_status.as_deref(),
            verified_name: n.verified_name.as_deref(),
            webhook_destination_url: n.webhook_destination_url.as_deref(),
            webhook_secret: None,
            webhook_verified_at: n.webhook_verified_at.map(iso),
            whatsapp_business_manager_messaging_limit: n
                .messaging_limit
                .as_deref()
                .and_then(messaging_limit),
        }
    }

    /// With the webhook secret a write just generated (or was given), if any.
    pub fn with_webhook_secret(mut self, secret: Option<String>) -> Self {
        self.webhook_secret = secret;
        self
    }
}

/// The customer object.
#[derive(Debug, Serialize)]
pub struct CustomerObject<'a> {
    created_at: String,
    external_customer_id: Option<&'a str>,
    id: Uuid,
    name: &'a str,
    updated_at: String,
}

impl<'a> CustomerObject<'a> {
    pub fn new(c: &'a Customer) -> Self {
        Self {
            created_at: iso(c.created_at),
            external_customer_id: c.external_customer_id.as_deref(),
            id: c.id,
            name: &c.name,
            updated_at: iso(c.updated_at),
        }
    }
}

/// The setup-link object (contract §11.2), its status as of `now`.
#[derive(Debug, Serialize)]
pub struct SetupLinkObject<'a> {
    allowed_connection_types: Vec<&'a str>,
    business_account_id: Option<&'a str>,
    created_at: String,
    customer_id: Uuid,
    expires_at: String,
    failure_redirect_url: Option<&'a str>,
    id: Uuid,
    language: Option<&'a str>,
    meta_billing_mode: Option<&'a str>,
    phone_number_area_code: Option<&'a str>,
    phone_number_country_isos: Value,
    phone_number_id: Option<&'a str>,
    provision_phone_number: bool,
    /// The number the link holds (reserved, or in use after completion); `null` before the page
    /// reserved one and after it went back to the pool.
    provisioned_phone_number: Option<ProvisionedPhoneNumberObject<'a>>,
    reconnect_phone_number: Option<&'a str>,
    revoked_at: Option<String>,
    status: &'a str,
    success_redirect_url: Option<&'a str>,
    theme_config: Value,
    updated_at: String,
    url: Option<String>,
    used_at: Option<String>,
    whatsapp_setup_error: Option<&'a str>,
    whatsapp_setup_status: &'a str,
}

impl<'a> SetupLinkObject<'a> {
    pub fn new(
        row: &'a SetupLinkRow,
        provisioned: Option<&'a ProvisionedNumber>,
        url: Option<String>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            allowed_connection_types: row.connection_types(),
            business_account_id: row.business_account_id.as_deref(),
            created_at: iso(row.created_at),
            customer_id: row.customer_id,
            expires_at: iso(row.expires_at),
            failure_redirect_url: row.failure_redirect_url.as_deref(),
            id: row.id,
            language: row.language.as_deref(),
            meta_billing_mode: row.meta_billing_mode.as_deref(),
            phone_number_area_code: row.phone_number_area_code.as_deref(),
            phone_number_country_isos: serde_json::from_str(&row.phone_number_country_isos)
                .unwrap_or_else(|_| json!([])),
            phone_number_id: row.phone_number_id.as_deref(),
            provision_phone_number: row.provision_phone_number,
            provisioned_phone_number: provisioned.map(ProvisionedPhoneNumberObject::new),
            reconnect_phone_number: row.reconnect_phone_number.as_deref(),
            revoked_at: row.revoked_at.map(iso),
            status: row.status_at(now),
            success_redirect_url: row.success_redirect_url.as_deref(),
            theme_config: serde_json::from_str(&row.theme_config).unwrap_or_else(|_| json!({})),
            updated_at: iso(row.updated_at),
            url,
            used_at: row.used_at.map(iso),
            whatsapp_setup_error: row.whatsapp_setup_error.as_deref(),
            whatsapp_setup_status: &row.whatsapp_setup_status,
        }
    }
}

/// A link's provisioned number (contract §11.2).
#[derive(Debug, Serialize)]
pub struct ProvisionedPhoneNumberObject<'a> {
    area_code: Option<&'a str>,
    country_dial_code: Option<String>,
    country_iso: &'a str,
    display_number: String,
    id: Uuid,
    phone_number: &'a str,
    status: &'a str,
}

impl<'a> ProvisionedPhoneNumberObject<'a> {
    pub fn new(n: &'a ProvisionedNumber) -> Self {
        let parsed = e164::parse(&n.phone_number);
        Self {
            area_code: n.area_code.as_deref(),
            country_dial_code: e164::dial_code(&n.country_iso).map(|c| c.to_string()),
            country_iso: &n.country_iso,
            display_number: parsed.map_or_else(|| n.phone_number.clone(), |p| p.display),
            id: n.id,
            phone_number: &n.phone_number,
            status: &n.state,
        }
    }
}

/// A number in a project's pool (`/platform/v1/phone_number_pools/{country_iso}/numbers`).
#[derive(Debug, Serialize)]
pub struct PoolNumberObject<'a> {
    area_code: Option<&'a str>,
    country_dial_code: Option<String>,
    country_iso: &'a str,
    created_at: String,
    display_number: String,
    id: Uuid,
    origin: &'a str,
    phone_number: &'a str,
    phone_number_id: Option<&'a str>,
    provider: Option<&'a str>,
    provider_reference: Option<&'a str>,
    setup_link_id: Option<Uuid>,
    state: &'a str,
    updated_at: String,
}

impl<'a> PoolNumberObject<'a> {
    pub fn new(n: &'a ProvisionedNumber) -> Self {
        let shown = ProvisionedPhoneNumberObject::new(n);
        Self {
            area_code: shown.area_code,
            country_dial_code: shown.country_dial_code,
            country_iso: &n.country_iso,
            created_at: iso(n.created_at),
            display_number: shown.display_number,
            id: n.id,
            origin: &n.origin,
            phone_number: &n.phone_number,
            phone_number_id: n.phone_number_id.as_deref(),
            provider: n.provider.as_deref(),
            provider_reference: n.provider_ref.as_deref(),
            setup_link_id: n.setup_link_id,
            state: &n.state,
            updated_at: iso(n.updated_at),
        }
    }
}

/// A project's provider account. The auth token is never shown.
#[derive(Debug, Serialize)]
pub struct ProviderObject<'a> {
    account_sid: &'a str,
    created_at: String,
    inbound_sms_url: String,
    inbound_voice_url: String,
    kind: &'a str,
    updated_at: String,
}

impl<'a> ProviderObject<'a> {
    pub fn new(row: &'a ProviderRow, urls: crate::telephony::InboundUrls) -> Self {
        Self {
            account_sid: &row.account_sid,
            created_at: iso(row.created_at),
            inbound_sms_url: urls.sms_url,
            inbound_voice_url: urls.voice_url,
            kind: &row.kind,
            updated_at: iso(row.updated_at),
        }
    }
}

/// The webhook object (contract §9.6). `secret_key` is `null` except in the answer that created
/// or rotated it.
#[derive(Debug, Serialize)]
pub struct WebhookObject<'a> {
    active: bool,
    buffer_enabled: bool,
    buffer_events: Vec<String>,
    buffer_window_seconds: Option<i32>,
    consecutive_failures: i32,
    created_at: String,
    events: Vec<String>,
    headers: serde_json::Map<String, Value>,
    id: Uuid,
    inactivity_minutes: Option<i32>,
    kind: &'a str,
    max_buffer_size: Option<i32>,
    paused_at: Option<String>,
    paused_reason: Option<&'a str>,
    payload_version: &'a str,
    phone_number_id: Option<&'a str>,
    project_id: Uuid,
    secret_key: Option<&'a str>,
    updated_at: String,
    url: &'a str,
}

impl<'a> WebhookObject<'a> {
    pub fn new(w: &'a WebhookView) -> Self {
        let row = &w.row;
        Self {
            active: row.active,
            buffer_enabled: row.buffer_enabled,
            buffer_events: w.buffer_events(),
            buffer_window_seconds: row.buffer_window_seconds,
            consecutive_failures: row.consecutive_failures,
            created_at: iso(row.created_at),
            events: w.events(),
            headers: w.headers(),
            id: row.id,
            inactivity_minutes: w.inactivity_minutes(),
            kind: &row.kind,
            max_buffer_size: row.max_buffer_size,
            paused_at: row.paused_at.map(iso),
            paused_reason: row.paused_reason.as_deref(),
            payload_version: &row.payload_version,
            phone_number_id: w.phone_number_id.as_deref(),
            project_id: row.project_id,
            secret_key: w.secret_key.as_deref(),
            updated_at: iso(row.updated_at),
            url: &row.url,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serialised as declared, and as serde_json's sorted map would: the same bytes.
    fn assert_sorted(object: &impl Serialize) {
        let declared = serde_json::to_string(object).unwrap();
        let sorted = serde_json::to_value(object).unwrap().to_string();
        assert_eq!(declared, sorted);
    }

    #[test]
    fn messaging_limit_tiers_are_numbers() {
        assert_eq!(messaging_limit("TIER_250"), Some(250));
        assert_eq!(messaging_limit("TIER_2K"), Some(2_000));
        assert_eq!(messaging_limit("TIER_100K"), Some(100_000));
        assert_eq!(messaging_limit("TIER_UNLIMITED"), None);
        assert_eq!(messaging_limit("TIER_NOT_SET"), None);
        assert_eq!(
            blocked_templates(Some(r#"["PAUSED:order_update:en_US"]"#)),
            vec![BlockedTemplate {
                language: "en_US".into(),
                name: "order_update".into(),
                status: "PAUSED".into()
            }]
        );
    }

    #[test]
    fn objects_keep_the_api_key_order() {
        let now = crate::store::now();
        let number = PhoneNumber {
            internal_id: Uuid::now_v7(),
            project_id: Uuid::now_v7(),
            customer_id: Some(Uuid::now_v7()),
            phone_number_id: "1".into(),
            business_account_id: "2".into(),
            kind: "production".into(),
            name: None,
            display_phone_number: Some("+1 555-0100".into()),
            verified_name: Some("Acme".into()),
            quality_rating: None,
            code_verification_status: None,
            name_status: None,
            status: None,
            throughput_tier: None,
            messaging_limit: None,
            is_official_business_account: false,
            is_pin_enabled: false,
            is_coexistence: false,
            inbound_processing_enabled: true,
            calls_enabled: false,
            access_token_sealed: vec![],
            access_token_key_id: String::new(),
            access_token_sha256: String::new(),
            webhook_destination_url: None,
            webhook_secret_sealed: None,
            webhook_verify_token_sealed: None,
            secrets_key_id: None,
            webhook_verified_at: Some(now),
            username: None,
            username_status: None,
            account_state: None,
            account_state_at: None,
            pacing_rate: None,
            paused_until: None,
            blocked_templates: None,
            created_at: now,
            updated_at: now,
        };
        let object = PhoneNumberObject::new(&number).with_webhook_secret(Some("s".into()));
        assert_sorted(&Data { data: object });
        assert_eq!(
            serde_json::to_value(PhoneNumberObject::new(&number)).unwrap()["display_name"],
            "Acme"
        );
        let customer = Customer {
            id: Uuid::now_v7(),
            project_id: Uuid::now_v7(),
            name: "Acme".into(),
            external_customer_id: None,
            created_at: now,
            updated_at: now,
        };
        let page = Page {
            items: vec![customer],
            total_count: 21,
        };
        let listing = Listing::new(&page, 1, 20, CustomerObject::new);
        assert_eq!(listing.meta.total_pages, 2);
        assert_sorted(&listing);
        let link = crate::domain::onboarding::sample_link("dedicated");
        let object = SetupLinkObject::new(&link, None, Some("u".into()), now);
        assert_sorted(&object);
        assert!(serde_json::to_value(&object).unwrap()["provisioned_phone_number"].is_null());
        let webhook = WebhookView {
            row: crate::store::WebhookRow {
                events: r#"["whatsapp.phone_number.created"]"#.into(),
                headers: r#"{"X-B":"2","X-A":"1"}"#.into(),
                ..crate::store::WebhookRow::new(
                    Uuid::now_v7(),
                    Uuid::now_v7(),
                    None,
                    "kapso",
                    "https://example.com/hook".into(),
                    now,
                )
            },
            phone_number_id: None,
            secret_key: Some("wh_sec_x".into()),
        };
        let object = serde_json::to_value(WebhookObject::new(&webhook)).unwrap();
        assert_sorted(&Data {
            data: WebhookObject::new(&webhook),
        });
        assert_eq!(object["inactivity_minutes"], 60, "stored null answers 60");
        assert_eq!(object["headers"]["X-A"], "1");
    }
}
