-- name: SaveSteps :many
-- Fenced step persistence for many runs at once (R-060, R-084, S-036): a
-- run's steps are inserted only if its row, updated first, is leased with
-- the writer's generation; a completed step advances the run's counters in
-- that same update. The update is the fence: a claim or cancel committing
-- while this statement runs makes it re-check the run's newest version, so
-- a step of a lost lease is not inserted. One write of the run row per
-- statement (an UPDATE … FROM applies one source row per target row: the
-- run's steps are aggregated first), where locking the row and then
-- updating it wrote it twice.
WITH u AS (
  SELECT unnest(@ids::text[]) AS id,
         unnest(@run_ids::text[]) AS run_id,
         unnest(@generations::bigint[]) AS generation,
         unnest(@names::text[]) AS name,
         unnest(@step_indexes::bigint[]) AS step_index,
         unnest(@statuses::text[]) AS status,
         unnest(@outputs::text[]) AS output,
         unnest(@errors::text[]) AS error,
         unnest(@started_ats::timestamptz[]) AS started_at,
         unnest(@completed_ats::timestamptz[]) AS completed_at,
         unnest(@attempts::bigint[]) AS attempt
), fenced AS (
  UPDATE durably_runs r
  SET current_step_index = COALESCE(a.next_index, r.current_step_index),
      completed_step_count = r.completed_step_count + a.completed,
      updated_at = COALESCE(a.completed_at, r.updated_at)
  FROM (SELECT u.run_id, u.generation,
          max(u.step_index) FILTER (WHERE u.status = 'completed') + 1 AS next_index,
          count(*) FILTER (WHERE u.status = 'completed') AS completed,
          max(u.completed_at) FILTER (WHERE u.status = 'completed') AS completed_at
        FROM u GROUP BY u.run_id, u.generation) AS a
  WHERE r.id = ANY(@run_ids::text[]) AND r.id = a.run_id AND r.status = 'leased' AND r.lease_generation = a.generation
  RETURNING r.id, a.generation
)
INSERT INTO durably_steps (id, run_id, name, "index", status, output, error, started_at, completed_at, attempt)
SELECT u.id, u.run_id, u.name, u.step_index, u.status, NULLIF(u.output, ''), NULLIF(u.error, ''),
       u.started_at, u.completed_at, u.attempt
FROM u JOIN fenced f ON f.id = u.run_id AND f.generation = u.generation
RETURNING durably_steps.id;

-- name: GetSteps :many
SELECT * FROM durably_steps WHERE run_id = @run_id ORDER BY "index", started_at, id;

-- name: GetCompletedSteps :many
SELECT * FROM durably_steps WHERE run_id = @run_id AND status = 'completed' ORDER BY "index";

-- name: InsertLogs :exec
INSERT INTO durably_logs (id, run_id, step_name, level, message, data, created_at)
SELECT u.id, u.run_id, NULLIF(u.step_name, ''), u.level, u.message, NULLIF(u.data, ''), u.created_at
FROM (SELECT unnest(@ids::text[]) AS id,
        unnest(@run_ids::text[]) AS run_id,
        unnest(@step_names::text[]) AS step_name,
        unnest(@levels::text[]) AS level,
        unnest(@messages::text[]) AS message,
        unnest(@datas::text[]) AS data,
        unnest(@created_ats::timestamptz[]) AS created_at) AS u;

-- name: GetLogs :many
SELECT * FROM durably_logs WHERE run_id = @run_id ORDER BY created_at, id;

-- name: DeleteStepsAndLogs :exec
WITH s AS (DELETE FROM durably_steps WHERE durably_steps.run_id = @run_id)
DELETE FROM durably_logs WHERE durably_logs.run_id = @run_id;

-- name: LockMigrations :exec
-- Serialises Migrate across processes for the length of its transaction.
SELECT pg_advisory_xact_lock(4242424242);

-- name: SchemaVersion :one
SELECT COALESCE(MAX(version), 0)::bigint AS version FROM durably_schema_versions;

-- name: RecordSchemaVersion :exec
-- The cast keeps the value a time while applied_at is still text (versions 1
-- and 2 record themselves before migration 3 converts the column).
INSERT INTO durably_schema_versions (version, applied_at) VALUES (@version, @applied_at::timestamptz);

-- name: SchemaVersionsTableExists :one
SELECT (to_regclass('durably_schema_versions') IS NOT NULL)::boolean AS present;

-- name: CurrentSchema :one
SELECT current_schema()::text;

-- name: InsertEventPayload :exec
INSERT INTO durably_event_payloads (id, payload, created_at) VALUES (@id, @payload, @created_at);

-- name: GetEventPayload :one
SELECT payload FROM durably_event_payloads WHERE id = @id;

-- name: DeleteEventPayloadsBefore :exec
DELETE FROM durably_event_payloads WHERE created_at < @before::timestamptz;

-- name: UpsertEventListener :exec
INSERT INTO durably_event_listeners (instance, expires_at) VALUES (@instance, @expires_at)
ON CONFLICT (instance) DO UPDATE SET expires_at = EXCLUDED.expires_at;

-- name: DeleteEventListener :exec
DELETE FROM durably_event_listeners WHERE instance = @instance OR expires_at < @now::timestamptz;

-- name: OtherEventListeners :one
SELECT EXISTS (
  SELECT 1 FROM durably_event_listeners WHERE instance <> @instance AND expires_at > @now::timestamptz
)::boolean AS present;

-- name: SaveStep :many
-- SaveSteps for a group that holds one step, the usual case with few runs
-- in flight: the same fence and counters without the arrays, whose
-- unnest, aggregate and join cost more than the write itself.
WITH fenced AS (
  UPDATE durably_runs r
  SET current_step_index = COALESCE(sqlc.narg(next_index)::bigint, r.current_step_index),
      completed_step_count = r.completed_step_count + @completed_inc::bigint,
      updated_at = COALESCE(sqlc.narg(advanced_at)::timestamptz, r.updated_at)
  WHERE r.id = @run_id::text AND r.status = 'leased' AND r.lease_generation = @generation::bigint
  RETURNING r.id
)
INSERT INTO durably_steps (id, run_id, name, "index", status, output, error, started_at, completed_at, attempt)
SELECT @id::text, fenced.id, @name::text, @step_index::bigint, @status::text, NULLIF(@output::text, ''), NULLIF(@error::text, ''),
       @started_at::timestamptz, @completed_at::timestamptz, @attempt::bigint
FROM fenced
RETURNING durably_steps.id;

-- name: BackendStates :many
-- The liveness check (liveness.go): what the server says the sessions of
-- the store that wait for an answer are doing. Sessions of this database
-- and role only: a pid the server gave another session (after a failover,
-- or behind a pooler that hands out pids of its own) says nothing of ours.
SELECT pid::bigint AS pid, COALESCE(state, '')::text AS state FROM pg_catalog.pg_stat_activity
WHERE pid = ANY(@pids::int[]) AND datname = current_database() AND usename = current_user;

-- name: DeleteUnfinishedSteps :exec
-- A resumed run keeps its completed steps only (S-072): the errors of its
-- failed attempts stay in the run's attempts history.
DELETE FROM durably_steps WHERE run_id = @run_id AND status <> 'completed';
