//! Every call wagate itself makes to Graph, as typed methods: number verification, the
//! Embedded Signup completion (code exchange, app subscription, registration) and media
//! downloads. Each answers what the caller needs or a [`GraphCallError`]; nothing outside this
//! module builds a Graph URL for them or reads Meta's error body.

use std::time::Duration;

use axum::http::HeaderValue;
use secrecy::SecretString;
use serde_json::{json, Value};

use super::{GraphCallError, GraphClient};

/// A phone number as Graph describes it (`GET /{phone_number_id}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhoneNumberNode {
    pub id: Option<String>,
    pub display_phone_number: Option<String>,
    pub verified_name: Option<String>,
    pub quality_rating: Option<String>,
    pub code_verification_status: Option<String>,
    pub name_status: Option<String>,
    /// `throughput.level`: `STANDARD` or `HIGH`.
    pub throughput_level: Option<String>,
    /// The messaging limit tier (`TIER_1K`, …): the portfolio's since October 2025
    /// (`whatsapp_business_manager_messaging_limit`).
    pub messaging_limit_tier: Option<String>,
    pub is_official_business_account: bool,
    pub is_pin_enabled: bool,
}

/// A media object as Graph describes it (`GET /{media_id}`): where its bytes are for the next
/// five minutes, and Meta's checksum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaNode {
    pub url: String,
    pub mime_type: Option<String>,
    pub sha256: Option<String>,
    pub file_size: Option<u64>,
}

/// The fields every version of Graph has served for a number.
const BASE_NUMBER_FIELDS: &str =
    "fields=id,display_phone_number,verified_name,quality_rating,code_verification_status,name_status";
/// Those plus the values Meta added since (the portfolio's messaging limit from October 2025;
/// `messaging_limit_tier` is deprecated, so it is not asked for).
const NUMBER_FIELDS: &str =
    "fields=id,display_phone_number,verified_name,quality_rating,code_verification_status,name_status,\
    throughput,whatsapp_business_manager_messaging_limit,is_official_business_account,is_pin_enabled";

/// Whether Graph's answer is a usable access token (it becomes an `Authorization` header).
fn plausible_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= 4096 && token.bytes().all(|b| b.is_ascii_graphic())
}

impl GraphClient {
    /// Sends one call; answers Graph's status and JSON body (`null` when it is not JSON).
    /// `deadline` bounds the whole exchange; without it only the client's connect and read
    /// timeouts apply.
    pub(super) async fn call(
        &self,
        request: reqwest::RequestBuilder,
        deadline: Option<Duration>,
    ) -> Result<(u16, Value), GraphCallError> {
        let request = match deadline {
            Some(deadline) => request.timeout(deadline),
            None => request,
        };
        let response = request.send().await.map_err(GraphCallError::transport)?;
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// `GET /{version}/{phone_number_id}` with `token`: Meta's details of the number, if the
    /// token reaches it.
    pub async fn phone_number(
        &self,
        version: &str,
        token: &str,
        phone_number_id: &str,
    ) -> Result<PhoneNumberNode, GraphCallError> {
        let url = self.url(version, phone_number_id, Some(NUMBER_FIELDS));
        let request = self.http.get(url).bearer_auth(token);
        let (mut status, mut node) = self.call(request, None).await?;
        if status == 400 && node.pointer("/error/code").and_then(Value::as_i64) == Some(100) {
            // A Graph version that does not know one of the newer fields refuses the whole
            // request (code 100); the base fields still verify the number.
            let url = self.url(version, phone_number_id, Some(BASE_NUMBER_FIELDS));
            (status, node) = self
                .call(self.http.get(url).bearer_auth(token), None)
                .await?;
        }
        if status != 200 {
            return Err(GraphCallError::refused(status, &node));
        }
        let text = |key: &str| node.get(key).and_then(Value::as_str).map(str::to_owned);
        Ok(PhoneNumberNode {
            id: text("id"),
            display_phone_number: text("display_phone_number"),
            verified_name: text("verified_name"),
            quality_rating: text("quality_rating"),
            code_verification_status: text("code_verification_status"),
            name_status: text("name_status"),
            throughput_level: node
                .pointer("/throughput/level")
                .and_then(Value::as_str)
                .map(str::to_owned),
            messaging_limit_tier: text("whatsapp_business_manager_messaging_limit"),
            is_official_business_account: node
                .get("is_official_business_account")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            is_pin_enabled: node
                .get("is_pin_enabled")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }

    /// `GET /{version}/{waba}/phone_numbers`: the ids of the business account's numbers (the
    /// first hundred).
    pub async fn business_phone_number_ids(
        &self,
        version: &str,
        token: &str,
        business_account_id: &str,
    ) -> Result<Vec<String>, GraphCallError> {
        let path = format!("{business_account_id}/phone_numbers");
        let url = self.url(version, &path, Some("fields=id&limit=100"));
        let (status, list) = self
            .call(self.http.get(url).bearer_auth(token), None)
            .await?;
        if status != 200 {
            return Err(GraphCallError::refused(status, &list));
        }
        let ids = list.get("data").and_then(Value::as_array);
        Ok(ids
            .into_iter()
            .flatten()
            .filter_map(|n| n.get("id").and_then(Value::as_str).map(str::to_owned))
            .collect())
    }

    /// `GET /{version}/oauth/access_token?client_id&client_secret&code`: the Embedded Signup
    /// code exchanged for the customer's access token.
    pub async fn exchange_code(
        &self,
        version: &str,
        app_id: &str,
        app_secret: &str,
        code: &str,
    ) -> Result<SecretString, GraphCallError> {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", app_id)
            .append_pair("client_secret", app_secret)
            .append_pair("code", code)
            .finish();
        let url = self.url(version, "oauth/access_token", Some(&query));
        let (status, body) = self.call(self.http.get(url), Some(self.timeout)).await?;
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|t| plausible_token(t));
        match token {
            Some(token) if status == 200 => Ok(token.to_owned().into()),
            _ => Err(GraphCallError::refused(status, &body)),
        }
    }

    /// `POST /{version}/{path}` with `token` and an optional JSON body, within `graph.timeout`;
    /// a 2xx answer that `accept`s its body is success.
    async fn post(
        &self,
        version: &str,
        token: &str,
        path: &str,
        json: Option<Value>,
        accept: impl FnOnce(&Value) -> bool,
    ) -> Result<(), GraphCallError> {
        let mut request = self
            .http
            .post(self.url(version, path, None))
            .bearer_auth(token);
        if let Some(json) = json {
            request = request.json(&json);
        }
        let (status, body) = self.call(request, Some(self.timeout)).await?;
        if (200..300).contains(&status) && accept(&body) {
            Ok(())
        } else {
            Err(GraphCallError::refused(status, &body))
        }
    }

    /// `POST /{version}/{waba}/subscribed_apps`: the business account's webhooks go to this app
    /// (and so to wagate).
    pub async fn subscribe_app(
        &self,
        version: &str,
        token: &str,
        business_account_id: &str,
    ) -> Result<(), GraphCallError> {
        let path = format!("{business_account_id}/subscribed_apps");
        self.post(version, token, &path, None, |body| {
            body.get("success") != Some(&json!(false))
        })
        .await
    }

    /// `POST /{version}/{phone_number_id}/register` with a two-step verification `pin`.
    pub async fn register_number(
        &self,
        version: &str,
        token: &str,
        phone_number_id: &str,
        pin: &str,
    ) -> Result<(), GraphCallError> {
        let path = format!("{phone_number_id}/register");
        let body = json!({ "messaging_product": "whatsapp", "pin": pin });
        self.post(version, token, &path, Some(body), |_| true).await
    }

    /// `GET /{version}/{media_id}?phone_number_id=…` with the number's `Authorization`: where the
    /// bytes are. Meta answers only for media of that number.
    pub async fn media_node(
        &self,
        version: &str,
        authorization: HeaderValue,
        media_id: &str,
        phone_number_id: &str,
    ) -> Result<MediaNode, GraphCallError> {
        let query = format!("phone_number_id={phone_number_id}");
        let url = self.url(version, media_id, Some(&query));
        let request = self.http.get(url).header("authorization", authorization);
        let (status, node) = self.call(request, Some(self.timeout)).await?;
        let Some(url) = node
            .get("url")
            .and_then(Value::as_str)
            .filter(|_| status == 200)
        else {
            return Err(GraphCallError::refused(status, &node));
        };
        // `file_size` is a string in Meta's answers, a number in some SDK fixtures.
        let file_size = node.get("file_size").and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        });
        let text = |key: &str| node.get(key).and_then(Value::as_str).map(str::to_owned);
        Ok(MediaNode {
            url: url.to_owned(),
            mime_type: text("mime_type"),
            sha256: text("sha256"),
            file_size,
        })
    }

    /// `GET url` (a media URL Graph gave) with the number's `Authorization`: the response, its
    /// body still streaming. Any transport failure, a slow connect included, is `Connect`;
    /// `Timeout` means no answer within `graph.timeout`.
    pub async fn download_media(
        &self,
        url: &str,
        authorization: HeaderValue,
    ) -> Result<reqwest::Response, GraphCallError> {
        let sent = self
            .http
            .get(url)
            .header("authorization", authorization)
            .send();
        tokio::time::timeout(self.timeout, sent)
            .await
            .map_err(|_| GraphCallError::Timeout)?
            .map_err(GraphCallError::connect)
    }

    /// [`Self::download_media`] for keeping: the bytes, still streaming, when the answer is a
    /// 200, and `Refused` with the status otherwise.
    pub async fn media_bytes(
        &self,
        url: &str,
        authorization: HeaderValue,
    ) -> Result<super::Download, GraphCallError> {
        let response = self.download_media(url, authorization).await?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(GraphCallError::Refused {
                status,
                code: None,
                message: "downloading the media failed".into(),
            });
        }
        Ok(super::Download::from_response(response))
    }
}

/// What became of a message send made by wagate itself (queued sends).
#[derive(Debug, Clone)]
pub enum SendAnswer {
    /// Meta answered (success or error), with its JSON body.
    Answered { status: u16, body: Value },
    /// The request never left: no connection could be made.
    NotSent(String),
    /// The request may have reached Meta, but no answer came back (timeout, broken connection).
    Lost(String),
}

impl GraphClient {
    /// `POST /{version}/{phone_number_id}/messages` with the number's `Authorization`.
    pub async fn send_message(
        &self,
        version: &str,
        authorization: HeaderValue,
        phone_number_id: &str,
        body: &Value,
    ) -> SendAnswer {
        let url = self.url(version, &format!("{phone_number_id}/messages"), None);
        let request = self
            .http
            .post(url)
            .header(reqwest::header::AUTHORIZATION, authorization)
            .json(body)
            .timeout(self.timeout);
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) if error.is_connect() => {
                return SendAnswer::NotSent(error.without_url().to_string())
            }
            Err(error) => return SendAnswer::Lost(error.without_url().to_string()),
        };
        let status = response.status().as_u16();
        match response.bytes().await {
            Ok(bytes) => SendAnswer::Answered {
                status,
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            },
            // Headers came, the body did not: Meta's verdict is unknown.
            Err(error) => SendAnswer::Lost(error.without_url().to_string()),
        }
    }
}
