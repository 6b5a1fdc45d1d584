-- The large values the write path stores (webhook bodies, their per-number payloads, rendered
-- Kapso deliveries, message bodies) are compressed with lz4 instead of pglz (issue #24). A
-- value over about 2 KB is compressed inline when written; pglz did that at a tenth of a
-- webhook batch's database time (a rendered Kapso delivery is 2-4 KB), lz4 in well under half
-- of that for a similar size. Only new values change; old ones stay readable as they are.
-- A server built without lz4 (or before PostgreSQL 14) keeps pglz: the migration says so and
-- goes on.
do $$
begin
    execute 'alter table webhook_events alter column body set compression lz4';
    execute 'alter table webhook_event_routes alter column payload set compression lz4';
    execute 'alter table webhook_deliveries alter column payload set compression lz4';
    execute 'alter table webhook_buffered_events alter column payload set compression lz4';
    execute 'alter table messages alter column body set compression lz4';
exception when feature_not_supported or syntax_error then
    -- Built without lz4, or older than PostgreSQL 14 (no per-column compression).
    raise notice 'this PostgreSQL cannot compress columns with lz4: large values stay pglz-compressed';
end $$;
