-- Meta-aware outbound pacing and queued sends (issue #22).

-- A number's own send rate (messages per second) when set through the Platform API (null: the
-- rate of its throughput tier), and the time Meta's throughput upgrade (131057) pauses it until.
-- Both are read by the proxy from its number cache; writing them fires the cache-change trigger,
-- so every instance paces with the same values.
alter table phone_numbers add column pacing_rate bigint;
alter table phone_numbers add column paused_until timestamptz;

-- The project's business-user pair-rate mode: observe, enforce or off (null: pacing.pair_rate_mode).
alter table projects add column pair_rate_mode text;

-- Numbers cache their project's pacing settings: a change to a project forgets them everywhere.
create trigger projects_cache_changed
    after update on projects
    for each statement execute function wagate_cache_changed();

-- Live instances: each writes its row every pacing.heartbeat; a number's rate is shared equally
-- between the instances seen within pacing.instance_ttl.
create table pacing_instances (
    instance_id  uuid primary key,
    seen_at      timestamptz not null
);

-- Queued sends (Kapso's Broadcasts API): one row per broadcast, one per recipient.
create table broadcasts (
    id                        uuid primary key,
    project_id                uuid not null references projects (id) on delete cascade,
    phone_number_internal_id  uuid not null references phone_numbers (internal_id) on delete cascade,
    -- Meta's id of that number, as the API shows it.
    phone_number_id           text not null,
    name                      text not null,
    -- The template every recipient gets (null: each recipient carries its own Graph send body).
    template_name             text,
    template_language         text,
    template_id               text,
    -- draft | scheduled | sending | completed | stopped | failed
    status                    text not null,
    total_recipients          bigint not null default 0,
    scheduled_at              timestamptz,
    started_at                timestamptz,
    completed_at              timestamptz,
    stopped_at                timestamptz,
    created_at                timestamptz not null,
    updated_at                timestamptz not null
);
create index broadcasts_project_idx on broadcasts (project_id, created_at, id);
create index broadcasts_status_idx on broadcasts (status, scheduled_at);

create table broadcast_recipients (
    id                uuid primary key,
    broadcast_id      uuid not null references broadcasts (id) on delete cascade,
    -- Order of addition: recipients are sent in this order.
    position          bigint not null,
    -- The `to` of the send (phone number as given, or a BSUID).
    recipient         text not null,
    -- The whole Graph send body (JSON), built when the recipient is added.
    body              text not null,
    -- pending | sending | sent | failed
    state             text not null,
    attempts          bigint not null default 0,
    next_attempt_at   timestamptz not null,
    lease_token       uuid,
    claimed_at        timestamptz,
    -- Set when a request may have reached Meta without an answer (lost, timed out, worker
    -- killed): the send is repeated only after pacing.lost_answer_grace without Meta's status.
    in_doubt_since    timestamptz,
    wamid             text,
    -- Meta's error object (JSON) for a failed recipient, or the last retryable one.
    error             text,
    sent_at           timestamptz,
    updated_at        timestamptz not null,
    unique (broadcast_id, recipient)
);
create index broadcast_recipients_due_idx
    on broadcast_recipients (broadcast_id, state, next_attempt_at, position);
create index broadcast_recipients_list_idx on broadcast_recipients (broadcast_id, position);
