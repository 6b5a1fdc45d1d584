//! What the hosted page posts when Meta's signup finished, and the checks it must pass before
//! anything is asked of Meta.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::failure::{Failure, FailureCode};
use crate::store::SetupLinkRow;

/// What the page posts to `/setup/{token}/complete` (a form or JSON).
#[derive(Debug, Default, Deserialize)]
pub struct CompleteInput {
    pub code: Option<SecretString>,
    pub waba_id: Option<String>,
    pub phone_number_id: Option<String>,
    pub connection_type: Option<String>,
}

fn meta_id(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| crate::types::MetaId::is_valid(v))
        .map(str::to_owned)
}

pub(super) struct Checked {
    pub(super) code: SecretString,
    pub(super) waba_id: String,
    /// `None` only for coexistence: Meta's `FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING` documents
    /// just the WABA (its one number is looked up after the code exchange).
    pub(super) phone_number_id: Option<String>,
    pub(super) connection_type: &'static str,
}

pub(super) fn check_input(link: &SetupLinkRow, input: CompleteInput) -> Result<Checked, Failure> {
    use FailureCode::*;
    let allowed = link.connection_types();
    let connection_type = match input.connection_type.as_deref().map(str::trim) {
        None | Some("") if allowed.len() == 1 => allowed[0],
        None | Some("") => {
            return Err(Failure::new(
                FacebookAuthFailed,
                "no connection_type was chosen",
            ))
        }
        Some(t) if allowed.contains(&t) => t,
        Some(t) => {
            return Err(Failure::new(
                FacebookAuthFailed,
                format!(
                    "connection_type {t:?} is not allowed by this link ({})",
                    allowed.join(", ")
                ),
            ))
        }
    };
    let connection_type = if connection_type == "coexistence" {
        "coexistence"
    } else {
        "dedicated"
    };
    let code = input
        .code
        .filter(|c| {
            let c = c.expose_secret().trim();
            !c.is_empty() && c.len() <= 4096 && c.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            Failure::new(
                FacebookAuthFailed,
                "Meta's sign-in returned no authorization code (missing or malformed)",
            )
        })?;
    let waba_id = meta_id(input.waba_id.as_deref()).ok_or_else(|| {
        Failure::new(
            FacebookAuthFailed,
            "no WhatsApp Business Account ID (waba_id, digits only) came back from the signup",
        )
    })?;
    let phone_number_id = meta_id(input.phone_number_id.as_deref());
    if phone_number_id.is_none() && connection_type != "coexistence" {
        return Err(Failure::new(
            PhoneVerificationFailed,
            "no phone number ID (digits only) came back from the signup: the customer must pick or add a phone number, not \"Display name only\"",
        ));
    }
    Ok(Checked {
        code,
        waba_id,
        phone_number_id,
        connection_type,
    })
}

/// An active link allowing `types` (comma-separated), for tests.
#[cfg(test)]
pub(crate) fn sample_link(types: &str) -> SetupLinkRow {
    let now = crate::store::now();
    SetupLinkRow {
        id: uuid::Uuid::now_v7(),
        project_id: uuid::Uuid::now_v7(),
        customer_id: uuid::Uuid::now_v7(),
        token_sha256: String::new(),
        token_sealed: vec![],
        token_key_id: String::new(),
        status: "active".into(),
        success_redirect_url: None,
        failure_redirect_url: None,
        allowed_connection_types: types.into(),
        theme_config: "{}".into(),
        language: None,
        provision_phone_number: false,
        phone_number_country_isos: "[\"US\"]".into(),
        phone_number_area_code: None,
        reconnect_phone_number: None,
        reconnect_phone_number_id: None,
        meta_billing_mode: None,
        whatsapp_setup_status: "pending".into(),
        whatsapp_setup_error: None,
        phone_number_id: None,
        business_account_id: None,
        expires_at: now + chrono::Duration::days(1),
        used_at: None,
        revoked_at: None,
        created_at: now,
        updated_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(code: &str, waba: &str, pnid: &str, kind: Option<&str>) -> CompleteInput {
        CompleteInput {
            code: Some(code.to_owned().into()),
            waba_id: Some(waba.into()),
            phone_number_id: Some(pnid.into()),
            connection_type: kind.map(str::to_owned),
        }
    }

    #[test]
    fn inputs_are_checked() {
        let both = sample_link("coexistence,dedicated");
        let ok = check_input(&both, input("c", "2", "1", Some("coexistence"))).unwrap();
        assert_eq!(ok.connection_type, "coexistence");
        let code = |link: &SetupLinkRow, i| check_input(link, i).err().map(|f| f.code);
        use FailureCode::*;
        assert_eq!(
            code(&both, input("c", "2", "1", None)),
            Some(FacebookAuthFailed)
        );
        assert_eq!(
            code(&both, input("c", "2", "1", Some("shared"))),
            Some(FacebookAuthFailed)
        );
        assert_eq!(
            code(&both, input("", "2", "1", Some("dedicated"))),
            Some(FacebookAuthFailed)
        );
        assert_eq!(
            code(&both, input("c", "2x", "1", Some("dedicated"))),
            Some(FacebookAuthFailed)
        );
        assert_eq!(
            code(&both, input("c", "2", "", Some("dedicated"))),
            Some(PhoneVerificationFailed)
        );
        let one = sample_link("dedicated");
        assert_eq!(
            check_input(&one, input("c", "2", "1", None))
                .unwrap()
                .connection_type,
            "dedicated"
        );
        assert_eq!(
            code(&one, input("c", "2", "1", Some("coexistence"))),
            Some(FacebookAuthFailed)
        );
    }
}
