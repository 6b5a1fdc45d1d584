//! Inbound callbacks from phone-number providers for provisioned numbers:
//! `POST /providers/twilio/{project_id}/sms`, `…/voice` and `…/voice/transcription`.
//!
//! Twilio signs each request (`X-Twilio-Signature`) over the URL it called and the form body,
//! with the project's auth token: wagate checks it against the URL rebuilt from its public origin
//! (`server.public_url` behind a load balancer), and answers 403 with nothing changed when it
//! does not match. A call is answered with TwiML asking Twilio to record it and post the
//! transcript, which is how a code read out by Meta's verification call reaches the page.

use axum::extract::{Path, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use uuid::Uuid;

use crate::domain::provisioning::{InboundKind, InboundRejected};
use crate::http::body::read_limited;
use crate::http::state::AppState;

/// Twilio's form bodies are a few kilobytes.
const FORM_LIMIT: usize = 64 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/providers/twilio/{project_id}/sms", post(sms))
        .route("/providers/twilio/{project_id}/voice", post(voice))
        .route(
            "/providers/twilio/{project_id}/voice/transcription",
            post(transcription),
        )
}

fn twiml(body: &str) -> Response {
    let mut response = (
        StatusCode::OK,
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>{body}</Response>"),
    )
        .into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    response
}

fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        "the request is not signed with this project's Twilio auth token\n",
    )
        .into_response()
}

/// Checks and records the callback; `None` when it was accepted.
async fn receive(
    state: &AppState,
    project_id: &str,
    kind: InboundKind,
    request: Request,
) -> Option<Response> {
    let Ok(project_id) = Uuid::parse_str(project_id) else {
        return Some(forbidden());
    };
    let headers = request.headers().clone();
    let path_and_query = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    let url = format!("{}{path_and_query}", state.origin.for_request(&headers));
    let body = match read_limited(request, FORM_LIMIT).await {
        Ok(body) => body,
        Err(error) => {
            return Some((StatusCode::BAD_REQUEST, format!("{error}\n")).into_response());
        }
    };
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok());
    match state
        .provisioning
        .receive(project_id, kind, &url, &params, signature)
        .await
    {
        Ok(()) => None,
        Err(InboundRejected::Forbidden) => {
            tracing::warn!(%project_id, ?kind, "refused a provider callback: bad or missing X-Twilio-Signature");
            Some(forbidden())
        }
        Err(InboundRejected::Store(error)) => {
            tracing::error!(%project_id, %error, "could not record a provider callback");
            // Twilio retries on 5xx for SMS; the code arrives again.
            Some(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database unavailable; retry\n",
                )
                    .into_response(),
            )
        }
    }
}

async fn sms(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    request: Request,
) -> Response {
    receive(&state, &project_id, InboundKind::Sms, request)
        .await
        .unwrap_or_else(|| twiml(""))
}

async fn voice(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    request: Request,
) -> Response {
    let callback = format!(
        "{}/providers/twilio/{project_id}/voice/transcription",
        state.origin.for_request(request.headers())
    );
    if let Some(refused) = receive(&state, &project_id, InboundKind::Voice, request).await {
        return refused;
    }
    twiml(&format!(
        "<Record maxLength=\"60\" playBeep=\"false\" transcribe=\"true\" transcribeCallback=\"{}\"/>",
        crate::types::escape_html(&callback)
    ))
}

async fn transcription(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    request: Request,
) -> Response {
    receive(&state, &project_id, InboundKind::Transcription, request)
        .await
        .unwrap_or_else(|| twiml(""))
}
