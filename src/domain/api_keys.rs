//! A project's API keys as a service: issue (the key is shown once), list, revoke. A revoked key
//! stops working at once on the instance that revoked it; other instances hear of it through the
//! store's change feed (`cache_sync`) within a second.

use uuid::Uuid;

use super::auth::Authenticator;
use super::projects::{self, IssuedApiKey};
use crate::crypto::ApiKeyChecksum;
use crate::store::{ApiKeyRecord, DynStore, Project, StoreError, StoreResult};

#[derive(Clone)]
pub struct ApiKeys {
    store: DynStore,
    auth: Authenticator,
    checksum: ApiKeyChecksum,
}

impl ApiKeys {
    pub fn new(store: DynStore, auth: Authenticator, checksum: ApiKeyChecksum) -> Self {
        Self {
            store,
            auth,
            checksum,
        }
    }

    /// Creates a project and its first key.
    pub async fn create_project(&self, name: &str) -> StoreResult<(Project, IssuedApiKey)> {
        projects::create_project(&*self.store, &self.checksum, name).await
    }

    pub async fn issue(&self, project_id: Uuid) -> StoreResult<IssuedApiKey> {
        projects::issue_api_key(&*self.store, &self.checksum, project_id).await
    }

    /// The project's keys, oldest first, revoked ones included (with their time).
    pub async fn list(&self, project_id: Uuid) -> StoreResult<Vec<ApiKeyRecord>> {
        self.store.list_api_keys(project_id).await
    }

    /// Revokes one of the project's keys (`NotFound` for any other id, another project's
    /// included). Revoking a revoked key keeps its first revocation time.
    pub async fn revoke(&self, project_id: Uuid, key_id: Uuid) -> StoreResult<ApiKeyRecord> {
        let owned = self
            .store
            .list_api_keys(project_id)
            .await?
            .iter()
            .any(|k| k.id == key_id);
        if !owned {
            return Err(StoreError::NotFound);
        }
        let record = self.store.revoke_api_key(key_id).await?;
        self.auth.key_revoked(&record).await;
        Ok(record)
    }
}
