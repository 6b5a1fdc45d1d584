//! What Meta tells wagate about its numbers beyond messages (migration 0015): the details read
//! back from Graph, the account state and blocked templates from `account_update` and the
//! template webhooks, the pricing ledger from status webhooks, and the groups a number takes
//! part in. Shared SQL for both backends, like `common.rs`.
//!
//! [`MetaState`] is read and written outside ingest (the refresh worker, the usage and group
//! routes); [`MetaStateTx`] is what ingest writes inside its transaction, so an event and its
//! effects commit together.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::{MessageRow, PhoneNumber, PhoneNumberDetails, Seek, StoreResult};

pub(crate) const GROUP_COLUMNS: &str = "id, project_id, phone_number_internal_id, group_id, \
    subject, description, invite_link, join_approval_mode, state, participants, created_at, \
    updated_at";

pub(crate) const TEMPLATE_COLUMNS: &str = "phone_number_internal_id, template_id, name, \
    language, status, quality_score, category, reason, updated_at";

/// One message Meta priced: the first status webhook that carried `pricing`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedMessage {
    pub phone_number_internal_id: Uuid,
    pub wamid: String,
    pub project_id: Uuid,
    /// The UTC day of that status.
    pub day: NaiveDate,
    /// `marketing|utility|authentication|authentication_international|service|…`.
    pub category: String,
    /// `regular|free_customer_service|free_entry_point|…` (`regular` is billed).
    pub pricing_type: String,
    pub pricing_model: Option<String>,
    pub billable: bool,
    pub created_at: DateTime<Utc>,
}

/// Priced messages of one day, category and pricing type.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageRow {
    pub day: NaiveDate,
    pub category: String,
    pub pricing_type: String,
    pub billable: bool,
    pub count: i64,
}

/// A group a number takes part in (Groups API).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GroupRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub phone_number_internal_id: Uuid,
    pub group_id: String,
    pub subject: Option<String>,
    pub description: Option<String>,
    pub invite_link: Option<String>,
    pub join_approval_mode: Option<String>,
    /// `active|deleted|suspended|failed`.
    pub state: String,
    /// JSON array text of `{wa_id, user_id, state, updated_at}` (at most 8 members in a group).
    pub participants: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A template's state as the template webhooks told it; `None` fields keep what was stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct TemplateRow {
    pub phone_number_internal_id: Uuid,
    pub template_id: String,
    pub name: Option<String>,
    pub language: Option<String>,
    /// Meta's event: `APPROVED|REJECTED|PAUSED|DISABLED|…`.
    pub status: Option<String>,
    pub quality_score: Option<String>,
    pub category: Option<String>,
    pub reason: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// What a webhook says about a number; `None` leaves a value as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NumberFacts {
    pub messaging_limit: Option<String>,
    pub throughput_tier: Option<String>,
    pub quality_rating: Option<String>,
    pub is_official_business_account: Option<bool>,
}

/// Template statuses under which Meta refuses a send (and so does the proxy, locally).
pub const BLOCKED_TEMPLATE_STATUSES: [&str; 2] = ["PAUSED", "DISABLED"];

#[async_trait]
pub trait MetaState: Send + Sync {
    /// Claims a number for a details refresh unless another instance refreshed (or claimed) it
    /// since `cutoff`; `true` when this caller should refresh it.
    async fn claim_refresh(
        &self,
        number: Uuid,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Numbers not refreshed since `cutoff`, oldest connected first. A number never refreshed
    /// counts as read at connect (Graph was asked then).
    async fn numbers_due_for_refresh(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<PhoneNumber>>;
    /// Writes Graph's details of a number; `false` when nothing changed (nothing written, so
    /// no cache anywhere is invalidated).
    async fn save_number_details(
        &self,
        number: &PhoneNumber,
        details: &PhoneNumberDetails,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Stamps `webhook_verified_at` the first time; `true` when it did.
    async fn mark_webhook_verified(&self, number: Uuid, at: DateTime<Utc>) -> StoreResult<bool>;
    /// Priced messages per day, category, pricing type and billability, in `[since, until]`.
    async fn usage(
        &self,
        number: Uuid,
        since: NaiveDate,
        until: NaiveDate,
    ) -> StoreResult<Vec<UsageRow>>;
    async fn list_groups(
        &self,
        number: Uuid,
        state: Option<&str>,
        seek: Seek,
        limit: u32,
    ) -> StoreResult<Vec<GroupRow>>;
    async fn find_group(&self, number: Uuid, group_id: &str) -> StoreResult<Option<GroupRow>>;
    async fn templates(&self, number: Uuid) -> StoreResult<Vec<TemplateRow>>;
}

#[async_trait]
pub trait MetaStateTx: Send {
    /// Adds a message to the pricing ledger once; `true` when it was new.
    async fn record_pricing(&mut self, priced: &PricedMessage) -> StoreResult<bool>;
    /// Writes a message's new content (an edit or a revoke): type, body, media flag, edit
    /// history and revoke time.
    async fn rewrite_message(&mut self, message: &MessageRow) -> StoreResult<()>;
    async fn find_group_for_update(
        &mut self,
        number: Uuid,
        group_id: &str,
    ) -> StoreResult<Option<GroupRow>>;
    /// Inserts or replaces a group (by number and Meta's group id).
    async fn save_group(&mut self, group: &GroupRow) -> StoreResult<()>;
    /// Merges a template's new state into what is stored, and recomputes the number's blocked
    /// templates (read by the proxy from its number cache).
    async fn save_template(&mut self, template: &TemplateRow) -> StoreResult<()>;
    /// Applies what a webhook said about a number.
    async fn apply_number_facts(
        &mut self,
        number: Uuid,
        facts: &NumberFacts,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// When `wamid` is still the conversation's last message, its preview becomes `text` (an
    /// edit's new words, or nothing after a revoke).
    async fn set_conversation_preview(
        &mut self,
        conversation_id: Uuid,
        wamid: &str,
        text: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Sets (or, with `None`, clears) the number's account state.
    async fn set_account_state(
        &mut self,
        number: Uuid,
        state: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
}

/// Whether Graph's details differ from the stored ones (only then is the row written).
pub(crate) fn details_changed(number: &PhoneNumber, d: &PhoneNumberDetails) -> bool {
    let differs = |new: &Option<String>, old: &Option<String>| new.is_some() && new != old;
    differs(&d.display_phone_number, &number.display_phone_number)
        || differs(&d.verified_name, &number.verified_name)
        || differs(&d.quality_rating, &number.quality_rating)
        || differs(
            &d.code_verification_status,
            &number.code_verification_status,
        )
        || differs(&d.name_status, &number.name_status)
        || differs(&d.status, &number.status)
        || differs(&d.throughput_tier, &number.throughput_tier)
        || differs(&d.messaging_limit, &number.messaging_limit)
        || d.is_official_business_account != number.is_official_business_account
        || d.is_pin_enabled != number.is_pin_enabled
}

/// Implements [`MetaState`] for a store type with a `pool` field.
macro_rules! impl_meta_state {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::meta_state::MetaState for $store {
            async fn claim_refresh(
                &self,
                number: uuid::Uuid,
                cutoff: chrono::DateTime<chrono::Utc>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<bool> {
                let claimed = sqlx::query(
                    "insert into phone_number_refreshes (phone_number_internal_id, refreshed_at) \
                     values ($1, $2) on conflict (phone_number_internal_id) do update set \
                     refreshed_at = excluded.refreshed_at \
                     where phone_number_refreshes.refreshed_at < $3",
                )
                .bind(number)
                .bind(now)
                .bind(cutoff)
                .execute(&self.pool)
                .await?;
                Ok(claimed.rows_affected() == 1)
            }

            async fn numbers_due_for_refresh(
                &self,
                cutoff: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::store::PhoneNumber>> {
                let sql = format!(
                    "select {} from phone_numbers where created_at < $1 and internal_id not in \
                     (select phone_number_internal_id from phone_number_refreshes \
                     where refreshed_at >= $1) order by created_at, internal_id limit $2",
                    $crate::store::columns::PHONE_NUMBER_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(cutoff)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn save_number_details(
                &self,
                number: &$crate::store::PhoneNumber,
                d: &$crate::store::PhoneNumberDetails,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<bool> {
                if !$crate::store::meta_state::details_changed(number, d) {
                    return Ok(false);
                }
                sqlx::query(
                    "update phone_numbers set \
                     display_phone_number = coalesce($2, display_phone_number), \
                     verified_name = coalesce($3, verified_name), \
                     quality_rating = coalesce($4, quality_rating), \
                     code_verification_status = coalesce($5, code_verification_status), \
                     name_status = coalesce($6, name_status), status = coalesce($7, status), \
                     throughput_tier = coalesce($8, throughput_tier), \
                     messaging_limit = coalesce($9, messaging_limit), \
                     is_official_business_account = $10, is_pin_enabled = $11, updated_at = $12 \
                     where internal_id = $1",
                )
                .bind(number.internal_id)
                .bind(&d.display_phone_number)
                .bind(&d.verified_name)
                .bind(&d.quality_rating)
                .bind(&d.code_verification_status)
                .bind(&d.name_status)
                .bind(&d.status)
                .bind(&d.throughput_tier)
                .bind(&d.messaging_limit)
                .bind(d.is_official_business_account)
                .bind(d.is_pin_enabled)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(true)
            }

            async fn mark_webhook_verified(
                &self,
                number: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query(
                    "update phone_numbers set webhook_verified_at = $2 \
                     where internal_id = $1 and webhook_verified_at is null",
                )
                .bind(number)
                .bind(at)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn usage(
                &self,
                number: uuid::Uuid,
                since: chrono::NaiveDate,
                until: chrono::NaiveDate,
            ) -> $crate::store::StoreResult<Vec<$crate::store::meta_state::UsageRow>> {
                Ok(sqlx::query_as(
                    "select day, category, pricing_type, billable, count(*) as count \
                     from message_pricing where phone_number_internal_id = $1 \
                     and day >= $2 and day <= $3 \
                     group by day, category, pricing_type, billable \
                     order by day, category, pricing_type, billable",
                )
                .bind(number)
                .bind(since)
                .bind(until)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn list_groups(
                &self,
                number: uuid::Uuid,
                state: Option<&str>,
                seek: $crate::store::Seek,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::store::meta_state::GroupRow>> {
                use $crate::store::lists::{Arg, Sql};
                let mut sql = Sql::new(&format!(
                    "select {} from whatsapp_groups where",
                    $crate::store::meta_state::GROUP_COLUMNS
                ));
                sql.push(" phone_number_internal_id = ?", [Arg::Uuid(number)]);
                if let Some(state) = state {
                    sql.push(" and state = ?", [Arg::Text(state.to_owned())]);
                }
                sql.page("created_at", "id", seek, limit);
                Ok(
                    $crate::store::lists::bind_args!(sqlx::query_as(&sql.text), &sql.args)
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn find_group(
                &self,
                number: uuid::Uuid,
                group_id: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::meta_state::GroupRow>> {
                let sql = format!(
                    "select {} from whatsapp_groups where phone_number_internal_id = $1 \
                     and group_id = $2",
                    $crate::store::meta_state::GROUP_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(number)
                    .bind(group_id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn templates(
                &self,
                number: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::meta_state::TemplateRow>> {
                let sql = format!(
                    "select {} from message_templates where phone_number_internal_id = $1 \
                     order by name, language, template_id",
                    $crate::store::meta_state::TEMPLATE_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(number)
                    .fetch_all(&self.pool)
                    .await?)
            }
        }
    };
}
pub(crate) use impl_meta_state;

/// Implements [`MetaStateTx`] for a transaction type with `tx` and `state` fields over the
/// backend `$dialect`.
macro_rules! impl_meta_state_tx {
    ($tx:ty, $dialect:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::meta_state::MetaStateTx for $tx {
            async fn record_pricing(
                &mut self,
                p: &$crate::store::meta_state::PricedMessage,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query(
                    "insert into message_pricing (phone_number_internal_id, wamid, project_id, \
                     day, category, pricing_type, pricing_model, billable, created_at) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     on conflict (phone_number_internal_id, wamid) do nothing",
                )
                .bind(p.phone_number_internal_id)
                .bind(&p.wamid)
                .bind(p.project_id)
                .bind(p.day)
                .bind(&p.category)
                .bind(&p.pricing_type)
                .bind(&p.pricing_model)
                .bind(p.billable)
                .bind(p.created_at)
                .execute(&mut *self.tx)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn rewrite_message(
                &mut self,
                m: &$crate::store::MessageRow,
            ) -> $crate::store::StoreResult<()> {
                if self.state.rewrite_message(m) {
                    return Ok(());
                }
                sqlx::query(
                    "update messages set message_type = $2, body = $3, has_media = $4, \
                     edits = $5, revoked_at = $6, updated_at = $7 where id = $1",
                )
                .bind(m.id)
                .bind(&m.message_type)
                .bind(&m.body)
                .bind(m.has_media)
                .bind(&m.edits)
                .bind(m.revoked_at)
                .bind(m.updated_at)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn find_group_for_update(
                &mut self,
                number: uuid::Uuid,
                group_id: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::meta_state::GroupRow>> {
                let sql = format!(
                    "select {} from whatsapp_groups where phone_number_internal_id = $1 \
                     and group_id = $2{}",
                    $crate::store::meta_state::GROUP_COLUMNS,
                    <$dialect as $crate::store::dialect::Dialect>::LOCK_ROWS,
                );
                Ok(sqlx::query_as(&sql)
                    .bind(number)
                    .bind(group_id)
                    .fetch_optional(&mut *self.tx)
                    .await?)
            }

            async fn save_group(
                &mut self,
                g: &$crate::store::meta_state::GroupRow,
            ) -> $crate::store::StoreResult<()> {
                let sql = format!(
                    "insert into whatsapp_groups ({}) values ($1, $2, $3, $4, $5, $6, $7, $8, \
                     $9, $10, $11, $12) on conflict (phone_number_internal_id, group_id) do \
                     update set subject = excluded.subject, description = excluded.description, \
                     invite_link = excluded.invite_link, \
                     join_approval_mode = excluded.join_approval_mode, state = excluded.state, \
                     participants = excluded.participants, updated_at = excluded.updated_at",
                    $crate::store::meta_state::GROUP_COLUMNS
                );
                sqlx::query(&sql)
                    .bind(g.id)
                    .bind(g.project_id)
                    .bind(g.phone_number_internal_id)
                    .bind(&g.group_id)
                    .bind(&g.subject)
                    .bind(&g.description)
                    .bind(&g.invite_link)
                    .bind(&g.join_approval_mode)
                    .bind(&g.state)
                    .bind(&g.participants)
                    .bind(g.created_at)
                    .bind(g.updated_at)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn save_template(
                &mut self,
                t: &$crate::store::meta_state::TemplateRow,
            ) -> $crate::store::StoreResult<()> {
                let sql = format!(
                    "insert into message_templates ({}) values ($1, $2, $3, $4, $5, $6, $7, $8, \
                     $9) on conflict (phone_number_internal_id, template_id) do update set \
                     name = coalesce(excluded.name, message_templates.name), \
                     language = coalesce(excluded.language, message_templates.language), \
                     status = coalesce(excluded.status, message_templates.status), \
                     quality_score = coalesce(excluded.quality_score, message_templates.quality_score), \
                     category = coalesce(excluded.category, message_templates.category), \
                     reason = coalesce(excluded.reason, message_templates.reason), \
                     updated_at = excluded.updated_at",
                    $crate::store::meta_state::TEMPLATE_COLUMNS
                );
                sqlx::query(&sql)
                    .bind(t.phone_number_internal_id)
                    .bind(&t.template_id)
                    .bind(&t.name)
                    .bind(&t.language)
                    .bind(&t.status)
                    .bind(&t.quality_score)
                    .bind(&t.category)
                    .bind(&t.reason)
                    .bind(t.updated_at)
                    .execute(&mut *self.tx)
                    .await?;
                let blocked: Vec<(Option<String>, Option<String>, String)> = sqlx::query_as(
                    "select name, language, status from message_templates \
                     where phone_number_internal_id = $1 and status in ($2, $3) \
                     order by name, language",
                )
                .bind(t.phone_number_internal_id)
                .bind($crate::store::meta_state::BLOCKED_TEMPLATE_STATUSES[0])
                .bind($crate::store::meta_state::BLOCKED_TEMPLATE_STATUSES[1])
                .fetch_all(&mut *self.tx)
                .await?;
                let blocked: Vec<String> = blocked
                    .into_iter()
                    .filter_map(|(name, language, status)| {
                        Some(format!("{status}:{}:{}", name?, language.unwrap_or_default()))
                    })
                    .collect();
                let blocked = (!blocked.is_empty())
                    .then(|| serde_json::to_string(&blocked).expect("strings serialise"));
                let current: Option<Option<String>> = sqlx::query_scalar(
                    "select blocked_templates from phone_numbers where internal_id = $1",
                )
                .bind(t.phone_number_internal_id)
                .fetch_optional(&mut *self.tx)
                .await?;
                // Written only when it changed: every write invalidates the number caches.
                if current.is_some_and(|c| c != blocked) {
                    sqlx::query(
                        "update phone_numbers set blocked_templates = $2, updated_at = $3 \
                         where internal_id = $1",
                    )
                    .bind(t.phone_number_internal_id)
                    .bind(blocked)
                    .bind(t.updated_at)
                    .execute(&mut *self.tx)
                    .await?;
                }
                Ok(())
            }

            async fn apply_number_facts(
                &mut self,
                number: uuid::Uuid,
                f: &$crate::store::meta_state::NumberFacts,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                if f == &$crate::store::meta_state::NumberFacts::default() {
                    return Ok(());
                }
                sqlx::query(
                    "update phone_numbers set messaging_limit = coalesce($2, messaging_limit), \
                     throughput_tier = coalesce($3, throughput_tier), \
                     quality_rating = coalesce($4, quality_rating), \
                     is_official_business_account = coalesce($5, is_official_business_account), \
                     paused_until = case when $3 = 'HIGH' then null else paused_until end, \
                     updated_at = $6 where internal_id = $1",
                )
                .bind(number)
                .bind(&f.messaging_limit)
                .bind(&f.throughput_tier)
                .bind(&f.quality_rating)
                .bind(f.is_official_business_account)
                .bind(now)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn set_conversation_preview(
                &mut self,
                conversation_id: uuid::Uuid,
                wamid: &str,
                text: Option<&str>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                // A conversation this transaction holds is written at commit from its cached
                // row, so the change goes there; otherwise one column is set in place.
                if let Some(mut held) = self.state.conversation_by_id(conversation_id) {
                    if held.last_message_id.as_deref() == Some(wamid) {
                        held.last_message_text = text.map(str::to_owned);
                        held.updated_at = now;
                        self.state.update_conversation(&held);
                    }
                    return Ok(());
                }
                sqlx::query(
                    "update conversations set last_message_text = $2, updated_at = $3 \
                     where id = $1 and last_message_id = $4",
                )
                .bind(conversation_id)
                .bind(text)
                .bind(now)
                .bind(wamid)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn set_account_state(
                &mut self,
                number: uuid::Uuid,
                state: Option<&str>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "update phone_numbers set account_state = $2, account_state_at = $3, \
                     updated_at = $3 where internal_id = $1",
                )
                .bind(number)
                .bind(state)
                .bind(now)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }
        }
    };
}
pub(crate) use impl_meta_state_tx;
