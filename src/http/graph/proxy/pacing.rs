//! The proxy's side of pacing: a send takes its slot before it leaves (or is answered locally),
//! and Meta's rate-limit answers adjust the budget on the way back.

use crate::config::PairRateMode;
use crate::domain::auth::NumberConfig;
use crate::domain::pacing::Permit;
use crate::http::graph_error::GraphError;
use crate::http::state::AppState;

/// An admitted send: its permit (held until Meta answers) and the user it goes to.
pub(super) struct Paced {
    permit: Permit,
    user: Option<String>,
}

/// The fields of a send body pacing needs.
#[derive(serde::Deserialize)]
struct SendFields {
    to: Option<String>,
    recipient: Option<String>,
    /// `read` receipts and typing indicators are not messages: Meta does not count them.
    status: Option<serde_json::Value>,
}

/// Waits for the number's budget, or answers in Meta's words why the send cannot go now.
pub(super) async fn admit(
    state: &AppState,
    number: &NumberConfig,
    body: &[u8],
) -> Result<Option<Paced>, GraphError> {
    if !state.pacer.enabled() {
        return Ok(None);
    }
    let fields = serde_json::from_slice::<SendFields>(body).ok();
    if fields.as_ref().is_some_and(|f| f.status.is_some()) {
        return Ok(None);
    }
    let user = fields.and_then(|f| f.to.or(f.recipient));
    let mode = pair_rate_mode(state, number).await;
    match state.pacer.admit(number, user.as_deref(), mode).await {
        Ok(permit) => Ok(Some(Paced { permit, user })),
        Err(refusal) => Err(GraphError::paced(refusal)),
    }
}

/// The project's mode, else `pacing.pair_rate_mode` (also when the database cannot say).
async fn pair_rate_mode(state: &AppState, number: &NumberConfig) -> PairRateMode {
    match state.numbers.pair_rate_mode(number.project_id).await {
        Ok(Some(mode)) => PairRateMode::parse(&mode).unwrap_or(state.config.pacing.pair_rate_mode),
        Ok(None) => state.config.pacing.pair_rate_mode,
        Err(error) => {
            tracing::debug!(%error, "project pair-rate mode unavailable; using the default");
            state.config.pacing.pair_rate_mode
        }
    }
}

/// Meta answered the send with error `code`: adjust the budget; a throughput upgrade pauses the
/// number on every instance.
pub(super) async fn meta_refused(
    state: &AppState,
    number: &NumberConfig,
    paced: Option<&Paced>,
    code: Option<u64>,
) {
    let Some(code) = code else { return };
    let user = paced.and_then(|p| p.user.as_deref());
    let permit = paced.map(|p| &p.permit);
    if let Some(until) = state.pacer.meta_refused(number, user, permit, code) {
        pause_everywhere(state, number, until).await;
    }
}

/// Writes the pause on the number: the cache-change trigger carries it to every instance.
pub(crate) async fn pause_everywhere(
    state: &AppState,
    number: &NumberConfig,
    until: chrono::DateTime<chrono::Utc>,
) {
    match state.store.pause_number(number.internal_id, until).await {
        // Other instances hear of it from the cache-change feed; this one forgets at once.
        Ok(_) => state.numbers.invalidate(),
        Err(error) => {
            tracing::warn!(%error, "could not share the number's pause with other instances")
        }
    }
}
