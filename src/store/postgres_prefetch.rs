//! PostgreSQL's batch prefetch (`Dialect::prefetch_rows`): the rows a writer batch will touch,
//! read with one statement per table before any job runs.
//!
//! Each lookup is `key_a = any($1) and key_b = any($2)` over the batch's distinct values, not
//! `(key_a, key_b) in (select * from unnest(…))`. The connection plans every statement per call
//! (`plan_cache_mode`, see `PgStore::connect`), and a single-table scan with array conditions
//! plans in a third to a half of the time a semi-join with a function scan does (`EXPLAIN`,
//! 8 keys: 17–40 against 39–77 µs per lookup). The batch's transaction rules out sequential
//! scans and hash joins (`Dialect::BEGIN_BATCH`), so each lookup probes the unique index its
//! keys name, whatever the table holds and whether or not it has statistics. The product of
//! the two arrays can name pairs the batch did not ask for (a batch of several numbers); the
//! rows of those are real rows of those keys, dropped here before anything uses them.

use std::collections::HashSet;

use uuid::Uuid;

use super::columns::{CONTACT_COLUMNS, CONVERSATION_COLUMNS, MESSAGE_COLUMNS};
use super::tx_state::{Prefetch, Prefetched};
use super::StoreResult;

type PgTransaction = sqlx::Transaction<'static, sqlx::Postgres>;

/// The distinct numbers and distinct keys of `pairs`, for `= any` conditions.
fn distinct<T: Clone + Eq + std::hash::Hash>(pairs: &[(Uuid, T)]) -> (Vec<Uuid>, Vec<T>) {
    let mut numbers: Vec<Uuid> = Vec::new();
    let mut keys: Vec<T> = Vec::with_capacity(pairs.len());
    let mut seen = HashSet::with_capacity(pairs.len());
    for (number, key) in pairs {
        if !numbers.contains(number) {
            numbers.push(*number);
        }
        if seen.insert(key) {
            keys.push(key.clone());
        }
    }
    (numbers, keys)
}

pub(super) async fn prefetch(tx: &mut PgTransaction, batch: &Prefetch) -> StoreResult<Prefetched> {
    let mut got = Prefetched::default();
    if !batch.messages.is_empty() {
        let asked: HashSet<(Uuid, &str)> = batch
            .messages
            .iter()
            .map(|(n, w)| (*n, w.as_str()))
            .collect();
        let (numbers, wamids) = distinct(&batch.messages);
        let messages: Vec<super::MessageRow> = sqlx::query_as(&format!(
            "select {MESSAGE_COLUMNS} from messages where phone_number_internal_id = any($1) \
             and wamid = any($2) order by id for update"
        ))
        .bind(&numbers)
        .bind(&wamids)
        .fetch_all(&mut **tx)
        .await?;
        got.messages = messages
            .into_iter()
            .filter(|m| asked.contains(&(m.phone_number_internal_id, m.wamid.as_str())))
            .collect();
        let parked: Vec<(Uuid, String)> = sqlx::query_as(
            "select distinct phone_number_internal_id, wamid from parked_statuses \
             where phone_number_internal_id = any($1) and wamid = any($2)",
        )
        .bind(&numbers)
        .bind(&wamids)
        .fetch_all(&mut **tx)
        .await?;
        got.parked = parked
            .into_iter()
            .filter(|(n, w)| asked.contains(&(*n, w.as_str())))
            .collect();
    }
    if !batch.wa_ids.is_empty() || !batch.bsuids.is_empty() {
        got.contacts = contacts(tx, batch).await?;
    }
    if !got.contacts.is_empty() {
        // Contact ids are unique across numbers, so this product names no pair twice.
        let pairs: Vec<(Uuid, Uuid)> = got
            .contacts
            .iter()
            .map(|c| (c.phone_number_internal_id, c.id))
            .collect();
        let (numbers, contacts) = distinct(&pairs);
        got.conversations = sqlx::query_as(&format!(
            "select {CONVERSATION_COLUMNS} from conversations where status = 'active' and \
             phone_number_internal_id = any($1) and contact_id = any($2) order by id for update"
        ))
        .bind(&numbers)
        .bind(&contacts)
        .fetch_all(&mut **tx)
        .await?;
    }
    Ok(got)
}

/// The batch's contacts by wa_id and by BSUID: one statement, with a branch for each kind of
/// key the batch holds (a branch with no keys costs as much to plan as to run).
async fn contacts(tx: &mut PgTransaction, batch: &Prefetch) -> StoreResult<Vec<super::ContactRow>> {
    let (wa_numbers, wa_ids) = distinct(&batch.wa_ids);
    let (bsuid_numbers, bsuids) = distinct(&batch.bsuids);
    // `is not null` lets the planner use the partial unique indexes.
    let by_wa_id = format!(
        "select {CONTACT_COLUMNS} from contacts where wa_id is not null and \
         phone_number_internal_id = any($1) and wa_id = any($2)"
    );
    // `first`: the number of its first parameter.
    let by_bsuid = |first: usize| {
        format!(
            "select {CONTACT_COLUMNS} from contacts where business_scoped_user_id is not null \
             and phone_number_internal_id = any(${first}) and business_scoped_user_id = any(${})",
            first + 1
        )
    };
    let sql = match (wa_ids.is_empty(), bsuids.is_empty()) {
        (false, true) => by_wa_id,
        (true, false) => by_bsuid(1),
        // Both kinds (the caller rules out neither).
        (false, false) | (true, true) => format!("{by_wa_id} union all {}", by_bsuid(3)),
    };
    let mut query = sqlx::query_as(&sql);
    if !wa_ids.is_empty() {
        query = query.bind(wa_numbers).bind(wa_ids);
    }
    if !bsuids.is_empty() {
        query = query.bind(bsuid_numbers).bind(bsuids);
    }
    let found: Vec<super::ContactRow> = query.fetch_all(&mut **tx).await?;
    let asked_wa_ids: HashSet<(Uuid, &str)> =
        batch.wa_ids.iter().map(|(n, k)| (*n, k.as_str())).collect();
    let asked_bsuids: HashSet<(Uuid, &str)> =
        batch.bsuids.iter().map(|(n, k)| (*n, k.as_str())).collect();
    Ok(found
        .into_iter()
        .filter(|c| {
            let number = c.phone_number_internal_id;
            c.wa_id
                .as_deref()
                .is_some_and(|k| asked_wa_ids.contains(&(number, k)))
                || c.business_scoped_user_id
                    .as_deref()
                    .is_some_and(|k| asked_bsuids.contains(&(number, k)))
        })
        .collect())
}
