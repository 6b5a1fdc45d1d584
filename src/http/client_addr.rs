//! The address a request comes from, for the failed-authentication limit: the TCP peer, or, when
//! the peer is one of `server.trusted_proxies`, the right-most `X-Forwarded-For` entry that is
//! not itself a trusted proxy. Everything left of that was written by the client, so it is never
//! believed; from an untrusted peer the header is ignored altogether, or anyone could escape the
//! limit by sending a new address each time.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};
use ipnet::IpNet;

#[derive(Debug, Clone, Default)]
pub struct ClientAddrs {
    trusted: Arc<[IpNet]>,
}

impl ClientAddrs {
    pub fn new(trusted: Vec<IpNet>) -> Self {
        Self {
            trusted: trusted.into(),
        }
    }

    /// The client's address; `None` only when the request did not come through the server's
    /// accept loop (which records the peer).
    pub fn of(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<IpAddr> {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()?
            .0
            .ip()
            .to_canonical();
        if !self.trusted(peer) {
            return Some(peer);
        }
        // Proxies append: the last header, and the last entry in it, came from the nearest hop.
        let mut client = peer;
        for value in headers.get_all("x-forwarded-for").iter().rev() {
            let Ok(value) = value.to_str() else {
                return Some(client);
            };
            for entry in value.rsplit(',') {
                let Some(ip) = parse_entry(entry.trim()) else {
                    // Garbage a trusted hop passed on: the last address we could read answers.
                    return Some(client);
                };
                client = ip;
                if !self.trusted(ip) {
                    return Some(ip);
                }
            }
        }
        Some(client)
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }
}

/// `1.2.3.4`, `2001:db8::1`, or either with a port (`1.2.3.4:80`, `[2001:db8::1]:443`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(peer: &str, forwarded: &[&str], trusted: &[&str]) -> Option<IpAddr> {
        let addrs = ClientAddrs::new(trusted.iter().map(|t| t.parse().unwrap()).collect());
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        let mut extensions = Extensions::new();
        extensions.insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        addrs.of(&headers, &extensions)
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        // An untrusted peer's header is ignored.
        assert_eq!(from("192.0.2.7:1", &["203.0.113.9"], &[]), ip("192.0.2.7"));
        // A trusted proxy: the right-most entry it did not add itself, never the forged left part.
        let lb = ["10.0.0.0/8"];
        assert_eq!(
            from("10.0.0.2:1", &["6.6.6.6, 203.0.113.9"], &lb),
            ip("203.0.113.9")
        );
        assert_eq!(
            from("10.0.0.2:1", &["6.6.6.6", "203.0.113.9, 10.0.0.3"], &lb),
            ip("203.0.113.9")
        );
        assert_eq!(
            from("10.0.0.2:1", &["[2001:db8::1]:443"], &lb),
            ip("2001:db8::1")
        );
        // Garbage or no header: the nearest address we could read.
        assert_eq!(from("10.0.0.2:1", &["nonsense"], &lb), ip("10.0.0.2"));
        assert_eq!(from("10.0.0.2:1", &[], &lb), ip("10.0.0.2"));
        assert_eq!(
            from("[::ffff:10.0.0.2]:1", &["203.0.113.9"], &lb),
            ip("203.0.113.9")
        );
        assert_eq!(
            ClientAddrs::default().of(&HeaderMap::new(), &Extensions::new()),
            None
        );
    }
}
