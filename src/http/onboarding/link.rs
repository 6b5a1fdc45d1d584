//! Finding a setup link by its URL token, and the language its page speaks: shared by the page,
//! its completion and the provisioned-number endpoints.

use axum::http::HeaderMap;

use super::i18n;
use crate::domain::setup_links::LANGUAGES;
use crate::http::state::AppState;
use crate::store::SetupLinkRow;

pub(super) enum Lookup {
    Found(Box<SetupLinkRow>),
    Missing,
    Unavailable,
}

pub(super) async fn lookup(state: &AppState, token: &str) -> Lookup {
    match state.onboarding.link_by_token(token).await {
        Ok(Some(link)) => Lookup::Found(Box::new(link)),
        Ok(None) => Lookup::Missing,
        Err(error) => {
            tracing::error!(%error, "setup page: could not read the setup link");
            Lookup::Unavailable
        }
    }
}

fn accept_language(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
}

/// The link's language, else the browser's best supported one, else English.
pub(super) fn language<'a>(link: Option<&'a SetupLinkRow>, headers: &HeaderMap) -> &'a str {
    link.and_then(|l| l.language.as_deref())
        .filter(|l| LANGUAGES.contains(l))
        .unwrap_or_else(|| i18n::negotiate(accept_language(headers)))
}
