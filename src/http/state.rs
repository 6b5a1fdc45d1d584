//! Shared application state handed to every handler.

use std::sync::Arc;

use crate::config::{Backend, Config};
use crate::crypto::SecretBox;
use crate::domain::auth::Authenticator;
use crate::domain::ingest::IngestSettings;
use crate::domain::writer::Writer;
use crate::domain::writer::WriterSettings;
use crate::graph::GraphClient;
use crate::store::DynStore;

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
    pub graph: GraphClient,
    pub writer: Writer,
    /// Wakes this instance's delivery worker when deliveries are queued.
    pub delivery_wake: Arc<tokio::sync::Notify>,
}

impl AppState {
    /// Builds the state and starts the writer tasks (so it must run inside the runtime).
    pub fn new(config: Arc<Config>, store: DynStore, secrets: SecretBox) -> anyhow::Result<Self> {
        let auth = Authenticator::new(store.clone(), secrets.clone(), &config.cache);
        let graph = GraphClient::new(&config.graph)?;
        let delivery_wake = Arc::new(tokio::sync::Notify::new());
        let writer = Writer::start(
            store.clone(),
            writer_settings(&config, store.backend()),
            delivery_wake.clone(),
        );
        Ok(Self(Arc::new(Services {
            writer,
            delivery_wake,
            config,
            store,
            secrets,
            auth,
            graph,
        })))
    }
}

impl Services {
    /// The Graph client used to verify numbers, unless `graph.verify_numbers` is off.
    pub fn verifier(&self) -> Option<&GraphClient> {
        self.config.graph.verify_numbers.then_some(&self.graph)
    }

    /// Which webhook destinations the configuration allows.
    pub fn destinations(&self) -> crate::destination_guard::DestinationPolicy {
        crate::destination_guard::DestinationPolicy::from_config(&self.config.delivery)
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
        },
    }
}
