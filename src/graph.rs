//! The one HTTP client wagate uses to call Meta's Graph API, built once at start-up.

use crate::config::GraphConfig;

/// Upstream client plus the base URL requests are rebased onto.
#[derive(Debug, Clone)]
pub struct GraphClient {
    pub http: reqwest::Client,
    /// `graph.base_url` without a trailing slash.
    pub base_url: String,
}

impl GraphClient {
    pub fn new(config: &GraphConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("wagate/", env!("CARGO_PKG_VERSION")))
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
        Ok(Self {
            http,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
        })
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
