-- Every write that changes what a process caches (phone numbers, API keys) is logged here in the
-- same transaction, whoever made it (the server, the admin CLI in another process, a hand-written
-- UPDATE); each server polls the log and forgets what changed. SQLite serialises writers, so ids
-- are handed out in commit order and "everything after the last id I saw" misses nothing.
create table cache_changes (
    id          integer primary key autoincrement,
    -- 'numbers' (every cached number configuration) or 'api_key' (the key with `key_sha256`).
    kind        text not null,
    key_sha256  text,
    -- Unix seconds; rows older than an hour are pruned by the pollers.
    created_at  integer not null default (cast(strftime('%s', 'now') as integer))
);

create trigger phone_numbers_inserted_cache_change after insert on phone_numbers
begin
    insert into cache_changes (kind) values ('numbers');
end;

create trigger phone_numbers_updated_cache_change after update on phone_numbers
begin
    insert into cache_changes (kind) values ('numbers');
end;

create trigger phone_numbers_deleted_cache_change after delete on phone_numbers
begin
    insert into cache_changes (kind) values ('numbers');
end;

create trigger api_keys_updated_cache_change after update on api_keys
begin
    insert into cache_changes (kind, key_sha256) values ('api_key', new.key_sha256);
end;
