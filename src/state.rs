//! Shared application state handed to every handler.

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::crypto::SecretBox;
use crate::store::DynStore;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: DynStore,
    pub secrets: SecretBox,
    pub auth: Authenticator,
}

impl AppState {
    pub fn new(config: Arc<Config>, store: DynStore, secrets: SecretBox) -> Self {
        let auth = Authenticator::new(store.clone(), secrets.clone(), &config.cache);
        Self {
            config,
            store,
            secrets,
            auth,
        }
    }
}
