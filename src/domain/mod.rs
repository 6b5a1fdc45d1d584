//! The domain layer: what wagate does, independent of HTTP. Handlers and the CLI call into it.

pub mod phone_numbers;
pub mod projects;
