-- Every write that changes what an instance caches (phone numbers, API keys) tells every other
-- instance at commit, whoever made it: the Platform API, setup-link completion, the admin CLI or
-- a hand-written UPDATE. Triggers make that a property of the schema rather than of each code
-- path. NOTIFY is transactional (delivered once, at commit, never for a rolled-back write) and
-- PostgreSQL folds identical payloads within a transaction, so a bulk statement costs one message.
create function wagate_cache_changed() returns trigger language plpgsql as $$
begin
    if tg_table_name = 'api_keys' then
        perform pg_notify('wagate_cache', 'api_key:' || new.key_sha256);
    else
        perform pg_notify('wagate_cache', 'numbers');
    end if;
    return null;
end
$$;

create trigger phone_numbers_cache_changed
    after insert or update or delete on phone_numbers
    for each statement execute function wagate_cache_changed();

create trigger api_keys_cache_changed
    after update on api_keys
    for each row execute function wagate_cache_changed();
