//! The hosted onboarding page behind setup links (design §12, contract §11.2–11.3).
//!
//! `GET /setup/{token}` renders the page in the link's theme and language: the connection-type
//! choice, the "Display name only" warning, and Meta's Embedded Signup (Facebook's JS SDK), or a
//! simulated sign-in when `onboarding.simulated_signup` is on (against the Graph emulator).
//! `POST /setup/{token}/complete` takes what the signup returned and completes it
//! ([`crate::domain::onboarding`]), then answers 303 to the link's success or failure URL with
//! Kapso's parameters, or with a page of its own when the link has no such URL.
//!
//! The token is a secret: it is never logged (spans name the route, not the URI), pages send
//! `Referrer-Policy: no-referrer` so it does not leak to Facebook's script host or to the redirect
//! targets, and nothing is cached.

mod i18n;
mod link;
mod page;
mod provision;
mod provision_i18n;

use std::fmt::Write as _;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use self::link::{language, lookup, Lookup};
use self::page::{
    esc, failure_url, inactive_page, message_page, not_found_page, see_other, signup_page,
    unavailable_page, with_params,
};
use crate::domain::onboarding::{self, CompleteError, CompleteInput};
use crate::http::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/setup/{token}", get(show))
        .route("/setup/{token}/complete", post(complete))
        .merge(provision::router())
}

async fn show(
    State(state): State<AppState>,
    Path(token): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let link = match lookup(&state, &token).await {
        Lookup::Found(link) => link,
        Lookup::Missing => return not_found_page(&headers),
        Lookup::Unavailable => return unavailable_page(language(None, &headers), None),
    };
    let lang = language(Some(&link), &headers);
    if let Some(code) = onboarding::link_problem(&link, crate::store::now()) {
        tracing::info!(setup_link_id = %link.id, error_code = code.as_str(), "setup page: link not usable");
        return inactive_page(&link, lang, code);
    }
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    signup_page(&state, &link, &token, lang, &query)
}

fn parse_input(headers: &HeaderMap, body: &[u8]) -> CompleteInput {
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if json {
        return serde_json::from_slice(body).unwrap_or_default();
    }
    let mut input = CompleteInput::default();
    for (key, value) in url::form_urlencoded::parse(body) {
        let value = value.into_owned();
        match key.as_ref() {
            "code" => input.code = Some(value.into()),
            "waba_id" => input.waba_id = Some(value),
            "phone_number_id" => input.phone_number_id = Some(value),
            "connection_type" => input.connection_type = Some(value),
            _ => {}
        }
    }
    input
}

/// `+15551234567` from a display number such as `+1 555-123-4567`.
fn e164(display: &str) -> String {
    let digits: String = display.chars().filter(char::is_ascii_digit).collect();
    format!("+{digits}")
}

async fn complete(
    State(state): State<AppState>,
    Path(token): Path<String>,
    request: Request,
) -> Response {
    let headers = request.headers().clone();
    let link = match lookup(&state, &token).await {
        Lookup::Found(link) => link,
        Lookup::Missing => return not_found_page(&headers),
        Lookup::Unavailable => return unavailable_page(language(None, &headers), None),
    };
    let lang = language(Some(&link), &headers);
    let limit = state.config.server.json_body_limit;
    // An unreadable body is a signup without its results: it fails as facebook_auth_failed.
    let input = match crate::http::body::read_limited(request, limit).await {
        Ok(body) => parse_input(&headers, &body),
        Err(error) => {
            tracing::warn!(setup_link_id = %link.id, %error, "setup completion: unreadable body");
            CompleteInput::default()
        }
    };
    match state.onboarding.complete(&link, input).await {
        Ok(done) => {
            let number = &done.number;
            tracing::info!(setup_link_id = %link.id, customer_id = %link.customer_id,
                phone_number_id = %number.phone_number_id, connection_type = done.connection_type,
                reconnected = done.reconnected, "setup link completed");
            let display = number.display_phone_number.as_deref().map(e164);
            let link_id = link.id.to_string();
            let mut params = vec![
                ("setup_link_id", link_id.as_str()),
                ("status", "completed"),
                ("phone_number_id", number.phone_number_id.as_str()),
                ("business_account_id", number.business_account_id.as_str()),
            ];
            let provisioned_id = done.provisioned.as_ref().map(|n| n.id.to_string());
            if let Some(id) = &provisioned_id {
                params.push(("provisioned_phone_number_id", id));
            }
            if let Some(display) = &display {
                params.push(("display_phone_number", display));
            }
            if let Some(url) = link
                .success_redirect_url
                .as_deref()
                .and_then(|base| with_params(base, &params))
            {
                return see_other(&url);
            }
            let t = i18n::strings(lang);
            let shown = number
                .display_phone_number
                .clone()
                .unwrap_or_else(|| number.phone_number_id.clone());
            let mut page = message_page(
                StatusCode::OK,
                lang,
                Some(&link.theme_config),
                "completed",
                t.success_title,
                t.success_body,
            );
            page.body = format!(
                "<h1 id=\"title\">{}</h1>\n<p id=\"number\"><strong>{}</strong></p>\n<p id=\"message\">{}</p>\n",
                esc(t.success_title),
                esc(&shown),
                esc(t.success_body)
            );
            page.render()
        }
        Err(CompleteError::Failed(failure)) => {
            tracing::warn!(setup_link_id = %link.id, customer_id = %link.customer_id,
                error_code = failure.code.as_str(), reason = %failure.reason, "setup link signup failed");
            if let Some(url) = failure_url(&link, failure.code) {
                return see_other(&url);
            }
            if failure.code.is_link_state() {
                return inactive_page(&link, lang, failure.code);
            }
            let t = i18n::strings(lang);
            let mut page = message_page(
                StatusCode::BAD_REQUEST,
                lang,
                Some(&link.theme_config),
                "failed",
                t.failure_title,
                t.failure(failure.code),
            );
            let _ = write!(
                page.body,
                "<a class=\"button\" id=\"try-again\" href=\"../{}\">{}</a>\n\
                 <p class=\"code\">{}: <code id=\"error-code\">{}</code></p>\n",
                esc(&token),
                esc(t.try_again),
                esc(t.error_code_label),
                failure.code.as_str()
            );
            page.render()
        }
        Err(CompleteError::Store(error)) => {
            tracing::error!(setup_link_id = %link.id, %error, "setup completion: database unavailable");
            unavailable_page(lang, Some(&link.theme_config))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_numbers_become_e164() {
        assert_eq!(e164("+1 555-123-4567"), "+15551234567");
    }
}
