//! Keeps each number's Meta-reported values (quality, name status, throughput, messaging limit,
//! official-business-account badge, two-step PIN) close to what Graph says: read at connect,
//! then again once every `graph.number_refresh_interval`, by whichever instance claims the
//! number first. A row is written only when Graph's answer differs, since every write to a
//! number invalidates the number caches of every instance.
//!
//! Between refreshes the webhooks that announce changes (`phone_number_quality_update`,
//! `account_update`) apply them at once (see `account_state`).

use std::time::Duration;

use super::number_directory::NumberDirectory;
use crate::graph::{GraphCallError, GraphClient};
use crate::store::DynStore;

/// Numbers looked at per pass.
const BATCH: u32 = 50;

/// Refreshes due numbers until the process ends; `interval` zero disables it.
pub async fn run(
    store: DynStore,
    numbers: NumberDirectory,
    graph: GraphClient,
    interval: Duration,
) {
    if interval.is_zero() {
        return;
    }
    let Ok(age) = chrono::Duration::from_std(interval) else {
        return;
    };
    // Look for due numbers often enough that none waits much past its interval.
    let mut tick = tokio::time::interval(interval.min(Duration::from_secs(60)));
    loop {
        tick.tick().await;
        let now = crate::store::now();
        match refresh_due(&store, &numbers, &graph, now - age, now).await {
            Ok(0) => {}
            Ok(changed) => tracing::info!(changed, "phone-number details refreshed from Graph"),
            Err(error) => tracing::warn!(%error, "phone-number refresh failed; will retry"),
        }
    }
}

/// One pass: claims and refreshes numbers not refreshed since `cutoff`; returns how many
/// changed.
pub async fn refresh_due(
    store: &DynStore,
    numbers: &NumberDirectory,
    graph: &GraphClient,
    cutoff: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<u64, crate::store::StoreError> {
    let mut changed = 0;
    for number in store.numbers_due_for_refresh(cutoff, BATCH).await? {
        // Another instance may have taken it since the read above.
        if !store.claim_refresh(number.internal_id, cutoff, now).await? {
            continue;
        }
        let Some(config) = numbers.number(&number.phone_number_id).await? else {
            continue;
        };
        use secrecy::ExposeSecret as _;
        let node = graph
            .phone_number(
                super::verify::VERSION,
                config.access_token.expose_secret(),
                &number.phone_number_id,
            )
            .await;
        match node {
            Ok(node) => {
                let mut details = super::verify::details_of(node);
                // Only Meta's registration state would change it; wagate's `status` stays.
                details.status = None;
                if store.save_number_details(&number, &details, now).await? {
                    changed += 1;
                }
            }
            Err(GraphCallError::Refused { message, .. }) => tracing::warn!(
                phone_number_id = %number.phone_number_id,
                %message,
                "Graph refused the details refresh; check the number's access token (PATCH a new one)"
            ),
            Err(error) => tracing::debug!(
                phone_number_id = %number.phone_number_id,
                %error,
                "Graph unreachable for the details refresh; next pass tries again"
            ),
        }
    }
    Ok(changed)
}
