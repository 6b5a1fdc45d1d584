//! Which destinations wagate may POST webhooks to (SSRF defence).
//!
//! A destination is refused unless it is `https://` (or `http://` with `delivery.allow_http`) and
//! every address it reaches is public. IP literals are checked here, after the URL parser has
//! normalised them (`http://2130706433/`, `http://0x7f.1/`, `http://[::ffff:127.0.0.1]/` are all
//! 127.0.0.1); names are checked by [`GuardedResolver`], the HTTP client's DNS resolver, so the
//! address checked is the address connected to (no second lookup a rebinding DNS could answer
//! differently). Redirects are never followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What the configuration allows.
#[derive(Debug, Clone, Copy)]
pub struct DestinationPolicy {
    pub allow_http: bool,
    /// Also lifts the port rule: closed networks and tests use any port.
    pub allow_private_networks: bool,
    pub ports: AllowedPorts,
}

impl DestinationPolicy {
    pub fn from_config(config: &crate::config::DeliveryConfig) -> Self {
        Self {
            allow_http: config.allow_http,
            allow_private_networks: config.allow_private_networks,
            ports: AllowedPorts::from_config(&config.allowed_ports, config.allow_http),
        }
    }
}

/// The ports a destination may use (a tenant must not make wagate knock on every port of a
/// host). At most [`AllowedPorts::MAX`], kept inline so the policy stays `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowedPorts {
    ports: [u16; AllowedPorts::MAX],
    len: usize,
}

impl AllowedPorts {
    pub const MAX: usize = crate::config::MAX_ALLOWED_PORTS;

    /// `delivery.allowed_ports`; empty means the standard ports: 443, and 80 and 8443 when
    /// `http://` is allowed. Longer lists are refused by config validation.
    pub fn from_config(configured: &[u16], allow_http: bool) -> Self {
        let standard: &[u16] = if allow_http { &[443, 80, 8443] } else { &[443] };
        let list = if configured.is_empty() {
            standard
        } else {
            configured
        };
        let mut ports = [0; Self::MAX];
        let len = list.len().min(Self::MAX);
        ports[..len].copy_from_slice(&list[..len]);
        Self { ports, len }
    }

    pub fn allows(&self, port: u16) -> bool {
        self.ports[..self.len].contains(&port)
    }

    fn describe(&self) -> String {
        let list: Vec<String> = self.ports[..self.len].iter().map(u16::to_string).collect();
        list.join(", ")
    }
}

/// Why a destination is refused; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("must be an absolute URL ({0})")]
    Malformed(String),
    #[error("must use https:// (http:// only when delivery.allow_http is set)")]
    Scheme,
    #[error("must not carry a user name or password")]
    Credentials,
    #[error("must name a host")]
    NoHost,
    #[error("{0} is a private, loopback, link-local or metadata address; webhooks go to public addresses only (delivery.allow_private_networks)")]
    PrivateAddress(IpAddr),
    #[error("{0} names this machine or an internal service; webhooks go to public hosts only (delivery.allow_private_networks)")]
    InternalName(String),
    #[error("port {port} is not allowed; use one of {allowed} (delivery.allowed_ports)")]
    Port { port: u16, allowed: String },
}

/// Checks a destination URL without DNS: scheme, credentials, host, IP literals, internal names.
pub fn check_url(raw: &str, policy: DestinationPolicy) -> Result<url::Url, Refusal> {
    let url = url::Url::parse(raw.trim()).map_err(|e| Refusal::Malformed(e.to_string()))?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        _ => return Err(Refusal::Scheme),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal::Credentials);
    }
    let port = url.port_or_known_default().unwrap_or(443);
    if !policy.allow_private_networks && !policy.ports.allows(port) {
        return Err(Refusal::Port {
            port,
            allowed: policy.ports.describe(),
        });
    }
    match url.host() {
        None => return Err(Refusal::NoHost),
        Some(url::Host::Domain("")) => return Err(Refusal::NoHost),
        Some(_) if policy.allow_private_networks => {}
        Some(url::Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip))?,
        Some(url::Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip))?,
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if is_internal_name(&name) {
                return Err(Refusal::InternalName(name));
            }
        }
    }
    Ok(url)
}

fn check_ip(ip: IpAddr) -> Result<(), Refusal> {
    if is_forbidden(ip) {
        Err(Refusal::PrivateAddress(ip))
    } else {
        Ok(())
    }
}

/// Names that resolve to this machine or cloud-internal services wherever wagate runs.
fn is_internal_name(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "localhost",
        "metadata",
        "metadata.google.internal",
        "instance-data",
    ];
    const SUFFIXES: &[&str] = &[
        ".localhost",
        ".internal",
        ".local",
        ".localdomain",
        ".home.arpa",
    ];
    EXACT.contains(&name) || SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Whether an address is off limits: anything not globally routable, and cloud metadata.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16, cloud metadata (169.254.169.254)
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10 (Alibaba metadata 100.100.100.200)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return forbidden_v4(v4);
    }
    let s = ip.segments();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7 (AWS metadata fd00:ec2::254)
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0) // Teredo: tunnels to arbitrary IPv4
        || s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0 // discard prefix
        || (s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 0x0001) // local-use NAT64 64:ff9b:1::/48
}

/// The IPv4 address an IPv6 address stands for: mapped (`::ffff:a.b.c.d`), translated
/// (`::ffff:0:a.b.c.d`, SIIT), compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) and 6to4
/// (`2002:AABB:CCDD::/48`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return Some(tail());
    }
    if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return Some(tail());
    }
    if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return Some(tail());
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// The error the resolver returns for a name that reaches a forbidden address; found again in
/// the HTTP client's error chain to report it plainly.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to {ip}, a private, loopback, link-local or metadata address; webhooks go to public addresses only (delivery.allow_private_networks)")]
pub struct ResolvedToForbidden {
    pub host: String,
    pub ip: IpAddr,
}

/// DNS for the delivery client: resolves with the system resolver, then refuses the whole name
/// if any address is forbidden (a name that mixes public and private answers is a rebinding
/// attempt). The client connects only to the addresses returned here.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_private_networks: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_private_networks;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = lookup(&host, 0).await?;
            if !allow {
                if let Some(bad) = addrs.iter().find(|a| is_forbidden(a.ip())) {
                    return Err(Box::new(ResolvedToForbidden { host, ip: bad.ip() })
                        as Box<dyn std::error::Error + Send + Sync>);
                }
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Names under `.test` (RFC 6761: reserved for testing, never in the DNS) answered without
/// the system resolver: see [`answer_test_name`]. Empty unless a test filled it.
static TEST_NAMES: std::sync::RwLock<Vec<(String, Vec<IpAddr>)>> =
    std::sync::RwLock::new(Vec::new());

/// Makes `name` (which must end in `.test`) resolve to `ips` in this process, for the guard and
/// the delivery client alike: end-to-end tests use it to play a DNS that answers a private
/// address for a name no URL rule knows, on any machine. Names outside `.test` are refused, so
/// no real name can be shadowed.
#[doc(hidden)]
pub fn answer_test_name(name: &str, ips: &[IpAddr]) {
    let name = name.to_ascii_lowercase();
    assert!(name.ends_with(".test"), "only .test names: {name}");
    let mut names = TEST_NAMES.write().unwrap_or_else(|e| e.into_inner());
    names.retain(|(n, _)| *n != name);
    names.push((name, ips.to_vec()));
}

/// What `host` resolves to: a `.test` name from [`answer_test_name`], else the system resolver.
async fn lookup(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    let lower = host.trim_end_matches('.').to_ascii_lowercase();
    if lower.ends_with(".test") {
        let names = TEST_NAMES.read().unwrap_or_else(|e| e.into_inner());
        if let Some((_, ips)) = names.iter().find(|(n, _)| *n == lower) {
            return Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect());
        }
    }
    Ok(tokio::net::lookup_host((host, port)).await?.collect())
}

/// Checks a destination the way an attempt will: the URL, then (for names) what it resolves to
/// now. A name that does not resolve yet is accepted (it is checked again at every attempt).
pub async fn check_destination(raw: &str, policy: DestinationPolicy) -> Result<url::Url, Refusal> {
    let url = check_url(raw, policy)?;
    if policy.allow_private_networks {
        return Ok(url);
    }
    if let Some(url::Host::Domain(name)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(443);
        let answer =
            tokio::time::timeout(std::time::Duration::from_secs(3), lookup(name, port)).await;
        if let Ok(Ok(addrs)) = answer {
            for addr in addrs {
                check_ip(addr.ip())?;
            }
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> DestinationPolicy {
        policy(true, false)
    }

    fn policy(allow_http: bool, allow_private_networks: bool) -> DestinationPolicy {
        DestinationPolicy {
            allow_http,
            allow_private_networks,
            ports: AllowedPorts::from_config(&[], allow_http),
        }
    }

    /// The URL forms of perf-reliability.md §C5: loopback, private, link-local and metadata
    /// addresses in every spelling the URL parser accepts.
    const REFUSED: &[&str] = &[
        "http://127.0.0.1/hook",
        "http://127.1/hook",
        "http://127.0.0.1:8080/hook",
        "http://2130706433/hook",
        "http://0x7f000001/hook",
        "http://0x7f.0x0.0x0.0x1/hook",
        "http://017700000001/hook",
        "http://0177.0.0.1/hook",
        "http://0.0.0.0/hook",
        "http://0/hook",
        "http://[::1]/hook",
        "http://[::]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:7f00:1]/hook",
        "http://[0:0:0:0:0:ffff:169.254.169.254]/hook",
        "http://[64:ff9b::127.0.0.1]/hook",
        "http://[64:ff9b:1::a00:1]/hook",
        "http://[64:ff9b:1:ffff::1]/hook",
        "http://[::ffff:0:7f00:1]/hook",
        "http://[::ffff:0:a9fe:a9fe]/hook",
        "http://[2002:7f00:1::]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://10.0.0.1/hook",
        "http://172.16.0.1/hook",
        "http://172.31.255.255/hook",
        "http://192.168.1.1/hook",
        "http://100.64.0.1/hook",
        "http://[fe80::1]/hook",
        "http://[fc00::1]/hook",
        "http://localhost/hook",
        "http://LOCALHOST./hook",
        "http://app.localhost/hook",
        "http://224.0.0.1/hook",
        "http://255.255.255.255/hook",
        "http://user:pass@example.com/hook",
    ];

    #[test]
    fn every_private_form_is_refused() {
        for url in REFUSED {
            assert!(check_url(url, strict()).is_err(), "{url} was accepted");
        }
    }

    #[test]
    fn public_destinations_pass() {
        for url in [
            "https://example.com/hook",
            "https://93.184.216.34/hook",
            "https://[2606:2800:220:1:248:1893:25c8:1946]/hook",
            "http://example.com:8443/wa?x=1",
        ] {
            assert!(check_url(url, strict()).is_ok(), "{url} was refused");
        }
    }

    #[test]
    fn scheme_rules() {
        let https_only = policy(false, false);
        assert_eq!(
            check_url("http://example.com/", https_only),
            Err(Refusal::Scheme)
        );
        assert_eq!(
            check_url("ftp://example.com/", strict()),
            Err(Refusal::Scheme)
        );
        assert!(matches!(
            check_url("not a url", strict()),
            Err(Refusal::Malformed(_))
        ));
        let open = policy(true, true);
        assert!(check_url("http://127.0.0.1:9/hook", open).is_ok());
    }

    #[test]
    fn only_allowed_ports_are_reached() {
        let https_only = policy(false, false);
        assert!(check_url("https://example.com/hook", https_only).is_ok());
        assert!(check_url("https://example.com:443/hook", https_only).is_ok());
        for url in [
            "https://example.com:8443/hook",
            "https://example.com:22/hook",
        ] {
            assert!(
                matches!(check_url(url, https_only), Err(Refusal::Port { .. })),
                "{url}"
            );
        }
        let with_http = strict();
        for url in ["http://example.com/h", "https://example.com:8443/h"] {
            assert!(check_url(url, with_http).is_ok(), "{url}");
        }
        assert!(check_url("http://example.com:6379/h", with_http).is_err());
        let custom = DestinationPolicy {
            ports: AllowedPorts::from_config(&[9443], false),
            ..https_only
        };
        assert!(check_url("https://example.com:9443/h", custom).is_ok());
        assert!(check_url("https://example.com/h", custom).is_err());
    }

    #[tokio::test]
    async fn test_names_resolve_through_the_guard() {
        use reqwest::dns::Resolve as _;
        answer_test_name(
            "unit-rebind.wagate.test",
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        );
        answer_test_name(
            "unit-public.wagate.test",
            &[IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34))],
        );
        let guarded = GuardedResolver {
            allow_private_networks: false,
        };
        let refused = guarded.resolve("unit-rebind.wagate.test".parse().unwrap());
        assert!(refused.await.is_err(), "a name answering loopback resolved");
        let public = guarded
            .resolve("unit-public.wagate.test".parse().unwrap())
            .await
            .map_err(|e| e.to_string())
            .unwrap();
        let ips: Vec<IpAddr> = public.map(|a| a.ip()).collect();
        assert_eq!(ips, [IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34))]);
        assert!(
            check_destination("http://unit-rebind.wagate.test/h", strict())
                .await
                .is_err()
        );
        assert!(std::panic::catch_unwind(|| answer_test_name("example.com", &[])).is_err());
    }

    #[tokio::test]
    async fn resolver_refuses_names_of_private_addresses() {
        use reqwest::dns::Resolve as _;
        let resolver = GuardedResolver {
            allow_private_networks: false,
        };
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let error = match resolver.resolve(name).await {
            Ok(_) => panic!("localhost resolved"),
            Err(error) => error,
        };
        assert!(error.to_string().contains("private"), "{error}");
        let open = GuardedResolver {
            allow_private_networks: true,
        };
        assert!(open.resolve("localhost".parse().unwrap()).await.is_ok());
    }
}
