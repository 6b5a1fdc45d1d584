-- Webhook forwarding: a durable outbox of deliveries (one per event route of a number with a
-- webhook_destination_url, plus replays and manual retries) and the log of every attempt.

create table webhook_deliveries (
    id                        blob primary key not null,
    project_id                blob not null references projects (id) on delete cascade,
    phone_number_internal_id  blob not null references phone_numbers (internal_id) on delete cascade,
    phone_number_id           text not null,
    event_id                  blob not null references webhook_events (id) on delete cascade,
    -- The payload (Meta's envelope restricted to this number) lives on the route.
    route_id                  blob not null references webhook_event_routes (id) on delete cascade,
    fields                    text not null,
    idempotency_key           text not null,
    -- Space-separated wamids of the inbound messages the payload carries (processing_status).
    message_wamids            text not null default '',
    -- pending (not yet attempted) | failed (last attempt failed, retry due) | succeeded | dead
    status                    text not null,
    attempts                  integer not null default 0,
    -- When the next attempt is due; a claim moves it past the lease, so a crashed worker's rows
    -- come due again by themselves.
    next_attempt_at           text not null,
    lease_token               blob,
    last_status_code          integer,
    last_error                text,
    replay_of                 blob,
    created_at                text not null,
    updated_at                text not null,
    delivered_at              text
);
create index webhook_deliveries_due_idx on webhook_deliveries (next_attempt_at, id)
    where status in ('pending', 'failed');
create index webhook_deliveries_project_idx on webhook_deliveries (project_id, created_at desc, id desc);
create index webhook_deliveries_number_idx on webhook_deliveries (phone_number_internal_id, created_at desc, id desc);
create index webhook_deliveries_status_idx on webhook_deliveries (project_id, status, created_at desc, id desc);
create index webhook_deliveries_event_idx on webhook_deliveries (event_id);

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
create index webhook_delivery_attempts_delivery_idx on webhook_delivery_attempts (delivery_id, attempt);
