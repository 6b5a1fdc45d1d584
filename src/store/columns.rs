//! The column list of each table, written once: every select and insert of a table names its
//! columns from here, in this order, which is also the order of its row struct's fields.
//!
//! The tables written in batches (by `StoreTx` and at commit) have each list as a macro that
//! expands to a string literal, so an insert is `concat!`ed at compile time: the statement text
//! costs nothing at run time and a column is named in one place.

pub(crate) const PHONE_NUMBER_COLUMNS: &str = r#"internal_id, project_id, customer_id,
    phone_number_id, business_account_id, kind, name, display_phone_number, verified_name,
    quality_rating, code_verification_status, name_status, status, throughput_tier,
    messaging_limit, is_official_business_account, is_pin_enabled, is_coexistence,
    inbound_processing_enabled, calls_enabled, access_token_sealed, access_token_key_id,
    access_token_sha256, webhook_destination_url, webhook_secret_sealed,
    webhook_verify_token_sealed, secrets_key_id, webhook_verified_at, username, username_status,
    account_state, account_state_at, blocked_templates, pacing_rate, paused_until, created_at,
    updated_at"#;

pub(crate) const API_KEY_COLUMNS: &str =
    "id, project_id, key_sha256, display_prefix, created_at, revoked_at";
pub(crate) const CUSTOMER_COLUMNS: &str =
    "id, project_id, name, external_customer_id, created_at, updated_at";

/// Declares `$name!()`, a string literal of columns, and `$const`, the same as a constant.
macro_rules! column_list {
    ($(#[$meta:meta])* $name:ident, $const:ident, $list:literal) => {
        $(#[$meta])*
        macro_rules! $name {
            () => {
                $list
            };
        }
        pub(crate) use $name;
        // Tables whose rows are only selected through the macro leave the constant unused.
        #[allow(dead_code)]
        pub(crate) const $const: &str = $name!();
    };
}

column_list!(
    contact_columns,
    CONTACT_COLUMNS,
    "id, project_id, phone_number_internal_id, wa_id, business_scoped_user_id, \
    parent_business_scoped_user_id, username, profile_name, display_name, customer_id, metadata, \
    created_at, updated_at"
);
column_list!(
    conversation_columns,
    CONVERSATION_COLUMNS,
    "id, project_id, phone_number_internal_id, contact_id, status, last_active_at, ended_at, \
    messages_count, last_message_id, last_message_type, last_message_timestamp, \
    last_message_text, last_inbound_at, last_outbound_at, metadata, created_at, updated_at"
);
column_list!(
    message_columns,
    MESSAGE_COLUMNS,
    "id, project_id, phone_number_internal_id, wamid, direction, message_type, status, \
    processing_status, origin, meta_timestamp, contact_id, conversation_id, has_media, body, \
    errors, statuses, created_at, updated_at, group_id, edits, revoked_at"
);
column_list!(
    call_columns,
    CALL_COLUMNS,
    "id, project_id, phone_number_internal_id, call_id, direction, status, from_number, \
    to_number, contact_id, conversation_id, started_at, session_started_at, ended_at, \
    duration_seconds, events, created_at, updated_at"
);
column_list!(
    webhook_event_columns,
    WEBHOOK_EVENT_COLUMNS,
    "id, received_at, body, state, error"
);
column_list!(
    event_route_columns,
    EVENT_ROUTE_COLUMNS,
    "id, event_id, project_id, phone_number_id, fields, payload, created_at"
);

/// A raw event's body as readers see it. SQLite stores a body that is its one route's payload
/// only on the route, and an empty body here (`sqlite_flush::bodies_kept_by_routes`); a body that
/// is really empty has no route (an empty POST is not JSON), so it reads back empty.
pub(crate) const STORED_EVENT_BODY: &str = "case when length(body) = 0 then coalesce((select \
    r.payload from webhook_event_routes r where r.event_id = webhook_events.id order by r.id \
    limit 1), body) else body end";
