-- The indexes on conversations hold the activity time truncated to the second instead of the
-- exact last_active_at (see the PostgreSQL migration of the same name: there it makes the
-- per-message conversation update a HOT update). Same order: by second, then the exact time.
-- The value is written the way sqlx encodes a whole-second UTC time.
alter table conversations add column active_second text not null default '';
update conversations set active_second = substr(last_active_at, 1, 19) || '+00:00';
drop index conversations_list_idx;
drop index conversations_sweep_idx;
create index conversations_list_idx on conversations (phone_number_internal_id, active_second desc);
create index conversations_sweep_idx on conversations (status, active_second);
