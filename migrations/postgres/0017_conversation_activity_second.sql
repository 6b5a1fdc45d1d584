-- Every recorded message updates its conversation (count, preview, last_active_at). With
-- last_active_at in two indexes no such update could be HOT: each one wrote new entries into
-- all four of the table's indexes and left a dead tuple behind (issue #24: 1 HOT update in
-- 10,008). The indexes now hold the activity time truncated to the second, which changes at
-- most once a second per conversation; lists and sweeps order by it first and then by the
-- exact last_active_at, which is the same order. Free space on each page (fillfactor) lets the
-- new row version stay on its page, which HOT also needs.
alter table conversations add column active_second timestamptz;
update conversations set active_second = date_trunc('second', last_active_at);
alter table conversations alter column active_second set not null;
drop index conversations_list_idx;
drop index conversations_sweep_idx;
create index conversations_list_idx on conversations (phone_number_internal_id, active_second desc);
create index conversations_sweep_idx on conversations (status, active_second);
alter table conversations set (fillfactor = 70);
