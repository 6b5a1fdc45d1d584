//! Stored-data reads and updates under the Graph mounts (design §2, §4–7): messages,
//! conversations, contacts and calls, with Graph cursors and `fields=kapso(…)`. The Graph mounts
//! hand a request here when its method and path name one of these routes; everything else goes
//! to the proxy.

pub(crate) mod filters;
pub(crate) mod paging;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::domain::auth::{Caller, NumberConfig};
use crate::domain::present::{self, fields};
use crate::http::body::{declared_too_large, read_body};
use crate::http::graph::path::GraphAddress;
use crate::http::graph::resolve::reachable_number;
use crate::http::graph_error::GraphError;
use crate::http::state::AppState;
use crate::store::{ContactFilter, ContactRow, Seek};

pub use paging::Query;

/// A stored-data route, recognised from the method and the path after the version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Messages {
        pnid: String,
    },
    Message {
        pnid: String,
        wamid: String,
    },
    Conversations {
        pnid: String,
    },
    Conversation {
        pnid: Option<String>,
        id: String,
    },
    UpdateConversation {
        id: String,
    },
    Contacts {
        pnid: String,
    },
    Contact {
        pnid: String,
        key: String,
    },
    UpdateContact {
        pnid: Option<String>,
        key: String,
    },
    Calls {
        pnid: Option<String>,
    },
    Call {
        call_id: String,
    },
    /// The groups the number takes part in (Groups API webhooks), newest first.
    Groups {
        pnid: String,
    },
    Group {
        pnid: String,
        group_id: String,
    },
}

pub fn route(method: &Method, rest: &str) -> Option<Route> {
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    // Path segments arrive percent-encoded (`%2B15551234567`); ids are compared decoded.
    let s = |i: usize| {
        percent_encoding::percent_decode_str(segments[i])
            .decode_utf8_lossy()
            .into_owned()
    };
    Some(match (method.as_str(), segments.as_slice()) {
        ("GET", [_, "messages"]) => Route::Messages { pnid: s(0) },
        ("GET", [_, "messages", _]) => Route::Message {
            pnid: s(0),
            wamid: s(2),
        },
        ("GET", ["conversations", _]) => Route::Conversation {
            pnid: None,
            id: s(1),
        },
        ("PATCH", ["conversations", _]) => Route::UpdateConversation { id: s(1) },
        ("GET", [_, "conversations"]) => Route::Conversations { pnid: s(0) },
        ("GET", [_, "conversations", _]) => Route::Conversation {
            pnid: Some(s(0)),
            id: s(2),
        },
        ("PATCH", ["contacts", _]) => Route::UpdateContact {
            pnid: None,
            key: s(1),
        },
        ("GET", [_, "contacts"]) => Route::Contacts { pnid: s(0) },
        ("GET", [_, "contacts", _]) => Route::Contact {
            pnid: s(0),
            key: s(2),
        },
        ("PATCH", [_, "contacts", _]) => Route::UpdateContact {
            pnid: Some(s(0)),
            key: s(2),
        },
        ("GET", ["calls"]) => Route::Calls { pnid: None },
        ("GET", ["calls", _]) => Route::Call { call_id: s(1) },
        ("GET", [_, "calls"]) => Route::Calls { pnid: Some(s(0)) },
        ("GET", [_, "groups"]) => Route::Groups { pnid: s(0) },
        ("GET", [_, "groups", _]) => Route::Group {
            pnid: s(0),
            group_id: s(2),
        },
        _ => return None,
    })
}

/// Reads the (small, JSON) body within `server.json_body_limit` and serves the route.
pub async fn serve(
    state: &AppState,
    caller: &Caller,
    address: &GraphAddress,
    request: axum::extract::Request,
    route: Route,
) -> Result<Response, GraphError> {
    let limit = state.config.server.json_body_limit;
    let (parts, body) = request.into_parts();
    let too_large = declared_too_large(&parts.headers, limit);
    let body = read_body(body, too_large, limit)
        .await
        .map_err(|e| GraphError::unreadable_body(e, limit))?;
    let request = Request {
        state,
        caller,
        query: Query::parse(address.query()),
        headers: &parts.headers,
        path: address.path(),
        body,
    };
    handle(request, route).await
}

/// Everything a stored-data handler needs from the request.
pub struct Request<'a> {
    pub state: &'a AppState,
    pub caller: &'a Caller,
    pub query: Query,
    pub headers: &'a HeaderMap,
    pub path: &'a str,
    pub body: Bytes,
}

impl Request<'_> {
    async fn number(&self, pnid: &str) -> Result<Arc<NumberConfig>, GraphError> {
        reachable_number(&self.state.numbers, self.caller, pnid)
            .await?
            .ok_or_else(|| GraphError::unreachable_object(pnid))
    }

    /// `phone_number_id` from the query (the `calls?phone_number_id=` forms).
    async fn number_from_query(&self) -> Result<Arc<NumberConfig>, GraphError> {
        let pnid = self
            .query
            .get("phone_number_id")
            .ok_or_else(|| {
                GraphError::invalid_parameter("phone_number_id: required as a query parameter")
            })?
            .to_owned();
        self.number(&pnid).await
    }

    /// The caller's number with this internal id, if they may reach it.
    async fn number_by_internal_id(
        &self,
        internal_id: Uuid,
    ) -> Result<Option<Arc<NumberConfig>>, GraphError> {
        let Some(row) = self
            .state
            .store
            .find_phone_number_by_internal_id(internal_id)
            .await?
        else {
            return Ok(None);
        };
        reachable_number(&self.state.numbers, self.caller, &row.phone_number_id).await
    }

    /// Absolute URL of this list, for `paging.next`/`previous`.
    fn base_url(&self) -> String {
        let origin = self.state.origin.for_request(self.headers);
        format!("{origin}{}", self.path)
    }

    fn list_context(
        &self,
        kind: &'static str,
        number: Uuid,
        request: paging::PageRequest,
    ) -> paging::ListContext<'_> {
        paging::ListContext {
            kind,
            number,
            request,
            base_url: self.base_url(),
            query: &self.query,
        }
    }

    fn fields(&self) -> Result<fields::KapsoFields, GraphError> {
        fields::parse(self.query.get("fields")).map_err(GraphError::invalid_parameter)
    }

    /// The vault's view of these messages' media, by wamid (media messages only).
    async fn media(
        &self,
        number: &NumberConfig,
        rows: &[&crate::store::MessageRow],
    ) -> Result<HashMap<String, present::MediaView>, GraphError> {
        let wamids: Vec<String> = rows
            .iter()
            .filter(|r| r.has_media)
            .map(|r| r.wamid.clone())
            .collect();
        if wamids.is_empty() || self.state.vault.is_none() {
            return Ok(HashMap::new());
        }
        let files = self
            .state
            .store
            .media_files_of(number.internal_id, &wamids)
            .await?;
        let origin = self.state.origin.for_request(self.headers);
        let now = crate::store::now();
        let lifetime = self.state.config.media.link_lifetime;
        Ok(files
            .into_iter()
            .map(|f| {
                let state = f.state();
                let url = (state == crate::store::MediaState::Stored).then(|| {
                    crate::domain::media_links::media_url(
                        &self.state.secrets,
                        &origin,
                        f.id,
                        lifetime,
                        now,
                    )
                });
                let view = present::MediaView {
                    url,
                    status: state.as_str(),
                    error: f
                        .last_error
                        .filter(|_| state == crate::store::MediaState::Failed),
                    content_type: f.content_type,
                    filename: f.filename,
                    byte_size: f
                        .byte_size
                        .filter(|_| state == crate::store::MediaState::Stored),
                };
                (f.wamid, view)
            })
            .collect())
    }

    async fn contacts(
        &self,
        ids: impl Iterator<Item = Option<Uuid>>,
    ) -> Result<HashMap<Uuid, ContactRow>, GraphError> {
        let mut ids: Vec<Uuid> = ids.flatten().collect();
        ids.sort();
        ids.dedup();
        let rows = self.state.store.contacts_by_ids(&ids).await?;
        Ok(rows.into_iter().map(|c| (c.id, c)).collect())
    }
}

fn ok(value: Value) -> Response {
    Json(value).into_response()
}

fn success() -> Response {
    ok(json!({ "success": true }))
}

pub async fn handle(request: Request<'_>, route: Route) -> Result<Response, GraphError> {
    match route {
        Route::Messages { pnid } => {
            let number = request.number(&pnid).await?;
            let fields = request.fields()?;
            let filter = filters::messages(&request.query)?;
            let page = paging::parse(&request.query, "m", number.internal_id)?;
            let rows = request
                .state
                .store
                .list_messages(number.internal_id, &filter, page.seek, page.limit + 1)
                .await?;
            let contacts = request.contacts(rows.iter().map(|r| r.contact_id)).await?;
            let media = request
                .media(&number, &rows.iter().collect::<Vec<_>>())
                .await?;
            let body = paging::envelope(
                rows,
                &request.list_context("m", number.internal_id, page),
                |r| (r.created_at, r.id),
                |r| {
                    present::message(
                        r,
                        r.contact_id.and_then(|id| contacts.get(&id)),
                        media.get(&r.wamid),
                        &fields,
                    )
                },
            );
            Ok(ok(body))
        }
        Route::Message { pnid, wamid } => {
            let number = request.number(&pnid).await?;
            let fields = request.fields()?;
            let row = request
                .state
                .store
                .find_message(number.internal_id, &wamid)
                .await?
                .ok_or_else(|| GraphError::unreachable_object(&wamid))?;
            let contacts = request.contacts(std::iter::once(row.contact_id)).await?;
            let media = request.media(&number, &[&row]).await?;
            Ok(ok(present::message(
                &row,
                row.contact_id.and_then(|id| contacts.get(&id)),
                media.get(&row.wamid),
                &fields,
            )))
        }
        Route::Conversations { pnid } => {
            let number = request.number(&pnid).await?;
            let fields = request.fields()?;
            let filter = filters::conversations(&request.query)?;
            let page = paging::parse(&request.query, "v", number.internal_id)?;
            let rows = request
                .state
                .store
                .list_conversations(number.internal_id, &filter, page.seek, page.limit + 1)
                .await?;
            let contacts = request
                .contacts(rows.iter().map(|r| Some(r.contact_id)))
                .await?;
            let body = paging::envelope(
                rows,
                &request.list_context("v", number.internal_id, page),
                |r| (r.last_active_at, r.id),
                |r| {
                    present::conversation(
                        r,
                        contacts.get(&r.contact_id),
                        &number.phone_number_id,
                        &fields,
                    )
                },
            );
            Ok(ok(body))
        }
        Route::Conversation { pnid, id } => {
            let fields = request.fields()?;
            let (conversation, number) = find_conversation(&request, pnid.as_deref(), &id).await?;
            let contacts = request
                .contacts(std::iter::once(Some(conversation.contact_id)))
                .await?;
            Ok(ok(present::conversation(
                &conversation,
                contacts.get(&conversation.contact_id),
                &number.phone_number_id,
                &fields,
            )))
        }
        Route::UpdateConversation { id } => {
            let (conversation, _) = find_conversation(&request, None, &id).await?;
            let body: Value = parse_body(&request.body)?;
            let status = match body.get("status").and_then(Value::as_str).map(str::parse) {
                Some(Ok(status)) => status,
                _ => {
                    return Err(GraphError::invalid_parameter(
                        "status: must be \"active\" or \"ended\"",
                    ))
                }
            };
            match request
                .state
                .store
                .set_conversation_status(conversation.id, status, crate::store::now())
                .await
            {
                Ok(()) => Ok(success()),
                Err(crate::store::StoreError::Conflict { .. }) => {
                    Err(GraphError::invalid_parameter(
                        "status: the contact already has another active conversation; end it first",
                    ))
                }
                Err(e) => Err(e.into()),
            }
        }
        Route::Contacts { pnid } => {
            let number = request.number(&pnid).await?;
            let fields = request.fields()?;
            let filter = filters::contacts(&request.query)?;
            let page = paging::parse(&request.query, "c", number.internal_id)?;
            let rows = request
                .state
                .store
                .list_contacts(number.internal_id, &filter, page.seek, page.limit + 1)
                .await?;
            let body = paging::envelope(
                rows,
                &request.list_context("c", number.internal_id, page),
                |r| (r.created_at, r.id),
                |r| present::contact(r, &number.phone_number_id, &fields),
            );
            Ok(ok(body))
        }
        Route::Contact { pnid, key } => {
            let number = request.number(&pnid).await?;
            let fields = request.fields()?;
            let contact = find_contact(&request, &number, &key).await?;
            Ok(ok(present::contact(
                &contact,
                &number.phone_number_id,
                &fields,
            )))
        }
        Route::UpdateContact { pnid, key } => {
            let body: Value = parse_body(&request.body)?;
            // The Python SDK names the number in the body; the JS SDK in the path.
            let pnid = match pnid {
                Some(pnid) => pnid,
                None => body
                    .get("phone_number_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        GraphError::invalid_parameter("phone_number_id: required in the body")
                    })?
                    .to_owned(),
            };
            let number = request.number(&pnid).await?;
            let mut contact = find_contact(&request, &number, &key).await?;
            filters::apply_contact_patch(&request.state.store, &number, &mut contact, &body)
                .await?;
            request.state.store.save_contact(&contact).await?;
            Ok(success())
        }
        Route::Calls { pnid } => {
            let number = match pnid {
                Some(pnid) => request.number(&pnid).await?,
                None => request.number_from_query().await?,
            };
            let filter = filters::calls(&request.query)?;
            let page = paging::parse(&request.query, "l", number.internal_id)?;
            let rows = request
                .state
                .store
                .list_calls(number.internal_id, &filter, page.seek, page.limit + 1)
                .await?;
            let contacts = request.contacts(rows.iter().map(|r| r.contact_id)).await?;
            let body = paging::envelope(
                rows,
                &request.list_context("l", number.internal_id, page),
                |r| (r.started_at, r.id),
                |r| {
                    present::call(
                        r,
                        r.contact_id.and_then(|id| contacts.get(&id)),
                        &number.phone_number_id,
                    )
                },
            );
            Ok(ok(body))
        }
        Route::Groups { pnid } => {
            let number = request.number(&pnid).await?;
            let state = request.query.get("state").map(str::to_owned);
            if let Some(state) = state.as_deref().filter(|s| !GROUP_STATES.contains(s)) {
                return Err(GraphError::invalid_parameter(format!(
                    "state: must be one of {}, got '{state}'",
                    GROUP_STATES.join(", ")
                )));
            }
            let page = paging::parse(&request.query, "g", number.internal_id)?;
            let rows = request
                .state
                .store
                .list_groups(
                    number.internal_id,
                    state.as_deref(),
                    page.seek,
                    page.limit + 1,
                )
                .await?;
            let body = paging::envelope(
                rows,
                &request.list_context("g", number.internal_id, page),
                |r| (r.created_at, r.id),
                crate::domain::groups::present,
            );
            Ok(ok(body))
        }
        Route::Group { pnid, group_id } => {
            let number = request.number(&pnid).await?;
            let group = request
                .state
                .store
                .find_group(number.internal_id, &group_id)
                .await?
                .ok_or_else(|| GraphError::unreachable_object(&group_id))?;
            Ok(ok(crate::domain::groups::present(&group)))
        }
        Route::Call { call_id } => {
            let number = request.number_from_query().await?;
            let call = request
                .state
                .store
                .find_call(number.internal_id, &call_id)
                .await?
                .ok_or_else(|| GraphError::unreachable_object(&call_id))?;
            let contacts = request.contacts(std::iter::once(call.contact_id)).await?;
            Ok(ok(present::call(
                &call,
                call.contact_id.and_then(|id| contacts.get(&id)),
                &number.phone_number_id,
            )))
        }
    }
}

/// The `state` filter of the group list.
const GROUP_STATES: [&str; 4] = ["active", "deleted", "suspended", "failed"];

fn parse_body(body: &Bytes) -> Result<Value, GraphError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| GraphError::invalid_parameter(format!("body: not valid JSON ({e})")))?;
    if !value.is_object() {
        return Err(GraphError::invalid_parameter("body: must be a JSON object"));
    }
    Ok(value)
}

/// A conversation the caller may reach (and, with a path number, of that number).
async fn find_conversation(
    request: &Request<'_>,
    pnid: Option<&str>,
    id: &str,
) -> Result<(crate::store::ConversationRow, Arc<NumberConfig>), GraphError> {
    let not_found = || GraphError::unreachable_object(id);
    let path_number = match pnid {
        Some(pnid) => Some(request.number(pnid).await?),
        None => None,
    };
    let uuid = Uuid::parse_str(id).map_err(|_| not_found())?;
    let conversation = request
        .state
        .store
        .find_conversation(uuid)
        .await?
        .ok_or_else(not_found)?;
    let number = match path_number {
        Some(number) if number.internal_id == conversation.phone_number_internal_id => number,
        Some(_) => return Err(not_found()),
        None => request
            .number_by_internal_id(conversation.phone_number_internal_id)
            .await?
            .ok_or_else(not_found)?,
    };
    Ok((conversation, number))
}

/// A contact by id, phone (`wa_id`, optional `+`) or BSUID, on `number`.
async fn find_contact(
    request: &Request<'_>,
    number: &NumberConfig,
    key: &str,
) -> Result<ContactRow, GraphError> {
    let store = &request.state.store;
    let not_found = || GraphError::unreachable_object(key);
    if let Ok(id) = Uuid::parse_str(key) {
        return store
            .contacts_by_ids(&[id])
            .await?
            .into_iter()
            .find(|c| c.phone_number_internal_id == number.internal_id)
            .ok_or_else(not_found);
    }
    let filter = if crate::domain::contacts::is_parent_bsuid(key) {
        ContactFilter {
            parent_bsuid: Some(key.to_owned()),
            ..ContactFilter::default()
        }
    } else if crate::domain::contacts::is_bsuid(key) {
        ContactFilter {
            bsuid: Some(key.to_owned()),
            ..ContactFilter::default()
        }
    } else {
        let digits = key.strip_prefix('+').unwrap_or(key);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(not_found());
        }
        ContactFilter {
            wa_id: Some(digits.to_owned()),
            ..ContactFilter::default()
        }
    };
    store
        .list_contacts(number.internal_id, &filter, Seek::First, 1)
        .await?
        .into_iter()
        .next()
        .ok_or_else(not_found)
}
