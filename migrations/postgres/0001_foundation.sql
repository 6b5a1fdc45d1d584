-- Foundation: tenants, their keys, customers and WhatsApp phone-number configurations.
-- UUIDs are native uuid (v7: time-ordered); times timestamptz.

create table projects (
    id          uuid primary key,
    name        text not null,
    created_at  timestamptz not null
);

create table api_keys (
    id              uuid primary key,
    project_id      uuid not null references projects (id) on delete cascade,
    key_sha256      text not null,
    display_prefix  text not null,
    created_at      timestamptz not null,
    revoked_at      timestamptz
);
create unique index api_keys_key_sha256_key on api_keys (key_sha256);
create index api_keys_project_idx on api_keys (project_id, created_at);

create table customers (
    id                    uuid primary key,
    project_id            uuid not null references projects (id) on delete cascade,
    name                  text not null,
    external_customer_id  text,
    created_at            timestamptz not null,
    updated_at            timestamptz not null
);
create unique index customers_external_id_key on customers (project_id, external_customer_id);
create index customers_project_created_idx on customers (project_id, created_at desc, id desc);

create table phone_numbers (
    internal_id                  uuid primary key,
    project_id                   uuid not null references projects (id) on delete cascade,
    customer_id                  uuid references customers (id) on delete restrict,
    phone_number_id              text not null,
    business_account_id          text not null,
    kind                         text not null default 'production',
    name                         text,
    display_phone_number         text,
    verified_name                text,
    quality_rating               text,
    code_verification_status     text,
    name_status                  text,
    status                       text,
    throughput_tier              text,
    messaging_limit              text,
    is_official_business_account boolean not null default false,
    is_pin_enabled               boolean not null default false,
    is_coexistence               boolean not null default false,
    inbound_processing_enabled   boolean not null default true,
    calls_enabled                boolean not null default false,
    access_token_sealed          bytea not null,
    access_token_key_id          text not null,
    access_token_sha256          text not null,
    webhook_destination_url      text,
    webhook_secret_sealed        bytea,
    webhook_verify_token_sealed  bytea,
    secrets_key_id               text,
    webhook_verified_at          timestamptz,
    username                     text,
    username_status              text,
    created_at                   timestamptz not null,
    updated_at                   timestamptz not null
);
create unique index phone_numbers_phone_number_id_key on phone_numbers (phone_number_id);
create index phone_numbers_project_created_idx on phone_numbers (project_id, created_at desc, internal_id desc);
create index phone_numbers_waba_idx on phone_numbers (business_account_id);
create index phone_numbers_token_idx on phone_numbers (access_token_sha256);
create index phone_numbers_customer_idx on phone_numbers (customer_id);
