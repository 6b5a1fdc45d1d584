//! The client for media an app sent by `link`: a URL a tenant chose, fetched once into the vault.
//!
//! Not a Graph call, but the same kind of thing (an outside HTTP call wagate makes on its own),
//! under the webhook destinations' SSRF rules: http(s) only, no credentials in the URL, public
//! addresses only (checked by the resolver the client connects with, so a rebinding DNS cannot
//! answer differently later), standard ports, and no redirects. `media.allow_private_links`
//! lifts the address and port rules, for closed networks and tests.

use std::time::Duration;

use crate::config::MediaConfig;
use crate::destination_guard::{
    self as guard, AllowedPorts, DestinationPolicy, GuardedResolver, ResolvedToForbidden,
};

/// Why a link was not fetched. Every message is safe to show the tenant: connection failures
/// get one wording, so the error cannot map which ports of a host are open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Never fetchable as given (scheme, address, port, or the host's 4xx answer).
    #[error("{0}")]
    Refused(String),
    /// May work later (no connection, a timeout, the host's 5xx or 429).
    #[error("{0}")]
    Unavailable(String),
}

/// Fetches media links. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LinkClient {
    http: reqwest::Client,
    policy: DestinationPolicy,
    /// The deadline for the answer's headers; the body is bounded by the caller.
    timeout: Duration,
}

impl LinkClient {
    pub fn new(config: &MediaConfig, connect_timeout: Duration) -> anyhow::Result<Self> {
        let policy = DestinationPolicy {
            allow_http: true,
            allow_private_networks: config.allow_private_links,
            ports: AllowedPorts::from_config(&[], true),
        };
        let http = reqwest::Client::builder()
            .dns_resolver(std::sync::Arc::new(GuardedResolver {
                allow_private_networks: config.allow_private_links,
            }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(connect_timeout)
            .read_timeout(config.download_timeout)
            .user_agent(super::USER_AGENT)
            .build()?;
        Ok(Self {
            http,
            policy,
            timeout: config.download_timeout,
        })
    }

    /// `GET url`: the bytes, still streaming, when the answer is a 200.
    pub async fn fetch(&self, url: &str) -> Result<super::Download, LinkError> {
        let checked = guard::check_url(url, self.policy).map_err(|refusal| {
            LinkError::Refused(format!(
                "the media link is not fetchable: {}",
                without_setting(&refusal.to_string())
            ))
        })?;
        let sent = self.http.get(checked).send();
        let response = tokio::time::timeout(self.timeout, sent)
            .await
            .map_err(|_| LinkError::Unavailable("the media link did not answer in time".into()))?
            .map_err(describe)?;
        let status = response.status().as_u16();
        match status {
            200 => Ok(super::Download::from_response(response)),
            429 | 500.. => Err(LinkError::Unavailable(format!(
                "the media link answered HTTP {status}"
            ))),
            _ => Err(LinkError::Refused(format!(
                "the media link answered HTTP {status}"
            ))),
        }
    }
}

fn describe(error: reqwest::Error) -> LinkError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<ResolvedToForbidden>() {
            return LinkError::Refused(format!(
                "the media link is not fetchable: {}",
                without_setting(&refused.to_string())
            ));
        }
        source = e.source();
    }
    LinkError::Unavailable(
        "could not fetch the media link (refused, unreachable or timed out)".into(),
    )
}

/// The guard's refusals name the webhook settings; a media link's are `media.*`.
fn without_setting(reason: &str) -> String {
    reason
        .replace(
            "webhooks go to public addresses only (delivery.allow_private_networks)",
            "links are fetched from public addresses only (media.allow_private_links)",
        )
        .replace(
            "webhooks go to public hosts only (delivery.allow_private_networks)",
            "links are fetched from public hosts only (media.allow_private_links)",
        )
        .replace(
            "(http:// only when delivery.allow_http is set)",
            "or http://",
        )
        .replace("(delivery.allowed_ports)", "(media.allow_private_links)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(allow_private: bool) -> LinkClient {
        let mut config = crate::config::Config::defaults().media;
        config.allow_private_links = allow_private;
        LinkClient::new(&config, Duration::from_secs(1)).unwrap()
    }

    #[tokio::test]
    async fn private_addresses_ports_and_schemes_are_refused_without_a_connection() {
        let links = client(false);
        for url in [
            "http://127.0.0.1/cat.jpg",
            "http://[::1]/cat.jpg",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost/cat.jpg",
            "https://example.com:22/cat.jpg",
            "ftp://example.com/cat.jpg",
            "https://user:pass@example.com/cat.jpg",
        ] {
            let error = links.fetch(url).await.err().expect("refused");
            assert!(
                matches!(&error, LinkError::Refused(m) if !m.contains("delivery.")),
                "{url}: {error:?}"
            );
        }
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused_at_connect_time() {
        crate::destination_guard::answer_test_name(
            "media-rebind.test",
            &["127.0.0.1".parse().unwrap()],
        );
        let error = client(false)
            .fetch("http://media-rebind.test/cat.jpg")
            .await
            .err()
            .expect("refused");
        assert!(
            matches!(&error, LinkError::Refused(m) if m.contains("127.0.0.1") && m.contains("media.allow_private_links")),
            "{error:?}"
        );
    }
}
