//! The sealed columns read and rewritten as a whole, for the re-seal passes (`domain::reseal`):
//! after an upgrade, values sealed before they were bound to their row; in a master-key rotation,
//! values sealed with the old key. Shared SQL for both backends, like `common.rs`.

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreResult;
use crate::crypto::SealedField;

/// One stored sealed value and the key id recorded beside it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SealedValue {
    #[sqlx(rename = "row_id")]
    pub row: Uuid,
    pub sealed: Vec<u8>,
    pub key_id: Option<String>,
}

/// A value sealed again: written only if the row still holds `old`.
#[derive(Debug, Clone)]
pub struct Resealed {
    pub row: Uuid,
    pub old: Vec<u8>,
    pub new: Vec<u8>,
    pub key_id: String,
}

#[async_trait]
pub trait SealedValues: Send + Sync {
    /// Up to `limit` non-null values of `field` in rows whose primary key sorts after `after`,
    /// in key order (keyset pages: rows inserted meanwhile are sealed current already).
    async fn sealed_values(
        &self,
        field: SealedField,
        after: Uuid,
        limit: i64,
    ) -> StoreResult<Vec<SealedValue>>;
    /// Writes a batch in one transaction, each row only if it still holds the value the pass
    /// read (so a concurrent write, or another instance's pass, is never overwritten); returns
    /// how many rows changed.
    async fn replace_sealed_values(
        &self,
        field: SealedField,
        batch: &[Resealed],
    ) -> StoreResult<u64>;
}

/// The primary key and key-id columns beside a sealed column.
pub(crate) fn columns(field: SealedField) -> (&'static str, &'static str) {
    match field {
        SealedField::AccessToken => ("internal_id", "access_token_key_id"),
        // The webhook secret and verify token share one key-id column; v2 values name their key
        // in their header, so it only matters for values sealed before that.
        SealedField::WebhookSecret | SealedField::WebhookVerifyToken => {
            ("internal_id", "secrets_key_id")
        }
        SealedField::SetupLinkToken => ("id", "token_key_id"),
        SealedField::WebhookKey => ("id", "secret_key_id"),
        SealedField::ProviderToken => ("id", "auth_token_key_id"),
    }
}

macro_rules! impl_sealed_values {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::sealed::SealedValues for $store {
            async fn sealed_values(
                &self,
                field: $crate::crypto::SealedField,
                after: uuid::Uuid,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::sealed::SealedValue>> {
                let (id, key_id) = $crate::store::sealed::columns(field);
                let sql = format!(
                    "select {id} as row_id, {column} as sealed, {key_id} as key_id from {table} \
                     where {column} is not null and {id} > $1 order by {id} limit $2",
                    table = field.table(),
                    column = field.column(),
                );
                Ok(sqlx::query_as(&sql)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn replace_sealed_values(
                &self,
                field: $crate::crypto::SealedField,
                batch: &[$crate::store::sealed::Resealed],
            ) -> $crate::store::StoreResult<u64> {
                let (id, key_id) = $crate::store::sealed::columns(field);
                let sql = format!(
                    "update {table} set {column} = $1, {key_id} = $2 \
                     where {id} = $3 and {column} = $4",
                    table = field.table(),
                    column = field.column(),
                );
                let mut tx = self
                    .pool
                    .begin_with(<Self as $crate::store::dialect::Dialect>::BEGIN_WRITE)
                    .await?;
                let mut changed = 0;
                for r in batch {
                    changed += sqlx::query(&sql)
                        .bind(&r.new)
                        .bind(&r.key_id)
                        .bind(r.row)
                        .bind(&r.old)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                tx.commit().await?;
                Ok(changed)
            }
        }
    };
}

pub(crate) use impl_sealed_values;
