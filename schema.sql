-- durably-go data model (storage.md S-001 … S-050): the tables and columns
-- every store keeps, in engine-neutral types. No store runs this file. Each
-- store owns its schema as migrations it embeds and applies
-- (runtime/sqlitestore/migrations, runtime/pgstore/migrations; sqlc reads
-- those), and TestSchemaMatchesDataModel in each store checks that a
-- database migrated to the latest version has exactly these tables and
-- columns, with these types mapped as follows:
--
--   neutral       SQLite     PostgreSQL
--   TEXT          TEXT       text
--   INTEGER       INTEGER    bigint (integer for durably_schema_versions.version)
--   TIMESTAMP     TEXT       timestamptz
--                 (fixed-width UTC ISO-8601 with milliseconds,
--                 2026-03-29T10:15:30.123Z, so that string order is time
--                 order, S-002)
--   JSON          TEXT       text (the bytes a job wrote, returned as they
--                 were, S-003: jsonb would reorder and respace them)
--   JSON_OBJECT   TEXT       jsonb (labels: a flat object of strings,
--                 filtered by containment)
--
-- Ids are ULIDs made by the application and child rows are deleted
-- explicitly (S-004). The tables marked "PostgreSQL only" carry events
-- between processes (D3) and exist only there. The indexes are each
-- engine's own (see its migrations); those that enforce invariants are
-- listed in ARCHITECTURE.md.

CREATE TABLE durably_runs (
  id                   TEXT        NOT NULL PRIMARY KEY,
  job_name             TEXT        NOT NULL,
  input                JSON        NOT NULL,
  status               TEXT        NOT NULL,
  idempotency_key      TEXT,
  concurrency_key      TEXT,
  key_scope            TEXT        NOT NULL DEFAULT '', -- where both keys are unique (D11)
  labels               JSON_OBJECT NOT NULL DEFAULT '{}',
  current_step_index   INTEGER     NOT NULL DEFAULT 0,
  completed_step_count INTEGER     NOT NULL DEFAULT 0,
  progress             JSON,
  output               JSON,
  error                TEXT,
  lease_owner          TEXT,
  lease_expires_at     TIMESTAMP,
  lease_generation     INTEGER     NOT NULL DEFAULT 0,
  started_at           TIMESTAMP,
  completed_at         TIMESTAMP,
  created_at           TIMESTAMP   NOT NULL,
  updated_at           TIMESTAMP   NOT NULL,
  run_at               TIMESTAMP,                    -- claimable from then (NULL: at once)
  ready                INTEGER     NOT NULL DEFAULT 1, -- 0 while a pending run waits for run_at
  priority             INTEGER     NOT NULL DEFAULT 0, -- claim order, smaller first
  attempt              INTEGER     NOT NULL DEFAULT 0, -- deferrals for a retry so far
  crashes              INTEGER     NOT NULL DEFAULT 0, -- executions that ended without an outcome
  attempts             JSON,                         -- unsuccessful attempts: [{attempt, outcome, step, error, at, worker}]
  trace_context        TEXT,                         -- the trigger's W3C trace context, as JSON
  parent_run_id        TEXT,                         -- the run whose step triggered this one (a child)
  waiting_for          TEXT,                         -- 'children' or 'signal:<name>' while a pending run waits for it
  awaiting             INTEGER     NOT NULL DEFAULT 0, -- awaited children still active, while waiting for them
  wakes                INTEGER     NOT NULL DEFAULT 0  -- events addressed to the run: children's ends, signals
);

-- Normalised copy of durably_runs.labels, written once at insert (labels are
-- immutable) and used only for filtering (S-045). created_at is the run's,
-- copied so that "the newest runs of one organization" is a range scan of
-- an index on (key, value, created_at, run_id) rather than a sort of every
-- matching run.
CREATE TABLE durably_run_labels (
  run_id               TEXT        NOT NULL,
  key                  TEXT        NOT NULL,
  value                TEXT        NOT NULL,
  created_at           TIMESTAMP   NOT NULL
);

CREATE TABLE durably_steps (
  id                   TEXT        NOT NULL PRIMARY KEY,
  run_id               TEXT        NOT NULL,
  name                 TEXT        NOT NULL,
  "index"              INTEGER     NOT NULL,
  status               TEXT        NOT NULL,
  output               JSON,
  error                TEXT,
  started_at           TIMESTAMP   NOT NULL,
  completed_at         TIMESTAMP,
  attempt              INTEGER     NOT NULL DEFAULT 1  -- 1-based; failed attempts keep their rows
);

CREATE TABLE durably_logs (
  id                   TEXT        NOT NULL PRIMARY KEY,
  run_id               TEXT        NOT NULL,
  step_name            TEXT,
  level                TEXT        NOT NULL,
  message              TEXT        NOT NULL,
  data                 JSON,
  created_at           TIMESTAMP   NOT NULL
);

-- Signals sent to a run and kept until a step of it receives one (oldest
-- first per name), deleted when delivered and when the run ends.
CREATE TABLE durably_signals (
  id                   TEXT        NOT NULL PRIMARY KEY,
  run_id               TEXT        NOT NULL,
  name                 TEXT        NOT NULL,
  payload              JSON        NOT NULL,
  created_at           TIMESTAMP   NOT NULL
);

CREATE TABLE durably_schema_versions (
  version              INTEGER     NOT NULL PRIMARY KEY,
  applied_at           TIMESTAMP   NOT NULL
);

-- PostgreSQL carries events between processes with NOTIFY (D3); an event
-- too large for a notification's 8000-byte payload is parked here and the
-- notification carries its id. Rows live a minute. PostgreSQL only.
CREATE TABLE durably_event_payloads (
  id                   TEXT        NOT NULL PRIMARY KEY,
  payload              TEXT        NOT NULL,
  created_at           TIMESTAMP   NOT NULL
);

-- Processes that want other processes' events (an open event stream) keep a
-- row here; the others publish events only while one exists (D3), so a
-- database nobody watches pays for no notifications.
CREATE TABLE durably_event_listeners (
  instance             TEXT        NOT NULL PRIMARY KEY,
  expires_at           TIMESTAMP   NOT NULL
);
