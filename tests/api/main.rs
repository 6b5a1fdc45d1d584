//! End-to-end tests: the real server over real HTTP on an ephemeral port, on both backends.

#[path = "../common/mod.rs"]
mod common;

mod api_keys;
mod broadcast_faults;
mod broadcasts;
mod cache_sync;
mod cli;
mod coexistence_groups;
mod connections;
mod credentials;
mod delivery_processes;
mod emulator;
mod emulator_limits;
mod emulator_send_rate;
mod graph_versions;
mod hygiene;
mod ingest;
mod kapso_events;
mod links;
mod media_faults;
mod media_outbound;
mod media_vault;
mod meta_state;
mod onboarding;
mod openapi;
mod outage;
mod pacing;
mod platform_customers;
mod platform_phone_numbers;
mod platform_webhooks;
mod provisioned_onboarding;
mod provisioning;
mod proxy;
mod sandbox_mode;
mod secrets_at_rest;
mod security;
mod spill;
mod store;
mod store_outbox;
mod store_tx;
mod stored;
mod twilio_double;
mod username_routing;
mod usernames;
mod write_plans;
