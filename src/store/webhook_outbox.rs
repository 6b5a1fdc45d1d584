//! What the outbox does for webhook resources beyond queueing one row per event: project events
//! queued with the number row they announce, buffered `whatsapp.message.received` batches,
//! `whatsapp.conversation.inactive` markers, and each webhook's run of failures (automatic
//! pausing). Shared SQL for both backends, like `outbox.rs`.

/// Project events (contract §9.2), queued in the transaction that writes the number.
pub const PHONE_NUMBER_CREATED: &str = "whatsapp.phone_number.created";
pub const PHONE_NUMBER_DELETED: &str = "whatsapp.phone_number.deleted";

/// The v2 body of a connection event (contract §9.4): the number, its project and customer.
pub fn connection_event_body(number: &super::PhoneNumber) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "phone_number_id": number.phone_number_id,
        "project": { "id": number.project_id },
        "customer": { "id": number.customer_id },
    }))
    .expect("JSON serialises")
}

/// The JSON-array text test a webhook's `events` column must pass to want `event` (names are
/// validated on write, so a quoted name matches only itself).
pub fn event_pattern(event: &str) -> String {
    format!("%\"{event}\"%")
}

/// Queues a connection event to every project webhook that wants it, inside `$tx`. A webhook
/// wagate paused keeps its events, held until it is resumed; one paused by hand gets none.
macro_rules! queue_connection_event {
    ($tx:expr, $number:expr, $event:expr, $now:expr) => {{
        let number: &$crate::store::PhoneNumber = $number;
        let event: &str = $event;
        let hooks: Vec<(uuid::Uuid, bool)> = sqlx::query_as(
            "select id, active from webhooks where project_id = $1 \
             and phone_number_internal_id is null and kind = 'kapso' \
             and (active or paused_reason is not null) and events like $2",
        )
        .bind(number.project_id)
        .bind($crate::store::webhook_outbox::event_pattern(event))
        .fetch_all(&mut *$tx)
        .await?;
        if !hooks.is_empty() {
            let body = $crate::store::webhook_outbox::connection_event_body(number);
            let internal_id = (event != $crate::store::webhook_outbox::PHONE_NUMBER_DELETED)
                .then_some(number.internal_id);
            for (webhook_id, active) in hooks {
                let delivery = $crate::store::NewDelivery {
                    id: uuid::Uuid::now_v7(),
                    project_id: number.project_id,
                    phone_number_internal_id: internal_id,
                    phone_number_id: number.phone_number_id.clone(),
                    event_id: None,
                    route_id: None,
                    fields: String::new(),
                    idempotency_key: uuid::Uuid::now_v7().to_string(),
                    message_wamids: String::new(),
                    replay_of: None,
                    created_at: $now,
                    webhook_id,
                    event_type: Some(event.to_owned()),
                    payload: Some(body.clone()),
                    batch_size: 1,
                    status: if active {
                        $crate::store::DeliveryStatus::Pending
                    } else {
                        $crate::store::DeliveryStatus::Paused
                    },
                };
                $crate::store::outbox::insert_delivery!(&mut *$tx, &delivery);
            }
            if let Some(sql) = <Self as $crate::store::dialect::Dialect>::NOTIFY {
                sqlx::query(sql).execute(&mut *$tx).await?;
            }
        }
    }};
}

pub(crate) use queue_connection_event;

/// Per webhook, what a batch of outcomes does to its run of consecutive failures: `Reset(n)`
/// when the batch had a success (n failures came after the last one), `Add(n)` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureRun {
    Reset(i32),
    Add(i32),
}

/// Folds outcomes (in finishing order) into each webhook's change of failure run.
pub fn failure_runs(
    outcomes: &[super::DeliveryOutcome],
    moved: impl Fn(&super::DeliveryOutcome) -> bool,
) -> Vec<(uuid::Uuid, FailureRun)> {
    use super::outbox::WebhookResult;
    let mut runs: Vec<(uuid::Uuid, FailureRun)> = Vec::new();
    for o in outcomes.iter().filter(|o| moved(o)) {
        let Some(webhook) = o.webhook_id else {
            continue;
        };
        let index = match runs.iter().position(|(w, _)| *w == webhook) {
            Some(i) => i,
            None => {
                runs.push((webhook, FailureRun::Add(0)));
                runs.len() - 1
            }
        };
        let run = &mut runs[index].1;
        *run = match (o.webhook_result, *run) {
            (WebhookResult::Untried, run) => run,
            (WebhookResult::Succeeded, _) => FailureRun::Reset(0),
            (WebhookResult::Failed, FailureRun::Reset(n)) => FailureRun::Reset(n + 1),
            (WebhookResult::Failed, FailureRun::Add(n)) => FailureRun::Add(n + 1),
        };
    }
    runs.retain(|(_, run)| *run != FailureRun::Add(0));
    runs
}

/// Applies failure runs inside `$tx`; a webhook whose run reaches `$pause_after` (0: never) is
/// paused, and its due deliveries are held (`paused`) until it is resumed.
macro_rules! record_failure_runs {
    ($tx:expr, $runs:expr, $pause_after:expr, $now:expr) => {{
        use $crate::store::webhook_outbox::FailureRun;
        let pause_after: u32 = $pause_after;
        for (webhook, run) in $runs {
            let run_now: Option<i32> = match run {
                FailureRun::Reset(n) => sqlx::query_scalar(
                    "update webhooks set consecutive_failures = $2 where id = $1 \
                     and consecutive_failures <> $2 returning consecutive_failures",
                )
                .bind(webhook)
                .bind(n)
                .fetch_optional(&mut *$tx)
                .await?
                .or(Some(n)),
                FailureRun::Add(n) => sqlx::query_scalar(
                    "update webhooks set consecutive_failures = consecutive_failures + $2 \
                     where id = $1 returning consecutive_failures",
                )
                .bind(webhook)
                .bind(n)
                .fetch_optional(&mut *$tx)
                .await?,
            };
            let Some(run_now) = run_now else { continue };
            if pause_after > 0 && i64::from(run_now) >= i64::from(pause_after) {
                let reason = format!(
                    "paused by wagate after {run_now} consecutive failed deliveries; \
                     fix the receiver, then PATCH active: true"
                );
                let paused = sqlx::query(
                    "update webhooks set active = false, paused_reason = $2, paused_at = $3, \
                     updated_at = $3 where id = $1 and active",
                )
                .bind(webhook)
                .bind(&reason)
                .bind($now)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
                if paused == 1 {
                    sqlx::query(
                        "update webhook_deliveries set status = 'paused', updated_at = $2 \
                         where webhook_id = $1 and status in ('pending', 'failed')",
                    )
                    .bind(webhook)
                    .bind($now)
                    .execute(&mut *$tx)
                    .await?;
                    tracing::warn!(webhook_id = %webhook, failures = run_now, "{reason}");
                    metrics::counter!("wagate_webhooks_paused_total").increment(1);
                }
            }
        }
    }};
}

pub(crate) use record_failure_runs;

/// The later events' half of the outbox: buffered batches coming due, conversations ending or
/// going quiet for webhooks that want to hear about it.
#[async_trait::async_trait]
pub trait WebhookSweeps: Send + Sync {
    /// Numbers (internal id, Meta's id) with a kapso webhook that receives `event`.
    async fn numbers_subscribed_to(
        &self,
        event: &str,
    ) -> super::StoreResult<Vec<(uuid::Uuid, String)>>;
    /// Active conversations of a number idle since before `cutoff`, oldest first.
    async fn idle_conversations(
        &self,
        number: uuid::Uuid,
        cutoff: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> super::StoreResult<Vec<super::ConversationRow>>;
    /// Active conversations of a number whose last activity is in `[floor, cutoff]` and whose
    /// quiet period has not fired for `webhook` yet.
    async fn quiet_conversations(
        &self,
        webhook: uuid::Uuid,
        number: uuid::Uuid,
        floor: chrono::DateTime<chrono::Utc>,
        cutoff: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> super::StoreResult<Vec<super::ConversationRow>>;
    /// Marks a quiet period fired and queues its delivery, once: `false` when it had fired
    /// already (another instance got there first).
    async fn fire_inactivity(
        &self,
        conversation: uuid::Uuid,
        anchor: &str,
        delivery: &super::NewDelivery,
    ) -> super::StoreResult<bool>;
    /// Queues a connection event for a number outside the write that changed it (a setup link
    /// reconnecting a number that stays the same row).
    async fn announce_connection(
        &self,
        number: &super::PhoneNumber,
        event: &str,
    ) -> super::StoreResult<()>;
    /// Queues every due batch (window closed, or `max_buffer_size` events) as one delivery and
    /// removes its events, batch by batch in one transaction each; returns how many it queued.
    async fn flush_webhook_buffers(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> super::StoreResult<u32>;
}

/// The batch body (contract §9.5) around events already rendered.
pub fn batch_body(event: &str, items: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::with_capacity(items.iter().map(Vec::len).sum::<usize>() + 64);
    body.extend_from_slice(br#"{"type":"#);
    body.extend_from_slice(
        serde_json::to_string(event)
            .expect("JSON serialises")
            .as_bytes(),
    );
    body.extend_from_slice(br#","batch":true,"data":["#);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    body
}

macro_rules! impl_webhook_sweeps {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::webhook_outbox::WebhookSweeps for $store {
            async fn numbers_subscribed_to(
                &self,
                event: &str,
            ) -> $crate::store::StoreResult<Vec<(uuid::Uuid, String)>> {
                Ok(sqlx::query_as(
                    "select distinct p.internal_id, p.phone_number_id from webhooks w \
                     join phone_numbers p on p.internal_id = w.phone_number_internal_id \
                     where w.kind = 'kapso' and (w.active or w.paused_reason is not null) \
                     and w.events like $1",
                )
                .bind($crate::store::webhook_outbox::event_pattern(event))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn idle_conversations(
                &self,
                number: uuid::Uuid,
                cutoff: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::store::ConversationRow>> {
                let sql = format!(
                    "select {} from conversations where phone_number_internal_id = $1 \
                     and status = 'active' and active_second < $2 and last_active_at < $2 \
                     order by active_second, last_active_at, id limit $3",
                    $crate::store::columns::CONVERSATION_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(number)
                    .bind(cutoff)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn quiet_conversations(
                &self,
                webhook: uuid::Uuid,
                number: uuid::Uuid,
                floor: chrono::DateTime<chrono::Utc>,
                cutoff: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::store::ConversationRow>> {
                let sql = format!(
                    "select {} from conversations c where c.phone_number_internal_id = $1 \
                     and c.status = 'active' and c.active_second >= $6 and c.active_second <= $3 \
                     and c.last_active_at >= $2 and c.last_active_at <= $3 and not exists (select 1 \
                     from webhook_inactivity_fired f where f.webhook_id = $4 \
                     and f.conversation_id = c.id and f.anchor = coalesce(c.last_message_id, '')) \
                     order by c.active_second, c.last_active_at, c.id limit $5",
                    $crate::store::columns::CONVERSATION_COLUMNS
                        .split(", ")
                        .map(|c| format!("c.{}", c.trim()))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                Ok(sqlx::query_as(&sql)
                    .bind(number)
                    .bind(floor)
                    .bind(cutoff)
                    .bind(webhook)
                    .bind(i64::from(limit))
                    .bind($crate::store::records::whole_second(floor))
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn fire_inactivity(
                &self,
                conversation: uuid::Uuid,
                anchor: &str,
                delivery: &$crate::store::NewDelivery,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self
                    .pool
                    .begin_with(<Self as $crate::store::dialect::Dialect>::BEGIN_WRITE)
                    .await?;
                let marked = sqlx::query(
                    "insert into webhook_inactivity_fired (webhook_id, conversation_id, anchor, \
                     fired_at) values ($1, $2, $3, $4) on conflict do nothing",
                )
                .bind(delivery.webhook_id)
                .bind(conversation)
                .bind(anchor)
                .bind(delivery.created_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if marked == 0 {
                    return Ok(false);
                }
                $crate::store::outbox::insert_delivery!(&mut *tx, delivery);
                if let Some(sql) = <Self as $crate::store::dialect::Dialect>::NOTIFY {
                    sqlx::query(sql).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn announce_connection(
                &self,
                number: &$crate::store::PhoneNumber,
                event: &str,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self
                    .pool
                    .begin_with(<Self as $crate::store::dialect::Dialect>::BEGIN_WRITE)
                    .await?;
                $crate::store::webhook_outbox::queue_connection_event!(
                    tx,
                    number,
                    event,
                    $crate::store::now()
                );
                tx.commit().await?;
                Ok(())
            }

            async fn flush_webhook_buffers(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> $crate::store::StoreResult<u32> {
                use std::collections::HashMap;
                // Due batches: the oldest event's window has closed, or the batch is full.
                let due: Vec<(uuid::Uuid, uuid::Uuid, Option<i32>, bool)> = sqlx::query_as(
                    "select b.webhook_id, b.conversation_id, w.max_buffer_size, w.active \
                     from webhook_buffered_events b join webhooks w on w.id = b.webhook_id \
                     group by b.webhook_id, b.conversation_id, w.max_buffer_size, w.active \
                     having min(b.flush_at) <= $1 or count(*) >= coalesce(w.max_buffer_size, 50) \
                     limit $2",
                )
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                if due.is_empty() {
                    return Ok(0);
                }
                // Every due batch of this pass in one transaction: one read of their events
                // (rows another instance is flushing are locked, so skipped), one delivery per
                // batch, one delete.
                let mut tx = self
                    .pool
                    .begin_with(<Self as $crate::store::dialect::Dialect>::BEGIN_WRITE)
                    .await?;
                let keys = (0..due.len())
                    .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!(
                    "select id, webhook_id, conversation_id, project_id, phone_number_internal_id, \
                     phone_number_id, payload from webhook_buffered_events \
                     where (webhook_id, conversation_id) in ({keys}) \
                     order by webhook_id, conversation_id, created_at, id{}",
                    <Self as $crate::store::dialect::Dialect>::SKIP_LOCKED
                );
                let mut query = sqlx::query_as::<
                    _,
                    (uuid::Uuid, uuid::Uuid, uuid::Uuid, uuid::Uuid, uuid::Uuid, String, Vec<u8>),
                >(&sql);
                for (webhook, conversation, _, _) in &due {
                    query = query.bind(*webhook).bind(*conversation);
                }
                let rows = query.fetch_all(&mut *tx).await?;
                let settings: HashMap<(uuid::Uuid, uuid::Uuid), (i32, bool)> = due
                    .iter()
                    .map(|(w, c, size, active)| ((*w, *c), (size.unwrap_or(50).max(1), *active)))
                    .collect();
                let mut batches: Vec<((uuid::Uuid, uuid::Uuid), Vec<usize>)> = Vec::new();
                for (index, row) in rows.iter().enumerate() {
                    let key = (row.1, row.2);
                    match batches.last_mut() {
                        Some((last, items)) if *last == key => items.push(index),
                        _ => batches.push((key, vec![index])),
                    }
                }
                let event = "whatsapp.message.received";
                let mut taken: Vec<uuid::Uuid> = Vec::with_capacity(rows.len());
                for (key, mut items) in batches {
                    let (size, active) = settings.get(&key).copied().unwrap_or((50, true));
                    // The rest of a full batch waits for the next pass (a batch of its own).
                    items.truncate(usize::try_from(size).unwrap_or(1));
                    let first = &rows[items[0]];
                    let bodies: Vec<Vec<u8>> = items.iter().map(|&i| rows[i].6.clone()).collect();
                    let wamids: Vec<String> = bodies
                        .iter()
                        .filter_map(|item| {
                            let value: serde_json::Value = serde_json::from_slice(item).ok()?;
                            Some(value.pointer("/message/id")?.as_str()?.to_owned())
                        })
                        .collect();
                    let delivery = $crate::store::NewDelivery {
                        id: uuid::Uuid::now_v7(),
                        project_id: first.3,
                        phone_number_internal_id: Some(first.4),
                        phone_number_id: first.5.clone(),
                        event_id: None,
                        route_id: None,
                        fields: String::new(),
                        idempotency_key: uuid::Uuid::now_v7().to_string(),
                        message_wamids: wamids.join(" "),
                        replay_of: None,
                        created_at: $crate::store::now(),
                        webhook_id: key.0,
                        event_type: Some(event.to_owned()),
                        payload: Some($crate::store::webhook_outbox::batch_body(event, &bodies)),
                        batch_size: i32::try_from(bodies.len()).unwrap_or(i32::MAX),
                        status: if active {
                            $crate::store::DeliveryStatus::Pending
                        } else {
                            $crate::store::DeliveryStatus::Paused
                        },
                    };
                    $crate::store::outbox::insert_delivery!(&mut *tx, &delivery);
                    taken.extend(items.iter().map(|&i| rows[i].0));
                }
                for chunk in taken.chunks(500) {
                    let placeholders = (1..=chunk.len())
                        .map(|i| format!("${i}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let sql =
                        format!("delete from webhook_buffered_events where id in ({placeholders})");
                    let mut query = sqlx::query(&sql);
                    for id in chunk {
                        query = query.bind(*id);
                    }
                    query.execute(&mut *tx).await?;
                }
                if let Some(sql) = <Self as $crate::store::dialect::Dialect>::NOTIFY {
                    sqlx::query(sql).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(u32::try_from(due.len()).unwrap_or(u32::MAX))
            }
        }
    };
}

pub(crate) use impl_webhook_sweeps;
