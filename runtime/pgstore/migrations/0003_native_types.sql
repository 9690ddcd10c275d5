-- durably-go PostgreSQL schema, version 3: PostgreSQL's own types.
--
-- Versions 1 and 2 were one schema for both engines, TEXT and INTEGER only.
-- On PostgreSQL that meant comparing timestamps as text (correct only
-- because every writer used one fixed-width format) and parsing labels as
-- JSON for every row a label filter looked at. Here:
--
-- * timestamps become timestamptz: compared, indexed and range-scanned as
--   times, 8 bytes instead of 24; the stored text (UTC, milliseconds,
--   S-002) converts exactly.
-- * counters and generations become bigint (the fencing token must not
--   wrap, R-060).
-- * labels become jsonb: the label filter's containment test (@>) reads it
--   without parsing text per row, and equal maps compare equal.
-- * input, output, progress, step outputs and log data stay text: the engine
--   returns them byte for byte as the job wrote them (S-003), and jsonb
--   would reorder keys, drop duplicates and respace them.
--
-- ALTER COLUMN … TYPE rewrites each table once and rebuilds its indexes, in
-- this migration's transaction; the partial indexes' predicates do not
-- mention the converted columns.

-- Room on each page lets PostgreSQL update a run in place (HOT) when no
-- indexed column changes, as recording a step or progress does. Until this
-- version pgstore set it from Go after version 1; a database that has it
-- already is unchanged.
ALTER TABLE durably_runs SET (fillfactor = 70);

ALTER TABLE durably_runs
  ALTER COLUMN labels DROP DEFAULT,
  ALTER COLUMN labels TYPE jsonb USING labels::jsonb,
  ALTER COLUMN labels SET DEFAULT '{}'::jsonb,
  ALTER COLUMN current_step_index TYPE bigint,
  ALTER COLUMN completed_step_count TYPE bigint,
  ALTER COLUMN lease_generation TYPE bigint,
  ALTER COLUMN lease_expires_at TYPE timestamptz USING lease_expires_at::timestamptz,
  ALTER COLUMN started_at TYPE timestamptz USING started_at::timestamptz,
  ALTER COLUMN completed_at TYPE timestamptz USING completed_at::timestamptz,
  ALTER COLUMN created_at TYPE timestamptz USING created_at::timestamptz,
  ALTER COLUMN updated_at TYPE timestamptz USING updated_at::timestamptz;

ALTER TABLE durably_run_labels
  ALTER COLUMN created_at TYPE timestamptz USING created_at::timestamptz;

ALTER TABLE durably_steps
  ALTER COLUMN "index" TYPE bigint,
  ALTER COLUMN started_at TYPE timestamptz USING started_at::timestamptz,
  ALTER COLUMN completed_at TYPE timestamptz USING completed_at::timestamptz;

ALTER TABLE durably_logs
  ALTER COLUMN created_at TYPE timestamptz USING created_at::timestamptz;

ALTER TABLE durably_schema_versions
  ALTER COLUMN applied_at TYPE timestamptz USING applied_at::timestamptz;

ALTER TABLE durably_event_payloads
  ALTER COLUMN created_at TYPE timestamptz USING created_at::timestamptz;

ALTER TABLE durably_event_listeners
  ALTER COLUMN expires_at TYPE timestamptz USING expires_at::timestamptz;
