//! Projects (tenants) and their API keys.

use uuid::Uuid;

use crate::crypto::{self, ApiKeyChecksum};
use crate::store::{ApiKeyRecord, NewApiKey, Project, Store, StoreResult};

/// A key as it is shown exactly once, at creation.
#[derive(Debug)]
pub struct IssuedApiKey {
    pub record: ApiKeyRecord,
    pub plaintext: String,
}

/// Creates a project and its first API key.
pub async fn create_project(
    store: &dyn Store,
    checksum: &ApiKeyChecksum,
    name: &str,
) -> StoreResult<(Project, IssuedApiKey)> {
    let project = store.create_project(name).await?;
    let key = issue_api_key(store, checksum, project.id).await?;
    Ok((project, key))
}

/// Issues a new API key for a project, with the checksum keyed by the master key; only its
/// SHA-256 and a display prefix are stored.
pub async fn issue_api_key(
    store: &dyn Store,
    checksum: &ApiKeyChecksum,
    project_id: Uuid,
) -> StoreResult<IssuedApiKey> {
    store.get_project(project_id).await?;
    let plaintext = checksum.new_key();
    let record = store
        .create_api_key(NewApiKey {
            project_id,
            key_sha256: crypto::sha256_hex(plaintext.as_bytes()),
            display_prefix: crypto::api_key_display_prefix(&plaintext),
        })
        .await?;
    Ok(IssuedApiKey { record, plaintext })
}

/// On an empty database, creates the default project and returns its key (printed once).
pub async fn bootstrap_default_project(
    store: &dyn Store,
    checksum: &ApiKeyChecksum,
) -> StoreResult<Option<(Project, IssuedApiKey)>> {
    // Atomic in the store: instances starting together on an empty database make one project.
    let Some(project) = store.create_first_project("default").await? else {
        return Ok(None);
    };
    let key = issue_api_key(store, checksum, project.id).await?;
    Ok(Some((project, key)))
}
