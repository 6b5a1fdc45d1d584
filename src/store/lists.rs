//! Keyset-paginated reads of stored data. Every list is ordered by a timestamp then the id (both
//! descending) on an index that starts with the phone number, and a cursor continues strictly past
//! `(timestamp, id)`: page 10,000 costs what page 1 costs. Filters add `and` clauses; the SQL is
//! assembled per request so the cursor condition is always an index bound, never an `or`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Where a page starts: strictly after (older than) or before (newer than) a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    First,
    After(DateTime<Utc>, Uuid),
    Before(DateTime<Utc>, Uuid),
}

#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub direction: Option<String>,
    pub status: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub conversation_id: Option<Uuid>,
    pub message_type: Option<String>,
    pub has_media: Option<bool>,
}

#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    pub status: Option<String>,
    pub last_active_since: Option<DateTime<Utc>>,
    pub last_active_until: Option<DateTime<Utc>>,
    /// Matches the contact's wa_id (digits).
    pub wa_id: Option<String>,
    pub bsuid: Option<String>,
    pub parent_bsuid: Option<String>,
    pub username: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ContactFilter {
    pub wa_id: Option<String>,
    pub customer_id: Option<Uuid>,
    pub has_customer: Option<bool>,
    pub bsuid: Option<String>,
    pub parent_bsuid: Option<String>,
    /// Compared without case and without Meta's leading `@`.
    pub username: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub direction: Option<String>,
    pub status: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub call_id: Option<String>,
}

/// A username filter: Meta sends `@name`, callers may send `name` or `@Name`.
const USERNAME_MATCH: &str = " and lower(ltrim(username, '@')) = lower(ltrim(?, '@'))";

/// One value to bind, in placeholder order.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Uuid(Uuid),
    Text(String),
    Time(DateTime<Utc>),
    Int(i64),
}

/// SQL text plus its arguments, built clause by clause.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    pub text: String,
    pub args: Vec<Arg>,
}

impl Sql {
    pub fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            args: Vec::new(),
        }
    }

    /// Appends `clause` where every `?` becomes the next `$n`.
    pub fn push(&mut self, clause: &str, args: impl IntoIterator<Item = Arg>) {
        let mut args = args.into_iter();
        for piece in clause.split_inclusive('?') {
            if let Some(head) = piece.strip_suffix('?') {
                self.text.push_str(head);
                self.args
                    .push(args.next().expect("one argument per placeholder"));
                self.text.push_str(&format!("${}", self.args.len()));
            } else {
                self.text.push_str(piece);
            }
        }
    }

    /// Adds the keyset bound and order for `(ts, id)` and the limit.
    pub fn page(&mut self, ts: &str, id: &str, seek: Seek, limit: u32) {
        match seek {
            Seek::First => self
                .text
                .push_str(&format!(" order by {ts} desc, {id} desc")),
            Seek::After(t, i) => {
                self.push(
                    &format!(" and ({ts}, {id}) < (?, ?)"),
                    [Arg::Time(t), Arg::Uuid(i)],
                );
                self.text
                    .push_str(&format!(" order by {ts} desc, {id} desc"));
            }
            Seek::Before(t, i) => {
                self.push(
                    &format!(" and ({ts}, {id}) > (?, ?)"),
                    [Arg::Time(t), Arg::Uuid(i)],
                );
                self.text.push_str(&format!(" order by {ts} asc, {id} asc"));
            }
        }
        self.push(" limit ?", [Arg::Int(i64::from(limit))]);
    }

    /// Keyset page ordered by `(ts, id)` over an index on `second`, `ts` truncated to the
    /// second (conversations, see migration 0017). Ordering by `(second, ts, id)` is the same
    /// order, so cursors stay `(ts, id)`; the bound on `second` lets the index start at the
    /// cursor's second, and the database sorts only within a second.
    pub fn page_by_second(&mut self, second: &str, ts: &str, id: &str, seek: Seek, limit: u32) {
        let (bound, order) = match seek {
            Seek::First => (None, "desc"),
            Seek::After(t, i) => (Some(("<=", "<", t, i)), "desc"),
            Seek::Before(t, i) => (Some((">=", ">", t, i)), "asc"),
        };
        if let Some((by_second, by_key, t, i)) = bound {
            self.push(
                &format!(" and {second} {by_second} ? and ({ts}, {id}) {by_key} (?, ?)"),
                [
                    Arg::Time(super::records::whole_second(t)),
                    Arg::Time(t),
                    Arg::Uuid(i),
                ],
            );
        }
        self.text.push_str(&format!(
            " order by {second} {order}, {ts} {order}, {id} {order}"
        ));
        self.push(" limit ?", [Arg::Int(i64::from(limit))]);
    }
}

pub(crate) fn message_sql(number: Uuid, filter: &MessageFilter, seek: Seek, limit: u32) -> Sql {
    let mut sql = Sql::new(&format!(
        "select {} from messages where",
        super::columns::MESSAGE_COLUMNS
    ));
    sql.push(" phone_number_internal_id = ?", [Arg::Uuid(number)]);
    if let Some(v) = &filter.direction {
        sql.push(" and direction = ?", [Arg::Text(v.clone())]);
    }
    match filter.status.as_deref() {
        // Lists show a received inbound message as `delivered` (the official Python SDK's status
        // enum has no `received`), so that filter finds both.
        Some("delivered") => sql.push(" and status in ('delivered', 'received')", []),
        Some(v) => sql.push(" and status = ?", [Arg::Text(v.to_owned())]),
        None => {}
    }
    if let Some(v) = filter.since {
        sql.push(" and created_at >= ?", [Arg::Time(v)]);
    }
    if let Some(v) = filter.until {
        sql.push(" and created_at <= ?", [Arg::Time(v)]);
    }
    if let Some(v) = filter.conversation_id {
        sql.push(" and conversation_id = ?", [Arg::Uuid(v)]);
    }
    if let Some(v) = &filter.message_type {
        sql.push(" and message_type = ?", [Arg::Text(v.clone())]);
    }
    if let Some(v) = filter.has_media {
        // Kapso's meaning: a kept file exists (the vault stored it), not "a media type".
        sql.push(if v { " and exists" } else { " and not exists" }, []);
        sql.push(
            " (select 1 from media_files f where f.phone_number_internal_id = \
             messages.phone_number_internal_id and f.wamid = messages.wamid \
             and f.state = 'stored')",
            [],
        );
    }
    sql.page("created_at", "id", seek, limit);
    sql
}

pub(crate) fn conversation_sql(
    number: Uuid,
    filter: &ConversationFilter,
    seek: Seek,
    limit: u32,
) -> Sql {
    let columns = super::columns::CONVERSATION_COLUMNS
        .split(", ")
        .map(|c| format!("v.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = Sql::new(&format!(
        "select {columns} from conversations v join contacts k on k.id = v.contact_id where"
    ));
    sql.push(" v.phone_number_internal_id = ?", [Arg::Uuid(number)]);
    if let Some(v) = &filter.status {
        sql.push(" and v.status = ?", [Arg::Text(v.clone())]);
    }
    // Each bound on the exact time also bounds the indexed second (truncation keeps order).
    if let Some(v) = filter.last_active_since {
        sql.push(
            " and v.active_second >= ? and v.last_active_at >= ?",
            [Arg::Time(super::records::whole_second(v)), Arg::Time(v)],
        );
    }
    if let Some(v) = filter.last_active_until {
        sql.push(
            " and v.active_second <= ? and v.last_active_at <= ?",
            [Arg::Time(v), Arg::Time(v)],
        );
    }
    if let Some(v) = &filter.wa_id {
        sql.push(" and k.wa_id = ?", [Arg::Text(v.clone())]);
    }
    if let Some(v) = &filter.bsuid {
        sql.push(" and k.business_scoped_user_id = ?", [Arg::Text(v.clone())]);
    }
    if let Some(v) = &filter.parent_bsuid {
        sql.push(
            " and k.parent_business_scoped_user_id = ?",
            [Arg::Text(v.clone())],
        );
    }
    if let Some(v) = &filter.username {
        sql.push(
            &USERNAME_MATCH.replace("username", "k.username"),
            [Arg::Text(v.clone())],
        );
    }
    sql.page_by_second("v.active_second", "v.last_active_at", "v.id", seek, limit);
    sql
}

pub(crate) fn contact_sql(number: Uuid, filter: &ContactFilter, seek: Seek, limit: u32) -> Sql {
    let mut sql = Sql::new(&format!(
        "select {} from contacts where",
        super::columns::CONTACT_COLUMNS
    ));
    sql.push(" phone_number_internal_id = ?", [Arg::Uuid(number)]);
    if let Some(v) = &filter.wa_id {
        sql.push(" and wa_id = ?", [Arg::Text(v.clone())]);
    }
    if let Some(v) = filter.customer_id {
        sql.push(" and customer_id = ?", [Arg::Uuid(v)]);
    }
    match filter.has_customer {
        Some(true) => sql.text.push_str(" and customer_id is not null"),
        Some(false) => sql.text.push_str(" and customer_id is null"),
        None => {}
    }
    if let Some(v) = &filter.bsuid {
        sql.push(" and business_scoped_user_id = ?", [Arg::Text(v.clone())]);
    }
    if let Some(v) = &filter.parent_bsuid {
        sql.push(
            " and parent_business_scoped_user_id = ?",
            [Arg::Text(v.clone())],
        );
    }
    if let Some(v) = &filter.username {
        sql.push(USERNAME_MATCH, [Arg::Text(v.clone())]);
    }
    sql.page("created_at", "id", seek, limit);
    sql
}

pub(crate) fn call_sql(number: Uuid, filter: &CallFilter, seek: Seek, limit: u32) -> Sql {
    let mut sql = Sql::new(&format!(
        "select {} from calls where",
        super::columns::CALL_COLUMNS
    ));
    sql.push(" phone_number_internal_id = ?", [Arg::Uuid(number)]);
    if let Some(v) = &filter.direction {
        sql.push(" and direction = ?", [Arg::Text(v.clone())]);
    }
    if let Some(v) = &filter.status {
        sql.push(" and status = ?", [Arg::Text(v.clone())]);
    }
    if let Some(v) = filter.since {
        sql.push(" and started_at >= ?", [Arg::Time(v)]);
    }
    if let Some(v) = filter.until {
        sql.push(" and started_at <= ?", [Arg::Time(v)]);
    }
    if let Some(v) = &filter.call_id {
        // The listed `id` (wagate's) or Meta's `call_id`: either addresses a call.
        match Uuid::parse_str(v) {
            Ok(id) => sql.push(" and id = ?", [Arg::Uuid(id)]),
            Err(_) => sql.push(" and call_id = ?", [Arg::Text(v.clone())]),
        }
    }
    sql.page("started_at", "id", seek, limit);
    sql
}

/// Binds `Arg`s to a `query_as` in order (expanded per backend).
macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                $crate::store::lists::Arg::Uuid(v) => query.bind(*v),
                $crate::store::lists::Arg::Text(v) => query.bind(v.clone()),
                $crate::store::lists::Arg::Time(v) => query.bind(*v),
                $crate::store::lists::Arg::Int(v) => query.bind(*v),
            };
        }
        query
    }};
}

pub(crate) use bind_args;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_arguments() {
        let number = Uuid::nil();
        let filter = MessageFilter {
            direction: Some("inbound".into()),
            has_media: Some(true),
            ..Default::default()
        };
        let sql = message_sql(number, &filter, Seek::After(Utc::now(), Uuid::nil()), 21);
        assert!(sql
            .text
            .contains("phone_number_internal_id = $1 and direction = $2 and exists (select 1 from media_files"));
        assert!(
            sql.text
                .contains("(created_at, id) < ($3, $4) order by created_at desc, id desc limit $5"),
            "{}",
            sql.text
        );
        assert_eq!(sql.args.len(), 5);
        let before = message_sql(
            number,
            &MessageFilter::default(),
            Seek::Before(Utc::now(), Uuid::nil()),
            5,
        );
        assert!(before
            .text
            .contains("> ($2, $3) order by created_at asc, id asc limit $4"));
        let conv = conversation_sql(
            number,
            &ConversationFilter::default(),
            Seek::After(Utc::now(), Uuid::nil()),
            5,
        );
        assert!(
            conv.text.contains(
                "v.active_second <= $2 and (v.last_active_at, v.id) < ($3, $4) order by \
                 v.active_second desc, v.last_active_at desc, v.id desc"
            ),
            "{}",
            conv.text
        );
    }
}
