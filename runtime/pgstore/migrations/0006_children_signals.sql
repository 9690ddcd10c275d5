-- durably-go PostgreSQL schema, version 6: child runs and signals (issue
-- 22). The columns and the table are those of SQLite's version 6 (see its
-- comments); constant defaults, so no table rewrite.
ALTER TABLE durably_runs ADD COLUMN IF NOT EXISTS parent_run_id text;
ALTER TABLE durably_runs ADD COLUMN IF NOT EXISTS waiting_for text;
ALTER TABLE durably_runs ADD COLUMN IF NOT EXISTS awaiting bigint NOT NULL DEFAULT 0;
ALTER TABLE durably_runs ADD COLUMN IF NOT EXISTS wakes bigint NOT NULL DEFAULT 0;

CREATE INDEX IF NOT EXISTS idx_durably_runs_parent
  ON durably_runs (parent_run_id, created_at, id)
  WHERE parent_run_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS durably_signals (
  id         text        NOT NULL PRIMARY KEY,
  run_id     text        NOT NULL,
  name       text        NOT NULL,
  payload    text        NOT NULL,
  created_at timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS idx_durably_signals_run_name
  ON durably_signals (run_id, name, id);
