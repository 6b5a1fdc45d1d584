//! SQL shared by both backends, written once and expanded for each pool type.
//!
//! Both SQLite and PostgreSQL accept `$n` placeholders, `returning` and `on conflict`; values are
//! bound from Rust (never `now()`) so both store identical timestamps.

/// Implements the backend-independent part of [`crate::store::Store`] for a type with a
/// `pool: sqlx::Pool<_>` field and a `backend_kind()` inherent method.
macro_rules! impl_common_store {
    ($store:ty, $tx:ident) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            fn backend(&self) -> $crate::config::Backend {
                <Self as $crate::store::dialect::Dialect>::BACKEND
            }

            async fn ping(&self) -> $crate::store::StoreResult<()> {
                sqlx::query("select 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn watch_cache_changes(
                &self,
                changes: tokio::sync::mpsc::Sender<$crate::store::CacheChange>,
                poll: std::time::Duration,
            ) {
                <Self as $crate::store::dialect::Dialect>::watch_cache_changes(
                    &self.pool, changes, poll,
                )
                .await
            }

            async fn close(&self) {
                // The writer's pool first (the same pool again on PostgreSQL: closing is
                // idempotent).
                self.writer().close().await;
                self.pool.close().await;
            }

            fn inspect(&self) -> &dyn $crate::store::StoreInspect {
                self
            }

            async fn create_project(
                &self,
                name: &str,
            ) -> $crate::store::StoreResult<$crate::store::Project> {
                let project = sqlx::query_as(
                    "insert into projects (id, name, created_at) values ($1, $2, $3) \
                             returning id, name, created_at",
                )
                .bind(uuid::Uuid::now_v7())
                .bind(name)
                .bind($crate::store::now())
                .fetch_one(&self.pool)
                .await?;
                Ok(project)
            }

            async fn get_project(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<$crate::store::Project> {
                Ok(
                    sqlx::query_as("select id, name, created_at from projects where id = $1")
                        .bind(id)
                        .fetch_one(&self.pool)
                        .await?,
                )
            }

            async fn count_projects(&self) -> $crate::store::StoreResult<i64> {
                let (count,): (i64,) = sqlx::query_as("select count(*) from projects")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(count)
            }

            async fn count_phone_numbers_not_of_kind(
                &self,
                kind: &str,
            ) -> $crate::store::StoreResult<i64> {
                let (count,): (i64,) =
                    sqlx::query_as("select count(*) from phone_numbers where kind <> $1")
                        .bind(kind)
                        .fetch_one(&self.pool)
                        .await?;
                Ok(count)
            }

            async fn create_first_project(
                &self,
                name: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::Project>> {
                let mut tx = self
                    .pool
                    .begin_with(<Self as $crate::store::dialect::Dialect>::BEGIN_WRITE)
                    .await?;
                if let Some(sql) = <Self as $crate::store::dialect::Dialect>::BOOTSTRAP_LOCK {
                    sqlx::query(sql).execute(&mut *tx).await?;
                }
                let (count,): (i64,) = sqlx::query_as("select count(*) from projects")
                    .fetch_one(&mut *tx)
                    .await?;
                if count > 0 {
                    return Ok(None);
                }
                let project = sqlx::query_as(
                    "insert into projects (id, name, created_at) values ($1, $2, $3) \
                             returning id, name, created_at",
                )
                .bind(uuid::Uuid::now_v7())
                .bind(name)
                .bind($crate::store::now())
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some(project))
            }

            async fn create_api_key(
                &self,
                key: $crate::store::NewApiKey,
            ) -> $crate::store::StoreResult<$crate::store::ApiKeyRecord> {
                let sql = format!(
                    "insert into api_keys (id, project_id, key_sha256, display_prefix, \
                             created_at, key_format) \
                             values ($1, $2, $3, $4, $5, 'keyed') returning {}",
                    $crate::store::columns::API_KEY_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(uuid::Uuid::now_v7())
                    .bind(key.project_id)
                    .bind(&key.key_sha256)
                    .bind(&key.display_prefix)
                    .bind($crate::store::now())
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn list_api_keys(
                &self,
                project_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Vec<$crate::store::ApiKeyRecord>> {
                let sql = format!(
                    "select {} from api_keys where project_id = $1 order by created_at, id",
                    $crate::store::columns::API_KEY_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(project_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn revoke_api_key(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<$crate::store::ApiKeyRecord> {
                // coalesce keeps the first revocation time when a key is revoked twice.
                let sql = format!(
                    "update api_keys set revoked_at = coalesce(revoked_at, $2) where id = \
                             $1 returning {}",
                    $crate::store::columns::API_KEY_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(id)
                    .bind($crate::store::now())
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn find_api_key_by_hash(
                &self,
                key_sha256: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::ApiKeyRecord>> {
                let sql = format!(
                    "select {} from api_keys where key_sha256 = $1",
                    $crate::store::columns::API_KEY_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(key_sha256)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn live_legacy_api_key_prefixes(
                &self,
            ) -> $crate::store::StoreResult<Vec<String>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "select display_prefix from api_keys \
                     where key_format = 'legacy' and revoked_at is null",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(prefix,)| prefix).collect())
            }

            async fn create_customer(
                &self,
                customer: $crate::store::NewCustomer,
            ) -> $crate::store::StoreResult<$crate::store::Customer> {
                let now = $crate::store::now();
                let sql = format!(
                    "insert into customers (id, project_id, name, external_customer_id, \
                             created_at, updated_at) \
                             values ($1, $2, $3, $4, $5, $5) returning {}",
                    $crate::store::columns::CUSTOMER_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(uuid::Uuid::now_v7())
                    .bind(customer.project_id)
                    .bind(&customer.name)
                    .bind(&customer.external_customer_id)
                    .bind(now)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn get_customer(
                &self,
                project_id: uuid::Uuid,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<$crate::store::Customer> {
                let sql = format!(
                    "select {} from customers where project_id = $1 and id = $2",
                    $crate::store::columns::CUSTOMER_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(project_id)
                    .bind(id)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn insert_phone_number(
                &self,
                n: $crate::store::NewPhoneNumber,
            ) -> $crate::store::StoreResult<$crate::store::PhoneNumber> {
                let now = $crate::store::now();
                let secrets_key_id = (n.webhook_secret.is_some()
                    || n.webhook_verify_token.is_some())
                .then(|| n.access_token.key_id.clone());
                let sql = format!(
                    "insert into phone_numbers (internal_id, project_id, customer_id, \
                             phone_number_id, \
                             business_account_id, kind, name, display_phone_number, \
                             verified_name, quality_rating, \
                             code_verification_status, name_status, status, throughput_tier, \
                             messaging_limit, \
                             is_official_business_account, is_pin_enabled, is_coexistence, \
                             inbound_processing_enabled, calls_enabled, access_token_sealed, \
                             access_token_key_id, \
                             access_token_sha256, webhook_destination_url, webhook_secret_sealed, \
                             webhook_verify_token_sealed, secrets_key_id, created_at, updated_at) \
                             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                             $15, $16, $17, \
                             $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $28) \
                             returning {}",
                    $crate::store::columns::PHONE_NUMBER_COLUMNS
                );
                let mut tx = self
                    .pool
                    .begin_with(<Self as $crate::store::dialect::Dialect>::BEGIN_WRITE)
                    .await?;
                let number: $crate::store::PhoneNumber = sqlx::query_as(&sql)
                    .bind(n.internal_id)
                    .bind(n.project_id)
                    .bind(n.customer_id)
                    .bind(&n.phone_number_id)
                    .bind(&n.business_account_id)
                    .bind(&n.kind)
                    .bind(&n.name)
                    .bind(&n.details.display_phone_number)
                    .bind(&n.details.verified_name)
                    .bind(&n.details.quality_rating)
                    .bind(&n.details.code_verification_status)
                    .bind(&n.details.name_status)
                    .bind(&n.details.status)
                    .bind(&n.details.throughput_tier)
                    .bind(&n.details.messaging_limit)
                    .bind(n.details.is_official_business_account)
                    .bind(n.details.is_pin_enabled)
                    .bind(n.is_coexistence)
                    .bind(n.inbound_processing_enabled)
                    .bind(n.calls_enabled)
                    .bind(&n.access_token.sealed)
                    .bind(&n.access_token.key_id)
                    .bind(&n.access_token_sha256)
                    .bind(&n.webhook_destination_url)
                    .bind(&n.webhook_secret)
                    .bind(&n.webhook_verify_token)
                    .bind(secrets_key_id)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                $crate::store::webhooks::sync_meta_webhook!(tx, &number);
                $crate::store::webhook_outbox::queue_connection_event!(
                    tx,
                    &number,
                    $crate::store::webhook_outbox::PHONE_NUMBER_CREATED,
                    now
                );
                tx.commit().await?;
                Ok(number)
            }

            async fn find_phone_number(
                &self,
                phone_number_id: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::PhoneNumber>> {
                let sql = format!(
                    "select {} from phone_numbers where phone_number_id = $1",
                    $crate::store::columns::PHONE_NUMBER_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(phone_number_id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn find_phone_numbers_by_waba(
                &self,
                project_id: uuid::Uuid,
                business_account_id: &str,
            ) -> $crate::store::StoreResult<Vec<$crate::store::PhoneNumber>> {
                let sql = format!(
                    "select {} from phone_numbers where business_account_id = $1 and \
                             project_id = $2 \
                             order by created_at, internal_id",
                    $crate::store::columns::PHONE_NUMBER_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(business_account_id)
                    .bind(project_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn find_phone_number_by_internal_id(
                &self,
                internal_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::PhoneNumber>> {
                let sql = format!(
                    "select {} from phone_numbers where internal_id = $1",
                    $crate::store::columns::PHONE_NUMBER_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(internal_id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn find_phone_numbers_by_waba_any(
                &self,
                business_account_id: &str,
            ) -> $crate::store::StoreResult<Vec<$crate::store::PhoneNumber>> {
                let sql = format!(
                    "select {} from phone_numbers where business_account_id = $1 order by \
                             created_at, internal_id",
                    $crate::store::columns::PHONE_NUMBER_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(business_account_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn find_phone_numbers_by_token_hash(
                &self,
                access_token_sha256: &str,
            ) -> $crate::store::StoreResult<Vec<$crate::store::PhoneNumber>> {
                let sql = format!(
                    "select {} from phone_numbers where access_token_sha256 = $1 order by \
                             created_at, internal_id",
                    $crate::store::columns::PHONE_NUMBER_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(access_token_sha256)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn list_phone_numbers(
                &self,
                project_id: uuid::Uuid,
                customer_id: Option<uuid::Uuid>,
                page: u32,
                per_page: u32,
            ) -> $crate::store::StoreResult<
                $crate::store::Page<$crate::store::PhoneNumber>,
            > {
                // Platform lists are page-numbered by contract (with a total), so they use
                // offset; they are bounded by the number of connected numbers, not messages.
                let filter = "project_id = $1 and ($2 is null or customer_id = $2)";
                let (total_count,): (i64,) = sqlx::query_as(&format!(
                    "select count(*) from phone_numbers where {filter}"
                ))
                .bind(project_id)
                .bind(customer_id)
                .fetch_one(&self.pool)
                .await?;
                let sql = format!(
                    "select {} from phone_numbers where {filter} \
                             order by created_at desc, internal_id desc limit $3 offset $4",
                    $crate::store::columns::PHONE_NUMBER_COLUMNS
                );
                let items = sqlx::query_as(&sql)
                    .bind(project_id)
                    .bind(customer_id)
                    .bind(i64::from(per_page))
                    .bind(i64::from(page.saturating_sub(1)) * i64::from(per_page))
                    .fetch_all(&self.pool)
                    .await?;
                Ok($crate::store::Page { items, total_count })
            }

            async fn update_phone_number(
                &self,
                project_id: uuid::Uuid,
                phone_number_id: &str,
                patch: $crate::store::PhoneNumberPatch,
            ) -> $crate::store::StoreResult<$crate::store::PhoneNumber> {
                let mut tx = self
                    .pool
                    .begin_with(<Self as $crate::store::dialect::Dialect>::BEGIN_WRITE)
                    .await?;
                let select = format!(
                    "select {} from phone_numbers where project_id = $1 and phone_number_id = $2",
                    $crate::store::columns::PHONE_NUMBER_COLUMNS
                );
                let mut n: $crate::store::PhoneNumber = sqlx::query_as(&select)
                    .bind(project_id)
                    .bind(phone_number_id)
                    .fetch_one(&mut *tx)
                    .await?;
                if patch.internal_id.is_some_and(|id| id != n.internal_id) {
                    return Err($crate::store::StoreError::NotFound);
                }
                $crate::store::common::apply_patch(&mut n, patch);
                let sql = format!(
                    "update phone_numbers set name = $3, access_token_sealed = $4, \
                             access_token_key_id = $5, \
                             access_token_sha256 = $6, webhook_destination_url = $7, \
                             webhook_secret_sealed = $8, \
                             secrets_key_id = $9, inbound_processing_enabled = $10, calls_enabled \
                             = $11, \
                             username = $12, username_status = $13, updated_at = $14 \
                             where project_id = $1 and phone_number_id = $2 returning {}",
                    $crate::store::columns::PHONE_NUMBER_COLUMNS
                );
                let updated: $crate::store::PhoneNumber = sqlx::query_as(&sql)
                    .bind(project_id)
                    .bind(phone_number_id)
                    .bind(&n.name)
                    .bind(&n.access_token_sealed)
                    .bind(&n.access_token_key_id)
                    .bind(&n.access_token_sha256)
                    .bind(&n.webhook_destination_url)
                    .bind(&n.webhook_secret_sealed)
                    .bind(&n.secrets_key_id)
                    .bind(n.inbound_processing_enabled)
                    .bind(n.calls_enabled)
                    .bind(&n.username)
                    .bind(&n.username_status)
                    .bind($crate::store::now())
                    .fetch_one(&mut *tx)
                    .await?;
                $crate::store::webhooks::sync_meta_webhook!(tx, &updated);
                tx.commit().await?;
                Ok(updated)
            }

            async fn begin(
                &self,
            ) -> $crate::store::StoreResult<Box<dyn $crate::store::StoreTx>> {
                Ok(Box::new($tx {
                    tx: self
                        .writer()
                        .begin_with(<Self as $crate::store::dialect::Dialect>::BEGIN_BATCH)
                        .await?,
                    state: Default::default(),
                }))
            }

            async fn end_idle_conversations(
                &self,
                cutoff: chrono::DateTime<chrono::Utc>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<u64> {
                // One statement: safe with several instances sweeping at once. Conversations of
                // numbers with a webhook that wants `whatsapp.conversation.ended` are left to
                // `domain::webhooks::sweeps::end_idle`, which ends each with its event.
                let result = sqlx::query(
                    "update conversations set status = 'ended', ended_at = $2, updated_at = $2 \
                             where status = 'active' and active_second < $1 \
                             and last_active_at < $1 and not exists \
                             (select 1 from webhooks w where w.phone_number_internal_id = \
                             conversations.phone_number_internal_id and w.kind = 'kapso' \
                             and (w.active or w.paused_reason is not null) and w.events like $3)",
                )
                .bind(cutoff)
                .bind(now)
                .bind($crate::store::webhook_outbox::event_pattern(
                    "whatsapp.conversation.ended",
                ))
                .execute(&self.pool)
                .await?;
                Ok(result.rows_affected())
            }

            async fn delete_parked_statuses_before(
                &self,
                cutoff: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<u64> {
                let result = sqlx::query("delete from parked_statuses where received_at < $1")
                    .bind(cutoff)
                    .execute(&self.pool)
                    .await?;
                Ok(result.rows_affected())
            }

            async fn find_message(
                &self,
                number: uuid::Uuid,
                wamid: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::MessageRow>> {
                let sql = format!(
                    "select {} from messages where phone_number_internal_id = $1 and wamid = $2",
                    $crate::store::columns::MESSAGE_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(number)
                    .bind(wamid)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn webhook_events(
                &self,
                state: Option<&str>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::WebhookEventRow>> {
                Ok(sqlx::query_as(&format!(
                    "select id, received_at, {} as body, state, error \
                     from webhook_events where ($1 is null or state = $1) \
                     order by received_at desc, id desc limit $2",
                    $crate::store::columns::STORED_EVENT_BODY,
                ))
                .bind(state)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn list_messages(
                &self,
                number: uuid::Uuid,
                filter: &$crate::store::MessageFilter,
                seek: $crate::store::Seek,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::store::MessageRow>> {
                let sql = $crate::store::lists::message_sql(number, filter, seek, limit);
                Ok(
                    $crate::store::lists::bind_args!(sqlx::query_as(&sql.text), &sql.args)
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn list_conversations(
                &self,
                number: uuid::Uuid,
                filter: &$crate::store::ConversationFilter,
                seek: $crate::store::Seek,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::store::ConversationRow>> {
                let sql = $crate::store::lists::conversation_sql(number, filter, seek, limit);
                Ok(
                    $crate::store::lists::bind_args!(sqlx::query_as(&sql.text), &sql.args)
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn list_contacts(
                &self,
                number: uuid::Uuid,
                filter: &$crate::store::ContactFilter,
                seek: $crate::store::Seek,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::store::ContactRow>> {
                let sql = $crate::store::lists::contact_sql(number, filter, seek, limit);
                Ok(
                    $crate::store::lists::bind_args!(sqlx::query_as(&sql.text), &sql.args)
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn list_calls(
                &self,
                number: uuid::Uuid,
                filter: &$crate::store::CallFilter,
                seek: $crate::store::Seek,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::store::CallRow>> {
                let sql = $crate::store::lists::call_sql(number, filter, seek, limit);
                Ok(
                    $crate::store::lists::bind_args!(sqlx::query_as(&sql.text), &sql.args)
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn find_conversation(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::ConversationRow>> {
                let sql = format!(
                    "select {} from conversations where id = $1",
                    $crate::store::columns::CONVERSATION_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn contacts_by_ids(
                &self,
                ids: &[uuid::Uuid],
            ) -> $crate::store::StoreResult<Vec<$crate::store::ContactRow>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
                let sql = format!(
                    "select {} from contacts where id in ({})",
                    $crate::store::columns::CONTACT_COLUMNS,
                    placeholders.join(", ")
                );
                let mut query = sqlx::query_as(&sql);
                for id in ids {
                    query = query.bind(*id);
                }
                Ok(query.fetch_all(&self.pool).await?)
            }

            async fn find_call(
                &self,
                number: uuid::Uuid,
                call_id: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::CallRow>> {
                // Either id addresses a call: the listed `id` (wagate's) or Meta's `call_id`
                // (`wacid.…`, never a UUID), as both official SDKs use them interchangeably.
                let column = match uuid::Uuid::parse_str(call_id) {
                    Ok(_) => "id",
                    Err(_) => "call_id",
                };
                let sql = format!(
                    "select {} from calls where phone_number_internal_id = $1 and {column} = $2",
                    $crate::store::columns::CALL_COLUMNS
                );
                let query = sqlx::query_as(&sql).bind(number);
                let query = match uuid::Uuid::parse_str(call_id) {
                    Ok(id) => query.bind(id),
                    Err(_) => query.bind(call_id),
                };
                Ok(query.fetch_optional(&self.pool).await?)
            }

            async fn set_conversation_status(
                &self,
                id: uuid::Uuid,
                status: $crate::store::ConversationStatus,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                // Reopening an ended conversation while the contact already has another active one
                // would break "one active per contact": the unique index refuses it (Conflict).
                let result = sqlx::query(
                    "update conversations set status = $2, ended_at = case when $2 = \
                             'ended' then coalesce(ended_at, $3) else null end, \
                             updated_at = $3 where id = $1",
                )
                .bind(id)
                .bind(status)
                .bind(now)
                .execute(&self.pool)
                .await?;
                if result.rows_affected() == 0 {
                    return Err($crate::store::StoreError::NotFound);
                }
                Ok(())
            }

            async fn save_contact(
                &self,
                c: &$crate::store::ContactRow,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "update contacts set profile_name = $2, display_name = $3, \
                 customer_id = $4, metadata = $5, updated_at = $6 where id = $1",
                )
                .bind(c.id)
                .bind(&c.profile_name)
                .bind(&c.display_name)
                .bind(c.customer_id)
                .bind(&c.metadata)
                .bind(c.updated_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn delete_phone_number(
                &self,
                project_id: uuid::Uuid,
                phone_number_id: &str,
            ) -> $crate::store::StoreResult<Vec<String>> {
                let mut tx = self
                    .pool
                    .begin_with(<Self as $crate::store::dialect::Dialect>::BEGIN_WRITE)
                    .await?;
                let sql = format!(
                    "delete from phone_numbers where project_id = $1 and phone_number_id \
                             = $2 returning {}",
                    $crate::store::columns::PHONE_NUMBER_COLUMNS
                );
                let deleted: Option<$crate::store::PhoneNumber> = sqlx::query_as(&sql)
                    .bind(project_id)
                    .bind(phone_number_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(deleted) = deleted else {
                    return Err($crate::store::StoreError::NotFound);
                };
                let internal_id = deleted.internal_id;
                $crate::store::webhook_outbox::queue_connection_event!(
                    tx,
                    &deleted,
                    $crate::store::webhook_outbox::PHONE_NUMBER_DELETED,
                    $crate::store::now()
                );
                // The rows PostgreSQL does not cascade (migration 0005); on SQLite the foreign
                // keys have already removed them.
                for sql in [
                    "delete from webhook_delivery_attempts where delivery_id in \
                             (select id from webhook_deliveries where phone_number_internal_id = \
                             $1)",
                    "delete from webhook_deliveries where phone_number_internal_id = $1",
                    "delete from messages where phone_number_internal_id = $1",
                ] {
                    sqlx::query(sql).bind(internal_id).execute(&mut *tx).await?;
                }
                // Its media rows go too; a file stays in the store while another message uses
                // it (content addressing shares files between numbers and projects).
                let mut kept: Vec<String> = sqlx::query_scalar(
                    "delete from media_files where phone_number_internal_id = $1 \
                     and sha256 is not null returning sha256",
                )
                .bind(internal_id)
                .fetch_all(&mut *tx)
                .await?;
                sqlx::query("delete from media_files where phone_number_internal_id = $1")
                    .bind(internal_id)
                    .execute(&mut *tx)
                    .await?;
                kept.sort();
                kept.dedup();
                let mut orphaned = Vec::with_capacity(kept.len());
                for sha256 in kept {
                    let (others,): (i64,) =
                        sqlx::query_as("select count(*) from media_files where sha256 = $1")
                            .bind(&sha256)
                            .fetch_one(&mut *tx)
                            .await?;
                    if others == 0 {
                        orphaned.push(sha256);
                    }
                }
                tx.commit().await?;
                Ok(orphaned)
            }
        }
    };
}

pub(crate) use impl_common_store;

/// Applies a patch in memory; the caller writes the row back in the same transaction.
pub(crate) fn apply_patch(n: &mut super::PhoneNumber, patch: super::PhoneNumberPatch) {
    if let Some(name) = patch.name {
        n.name = name;
    }
    if let Some((sealed, sha256)) = patch.access_token {
        // The webhook secret is sealed with the token's key; re-keying both together keeps one
        // key id per row meaningful.
        n.access_token_sealed = sealed.sealed;
        n.access_token_key_id = sealed.key_id;
        n.access_token_sha256 = sha256;
    }
    if let Some(url) = patch.webhook_destination_url {
        n.webhook_destination_url = url;
    }
    if let Some(secret) = patch.webhook_secret {
        n.webhook_secret_sealed = Some(secret);
        n.secrets_key_id = Some(n.access_token_key_id.clone());
    }
    if let Some(enabled) = patch.inbound_processing_enabled {
        n.inbound_processing_enabled = enabled;
    }
    if let Some(enabled) = patch.calls_enabled {
        n.calls_enabled = enabled;
    }
    if let Some(username) = patch.username {
        n.username = username;
    }
    if let Some(status) = patch.username_status {
        n.username_status = status;
    }
}
