//! The domain layer: what wagate does, independent of HTTP. Handlers and the CLI call into it.

pub mod api_keys;
pub mod auth;
pub mod auth_throttle;
pub mod cache_sync;
pub mod calls;
pub mod contacts;
pub mod conversations;
pub mod customers;
pub mod envelope;
pub mod field_error;
pub mod ingest;
pub mod media;
pub mod media_links;
pub mod media_uploads;
pub mod message_content;
pub mod number_directory;
pub mod onboarding;
pub mod phone_numbers;
pub mod projects;
pub mod recorder;
pub mod reseal;
pub mod setup_links;
pub mod sweeper;
pub mod usernames;
pub mod verify;
pub mod writer;
