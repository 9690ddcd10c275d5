-- durably-go schema, version 2: tenant-scoped keys (D11).
--
-- key_scope names the space in which a run's idempotency and concurrency
-- keys live: '' is the global space (every run before this migration, and
-- every run of an engine without Config.TenantLabels or triggered with
-- WithGlobalKeys), otherwise the engine's encoding of the run's tenant
-- labels. Keys are unique per (job, scope), and the claim's "one leased run
-- per concurrency key" (R-051) holds per (scope, key), so one tenant's keys
-- can neither reveal nor block another tenant's runs.
--
-- History, like version 1: both stores apply it as migration 2, and sqlc
-- reads it after version 1.

ALTER TABLE durably_runs ADD COLUMN key_scope TEXT NOT NULL DEFAULT '';

-- Idempotency keys are unique per job and scope, forever (R-033, D11).
DROP INDEX IF EXISTS idx_durably_runs_job_idempotency;
CREATE UNIQUE INDEX IF NOT EXISTS idx_durably_runs_job_scope_idempotency
  ON durably_runs (job_name, key_scope, idempotency_key)
  WHERE idempotency_key IS NOT NULL;

-- At most one pending run per (job, scope, concurrency key) (R-036, D11).
DROP INDEX IF EXISTS idx_durably_runs_pending_concurrency;
CREATE UNIQUE INDEX IF NOT EXISTS idx_durably_runs_pending_scope_concurrency
  ON durably_runs (job_name, key_scope, concurrency_key)
  WHERE status = 'pending' AND concurrency_key IS NOT NULL;

-- The claim's concurrency guard: is a run of this (scope, key) leased (R-051)?
DROP INDEX IF EXISTS idx_durably_runs_status_concurrency;
CREATE INDEX IF NOT EXISTS idx_durably_runs_scope_concurrency_status
  ON durably_runs (concurrency_key, key_scope, status)
  WHERE concurrency_key IS NOT NULL;
