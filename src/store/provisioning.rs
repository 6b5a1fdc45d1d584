//! Phone-number provisioning (migration 0014): the project's provider account
//! (`phone_number_providers`) and its numbers (`provisioned_numbers`: the pool and the numbers
//! bought live for setup links). Shared SQL for both backends, like `common.rs`.
//!
//! A number is reserved for one setup link in one statement that picks the oldest available
//! number of a country (`for update skip locked` on PostgreSQL, the single writer on SQLite), and
//! a partial unique index lets a link hold at most one number, so two links (or two instances)
//! never get the same number and one link never gets two. Releasing a reservation clears the
//! code it received, so the next customer never sees the previous one's code.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Page, StoreResult};

pub(crate) const PROVIDER_COLUMNS: &str = "id, project_id, kind, account_sid, auth_token_sealed, \
    auth_token_key_id, created_at, updated_at";

pub(crate) const PROVISIONED_COLUMNS: &str = "id, project_id, phone_number, country_iso, \
    area_code, provider, provider_ref, origin, state, setup_link_id, phone_number_id, last_code, \
    last_message, last_code_at, created_at, updated_at";

/// A project's provider account. The auth token is sealed (`SealedField::ProviderToken`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ProviderRow {
    pub id: Uuid,
    pub project_id: Uuid,
    /// `twilio`.
    pub kind: String,
    pub account_sid: String,
    pub auth_token_sealed: Vec<u8>,
    pub auth_token_key_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One of a project's numbers for provisioning.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ProvisionedNumber {
    pub id: Uuid,
    pub project_id: Uuid,
    /// E.164.
    pub phone_number: String,
    pub country_iso: String,
    pub area_code: Option<String>,
    /// `twilio`, or `None` for a number the project routes itself.
    pub provider: Option<String>,
    /// The provider's id for it (Twilio's `PN…` sid).
    pub provider_ref: Option<String>,
    /// `pool` (added by the project) or `purchased` (bought live for a link).
    pub origin: String,
    /// `available|reserved|in_use|released|failed`.
    pub state: String,
    pub setup_link_id: Option<Uuid>,
    /// Meta's phone number id once a signup connected it.
    pub phone_number_id: Option<String>,
    pub last_code: Option<String>,
    pub last_message: Option<String>,
    pub last_code_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The states a number can be in.
pub const NUMBER_STATES: [&str; 5] = ["available", "reserved", "in_use", "released", "failed"];

#[derive(Debug, Clone, Default)]
pub struct PoolFilter {
    pub country_iso: Option<String>,
    pub state: Option<String>,
}

/// How many numbers a project has in a country, by state.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PoolCount {
    pub country_iso: String,
    pub state: String,
    pub count: i64,
}

/// What removing a pool number did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolRemoval {
    Removed,
    NotFound,
    /// The number is held (`reserved` or `in_use`).
    InUse(String),
}

#[async_trait]
pub trait Provisioning: Send + Sync {
    /// Creates or replaces the project's provider account of `row.kind`.
    async fn upsert_provider(&self, row: &ProviderRow) -> StoreResult<ProviderRow>;
    async fn provider(&self, project_id: Uuid, kind: &str) -> StoreResult<Option<ProviderRow>>;
    /// `false` when there was none.
    async fn delete_provider(&self, project_id: Uuid, kind: &str) -> StoreResult<bool>;

    /// Adds a number; [`super::StoreError::Conflict`] when the project already holds it.
    async fn insert_provisioned_number(
        &self,
        row: &ProvisionedNumber,
    ) -> StoreResult<ProvisionedNumber>;
    async fn provisioned_number(
        &self,
        project_id: Uuid,
        id: Uuid,
    ) -> StoreResult<Option<ProvisionedNumber>>;
    async fn list_provisioned_numbers(
        &self,
        project_id: Uuid,
        filter: &PoolFilter,
        page: u32,
        per_page: u32,
    ) -> StoreResult<Page<ProvisionedNumber>>;
    async fn pool_counts(&self, project_id: Uuid) -> StoreResult<Vec<PoolCount>>;
    /// Whether the project has any number (not released) in one of `countries`.
    async fn has_pool_numbers(&self, project_id: Uuid, countries: &[String]) -> StoreResult<bool>;
    async fn remove_provisioned_number(
        &self,
        project_id: Uuid,
        id: Uuid,
    ) -> StoreResult<PoolRemoval>;
    /// Moves a number from one of `from` to `to` (e.g. `released` after the provider let it
    /// go); `None` when it was in none of them.
    async fn set_provisioned_state(
        &self,
        project_id: Uuid,
        id: Uuid,
        from: &[&str],
        to: &str,
    ) -> StoreResult<Option<ProvisionedNumber>>;

    /// The number a link holds (`reserved` or `in_use`).
    async fn reservation(&self, setup_link_id: Uuid) -> StoreResult<Option<ProvisionedNumber>>;
    /// The numbers these links hold.
    async fn reservations(&self, setup_link_ids: &[Uuid]) -> StoreResult<Vec<ProvisionedNumber>>;
    /// Reserves the oldest available pool number of `country_iso` (one in `area_code` first) for
    /// an active link that holds none; `None` when there is no such number or the link is no
    /// longer active (or already holds one: see [`Provisioning::reservation`]).
    async fn reserve_pool_number(
        &self,
        project_id: Uuid,
        setup_link_id: Uuid,
        country_iso: &str,
        area_code: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ProvisionedNumber>>;
    /// Stores a number bought for `setup_link_id`: reserved for it when the link is still
    /// active and holds none, else `available` in the pool (a paid number is never lost).
    async fn insert_purchased_number(
        &self,
        row: &ProvisionedNumber,
        setup_link_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<ProvisionedNumber>;
    /// Gives a link's reservation back to the pool (its code cleared); `true` when it held one.
    async fn release_reservation(
        &self,
        setup_link_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Gives back every reservation whose link is revoked, expired or used without it; returns
    /// how many.
    async fn release_stale_reservations(&self, now: DateTime<Utc>) -> StoreResult<u64>;
    /// Records a verification code (or the message without one) that reached a reserved number;
    /// `None` when the project holds no reserved number `phone_number`.
    async fn record_received_code(
        &self,
        project_id: Uuid,
        phone_number: &str,
        code: Option<&str>,
        message: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ProvisionedNumber>>;
}

/// Returns reservations to the pool: the code they received is the customer's, not the next one's.
pub(crate) const RELEASE_SET: &str =
    "state = 'available', setup_link_id = null, last_code = null, \
    last_message = null, last_code_at = null";

/// Implements [`Provisioning`] for a store type with a `pool` field that implements `Dialect`.
macro_rules! impl_provisioning {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::provisioning::Provisioning for $store {
            async fn upsert_provider(
                &self,
                r: &$crate::store::provisioning::ProviderRow,
            ) -> $crate::store::StoreResult<$crate::store::provisioning::ProviderRow> {
                let sql = format!(
                    "insert into phone_number_providers ({cols}) values ($1, $2, $3, $4, $5, $6, \
                     $7, $8) on conflict (project_id, kind) do update set \
                     account_sid = excluded.account_sid, \
                     auth_token_sealed = excluded.auth_token_sealed, \
                     auth_token_key_id = excluded.auth_token_key_id, \
                     updated_at = excluded.updated_at returning {cols}",
                    cols = $crate::store::provisioning::PROVIDER_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(r.id)
                    .bind(r.project_id)
                    .bind(&r.kind)
                    .bind(&r.account_sid)
                    .bind(&r.auth_token_sealed)
                    .bind(&r.auth_token_key_id)
                    .bind(r.created_at)
                    .bind(r.updated_at)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn provider(
                &self,
                project_id: uuid::Uuid,
                kind: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::provisioning::ProviderRow>>
            {
                let sql = format!(
                    "select {} from phone_number_providers where project_id = $1 and kind = $2",
                    $crate::store::provisioning::PROVIDER_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(project_id)
                    .bind(kind)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn delete_provider(
                &self,
                project_id: uuid::Uuid,
                kind: &str,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query(
                    "delete from phone_number_providers where project_id = $1 and kind = $2",
                )
                .bind(project_id)
                .bind(kind)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn insert_provisioned_number(
                &self,
                n: &$crate::store::provisioning::ProvisionedNumber,
            ) -> $crate::store::StoreResult<$crate::store::provisioning::ProvisionedNumber> {
                let sql = format!(
                    "insert into provisioned_numbers ({cols}) values ($1, $2, $3, $4, $5, $6, \
                     $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) returning {cols}",
                    cols = $crate::store::provisioning::PROVISIONED_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(n.id)
                    .bind(n.project_id)
                    .bind(&n.phone_number)
                    .bind(&n.country_iso)
                    .bind(&n.area_code)
                    .bind(&n.provider)
                    .bind(&n.provider_ref)
                    .bind(&n.origin)
                    .bind(&n.state)
                    .bind(n.setup_link_id)
                    .bind(&n.phone_number_id)
                    .bind(&n.last_code)
                    .bind(&n.last_message)
                    .bind(n.last_code_at)
                    .bind(n.created_at)
                    .bind(n.updated_at)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn provisioned_number(
                &self,
                project_id: uuid::Uuid,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<
                Option<$crate::store::provisioning::ProvisionedNumber>,
            > {
                let sql = format!(
                    "select {} from provisioned_numbers where project_id = $1 and id = $2",
                    $crate::store::provisioning::PROVISIONED_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(project_id)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_provisioned_numbers(
                &self,
                project_id: uuid::Uuid,
                filter: &$crate::store::provisioning::PoolFilter,
                page: u32,
                per_page: u32,
            ) -> $crate::store::StoreResult<
                $crate::store::Page<$crate::store::provisioning::ProvisionedNumber>,
            > {
                use $crate::store::lists::{bind_args, Arg};
                let count = $crate::store::provisioning::pool_sql(project_id, filter, true);
                let (total_count,): (i64,) = bind_args!(sqlx::query_as(&count.text), &count.args)
                    .fetch_one(&self.pool)
                    .await?;
                let mut sql = $crate::store::provisioning::pool_sql(project_id, filter, false);
                sql.push(
                    " limit ? offset ?",
                    [
                        Arg::Int(i64::from(per_page)),
                        Arg::Int(i64::from(page.saturating_sub(1)) * i64::from(per_page)),
                    ],
                );
                let items = bind_args!(sqlx::query_as(&sql.text), &sql.args)
                    .fetch_all(&self.pool)
                    .await?;
                Ok($crate::store::Page { items, total_count })
            }

            async fn pool_counts(
                &self,
                project_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::provisioning::PoolCount>> {
                Ok(sqlx::query_as(
                    "select country_iso, state, count(*) as count from provisioned_numbers \
                     where project_id = $1 group by country_iso, state \
                     order by country_iso, state",
                )
                .bind(project_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn has_pool_numbers(
                &self,
                project_id: uuid::Uuid,
                countries: &[String],
            ) -> $crate::store::StoreResult<bool> {
                if countries.is_empty() {
                    return Ok(false);
                }
                let sql = format!(
                    "select count(*) from provisioned_numbers where project_id = $1 \
                     and state <> 'released' and country_iso in ({})",
                    $crate::store::provisioning::placeholders(2, countries.len())
                );
                let mut query = sqlx::query_as(&sql).bind(project_id);
                for country in countries {
                    query = query.bind(country);
                }
                let (n,): (i64,) = query.fetch_one(&self.pool).await?;
                Ok(n > 0)
            }

            async fn remove_provisioned_number(
                &self,
                project_id: uuid::Uuid,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<$crate::store::provisioning::PoolRemoval> {
                use $crate::store::provisioning::PoolRemoval;
                let done = sqlx::query(
                    "delete from provisioned_numbers where project_id = $1 and id = $2 \
                     and state in ('available', 'released', 'failed')",
                )
                .bind(project_id)
                .bind(id)
                .execute(&self.pool)
                .await?;
                if done.rows_affected() == 1 {
                    return Ok(PoolRemoval::Removed);
                }
                let state: Option<(String,)> = sqlx::query_as(
                    "select state from provisioned_numbers where project_id = $1 and id = $2",
                )
                .bind(project_id)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(match state {
                    Some((state,)) => PoolRemoval::InUse(state),
                    None => PoolRemoval::NotFound,
                })
            }

            async fn set_provisioned_state(
                &self,
                project_id: uuid::Uuid,
                id: uuid::Uuid,
                from: &[&str],
                to: &str,
            ) -> $crate::store::StoreResult<
                Option<$crate::store::provisioning::ProvisionedNumber>,
            > {
                let sql = format!(
                    "update provisioned_numbers set state = $3, updated_at = $4 \
                     where project_id = $1 and id = $2 and state in ({}) returning {}",
                    $crate::store::provisioning::placeholders(5, from.len()),
                    $crate::store::provisioning::PROVISIONED_COLUMNS
                );
                let mut query = sqlx::query_as(&sql)
                    .bind(project_id)
                    .bind(id)
                    .bind(to)
                    .bind($crate::store::now());
                for state in from {
                    query = query.bind(*state);
                }
                Ok(query.fetch_optional(&self.pool).await?)
            }

            async fn reservation(
                &self,
                setup_link_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<
                Option<$crate::store::provisioning::ProvisionedNumber>,
            > {
                let sql = format!(
                    "select {} from provisioned_numbers where setup_link_id = $1 \
                     and state in ('reserved', 'in_use')",
                    $crate::store::provisioning::PROVISIONED_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(setup_link_id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn reservations(
                &self,
                setup_link_ids: &[uuid::Uuid],
            ) -> $crate::store::StoreResult<Vec<$crate::store::provisioning::ProvisionedNumber>>
            {
                let mut out = Vec::new();
                // Pages hold at most a few hundred links; one indexed lookup each keeps the SQL
                // the same on both backends.
                for id in setup_link_ids {
                    out.extend(self.reservation(*id).await?);
                }
                Ok(out)
            }

            async fn reserve_pool_number(
                &self,
                project_id: uuid::Uuid,
                setup_link_id: uuid::Uuid,
                country_iso: &str,
                area_code: Option<&str>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<
                Option<$crate::store::provisioning::ProvisionedNumber>,
            > {
                // One statement: the pick and the link's state are read where the row is
                // written, and the partial unique index refuses a second number for the link.
                let sql = format!(
                    "update provisioned_numbers set state = 'reserved', setup_link_id = $2, \
                     last_code = null, last_message = null, last_code_at = null, updated_at = $5 \
                     where id = (select id from provisioned_numbers \
                       where project_id = $1 and country_iso = $3 and state = 'available' \
                       and exists (select 1 from setup_links l where l.id = $2 \
                         and l.status = 'active' and l.expires_at > $5) \
                       and not exists (select 1 from provisioned_numbers h \
                         where h.setup_link_id = $2 and h.state in ('reserved', 'in_use')) \
                       order by case when area_code = $4 then 0 else 1 end, created_at, id \
                       limit 1{}) \
                     returning {}",
                    <Self as $crate::store::dialect::Dialect>::SKIP_LOCKED,
                    $crate::store::provisioning::PROVISIONED_COLUMNS
                );
                let result = sqlx::query_as(&sql)
                    .bind(project_id)
                    .bind(setup_link_id)
                    .bind(country_iso)
                    .bind(area_code)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await;
                match result {
                    Ok(row) => Ok(row),
                    // A concurrent request for the same link reserved first.
                    Err(e) => match $crate::store::StoreError::from(e) {
                        $crate::store::StoreError::Conflict { .. } => Ok(None),
                        other => Err(other),
                    },
                }
            }

            async fn insert_purchased_number(
                &self,
                row: &$crate::store::provisioning::ProvisionedNumber,
                setup_link_id: uuid::Uuid,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::provisioning::ProvisionedNumber> {
                let mut reserved = row.clone();
                reserved.state = "reserved".into();
                reserved.setup_link_id = Some(setup_link_id);
                let (active,): (i64,) = sqlx::query_as(
                    "select count(*) from setup_links l where l.id = $1 and l.status = 'active' \
                     and l.expires_at > $2 and not exists (select 1 from provisioned_numbers h \
                     where h.setup_link_id = $1 and h.state in ('reserved', 'in_use'))",
                )
                .bind(setup_link_id)
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
                if active == 1 {
                    match self.insert_provisioned_number(&reserved).await {
                        Err($crate::store::StoreError::Conflict { constraint })
                            if constraint
                                .as_deref()
                                .is_none_or(|c| c.contains("link")) => {}
                        other => return other,
                    }
                }
                // The link ended or got a number meanwhile: the bought number joins the pool.
                let mut pooled = row.clone();
                pooled.state = "available".into();
                pooled.setup_link_id = None;
                self.insert_provisioned_number(&pooled).await
            }

            async fn release_reservation(
                &self,
                setup_link_id: uuid::Uuid,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<bool> {
                let sql = format!(
                    "update provisioned_numbers set {}, updated_at = $2 \
                     where setup_link_id = $1 and state = 'reserved'",
                    $crate::store::provisioning::RELEASE_SET
                );
                let done = sqlx::query(&sql)
                    .bind(setup_link_id)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn release_stale_reservations(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<u64> {
                let sql = format!(
                    "update provisioned_numbers set {}, updated_at = $1 \
                     where state = 'reserved' and (setup_link_id is null or setup_link_id in \
                     (select id from setup_links where status <> 'active' or expires_at <= $1))",
                    $crate::store::provisioning::RELEASE_SET
                );
                Ok(sqlx::query(&sql)
                    .bind(now)
                    .execute(&self.pool)
                    .await?
                    .rows_affected())
            }

            async fn record_received_code(
                &self,
                project_id: uuid::Uuid,
                phone_number: &str,
                code: Option<&str>,
                message: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<
                Option<$crate::store::provisioning::ProvisionedNumber>,
            > {
                let sql = format!(
                    "update provisioned_numbers set last_code = $3, last_message = $4, \
                     last_code_at = $5, updated_at = $5 \
                     where project_id = $1 and phone_number = $2 and state = 'reserved' \
                     returning {}",
                    $crate::store::provisioning::PROVISIONED_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(project_id)
                    .bind(phone_number)
                    .bind(code)
                    .bind(message)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?)
            }
        }
    };
}

pub(crate) use impl_provisioning;

/// `$first, $first+1, …` (`count` of them).
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn pool_sql(project_id: Uuid, filter: &PoolFilter, count: bool) -> super::lists::Sql {
    use super::lists::{Arg, Sql};
    let mut sql = Sql::new(&if count {
        "select count(*) from provisioned_numbers where".to_owned()
    } else {
        format!("select {PROVISIONED_COLUMNS} from provisioned_numbers where")
    });
    sql.push(" project_id = ?", [Arg::Uuid(project_id)]);
    if let Some(country) = &filter.country_iso {
        sql.push(" and country_iso = ?", [Arg::Text(country.clone())]);
    }
    if let Some(state) = &filter.state {
        sql.push(" and state = ?", [Arg::Text(state.clone())]);
    }
    if !count {
        sql.text.push_str(" order by created_at desc, id desc");
    }
    sql
}
