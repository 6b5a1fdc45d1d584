-- Everything that passes through wagate: raw webhook events and their per-number routes,
-- contacts (BSUID-first identity), conversations, messages, parked statuses and calls.

create table webhook_events (
    id           uuid primary key,
    received_at  timestamptz not null,
    body         bytea not null,
    -- processed | invalid_json | unrouted (no change matched a known number)
    state        text not null,
    error        text
);
create index webhook_events_state_idx on webhook_events (state, received_at);

-- One row per (event, phone number): Meta's envelope restricted to that number's changes.
create table webhook_event_routes (
    id                uuid primary key,
    event_id          uuid not null references webhook_events (id) on delete cascade,
    project_id        uuid references projects (id) on delete cascade,
    phone_number_id   text not null,
    fields            text not null,
    payload           bytea not null,
    created_at        timestamptz not null
);
create index webhook_event_routes_event_idx on webhook_event_routes (event_id);
create index webhook_event_routes_number_idx on webhook_event_routes (phone_number_id, created_at);

create table contacts (
    id                              uuid primary key,
    project_id                      uuid not null references projects (id) on delete cascade,
    phone_number_internal_id        uuid not null references phone_numbers (internal_id) on delete cascade,
    wa_id                           text,
    business_scoped_user_id         text,
    parent_business_scoped_user_id  text,
    username                        text,
    profile_name                    text,
    display_name                    text,
    customer_id                     uuid,
    metadata                        text not null default '{}',
    created_at                      timestamptz not null,
    updated_at                      timestamptz not null
);
create unique index contacts_bsuid_key on contacts (phone_number_internal_id, business_scoped_user_id)
    where business_scoped_user_id is not null;
create unique index contacts_wa_id_key on contacts (phone_number_internal_id, wa_id) where wa_id is not null;
create index contacts_list_idx on contacts (phone_number_internal_id, created_at desc, id desc);

create table contact_identity_changes (
    id           uuid primary key,
    contact_id   uuid not null references contacts (id) on delete cascade,
    kind         text not null,
    old_value    text,
    new_value    text,
    changed_at   timestamptz not null
);
create index contact_identity_changes_contact_idx on contact_identity_changes (contact_id, changed_at);

create table conversations (
    id                        uuid primary key,
    project_id                uuid not null references projects (id) on delete cascade,
    phone_number_internal_id  uuid not null references phone_numbers (internal_id) on delete cascade,
    contact_id                uuid not null references contacts (id) on delete cascade,
    status                    text not null,
    last_active_at            timestamptz not null,
    ended_at                  timestamptz,
    messages_count            integer not null default 0,
    last_message_id           text,
    last_message_type         text,
    last_message_timestamp    text,
    last_message_text         text,
    last_inbound_at           timestamptz,
    last_outbound_at          timestamptz,
    metadata                  text not null default '{}',
    created_at                timestamptz not null,
    updated_at                timestamptz not null
);
create unique index conversations_one_active_key on conversations (phone_number_internal_id, contact_id)
    where status = 'active';
create index conversations_list_idx on conversations (phone_number_internal_id, last_active_at desc, id desc);
create index conversations_sweep_idx on conversations (status, last_active_at);

create table messages (
    id                        uuid primary key,
    project_id                uuid not null references projects (id) on delete cascade,
    phone_number_internal_id  uuid not null references phone_numbers (internal_id) on delete cascade,
    wamid                     text not null,
    direction                 text not null,
    message_type              text not null,
    status                    text not null,
    processing_status         text not null,
    origin                    text not null,
    meta_timestamp            bigint not null,
    contact_id                uuid references contacts (id) on delete set null,
    conversation_id           uuid references conversations (id) on delete set null,
    has_media                 boolean not null default false,
    body                      text not null,
    content                   text not null,
    errors                    text,
    statuses                  text not null default '[]',
    created_at                timestamptz not null,
    updated_at                timestamptz not null
);
create unique index messages_wamid_key on messages (phone_number_internal_id, wamid);
create index messages_list_idx on messages (phone_number_internal_id, created_at desc, id desc);
create index messages_conversation_idx on messages (conversation_id, created_at desc, id desc);

-- Statuses that arrived before their message; applied when the message is recorded.
create table parked_statuses (
    id                        uuid primary key,
    phone_number_internal_id  uuid not null references phone_numbers (internal_id) on delete cascade,
    wamid                     text not null,
    status                    text not null,
    received_at               timestamptz not null
);
create index parked_statuses_wamid_idx on parked_statuses (phone_number_internal_id, wamid, received_at);

create table calls (
    id                        uuid primary key,
    project_id                uuid not null references projects (id) on delete cascade,
    phone_number_internal_id  uuid not null references phone_numbers (internal_id) on delete cascade,
    call_id                   text not null,
    direction                 text not null,
    status                    text not null,
    from_number               text,
    to_number                 text,
    contact_id                uuid references contacts (id) on delete set null,
    conversation_id           uuid references conversations (id) on delete set null,
    started_at                timestamptz not null,
    session_started_at        timestamptz,
    ended_at                  timestamptz,
    duration_seconds          integer,
    events                    text not null default '[]',
    created_at                timestamptz not null,
    updated_at                timestamptz not null
);
create unique index calls_call_id_key on calls (phone_number_internal_id, call_id);
create index calls_list_idx on calls (phone_number_internal_id, started_at desc, id desc);
