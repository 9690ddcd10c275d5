-- name: InsertStep :execrows
-- Fenced step persistence (R-060, S-036): the ownership check and the insert
-- are one statement, so no write slips in between.
INSERT INTO durably_steps (id, run_id, name, "index", status, output, error, started_at, completed_at, attempt)
SELECT sqlc.arg(id), sqlc.arg(run_id), sqlc.arg(name), sqlc.arg(step_index), CAST(sqlc.arg(status) AS TEXT),
       sqlc.narg(output), sqlc.narg(error), sqlc.arg(started_at), sqlc.arg(completed_at), CAST(sqlc.arg(attempt) AS INTEGER)
FROM durably_runs
WHERE id = sqlc.arg(run_id) AND status = 'leased' AND lease_generation = sqlc.arg(generation);

-- name: AdvanceStepCounters :execrows
UPDATE durably_runs
SET current_step_index = sqlc.arg(next_index),
    completed_step_count = completed_step_count + 1,
    updated_at = CAST(sqlc.arg(now) AS TEXT)
WHERE id = sqlc.arg(id) AND status = 'leased' AND lease_generation = sqlc.arg(generation);

-- name: GetSteps :many
SELECT * FROM durably_steps WHERE run_id = sqlc.arg(run_id) ORDER BY "index", started_at, id;

-- name: GetCompletedSteps :many
SELECT * FROM durably_steps WHERE run_id = sqlc.arg(run_id) AND status = 'completed' ORDER BY "index";

-- name: DeleteStepsOfRun :exec
DELETE FROM durably_steps WHERE run_id = sqlc.arg(run_id);

-- name: DeleteLogsOfRun :exec
DELETE FROM durably_logs WHERE run_id = sqlc.arg(run_id);

-- name: InsertLog :exec
INSERT INTO durably_logs (id, run_id, step_name, level, message, data, created_at)
VALUES (sqlc.arg(id), sqlc.arg(run_id), sqlc.narg(step_name), sqlc.arg(level), sqlc.arg(message),
        sqlc.narg(data), CAST(sqlc.arg(created_at) AS TEXT));

-- name: GetLogs :many
SELECT * FROM durably_logs WHERE run_id = sqlc.arg(run_id) ORDER BY created_at, id;

-- name: SchemaVersion :one
SELECT CAST(COALESCE(MAX(version), 0) AS INTEGER) AS version FROM durably_schema_versions;

-- name: RecordSchemaVersion :exec
INSERT INTO durably_schema_versions (version, applied_at) VALUES (sqlc.arg(version), sqlc.arg(applied_at));

-- name: DeleteUnfinishedSteps :exec
-- A resumed run keeps its completed steps only (S-072): the errors of its
-- failed attempts stay in the run's attempts history.
DELETE FROM durably_steps WHERE run_id = sqlc.arg(run_id) AND status <> 'completed';
