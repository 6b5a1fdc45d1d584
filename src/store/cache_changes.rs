//! The change feed behind cross-instance cache invalidation: what another writer (another
//! instance, the admin CLI, an operator's UPDATE) changed in the rows the hot path caches.
//!
//! The schema produces the feed (migration `0010_cache_changes`): triggers on `phone_numbers` and
//! `api_keys` NOTIFY on PostgreSQL and append to the `cache_changes` log on SQLite, in the writing
//! transaction. This module reads it: a LISTEN connection on PostgreSQL (delivered at commit, so
//! within milliseconds), a poll of the log on SQLite (where every writer shares one file).

use std::time::Duration;

use sqlx::{PgPool, SqlitePool};
use tokio::sync::mpsc;

/// The NOTIFY channel the PostgreSQL triggers publish on.
pub(super) const CHANNEL: &str = "wagate_cache";

/// Rows of the SQLite log older than this are pruned: every live poller has long read them.
const SQLITE_LOG_KEEP_SECONDS: i64 = 3600;

/// Something cached may be stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheChange {
    /// A phone number was connected, changed or deleted: forget every number configuration.
    Numbers,
    /// An API key changed (it was revoked): forget the key with this SHA-256.
    ApiKey { key_sha256: String },
    /// The feed (re)started after an interruption, so changes may have been missed: forget
    /// everything.
    Everything,
}

impl CacheChange {
    /// The payload a PostgreSQL trigger sent.
    fn from_notification(payload: &str) -> Self {
        match payload.split_once(':') {
            Some(("api_key", sha)) => Self::ApiKey {
                key_sha256: sha.to_owned(),
            },
            _ if payload == "numbers" => Self::Numbers,
            // A payload this version does not know (a newer instance's): be safe.
            _ => Self::Everything,
        }
    }

    fn from_log_row(kind: &str, key_sha256: Option<String>) -> Self {
        match (kind, key_sha256) {
            ("numbers", _) => Self::Numbers,
            ("api_key", Some(key_sha256)) => Self::ApiKey { key_sha256 },
            _ => Self::Everything,
        }
    }
}

/// PostgreSQL: LISTENs until the receiver is gone; after a lost connection, listens again and
/// then reports `Everything` (notifications sent meanwhile are lost).
pub(super) async fn listen_postgres(pool: &PgPool, changes: mpsc::Sender<CacheChange>) {
    while !changes.is_closed() {
        let listened = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
            listener.listen(CHANNEL).await?;
            // Anything changed between start-up (or the lost connection) and now is covered.
            if changes.send(CacheChange::Everything).await.is_err() {
                return Ok::<(), sqlx::Error>(());
            }
            loop {
                let notification = listener.recv().await?;
                let change = CacheChange::from_notification(notification.payload());
                if changes.send(change).await.is_err() {
                    return Ok(());
                }
            }
        }
        .await;
        if let Err(error) = listened {
            // Not `Everything` now: while the database is away, warm caches are what keeps the
            // proxy serving. The reconnect reports `Everything` (notifications sent meanwhile
            // are lost), and `cache.ttl` bounds staleness until then.
            tracing::warn!(
                %error,
                "cache-invalidation LISTEN connection lost; caches expire by cache.ttl until it is back"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// SQLite: polls the `cache_changes` log every `interval` until the receiver is gone.
pub(super) async fn poll_sqlite(
    pool: &SqlitePool,
    changes: mpsc::Sender<CacheChange>,
    interval: Duration,
) {
    let mut last_seen: Option<i64> = None;
    let mut polls: u64 = 0;
    while !changes.is_closed() {
        match read_log(pool, &mut last_seen).await {
            Ok(found) => {
                for change in found {
                    if changes.send(change).await.is_err() {
                        return;
                    }
                }
            }
            Err(error) => {
                // The log keeps what happened meanwhile: the next read catches up, and warm
                // caches keep serving while the database is away.
                tracing::warn!(%error, "reading the cache_changes log failed; retrying");
            }
        }
        polls += 1;
        if polls % 1000 == 1 {
            prune_log(pool).await;
        }
        tokio::time::sleep(interval).await;
    }
}

/// Changes logged after `last_seen`; the first call finds where the log ends and reports
/// `Everything`, so nothing cached before it can stay stale.
async fn read_log(
    pool: &SqlitePool,
    last_seen: &mut Option<i64>,
) -> Result<Vec<CacheChange>, sqlx::Error> {
    let Some(after) = *last_seen else {
        let end: Option<i64> = sqlx::query_scalar("select max(id) from cache_changes")
            .fetch_one(pool)
            .await?;
        *last_seen = Some(end.unwrap_or(0));
        // Whatever was cached before this point is covered.
        return Ok(vec![CacheChange::Everything]);
    };
    let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "select id, kind, key_sha256 from cache_changes where id > $1 order by id limit 1000",
    )
    .bind(after)
    .fetch_all(pool)
    .await?;
    if let Some((id, _, _)) = rows.last() {
        *last_seen = Some(*id);
    }
    let mut changes: Vec<CacheChange> = rows
        .into_iter()
        .map(|(_, kind, key)| CacheChange::from_log_row(&kind, key))
        .collect();
    // A bulk write logs one row per number; one `Numbers` forgets them all.
    changes.dedup();
    Ok(changes)
}

async fn prune_log(pool: &SqlitePool) {
    let pruned = sqlx::query(
        "delete from cache_changes where created_at < cast(strftime('%s', 'now') as integer) - $1",
    )
    .bind(SQLITE_LOG_KEEP_SECONDS)
    .execute(pool)
    .await;
    if let Err(error) = pruned {
        tracing::debug!(%error, "pruning cache_changes failed; the next prune retries");
    }
}

#[cfg(test)]
mod tests {
    use super::CacheChange;

    #[test]
    fn notifications_parse_and_unknown_ones_forget_everything() {
        assert_eq!(
            CacheChange::from_notification("numbers"),
            CacheChange::Numbers
        );
        assert_eq!(
            CacheChange::from_notification("api_key:ab12"),
            CacheChange::ApiKey {
                key_sha256: "ab12".into()
            }
        );
        assert_eq!(
            CacheChange::from_notification("templates"),
            CacheChange::Everything
        );
        assert_eq!(
            CacheChange::from_log_row("api_key", None),
            CacheChange::Everything
        );
    }
}
