//! The column list of each table, written once: every select and insert of a table names its
//! columns from here, in this order, which is also the order of its row struct's fields.

pub(crate) const PHONE_NUMBER_COLUMNS: &str = r#"internal_id, project_id, customer_id,
    phone_number_id, business_account_id, kind, name, display_phone_number, verified_name,
    quality_rating, code_verification_status, name_status, status, throughput_tier,
    messaging_limit, is_official_business_account, is_pin_enabled, is_coexistence,
    inbound_processing_enabled, calls_enabled, access_token_sealed, access_token_key_id,
    access_token_sha256, webhook_destination_url, webhook_secret_sealed,
    webhook_verify_token_sealed, secrets_key_id, webhook_verified_at, username, username_status,
    created_at, updated_at"#;

pub(crate) const API_KEY_COLUMNS: &str =
    "id, project_id, key_sha256, display_prefix, created_at, revoked_at";
pub(crate) const CUSTOMER_COLUMNS: &str =
    "id, project_id, name, external_customer_id, created_at, updated_at";

pub(crate) const CONTACT_COLUMNS: &str = "id, project_id, phone_number_internal_id, wa_id, \
    business_scoped_user_id, parent_business_scoped_user_id, username, profile_name, display_name, \
    customer_id, metadata, created_at, updated_at";
pub(crate) const CONVERSATION_COLUMNS: &str =
    "id, project_id, phone_number_internal_id, contact_id, \
    status, last_active_at, ended_at, messages_count, last_message_id, last_message_type, \
    last_message_timestamp, last_message_text, last_inbound_at, last_outbound_at, metadata, \
    created_at, updated_at";
pub(crate) const MESSAGE_COLUMNS: &str =
    "id, project_id, phone_number_internal_id, wamid, direction, \
    message_type, status, processing_status, origin, meta_timestamp, contact_id, conversation_id, \
    has_media, body, content, errors, statuses, created_at, updated_at";
pub(crate) const CALL_COLUMNS: &str =
    "id, project_id, phone_number_internal_id, call_id, direction, \
    status, from_number, to_number, contact_id, conversation_id, started_at, session_started_at, \
    ended_at, duration_seconds, events, created_at, updated_at";
