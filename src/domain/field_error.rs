//! A rejected input field, the unit of every domain validation (rendered as 422 by the Platform
//! API).

use serde::Serialize;

/// A rejected field: which one and why. Rendered as 422 by the Platform API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
