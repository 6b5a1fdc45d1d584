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
