//! Conversations: one active per (number, contact); a message either way keeps it alive; after
//! `conversations.inactivity` without one it ends (lazily here, and by the sweeper), and the next
//! message opens a new one with a new id.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::store::{ConversationRow, ConversationStatus, StoreResult, StoreTx};
use crate::time::iso;

/// What a message contributes to its conversation's counters.
#[derive(Debug, Clone)]
pub struct Activity<'a> {
    pub inbound: bool,
    pub wamid: &'a str,
    pub message_type: &'a str,
    pub text: &'a str,
    pub at: DateTime<Utc>,
}

/// Records a message on the contact's active conversation, opening one when needed.
pub async fn touch(
    tx: &mut dyn StoreTx,
    project_id: Uuid,
    number: Uuid,
    contact_id: Uuid,
    activity: &Activity<'_>,
    inactivity: chrono::Duration,
) -> StoreResult<Touched> {
    let mut ended = None;
    let mut conversation = match tx.find_active_conversation(number, contact_id).await? {
        Some(mut stale) if stale.last_active_at + inactivity < activity.at => {
            stale.status = ConversationStatus::Ended;
            stale.ended_at = Some(stale.last_active_at + inactivity);
            stale.updated_at = activity.at;
            tx.update_conversation(&stale).await?;
            ended = Some(stale);
            None
        }
        other => other,
    };
    let mut created = false;
    if conversation.is_none() {
        let fresh = ConversationRow::opened(project_id, number, contact_id, activity.at);
        conversation = if tx.insert_conversation(&fresh).await? {
            created = true;
            Some(fresh)
        } else {
            tx.find_active_conversation(number, contact_id).await?
        };
    }
    let Some(mut conversation) = conversation else {
        return Err(
            anyhow::anyhow!("active conversation vanished while recording a message").into(),
        );
    };
    conversation.messages_count += 1;
    conversation.last_message_id = Some(activity.wamid.to_owned());
    conversation.last_message_type = Some(activity.message_type.to_owned());
    conversation.last_message_timestamp = Some(iso(activity.at));
    conversation.last_message_text = Some(activity.text.chars().take(500).collect());
    conversation.last_active_at = conversation.last_active_at.max(activity.at);
    if activity.inbound {
        conversation.last_inbound_at = Some(activity.at);
    } else {
        conversation.last_outbound_at = Some(activity.at);
    }
    conversation.updated_at = activity.at;
    tx.update_conversation(&conversation).await?;
    Ok(Touched {
        conversation,
        created,
        ended,
    })
}

/// What recording a message did to its contact's conversations.
#[derive(Debug, Clone)]
pub struct Touched {
    /// The active conversation, with the message counted.
    pub conversation: ConversationRow,
    /// It was opened by this message.
    pub created: bool,
    /// The conversation this message found stale and ended first.
    pub ended: Option<ConversationRow>,
}
