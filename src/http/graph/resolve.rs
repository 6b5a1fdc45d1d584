//! Which WhatsApp configuration (and so which token) a proxied request uses (design §2–3).
//!
//! Order: the first path segment as a phone number ID, then as a WABA ID, then
//! `?phone_number_id=` (media and other object IDs), then, for Bearer callers only, the token's
//! own number. A caller only ever resolves numbers of its own project (API key) or numbers stored
//! with its token (Bearer); anything else answers exactly like an ID that does not exist.

use std::sync::Arc;

use crate::domain::auth::{Caller, NumberConfig};
use crate::domain::number_directory::NumberDirectory;
use crate::http::graph_error::GraphError;
use crate::types::MetaId;

/// What the path and query say about the target object.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// First segment after the version (`{pnid}`, `{waba_id}`, `{media_id}`, `conversations`, …).
    pub object_id: &'a str,
    /// True when the path goes on past the object (`{id}/messages`): an edge of a node, which
    /// only numbers and WABAs have here.
    pub has_edge: bool,
    pub phone_number_id: Option<&'a str>,
    /// The request's method, for the wording of Meta's refusal (`Unsupported post request`).
    pub method: &'a str,
}

fn owned_by(caller: &Caller, number: &NumberConfig) -> bool {
    match caller {
        Caller::ApiKey { project_id, .. } => number.project_id == *project_id,
        Caller::Bearer { numbers } => numbers.iter().any(|n| n.internal_id == number.internal_id),
    }
}

/// A number the caller may use, by phone number ID; `None` when unknown or not theirs.
pub async fn reachable_number(
    numbers: &NumberDirectory,
    caller: &Caller,
    phone_number_id: &str,
) -> Result<Option<Arc<NumberConfig>>, GraphError> {
    if !MetaId::is_valid(phone_number_id) {
        return Ok(None);
    }
    Ok(numbers
        .number(phone_number_id)
        .await?
        .filter(|n| owned_by(caller, n)))
}

async fn reachable_waba(
    numbers: &NumberDirectory,
    caller: &Caller,
    waba: &str,
) -> Result<Option<Arc<NumberConfig>>, GraphError> {
    if !MetaId::is_valid(waba) {
        return Ok(None);
    }
    Ok(match caller {
        Caller::ApiKey { project_id, .. } => numbers
            .numbers_of_waba(*project_id, waba)
            .await?
            .first()
            .cloned(),
        Caller::Bearer { numbers } => numbers
            .iter()
            .find(|n| n.business_account_id == waba)
            .cloned(),
    })
}

pub async fn resolve(
    numbers: &NumberDirectory,
    caller: &Caller,
    target: Target<'_>,
) -> Result<Arc<NumberConfig>, GraphError> {
    if let Some(number) = reachable_number(numbers, caller, target.object_id).await? {
        return Ok(number);
    }
    if let Some(number) = reachable_waba(numbers, caller, target.object_id).await? {
        return Ok(number);
    }
    // An id that is not one of the caller's numbers or WABAs: an edge of it is refused (only
    // numbers and WABAs have edges here); a bare object (media, template, flow, …) goes on with
    // the caller's own configuration and Meta checks the caller's token against it.
    if target.has_edge {
        return Err(GraphError::unreachable_object(target.object_id));
    }
    let number = bare_object_number(numbers, caller, target).await?;
    // Another project's number or WABA is never forwarded, whatever the method or `fields`
    // expansion: a token that Meta lets reach more than its own numbers (one system-user token
    // shared by a platform's projects) would otherwise read or change it. The refusal comes only
    // now, after every check an unknown id also goes through, and reads exactly like Meta's answer
    // for an object the token cannot reach, so it does not tell the caller the id exists.
    if another_projects_object(numbers, caller, target.object_id).await? {
        return Err(GraphError::object_unreachable_with_token(
            target.method,
            target.object_id,
        ));
    }
    Ok(number)
}

/// The configuration a bare object id is forwarded with: `?phone_number_id=`, else the Bearer
/// token's own number, else the project's only number.
async fn bare_object_number(
    numbers: &NumberDirectory,
    caller: &Caller,
    target: Target<'_>,
) -> Result<Arc<NumberConfig>, GraphError> {
    if let Some(pnid) = target.phone_number_id {
        return reachable_number(numbers, caller, pnid)
            .await?
            .ok_or_else(|| GraphError::unreachable_object(pnid));
    }
    match caller {
        // The token itself says which number: Meta checks the object against it.
        Caller::Bearer { numbers } => numbers
            .first()
            .cloned()
            .ok_or_else(GraphError::invalid_credentials),
        // A project with a single number leaves no doubt (the Python SDK's `templates.get(id)`
        // has no way to add the parameter).
        Caller::ApiKey { project_id, .. } => match numbers.sole_number(*project_id).await? {
            Some(number) => Ok(number),
            None => Err(GraphError::invalid_parameter(format!(
            "phone_number_id: required as a query parameter for object ID '{}' (media and other objects): add ?phone_number_id=<your phone number ID>",
            target.object_id
            ))),
        },
    }
}

/// Whether `id` is a phone number or WABA that wagate holds for someone other than the caller
/// (answered from the caches).
async fn another_projects_object(
    numbers: &NumberDirectory,
    caller: &Caller,
    id: &str,
) -> Result<bool, GraphError> {
    if !MetaId::is_valid(id) {
        return Ok(false);
    }
    if let Some(number) = numbers.number(id).await? {
        return Ok(!owned_by(caller, &number));
    }
    // The caller's own WABAs resolved before this point, so a known WABA here is another's.
    Ok(numbers.waba_known(id).await?)
}
