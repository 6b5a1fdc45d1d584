//! Keeps this instance's caches honest about changes made elsewhere: another instance behind the
//! load balancer, the admin CLI, an operator's UPDATE. The store's change feed says what changed
//! (see `store::cache_changes`); this forgets it, so a revoked key or a deleted number stops
//! working everywhere within a second instead of after `cache.ttl`.

use std::time::Duration;

use tokio::sync::mpsc;

use super::auth::Authenticator;
use super::number_directory::NumberDirectory;
use crate::store::{CacheChange, DynStore};

/// Watches the store's change feed until `stop` is cancelled.
pub async fn run(
    store: DynStore,
    auth: Authenticator,
    numbers: NumberDirectory,
    poll: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let (changes, mut received) = mpsc::channel(256);
    let feed = tokio::spawn(async move { store.watch_cache_changes(changes, poll).await });
    loop {
        let change = tokio::select! {
            _ = stop.cancelled() => break,
            change = received.recv() => change,
        };
        let Some(change) = change else { break };
        apply(&auth, &numbers, change).await;
    }
    // Dropping the receiver ends the feed at its next send; abort it too, as it may be waiting.
    drop(received);
    feed.abort();
}

async fn apply(auth: &Authenticator, numbers: &NumberDirectory, change: CacheChange) {
    tracing::debug!(?change, "forgetting cached entries changed elsewhere");
    metrics::counter!("wagate_cache_invalidations_total", "change" => change_label(&change))
        .increment(1);
    match change {
        CacheChange::Numbers => numbers.invalidate(),
        CacheChange::ApiKey { key_sha256 } => auth.invalidate_api_key(&key_sha256).await,
        CacheChange::Everything => {
            numbers.invalidate();
            auth.invalidate_all_api_keys();
        }
    }
}

fn change_label(change: &CacheChange) -> &'static str {
    match change {
        CacheChange::Numbers => "numbers",
        CacheChange::ApiKey { .. } => "api_key",
        CacheChange::Everything => "everything",
    }
}
