-- Webhook resources (Kapso's `whatsapp_webhook`): `kapso` webhooks receive Kapso-format events,
-- `meta` webhooks Meta's payload as forwarded since 0003. A number's `webhook_destination_url`
-- *is* its `meta` webhook: both are written in the same transaction, so either API shows the
-- other's change. A webhook without a number is a project webhook (connection events only).
create table webhooks (
    id                        blob primary key not null,
    project_id                blob not null references projects (id) on delete cascade,
    phone_number_internal_id  blob references phone_numbers (internal_id) on delete cascade,
    kind                      text not null,
    url                       text not null,
    events                    text not null default '[]',
    active                    integer not null default 1,
    paused_reason             text,
    paused_at                 text,
    consecutive_failures      integer not null default 0,
    secret_sealed             blob,
    secret_key_id             text,
    headers                   text not null default '{}',
    buffer_enabled            integer not null default 0,
    buffer_window_seconds     integer,
    max_buffer_size           integer,
    buffer_events             text not null default '[]',
    inactivity_minutes        integer,
    payload_version           text not null default 'v2',
    created_at                text not null,
    updated_at                text not null
);
create unique index webhooks_one_meta_per_number on webhooks (phone_number_internal_id) where kind = 'meta';
create index webhooks_project_idx on webhooks (project_id, created_at desc, id desc);
create index webhooks_number_idx on webhooks (phone_number_internal_id, created_at desc, id desc);

insert into webhooks (id, project_id, phone_number_internal_id, kind, url, created_at, updated_at)
select internal_id, project_id, internal_id, 'meta', webhook_destination_url, created_at, updated_at
from phone_numbers where webhook_destination_url is not null;

-- SQLite cannot drop NOT NULL in place: the outbox is rebuilt. The attempts table references it
-- with `on delete cascade`, so it is set aside first (dropping the old outbox would otherwise
-- delete every attempt) and put back after.
create table webhook_delivery_attempts_keep as select * from webhook_delivery_attempts;
drop table webhook_delivery_attempts;

create table webhook_deliveries_new (
    id                        blob primary key not null,
    project_id                blob not null references projects (id) on delete cascade,
    phone_number_internal_id  blob references phone_numbers (internal_id) on delete cascade,
    phone_number_id           text not null,
    event_id                  blob references webhook_events (id) on delete cascade,
    route_id                  blob references webhook_event_routes (id) on delete cascade,
    fields                    text not null,
    idempotency_key           text not null,
    message_wamids            text not null default '',
    status                    text not null,
    attempts                  integer not null default 0,
    next_attempt_at           text not null,
    lease_token               blob,
    last_status_code          integer,
    last_error                text,
    replay_of                 blob,
    created_at                text not null,
    updated_at                text not null,
    delivered_at              text,
    webhook_id                blob,
    event_type                text,
    payload                   blob,
    batch_size                integer not null default 1
);
insert into webhook_deliveries_new (id, project_id, phone_number_internal_id, phone_number_id,
    event_id, route_id, fields, idempotency_key, message_wamids, status, attempts,
    next_attempt_at, lease_token, last_status_code, last_error, replay_of, created_at,
    updated_at, delivered_at, webhook_id)
select id, project_id, phone_number_internal_id, phone_number_id, event_id, route_id, fields,
    idempotency_key, message_wamids, status, attempts, next_attempt_at, lease_token,
    last_status_code, last_error, replay_of, created_at, updated_at, delivered_at,
    phone_number_internal_id
from webhook_deliveries;
drop table webhook_deliveries;
alter table webhook_deliveries_new rename to webhook_deliveries;
create index webhook_deliveries_due_idx on webhook_deliveries (next_attempt_at, id)
    where status in ('pending', 'failed');
create index webhook_deliveries_project_idx on webhook_deliveries (project_id, created_at desc, id desc);
create index webhook_deliveries_number_idx on webhook_deliveries (phone_number_internal_id, created_at desc, id desc);
create index webhook_deliveries_status_idx on webhook_deliveries (project_id, status, created_at desc, id desc);
create index webhook_deliveries_event_idx on webhook_deliveries (event_id);
create index webhook_deliveries_webhook_idx on webhook_deliveries (webhook_id, status);

create table webhook_delivery_attempts (
    id                blob primary key not null,
    delivery_id       blob not null references webhook_deliveries (id) on delete cascade,
    attempt           integer not null,
    started_at        text not null,
    duration_ms       integer not null,
    destination       text not null,
    status_code       integer,
    response_excerpt  text,
    error             text
);
insert into webhook_delivery_attempts select * from webhook_delivery_attempts_keep;
drop table webhook_delivery_attempts_keep;
create index webhook_delivery_attempts_delivery_idx on webhook_delivery_attempts (delivery_id, attempt);

create table webhook_buffered_events (
    id                        blob primary key not null,
    webhook_id                blob not null references webhooks (id) on delete cascade,
    conversation_id           blob not null,
    project_id                blob not null,
    phone_number_internal_id  blob not null,
    phone_number_id           text not null,
    payload                   blob not null,
    flush_at                  text not null,
    created_at                text not null
);
create index webhook_buffered_events_key_idx on webhook_buffered_events (webhook_id, conversation_id, created_at, id);
create index webhook_buffered_events_due_idx on webhook_buffered_events (flush_at);

create table webhook_inactivity_fired (
    webhook_id       blob not null references webhooks (id) on delete cascade,
    conversation_id  blob not null,
    anchor           text not null,
    fired_at         text not null,
    primary key (webhook_id, conversation_id, anchor)
);

create trigger webhooks_inserted_cache_change after insert on webhooks
begin
    insert into cache_changes (kind) values ('numbers');
end;
-- Not on `consecutive_failures`, which every delivery outcome may touch.
create trigger webhooks_updated_cache_change after update of kind, url, events, active, paused_reason, secret_sealed, headers, buffer_enabled, buffer_window_seconds, max_buffer_size, buffer_events, inactivity_minutes, payload_version, phone_number_internal_id on webhooks
begin
    insert into cache_changes (kind) values ('numbers');
end;
create trigger webhooks_deleted_cache_change after delete on webhooks
begin
    insert into cache_changes (kind) values ('numbers');
end;

-- Inbound messages are `received` in Kapso's vocabulary (contract §15.2), in stored data and in
-- events alike; earlier versions stored `delivered`.
update messages set status = 'received' where direction = 'inbound' and status = 'delivered';
