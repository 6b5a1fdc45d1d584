-- The media vault's rows: one per media message (inbound, echoes, outbound), saying which file of
-- the object store holds its bytes (by SHA-256) and where its download stands. Doubles as the
-- durable download queue, claimed like the webhook outbox: written in the ingest transaction,
-- leased by one worker at a time, retried with backoff, shared by every instance.
create table media_files (
    id                        blob primary key not null,
    project_id                blob not null,
    phone_number_internal_id  blob not null,
    phone_number_id           text not null,
    wamid                     text not null,
    direction                 text not null,
    -- Meta's media id (inbound and uploaded media) or the link an outbound message named.
    media_id                  text,
    source_url                text,
    -- Meta's checksum from the webhook (hex or base64), checked on download.
    expected_sha256           text,
    -- The file's address in the store once kept (lower-case hex).
    sha256                    text,
    content_type              text,
    filename                  text,
    byte_size                 bigint,
    -- pending | stored | failed (permanent: last_error says why) | expired (retention)
    state                     text not null,
    attempts                  integer not null default 0,
    next_attempt_at           text not null,
    lease_token               blob,
    last_error                text,
    created_at                text not null,
    updated_at                text not null,
    stored_at                 text
);
create unique index media_files_message_key on media_files (phone_number_internal_id, wamid);
create index media_files_due_idx on media_files (next_attempt_at, id) where state = 'pending';
create index media_files_sha256_idx on media_files (sha256) where sha256 is not null;
create index media_files_stored_idx on media_files (stored_at) where state = 'stored';
