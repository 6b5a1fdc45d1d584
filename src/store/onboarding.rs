//! Customers and their setup links (the onboarding half of the store, a supertrait of
//! [`super::Store`]). Shared SQL for both backends, like `common.rs`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Customer, Page, StoreResult};

#[derive(Debug, Clone, Default)]
pub struct CustomerFilter {
    /// Case-insensitive substring of the name.
    pub name: Option<String>,
    pub external_customer_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct CustomerPatch {
    pub name: Option<String>,
    pub external_customer_id: Option<Option<String>>,
}

pub(crate) const SETUP_LINK_COLUMNS: &str = "id, project_id, customer_id, token_sha256, \
    token_sealed, token_key_id, status, success_redirect_url, failure_redirect_url, \
    allowed_connection_types, theme_config, language, provision_phone_number, \
    phone_number_country_isos, phone_number_area_code, reconnect_phone_number, \
    reconnect_phone_number_id, meta_billing_mode, whatsapp_setup_status, whatsapp_setup_error, \
    phone_number_id, business_account_id, expires_at, used_at, revoked_at, created_at, updated_at";

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SetupLinkRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub customer_id: Uuid,
    pub token_sha256: String,
    pub token_sealed: Vec<u8>,
    pub token_key_id: String,
    /// As stored: `active|used|revoked|expired`; see [`SetupLinkRow::status_at`].
    pub status: String,
    pub success_redirect_url: Option<String>,
    pub failure_redirect_url: Option<String>,
    pub allowed_connection_types: String,
    pub theme_config: String,
    pub language: Option<String>,
    pub provision_phone_number: bool,
    pub phone_number_country_isos: String,
    pub phone_number_area_code: Option<String>,
    pub reconnect_phone_number: Option<String>,
    pub reconnect_phone_number_id: Option<String>,
    pub meta_billing_mode: Option<String>,
    pub whatsapp_setup_status: String,
    pub whatsapp_setup_error: Option<String>,
    pub phone_number_id: Option<String>,
    pub business_account_id: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl SetupLinkRow {
    /// The status as callers see it: an active link past its expiry is `expired`.
    pub fn status_at(&self, now: DateTime<Utc>) -> &str {
        if self.status == "active" && self.expires_at <= now {
            "expired"
        } else {
            &self.status
        }
    }

    pub fn connection_types(&self) -> Vec<&str> {
        self.allowed_connection_types
            .split(',')
            .filter(|t| !t.is_empty())
            .collect()
    }
}

#[derive(Debug, Clone, Default)]
pub struct SetupLinkFilter {
    /// `active|used|expired|revoked`, as [`SetupLinkRow::status_at`] reports it.
    pub status: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

/// Fields a PATCH may change.
#[derive(Debug, Clone, Default)]
pub struct SetupLinkPatch {
    pub revoke: bool,
    pub expires_at: Option<DateTime<Utc>>,
}

/// How a link ended up after its signup completed.
#[derive(Debug, Clone)]
pub struct SetupCompletion {
    pub phone_number_id: String,
    pub business_account_id: String,
}

#[async_trait]
pub trait Onboarding: Send + Sync {
    async fn list_customers(
        &self,
        project_id: Uuid,
        filter: &CustomerFilter,
        page: u32,
        per_page: u32,
    ) -> StoreResult<Page<Customer>>;
    async fn update_customer(
        &self,
        project_id: Uuid,
        id: Uuid,
        patch: &CustomerPatch,
    ) -> StoreResult<Customer>;
    /// Deletes a customer. With numbers connected: [`super::StoreError::Conflict`] unless
    /// `detach_numbers`, which keeps the numbers (connected to the project, without a customer).
    async fn delete_customer(
        &self,
        project_id: Uuid,
        id: Uuid,
        detach_numbers: bool,
    ) -> StoreResult<()>;
    /// Inserts a link; the customer's previous active link is revoked (or marked expired) in the
    /// same transaction.
    async fn create_setup_link(&self, link: &SetupLinkRow) -> StoreResult<SetupLinkRow>;
    async fn list_setup_links(
        &self,
        customer_id: Uuid,
        filter: &SetupLinkFilter,
        now: DateTime<Utc>,
        page: u32,
        per_page: u32,
    ) -> StoreResult<Page<SetupLinkRow>>;
    async fn setup_link(&self, customer_id: Uuid, id: Uuid) -> StoreResult<Option<SetupLinkRow>>;
    async fn setup_link_by_token(&self, token_sha256: &str) -> StoreResult<Option<SetupLinkRow>>;
    async fn update_setup_link(
        &self,
        customer_id: Uuid,
        id: Uuid,
        patch: &SetupLinkPatch,
        now: DateTime<Utc>,
    ) -> StoreResult<SetupLinkRow>;
    /// Marks an active, unexpired link used; `false` when it no longer was (used concurrently,
    /// revoked, expired).
    async fn complete_setup_link(
        &self,
        id: Uuid,
        completion: &SetupCompletion,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Records why a signup failed (the link stays usable).
    async fn fail_setup_link(&self, id: Uuid, error: &str, now: DateTime<Utc>) -> StoreResult<()>;
}

/// The stored-status condition for a filter status (expiry is applied when read).
fn status_clause(status: &str) -> &'static str {
    match status {
        "active" => " and status = 'active' and expires_at > ?",
        "expired" => " and (status = 'expired' or (status = 'active' and expires_at <= ?))",
        "used" => " and status = 'used'",
        _ => " and status = 'revoked'",
    }
}

pub(crate) fn setup_link_sql(
    customer_id: Uuid,
    filter: &SetupLinkFilter,
    now: DateTime<Utc>,
    count: bool,
) -> super::lists::Sql {
    use super::lists::{Arg, Sql};
    let mut sql = Sql::new(&if count {
        "select count(*) from setup_links where".to_owned()
    } else {
        format!("select {SETUP_LINK_COLUMNS} from setup_links where")
    });
    sql.push(" customer_id = ?", [Arg::Uuid(customer_id)]);
    if let Some(status) = &filter.status {
        let clause = status_clause(status);
        let args = if clause.contains('?') {
            vec![Arg::Time(now)]
        } else {
            vec![]
        };
        sql.push(clause, args);
    }
    if let Some(t) = filter.created_after {
        sql.push(" and created_at >= ?", [Arg::Time(t)]);
    }
    if let Some(t) = filter.created_before {
        sql.push(" and created_at <= ?", [Arg::Time(t)]);
    }
    if !count {
        sql.text.push_str(" order by created_at desc, id desc");
    }
    sql
}

pub(crate) fn customer_sql(
    project_id: Uuid,
    filter: &CustomerFilter,
    count: bool,
) -> super::lists::Sql {
    use super::lists::{Arg, Sql};
    let mut sql = Sql::new(&if count {
        "select count(*) from customers where".to_owned()
    } else {
        format!(
            "select {} from customers where",
            super::columns::CUSTOMER_COLUMNS
        )
    });
    sql.push(" project_id = ?", [Arg::Uuid(project_id)]);
    if let Some(name) = &filter.name {
        let escaped = name
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        sql.push(
            " and lower(name) like ? escape '\\'",
            [Arg::Text(format!("%{}%", escaped.to_lowercase()))],
        );
    }
    if let Some(external) = &filter.external_customer_id {
        sql.push(
            " and external_customer_id = ?",
            [Arg::Text(external.clone())],
        );
    }
    if !count {
        sql.text.push_str(" order by created_at desc, id desc");
    }
    sql
}

/// Gives back the numbers reserved by the customer's links that are no longer active (run in the
/// transaction that revoked them; binds the customer id and now).
pub(crate) fn release_customer_reservations_sql() -> String {
    format!(
        "update provisioned_numbers set {}, updated_at = $2 where state = 'reserved' \
         and setup_link_id in (select id from setup_links where customer_id = $1 \
         and (status <> 'active' or expires_at <= $2))",
        super::provisioning::RELEASE_SET
    )
}

/// Implements [`Onboarding`] for a store type with a `pool` field.
macro_rules! impl_onboarding {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::Onboarding for $store {
            async fn list_customers(
                &self,
                project_id: uuid::Uuid,
                filter: &$crate::store::CustomerFilter,
                page: u32,
                per_page: u32,
            ) -> $crate::store::StoreResult<
                $crate::store::Page<$crate::store::Customer>,
            > {
                use $crate::store::lists::{bind_args, Arg};
                let count = $crate::store::onboarding::customer_sql(project_id, filter, true);
                let (total_count,): (i64,) = bind_args!(sqlx::query_as(&count.text), &count.args)
                    .fetch_one(&self.pool)
                    .await?;
                let mut sql =
                    $crate::store::onboarding::customer_sql(project_id, filter, false);
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

            async fn update_customer(
                &self,
                project_id: uuid::Uuid,
                id: uuid::Uuid,
                patch: &$crate::store::CustomerPatch,
            ) -> $crate::store::StoreResult<$crate::store::Customer> {
                let sql = format!(
                    "update customers set name = coalesce($3, name), \
                             external_customer_id = case when $4 then $5 else \
                             external_customer_id end, \
                             updated_at = $6 where project_id = $1 and id = $2 returning {}",
                    $crate::store::columns::CUSTOMER_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(project_id)
                    .bind(id)
                    .bind(&patch.name)
                    .bind(patch.external_customer_id.is_some())
                    .bind(patch.external_customer_id.clone().flatten())
                    .bind($crate::store::now())
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn delete_customer(
                &self,
                project_id: uuid::Uuid,
                id: uuid::Uuid,
                detach_numbers: bool,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                let found: Option<(uuid::Uuid,)> =
                    sqlx::query_as("select id from customers where project_id = $1 and id = $2")
                        .bind(project_id)
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                if found.is_none() {
                    return Err($crate::store::StoreError::NotFound);
                }
                let (numbers,): (i64,) =
                    sqlx::query_as("select count(*) from phone_numbers where customer_id = $1")
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await?;
                if numbers > 0 {
                    if !detach_numbers {
                        return Err($crate::store::StoreError::Conflict {
                            constraint: Some("phone_numbers_customer".into()),
                        });
                    }
                    sqlx::query(
                        "update phone_numbers set customer_id = null, updated_at = $2 \
                     where customer_id = $1",
                    )
                    .bind(id)
                    .bind($crate::store::now())
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query("delete from customers where id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn create_setup_link(
                &self,
                l: &$crate::store::SetupLinkRow,
            ) -> $crate::store::StoreResult<$crate::store::SetupLinkRow> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "update setup_links set status = case when expires_at <= $2 then \
                             'expired' else 'revoked' end, \
                             revoked_at = case when expires_at <= $2 then revoked_at else $2 end, \
                             updated_at = $2 \
                             where customer_id = $1 and status = 'active'",
                )
                .bind(l.customer_id)
                .bind(l.created_at)
                .execute(&mut *tx)
                .await?;
                let sql = format!(
                    "insert into setup_links ({cols}) values ($1, $2, $3, $4, $5, $6, $7, \
                             $8, $9, $10, \
                             $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, \
                             $24, $25, $26, $27) \
                             returning {cols}",
                    cols = $crate::store::onboarding::SETUP_LINK_COLUMNS
                );
                let row = sqlx::query_as(&sql)
                    .bind(l.id)
                    .bind(l.project_id)
                    .bind(l.customer_id)
                    .bind(&l.token_sha256)
                    .bind(&l.token_sealed)
                    .bind(&l.token_key_id)
                    .bind(&l.status)
                    .bind(&l.success_redirect_url)
                    .bind(&l.failure_redirect_url)
                    .bind(&l.allowed_connection_types)
                    .bind(&l.theme_config)
                    .bind(&l.language)
                    .bind(l.provision_phone_number)
                    .bind(&l.phone_number_country_isos)
                    .bind(&l.phone_number_area_code)
                    .bind(&l.reconnect_phone_number)
                    .bind(&l.reconnect_phone_number_id)
                    .bind(&l.meta_billing_mode)
                    .bind(&l.whatsapp_setup_status)
                    .bind(&l.whatsapp_setup_error)
                    .bind(&l.phone_number_id)
                    .bind(&l.business_account_id)
                    .bind(l.expires_at)
                    .bind(l.used_at)
                    .bind(l.revoked_at)
                    .bind(l.created_at)
                    .bind(l.updated_at)
                    .fetch_one(&mut *tx)
                    .await?;
                // The revoked link's reserved number goes back to the pool with it.
                sqlx::query(&$crate::store::onboarding::release_customer_reservations_sql())
                    .bind(l.customer_id)
                    .bind(l.created_at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(row)
            }

            async fn list_setup_links(
                &self,
                customer_id: uuid::Uuid,
                filter: &$crate::store::SetupLinkFilter,
                now: chrono::DateTime<chrono::Utc>,
                page: u32,
                per_page: u32,
            ) -> $crate::store::StoreResult<
                $crate::store::Page<$crate::store::SetupLinkRow>,
            > {
                use $crate::store::lists::{bind_args, Arg};
                let count =
                    $crate::store::onboarding::setup_link_sql(customer_id, filter, now, true);
                let (total_count,): (i64,) = bind_args!(sqlx::query_as(&count.text), &count.args)
                    .fetch_one(&self.pool)
                    .await?;
                let mut sql =
                    $crate::store::onboarding::setup_link_sql(customer_id, filter, now, false);
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

            async fn setup_link(
                &self,
                customer_id: uuid::Uuid,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::SetupLinkRow>> {
                let sql = format!(
                    "select {} from setup_links where customer_id = $1 and id = $2",
                    $crate::store::onboarding::SETUP_LINK_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(customer_id)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn setup_link_by_token(
                &self,
                token_sha256: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::SetupLinkRow>> {
                let sql = format!(
                    "select {} from setup_links where token_sha256 = $1",
                    $crate::store::onboarding::SETUP_LINK_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(token_sha256)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn update_setup_link(
                &self,
                customer_id: uuid::Uuid,
                id: uuid::Uuid,
                patch: &$crate::store::SetupLinkPatch,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::SetupLinkRow> {
                let sql = format!(
                    "update setup_links set \
                             status = case when $3 and status = 'active' then 'revoked' else \
                             status end, \
                             revoked_at = case when $3 and status = 'active' then $5 else \
                             revoked_at end, \
                             expires_at = coalesce($4, expires_at), updated_at = $5 \
                             where customer_id = $1 and id = $2 returning {}",
                    $crate::store::onboarding::SETUP_LINK_COLUMNS
                );
                let mut tx = self.pool.begin().await?;
                let row = sqlx::query_as(&sql)
                    .bind(customer_id)
                    .bind(id)
                    .bind(patch.revoke)
                    .bind(patch.expires_at)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                if patch.revoke {
                    sqlx::query(&$crate::store::onboarding::release_customer_reservations_sql())
                        .bind(customer_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(row)
            }

            async fn complete_setup_link(
                &self,
                id: uuid::Uuid,
                completion: &$crate::store::SetupCompletion,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "update setup_links set status = 'used', used_at = $2, \
                             whatsapp_setup_status = 'completed', \
                             whatsapp_setup_error = null, phone_number_id = $3, \
                             business_account_id = $4, updated_at = $2 \
                             where id = $1 and status = 'active' and expires_at > $2",
                )
                .bind(id)
                .bind(now)
                .bind(&completion.phone_number_id)
                .bind(&completion.business_account_id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                // The number the link reserved is now the customer's (the domain checked that
                // the signup connected that very number).
                sqlx::query(
                    "update provisioned_numbers set state = 'in_use', phone_number_id = $2, \
                     updated_at = $3 where setup_link_id = $1 and state = 'reserved'",
                )
                .bind(id)
                .bind(&completion.phone_number_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn fail_setup_link(
                &self,
                id: uuid::Uuid,
                error: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "update setup_links set whatsapp_setup_status = 'failed', \
                             whatsapp_setup_error = $2, \
                             updated_at = $3 where id = $1",
                )
                .bind(id)
                .bind(error)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_onboarding;
