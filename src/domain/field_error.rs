//! A rejected input field, the unit of every domain validation (rendered as 422 by the Platform
//! API), and the one serde helper input bodies share.

use serde::{Deserialize, Serialize};

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

/// For an input field where `null` means "clear it" and an absent key "leave it":
/// `#[serde(default, deserialize_with = "double_option")]` reads `null` as `Some(None)`.
pub fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
