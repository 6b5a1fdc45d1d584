//! The origin clients reach wagate at, for the absolute URLs wagate hands out (paging links,
//! media download links, setup-link URLs).
//!
//! A request's `Host` header is the caller's to choose, so it is never trusted by default: a
//! setup link built from `Host: evil.example` would send a business to the attacker's page. The
//! origin is `server.public_url` when set; else the `Host` of a request when it is one of
//! `server.allowed_hosts`; else the address wagate listens on (right for a newcomer's local run,
//! wrong behind a load balancer, which is why deployments set `server.public_url`).

use std::net::SocketAddr;

use axum::http::HeaderMap;

use crate::config::Config;

/// Where links point, decided once at start from the configuration and the bound address.
#[derive(Debug, Clone)]
pub struct PublicOrigin {
    configured: Option<String>,
    /// Lower-cased `host[:port]` values whose `Host` header may name the origin.
    allowed_hosts: Vec<String>,
    /// `http://{listen address}`, the unspecified address shown as `localhost`.
    listening: String,
}

impl PublicOrigin {
    pub fn new(config: &Config, bound: SocketAddr) -> Self {
        let host = match bound.ip() {
            ip if ip.is_unspecified() => "localhost".to_owned(),
            ip @ std::net::IpAddr::V6(_) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        Self {
            configured: config.public_url().map(str::to_owned),
            allowed_hosts: config
                .server
                .allowed_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
            listening: format!("http://{host}:{}", bound.port()),
        }
    }

    /// The origin for links in the answer to a request with these headers.
    pub fn for_request(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.configured {
            return url.clone();
        }
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .map(str::to_ascii_lowercase);
        match host {
            Some(host) if self.allowed_hosts.contains(&host) => {
                let scheme = match headers
                    .get("x-forwarded-proto")
                    .and_then(|h| h.to_str().ok())
                {
                    Some("https") => "https",
                    _ => "http",
                };
                format!("{scheme}://{host}")
            }
            _ => self.listening.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: &str, proto: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("host", host.parse().unwrap());
        if let Some(proto) = proto {
            headers.insert("x-forwarded-proto", proto.parse().unwrap());
        }
        headers
    }

    fn origin(public_url: &str, allowed: &[&str], bound: &str) -> PublicOrigin {
        let mut config = Config::defaults();
        config.server.public_url = public_url.into();
        config.server.allowed_hosts = allowed.iter().map(|h| h.to_string()).collect();
        PublicOrigin::new(&config, bound.parse().unwrap())
    }

    #[test]
    fn a_foreign_host_header_never_names_the_origin() {
        let local = origin("", &[], "127.0.0.1:8080");
        assert_eq!(
            local.for_request(&headers("evil.example", Some("https"))),
            "http://127.0.0.1:8080"
        );
        let any = origin("", &[], "0.0.0.0:8080");
        assert_eq!(any.for_request(&HeaderMap::new()), "http://localhost:8080");
    }

    #[test]
    fn public_url_wins_then_allowed_hosts() {
        let configured = origin("https://wa.example.com/", &["lb.example"], "127.0.0.1:1");
        assert_eq!(
            configured.for_request(&headers("lb.example", None)),
            "https://wa.example.com"
        );
        let allowed = origin("", &["LB.example:8443"], "127.0.0.1:1");
        assert_eq!(
            allowed.for_request(&headers("lb.example:8443", Some("https"))),
            "https://lb.example:8443"
        );
        assert_eq!(
            allowed.for_request(&headers("other.example", Some("https"))),
            "http://127.0.0.1:1"
        );
    }
}
