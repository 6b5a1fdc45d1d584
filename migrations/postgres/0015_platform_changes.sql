-- Meta's 2025–26 platform changes (issue #21): the pricing ledger, coexistence edits and
-- revokes, groups, template state and the number's account state.

-- The number's account state from `account_update` (null: usable) and the templates Meta has
-- paused or disabled (a JSON array of "STATUS:name:language"), both read by the proxy from its number
-- cache so it can answer such sends itself. Writing them fires the cache-change trigger.
alter table phone_numbers add column account_state text;
alter table phone_numbers add column account_state_at timestamptz;
alter table phone_numbers add column blocked_templates text;

-- When each number's details were last read from Graph; kept apart from `phone_numbers` so the
-- periodic refresh does not invalidate every cached number each time it visits one.
create table phone_number_refreshes (
    phone_number_internal_id  uuid primary key references phone_numbers (internal_id) on delete cascade,
    refreshed_at              timestamptz not null
);

-- The pricing ledger: one row per message Meta priced (the first status that carried `pricing`).
create table message_pricing (
    phone_number_internal_id  uuid not null references phone_numbers (internal_id) on delete cascade,
    wamid                     text not null,
    project_id                uuid not null references projects (id) on delete cascade,
    -- UTC date of that status (YYYY-MM-DD): usage is counted by day.
    day                       date not null,
    category                  text not null,
    pricing_type              text not null,
    pricing_model             text,
    billable                  boolean not null,
    created_at                timestamptz not null,
    primary key (phone_number_internal_id, wamid)
);
create index message_pricing_day_idx on message_pricing (phone_number_internal_id, day);

-- Coexistence: an edited message keeps its earlier versions (JSON array, oldest first); a
-- revoked one has its content cleared and the time it was revoked. Group messages name their group.
alter table messages add column edits text;
alter table messages add column revoked_at timestamptz;
alter table messages add column group_id text;

-- Groups API: each group a number takes part in, and its participants (at most 8 per group).
create table whatsapp_groups (
    id                        uuid primary key,
    project_id                uuid not null references projects (id) on delete cascade,
    phone_number_internal_id  uuid not null references phone_numbers (internal_id) on delete cascade,
    group_id                  text not null,
    subject                   text,
    description               text,
    invite_link               text,
    join_approval_mode        text,
    -- active | deleted | suspended | failed (creation failed)
    state                     text not null,
    -- JSON array: participants {wa_id, user_id, state, updated_at}
    participants              text not null default '[]',
    created_at                timestamptz not null,
    updated_at                timestamptz not null
);
create unique index whatsapp_groups_key on whatsapp_groups (phone_number_internal_id, group_id);
create index whatsapp_groups_list_idx on whatsapp_groups (phone_number_internal_id, created_at desc, id desc);

-- Template state per number, from the template webhooks.
create table message_templates (
    phone_number_internal_id  uuid not null references phone_numbers (internal_id) on delete cascade,
    template_id               text not null,
    name                      text,
    language                  text,
    status                    text,
    quality_score             text,
    category                  text,
    reason                    text,
    updated_at                timestamptz not null,
    primary key (phone_number_internal_id, template_id)
);
