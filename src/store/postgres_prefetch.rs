//! PostgreSQL's batch prefetch (`Dialect::prefetch_rows`): the rows a writer batch will touch,
//! read with one statement per table before any job runs.
//!
//! The connection plans every statement per call (`plan_cache_mode`, see `PgStore::connect`),
//! so a lookup's shape is paid on every batch. When all of a lookup's keys belong to one number
//! (a batch on a one-number deployment, or one shard's batch of a busy number), it is
//! `number = $1 and key = any($2)`: a single-table scan with an array condition plans in a third
//! to a half of the time of a semi-join with a function scan (`EXPLAIN`, 8 keys: 17–40 against
//! 39–77 µs per lookup). Keys of several numbers keep the semi-join over `unnest` pairs, which
//! probes exactly the pairs asked: a product of the numbers and keys would probe, and lock,
//! rows the batch never asked for. Either way the batch's transaction rules out sequential
//! scans and hash joins (`Dialect::BEGIN_BATCH`), so each lookup probes the unique index its
//! keys name, whatever the table holds and whether or not it has statistics.

use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::QueryAs;
use uuid::Uuid;

use super::columns::{CONTACT_COLUMNS, CONVERSATION_COLUMNS, MESSAGE_COLUMNS};
use super::tx_state::{Prefetch, Prefetched};
use super::StoreResult;

type PgTransaction = sqlx::Transaction<'static, sqlx::Postgres>;

/// A lookup's `(number, key)` pairs, in the shape its statement takes them.
enum Keys<T> {
    /// Every pair is of this number (the keys may repeat).
    OneNumber(Uuid, Vec<T>),
    /// Pairs of several numbers, as two parallel arrays.
    Pairs(Vec<Uuid>, Vec<T>),
}

impl<T: Clone> Keys<T> {
    fn of(pairs: &[(Uuid, T)]) -> Self {
        let (numbers, keys): (Vec<Uuid>, Vec<T>) = pairs.iter().cloned().unzip();
        match numbers.first() {
            Some(&first) if numbers.iter().all(|n| *n == first) => Self::OneNumber(first, keys),
            _ => Self::Pairs(numbers, keys),
        }
    }

    /// The condition on `phone_number_internal_id` and `column`, with parameters `$first` and
    /// the one after it; `sql_type` is the key's array element type.
    fn condition(&self, column: &str, sql_type: &str, first: usize) -> String {
        let second = first + 1;
        match self {
            Self::OneNumber(..) => {
                format!("phone_number_internal_id = ${first} and {column} = any(${second})")
            }
            Self::Pairs(..) => format!(
                "(phone_number_internal_id, {column}) in \
                 (select * from unnest(${first}::uuid[], ${second}::{sql_type}[]))"
            ),
        }
    }
}

/// Binds `keys` to the two parameters its `condition` names.
fn bind<'q, O, T>(
    query: QueryAs<'q, Postgres, O, PgArguments>,
    keys: &'q Keys<T>,
) -> QueryAs<'q, Postgres, O, PgArguments>
where
    T: sqlx::Type<Postgres> + sqlx::postgres::PgHasArrayType + sqlx::Encode<'q, Postgres> + Sync,
{
    match keys {
        Keys::OneNumber(number, values) => query.bind(*number).bind(values.as_slice()),
        Keys::Pairs(numbers, values) => query.bind(numbers.as_slice()).bind(values.as_slice()),
    }
}

pub(super) async fn prefetch(tx: &mut PgTransaction, batch: &Prefetch) -> StoreResult<Prefetched> {
    let mut got = Prefetched::default();
    if !batch.messages.is_empty() {
        let keys = Keys::of(&batch.messages);
        let by_wamid = keys.condition("wamid", "text", 1);
        let sql = format!(
            "select {MESSAGE_COLUMNS} from messages where {by_wamid} order by id for update"
        );
        got.messages = bind(sqlx::query_as(&sql), &keys)
            .fetch_all(&mut **tx)
            .await?;
        let sql = format!(
            "select distinct phone_number_internal_id, wamid from parked_statuses where {by_wamid}"
        );
        got.parked = bind(sqlx::query_as(&sql), &keys)
            .fetch_all(&mut **tx)
            .await?;
    }
    if !batch.wa_ids.is_empty() || !batch.bsuids.is_empty() {
        got.contacts = contacts(tx, batch).await?;
    }
    if !got.contacts.is_empty() {
        let pairs: Vec<(Uuid, Uuid)> = got
            .contacts
            .iter()
            .map(|c| (c.phone_number_internal_id, c.id))
            .collect();
        let keys = Keys::of(&pairs);
        let sql = format!(
            "select {CONVERSATION_COLUMNS} from conversations where status = 'active' and {} \
             order by id for update",
            keys.condition("contact_id", "uuid", 1)
        );
        got.conversations = bind(sqlx::query_as(&sql), &keys)
            .fetch_all(&mut **tx)
            .await?;
    }
    Ok(got)
}

/// The batch's contacts by wa_id and by BSUID: one statement, with a branch for each kind of
/// key the batch holds (a branch with no keys costs as much to plan as to run).
async fn contacts(tx: &mut PgTransaction, batch: &Prefetch) -> StoreResult<Vec<super::ContactRow>> {
    let wa_ids = (!batch.wa_ids.is_empty()).then(|| Keys::of(&batch.wa_ids));
    let bsuids = (!batch.bsuids.is_empty()).then(|| Keys::of(&batch.bsuids));
    // `is not null` lets the planner use the partial unique indexes.
    let by_wa_id = |keys: &Keys<String>| {
        format!(
            "select {CONTACT_COLUMNS} from contacts where wa_id is not null and {}",
            keys.condition("wa_id", "text", 1)
        )
    };
    // `first`: the number of its first parameter.
    let by_bsuid = |keys: &Keys<String>, first: usize| {
        format!(
            "select {CONTACT_COLUMNS} from contacts where business_scoped_user_id is not null \
             and {}",
            keys.condition("business_scoped_user_id", "text", first)
        )
    };
    let sql = match (&wa_ids, &bsuids) {
        (Some(wa_ids), None) => by_wa_id(wa_ids),
        (None, Some(bsuids)) => by_bsuid(bsuids, 1),
        (Some(wa_ids), Some(bsuids)) => {
            format!("{} union all {}", by_wa_id(wa_ids), by_bsuid(bsuids, 3))
        }
        // The caller asks only when the batch holds either kind.
        (None, None) => return Ok(Vec::new()),
    };
    let mut query = sqlx::query_as(&sql);
    for keys in [&wa_ids, &bsuids].into_iter().flatten() {
        query = bind(query, keys);
    }
    Ok(query.fetch_all(&mut **tx).await?)
}
