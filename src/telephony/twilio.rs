//! Twilio's REST API (`https://api.twilio.com/2010-04-01`), the calls provisioning needs:
//! `Accounts/{sid}.json` (credential check), `AvailablePhoneNumbers/{cc}/Local.json` (search with
//! `SmsEnabled=true` and `AreaCode`), `IncomingPhoneNumbers.json` (buy, with `SmsUrl`/`VoiceUrl`),
//! `IncomingPhoneNumbers/{sid}.json` (update, release). HTTP basic auth with the account SID
//! and auth token; errors come as `{"code", "message", "more_info", "status"}`.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{AvailableNumber, InboundUrls, NumberProvider, OwnedNumber, ProviderError};

/// A project's Twilio account.
#[derive(Debug, Clone)]
pub struct TwilioCredentials {
    pub account_sid: String,
    pub auth_token: SecretString,
}

/// Twilio's client for one account.
#[derive(Debug, Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    /// `https://api.twilio.com` (or the sandbox's double), without a trailing slash.
    base_url: String,
    credentials: TwilioCredentials,
}

#[derive(Deserialize)]
struct TwilioErrorBody {
    code: Option<i64>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct AvailableList {
    #[serde(default)]
    available_phone_numbers: Vec<AvailableEntry>,
}

#[derive(Deserialize)]
struct AvailableEntry {
    phone_number: String,
    iso_country: Option<String>,
}

#[derive(Deserialize)]
struct IncomingNumber {
    sid: String,
    phone_number: String,
}

impl TwilioClient {
    /// One shared `reqwest` client per process is enough: this wraps it with an account.
    pub fn new(http: reqwest::Client, base_url: &str, credentials: TwilioCredentials) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            credentials,
        }
    }

    /// The `reqwest` client provisioning shares: no redirects, bounded by `timeout`.
    pub fn http_client(timeout: Duration) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(crate::graph::USER_AGENT)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new())
    }

    fn account_url(&self, rest: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}{rest}",
            self.base_url, self.credentials.account_sid
        )
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ProviderError> {
        let response = request
            .basic_auth(
                &self.credentials.account_sid,
                Some(self.credentials.auth_token.expose_secret()),
            )
            .send()
            .await
            .map_err(|e| ProviderError::Unreachable(e.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body: TwilioErrorBody = response.json().await.unwrap_or(TwilioErrorBody {
            code: None,
            message: None,
        });
        let code = body.code.unwrap_or_default();
        let message = body
            .message
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
        if status == reqwest::StatusCode::UNAUTHORIZED || code == 20003 {
            return Err(ProviderError::Unauthorized(message));
        }
        Err(ProviderError::Refused {
            status: status.as_u16(),
            code,
            message,
        })
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ProviderError> {
        self.send(request).await?.json().await.map_err(|e| {
            ProviderError::Unreachable(format!("unreadable answer: {}", e.without_url()))
        })
    }
}

fn url_form(urls: &InboundUrls) -> [(&'static str, &str); 4] {
    [
        ("SmsUrl", urls.sms_url.as_str()),
        ("SmsMethod", "POST"),
        ("VoiceUrl", urls.voice_url.as_str()),
        ("VoiceMethod", "POST"),
    ]
}

#[async_trait]
impl NumberProvider for TwilioClient {
    async fn check(&self) -> Result<(), ProviderError> {
        self.send(self.http.get(self.account_url(".json")))
            .await
            .map(drop)
    }

    async fn search(
        &self,
        country_iso: &str,
        area_code: Option<&str>,
    ) -> Result<Vec<AvailableNumber>, ProviderError> {
        let mut query = vec![("SmsEnabled", "true"), ("PageSize", "5")];
        if let Some(code) = area_code {
            query.push(("AreaCode", code));
        }
        let url = self.account_url(&format!("/AvailablePhoneNumbers/{country_iso}/Local.json"));
        let list: AvailableList = match self.json(self.http.get(url).query(&query)).await {
            // Twilio answers 404 for a country it has no numbers in.
            Err(ProviderError::Refused { status: 404, .. }) => return Ok(Vec::new()),
            other => other?,
        };
        Ok(list
            .available_phone_numbers
            .into_iter()
            .map(|n| AvailableNumber {
                phone_number: n.phone_number,
                country_iso: n.iso_country.unwrap_or_else(|| country_iso.to_owned()),
            })
            .collect())
    }

    async fn buy(
        &self,
        phone_number: &str,
        urls: &InboundUrls,
    ) -> Result<OwnedNumber, ProviderError> {
        let mut form = vec![("PhoneNumber", phone_number)];
        form.extend(url_form(urls));
        let bought: IncomingNumber = self
            .json(
                self.http
                    .post(self.account_url("/IncomingPhoneNumbers.json"))
                    .form(&form),
            )
            .await?;
        Ok(OwnedNumber {
            provider_ref: bought.sid,
            phone_number: bought.phone_number,
        })
    }

    async fn configure(&self, provider_ref: &str, urls: &InboundUrls) -> Result<(), ProviderError> {
        let url = self.account_url(&format!("/IncomingPhoneNumbers/{provider_ref}.json"));
        self.send(self.http.post(url).form(&url_form(urls)))
            .await
            .map(drop)
    }

    async fn release(&self, provider_ref: &str) -> Result<(), ProviderError> {
        let url = self.account_url(&format!("/IncomingPhoneNumbers/{provider_ref}.json"));
        self.send(self.http.delete(url)).await.map(drop)
    }
}
