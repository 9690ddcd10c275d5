-- durably-go schema, version 1 (storage.md S-001 … S-050).
--
-- One schema for SQLite and PostgreSQL: columns are TEXT and INTEGER only,
-- timestamps are fixed-width UTC ISO-8601 strings with milliseconds
-- (2026-03-29T10:15:30.123Z) so that string comparison is time comparison
-- (S-002), JSON is stored as TEXT (S-003), ids are ULIDs made by the
-- application and child rows are deleted explicitly (S-004).
--
-- History: versions 1 and 2 are what deployed databases of both engines
-- ran, and stay so. Both stores apply them (storekit.StoreMigrations) and
-- sqlc reads them, before each store's own migrations (version 3 on),
-- which give each engine its own schema. The data model is the top-level
-- schema.sql. (PostgreSQL's fillfactor, applied from Go after this file
-- until then, is in its migration 3.)

CREATE TABLE IF NOT EXISTS durably_runs (
  id                   TEXT    NOT NULL PRIMARY KEY,
  job_name             TEXT    NOT NULL,
  input                TEXT    NOT NULL,
  status               TEXT    NOT NULL,
  idempotency_key      TEXT,
  concurrency_key      TEXT,
  labels               TEXT    NOT NULL DEFAULT '{}',
  current_step_index   INTEGER NOT NULL DEFAULT 0,
  completed_step_count INTEGER NOT NULL DEFAULT 0,
  progress             TEXT,
  output               TEXT,
  error                TEXT,
  lease_owner          TEXT,
  lease_expires_at     TEXT,
  lease_generation     INTEGER NOT NULL DEFAULT 0,
  started_at           TEXT,
  completed_at         TEXT,
  created_at           TEXT    NOT NULL,
  updated_at           TEXT    NOT NULL
);

-- Every status change of a run rewrites the entries of the indexes that
-- hold it; on PostgreSQL every non-HOT update adds entries to all of them.
-- So indexes that serve one kind of row are partial: runs without an
-- idempotency or concurrency key, and runs that are not leased or not
-- finished, cost them nothing.

-- Idempotency keys are unique per job, forever (R-033).
CREATE UNIQUE INDEX IF NOT EXISTS idx_durably_runs_job_idempotency
  ON durably_runs (job_name, idempotency_key)
  WHERE idempotency_key IS NOT NULL;

-- At most one pending run per (job, concurrency key) (R-036).
CREATE UNIQUE INDEX IF NOT EXISTS idx_durably_runs_pending_concurrency
  ON durably_runs (job_name, concurrency_key)
  WHERE status = 'pending' AND concurrency_key IS NOT NULL;

-- The claim's concurrency guard: is a run of this key leased (R-051)?
CREATE INDEX IF NOT EXISTS idx_durably_runs_status_concurrency
  ON durably_runs (concurrency_key, status)
  WHERE concurrency_key IS NOT NULL;

-- Listing by status, newest first.
CREATE INDEX IF NOT EXISTS idx_durably_runs_status_created
  ON durably_runs (status, created_at);

-- Releasing and reclaiming expired leases (R-051, R-062).
CREATE INDEX IF NOT EXISTS idx_durably_runs_status_lease_expires
  ON durably_runs (lease_expires_at)
  WHERE status = 'leased';

-- Listing by job, newest first.
CREATE INDEX IF NOT EXISTS idx_durably_runs_job_created
  ON durably_runs (job_name, created_at);

-- Purging finished runs oldest first (R-104).
CREATE INDEX IF NOT EXISTS idx_durably_runs_status_completed
  ON durably_runs (completed_at)
  WHERE status IN ('completed', 'failed', 'cancelled');

-- Listing newest first without a status or job filter (GET /runs).
CREATE INDEX IF NOT EXISTS idx_durably_runs_created
  ON durably_runs (created_at, id);

-- Claiming walks the pending runs in creation order. Leased runs are not
-- in this index: however many runs are leased, and however long they run,
-- a claim never steps over them. Expired leases are found through
-- idx_durably_runs_status_lease_expires instead.
CREATE INDEX IF NOT EXISTS idx_durably_runs_pending_created
  ON durably_runs (created_at, id)
  WHERE status = 'pending';

-- Normalised copy of durably_runs.labels, written once at insert (labels are
-- immutable) and used only for filtering (S-045). created_at is the run's,
-- copied so that "the newest runs of one organization" is a range scan of
-- idx_durably_run_labels_key_value rather than a sort of every matching run.
CREATE TABLE IF NOT EXISTS durably_run_labels (
  run_id     TEXT NOT NULL,
  key        TEXT NOT NULL,
  value      TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_durably_run_labels_pk
  ON durably_run_labels (run_id, key);
CREATE INDEX IF NOT EXISTS idx_durably_run_labels_key_value
  ON durably_run_labels (key, value, created_at, run_id);

CREATE TABLE IF NOT EXISTS durably_steps (
  id           TEXT    NOT NULL PRIMARY KEY,
  run_id       TEXT    NOT NULL,
  name         TEXT    NOT NULL,
  "index"      INTEGER NOT NULL,
  status       TEXT    NOT NULL,
  output       TEXT,
  error        TEXT,
  started_at   TEXT    NOT NULL,
  completed_at TEXT
);
CREATE INDEX IF NOT EXISTS idx_durably_steps_run_index
  ON durably_steps (run_id, "index");
-- At most one completed step per (run, name): replay by name (R-085).
CREATE UNIQUE INDEX IF NOT EXISTS idx_durably_steps_completed_unique
  ON durably_steps (run_id, name)
  WHERE status = 'completed';

CREATE TABLE IF NOT EXISTS durably_logs (
  id         TEXT NOT NULL PRIMARY KEY,
  run_id     TEXT NOT NULL,
  step_name  TEXT,
  level      TEXT NOT NULL,
  message    TEXT NOT NULL,
  data       TEXT,
  created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_durably_logs_run_created
  ON durably_logs (run_id, created_at);

CREATE TABLE IF NOT EXISTS durably_schema_versions (
  version    INTEGER NOT NULL PRIMARY KEY,
  applied_at TEXT    NOT NULL
);

-- PostgreSQL carries events between processes with NOTIFY (D3); an event
-- too large for a notification's 8000-byte payload is parked here and the
-- notification carries its id. Rows live a minute. Unused on SQLite.
CREATE TABLE IF NOT EXISTS durably_event_payloads (
  id         TEXT NOT NULL PRIMARY KEY,
  payload    TEXT NOT NULL,
  created_at TEXT NOT NULL
);

-- Processes that want other processes' events (an open event stream) keep a
-- row here; the others publish events only while one exists (D3), so a
-- database nobody watches pays for no notifications.
CREATE TABLE IF NOT EXISTS durably_event_listeners (
  instance   TEXT NOT NULL PRIMARY KEY,
  expires_at TEXT NOT NULL
);
