//! Shared application state handed to every handler.

use std::sync::Arc;

use crate::config::{Backend, Config};
use crate::crypto::{ApiKeyChecksum, SecretBox};
use crate::destination_guard::DestinationPolicy;
use crate::domain::api_keys::ApiKeys;
use crate::domain::auth::Authenticator;
use crate::domain::customers::Customers;
use crate::domain::number_directory::NumberDirectory;
use crate::domain::onboarding::Onboarding;
use crate::domain::phone_numbers::PhoneNumbers;
use crate::domain::provisioning::NumberProvisioning;
use crate::domain::record::IngestSettings;
use crate::domain::setup_links::SetupLinks;
use crate::domain::spill::Spill;
use crate::domain::webhooks::resource::WebhookResources;
use crate::domain::writer::WriterSettings;
use crate::domain::writer::{Writer, WriterParts};
use crate::graph::GraphClient;
use crate::http::client_addr::ClientAddrs;
use crate::http::origin::PublicOrigin;
use crate::store::DynStore;
use crate::vault::MediaVault;

/// Cheap to clone (one `Arc`): axum clones the state for every extractor of every request.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// Everything handlers share.
pub struct Services {
    pub config: Arc<Config>,
    pub store: DynStore,
    pub secrets: SecretBox,
    pub auth: Authenticator,
    /// Who a request comes from (the peer, or `X-Forwarded-For` from a trusted proxy).
    pub clients: ClientAddrs,
    /// Number configurations by phone number ID, WABA and token, from memory.
    pub numbers: NumberDirectory,
    /// Where the links wagate hands out point.
    pub origin: PublicOrigin,
    pub graph: GraphClient,
    pub writer: Writer,
    pub phone_numbers: PhoneNumbers,
    pub customers: Customers,
    pub api_keys: ApiKeys,
    pub setup_links: SetupLinks,
    /// Webhook resources (kapso and meta), per number and per project.
    pub webhooks: WebhookResources,
    /// The hosted page's side of setup links: lookup by token and completion.
    pub onboarding: Onboarding,
    /// Phone numbers for setup links: provider accounts, pools, reservations, inbound codes.
    pub provisioning: NumberProvisioning,
    /// Wakes this instance's delivery worker when deliveries are queued.
    pub delivery_wake: Arc<tokio::sync::Notify>,
    /// Wakes this instance's media downloads (the writer, after batches).
    pub media_wake: Arc<tokio::sync::Notify>,
    /// The media vault's store; `None` with `media.vault = false`.
    pub vault: Option<MediaVault>,
    /// Queued sends (broadcasts).
    pub broadcasts: crate::domain::broadcasts::Broadcasts,
    /// Wakes this instance's broadcast worker when a broadcast starts.
    pub broadcast_wake: Arc<tokio::sync::Notify>,
    /// Each number's send budget (proxied and queued sends).
    pub pacer: Arc<crate::domain::pacing::Pacer>,
    /// Set on SIGTERM: responses ask for `Connection: close`, `/readyz` answers 503.
    pub lifecycle: Arc<super::lifecycle::Lifecycle>,
}

impl AppState {
    /// Builds the state and starts the writer tasks (so it must run inside the runtime).
    pub fn new(
        config: Arc<Config>,
        store: DynStore,
        secrets: SecretBox,
        checksum: ApiKeyChecksum,
        bound: std::net::SocketAddr,
    ) -> anyhow::Result<Self> {
        let origin = PublicOrigin::new(&config, bound);
        let numbers = NumberDirectory::new(store.clone(), secrets.clone(), &config.cache);
        let auth = Authenticator::new(store.clone(), numbers.clone(), checksum.clone(), &config);
        let clients = ClientAddrs::new(config.server.trusted_proxy_nets()?);
        let graph = GraphClient::new(&config.graph)?;
        let delivery_wake = Arc::new(tokio::sync::Notify::new());
        let broadcast_wake = Arc::new(tokio::sync::Notify::new());
        let broadcasts = crate::domain::broadcasts::Broadcasts::new(
            store.clone(),
            numbers.clone(),
            config.pacing.clone(),
            broadcast_wake.clone(),
        );
        let media_wake = Arc::new(tokio::sync::Notify::new());
        let spill = match config.writer.spill_file(&config.database) {
            Some(path) => Some(Spill::open(&path, config.writer.spill_max_bytes)?),
            None => None,
        };
        let writer = Writer::start(
            store.clone(),
            writer_settings(&config, store.backend()),
            WriterParts {
                deliveries: delivery_wake.clone(),
                media: media_wake.clone(),
                spill,
                numbers: numbers.clone(),
            },
        );
        let vault = if config.media.vault {
            Some(MediaVault::open(
                &config.media,
                config.database.sqlite_data_dir(),
            )?)
        } else {
            None
        };
        let verifier = config.graph.verify_numbers.then(|| graph.clone());
        let destinations = DestinationPolicy::from_config(&config.delivery);
        let phone_numbers = PhoneNumbers::new(
            store.clone(),
            secrets.clone(),
            verifier,
            destinations,
            numbers.clone(),
        )
        .in_sandbox_mode(config.sandbox_mode)
        .with_vault(vault.clone());
        let provisioning =
            NumberProvisioning::new(store.clone(), secrets.clone(), &config.provisioning);
        let onboarding = Onboarding::new(
            store.clone(),
            graph.clone(),
            phone_numbers.clone(),
            provisioning.clone(),
            &config,
        );
        let webhooks = WebhookResources::new(
            store.clone(),
            secrets.clone(),
            destinations,
            numbers.clone(),
            phone_numbers.clone(),
        );
        Ok(Self(Arc::new(Services {
            customers: Customers::new(store.clone(), numbers.clone()),
            api_keys: ApiKeys::new(store.clone(), auth.clone(), checksum),
            setup_links: SetupLinks::new(store.clone(), secrets.clone(), provisioning.clone())
                .in_sandbox_mode(config.sandbox_mode),
            provisioning,
            phone_numbers,
            webhooks,
            onboarding,
            writer,
            delivery_wake,
            media_wake,
            vault,
            broadcasts,
            broadcast_wake,
            pacer: Arc::new(crate::domain::pacing::Pacer::new(&config.pacing)),
            lifecycle: super::lifecycle::Lifecycle::new(),
            config,
            store,
            secrets,
            auth,
            clients,
            numbers,
            origin,
            graph,
        })))
    }
}

fn writer_settings(config: &Config, backend: Backend) -> WriterSettings {
    let shards = match (config.writer.shards, backend) {
        (0, Backend::Sqlite) => 1,
        // Fewer shards mean bigger batches and fewer commits; measured on 2 cores, one shard
        // ingests twice what eight did (bench/ingest.sh). The database gets the other half of
        // the cores, so one shard per two cores, at most eight.
        (0, Backend::Postgres) => std::thread::available_parallelism()
            .map_or(1, |n| n.get() / 2)
            .clamp(1, 8),
        (n, _) => n,
    };
    WriterSettings {
        shards,
        max_batch: config.writer.max_batch,
        retry_buffer: config.writer.retry_buffer,
        retry_interval: config.writer.retry_interval,
        ingest: IngestSettings {
            inactivity: chrono::Duration::from_std(config.conversations.inactivity)
                .unwrap_or(chrono::Duration::hours(24)),
            media_vault: config.media.vault,
        },
    }
}
