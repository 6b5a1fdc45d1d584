//! What pacing keeps in the database (migration 0016): the live instances a number's rate is
//! shared between, a number's own rate and pause, and a project's pair-rate mode. Shared SQL for
//! both backends, like `common.rs`. Writes to `phone_numbers` and `projects` fire the
//! cache-change trigger, so every instance's number cache (which the pacer reads) follows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreResult;

#[async_trait]
pub trait Pacing {
    /// Says `instance` is alive at `now`, forgets instances unseen for long, and answers how many
    /// (this one included) were seen since `live_since`.
    async fn pacing_heartbeat(
        &self,
        instance: Uuid,
        now: DateTime<Utc>,
        live_since: DateTime<Utc>,
    ) -> StoreResult<u32>;
    /// Removes `instance` (a clean shutdown), so the others take its share at once.
    async fn forget_pacing_instance(&self, instance: Uuid) -> StoreResult<()>;
    /// Sets (or, with `None`, clears) a number's own rate.
    async fn set_number_pacing_rate(
        &self,
        number: Uuid,
        rate: Option<i64>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Pauses a number's sends until `until`, unless it is already paused longer.
    async fn pause_number(&self, number: Uuid, until: DateTime<Utc>) -> StoreResult<bool>;
    async fn project_pair_rate_mode(&self, project: Uuid) -> StoreResult<Option<String>>;
    async fn set_project_pair_rate_mode(
        &self,
        project: Uuid,
        mode: Option<&str>,
    ) -> StoreResult<()>;
}

/// Implements [`Pacing`] for a store type with a `pool` field.
macro_rules! impl_pacing {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::pacing::Pacing for $store {
            async fn pacing_heartbeat(
                &self,
                instance: uuid::Uuid,
                now: chrono::DateTime<chrono::Utc>,
                live_since: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<u32> {
                sqlx::query(
                    "insert into pacing_instances (instance_id, seen_at) values ($1, $2) \
                     on conflict (instance_id) do update set seen_at = excluded.seen_at",
                )
                .bind(instance)
                .bind(now)
                .execute(&self.pool)
                .await?;
                // Rows of instances gone for a minute are of no use to anyone.
                sqlx::query("delete from pacing_instances where seen_at < $1")
                    .bind(now - chrono::Duration::minutes(1))
                    .execute(&self.pool)
                    .await?;
                let (live,): (i64,) =
                    sqlx::query_as("select count(*) from pacing_instances where seen_at >= $1")
                        .bind(live_since)
                        .fetch_one(&self.pool)
                        .await?;
                Ok(u32::try_from(live).unwrap_or(u32::MAX).max(1))
            }

            async fn forget_pacing_instance(
                &self,
                instance: uuid::Uuid,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query("delete from pacing_instances where instance_id = $1")
                    .bind(instance)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn set_number_pacing_rate(
                &self,
                number: uuid::Uuid,
                rate: Option<i64>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                let done = sqlx::query(
                    "update phone_numbers set pacing_rate = $2, updated_at = $3 \
                     where internal_id = $1",
                )
                .bind(number)
                .bind(rate)
                .bind(now)
                .execute(&self.pool)
                .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::store::StoreError::NotFound);
                }
                Ok(())
            }

            async fn pause_number(
                &self,
                number: uuid::Uuid,
                until: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query(
                    "update phone_numbers set paused_until = $2 where internal_id = $1 \
                     and (paused_until is null or paused_until < $2)",
                )
                .bind(number)
                .bind(until)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn project_pair_rate_mode(
                &self,
                project: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<String>> {
                let row: Option<(Option<String>,)> =
                    sqlx::query_as("select pair_rate_mode from projects where id = $1")
                        .bind(project)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.and_then(|(mode,)| mode))
            }

            async fn set_project_pair_rate_mode(
                &self,
                project: uuid::Uuid,
                mode: Option<&str>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query("update projects set pair_rate_mode = $2 where id = $1")
                    .bind(project)
                    .bind(mode)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_pacing;
