//! Recording what passes through the proxy: sends (as outbound messages, `pending`), `status: read`
//! requests (the inbound message becomes `read`), calls placed through Graph, username changes
//! and two-step PINs Meta accepted. Every recording serialises (the writer's spill file keeps
//! them while the database is away) and applying one twice changes nothing the second time.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::contacts::text;
use super::envelope::RoutedNumber;
use super::ingest;
use super::record::IngestSettings;
use crate::store::{StoreResult, StoreTx};

/// Something the proxy saw that must be recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Recording {
    /// `POST {pnid}/messages` that Meta accepted (a send, or a `status: read`).
    Send {
        number: RoutedNumber,
        request: Value,
        response: Value,
        at: DateTime<Utc>,
    },
    /// `POST {pnid}/calls` with `action: connect` that Meta accepted.
    Call {
        number: RoutedNumber,
        request: Value,
        response: Value,
        at: DateTime<Utc>,
    },
    /// `POST|DELETE {pnid}/username` that Meta accepted: the number's username state now.
    Username {
        number: Uuid,
        username: Option<String>,
        status: Option<String>,
        at: DateTime<Utc>,
    },
    /// `POST {pnid}/register` with a `pin` that Meta accepted: two-step verification is on.
    PinEnabled { number: Uuid, at: DateTime<Utc> },
}

impl Recording {
    /// Same shard as the webhooks about the same user (see `IngestJob::shard_key`).
    pub(super) fn shard_key(&self) -> u64 {
        let (number, request) = match self {
            Self::Send {
                number, request, ..
            }
            | Self::Call {
                number, request, ..
            } => (number, request),
            Self::Username { number, .. } | Self::PinEnabled { number, .. } => {
                return ingest::shard_hash(*number, "");
            }
        };
        let user = ["to", "recipient"]
            .iter()
            .find_map(|key| request.get(key).and_then(Value::as_str))
            .unwrap_or("");
        ingest::shard_hash(number.internal_id, user)
    }

    /// The number with its webhooks, for recordings that queue events (a spilled recording comes
    /// back without them: they are looked up again before it is applied).
    pub fn routed_number_mut(&mut self) -> Option<&mut RoutedNumber> {
        match self {
            Self::Send { number, .. } | Self::Call { number, .. } => Some(number),
            Self::Username { .. } | Self::PinEnabled { .. } => None,
        }
    }

    /// The wamid a recorded send will lock and the user it went to (see `IngestJob::prefetch`).
    pub(super) fn prefetch(&self, batch: &mut crate::store::Prefetch) {
        if let Self::Send {
            number,
            request,
            response,
            ..
        } = self
        {
            if request.get("status").and_then(Value::as_str) == Some("read") {
                return;
            }
            let number = number.internal_id;
            if let Some(wamid) = response.pointer("/messages/0/id").and_then(Value::as_str) {
                batch.messages.push((number, wamid.to_owned()));
            }
            let contact = response.pointer("/contacts/0").unwrap_or(&Value::Null);
            for id in [
                request.get("to"),
                request.get("recipient"),
                contact.get("wa_id"),
                contact.get("user_id"),
            ] {
                let id = id.and_then(Value::as_str).map(str::to_owned);
                ingest::prefetch_user(batch, number, id);
            }
        }
    }
}

pub async fn apply(
    tx: &mut dyn StoreTx,
    recording: &Recording,
    settings: IngestSettings,
) -> StoreResult<()> {
    match recording {
        Recording::Send {
            number,
            request,
            response,
            at,
        } => {
            if request.get("status").and_then(Value::as_str) == Some("read") {
                if let Some(wamid) = text(request, "message_id") {
                    ingest::mark_read(tx, number.internal_id, &wamid, *at).await?;
                }
                return Ok(());
            }
            super::outbound::record_send(tx, number, request, response, settings, *at).await
        }
        Recording::Call {
            number,
            request,
            response,
            at,
        } => super::calls::record_outbound(tx, number, request, response, *at).await,
        Recording::Username {
            number,
            username,
            status,
            ..
        } => {
            tx.set_username(*number, username.as_deref(), status.as_deref())
                .await
        }
        Recording::PinEnabled { number, at } => tx.set_pin_enabled(*number, *at).await,
    }
}
