-- Phone-number provisioning for setup links (issue #20).
--
-- A project registers its own phone-number provider account (Twilio: account SID and auth token,
-- the token sealed like access tokens, bound to its row). One per project and kind.
create table phone_number_providers (
    id                 uuid primary key,
    project_id         uuid not null references projects (id) on delete cascade,
    kind               text not null,
    account_sid        text not null,
    auth_token_sealed  bytea not null,
    auth_token_key_id  text not null,
    created_at         timestamptz not null,
    updated_at         timestamptz not null,
    unique (project_id, kind)
);

-- The project's numbers for provisioning: its pool (added through the API, already owned) and
-- the numbers bought live for a link (origin 'purchased'; never released silently, so a bought
-- number stays here as 'available' when its link ends). States: available, reserved (held for
-- one setup link), in_use (connected by that link), released (given back to the provider),
-- failed (cannot receive the verification code; kept so a paid number is never lost).
create table provisioned_numbers (
    id              uuid primary key,
    project_id      uuid not null references projects (id) on delete cascade,
    phone_number    text not null,
    country_iso     text not null,
    area_code       text,
    provider        text,
    provider_ref    text,
    origin          text not null,
    state           text not null,
    setup_link_id   uuid references setup_links (id) on delete set null,
    phone_number_id text,
    -- The last verification code that reached the number (SMS or a call's transcript), and the
    -- message it came in, shown on the setup page while the number is reserved.
    last_code       text,
    last_message    text,
    last_code_at    timestamptz,
    created_at      timestamptz not null,
    updated_at      timestamptz not null
);
-- A project holds a number once (a released one may come back).
create unique index provisioned_numbers_e164_idx on provisioned_numbers (project_id, phone_number)
    where state <> 'released';
-- A link holds at most one number: the reservation cannot be taken twice.
create unique index provisioned_numbers_link_idx on provisioned_numbers (setup_link_id)
    where state in ('reserved', 'in_use');
-- The reservation's pick: the oldest available number of a country.
create index provisioned_numbers_pick_idx on provisioned_numbers
    (project_id, country_iso, state, created_at, id);
