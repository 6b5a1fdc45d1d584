//! One budget across instances: every instance writes a heartbeat row each `pacing.heartbeat`
//! and paces each number at `rate / live`, where live counts the rows seen within
//! `pacing.instance_ttl`. Every instance counts from the same table, so the shares add up to at
//! most the rate; an instance counts itself before it serves (`join`), and one that stops cleanly
//! removes its row so the others take its share at once. A killed instance's share is unused for
//! up to `instance_ttl`: the combined rate errs below the limit, never above it. An instance that
//! joins others sends nothing for its first heartbeat plus `max_wait` (until they have all
//! counted it and the slots they reserved at their old share have gone).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Pacer;
use crate::config::PacingConfig;
use crate::store::DynStore;

/// Writes this instance's first heartbeat and reads the live count, before anything is served.
pub async fn join(pacer: &Pacer, store: &DynStore, config: &PacingConfig) {
    beat(pacer, store, config).await;
    if pacer.live_instances() > 1 {
        // The others count this instance at their next heartbeat, and the slots they reserved
        // before that (up to max_wait ahead) are at their old, larger share; until both have
        // passed this one sends nothing, so the shares never add up to more than the rate.
        pacer.hold_until_counted(
            std::time::Instant::now() + config.heartbeat + config.max_wait + HEARTBEAT_SLACK,
        );
    }
}

/// Time for a heartbeat's write and the others' read to land.
const HEARTBEAT_SLACK: std::time::Duration = std::time::Duration::from_millis(200);

/// Heartbeats until `stop`, then leaves the table.
pub async fn run(
    pacer: Arc<Pacer>,
    store: DynStore,
    config: PacingConfig,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(config.heartbeat);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        beat(&pacer, &store, &config).await;
        pacer.report();
    }
    if let Err(error) = store.forget_pacing_instance(pacer.instance_id).await {
        tracing::debug!(%error, "could not remove this instance's pacing heartbeat");
    }
}

async fn beat(pacer: &Pacer, store: &DynStore, config: &PacingConfig) {
    let now = crate::store::now();
    let live_since = now - chrono::Duration::from_std(config.instance_ttl).unwrap_or_default();
    match store
        .pacing_heartbeat(pacer.instance_id, now, live_since)
        .await
    {
        Ok(live) => pacer.set_live_instances(live),
        // Keep the last count: a database blip must not let every instance take the whole rate.
        Err(error) => {
            tracing::warn!(%error, "pacing heartbeat failed; keeping the last instance count")
        }
    }
}
