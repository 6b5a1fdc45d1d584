//! The HTTP clients wagate uses to call Meta's Graph API, built once at start-up.
//!
//! Two clients share one configuration: `passthrough`, a bare hyper client for the proxy's hot
//! path (no URL re-parse, redirect or retry layers: the request is already an `http::Request`),
//! and `http`, reqwest, behind the typed methods of `calls` (wagate's own calls: number
//! verification, the signup completion, media downloads), which fail with one
//! [`GraphCallError`].

mod calls;
mod emulator;
mod error;
mod links;
mod versions;

use std::time::Duration;

use axum::body::Body;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::GraphConfig;

pub use calls::{MediaNode, PhoneNumberNode, SendAnswer};
pub use emulator::PendingSignupNumber;
pub use error::{unsupported_object_message, GraphCallError};
pub use links::{LinkClient, LinkError};
pub use versions::{parse_version, Verdict, VersionGuard, VersionPolicy};

/// A download's answer (media from Graph's media host, or a link): what its headers say, and
/// the body, still streaming. Transport errors in the body are described without the URL.
pub struct Download {
    pub content_type: Option<String>,
    pub content_length: Option<u64>,
    pub body: futures::stream::BoxStream<'static, Result<bytes::Bytes, String>>,
}

impl Download {
    fn from_response(response: reqwest::Response) -> Self {
        use futures::{StreamExt as _, TryStreamExt as _};
        Self {
            content_type: response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            content_length: response.content_length(),
            body: response
                .bytes_stream()
                .map_err(|e| e.without_url().to_string())
                .boxed(),
        }
    }
}

/// Sent when the caller sent no `User-Agent` of its own.
pub const USER_AGENT: &str = concat!("wagate/", env!("CARGO_PKG_VERSION"));

pub type PassthroughClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

/// Upstream clients plus the base URL requests are rebased onto.
#[derive(Debug, Clone)]
pub struct GraphClient {
    pub passthrough: PassthroughClient,
    http: reqwest::Client,
    /// `graph.base_url` without a trailing slash.
    pub base_url: String,
    /// `graph.timeout`: the deadline of the signup completion's calls and of a download's
    /// answer.
    timeout: Duration,
    /// Graph versions' end of life and what the proxy does about it.
    pub versions: std::sync::Arc<VersionGuard>,
}

impl GraphClient {
    pub fn new(config: &GraphConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(config.connect_timeout)
            // Idle time between body chunks; the whole-response deadline for headers is applied
            // per request, so a 100 MiB download that keeps flowing is not cut.
            .read_timeout(config.timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .pool_idle_timeout(config.pool_idle_timeout)
            .tcp_nodelay(true)
            // Graph never redirects API calls; following one could leak the token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(connector);
        let passthrough = Client::builder(TokioExecutor::new())
            // A request whose connection died before it was written is answered 502 at once
            // rather than retried inside the pool: under upstream resets the retry could wait on
            // a connection that never came, until graph.timeout (the fault suite's reset phase).
            .retry_canceled_requests(false)
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .build(connector);
        Ok(Self {
            passthrough,
            http,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            timeout: config.timeout,
            versions: std::sync::Arc::new(
                VersionGuard::new(
                    &config.version_expiry,
                    config.version_policy,
                    &config.minimum_version,
                    config.version_warning_days,
                )
                .map_err(anyhow::Error::msg)?,
            ),
        })
    }

    /// Whether a number's token may be sent to this media URL: Meta's media hosts (https), or
    /// the configured Graph host itself (the emulator, a test double).
    pub fn is_media_host(&self, url: &str) -> bool {
        let Ok(url) = url::Url::parse(url) else {
            return false;
        };
        let Some(host) = url.host_str() else {
            return false;
        };
        let graph_host = url::Url::parse(&self.base_url)
            .ok()
            .and_then(|g| g.host_str().map(str::to_owned));
        if graph_host.as_deref() == Some(host) {
            return true;
        }
        url.scheme() == "https"
            && ["fbsbx.com", "facebook.com", "fbcdn.net", "whatsapp.net"]
                .iter()
                .any(|domain| host == *domain || host.ends_with(&format!(".{domain}")))
    }

    /// `{base_url}/{version}/{rest}` with the query kept byte for byte.
    pub fn url(&self, version: &str, rest: &str, query: Option<&str>) -> String {
        let mut url = String::with_capacity(self.base_url.len() + version.len() + rest.len() + 64);
        url.push_str(&self.base_url);
        url.push('/');
        url.push_str(version);
        url.push('/');
        url.push_str(rest);
        if let Some(query) = query.filter(|q| !q.is_empty()) {
            url.push('?');
            url.push_str(query);
        }
        url
    }
}
