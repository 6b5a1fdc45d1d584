//! The Graph entry point: every request that is not a control route lands here, is logged,
//! authenticated like Meta does it and dispatched on (object kind, edge, method).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt as _;
use serde_json::{Map, Value};

use super::graph_errors::GraphError;
use super::request_log::describe_body;
use super::state::Object;
use super::{calls, media, messages, numbers, oauth, templates, usernames, Shared};

/// Largest non-multipart body read (JSON and form bodies are tiny in practice).
const MAX_BUFFERED_BODY: usize = 16 * 1024 * 1024;

/// What a Graph handler returns: a JSON body for 200, or a Graph error.
pub type GraphResult = Result<Value, GraphError>;

/// One authenticated Graph call, ready for a handler.
pub struct GraphCall {
    pub method: Method,
    pub id: String,
    pub edge: Option<String>,
    /// The request path, for `paging.next` links.
    pub path: String,
    /// Query parameters (last value wins).
    pub query: HashMap<String, String>,
    /// Body parameters (JSON or form), with query parameters filled in where the body has none,
    /// as Graph reads parameters from either place.
    pub params: Map<String, Value>,
    /// `Host` of the request, for absolute URLs pointing back at the emulator.
    pub host: String,
    /// The WABA owning the object in the path.
    pub waba: String,
}

impl GraphCall {
    pub fn param_str(&self, key: &str) -> Option<&str> {
        self.params.get(key).and_then(Value::as_str)
    }

    pub fn query_str(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    /// `fields=a,b` as a list; `None` when the caller did not restrict fields.
    pub fn fields(&self) -> Option<Vec<String>> {
        let raw = self
            .param_str("fields")
            .or_else(|| self.query_str("fields"))?;
        Some(
            raw.split(',')
                .map(|f| f.trim().to_owned())
                .filter(|f| !f.is_empty())
                .collect(),
        )
    }

    /// Meta's check on every write: `messaging_product` must be `whatsapp`.
    pub fn require_messaging_product(&self) -> Result<(), GraphError> {
        match self.params.get("messaging_product") {
            None | Some(Value::Null) => Err(GraphError::param_message(
                "(#100) The parameter messaging_product is required.",
            )),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("whatsapp") => Ok(()),
            Some(other) => Err(GraphError::param_message(format!(
                "(#100) Param messaging_product must be one of {{WHATSAPP}} - got {other}."
            ))),
        }
    }
}

/// Request body as the router hands it on.
pub enum Incoming {
    Buffered(bytes::Bytes),
    /// A multipart body, still streaming (media uploads). Boxed: a request is much larger
    /// than the buffered variant and this enum is moved through the router.
    Multipart(Box<Request>),
}

/// Fallback handler: logs the request, routes it, logs the answer's status.
pub async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let pending = shared
        .requests
        .start(request.method(), request.uri(), request.headers());
    let is_multipart = content_type(request.headers()).starts_with("multipart/");
    let (response, logged_body) = if is_multipart {
        // Uploads are not buffered for the log: count the bytes as the handler streams them.
        let counted = Arc::new(AtomicU64::new(0));
        let counter = counted.clone();
        let request = request.map(|body| {
            Body::from_stream(body.into_data_stream().inspect(move |chunk| {
                if let Ok(chunk) = chunk {
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            }))
        });
        let (method, uri, headers) = (
            request.method().clone(),
            request.uri().clone(),
            request.headers().clone(),
        );
        let response = route(
            &shared,
            method,
            uri,
            headers,
            Incoming::Multipart(Box::new(request)),
        )
        .await;
        (
            response,
            format!("<{} bytes>", counted.load(Ordering::Relaxed)),
        )
    } else {
        let (parts, body) = request.into_parts();
        match to_bytes(body, MAX_BUFFERED_BODY).await {
            Ok(bytes) => {
                let logged = describe_body(&bytes);
                let response = route(
                    &shared,
                    parts.method,
                    parts.uri,
                    parts.headers,
                    Incoming::Buffered(bytes),
                )
                .await;
                (response, logged)
            }
            Err(_) => (
                GraphError::invalid_parameter(format!(
                    "The request body is larger than {MAX_BUFFERED_BODY} bytes or could not be read"
                ))
                .into_response(),
                "<unreadable>".to_owned(),
            ),
        }
    };
    shared
        .requests
        .finish(pending, logged_body, response.status().as_u16());
    response
}

async fn route(
    shared: &Arc<Shared>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Incoming,
) -> Response {
    let path = uri.path().to_owned();
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let token = bearer(&headers).or_else(|| query.get("access_token").cloned());

    // The lookaside-style download URL handed out by `GET /{media_id}`.
    if let ["_sandbox", "media", id, "download"] = segments.as_slice() {
        return media::download(shared, id, token.as_deref(), &method);
    }
    let (id, edge) = match segments.as_slice() {
        [version, id] if is_version(version) => (*id, None),
        [version, id, edge] if is_version(version) => (*id, Some(*edge)),
        _ => return GraphError::unknown_path(&path).into_response(),
    };

    // Routes that authenticate with app credentials rather than a number's token.
    if id == "oauth" && edge == Some("access_token") {
        return json_result(oauth::exchange_code(shared, &query));
    }
    if id == "debug_token" && edge.is_none() {
        return json_result(oauth::debug_token(shared, token.as_deref(), &query));
    }

    let Some(token) = token else {
        return GraphError::missing_token().into_response();
    };
    let resolved = {
        let world = shared.world();
        if !world.token_known(&token) {
            return GraphError::invalid_token().into_response();
        }
        match world.resolve(id) {
            None => None,
            Some((object, waba)) if world.token_grants(&token, &waba) => Some((object, waba)),
            Some(_) => return GraphError::invalid_token().into_response(),
        }
    };
    let Some((object, waba)) = resolved else {
        return GraphError::unsupported(method.as_str(), id).into_response();
    };

    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let mut call = GraphCall {
        method: method.clone(),
        id: id.to_owned(),
        edge: edge.map(str::to_owned),
        path: path.clone(),
        query,
        params: Map::new(),
        host,
        waba,
    };

    let bytes = match body {
        Incoming::Multipart(request) => {
            if matches!(object, Object::Number(_))
                && edge == Some("media")
                && method == Method::POST
            {
                return json_result(media::upload(shared, &call, *request).await);
            }
            return GraphError::invalid_parameter(
                "multipart bodies are only accepted by POST /{phone_number_id}/media",
            )
            .into_response();
        }
        Incoming::Buffered(bytes) => bytes,
    };
    match parse_params(&call.query, content_type(&headers), &bytes) {
        Ok(params) => call.params = params,
        Err(error) => return error.into_response(),
    }
    json_result(dispatch(shared, &object, &call).await)
}

async fn dispatch(shared: &Arc<Shared>, object: &Object, call: &GraphCall) -> GraphResult {
    let edge = call.edge.as_deref();
    let m = &call.method;
    match object {
        Object::Number(pnid) => match (edge, m) {
            (None, &Method::GET) => numbers::get_number(shared, pnid, call),
            (Some("messages"), &Method::POST) => messages::send(shared, pnid, call).await,
            (Some("media"), &Method::POST) => Err(GraphError::invalid_parameter(
                "media uploads must be multipart/form-data with a file part",
            )),
            (Some("whatsapp_business_profile"), &Method::GET) => {
                numbers::get_profile(shared, pnid, call)
            }
            (Some("whatsapp_business_profile"), &Method::POST) => {
                numbers::update_profile(shared, pnid, call)
            }
            (Some("settings"), &Method::GET) => numbers::get_settings(shared, pnid),
            (Some("settings"), &Method::POST) => numbers::update_settings(shared, pnid, call),
            (Some("register"), &Method::POST) => numbers::register(shared, pnid, call),
            (Some("deregister"), &Method::POST) => numbers::deregister(shared, pnid),
            (Some("request_code"), &Method::POST) => numbers::request_code(shared, pnid, call),
            (Some("verify_code"), &Method::POST) => numbers::verify_code(shared, pnid, call),
            (Some("flows"), &Method::GET) => calls::list_flows(shared, pnid, call),
            (Some("flows"), &Method::POST) => calls::create_flow(shared, pnid, call),
            (Some("calls"), &Method::POST) => calls::call_action(shared, pnid, call),
            (Some("call_permissions"), &Method::GET) => calls::call_permissions(shared, pnid, call),
            (Some("username"), &Method::GET) => usernames::get(shared, pnid),
            (Some("username"), &Method::POST) => usernames::claim(shared, pnid, call).await,
            (Some("username"), &Method::DELETE) => usernames::delete(shared, pnid).await,
            (Some("username_suggestions"), &Method::GET) => usernames::suggestions(shared, pnid),
            _ => Err(GraphError::unsupported(m.as_str(), &call.id)),
        },
        Object::Waba(waba) => match (edge, m) {
            (None, &Method::GET) => numbers::get_waba(shared, waba, call),
            (Some("phone_numbers"), &Method::GET) => {
                numbers::list_phone_numbers(shared, waba, call)
            }
            (Some("message_templates"), &Method::GET) => templates::list(shared, waba, call),
            (Some("message_templates"), &Method::POST) => templates::create(shared, waba, call),
            (Some("message_templates"), &Method::DELETE) => templates::delete(shared, waba, call),
            (Some("subscribed_apps"), &Method::GET) => numbers::get_subscribed_apps(shared, waba),
            (Some("subscribed_apps"), &Method::POST) => {
                numbers::subscribe_app(shared, waba, call).await
            }
            (Some("subscribed_apps"), &Method::DELETE) => numbers::unsubscribe_app(shared, waba),
            _ => Err(GraphError::unsupported(m.as_str(), &call.id)),
        },
        Object::Template(id) => match (edge, m) {
            (None, &Method::GET) => templates::get_one(shared, id),
            (None, &Method::POST) => templates::edit(shared, id, call),
            _ => Err(GraphError::unsupported(m.as_str(), &call.id)),
        },
        Object::Media(id) => match (edge, m) {
            (None, &Method::GET) => media::get(shared, id, call),
            (None, &Method::DELETE) => media::delete(shared, id, call),
            _ => Err(GraphError::unsupported(m.as_str(), &call.id)),
        },
    }
}

fn json_result(result: GraphResult) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(error) => error.into_response(),
    }
}

/// `v23.0`, `v24.0`, … (`v\d+\.\d+`).
fn is_version(segment: &str) -> bool {
    let Some(rest) = segment.strip_prefix('v') else {
        return false;
    };
    let mut halves = rest.split('.');
    let numeric =
        |s: Option<&str>| s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    numeric(halves.next()) && numeric(halves.next()) && halves.next().is_none()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Reads parameters from a JSON or form body, then fills in query parameters the body lacks.
fn parse_params(
    query: &HashMap<String, String>,
    content_type: &str,
    body: &[u8],
) -> Result<Map<String, Value>, GraphError> {
    let mut params = Map::new();
    if !body.iter().all(u8::is_ascii_whitespace) {
        if content_type.starts_with("application/x-www-form-urlencoded") {
            for (key, value) in url::form_urlencoded::parse(body) {
                params.insert(key.into_owned(), json_or_string(&value));
            }
        } else {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(map)) => params = map,
                Ok(_) => {
                    return Err(GraphError::invalid_parameter(
                        "The request body must be a JSON object",
                    ))
                }
                Err(error) => {
                    return Err(GraphError::invalid_parameter(format!(
                        "The request body is not valid JSON: {error}"
                    )))
                }
            }
        }
    }
    for (key, value) in query {
        if key != "access_token" && !params.contains_key(key) {
            params.insert(key.clone(), json_or_string(value));
        }
    }
    Ok(params)
}

/// Graph accepts nested objects in form and query parameters as JSON text (`text={"body":"hi"}`).
fn json_or_string(value: &str) -> Value {
    let trimmed = value.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        if let Ok(parsed) = serde_json::from_str(value) {
            return parsed;
        }
    }
    Value::String(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(is_version("v23.0"));
        assert!(is_version("v24.10"));
        assert!(!is_version("v23"));
        assert!(!is_version("23.0"));
        assert!(!is_version("v23.0.1"));
        assert!(!is_version("vx.0"));
    }

    #[test]
    fn params_from_form_and_query() {
        let query = HashMap::from([("fields".to_owned(), "id".to_owned())]);
        let params = parse_params(
            &query,
            "application/x-www-form-urlencoded",
            b"messaging_product=whatsapp&text=%7B%22body%22%3A%22hi%22%7D",
        )
        .expect("form parses");
        assert_eq!(params["text"]["body"], "hi");
        assert_eq!(params["fields"], "id");
        assert!(parse_params(&query, "application/json", b"{nope").is_err());
        assert!(parse_params(&query, "application/json", b"  ").is_ok());
    }
}
