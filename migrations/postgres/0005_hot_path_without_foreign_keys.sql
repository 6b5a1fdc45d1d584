-- The tables written once or more per webhook (messages, event routes, outbox rows and their
-- attempts) stop enforcing foreign keys on PostgreSQL. Each check is a query plus a row lock on
-- the parent (the number, the project, the event), with a WAL record: on the ingest benchmark
-- they cost about half of every insert. The references still hold by construction: these rows
-- are only written by the ingest and delivery code with ids it has just read or written in the
-- same transaction, projects and events are never deleted, and deleting a phone number deletes
-- its messages, outbox rows and attempts explicitly (`delete_phone_number`), in the same
-- transaction as the number. SQLite keeps its foreign keys: there a check is an in-process
-- B-tree probe, and keeping them costs nothing measurable.
alter table messages drop constraint if exists messages_project_id_fkey;
alter table messages drop constraint if exists messages_phone_number_internal_id_fkey;
alter table messages drop constraint if exists messages_contact_id_fkey;
alter table messages drop constraint if exists messages_conversation_id_fkey;
alter table webhook_event_routes drop constraint if exists webhook_event_routes_event_id_fkey;
alter table webhook_event_routes drop constraint if exists webhook_event_routes_project_id_fkey;
alter table webhook_deliveries drop constraint if exists webhook_deliveries_project_id_fkey;
alter table webhook_deliveries drop constraint if exists webhook_deliveries_phone_number_internal_id_fkey;
alter table webhook_deliveries drop constraint if exists webhook_deliveries_event_id_fkey;
alter table webhook_deliveries drop constraint if exists webhook_deliveries_route_id_fkey;
alter table webhook_delivery_attempts drop constraint if exists webhook_delivery_attempts_delivery_id_fkey;
