//! Reads only tests and operators need: whole tables of a number, a contact's identity history,
//! an event's routes. They are kept out of [`super::Store`] so the production trait lists only
//! what the app calls; `Store::inspect` hands them out.

use async_trait::async_trait;
use uuid::Uuid;

use super::records::{CallRow, ContactRow, ConversationRow, EventRouteRow, MessageRow};
use super::{Store, StoreResult};

/// Whole-table reads for tests (`use wagate::store::StoreInspect as _;`).
#[async_trait]
pub trait StoreInspect: Send + Sync {
    /// All messages of a number, oldest first (the API pages with cursors).
    async fn messages_of(&self, number: Uuid) -> StoreResult<Vec<MessageRow>>;
    async fn contacts_of(&self, number: Uuid) -> StoreResult<Vec<ContactRow>>;
    async fn conversations_of(&self, number: Uuid) -> StoreResult<Vec<ConversationRow>>;
    async fn calls_of(&self, number: Uuid) -> StoreResult<Vec<CallRow>>;
    /// `(kind, old, new)` identity changes of a contact, oldest first.
    async fn identity_changes(
        &self,
        contact: Uuid,
    ) -> StoreResult<Vec<(String, Option<String>, Option<String>)>>;
    async fn event_routes(&self, event_id: Uuid) -> StoreResult<Vec<EventRouteRow>>;
    /// How many bytes of its body a raw event keeps itself (0 on SQLite when its route does).
    async fn event_own_bytes(&self, event_id: Uuid) -> StoreResult<i64>;
}

/// Lets tests call the inspection reads on a `DynStore` directly.
#[async_trait]
impl StoreInspect for dyn Store {
    async fn messages_of(&self, number: Uuid) -> StoreResult<Vec<MessageRow>> {
        self.inspect().messages_of(number).await
    }

    async fn contacts_of(&self, number: Uuid) -> StoreResult<Vec<ContactRow>> {
        self.inspect().contacts_of(number).await
    }

    async fn conversations_of(&self, number: Uuid) -> StoreResult<Vec<ConversationRow>> {
        self.inspect().conversations_of(number).await
    }

    async fn calls_of(&self, number: Uuid) -> StoreResult<Vec<CallRow>> {
        self.inspect().calls_of(number).await
    }

    async fn identity_changes(
        &self,
        contact: Uuid,
    ) -> StoreResult<Vec<(String, Option<String>, Option<String>)>> {
        self.inspect().identity_changes(contact).await
    }

    async fn event_routes(&self, event_id: Uuid) -> StoreResult<Vec<EventRouteRow>> {
        self.inspect().event_routes(event_id).await
    }

    async fn event_own_bytes(&self, event_id: Uuid) -> StoreResult<i64> {
        self.inspect().event_own_bytes(event_id).await
    }
}

/// Implements [`StoreInspect`] for a store type with a `pool: sqlx::Pool<_>` field. A thin shim:
/// each method is one statement, identical on both backends.
macro_rules! impl_store_inspect {
    ($store:ty) => {
        $crate::store::inspect::impl_store_inspect!(@impl $store;
            messages_of, MessageRow, "messages", MESSAGE_COLUMNS;
            contacts_of, ContactRow, "contacts", CONTACT_COLUMNS;
            conversations_of, ConversationRow, "conversations", CONVERSATION_COLUMNS;
            calls_of, CallRow, "calls", CALL_COLUMNS;
        );
    };
    (@impl $store:ty; $($method:ident, $row:ident, $table:literal, $columns:ident;)*) => {
        #[async_trait::async_trait]
        impl $crate::store::StoreInspect for $store {
            $(
                async fn $method(
                    &self,
                    number: uuid::Uuid,
                ) -> $crate::store::StoreResult<Vec<$crate::store::$row>> {
                    let sql = $crate::store::inspect::of_number_sql(
                        $table,
                        $crate::store::columns::$columns,
                    );
                    Ok(sqlx::query_as(&sql).bind(number).fetch_all(&self.pool).await?)
                }
            )*

            async fn identity_changes(
                &self,
                contact: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<(String, Option<String>, Option<String>)>> {
                Ok(sqlx::query_as($crate::store::inspect::IDENTITY_CHANGES_SQL)
                    .bind(contact)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn event_routes(
                &self,
                event_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::EventRouteRow>> {
                Ok(sqlx::query_as($crate::store::inspect::EVENT_ROUTES_SQL)
                    .bind(event_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn event_own_bytes(
                &self,
                event_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<i64> {
                Ok(sqlx::query_scalar(
                    "select cast(length(body) as bigint) from webhook_events where id = $1",
                )
                .bind(event_id)
                .fetch_one(&self.pool)
                .await?)
            }
        }
    };
}

pub(crate) use impl_store_inspect;

/// Every row of `table` belonging to number `$1`, oldest first.
pub(crate) fn of_number_sql(table: &str, columns: &str) -> String {
    format!(
        "select {columns} from {table} where phone_number_internal_id = $1 order by created_at, id"
    )
}

pub(crate) const IDENTITY_CHANGES_SQL: &str = "select kind, old_value, new_value \
    from contact_identity_changes where contact_id = $1 order by changed_at, id";

pub(crate) const EVENT_ROUTES_SQL: &str = concat!(
    "select ",
    super::columns::event_route_columns!(),
    " from webhook_event_routes where event_id = $1 order by id"
);
