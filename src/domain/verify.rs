//! Proving that a caller controls the number it connects: Graph must answer for the phone number
//! with the given token, and list it under the given WABA. Without this, any project could claim
//! someone else's phone_number_id and receive its webhooks.

use super::field_error::FieldError;
use crate::graph::{GraphCallError, GraphClient};
use crate::store::PhoneNumberDetails;

/// The Graph version used for wagate's own calls.
pub const VERSION: &str = "v23.0";

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{}", .0.message)]
    Refused(FieldError),
    #[error("could not reach Graph to verify the number: {0}")]
    Unreachable(String),
}

/// A transport failure, as the reason verification could not happen.
fn unreachable(error: GraphCallError) -> VerifyError {
    VerifyError::Unreachable(match error {
        GraphCallError::Timeout => "timeout".into(),
        _ => "connection failed".into(),
    })
}

fn unreachable_number(phone_number_id: &str, why: &str) -> VerifyError {
    VerifyError::Refused(FieldError::new(
        "access_token",
        format!("cannot reach phone number {phone_number_id} on Graph ({why}); check the token and the id"),
    ))
}

/// Checks the token reaches `phone_number_id` (and, when given, that the number belongs to
/// `business_account_id`); returns Meta's details of the number.
pub async fn number(
    graph: &GraphClient,
    token: &str,
    phone_number_id: &str,
    business_account_id: Option<&str>,
) -> Result<PhoneNumberDetails, VerifyError> {
    let node = match graph.phone_number(VERSION, token, phone_number_id).await {
        Ok(node) if node.id.as_deref() == Some(phone_number_id) => node,
        Ok(_) => return Err(unreachable_number(phone_number_id, "no details")),
        Err(GraphCallError::Refused { message, .. }) => {
            return Err(unreachable_number(phone_number_id, &message))
        }
        Err(error) => return Err(unreachable(error)),
    };
    if let Some(waba) = business_account_id {
        let listed = match graph.business_phone_number_ids(VERSION, token, waba).await {
            Ok(ids) => ids.iter().any(|id| id == phone_number_id),
            Err(GraphCallError::Refused { .. }) => false,
            Err(error) => return Err(unreachable(error)),
        };
        if !listed {
            return Err(VerifyError::Refused(FieldError::new(
                "business_account_id",
                format!("Graph does not list phone number {phone_number_id} under business account {waba}"),
            )));
        }
    }
    let mut details = details_of(node);
    details.status = Some("CONNECTED".into());
    Ok(details)
}

/// Meta's description of a number as stored details (the connection `status` is wagate's).
pub fn details_of(node: crate::graph::PhoneNumberNode) -> PhoneNumberDetails {
    PhoneNumberDetails {
        display_phone_number: node.display_phone_number,
        verified_name: node.verified_name,
        quality_rating: node.quality_rating,
        code_verification_status: node.code_verification_status,
        name_status: node.name_status,
        status: None,
        throughput_tier: node.throughput_level,
        messaging_limit: node.messaging_limit_tier,
        is_official_business_account: node.is_official_business_account,
        is_pin_enabled: node.is_pin_enabled,
    }
}
