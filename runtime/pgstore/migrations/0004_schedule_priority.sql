-- durably-go PostgreSQL schema, version 4: delayed runs, priorities and
-- attempts (issue 14).
--
-- * run_at: when a pending run becomes claimable (NULL: at once). Set by a
--   trigger's run-at or delay, and by DeferRun (a retry's next attempt, a
--   durable sleep's wake time). Kept after the claim for display; cleared
--   only when a lease goes back to pending without a deferral.
-- * ready: 1 when a pending run may be claimed, 0 while it waits for run_at.
--   Claims walk idx_durably_runs_ready (priority, then creation order) and
--   never see a waiting run; each claim first promotes the waiting runs that
--   are due (ready := 1) through idx_durably_runs_waiting, an index that
--   holds waiting runs only, so that a run due in an hour is never scanned.
-- * priority: claim order, smaller first (River's and DBOS's convention);
--   0 by default.
-- * attempt: on runs, how many times the run was deferred for a retry; on
--   steps, the 1-based attempt a row records (failed attempts are kept).
--
-- ADD COLUMN with a constant default changes only the catalog: existing rows
-- read the default without a rewrite.
ALTER TABLE durably_runs
  ADD COLUMN run_at timestamptz,
  ADD COLUMN ready bigint NOT NULL DEFAULT 1,
  ADD COLUMN priority bigint NOT NULL DEFAULT 0,
  ADD COLUMN attempt bigint NOT NULL DEFAULT 0;

ALTER TABLE durably_steps
  ADD COLUMN attempt bigint NOT NULL DEFAULT 1;

-- The claim's walk of ready runs: priority first, then creation order.
DROP INDEX IF EXISTS idx_durably_runs_pending_created;
CREATE INDEX IF NOT EXISTS idx_durably_runs_ready
  ON durably_runs (priority, created_at, id)
  WHERE status = 'pending' AND ready = 1;

-- Waiting runs by the time they become due: the promotion reads the due
-- ones and stops at the first that is not.
CREATE INDEX IF NOT EXISTS idx_durably_runs_waiting
  ON durably_runs (run_at)
  WHERE status = 'pending' AND ready = 0;

-- One pending run per (job, scope, concurrency key) (R-036, D11), except a
-- run that was deferred after it started (started_at and run_at both set):
-- it holds no key while it waits, so that a deferral is never refused
-- because a new run of its key was triggered meanwhile. A lease handed back
-- without a deferral clears run_at and counts again (D12 unchanged).
DROP INDEX IF EXISTS idx_durably_runs_pending_scope_concurrency;
CREATE UNIQUE INDEX IF NOT EXISTS idx_durably_runs_pending_scope_concurrency
  ON durably_runs (job_name, key_scope, concurrency_key)
  WHERE status = 'pending' AND concurrency_key IS NOT NULL AND (started_at IS NULL OR run_at IS NULL);
