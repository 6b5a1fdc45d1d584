//! Ends idle conversations in the background (each instance may run it: the update is one
//! statement, so concurrent sweeps cannot conflict), and drops statuses parked for messages that
//! never arrived.

use std::time::Duration;

use crate::config::ConversationsConfig;
use crate::store::DynStore;

/// How long a status waits for its message before it is dropped (sent outside wagate).
const PARKED_STATUS_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

pub async fn run(store: DynStore, config: ConversationsConfig) {
    let inactivity =
        chrono::Duration::from_std(config.inactivity).unwrap_or(chrono::Duration::hours(24));
    let parked_ttl = chrono::Duration::from_std(PARKED_STATUS_TTL).expect("constant fits");
    let mut tick = tokio::time::interval(config.sweep_interval);
    loop {
        tick.tick().await;
        let now = crate::store::now();
        match store.end_idle_conversations(now - inactivity, now).await {
            Ok(0) => {}
            Ok(ended) => tracing::info!(ended, "ended idle conversations"),
            Err(error) => tracing::warn!(%error, "conversation sweep failed; will retry"),
        }
        if let Err(error) = store.delete_parked_statuses_before(now - parked_ttl).await {
            tracing::warn!(%error, "parked status cleanup failed; will retry");
        }
    }
}
