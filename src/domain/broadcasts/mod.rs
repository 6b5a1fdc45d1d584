//! Queued sends, in the shape of Kapso's Broadcasts API: a broadcast is created for one number
//! (as a `draft`, with an optional template), recipients are added (each a template's
//! per-recipient `components`, or a whole Graph send body), then it is sent (or scheduled) and
//! the worker (`worker`) sends every recipient at the number's pace, below proxied sends.
//!
//! Each recipient's send body is built and checked when it is added, so a bad item is refused
//! with its index and nothing of that call is stored; the body carries
//! `biz_opaque_callback_data = "wagate:broadcast:<recipient id>"`, which Meta echoes in the
//! message's status webhooks: that is how a send whose answer was lost is recognised as sent.

pub mod worker;

use std::sync::Arc;

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::field_error::FieldError;
use super::number_directory::{NumberConfig, NumberDirectory};
use crate::config::PacingConfig;
use crate::store::broadcasts::{
    AddedRecipients, BroadcastChange, BroadcastCounts, BroadcastRow, NewRecipient, RecipientRow,
};
use crate::store::{DynStore, StoreError};

/// The prefix of the `biz_opaque_callback_data` of every broadcast send.
pub const CALLBACK_PREFIX: &str = "wagate:broadcast:";

/// Most recipients one add call may carry (Kapso's limit).
pub const MAX_RECIPIENTS_PER_CALL: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> BroadcastError {
    BroadcastError::Validation(vec![FieldError::new(field, message)])
}

/// A broadcast with its running counts.
#[derive(Debug, Clone)]
pub struct BroadcastView {
    pub row: BroadcastRow,
    pub counts: BroadcastCounts,
}

/// The Broadcasts service. Cheap to clone.
#[derive(Clone)]
pub struct Broadcasts {
    store: DynStore,
    numbers: NumberDirectory,
    config: PacingConfig,
    /// Wakes this instance's worker when a broadcast starts.
    wake: Arc<tokio::sync::Notify>,
}

impl Broadcasts {
    pub fn new(
        store: DynStore,
        numbers: NumberDirectory,
        config: PacingConfig,
        wake: Arc<tokio::sync::Notify>,
    ) -> Self {
        Self {
            store,
            numbers,
            config,
            wake,
        }
    }

    /// The caller's number, or the same 404 as an unknown one.
    async fn own_number(
        &self,
        project: Uuid,
        phone_number_id: &str,
    ) -> Result<Arc<NumberConfig>, BroadcastError> {
        self.numbers
            .number(phone_number_id)
            .await?
            .filter(|n| n.project_id == project)
            .ok_or(BroadcastError::NotFound("phone number"))
    }

    /// Creates a `draft`; with `recipients` in the same body they are added and the broadcast
    /// starts sending at once (`true` in the answer).
    pub async fn create(
        &self,
        project: Uuid,
        input: &Value,
    ) -> Result<(BroadcastView, bool), BroadcastError> {
        let pnid = input
            .get("phone_number_id")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| invalid("phone_number_id", "is required: the number to send from"))?;
        let number = self.own_number(project, pnid).await?;
        let name = match input.get("name") {
            None | Some(Value::Null) => {
                format!("Broadcast {}", crate::store::now().format("%Y-%m-%d %H:%M"))
            }
            Some(Value::String(n)) if !n.trim().is_empty() && n.len() <= 200 => n.trim().to_owned(),
            Some(_) => return Err(invalid("name", "must be a text of 1 to 200 characters")),
        };
        let template = self.template(&number, input).await?;
        if let Some((name, language, _)) = &template {
            let probe = json!({"type": "template", "template": {"name": name, "language": {"code": language}}});
            if let Some(refusal) = super::account_state::refusal(
                number.account_state.as_deref(),
                &number.blocked_templates,
                &probe,
            ) {
                return Err(invalid(
                    "whatsapp_template_id",
                    format!(
                        "Meta would refuse every send: {} ({})",
                        refusal.title, refusal.details
                    ),
                ));
            }
        }
        let items = match input.get("recipients") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(items.as_slice()),
            Some(_) => return Err(invalid("recipients", "must be an array")),
        };
        let now = crate::store::now();
        let row = BroadcastRow {
            id: Uuid::now_v7(),
            project_id: project,
            phone_number_internal_id: number.internal_id,
            phone_number_id: number.phone_number_id.clone(),
            name,
            template_name: template.as_ref().map(|t| t.0.clone()),
            template_language: template.as_ref().map(|t| t.1.clone()),
            template_id: template.and_then(|t| t.2),
            status: "draft".into(),
            total_recipients: 0,
            scheduled_at: None,
            started_at: None,
            completed_at: None,
            stopped_at: None,
            created_at: now,
            updated_at: now,
        };
        // Checked before anything is stored: a create that fails leaves no draft behind.
        let recipients = match items {
            Some(items) => Some(self.build_recipients(&row, &number, items)?),
            None => None,
        };
        self.store.create_broadcast(&row).await?;
        let Some(recipients) = recipients else {
            return Ok((self.view(row).await?, false));
        };
        self.insert(&row, &recipients).await?;
        let view = self.change(project, row.id, BroadcastChange::Send).await?;
        Ok((view, true))
    }

    /// `(name, language, template id)` from `whatsapp_template_id` (a template the number's
    /// webhooks reported) or `template: {name, language}`.
    async fn template(
        &self,
        number: &NumberConfig,
        input: &Value,
    ) -> Result<Option<(String, String, Option<String>)>, BroadcastError> {
        if let Some(id) = input.get("whatsapp_template_id").filter(|v| !v.is_null()) {
            let id = id
                .as_str()
                .map(str::to_owned)
                .or_else(|| id.as_u64().map(|n| n.to_string()))
                .ok_or_else(|| invalid("whatsapp_template_id", "must be Meta's template id"))?;
            let known = self.store.templates(number.internal_id).await?;
            let found = known
                .into_iter()
                .find(|t| t.template_id == id)
                .and_then(|t| Some((t.name?, t.language?, Some(id.clone()))));
            return found.map(Some).ok_or_else(|| {
                invalid(
                    "whatsapp_template_id",
                    "no template with this id has been reported for the number; give template.name and template.language instead",
                )
            });
        }
        match input.get("template") {
            None | Some(Value::Null) => Ok(None),
            Some(template) => {
                let name = template
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty());
                let language = match template.get("language") {
                    Some(Value::String(code)) => Some(code.as_str()),
                    Some(object) => object.get("code").and_then(Value::as_str),
                    None => None,
                }
                .filter(|l| !l.is_empty());
                match (name, language) {
                    (Some(name), Some(language)) => {
                        Ok(Some((name.to_owned(), language.to_owned(), None)))
                    }
                    _ => Err(invalid(
                        "template",
                        "must have a name and a language (e.g. {\"name\": \"promo\", \"language\": \"en_US\"})",
                    )),
                }
            }
        }
    }

    /// Builds each recipient's send body; the first bad item refuses the whole call, naming it.
    fn build_recipients(
        &self,
        broadcast: &BroadcastRow,
        number: &NumberConfig,
        items: &[Value],
    ) -> Result<Vec<NewRecipient>, BroadcastError> {
        if items.len() > MAX_RECIPIENTS_PER_CALL {
            return Err(invalid(
                "recipients",
                format!("at most {MAX_RECIPIENTS_PER_CALL} per call; add more with further calls"),
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let id = Uuid::now_v7();
                let (recipient, body) = recipient_body(broadcast, id, item)
                    .map_err(|message| invalid(format!("recipients[{index}]"), message))?;
                if let Some(refusal) = super::account_state::refusal(
                    number.account_state.as_deref(),
                    &number.blocked_templates,
                    &body,
                ) {
                    return Err(invalid(
                        format!("recipients[{index}]"),
                        format!(
                            "Meta would refuse this send: {} ({})",
                            refusal.title, refusal.details
                        ),
                    ));
                }
                Ok(NewRecipient {
                    id,
                    recipient,
                    body: body.to_string(),
                })
            })
            .collect()
    }

    async fn insert(
        &self,
        broadcast: &BroadcastRow,
        recipients: &[NewRecipient],
    ) -> Result<(u32, u32), BroadcastError> {
        let added = self
            .store
            .add_broadcast_recipients(
                broadcast.id,
                recipients,
                self.config.max_recipients,
                crate::store::now(),
            )
            .await?;
        match added {
            AddedRecipients::Added { added, duplicates } => Ok((added, duplicates)),
            AddedRecipients::NotEditable { status } => Err(BroadcastError::Conflict(format!(
                "recipients can be added only while the broadcast is draft or scheduled; it is {status}"
            ))),
            AddedRecipients::TooMany { total } => Err(invalid(
                "recipients",
                format!(
                    "a broadcast holds at most {} recipients (pacing.max_recipients); it has {total}",
                    self.config.max_recipients
                ),
            )),
        }
    }

    /// Adds recipients: `(added, duplicates)`.
    pub async fn add(
        &self,
        project: Uuid,
        id: Uuid,
        items: &[Value],
    ) -> Result<(u32, u32), BroadcastError> {
        let row = self.find(project, id).await?;
        let number = self
            .numbers
            .number(&row.phone_number_id)
            .await?
            .ok_or(BroadcastError::NotFound("phone number"))?;
        let recipients = self.build_recipients(&row, &number, items)?;
        self.insert(&row, &recipients).await
    }

    pub async fn find(&self, project: Uuid, id: Uuid) -> Result<BroadcastRow, BroadcastError> {
        self.store
            .find_broadcast(project, id)
            .await?
            .ok_or(BroadcastError::NotFound("broadcast"))
    }

    pub async fn view(&self, row: BroadcastRow) -> Result<BroadcastView, BroadcastError> {
        let counts = self.store.broadcast_counts(&row).await?;
        Ok(BroadcastView { row, counts })
    }

    pub async fn get(&self, project: Uuid, id: Uuid) -> Result<BroadcastView, BroadcastError> {
        let row = self.find(project, id).await?;
        self.view(row).await
    }

    pub async fn list(
        &self,
        project: Uuid,
        before: Option<(chrono::DateTime<chrono::Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<BroadcastView>, BroadcastError> {
        let rows = self.store.list_broadcasts(project, before, limit).await?;
        let mut views = Vec::with_capacity(rows.len());
        for row in rows {
            views.push(self.view(row).await?);
        }
        Ok(views)
    }

    /// Sends, schedules, cancels or stops; a change the status does not allow is a 409 naming it.
    pub async fn change(
        &self,
        project: Uuid,
        id: Uuid,
        change: BroadcastChange,
    ) -> Result<BroadcastView, BroadcastError> {
        let now = crate::store::now();
        match self
            .store
            .change_broadcast(project, id, change, now)
            .await?
        {
            Some(row) => {
                if change == BroadcastChange::Send {
                    self.wake.notify_one();
                }
                tracing::info!(broadcast_id = %row.id, status = %row.status, "broadcast changed");
                self.view(row).await
            }
            None => {
                let row = self.find(project, id).await?;
                let allowed = match change {
                    BroadcastChange::Send => "draft or scheduled",
                    BroadcastChange::Schedule(_) => "draft",
                    BroadcastChange::Cancel => "scheduled",
                    BroadcastChange::Stop => "sending",
                };
                Err(BroadcastError::Conflict(format!(
                    "the broadcast is {}; this works only while it is {allowed}",
                    row.status
                )))
            }
        }
    }

    pub async fn recipients(
        &self,
        project: Uuid,
        id: Uuid,
        after: Option<i64>,
        state: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RecipientRow>, BroadcastError> {
        self.find(project, id).await?;
        Ok(self
            .store
            .list_broadcast_recipients(id, after, state, limit)
            .await?)
    }
}

/// The `to` and the whole send body of one recipient item: `{"phone_number", "components"}`
/// for the broadcast's template, or a Graph send body with `to`.
fn recipient_body(
    broadcast: &BroadcastRow,
    id: Uuid,
    item: &Value,
) -> Result<(String, Value), String> {
    let Value::Object(item) = item else {
        return Err("must be an object".into());
    };
    let callback = format!("{CALLBACK_PREFIX}{id}");
    if let Some(phone) = item.get("phone_number") {
        let to = recipient_id(phone, "phone_number")?;
        let (Some(name), Some(language)) = (&broadcast.template_name, &broadcast.template_language)
        else {
            return Err(
                "the broadcast has no template: send a Graph send body with to and type".into(),
            );
        };
        let mut template = Map::new();
        template.insert("name".into(), json!(name));
        template.insert("language".into(), json!({"code": language}));
        match item.get("components") {
            None | Some(Value::Null) => {}
            Some(Value::Array(components)) => {
                if components.iter().any(|c| !c.is_object()) {
                    return Err("components: every component must be an object".into());
                }
                template.insert("components".into(), Value::Array(components.clone()));
            }
            Some(_) => {
                return Err("components: must be an array of Meta's template components".into())
            }
        }
        let body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "template",
            "template": template,
            "biz_opaque_callback_data": callback,
        });
        return Ok((to, body));
    }
    let to = recipient_id(
        item.get("to").ok_or(
            "needs phone_number (with the broadcast's template) or a Graph send body with to",
        )?,
        "to",
    )?;
    match item.get("type").and_then(Value::as_str) {
        Some(kind) if !kind.is_empty() => {
            if item.get(kind).is_none() {
                return Err(format!("a send of type {kind} needs its {kind} object"));
            }
        }
        _ => return Err("type: is required (text, template, image, …)".into()),
    }
    if item.get("status").is_some() {
        return Err("status: read receipts are not messages; send them through the proxy".into());
    }
    if item
        .get("messaging_product")
        .is_some_and(|p| p.as_str() != Some("whatsapp"))
    {
        return Err("messaging_product: must be whatsapp".into());
    }
    let mut body = item.clone();
    body.insert("messaging_product".into(), json!("whatsapp"));
    body.entry("recipient_type").or_insert(json!("individual"));
    // Replaced: it is how a send whose answer was lost is recognised as sent.
    body.insert("biz_opaque_callback_data".into(), json!(callback));
    Ok((to, Value::Object(body)))
}

/// A phone number (digits, with an optional `+` and separators) or a BSUID.
fn recipient_id(value: &Value, field: &str) -> Result<String, String> {
    let raw = value
        .as_str()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| format!("{field}: must be a phone number or a business-scoped user ID"))?;
    if super::contacts::is_bsuid(raw) {
        return Ok(raw.to_owned());
    }
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    let allowed = raw
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'));
    if !allowed || !(6..=15).contains(&digits.len()) {
        return Err(format!(
            "{field}: '{raw}' is not a phone number in international format (6 to 15 digits, e.g. +14155550123)"
        ));
    }
    Ok(digits)
}
