-- Onboarding: setup links a platform sends its customers so they connect a number through Meta's
-- Embedded Signup on wagate's hosted page.

create table setup_links (
    id                         uuid primary key,
    project_id                 uuid not null references projects (id) on delete cascade,
    customer_id                uuid not null references customers (id) on delete cascade,
    -- The URL token: looked up by hash, kept sealed so the link's url can be shown again.
    token_sha256               text not null,
    token_sealed               bytea not null,
    token_key_id               text not null,
    -- active | used | revoked | expired (an active link past expires_at reads as expired)
    status                     text not null,
    success_redirect_url       text,
    failure_redirect_url       text,
    -- Comma-separated subset of coexistence,dedicated.
    allowed_connection_types   text not null,
    -- JSON object of #RRGGBB colors.
    theme_config               text not null,
    language                   text,
    provision_phone_number     boolean not null default false,
    -- JSON array of ISO 3166 alpha-2 codes.
    phone_number_country_isos  text not null,
    phone_number_area_code     text,
    reconnect_phone_number     text,
    -- The customer's number a reconnect link is locked to.
    reconnect_phone_number_id  text,
    meta_billing_mode          text,
    whatsapp_setup_status      text not null default 'pending',
    whatsapp_setup_error       text,
    -- The number connected through the link.
    phone_number_id            text,
    business_account_id        text,
    expires_at                 timestamptz not null,
    used_at                    timestamptz,
    revoked_at                 timestamptz,
    created_at                 timestamptz not null,
    updated_at                 timestamptz not null
);
create unique index setup_links_token_key on setup_links (token_sha256);
-- At most one active link per customer (creating one revokes the previous in the same transaction).
create unique index setup_links_one_active_key on setup_links (customer_id) where status = 'active';
create index setup_links_customer_idx on setup_links (customer_id, created_at desc, id desc);
create index customers_project_name_idx on customers (project_id, name);
