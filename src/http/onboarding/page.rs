//! The hosted onboarding page's HTML: the shell filled with the link's theme and language, the
//! signup page with its script configuration, the message pages (completed, failed, expired,
//! not found, unavailable) and the redirects with Kapso's parameters.

use std::fmt::Write as _;

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::i18n::{self, Strings};
use super::link::language;
use crate::domain::onboarding::FailureCode;
use crate::domain::setup_links::THEME_DEFAULTS;
use crate::http::state::AppState;
use crate::store::SetupLinkRow;
pub(super) use crate::types::escape_html as esc;
use crate::types::{HexColour, MetaId};

const SHELL: &str = include_str!("page.html");
const CSS: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");
/// Facebook's JS SDK, the one external asset (real mode only).
const FACEBOOK_SDK_URL: &str = "https://connect.facebook.net/en_US/sdk.js";
/// Seconds an expired, revoked or used link's explanation shows before the failure redirect.
const REDIRECT_DELAY_SECS: u32 = 3;

// ---- rendering -----------------------------------------------------------------------------

/// JSON safe inside a `<script>` element.
fn script_json(value: &Value) -> String {
    value
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// Fills `{{key}}` placeholders in one pass (a value is never scanned for placeholders).
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let key = &after[..end];
                match values.iter().find(|(k, _)| *k == key) {
                    Some((_, value)) => out.push_str(value),
                    None => out.push_str(&rest[start..start + 4 + end]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// `--primary: #3b82f6;` … for every theme key, from the link's colors over the defaults.
fn theme_css(theme_config: Option<&str>) -> String {
    let theme: Map<String, Value> = theme_config
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    let mut css = String::new();
    for (key, default) in THEME_DEFAULTS {
        let color = theme
            .get(key)
            .and_then(Value::as_str)
            .filter(|c| HexColour::is_valid(c))
            .unwrap_or(default);
        let name = key.trim_end_matches("_color").replace('_', "-");
        let _ = writeln!(css, "  --{name}: {};", color.to_ascii_lowercase());
    }
    css
}

pub(super) struct Page<'a> {
    status: StatusCode,
    lang: &'a str,
    theme: Option<&'a str>,
    title: &'a str,
    state: &'a str,
    pub(super) body: String,
    /// Meta refresh target (shown after [`REDIRECT_DELAY_SECS`]).
    refresh: Option<&'a str>,
    /// The page's configuration for `page.js`; `None` renders no script at all.
    script: Option<Value>,
    facebook: bool,
}

impl Page<'_> {
    pub(super) fn render(self) -> Response {
        let nonce = crate::crypto::random_token(18);
        let refresh = self
            .refresh
            .map(|url| {
                format!(
                    "<meta http-equiv=\"refresh\" content=\"{REDIRECT_DELAY_SECS};url={}\">\n",
                    esc(url)
                )
            })
            .unwrap_or_default();
        let scripts = self
            .script
            .as_ref()
            .map(|config| {
                format!(
                    "<script type=\"application/json\" id=\"setup-config\" nonce=\"{nonce}\">{}</script>\n<script nonce=\"{nonce}\">\n{SCRIPT}</script>\n",
                    script_json(config)
                )
            })
            .unwrap_or_default();
        let html = fill(
            SHELL,
            &[
                ("lang", self.lang),
                (
                    "dir",
                    if i18n::is_rtl(self.lang) {
                        "rtl"
                    } else {
                        "ltr"
                    },
                ),
                ("refresh", &refresh),
                ("title", &esc(self.title)),
                ("nonce", &nonce),
                ("theme", &theme_css(self.theme)),
                ("css", CSS),
                ("state", self.state),
                ("body", &self.body),
                ("scripts", &scripts),
            ],
        );
        // Facebook's SDK opens its dialogs from facebook.com and loads from connect.facebook.net;
        // nothing else runs. No form-action: the completion answers with a cross-origin redirect.
        let csp = if self.facebook {
            format!(
                "default-src 'none'; script-src 'nonce-{nonce}' https://connect.facebook.net; \
                 style-src 'unsafe-inline'; img-src 'self' data: https://*.facebook.com https://*.fbcdn.net; \
                 frame-src https://*.facebook.com; connect-src 'self' https://*.facebook.com; \
                 base-uri 'none'; frame-ancestors 'none'"
            )
        } else {
            format!(
                "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; \
                 img-src 'self' data:; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"
            )
        };
        let mut response = (self.status, html).into_response();
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        if let Ok(csp) = HeaderValue::from_str(&csp) {
            headers.insert(CONTENT_SECURITY_POLICY, csp);
        }
        security_headers(headers);
        response
    }
}

fn security_headers(headers: &mut HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

pub(super) fn see_other(url: &str) -> Response {
    let Ok(location) = HeaderValue::from_str(url) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(LOCATION, location);
    security_headers(headers);
    response
}

/// `base` with `params` appended to its query (its own query and fragment kept).
pub(super) fn with_params(base: &str, params: &[(&str, &str)]) -> Option<String> {
    let mut url = url::Url::parse(base).ok()?;
    {
        let mut query = url.query_pairs_mut();
        for (key, value) in params {
            query.append_pair(key, value);
        }
    }
    Some(url.into())
}

pub(super) fn failure_url(link: &SetupLinkRow, code: FailureCode) -> Option<String> {
    let base = link.failure_redirect_url.as_deref()?;
    with_params(
        base,
        &[
            ("setup_link_id", &link.id.to_string()),
            ("error_code", code.as_str()),
        ],
    )
}

pub(super) fn message_page<'a>(
    status: StatusCode,
    lang: &'a str,
    theme: Option<&'a str>,
    state: &'a str,
    title: &'a str,
    text: &str,
) -> Page<'a> {
    Page {
        status,
        lang,
        theme,
        title,
        state,
        body: format!(
            "<h1 id=\"title\">{}</h1>\n<p id=\"message\">{}</p>\n",
            esc(title),
            esc(text)
        ),
        refresh: None,
        script: None,
        facebook: false,
    }
}

pub(super) fn not_found_page(headers: &HeaderMap) -> Response {
    let lang = language(None, headers);
    let t = i18n::strings(lang);
    message_page(
        StatusCode::NOT_FOUND,
        lang,
        None,
        "not_found",
        t.not_found_title,
        t.not_found_body,
    )
    .render()
}

pub(super) fn unavailable_page(lang: &str, theme: Option<&str>) -> Response {
    let t = i18n::strings(lang);
    message_page(
        StatusCode::SERVICE_UNAVAILABLE,
        lang,
        theme,
        "unavailable",
        t.unavailable_title,
        t.unavailable_body,
    )
    .render()
}

/// An expired, revoked or used link: the explanation, then (with a failure URL) the redirect.
pub(super) fn inactive_page(link: &SetupLinkRow, lang: &str, code: FailureCode) -> Response {
    let t = i18n::strings(lang);
    let status = link.status_at(crate::store::now()).to_owned();
    let title = match status.as_str() {
        "used" => t.used_title,
        "revoked" => t.revoked_title,
        _ => t.expired_title,
    };
    let target = failure_url(link, code);
    let mut page = message_page(
        StatusCode::GONE,
        lang,
        Some(&link.theme_config),
        &status,
        title,
        t.failure(code),
    );
    if let Some(url) = &target {
        let _ = write!(
            page.body,
            "<p class=\"muted\">{}</p>\n<a class=\"button\" id=\"continue\" href=\"{}\">{}</a>\n",
            esc(t.redirecting),
            esc(url),
            esc(t.continue_label)
        );
        page.refresh = Some(url);
    }
    let _ = writeln!(
        page.body,
        "<p class=\"code\">{}: <code id=\"error-code\">{}</code></p>",
        esc(t.error_code_label),
        code.as_str()
    );
    page.render()
}

fn option(t: &Strings, kind: &str, only: bool) -> String {
    let (title, desc) = if kind == "coexistence" {
        (t.coexistence_title, t.coexistence_desc)
    } else {
        (t.dedicated_title, t.dedicated_desc)
    };
    format!(
        "<label class=\"option\" data-type=\"{kind}\"><input type=\"radio\" name=\"connection_type\" value=\"{kind}\"{}>\
         <span class=\"option-text\"><strong>{}</strong><span class=\"option-desc\">{}</span></span></label>\n",
        if only { " checked" } else { "" },
        esc(title),
        esc(desc)
    )
}

fn digits_param(query: &[(String, String)], key: &str) -> String {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| v.is_empty() || MetaId::is_valid(v))
        .unwrap_or("")
        .to_owned()
}

/// The page of an active link.
pub(super) fn signup_page(
    state: &AppState,
    link: &SetupLinkRow,
    token: &str,
    lang: &str,
    query: &[(String, String)],
) -> Response {
    let t = i18n::strings(lang);
    let simulated = state.config.onboarding.simulated_signup;
    let meta = &state.config.meta;
    let types = link.connection_types();
    let mut body = format!(
        "<h1 id=\"title\">{}</h1>\n<p class=\"intro\">{}</p>\n",
        esc(t.title),
        esc(t.intro)
    );
    let _ = write!(
        body,
        "<form id=\"complete-form\" method=\"post\" action=\"{}/complete\">\n\
         <fieldset id=\"connection-types\"><legend>{}</legend>\n",
        esc(token),
        esc(t.choose_type)
    );
    for kind in ["dedicated", "coexistence"] {
        if types.contains(&kind) {
            body.push_str(&option(t, kind, types.len() == 1));
        }
    }
    body.push_str(
        "</fieldset>\n<input type=\"hidden\" name=\"code\" value=\"\">\
         <input type=\"hidden\" name=\"waba_id\" value=\"\">\
         <input type=\"hidden\" name=\"phone_number_id\" value=\"\">\n</form>\n",
    );
    let _ = writeln!(
        body,
        "<div class=\"warning\" id=\"display-name-warning\" role=\"note\"><strong>{}</strong><span>{}</span></div>",
        esc(t.warning_title),
        esc(t.warning)
    );
    let provision = super::provision::offers_number(link);
    if provision {
        body.push_str(&super::provision::section(lang, simulated));
    }
    if simulated {
        let _ = write!(
            body,
            "<section class=\"simulated\" id=\"simulated-signup\" aria-labelledby=\"simulated-title\">\n\
             <h2 id=\"simulated-title\">{}</h2>\n<p class=\"muted\">{}</p>\n\
             <label for=\"sim-phone-number-id\">{}</label><input id=\"sim-phone-number-id\" dir=\"ltr\" inputmode=\"numeric\" autocomplete=\"off\" value=\"{}\">\n\
             <label for=\"sim-waba-id\">{}</label><input id=\"sim-waba-id\" dir=\"ltr\" inputmode=\"numeric\" autocomplete=\"off\" value=\"{}\">\n\
             <button type=\"button\" class=\"primary\" id=\"simulated-connect\">{}</button>\n</section>\n",
            esc(t.simulated_title),
            esc(t.simulated_note),
            esc(t.phone_number_id_label),
            digits_param(query, "phone_number_id"),
            esc(t.waba_id_label),
            digits_param(query, "waba_id"),
            esc(t.simulated_button),
        );
    } else {
        if meta.app_id.is_empty() || meta.embedded_signup_config_id.is_empty() {
            tracing::warn!(setup_link_id = %link.id,
                "setup page: set meta.app_id and meta.embedded_signup_config_id for Embedded Signup");
        }
        let _ = writeln!(
            body,
            "<button type=\"button\" class=\"primary\" id=\"connect\">{}</button>",
            esc(t.connect_button)
        );
    }
    let _ = write!(
        body,
        "<p class=\"error\" id=\"error\" role=\"alert\" hidden></p>\n\
         <p class=\"status\" id=\"status\" role=\"status\" hidden>{}</p>\n",
        esc(t.working)
    );
    let config = json!({
        "mode": if simulated { "simulated" } else { "facebook" },
        "appId": meta.app_id,
        "configId": meta.embedded_signup_config_id,
        "version": state.config.onboarding.graph_version,
        "sdkUrl": if simulated { "" } else { FACEBOOK_SDK_URL },
        "allowed": types,
        "provision": provision,
        "provisionStrings": super::provision::script_strings(lang),
        "strings": {
            "choose_type_first": t.choose_type_first,
            "missing_ids": t.missing_ids,
            "cancelled": t.cancelled,
            "no_number": t.no_number,
            "sdk_missing": t.sdk_missing,
            "not_configured": t.not_configured,
            "facebook_auth_failed": t.facebook_auth_failed,
        },
    });
    Page {
        status: StatusCode::OK,
        lang,
        theme: Some(&link.theme_config),
        title: t.title,
        state: "active",
        body,
        refresh: None,
        script: Some(config),
        facebook: !simulated,
    }
    .render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_in_one_pass() {
        assert_eq!(
            fill("a{{x}}b{{y}}c{{z}}", &[("x", "{{y}}"), ("y", "2")]),
            "a{{y}}b2c{{z}}"
        );
        assert_eq!(fill("open {{ end", &[]), "open {{ end");
    }

    #[test]
    fn redirect_params_are_encoded_and_keep_the_query() {
        let url = with_params(
            "https://app.example.com/done?tab=wa#top",
            &[
                ("display_phone_number", "+15551234567"),
                ("status", "completed"),
            ],
        )
        .unwrap();
        assert_eq!(
            url,
            "https://app.example.com/done?tab=wa&display_phone_number=%2B15551234567&status=completed#top"
        );
    }

    #[test]
    fn theme_falls_back_per_color() {
        let css = theme_css(Some(
            r##"{"primary_color":"#FF0000","text_color":"red;}"}"##,
        ));
        assert!(css.contains("--primary: #ff0000;"), "{css}");
        assert!(css.contains("--text: #0f172a;"), "{css}");
        assert!(css.contains("--destructive-foreground: #fef2f2;"), "{css}");
    }

    #[test]
    fn html_and_script_escaping() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(
            script_json(&json!("</script>")),
            "\"\\u003c/script\\u003e\""
        );
    }
}
