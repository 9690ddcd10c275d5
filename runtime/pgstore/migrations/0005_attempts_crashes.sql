-- durably-go PostgreSQL schema, version 5: crash-counted attempts, the
-- attempt history and the trigger's trace context (issue 19, issue 21).
-- The columns are those of SQLite's version 5 (see its comments); constant
-- defaults, so no table rewrite.
ALTER TABLE durably_runs ADD COLUMN IF NOT EXISTS crashes bigint NOT NULL DEFAULT 0;
ALTER TABLE durably_runs ADD COLUMN IF NOT EXISTS attempts text;
ALTER TABLE durably_runs ADD COLUMN IF NOT EXISTS trace_context text;
