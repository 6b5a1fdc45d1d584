-- Two indexes nothing but a test's inspection reads on PostgreSQL (issue #24). They served the cascades from
-- `webhook_events`, whose foreign keys migration 0005 dropped (and no event is deleted on its
-- own): every webhook paid an index entry for its route and one for each of its deliveries,
-- 3 of the 17 entries a webhook with two deliveries writes to those two tables. SQLite keeps
-- both: its foreign keys still cascade.
drop index if exists webhook_deliveries_event_idx;
drop index if exists webhook_event_routes_event_idx;
