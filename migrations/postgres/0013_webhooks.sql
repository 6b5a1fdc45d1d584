-- Webhook resources (Kapso's `whatsapp_webhook`): `kapso` webhooks receive Kapso-format events,
-- `meta` webhooks Meta's payload as forwarded since 0003. A number's `webhook_destination_url`
-- *is* its `meta` webhook: both are written in the same transaction, so either API shows the
-- other's change. A webhook without a number is a project webhook (connection events only).
create table webhooks (
    id                        uuid primary key,
    project_id                uuid not null references projects (id) on delete cascade,
    phone_number_internal_id  uuid references phone_numbers (internal_id) on delete cascade,
    kind                      text not null,
    url                       text not null,
    -- JSON array of event names (kapso); '[]' for meta.
    events                    text not null default '[]',
    active                    boolean not null default true,
    -- Set when wagate paused the webhook after a run of failed deliveries; cleared on resume.
    paused_reason             text,
    paused_at                 timestamptz,
    consecutive_failures      integer not null default 0,
    -- Sealed HMAC key of a kapso webhook; a meta webhook signs with the number's webhook secret.
    secret_sealed             bytea,
    secret_key_id             text,
    -- JSON object of custom headers sent with every delivery.
    headers                   text not null default '{}',
    buffer_enabled            boolean not null default false,
    buffer_window_seconds     integer,
    max_buffer_size           integer,
    buffer_events             text not null default '[]',
    inactivity_minutes        integer,
    payload_version           text not null default 'v2',
    created_at                timestamptz not null,
    updated_at                timestamptz not null
);
create unique index webhooks_one_meta_per_number on webhooks (phone_number_internal_id) where kind = 'meta';
create index webhooks_project_idx on webhooks (project_id, created_at desc, id desc);
create index webhooks_number_idx on webhooks (phone_number_internal_id, created_at desc, id desc);

-- Every number that forwards today gets its meta webhook; its id is the number's internal id.
insert into webhooks (id, project_id, phone_number_internal_id, kind, url, created_at, updated_at)
select internal_id, project_id, internal_id, 'meta', webhook_destination_url, created_at, updated_at
from phone_numbers where webhook_destination_url is not null;

-- Deliveries name their webhook and may carry their own body (Kapso events are rendered once,
-- when queued, so the signature and idempotency key hold on every retry). Events that are not
-- a stored Meta webhook (project events, inactivity, tests) have no event or route, and a
-- `whatsapp.phone_number.deleted` outlives its number.
alter table webhook_deliveries alter column event_id drop not null;
alter table webhook_deliveries alter column route_id drop not null;
alter table webhook_deliveries alter column phone_number_internal_id drop not null;
alter table webhook_deliveries add column webhook_id uuid;
alter table webhook_deliveries add column event_type text;
alter table webhook_deliveries add column payload bytea;
alter table webhook_deliveries add column batch_size integer not null default 1;
update webhook_deliveries set webhook_id = phone_number_internal_id;
create index webhook_deliveries_webhook_idx on webhook_deliveries (webhook_id, status);

-- Buffered `whatsapp.message.received` events, durable until their batch is queued: a batch is
-- due when its oldest event's `flush_at` passes or it holds `max_buffer_size` events.
create table webhook_buffered_events (
    id                        uuid primary key,
    webhook_id                uuid not null references webhooks (id) on delete cascade,
    conversation_id           uuid not null,
    project_id                uuid not null,
    phone_number_internal_id  uuid not null,
    phone_number_id           text not null,
    payload                   bytea not null,
    flush_at                  timestamptz not null,
    created_at                timestamptz not null
);
create index webhook_buffered_events_key_idx on webhook_buffered_events (webhook_id, conversation_id, created_at, id);
create index webhook_buffered_events_due_idx on webhook_buffered_events (flush_at);

-- `whatsapp.conversation.inactive` fired for a quiet period: one row per (webhook, conversation,
-- the last message before the quiet), so each period fires once, whichever instance sees it.
create table webhook_inactivity_fired (
    webhook_id       uuid not null references webhooks (id) on delete cascade,
    conversation_id  uuid not null,
    anchor           text not null,
    fired_at         timestamptz not null,
    primary key (webhook_id, conversation_id, anchor)
);

-- Not on `consecutive_failures`, which every delivery outcome may touch.
create trigger webhooks_cache_changed
    after insert or delete or update of kind, url, events, active, paused_reason, secret_sealed, headers, buffer_enabled, buffer_window_seconds, max_buffer_size, buffer_events, inactivity_minutes, payload_version, phone_number_internal_id on webhooks
    for each statement execute function wagate_cache_changed();

-- Inbound messages are `received` in Kapso's vocabulary (contract §15.2), in stored data and in
-- events alike; earlier versions stored `delivered`.
update messages set status = 'received' where direction = 'inbound' and status = 'delivered';
