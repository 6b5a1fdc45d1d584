//! Shared application state handed to every handler.

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::crypto::SecretBox;
use crate::graph::GraphClient;
use crate::store::DynStore;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: DynStore,
    pub secrets: SecretBox,
    pub auth: Authenticator,
    pub graph: GraphClient,
}

impl AppState {
    pub fn new(config: Arc<Config>, store: DynStore, secrets: SecretBox) -> anyhow::Result<Self> {
        let auth = Authenticator::new(store.clone(), secrets.clone(), &config.cache);
        let graph = GraphClient::new(&config.graph)?;
        Ok(Self {
            config,
            store,
            secrets,
            auth,
            graph,
        })
    }
}
