//! SQLite's batch prefetch (`Dialect::prefetch_rows`): the rows a writer batch will touch, read
//! before any job runs. The batch's messages with whether statuses are parked for them, then its
//! users (contacts by wa_id and BSUID, and their active conversations): one statement per number
//! for each, with the keys as one JSON array (`json_each`), so the text never varies and the
//! prepared statement is reused, and each key probes its unique index (`sqlite.rs`'s tests read
//! `EXPLAIN QUERY PLAN`). Without it every recorded message and every user is asked for on its
//! own, and each statement is a round trip to sqlx's connection thread and back. (Earlier users
//! prefetches, a `VALUES` list and then per-number `in (…)` lists, made ingest slower; the plan of
//! the conversations lookup, see `CONVERSATIONS`, is the likely reason.)

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{FromRow as _, Row as _};
use uuid::Uuid;

use super::tx_state::{Prefetch, Prefetched};
use super::{ContactRow, ConversationRow, MessageRow, StoreResult};

type SqliteTransaction = sqlx::Transaction<'static, sqlx::Sqlite>;

/// A row per wamid asked: whether any status waits for it, and the message's columns (null
/// when it is not stored). The subquery names its one column so that none of `json_each`'s
/// (`id` among them) clashes with the message's.
pub(super) const MESSAGES: &str = concat!(
    "select asked.asked_wamid, exists(select 1 from parked_statuses p ",
    "where p.phone_number_internal_id = $1 and p.wamid = asked.asked_wamid) as parked, ",
    super::columns::message_columns!(),
    " from (select value as asked_wamid from json_each($2)) as asked ",
    "left join messages on phone_number_internal_id = $1 and wamid = asked.asked_wamid"
);

/// One number's contacts by wa_id ($2) and by BSUID ($3). `is not null` lets SQLite use the
/// partial unique indexes, which `indexed by` insists on: whatever the statistics say, each key
/// is one probe.
pub(super) const CONTACTS: &str = concat!(
    "select ",
    super::columns::contact_columns!(),
    " from contacts indexed by contacts_wa_id_key where phone_number_internal_id = $1 ",
    "and wa_id is not null and wa_id in (select value from json_each($2)) ",
    "union all select ",
    super::columns::contact_columns!(),
    " from contacts indexed by contacts_bsuid_key where phone_number_internal_id = $1 ",
    "and business_scoped_user_id is not null ",
    "and business_scoped_user_id in (select value from json_each($3))"
);

/// One number's active conversations with the contacts in $2, their ids as hex text (`unhex`
/// turns each back into the stored blob). Left to itself, SQLite planned this `in` list as a
/// scan of every active conversation (`conversations_sweep_idx`, by status); `indexed by` makes
/// it a probe per contact.
pub(super) const CONVERSATIONS: &str = concat!(
    "select ",
    super::columns::conversation_columns!(),
    " from conversations indexed by conversations_one_active_key ",
    "where status = 'active' and phone_number_internal_id = $1 ",
    "and contact_id in (select unhex(value) from json_each($2))"
);

pub(super) async fn prefetch(
    tx: &mut SqliteTransaction,
    batch: &Prefetch,
) -> StoreResult<Prefetched> {
    let mut got = Prefetched::default();
    // A message and its statuses ask for the same wamid: each is read once.
    for (number, wamids) in by_number(batch.messages.iter().map(|(n, w)| (*n, w.as_str()))) {
        let rows = sqlx::query(MESSAGES)
            .bind(number)
            .bind(json_array(&wamids)?)
            .fetch_all(&mut **tx)
            .await?;
        for row in rows {
            if row.try_get::<bool, _>("parked")? {
                got.parked.push((number, row.try_get("asked_wamid")?));
            }
            if row.try_get::<Option<Uuid>, _>("id")?.is_some() {
                got.messages.push(MessageRow::from_row(&row)?);
            }
        }
    }
    got.contacts = contacts(tx, batch).await?;
    got.conversations = conversations(tx, &got.contacts).await?;
    Ok(got)
}

/// The batch's contacts, one statement per number. A contact asked for by both its keys comes
/// back twice; `TxState::remember_prefetched` takes that.
async fn contacts(tx: &mut SqliteTransaction, batch: &Prefetch) -> StoreResult<Vec<ContactRow>> {
    let wa_ids = by_number(batch.wa_ids.iter().map(|(n, k)| (*n, k.as_str())));
    let bsuids = by_number(batch.bsuids.iter().map(|(n, k)| (*n, k.as_str())));
    let numbers: BTreeSet<Uuid> = wa_ids.keys().chain(bsuids.keys()).copied().collect();
    let none = BTreeSet::new();
    let mut contacts = Vec::new();
    for number in numbers {
        let rows: Vec<ContactRow> = sqlx::query_as(CONTACTS)
            .bind(number)
            .bind(json_array(wa_ids.get(&number).unwrap_or(&none))?)
            .bind(json_array(bsuids.get(&number).unwrap_or(&none))?)
            .fetch_all(&mut **tx)
            .await?;
        contacts.extend(rows);
    }
    Ok(contacts)
}

/// The active conversations of `contacts`, one statement per number.
async fn conversations(
    tx: &mut SqliteTransaction,
    contacts: &[ContactRow],
) -> StoreResult<Vec<ConversationRow>> {
    let ids: Vec<(Uuid, String)> = contacts
        .iter()
        .map(|c| (c.phone_number_internal_id, c.id.simple().to_string()))
        .collect();
    let mut conversations = Vec::new();
    for (number, ids) in by_number(ids.iter().map(|(n, id)| (*n, id.as_str()))) {
        let rows: Vec<ConversationRow> = sqlx::query_as(CONVERSATIONS)
            .bind(number)
            .bind(json_array(&ids)?)
            .fetch_all(&mut **tx)
            .await?;
        conversations.extend(rows);
    }
    Ok(conversations)
}

/// Keys grouped by number, each key once.
fn by_number<'a>(
    pairs: impl IntoIterator<Item = (Uuid, &'a str)>,
) -> BTreeMap<Uuid, BTreeSet<&'a str>> {
    let mut grouped: BTreeMap<Uuid, BTreeSet<&str>> = BTreeMap::new();
    for (number, key) in pairs {
        grouped.entry(number).or_default().insert(key);
    }
    grouped
}

fn json_array(keys: &BTreeSet<&str>) -> StoreResult<String> {
    Ok(serde_json::to_string(keys).map_err(anyhow::Error::from)?)
}
