//! Re-sealing stored secrets: after an upgrade, values sealed before they were bound to their
//! column and row (the start-up pass); in a master-key rotation, every value not yet under the
//! current key (`wagate admin secrets reseal` / `rotate-master-key`).
//!
//! Row by row and resumable: each batch is one transaction, and a row is rewritten only if it
//! still holds the value that was read, so several instances may run the pass at once, and a
//! number changed meanwhile keeps its new value. A value that no configured key opens is left as
//! it is and reported.

use uuid::Uuid;

use crate::crypto::{SealedField, SealedState, SecretBox};
use crate::store::{Resealed, Store, StoreResult};

/// Rows read and rewritten per transaction.
const BATCH: i64 = 200;

/// Which values a pass seals again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only values not bound to their row (sealed before v2); any key this instance has opens them.
    Unbound,
    /// Every value not bound, or not sealed with the current master key.
    NotCurrentKey,
}

/// What a pass did to one sealed column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FieldReport {
    /// Non-null values read.
    pub scanned: u64,
    /// Values sealed again and written.
    pub resealed: u64,
    /// Values changed by someone else between read and write (left to them: they are new).
    pub changed_meanwhile: u64,
    /// Values no configured key opens; left as they are.
    pub unreadable: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub fields: Vec<(SealedField, FieldReport)>,
}

impl Report {
    pub fn total(&self) -> FieldReport {
        self.fields
            .iter()
            .fold(FieldReport::default(), |mut sum, (_, r)| {
                sum.scanned += r.scanned;
                sum.resealed += r.resealed;
                sum.changed_meanwhile += r.changed_meanwhile;
                sum.unreadable += r.unreadable;
                sum
            })
    }
}

/// Seals again, with the current master key and bound to their column and row, the stored
/// values `scope` selects.
pub async fn reseal(store: &dyn Store, secrets: &SecretBox, scope: Scope) -> StoreResult<Report> {
    let mut report = Report::default();
    for field in SealedField::ALL {
        let counts = reseal_field(store, secrets, scope, field).await?;
        if counts.resealed > 0 || counts.unreadable > 0 || counts.changed_meanwhile > 0 {
            tracing::info!(
                %field,
                scanned = counts.scanned,
                resealed = counts.resealed,
                changed_meanwhile = counts.changed_meanwhile,
                unreadable = counts.unreadable,
                "re-sealed stored secrets"
            );
        }
        report.fields.push((field, counts));
    }
    Ok(report)
}

async fn reseal_field(
    store: &dyn Store,
    secrets: &SecretBox,
    scope: Scope,
    field: SealedField,
) -> StoreResult<FieldReport> {
    let mut counts = FieldReport::default();
    let mut after = Uuid::nil();
    loop {
        let page = store.sealed_values(field, after, BATCH).await?;
        let Some(last) = page.last() else { break };
        after = last.row;
        let mut batch = Vec::new();
        for value in &page {
            counts.scanned += 1;
            let wanted = match secrets.state(&value.sealed) {
                SealedState::Current => false,
                SealedState::Unbound => true,
                SealedState::OtherKey => scope == Scope::NotCurrentKey,
            };
            if !wanted {
                continue;
            }
            let context = field.at(value.row);
            let key_id = value.key_id.as_deref().unwrap_or_default();
            match secrets.open(context, key_id, &value.sealed) {
                Ok(plain) => batch.push(Resealed {
                    row: value.row,
                    old: value.sealed.clone(),
                    new: secrets.seal(context, &plain),
                    key_id: secrets.key_id().to_owned(),
                }),
                Err(error) => {
                    counts.unreadable += 1;
                    tracing::error!(%field, row = %value.row, %error, "cannot re-seal a stored secret; left as it is");
                }
            }
        }
        if !batch.is_empty() {
            let written = store.replace_sealed_values(field, &batch).await?;
            counts.resealed += written;
            counts.changed_meanwhile += batch.len() as u64 - written;
            tracing::info!(%field, resealed = counts.resealed, scanned = counts.scanned, "re-sealing…");
        }
        if (page.len() as i64) < BATCH {
            break;
        }
    }
    Ok(counts)
}
