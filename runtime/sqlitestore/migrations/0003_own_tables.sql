-- durably-go SQLite schema, version 3: SQLite keeps only its own tables.
--
-- Version 1 was one schema for both engines and created PostgreSQL's event
-- tables here too (D3: NOTIFY carries events between processes; SQLite has
-- no such transport). They were never written on SQLite.

DROP TABLE IF EXISTS durably_event_payloads;
DROP TABLE IF EXISTS durably_event_listeners;
