//! Layered configuration: embedded defaults < config file < `WAGATE__SECTION__KEY` environment.
//!
//! The embedded defaults are `config/wagate.toml` itself, so the documented file and the defaults
//! can never drift apart. Secrets are [`SecretString`]s: their `Debug` prints `[REDACTED]`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

mod media;
mod pacing;
mod provisioning;
mod writer;
pub use media::MediaConfig;
pub use pacing::{PacingConfig, PairRateMode};
pub use provisioning::ProvisioningConfig;
pub use writer::WriterConfig;

/// The documented default configuration, embedded so a bare binary runs with no files.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../config/wagate.toml");
/// The config file read when `--config` is not given and the file exists.
pub const DEFAULT_CONFIG_PATH: &str = "config/wagate.toml";
/// Environment prefix; `__` separates section and key (`WAGATE__SERVER__LISTEN`).
pub const ENV_PREFIX: &str = "WAGATE__";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub graph: GraphConfig,
    pub meta: MetaConfig,
    pub security: SecurityConfig,
    pub cache: CacheConfig,
    pub conversations: ConversationsConfig,
    pub writer: WriterConfig,
    pub workers: WorkersConfig,
    pub delivery: DeliveryConfig,
    pub onboarding: OnboardingConfig,
    pub provisioning: ProvisioningConfig,
    pub pacing: PacingConfig,
    pub media: MediaConfig,
    pub log: LogConfig,
    /// Set by `serve --sandbox` only, never by a file or the environment: numbers connected in
    /// this mode are the emulator's (`kind = "sandbox"`).
    #[serde(skip)]
    pub sandbox_mode: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub public_url: String,
    /// `Host` values (`host[:port]`) links may be built from when `public_url` is empty.
    pub allowed_hosts: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub body_idle_timeout: Duration,
    /// A kept-alive connection with no request for this long is closed; longer than load
    /// balancers' own idle timeouts, so they always let go first.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// An HTTP/1 connection idle this long gives up hyper's per-connection state and waits as a
    /// bare socket (`http::keep_alive`); 0: never.
    #[serde(with = "humantime_serde")]
    pub park_after: Duration,
    /// A request whose handler has not answered within this gets a 503.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// After SIGTERM, how long this instance keeps serving (with `Connection: close` and
    /// `/readyz` 503) before it stops accepting, so a load balancer moves away without errors.
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
    pub json_body_limit: usize,
    pub media_body_limit: usize,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Proxies (IPs or CIDRs) whose `X-Forwarded-For` names the client; see `trusted_proxy_nets`.
    pub trusted_proxies: Vec<String>,
    /// How HTTP connections are driven; see [`RuntimeShape`].
    pub runtime: RuntimeShape,
    /// Threads serving HTTP with `runtime = "thread_per_core"`; 0: one per CPU this process
    /// may run on.
    pub threads: usize,
}

/// The shape of the runtime that serves HTTP connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeShape {
    /// One work-stealing tokio runtime for connections and background work.
    MultiThread,
    /// One single-threaded runtime per thread, each accepting on its own `SO_REUSEPORT`
    /// listener (the kernel spreads connections), so a connection never changes thread and its
    /// tasks need no cross-thread scheduling. Background work stays on the main runtime.
    ThreadPerCore,
}

impl ServerConfig {
    /// Threads that serve HTTP in the thread-per-core shape.
    pub fn http_threads(&self) -> usize {
        if self.threads > 0 {
            return self.threads;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// `trusted_proxies` parsed (a bare address is its own /32 or /128).
    pub fn trusted_proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        ConfigError(format!(
                            "server.trusted_proxies: '{entry}' is neither an IP address nor a CIDR such as 10.0.0.0/8"
                        ))
                    })
            })
            .collect()
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// May embed a password, so it is a secret; `Debug` shows only the scheme.
    pub url: SecretString,
    pub max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Duration,
    /// PostgreSQL only: a pooled connection idle this long is pinged before it is handed out
    /// (one the server closed meanwhile is replaced); 0s pings on every use.
    #[serde(with = "humantime_serde")]
    pub ping_after_idle: Duration,
    /// SQLite only: WAL pages after which a commit checkpoints (copies the WAL back into the
    /// database file, with an fsync). Larger: fewer checkpoints, less work per write, a bigger WAL.
    pub sqlite_wal_autocheckpoint: u32,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = self.url.expose_secret().split(':').next().unwrap_or("");
        f.debug_struct("DatabaseConfig")
            .field("url", &format_args!("{scheme}://[REDACTED]"))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("busy_timeout", &self.busy_timeout)
            .field("ping_after_idle", &self.ping_after_idle)
            .field("sqlite_wal_autocheckpoint", &self.sqlite_wal_autocheckpoint)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphConfig {
    pub base_url: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    pub verify_numbers: bool,
    pub version_policy: VersionPolicy,
    pub minimum_version: String,
    pub version_warning_days: u32,
    /// How old a number's Meta-reported details may get before Graph is asked again (0: never).
    #[serde(with = "humantime_serde")]
    pub number_refresh_interval: Duration,
    /// Version → `YYYY-MM-DD` of its end of life (`""`: none announced).
    pub version_expiry: std::collections::BTreeMap<String, String>,
}

/// What the proxy does with a request for an expired or unknown future version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionPolicy {
    /// Forward as asked (Meta answers what it answers).
    #[default]
    Forward,
    /// Forward with `graph.minimum_version` instead.
    Upgrade,
    /// Answer locally in Graph's envelope.
    Refuse,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaConfig {
    /// The Meta app's ID: Embedded Signup's `FB.init` and the OAuth code exchange.
    #[serde(deserialize_with = "numeric_id")]
    pub app_id: String,
    /// Embedded Signup configuration ID (`FB.login`'s `config_id`).
    #[serde(deserialize_with = "numeric_id")]
    pub embedded_signup_config_id: String,
    pub app_secret: SecretString,
    pub extra_app_secrets: Vec<SecretString>,
    pub verify_token: SecretString,
    pub webhook_body_limit: usize,
}

/// A Meta ID as a string, also when the environment provider read it as a number.
fn numeric_id<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(u64),
    }
    Ok(match Id::deserialize(deserializer)? {
        Id::Text(text) => text,
        Id::Number(n) => n.to_string(),
    })
}

impl MetaConfig {
    /// Every configured app secret, for verifying `X-Hub-Signature-256`.
    pub fn app_secrets(&self) -> impl Iterator<Item = &str> {
        std::iter::once(&self.app_secret)
            .chain(&self.extra_app_secrets)
            .map(|s| s.expose_secret())
            .filter(|s| !s.is_empty())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationsConfig {
    #[serde(with = "humantime_serde")]
    pub inactivity: Duration,
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    pub master_key: SecretString,
    /// Keys values may still be sealed with during a master-key rotation: opened, never used
    /// to seal.
    #[serde(default)]
    pub previous_master_keys: Vec<SecretString>,
    pub bootstrap_default_project: bool,
    /// Where the first start writes the default project's key when stdout is not a terminal
    /// (empty: `initial-api-key` in the SQLite data folder, or the working folder).
    pub bootstrap_key_file: String,
    /// Keys issued before keyed checksums (migration 0011) still authenticate.
    pub accept_legacy_api_keys: bool,
    /// Failed authentications one client address (or one key prefix) may make per minute…
    pub failed_auth_per_minute: u32,
    /// …and in a burst, before it is answered 429.
    pub failed_auth_burst: u32,
}

impl SecurityConfig {
    /// The file the first start's API key goes to when stdout is not a terminal.
    pub fn bootstrap_key_path(&self, database: &DatabaseConfig) -> PathBuf {
        if !self.bootstrap_key_file.is_empty() {
            return PathBuf::from(&self.bootstrap_key_file);
        }
        database
            .sqlite_data_dir()
            .unwrap_or_default()
            .join("initial-api-key")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    pub max_entries: u64,
    /// SQLite: how often each server reads the change log other processes write (PostgreSQL
    /// pushes changes with NOTIFY instead).
    #[serde(with = "humantime_serde")]
    pub change_poll_interval: Duration,
    /// Unknown credentials remembered (for `ttl`), apart from the known ones.
    pub negative_max_entries: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersConfig {
    pub delivery: bool,
    /// Downloads into the media vault.
    pub media_downloads: bool,
    pub conversation_sweeper: bool,
    /// Sending queued broadcasts.
    pub broadcasts: bool,
}

/// The longest `delivery.allowed_ports` list.
pub const MAX_ALLOWED_PORTS: usize = 8;

/// Forwarding webhooks to each number's `webhook_destination_url` (the delivery worker).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    pub allow_http: bool,
    pub allow_private_networks: bool,
    /// Destination ports; empty: 443 (and 80 and 8443 with `allow_http`).
    pub allowed_ports: Vec<u16>,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    pub max_in_flight: usize,
    pub per_destination: usize,
    pub claim_batch: usize,
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    #[serde(with = "humantime_serde")]
    pub give_up_after: Duration,
    pub jitter: f64,
    pub response_excerpt_bytes: usize,
    pub replay_limit: usize,
    /// Consecutive failed attempts that pause a webhook (0: never).
    pub pause_after_failures: u32,
    #[serde(with = "humantime_serde")]
    pub buffer_poll_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub inactivity_sweep_interval: Duration,
}

/// The hosted onboarding page behind setup links (`/setup/{token}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnboardingConfig {
    /// Run a simulated Meta sign-in instead of Facebook's SDK (against the Graph emulator).
    pub simulated_signup: bool,
    /// Graph version of the page's `FB.init` and of the code exchange, `subscribed_apps` and
    /// `register` calls.
    pub graph_version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

/// A configuration problem, phrased for the operator: which key, what is wrong, what to do.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// Secret keys (after the `WAGATE__` prefix) taken from the environment as raw strings; each also
/// has a `…_FILE` form naming a file that holds the value.
const SECRET_ENV: [&str; 4] = [
    "DATABASE__URL",
    "META__APP_SECRET",
    "META__VERIFY_TOKEN",
    "SECURITY__MASTER_KEY",
];

fn is_secret_env(key: &str) -> bool {
    let key = key.to_ascii_uppercase();
    SECRET_ENV
        .iter()
        .any(|name| key == *name || key.strip_suffix("_FILE") == Some(name))
}

/// Which database a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Config {
    /// Loads defaults, then `path` (or `config/wagate.toml` when present), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new().merge(Toml::string(DEFAULT_CONFIG_TOML));
        match path {
            Some(path) if !path.exists() => {
                return Err(ConfigError(format!(
                    "config file {} does not exist (given with --config)",
                    path.display()
                )))
            }
            Some(path) => figment = figment.merge(Toml::file(path)),
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
                figment = figment.merge(Toml::file(DEFAULT_CONFIG_PATH))
            }
            None => {}
        }
        // Secrets are read from the environment as raw strings (figment would turn `0123` into a
        // number, and quote the value in its error), or from a file named by `…_FILE`.
        figment = figment.merge(
            Env::prefixed(ENV_PREFIX)
                .filter(|key| !is_secret_env(key.as_str()))
                .split("__")
                .lowercase(true),
        );
        let mut config: Config = figment.extract().map_err(describe_figment_error)?;
        config.apply_secret_env()?;
        config.validate()?;
        Ok(config)
    }

    fn apply_secret_env(&mut self) -> Result<(), ConfigError> {
        for name in SECRET_ENV {
            let var = format!("{ENV_PREFIX}{name}");
            let value = match std::env::var(&var) {
                Ok(value) => value,
                Err(_) => match std::env::var(format!("{var}_FILE")) {
                    Ok(path) => std::fs::read_to_string(&path)
                        .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                        .map_err(|e| ConfigError(format!("{var}_FILE: cannot read {path}: {e}")))?,
                    Err(_) => continue,
                },
            };
            let secret: SecretString = value.into();
            match name {
                "DATABASE__URL" => self.database.url = secret,
                "META__APP_SECRET" => self.meta.app_secret = secret,
                "META__VERIFY_TOKEN" => self.meta.verify_token = secret,
                _ => self.security.master_key = secret,
            }
        }
        Ok(())
    }

    /// Defaults only, for tests and embedding; callers override fields directly.
    pub fn defaults() -> Self {
        Self::from_figment(Figment::new().merge(Toml::string(DEFAULT_CONFIG_TOML)))
            .expect("embedded default config is valid")
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config: Config = figment.extract().map_err(describe_figment_error)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: URL schemes, non-zero limits, key sizes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.database.backend()?;
        let graph = url::Url::parse(&self.graph.base_url).map_err(|e| {
            ConfigError(format!(
                "graph.base_url: {e}; expected an absolute http(s) URL such as https://graph.facebook.com"
            ))
        })?;
        if !matches!(graph.scheme(), "http" | "https") {
            return Err(ConfigError(
                "graph.base_url: scheme must be http or https".into(),
            ));
        }
        if !self.server.public_url.is_empty() {
            let public = url::Url::parse(&self.server.public_url).map_err(|e| {
                ConfigError(format!(
                    "server.public_url: {e}; expected e.g. https://wagate.example.com"
                ))
            })?;
            if !matches!(public.scheme(), "http" | "https") {
                return Err(ConfigError(
                    "server.public_url: scheme must be http or https".into(),
                ));
            }
        }
        for (key, value) in [
            ("server.json_body_limit", self.server.json_body_limit),
            ("server.media_body_limit", self.server.media_body_limit),
            ("meta.webhook_body_limit", self.meta.webhook_body_limit),
            ("writer.max_batch", self.writer.max_batch),
            ("writer.retry_buffer", self.writer.retry_buffer),
            ("delivery.max_in_flight", self.delivery.max_in_flight),
            ("delivery.per_destination", self.delivery.per_destination),
            ("delivery.claim_batch", self.delivery.claim_batch),
            ("delivery.replay_limit", self.delivery.replay_limit),
        ] {
            if value == 0 {
                return Err(ConfigError(format!("{key}: must be greater than 0")));
            }
        }
        for (key, value) in [
            (
                "server.header_read_timeout",
                self.server.header_read_timeout,
            ),
            ("server.body_idle_timeout", self.server.body_idle_timeout),
            ("server.idle_timeout", self.server.idle_timeout),
            ("server.request_timeout", self.server.request_timeout),
            ("graph.timeout", self.graph.timeout),
            ("graph.connect_timeout", self.graph.connect_timeout),
            ("database.acquire_timeout", self.database.acquire_timeout),
            ("conversations.inactivity", self.conversations.inactivity),
            (
                "conversations.sweep_interval",
                self.conversations.sweep_interval,
            ),
            ("writer.retry_interval", self.writer.retry_interval),
            ("delivery.request_timeout", self.delivery.request_timeout),
            ("delivery.connect_timeout", self.delivery.connect_timeout),
            ("delivery.lease", self.delivery.lease),
            ("delivery.poll_interval", self.delivery.poll_interval),
            ("delivery.backoff_initial", self.delivery.backoff_initial),
            ("delivery.backoff_max", self.delivery.backoff_max),
            ("delivery.give_up_after", self.delivery.give_up_after),
        ] {
            if value.is_zero() {
                return Err(ConfigError(format!("{key}: must be greater than 0s")));
            }
        }
        if !crate::types::GraphVersion::is_valid(&self.onboarding.graph_version) {
            return Err(ConfigError(
                "onboarding.graph_version: must look like v23.0".into(),
            ));
        }
        for (key, value) in [
            ("meta.app_id", &self.meta.app_id),
            (
                "meta.embedded_signup_config_id",
                &self.meta.embedded_signup_config_id,
            ),
        ] {
            if !value.is_empty() && !crate::types::MetaId::is_valid(value) {
                return Err(ConfigError(format!(
                    "{key}: must be Meta's numeric ID (digits only), or empty"
                )));
            }
        }
        if self.delivery.allowed_ports.len() > MAX_ALLOWED_PORTS
            || self.delivery.allowed_ports.contains(&0)
        {
            return Err(ConfigError(format!(
                "delivery.allowed_ports: at most {} ports from 1 to 65535 (empty: the standard ones)",
                MAX_ALLOWED_PORTS
            )));
        }
        if !(0.0..1.0).contains(&self.delivery.jitter) {
            return Err(ConfigError(
                "delivery.jitter: must be a fraction from 0 (none) to below 1, e.g. 0.2".into(),
            ));
        }
        if self.delivery.lease <= self.delivery.request_timeout {
            return Err(ConfigError(
                "delivery.lease: must be longer than delivery.request_timeout, or a slow attempt \
                 would be claimed again while it runs"
                    .into(),
            ));
        }
        if self.server.max_connections == 0 {
            return Err(ConfigError(
                "server.max_connections: must be at least 1".into(),
            ));
        }
        if self.server.request_timeout <= self.graph.timeout + self.pacing.max_wait {
            return Err(ConfigError(format!(
                "server.request_timeout ({:?}) must be longer than graph.timeout ({:?}) + pacing.max_wait ({:?}), or a send still waiting on Graph is cut off with a 503 although Meta may accept it",
                self.server.request_timeout, self.graph.timeout, self.pacing.max_wait
            )));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError(
                "database.max_connections: must be at least 1".into(),
            ));
        }
        if self.database.sqlite_wal_autocheckpoint == 0 {
            return Err(ConfigError(
                "database.sqlite_wal_autocheckpoint: must be at least 1 (0 never checkpoints, \
                 so the WAL would grow without bound)"
                    .into(),
            ));
        }
        if !self.security.master_key.expose_secret().is_empty() {
            self.security.decoded_master_key()?;
        }
        self.security.decoded_previous_master_keys()?;
        for (key, value) in [
            (
                "security.failed_auth_per_minute",
                self.security.failed_auth_per_minute,
            ),
            (
                "security.failed_auth_burst",
                self.security.failed_auth_burst,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError(format!("{key}: must be at least 1")));
            }
        }
        self.server.trusted_proxy_nets()?;
        self.media.validate()?;
        self.provisioning.validate()?;
        self.pacing.validate()?;
        self.writer.validate()?;
        // A queued send holds its lease through the whole exchange with Graph, plus the few
        // seconds of claims a worker keeps in hand: a shorter lease lets another claim send it too.
        if self.pacing.broadcast_lease < self.graph.timeout + std::time::Duration::from_secs(10) {
            return Err(ConfigError(format!(
                "pacing.broadcast_lease ({:?}) must be at least graph.timeout ({:?}) + 10s: a send still waiting for Graph's answer must not be claimed again",
                self.pacing.broadcast_lease, self.graph.timeout
            )));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| {
            ConfigError(format!(
                "log.level: {e}; use a tracing filter such as \"info\""
            ))
        })?;
        Ok(())
    }

    /// The public base URL without a trailing slash, if configured.
    pub fn public_url(&self) -> Option<&str> {
        let url = self.server.public_url.trim_end_matches('/');
        (!url.is_empty()).then_some(url)
    }
}

impl DatabaseConfig {
    pub fn backend(&self) -> Result<Backend, ConfigError> {
        let url = self.url.expose_secret();
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(ConfigError(
                "database.url: must start with sqlite:// or postgres:// (e.g. sqlite://data/wagate.db)"
                    .into(),
            ))
        }
    }

    /// For SQLite, the folder holding the database file (where a generated master key goes).
    pub fn sqlite_data_dir(&self) -> Option<PathBuf> {
        let url = self.url.expose_secret();
        let path = url
            .strip_prefix("sqlite://")
            .or(url.strip_prefix("sqlite:"))?;
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() || path == ":memory:" {
            return None;
        }
        Some(
            Path::new(path)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        )
    }
}

impl SecurityConfig {
    pub fn decoded_master_key(&self) -> Result<[u8; 32], ConfigError> {
        decode_master_key(self.master_key.expose_secret())
    }

    pub fn master_key_is_empty(&self) -> bool {
        self.master_key.expose_secret().is_empty()
    }

    pub fn decoded_previous_master_keys(&self) -> Result<Vec<[u8; 32]>, ConfigError> {
        self.previous_master_keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                decode_master_key(key.expose_secret()).map_err(|e| {
                    ConfigError(e.0.replacen(
                        "security.master_key",
                        &format!("security.previous_master_keys[{i}]"),
                        1,
                    ))
                })
            })
            .collect()
    }
}

/// Decodes a base64 master key, insisting on exactly 32 bytes.
pub fn decode_master_key(encoded: &str) -> Result<[u8; 32], ConfigError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| {
            ConfigError(
                "security.master_key: not valid base64; generate one with `openssl rand -base64 32`"
                    .into(),
            )
        })?;
    bytes.try_into().map_err(|bytes: Vec<u8>| {
        ConfigError(format!(
            "security.master_key: decodes to {} bytes, expected 32; generate one with `openssl rand -base64 32`",
            bytes.len()
        ))
    })
}

fn describe_figment_error(error: figment::Error) -> ConfigError {
    let messages: Vec<String> = error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            if key.is_empty() {
                format!("{}{source}", e.kind)
            } else {
                format!("{key}: {}{source}", e.kind)
            }
        })
        .collect();
    ConfigError(messages.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented() {
        let config = Config::defaults();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.database.backend().unwrap(), Backend::Sqlite);
        assert_eq!(
            config.database.sqlite_data_dir().unwrap(),
            PathBuf::from("data")
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let mut config = Config::defaults();
        config.database.url = "postgres://u:hunter2@db/x".to_string().into();
        config.meta.app_secret = "s3cr3t-app".to_string().into();
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("s3cr3t-app"), "{debug}");
    }

    #[test]
    fn numeric_ids_from_the_environment_stay_strings() {
        let figment = Figment::new()
            .merge(Toml::string(DEFAULT_CONFIG_TOML))
            .merge(figment::providers::Serialized::default(
                "meta.app_id",
                900000000000001u64,
            ))
            .merge(figment::providers::Serialized::default(
                "meta.embedded_signup_config_id",
                "0123",
            ));
        let config = Config::from_figment(figment).unwrap();
        assert_eq!(config.meta.app_id, "900000000000001");
        assert_eq!(config.meta.embedded_signup_config_id, "0123");
        let mut bad = Config::defaults();
        bad.onboarding.graph_version = "23".into();
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("graph_version"));
        bad.onboarding.graph_version = "v24.0".into();
        bad.meta.app_id = "12ab".into();
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("meta.app_id"));
    }

    #[test]
    fn a_wal_that_never_checkpoints_is_refused() {
        let mut config = Config::defaults();
        assert_eq!(config.database.ping_after_idle, Duration::from_secs(1));
        assert_eq!(config.database.sqlite_wal_autocheckpoint, 1_000);
        config.database.sqlite_wal_autocheckpoint = 0;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("database.sqlite_wal_autocheckpoint"), "{err}");
    }

    #[test]
    fn master_key_must_be_32_bytes() {
        assert!(decode_master_key("not base64!").is_err());
        let err = decode_master_key("AAAA").unwrap_err().to_string();
        assert!(err.contains("expected 32"), "{err}");
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(decode_master_key(&key).unwrap(), [7u8; 32]);
    }
}
