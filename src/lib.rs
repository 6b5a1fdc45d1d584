//! wagate: a self-hosted gateway for Meta's WhatsApp Cloud API.
//!
//! See ARCHITECTURE.md for the map. [`App::build`] wires config, store and router; [`App::run`]
//! serves until the shutdown future resolves.

// Layers, top to bottom (ARCHITECTURE.md; `tests/layering.rs` enforces it): a module imports only
// from its own layer or the ones below.
pub mod cli;
pub mod delivery;
pub mod domain;
pub mod http;
pub mod sandbox;
pub mod store;
// Leaves: import nothing of wagate's but each other's configuration.
pub mod config;
pub mod crypto;
pub mod destination_guard;
pub mod graph;
pub mod telemetry;
pub mod telephony;
pub mod time;
pub mod types;
pub mod vault;

mod background;

#[cfg(test)]
mod property_tests;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::config::{Backend, Config};
use crate::crypto::{ApiKeyChecksum, SecretBox};
use crate::domain::projects::{self, IssuedApiKey};
use crate::http::state::AppState;
use crate::store::{DynStore, Project};

/// A wired, bound, not yet serving gateway.
pub struct App {
    pub state: AppState,
    listener: TcpListener,
    /// Set when this start created the default project: its key, to be shown once.
    pub bootstrap: Option<(Project, IssuedApiKey)>,
}

impl App {
    /// Opens the store (migrating it), loads the master key, bootstraps an empty database and
    /// binds `server.listen` (port 0 picks a free port, as tests do).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        telemetry::metrics::handle();
        warn_about_unsafe_settings(&config);
        let store = store::connect(&config.database).await?;
        let master_key = load_master_key(&config)?;
        let previous = config.security.decoded_previous_master_keys()?;
        let secrets = SecretBox::with_previous(&master_key, &previous);
        let checksum = ApiKeyChecksum::with_previous(&master_key, &previous);
        // SQL migrations cannot encrypt: values sealed before they were bound to their row are
        // re-sealed here, before anything is served (idempotent, and safe with other instances
        // starting at the same time).
        domain::reseal::reseal(&*store, &secrets, domain::reseal::Scope::Unbound)
            .await
            .context("re-sealing stored secrets")?;
        let bootstrap = if config.security.bootstrap_default_project {
            projects::bootstrap_default_project(&*store, &checksum)
                .await
                .context("creating the default project")?
        } else {
            None
        };
        let reuse_port = config.server.runtime == config::RuntimeShape::ThreadPerCore;
        let listener = http::server::bind(config.server.listen, reuse_port)
            .with_context(|| format!("binding server.listen = {}", config.server.listen))?;
        let bound = listener.local_addr()?;
        let state = AppState::new(Arc::new(config), store, secrets, checksum, bound)?;
        let legacy = state
            .auth
            .load_legacy_keys()
            .await
            .context("reading which legacy API keys are live")?;
        warn_about_legacy_keys(&state.config, &legacy);
        warn_about_graph_versions(&state);
        Ok(Self {
            state,
            listener,
            bootstrap,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn store(&self) -> DynStore {
        self.state.store.clone()
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let server = &self.state.config.server;
        let settings = http::server::ServeSettings {
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
            park_after: Some(server.park_after).filter(|park| !park.is_zero()),
            max_connections: server.max_connections,
            shutdown_grace: server.shutdown_grace,
        };
        let stop_workers = tokio_util::sync::CancellationToken::new();
        let shutdown = drain_then_stop(
            shutdown,
            self.state.lifecycle.clone(),
            server.drain_delay,
            stop_workers.clone(),
        );
        let mut deliveries = None;
        let stop_background = tokio_util::sync::CancellationToken::new();
        if self.state.config.pacing.enabled {
            // Counted before the first request, so this instance never paces at a share that
            // leaves it out.
            let pacing = self.state.config.pacing.clone();
            domain::pacing::instances::join(&self.state.pacer, &self.state.store, &pacing).await;
            tokio::spawn(domain::pacing::instances::run(
                self.state.pacer.clone(),
                self.state.store.clone(),
                pacing,
                stop_workers.clone(),
            ));
        }
        // Not switchable: without it, changes made elsewhere wait for `cache.ttl` here.
        tokio::spawn(domain::cache_sync::run(
            self.state.store.clone(),
            self.state.auth.clone(),
            self.state.numbers.clone(),
            self.state.config.cache.change_poll_interval,
            stop_workers.clone(),
        ));
        if self.state.config.workers.delivery {
            deliveries = Some(delivery::worker::start(
                self.state.store.clone(),
                self.state.numbers.clone(),
                self.state.config.delivery.clone(),
                self.state.delivery_wake.clone(),
                stop_workers.clone(),
                self.state.config.server.shutdown_grace,
            )?);
            let (store, wake) = (self.state.store.clone(), self.state.delivery_wake.clone());
            tokio::spawn(async move { store.listen_for_deliveries(wake).await });
            // The webhook events that become due later (batches, quiet and idle conversations).
            tokio::spawn(domain::webhooks::sweeps::flush_buffers(
                self.state.store.clone(),
                self.state.config.delivery.clone(),
                self.state.delivery_wake.clone(),
                stop_workers.clone(),
            ));
            tokio::spawn(domain::webhooks::sweeps::sweep_conversations(
                self.state.store.clone(),
                self.state.numbers.clone(),
                self.state.config.delivery.clone(),
                self.state.config.conversations.clone(),
                self.state.delivery_wake.clone(),
                stop_workers.clone(),
            ));
        }
        if self.state.config.workers.broadcasts {
            domain::broadcasts::worker::start(
                domain::broadcasts::worker::BroadcastWorker {
                    store: self.state.store.clone(),
                    numbers: self.state.numbers.clone(),
                    graph: self.state.graph.clone(),
                    pacer: self.state.pacer.clone(),
                    writer: self.state.writer.clone(),
                    config: self.state.config.pacing.clone(),
                    graph_version: self.state.config.graph.minimum_version.clone(),
                },
                self.state.broadcast_wake.clone(),
                stop_workers.clone(),
            );
        }
        if let (Some(vault), true) = (
            self.state.vault.clone(),
            self.state.config.workers.media_downloads,
        ) {
            let links = graph::LinkClient::new(
                &self.state.config.media,
                self.state.config.graph.connect_timeout,
            )?;
            let downloads = domain::media::MediaDownloads::new(
                self.state.store.clone(),
                self.state.numbers.clone(),
                self.state.graph.clone(),
                links,
                vault.clone(),
                self.state.config.media.clone(),
            );
            // Stopped last: database connections this runtime opened serve the whole pool and
            // die with it, so it outlives the HTTP drain and the deliveries' hand-back.
            let expiry = domain::media::expire_old_files(
                self.state.store.clone(),
                vault,
                self.state.config.media.clone(),
                stop_background.clone(),
            );
            let (wake, stop) = (self.state.media_wake.clone(), stop_background.clone());
            background::spawn("wagate-media", async move {
                tokio::spawn(expiry);
                downloads.run(wake, stop).await;
            })?;
        }
        if self.state.config.workers.conversation_sweeper {
            tokio::spawn(domain::sweeper::run(
                self.state.store.clone(),
                self.state.config.conversations.clone(),
            ));
            if self.state.config.graph.verify_numbers {
                tokio::spawn(domain::number_refresh::run(
                    self.state.store.clone(),
                    self.state.numbers.clone(),
                    self.state.graph.clone(),
                    self.state.config.graph.number_refresh_interval,
                ));
            }
            tokio::spawn(domain::provisioning::run_release_sweep(
                self.state.provisioning.clone(),
                self.state.config.provisioning.release_interval,
            ));
        }
        let shape = (server.runtime, server.http_threads());
        let app = http::HttpApp::new(self.state);
        let http_threads = match shape {
            (config::RuntimeShape::MultiThread, _) => {
                http::server::serve(self.listener, app, settings, shutdown).await;
                None
            }
            (config::RuntimeShape::ThreadPerCore, threads) => Some(
                http::per_core::serve(self.listener, threads, app, settings, shutdown)
                    .await
                    .context("starting the HTTP threads (server.runtime = \"thread_per_core\")")?,
            ),
        };
        stop_workers.cancel();
        if let Some(deliveries) = deliveries {
            // Drains alongside the HTTP side, within the same grace (it started at the signal).
            let _ = deliveries.await;
        }
        stop_background.cancel();
        if let Some(http_threads) = http_threads {
            http_threads.release().await;
        }
        Ok(())
    }
}

/// On the signal: readiness fails and responses carry `Connection: close` (`drain_delay`, so a
/// load balancer moves away), workers stop claiming, then the listener closes.
async fn drain_then_stop(
    signal: impl Future<Output = ()>,
    lifecycle: std::sync::Arc<http::lifecycle::Lifecycle>,
    drain_delay: std::time::Duration,
    stop_workers: tokio_util::sync::CancellationToken,
) {
    signal.await;
    lifecycle.start_draining();
    stop_workers.cancel();
    if !drain_delay.is_zero() {
        tracing::info!(?drain_delay, "stopping: answering with Connection: close and /readyz 503 before closing the listener");
        tokio::time::sleep(drain_delay).await;
    }
}

/// Settings that switch a protection off are allowed (tests and closed networks need them) but
/// never silent.
fn warn_about_unsafe_settings(config: &Config) {
    if !config.graph.verify_numbers {
        tracing::warn!(
            "graph.verify_numbers = false: numbers are connected without asking Graph whether the token controls them; any project can claim any phone_number_id"
        );
    }
    if config.delivery.allow_private_networks {
        tracing::warn!(
            "delivery.allow_private_networks = true: webhook destinations may be loopback, private or cloud-metadata addresses on any port; only for tests and closed networks"
        );
    }
    if config.media.vault && config.media.allow_private_links {
        tracing::warn!(
            "media.allow_private_links = true: media sent by link may be fetched from loopback, private or cloud-metadata addresses on any port; only for tests and closed networks"
        );
    }
    let local_media = !config.media.store.trim().starts_with("s3://");
    if config.media.vault
        && local_media
        && config.database.backend().ok() == Some(config::Backend::Postgres)
    {
        tracing::warn!(
            store = %config.media.store,
            "media.store is a local folder while the database is PostgreSQL: with several instances, every instance must see the same folder (a shared volume), or files kept by one are missing on the others; use an s3:// bucket for several instances"
        );
    }
}

/// The box that seals with the current master key and also opens values sealed with
/// `security.previous_master_keys`.
pub fn secret_box(config: &Config) -> anyhow::Result<SecretBox> {
    Ok(SecretBox::with_previous(
        &load_master_key(config)?,
        &config.security.decoded_previous_master_keys()?,
    ))
}

/// Keys issued before keyed checksums work while `security.accept_legacy_api_keys` is on; the
/// operator should rotate them, so every start says how many are left and which.
fn warn_about_legacy_keys(config: &Config, prefixes: &[String]) {
    if prefixes.is_empty() {
        return;
    }
    let shown = prefixes
        .iter()
        .take(20)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if config.security.accept_legacy_api_keys {
        tracing::warn!(
            count = prefixes.len(),
            prefixes = %shown,
            "live API keys without a keyed checksum (issued before it existed) are still accepted; rotate them (issue a new key, revoke the old one), then set security.accept_legacy_api_keys = false"
        );
    } else {
        tracing::warn!(
            count = prefixes.len(),
            prefixes = %shown,
            "security.accept_legacy_api_keys = false: these unrevoked legacy API keys are refused; revoke them"
        );
    }
}

/// The master key from config; on SQLite with none configured, the one in the data folder,
/// generated on first run. PostgreSQL deployments must configure it so every instance shares it.
pub fn load_master_key(config: &Config) -> anyhow::Result<[u8; 32]> {
    let configured = config.security.master_key.expose_secret();
    if !configured.is_empty() {
        return Ok(config.security.decoded_master_key()?);
    }
    match config.database.backend()? {
        Backend::Postgres => anyhow::bail!(
            "invalid configuration: security.master_key is required with PostgreSQL (all instances must share it); \
             generate one with `openssl rand -base64 32` and set WAGATE__SECURITY__MASTER_KEY"
        ),
        Backend::Sqlite => match config.database.sqlite_data_dir() {
            Some(dir) => load_or_create_key_file(&dir.join("master.key")),
            None => {
                tracing::warn!("in-memory database without security.master_key: using a throwaway key");
                Ok(config::decode_master_key(&crypto::new_master_key())?)
            }
        },
    }
}

fn load_or_create_key_file(path: &Path) -> anyhow::Result<[u8; 32]> {
    if path.exists() {
        let encoded = std::fs::read_to_string(path)
            .with_context(|| format!("reading the master key from {}", path.display()))?;
        return config::decode_master_key(&encoded)
            .map_err(|e| anyhow::anyhow!("{e} (in {})", path.display()));
    }
    let encoded = crypto::new_master_key();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        store::create_private_dir(dir)?;
    }
    write_private(path, &encoded)
        .with_context(|| format!("writing a new master key to {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated a new master key; back it up with the database");
    Ok(config::decode_master_key(&encoded)?)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())
}

/// wagate's own Graph calls (the signup completion, number verification) stop working when
/// their version retires: say so at start, while there is time to move
/// `onboarding.graph_version` (and to upgrade wagate for verification's version).
fn warn_about_graph_versions(state: &AppState) {
    let today = store::now().date_naive();
    for (what, version) in [
        (
            "onboarding.graph_version",
            state.config.onboarding.graph_version.as_str(),
        ),
        ("number verification", domain::verify::VERSION),
    ] {
        if let Some(problem) = state.graph.versions.warning_for(version, today) {
            tracing::warn!(%what, %version, "Graph API {problem}: wagate's own calls for {what} will fail after it; set a newer version (see graph.version_expiry)");
        }
    }
}
