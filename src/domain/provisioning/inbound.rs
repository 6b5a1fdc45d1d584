//! What reaches a provisioned number: Meta's verification code by SMS, or by a call whose
//! recording Twilio transcribes. Each request is checked against the project's auth token
//! (`X-Twilio-Signature`) before anything is read from it.

use uuid::Uuid;

use super::NumberProvisioning;
use crate::store::StoreError;
use crate::telephony::{e164, signature};

/// Which of the provider's callbacks this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundKind {
    Sms,
    /// A call rang: nothing to record yet (the answer asks Twilio to record and transcribe).
    Voice,
    /// The call's transcript.
    Transcription,
}

#[derive(Debug, thiserror::Error)]
pub enum InboundRejected {
    /// Unsigned, wrongly signed, or for a project without a provider account: nothing changed.
    #[error("the request is not signed with the project's Twilio auth token")]
    Forbidden,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The six-digit code in a message: `123-456`, `123456` or a transcript's `1 2 3 4 5 6` (digits
/// with at most one separator between them); `None` when there is no run of exactly six.
pub fn extract_code(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let mut digits = String::new();
        let mut j = i;
        loop {
            digits.push(chars[j]);
            j += 1;
            if j < chars.len() && chars[j].is_ascii_digit() {
                continue;
            }
            // One space or dash between digits keeps the run going.
            if j + 1 < chars.len() && matches!(chars[j], ' ' | '-') && chars[j + 1].is_ascii_digit()
            {
                j += 1;
                continue;
            }
            break;
        }
        if digits.len() == 6 {
            return Some(digits);
        }
        i = j;
    }
    None
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl NumberProvisioning {
    /// Checks and records one inbound callback. `url` is the full URL Twilio called (what it
    /// signed); `params` the form body.
    pub async fn receive(
        &self,
        project_id: Uuid,
        kind: InboundKind,
        url: &str,
        params: &[(String, String)],
        signature_header: Option<&str>,
    ) -> Result<(), InboundRejected> {
        let credentials = self
            .credentials(project_id)
            .await?
            .ok_or(InboundRejected::Forbidden)?;
        let token = secrecy::ExposeSecret::expose_secret(&credentials.auth_token);
        let signed = signature_header.is_some_and(|h| signature::verify(token, url, params, h));
        if !signed || param(params, "AccountSid") != Some(credentials.account_sid.as_str()) {
            return Err(InboundRejected::Forbidden);
        }
        let text = match kind {
            InboundKind::Voice => return Ok(()),
            InboundKind::Sms => param(params, "Body"),
            InboundKind::Transcription => param(params, "TranscriptionText"),
        }
        .unwrap_or_default();
        let Some(to) = param(params, "To").and_then(e164::parse) else {
            tracing::warn!(%project_id, "a provider callback without a valid To number; ignored");
            return Ok(());
        };
        let code = extract_code(text);
        // The text is bounded: it is shown on the setup page, never more than a message.
        let message: String = text.chars().take(500).collect();
        match self
            .store
            .record_received_code(
                project_id,
                &to.e164,
                code.as_deref(),
                &message,
                crate::store::now(),
            )
            .await?
        {
            Some(number) => tracing::info!(%project_id, provisioned_number_id = %number.id,
                code_found = code.is_some(), ?kind, "a message reached a reserved number"),
            None => tracing::info!(%project_id, ?kind,
                "a message reached a number no setup link holds; ignored"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_in_metas_messages() {
        assert_eq!(
            extract_code("<#> 123-456 is your WhatsApp Business verification code.").as_deref(),
            Some("123456")
        );
        assert_eq!(extract_code("Your code: 654321").as_deref(), Some("654321"));
        assert_eq!(
            extract_code("Your WhatsApp verification code is 1 2 3 4 5 6. Again, 1 2 3 4 5 6.")
                .as_deref(),
            Some("123456")
        );
        assert_eq!(extract_code("call 1234567 or 12345"), None);
        assert_eq!(extract_code("no digits"), None);
        assert_eq!(
            extract_code("+1 415 555 0123 then 111-222").as_deref(),
            Some("111222")
        );
    }
}
