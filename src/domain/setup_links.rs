//! Setup links: what a platform sends its customer to connect a WhatsApp number through the
//! hosted onboarding page ([`SetupLinks`]). Validation of every field (contract §11.2), the
//! reconnect rules and the sealed URL token. What happens when the customer completes the page
//! is [`super::onboarding`].

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::field_error::FieldError;
use super::provisioning::NumberProvisioning;
use crate::crypto::{self, SealedField, SecretBox};
use crate::store::{
    Customer, DynStore, Page, SetupLinkFilter, SetupLinkPatch, SetupLinkRow, Store, StoreError,
};

/// How long a link stays usable after it is created.
pub const LIFETIME_DAYS: i64 = 30;
pub const CONNECTION_TYPES: [&str; 2] = ["coexistence", "dedicated"];
pub const LANGUAGES: [&str; 6] = ["en", "es", "pt", "hi", "id", "ar"];

/// The theme keys and Kapso's default colors.
pub const THEME_DEFAULTS: [(&str, &str); 12] = [
    ("primary_color", "#3b82f6"),
    ("primary_foreground_color", "#ffffff"),
    ("background_color", "#ffffff"),
    ("text_color", "#0f172a"),
    ("muted_text_color", "#64748b"),
    ("card_color", "#f8fafc"),
    ("muted_color", "#f1f5f9"),
    ("border_color", "#e2e8f0"),
    ("secondary_color", "#f1f5f9"),
    ("secondary_foreground_color", "#0f172a"),
    ("destructive_color", "#ef4444"),
    ("destructive_foreground_color", "#fef2f2"),
];

/// ISO 3166-1 alpha-2 codes.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI \
    BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY \
    CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN \
    GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH \
    KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO \
    MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL \
    PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV \
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN \
    VU WF WS YE YT ZA ZM ZW";

/// Body of `POST /customers/{id}/setup_links` (`{"setup_link": {…}}`, every field optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateInput {
    pub success_redirect_url: Option<String>,
    pub failure_redirect_url: Option<String>,
    pub allowed_connection_types: Option<Vec<String>>,
    pub theme_config: Option<Map<String, Value>>,
    pub language: Option<String>,
    pub provision_phone_number: Option<bool>,
    pub phone_number_country_isos: Option<Vec<String>>,
    pub phone_number_area_code: Option<String>,
    pub reconnect_phone_number: Option<String>,
    pub meta_billing_mode: Option<String>,
}

/// Body of `PATCH /customers/{id}/setup_links/{link_id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateInput {
    pub status: Option<String>,
    pub expires_at: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupLinkError {
    #[error("validation failed")]
    Invalid(Vec<FieldError>),
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn redirect_url(field: &str, value: &Option<String>, errors: &mut Vec<FieldError>) {
    let Some(raw) = value else { return };
    let ok = url::Url::parse(raw).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
    });
    if !ok {
        errors.push(FieldError::new(
            field,
            "must be an absolute http:// or https:// URL",
        ));
    }
}

/// The full theme: defaults overridden by the caller's valid colors.
fn theme(input: &Option<Map<String, Value>>, errors: &mut Vec<FieldError>) -> Map<String, Value> {
    let mut theme: Map<String, Value> = THEME_DEFAULTS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    for (key, value) in input.iter().flatten() {
        let field = format!("theme_config.{key}");
        if !theme.contains_key(key) {
            errors.push(FieldError::new(
                field,
                format!(
                    "is not a theme color; use {}",
                    THEME_DEFAULTS.map(|(k, _)| k).join(", ")
                ),
            ));
            continue;
        }
        match value.as_str() {
            Some(color) if crate::types::HexColour::is_valid(color) => {
                theme.insert(key.clone(), json!(color.to_ascii_lowercase()));
            }
            _ => errors.push(FieldError::new(field, "must be a #RRGGBB color")),
        }
    }
    theme
}

fn connection_types(input: &Option<Vec<String>>, errors: &mut Vec<FieldError>) -> Vec<String> {
    let Some(types) = input else {
        return CONNECTION_TYPES.map(str::to_owned).to_vec();
    };
    if types.is_empty() {
        errors.push(FieldError::new(
            "allowed_connection_types",
            "must name at least one of coexistence, dedicated",
        ));
    }
    let mut out = Vec::new();
    for t in types {
        if !CONNECTION_TYPES.contains(&t.as_str()) {
            errors.push(FieldError::new(
                "allowed_connection_types",
                format!("'{t}' is not a connection type; use coexistence or dedicated"),
            ));
        } else if !out.contains(t) {
            out.push(t.clone());
        }
    }
    out
}

fn countries(input: &Option<Vec<String>>, errors: &mut Vec<FieldError>) -> Vec<String> {
    let Some(codes) = input else {
        return vec!["US".to_owned()];
    };
    if codes.is_empty() {
        errors.push(FieldError::new(
            "phone_number_country_isos",
            "must name at least one ISO 3166 alpha-2 country code",
        ));
    }
    codes
        .iter()
        .filter_map(|c| {
            let upper = c.trim().to_ascii_uppercase();
            if upper.len() == 2 && COUNTRIES.split_whitespace().any(|k| k == upper) {
                Some(upper)
            } else {
                errors.push(FieldError::new(
                    "phone_number_country_isos",
                    format!("'{c}' is not an ISO 3166 alpha-2 country code (e.g. US, BR)"),
                ));
                None
            }
        })
        .collect()
}

fn digits(value: &str) -> String {
    value.chars().filter(char::is_ascii_digit).collect()
}

/// The customer's production (sandbox mode: sandbox) number a reconnect link is locked to, and its connection type.
async fn reconnect_target(
    store: &dyn Store,
    customer: &Customer,
    number: &str,
    reconnectable_kind: &str,
    errors: &mut Vec<FieldError>,
) -> Result<Option<(String, &'static str)>, StoreError> {
    let wanted = digits(number);
    if !number.trim().starts_with('+') || !(8..=15).contains(&wanted.len()) {
        errors.push(FieldError::new(
            "reconnect_phone_number",
            "must be an E.164 phone number such as +15551234567",
        ));
        return Ok(None);
    }
    let page = store
        .list_phone_numbers(customer.project_id, Some(customer.id), 1, 1000)
        .await?;
    let matches: Vec<_> = page
        .items
        .into_iter()
        .filter(|n| n.kind == reconnectable_kind)
        .filter(|n| n.display_phone_number.as_deref().map(digits).as_deref() == Some(&wanted))
        .collect();
    match matches.as_slice() {
        [number] => Ok(Some((
            number.phone_number_id.clone(),
            if number.is_coexistence {
                "coexistence"
            } else {
                "dedicated"
            },
        ))),
        [] => {
            errors.push(FieldError::new(
                "reconnect_phone_number",
                "must match an existing WhatsApp config for this customer",
            ));
            Ok(None)
        }
        _ => {
            errors.push(FieldError::new(
                "reconnect_phone_number",
                "matches more than one WhatsApp config for this customer; disconnect the duplicate first",
            ));
            Ok(None)
        }
    }
}

/// The setup-link service: creates, lists and changes a customer's links; opens their sealed
/// URL tokens.
#[derive(Clone)]
pub struct SetupLinks {
    store: DynStore,
    secrets: SecretBox,
    /// Whether a `provision_phone_number` link can ever get a number.
    provisioning: NumberProvisioning,
    /// The kind of number a reconnect link may target: Kapso's rule is production numbers only
    /// (sandbox numbers are shared); under `serve --sandbox` every number is the emulator's and
    /// marked `sandbox`, and reconnecting them is what a newcomer tries out.
    reconnectable_kind: &'static str,
}

impl SetupLinks {
    pub fn new(store: DynStore, secrets: SecretBox, provisioning: NumberProvisioning) -> Self {
        Self {
            store,
            secrets,
            provisioning,
            reconnectable_kind: "production",
        }
    }

    /// Marks this service as `serve --sandbox`'s (see [`crate::config::Config::sandbox_mode`]).
    pub fn in_sandbox_mode(mut self, sandbox_mode: bool) -> Self {
        if sandbox_mode {
            self.reconnectable_kind = "sandbox";
        }
        self
    }

    /// Validates and creates a link for `customer`; returns it with its URL token.
    pub async fn create(
        &self,
        customer: &Customer,
        input: CreateInput,
    ) -> Result<(SetupLinkRow, String), SetupLinkError> {
        let context = LinkContext {
            store: &*self.store,
            secrets: &self.secrets,
            provisioning: &self.provisioning,
            reconnectable_kind: self.reconnectable_kind,
        };
        create(context, customer, input).await
    }

    /// Applies a PATCH: `status: "revoked"` and/or a new `expires_at`.
    pub async fn update(
        &self,
        customer_id: Uuid,
        id: Uuid,
        input: UpdateInput,
    ) -> Result<SetupLinkRow, SetupLinkError> {
        update(&*self.store, customer_id, id, input).await
    }

    /// One page of the customer's links, their status as of `now`.
    pub async fn list(
        &self,
        customer_id: Uuid,
        filter: &SetupLinkFilter,
        now: DateTime<Utc>,
        page: u32,
        per_page: u32,
    ) -> Result<Page<SetupLinkRow>, StoreError> {
        self.store
            .list_setup_links(customer_id, filter, now, page, per_page)
            .await
    }

    /// The link's URL token (sealed at rest).
    pub fn token(&self, row: &SetupLinkRow) -> Option<String> {
        self.secrets
            .open(
                SealedField::SetupLinkToken.at(row.id),
                &row.token_key_id,
                &row.token_sealed,
            )
            .ok()
    }
}

/// What creating a link needs from the service.
struct LinkContext<'a> {
    store: &'a dyn Store,
    secrets: &'a SecretBox,
    provisioning: &'a NumberProvisioning,
    reconnectable_kind: &'static str,
}

async fn create(
    context: LinkContext<'_>,
    customer: &Customer,
    input: CreateInput,
) -> Result<(SetupLinkRow, String), SetupLinkError> {
    let LinkContext {
        store,
        secrets,
        provisioning,
        reconnectable_kind,
    } = context;
    let mut errors = Vec::new();
    redirect_url(
        "success_redirect_url",
        &input.success_redirect_url,
        &mut errors,
    );
    redirect_url(
        "failure_redirect_url",
        &input.failure_redirect_url,
        &mut errors,
    );
    let mut types = connection_types(&input.allowed_connection_types, &mut errors);
    let theme = theme(&input.theme_config, &mut errors);
    if let Some(language) = &input.language {
        if !LANGUAGES.contains(&language.as_str()) {
            errors.push(FieldError::new(
                "language",
                format!("must be one of {}", LANGUAGES.join(", ")),
            ));
        }
    }
    let countries = countries(&input.phone_number_country_isos, &mut errors);
    if let Some(code) = &input.phone_number_area_code {
        if code.is_empty() || code.len() > 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            errors.push(FieldError::new(
                "phone_number_area_code",
                "must be 1 to 6 digits",
            ));
        }
    }
    let provision = input.provision_phone_number.unwrap_or(false);
    let mut reconnect_id = None;
    if let Some(number) = &input.reconnect_phone_number {
        if provision {
            errors.push(FieldError::new(
                "provision_phone_number",
                "must be false when reconnect_phone_number is set (a reconnect keeps the existing number)",
            ));
        }
        if let Some((pnid, kind)) =
            reconnect_target(store, customer, number, reconnectable_kind, &mut errors).await?
        {
            match &input.allowed_connection_types {
                Some(asked) if asked.iter().any(|t| t != kind) => errors.push(FieldError::new(
                    "allowed_connection_types",
                    format!("must be [\"{kind}\"]: a reconnect keeps the existing number's connection type"),
                )),
                _ => types = vec![kind.to_owned()],
            }
            reconnect_id = Some(pnid);
        }
    } else if provision {
        if !types.iter().any(|t| t == "dedicated") {
            errors.push(FieldError::new(
                "provision_phone_number",
                "needs \"dedicated\" in allowed_connection_types: a provisioned number is a new dedicated number (coexistence keeps the customer's own WhatsApp Business app number)",
            ));
        } else if !countries.is_empty()
            && !provisioning
                .can_provision(customer.project_id, &countries)
                .await?
        {
            errors.push(FieldError::new(
                "provision_phone_number",
                format!(
                    "the project has no phone number provider and no pool number in {}: register Twilio (PUT /platform/v1/phone_number_providers/twilio) or add numbers (POST /platform/v1/phone_number_pools/{{country_iso}}/numbers)",
                    countries.join(", ")
                ),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(SetupLinkError::Invalid(errors));
    }
    let now = crate::store::now();
    let token = crypto::random_token(24);
    let id = Uuid::now_v7();
    let row = SetupLinkRow {
        id,
        project_id: customer.project_id,
        customer_id: customer.id,
        token_sha256: crypto::sha256_hex(token.as_bytes()),
        token_sealed: secrets.seal(SealedField::SetupLinkToken.at(id), &token),
        token_key_id: secrets.key_id().to_owned(),
        status: "active".into(),
        success_redirect_url: input.success_redirect_url,
        failure_redirect_url: input.failure_redirect_url,
        allowed_connection_types: types.join(","),
        theme_config: Value::Object(theme).to_string(),
        language: input.language,
        provision_phone_number: provision,
        phone_number_country_isos: json!(countries).to_string(),
        phone_number_area_code: input.phone_number_area_code,
        reconnect_phone_number: input.reconnect_phone_number,
        reconnect_phone_number_id: reconnect_id,
        meta_billing_mode: input.meta_billing_mode,
        whatsapp_setup_status: "pending".into(),
        whatsapp_setup_error: None,
        phone_number_id: None,
        business_account_id: None,
        expires_at: now + chrono::Duration::days(LIFETIME_DAYS),
        used_at: None,
        revoked_at: None,
        created_at: now,
        updated_at: now,
    };
    let row = store.create_setup_link(&row).await?;
    Ok((row, token))
}

async fn update(
    store: &dyn Store,
    customer_id: Uuid,
    id: Uuid,
    input: UpdateInput,
) -> Result<SetupLinkRow, SetupLinkError> {
    let mut errors = Vec::new();
    let now = crate::store::now();
    let revoke = match input.status.as_deref() {
        None => false,
        Some("revoked") => true,
        Some(other) => {
            errors.push(FieldError::new(
                "status",
                format!("can only be set to \"revoked\" (not \"{other}\")"),
            ));
            false
        }
    };
    let expires_at = match input.expires_at.as_deref() {
        None => None,
        Some(raw) => match crate::time::parse_time(raw) {
            Some(t) if t > now => Some(t),
            Some(_) => {
                errors.push(FieldError::new("expires_at", "must be in the future"));
                None
            }
            None => {
                errors.push(FieldError::new(
                    "expires_at",
                    "must be an ISO 8601 time such as 2026-01-15T12:00:00Z",
                ));
                None
            }
        },
    };
    let current = store
        .setup_link(customer_id, id)
        .await?
        .ok_or(SetupLinkError::NotFound)?;
    if expires_at.is_some() && current.status_at(now) != "active" {
        errors.push(FieldError::new(
            "expires_at",
            format!("cannot change a {} link", current.status_at(now)),
        ));
    }
    if !errors.is_empty() {
        return Err(SetupLinkError::Invalid(errors));
    }
    Ok(store
        .update_setup_link(customer_id, id, &SetupLinkPatch { revoke, expires_at }, now)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colors_and_countries() {
        assert!(crate::types::HexColour::is_valid("#3b82F6"));
        for bad in ["3b82f6", "#3b82f", "#3b82f6a", "#gggggg", "red"] {
            assert!(!crate::types::HexColour::is_valid(bad), "{bad}");
        }
        let mut errors = Vec::new();
        let ok = countries(&Some(vec!["us".into(), "BR".into()]), &mut errors);
        assert_eq!(ok, ["US", "BR"]);
        assert!(errors.is_empty());
        countries(&Some(vec!["XX".into(), "USA".into()]), &mut errors);
        assert_eq!(errors.len(), 2);
    }

    #[test]
    fn theme_merges_over_defaults_and_names_bad_keys() {
        let mut errors = Vec::new();
        let input = serde_json::from_value(
            json!({"primary_color": "#FF0000", "nope": "#000000", "text_color": "blue"}),
        )
        .unwrap();
        let theme = theme(&Some(input), &mut errors);
        assert_eq!(theme["primary_color"], "#ff0000");
        assert_eq!(theme["background_color"], "#ffffff");
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["theme_config.nope", "theme_config.text_color"]);
    }
}
