//! The Graph emulator's side of Embedded Signup's phone-number step (`/_sandbox/signup/…`),
//! which the setup page's simulated sign-in drives through wagate when
//! `onboarding.simulated_signup` is on: the customer types the number, Meta (the emulator) sends
//! the verification code to it, the customer types the code. Never called against real Graph.

use serde_json::{json, Value};

use super::{GraphCallError, GraphClient};

/// A pending number the emulator created for the phone step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSignupNumber {
    pub phone_number_id: String,
    pub business_account_id: String,
    pub code_sent: bool,
}

impl GraphClient {
    /// `POST /_sandbox/signup/phone_numbers`: the number typed in the phone step; the emulator
    /// sends the code to it (by SMS or a call, `code_method`).
    pub async fn emulator_signup_phone(
        &self,
        phone_number: &str,
        code_method: &str,
    ) -> Result<PendingSignupNumber, GraphCallError> {
        let url = format!("{}/_sandbox/signup/phone_numbers", self.base_url);
        let body = json!({ "phone_number": phone_number, "code_method": code_method });
        let (status, answer) = self.call(self.http.post(url).json(&body), None).await?;
        if status != 201 && status != 200 {
            return Err(GraphCallError::refused(status, &answer));
        }
        let text = |key: &str| {
            answer
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Ok(PendingSignupNumber {
            phone_number_id: text("phone_number_id"),
            business_account_id: text("business_account_id"),
            code_sent: answer.get("code_sent").and_then(Value::as_bool) == Some(true),
        })
    }

    /// `POST /_sandbox/signup/phone_numbers/{id}/verify`: the code the customer typed.
    pub async fn emulator_signup_verify(
        &self,
        phone_number_id: &str,
        code: &str,
    ) -> Result<(), GraphCallError> {
        let url = format!(
            "{}/_sandbox/signup/phone_numbers/{phone_number_id}/verify",
            self.base_url
        );
        let (status, answer) = self
            .call(self.http.post(url).json(&json!({ "code": code })), None)
            .await?;
        if status != 200 {
            return Err(GraphCallError::refused(status, &answer));
        }
        Ok(())
    }
}
