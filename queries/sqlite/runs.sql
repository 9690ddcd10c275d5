-- name: InsertRun :execrows
-- Both unique indexes (idempotency, pending concurrency key) turn a
-- conflicting insert into zero rows; the store then looks up why (S-025).
-- A run started by its own worker at once is inserted leased (store.Claim).
-- Keys are unique within their key_scope (D11).
INSERT INTO durably_runs (
  id, job_name, input, status, idempotency_key, concurrency_key, key_scope, labels,
  current_step_index, completed_step_count, lease_owner, lease_expires_at, lease_generation,
  started_at, created_at, updated_at, run_at, ready, priority, trace_context, parent_run_id
) VALUES (
  sqlc.arg(id), sqlc.arg(job_name), sqlc.arg(input), CAST(sqlc.arg(status) AS TEXT), sqlc.narg(idempotency_key),
  sqlc.narg(concurrency_key), CAST(sqlc.arg(key_scope) AS TEXT), sqlc.arg(labels), 0, 0, sqlc.narg(lease_owner), sqlc.narg(lease_expires_at),
  CAST(sqlc.arg(lease_generation) AS INTEGER), sqlc.narg(started_at),
  CAST(sqlc.arg(created_at) AS TEXT), CAST(sqlc.arg(created_at) AS TEXT),
  sqlc.narg(run_at), CAST(sqlc.arg(ready) AS INTEGER), CAST(sqlc.arg(priority) AS INTEGER), sqlc.narg(trace_context),
  sqlc.narg(parent_run_id)
) ON CONFLICT DO NOTHING;

-- name: InsertRunLabel :exec
INSERT INTO durably_run_labels (run_id, key, value, created_at)
VALUES (sqlc.arg(run_id), CAST(sqlc.arg(key) AS TEXT), CAST(sqlc.arg(value) AS TEXT), CAST(sqlc.arg(created_at) AS TEXT));

-- name: GetRunByIdempotencyKey :one
SELECT * FROM durably_runs
WHERE job_name = sqlc.arg(job_name) AND key_scope = CAST(sqlc.arg(key_scope) AS TEXT)
  AND idempotency_key = sqlc.arg(idempotency_key);

-- name: GetPendingRunByConcurrencyKey :one
SELECT * FROM durably_runs
WHERE job_name = sqlc.arg(job_name) AND key_scope = CAST(sqlc.arg(key_scope) AS TEXT)
  AND concurrency_key = sqlc.arg(concurrency_key) AND status = 'pending'
  AND (started_at IS NULL OR run_at IS NULL)
ORDER BY created_at, id
LIMIT 1;

-- name: PromoteDue :execrows
-- The first statement of every claim: waiting runs that are due become
-- ready (ready = 1), so that the claim's walk of idx_durably_runs_ready sees
-- them in priority order. It reads idx_durably_runs_waiting, which holds
-- waiting runs only, by run_at, and stops at the first not due: a run due
-- later is never read. At most lim runs per claim, the earliest due first.
UPDATE durably_runs SET ready = 1
WHERE id IN (
  SELECT w.id FROM durably_runs w INDEXED BY idx_durably_runs_waiting
  WHERE w.status = 'pending' AND w.ready = 0 AND w.run_at <= CAST(sqlc.arg(now) AS TEXT)
  ORDER BY w.run_at
  LIMIT CAST(sqlc.arg(lim) AS INTEGER));

-- name: ClaimBatch :many
-- Claims in one statement the runs that ClaimNext would claim one by one,
-- as long as each needs none of its checks: the first lim claimable
-- candidates in ClaimNext's order (priority, creation, id; ready pending
-- runs and expired leases, from the same two indexes), cut before the first
-- one that has a concurrency key or is of a job with a limit (job_limits;
-- has_limits = 0: no job has one). Such a candidate, and everything after
-- it, is left to ClaimNext, whose per-run checks then see this statement's
-- leases. Since an unconstrained candidate is always claimable, the runs
-- claimed here are exactly the ones ClaimNext would have claimed first.
-- RETURNING gives no order; the store sorts.
UPDATE durably_runs
SET status = 'leased',
    lease_owner = CAST(sqlc.arg(worker_id) AS TEXT),
    lease_expires_at = CAST(sqlc.arg(lease_expires_at) AS TEXT),
    lease_generation = lease_generation + 1,
    started_at = COALESCE(started_at, CAST(sqlc.arg(now) AS TEXT)),
    updated_at = CAST(sqlc.arg(now) AS TEXT),
    -- An expired lease with an owner is an execution that ended without an
    -- outcome (a hand-back clears the owner): a crash, counted and
    -- recorded in the attempt history (issue 19). The right-hand sides
    -- read the row as it was before this update.
    crashes = crashes + (status = 'leased' AND lease_owner IS NOT NULL),
    attempts = CASE WHEN status = 'leased' AND lease_owner IS NOT NULL
      THEN json_insert(CASE WHEN json_array_length(COALESCE(attempts, '[]')) >= 20 THEN json_remove(attempts, '$[0]') ELSE COALESCE(attempts, '[]') END, '$[#]', json_object(
        'attempt', attempt + crashes + 1, 'outcome', 'crashed', 'worker', lease_owner,
        'error', 'the execution by worker ' || lease_owner || ' ended without an outcome: its lease expired at ' || lease_expires_at,
        'at', lease_expires_at))
      ELSE attempts END
WHERE id IN (
  SELECT o.id FROM (
    SELECT u.id, sum(u.constrained) OVER (ORDER BY u.priority, u.created_at, u.id) AS blocked FROM (
      SELECT * FROM (
        SELECT p.id, p.priority, p.created_at,
          (p.concurrency_key IS NOT NULL OR (CAST(sqlc.arg(has_limits) AS INTEGER) <> 0 AND p.job_name IN (
            SELECT j.key FROM json_each(CAST(sqlc.arg(job_limits) AS TEXT)) j
            UNION ALL SELECT j.key FROM json_each(CAST(sqlc.arg(tenant_limits) AS TEXT)) j))) AS constrained
        FROM durably_runs p INDEXED BY idx_durably_runs_ready
        WHERE p.status = 'pending' AND p.ready = 1
        ORDER BY p.priority, p.created_at, p.id
        LIMIT CAST(sqlc.arg(lim) AS INTEGER))
      UNION ALL
      SELECT * FROM (
        SELECT x.id, x.priority, x.created_at,
          (x.concurrency_key IS NOT NULL OR (CAST(sqlc.arg(has_limits) AS INTEGER) <> 0 AND x.job_name IN (
            SELECT j.key FROM json_each(CAST(sqlc.arg(job_limits) AS TEXT)) j
            UNION ALL SELECT j.key FROM json_each(CAST(sqlc.arg(tenant_limits) AS TEXT)) j))) AS constrained
        FROM durably_runs x INDEXED BY idx_durably_runs_status_lease_expires
        WHERE x.status = 'leased' AND x.lease_expires_at <= CAST(sqlc.arg(now) AS TEXT)
        ORDER BY x.priority, x.created_at, x.id
        LIMIT CAST(sqlc.arg(lim) AS INTEGER))
    ) AS u
    ORDER BY u.priority, u.created_at, u.id
    LIMIT CAST(sqlc.arg(lim) AS INTEGER)) AS o
  WHERE o.blocked = 0)
RETURNING *;

-- name: ClaimNext :one
-- The first claimable run by priority (smaller first), then age (R-050,
-- R-051, S-030): ready and pending, or leased with an expired lease, not
-- blocked by an unexpired lease on its concurrency key in any job of its key
-- scope (D11), and not of a job that has as many live leases as its limit
-- (job_limits, a JSON object of job name to limit), nor in its key scope as
-- its per-tenant limit (tenant_limits, likewise); has_limits = 0 skips both
-- checks. An expired lease with a pending sibling is claimable like any
-- other (D12). One statement; SQLite's single writer makes it atomic, and
-- the job limits exact.
-- The two kinds come from two indexes, each already in a useful order, so
-- that neither finished history, live leases nor waiting runs are ever
-- scanned. INDEXED BY: without statistics SQLite might sort every pending
-- run on each claim instead.
UPDATE durably_runs
SET status = 'leased',
    lease_owner = CAST(sqlc.arg(worker_id) AS TEXT),
    lease_expires_at = CAST(sqlc.arg(lease_expires_at) AS TEXT),
    lease_generation = lease_generation + 1,
    started_at = COALESCE(started_at, CAST(sqlc.arg(now) AS TEXT)),
    updated_at = CAST(sqlc.arg(now) AS TEXT),
    -- A crash, counted as in ClaimBatch.
    crashes = crashes + (status = 'leased' AND lease_owner IS NOT NULL),
    attempts = CASE WHEN status = 'leased' AND lease_owner IS NOT NULL
      THEN json_insert(CASE WHEN json_array_length(COALESCE(attempts, '[]')) >= 20 THEN json_remove(attempts, '$[0]') ELSE COALESCE(attempts, '[]') END, '$[#]', json_object(
        'attempt', attempt + crashes + 1, 'outcome', 'crashed', 'worker', lease_owner,
        'error', 'the execution by worker ' || lease_owner || ' ended without an outcome: its lease expired at ' || lease_expires_at,
        'at', lease_expires_at))
      ELSE attempts END
WHERE id = (
  SELECT u.id FROM (
    SELECT * FROM (
      SELECT p.id, p.priority, p.created_at FROM durably_runs p INDEXED BY idx_durably_runs_ready
      WHERE p.status = 'pending' AND p.ready = 1
        AND (p.concurrency_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM durably_runs a
          WHERE a.status = 'leased' AND a.concurrency_key = p.concurrency_key AND a.key_scope = p.key_scope
            AND a.lease_expires_at IS NOT NULL AND a.lease_expires_at > CAST(sqlc.arg(now) AS TEXT)))
        AND (CAST(sqlc.arg(has_limits) AS INTEGER) = 0 OR NOT EXISTS (
          SELECT 1 FROM json_each(CAST(sqlc.arg(job_limits) AS TEXT)) j
          WHERE j.key = p.job_name AND j.value <= (
            SELECT count(*) FROM durably_runs l INDEXED BY idx_durably_runs_status_lease_expires
            WHERE l.status = 'leased' AND l.job_name = p.job_name
              AND l.lease_expires_at > CAST(sqlc.arg(now) AS TEXT))))
        AND (CAST(sqlc.arg(has_limits) AS INTEGER) = 0 OR NOT EXISTS (
          SELECT 1 FROM json_each(CAST(sqlc.arg(tenant_limits) AS TEXT)) j
          WHERE j.key = p.job_name AND j.value <= (
            SELECT count(*) FROM durably_runs l INDEXED BY idx_durably_runs_status_lease_expires
            WHERE l.status = 'leased' AND l.job_name = p.job_name AND l.key_scope = p.key_scope
              AND l.lease_expires_at > CAST(sqlc.arg(now) AS TEXT))))
      ORDER BY p.priority, p.created_at, p.id
      LIMIT 1)
    UNION ALL
    SELECT * FROM (
      SELECT x.id, x.priority, x.created_at FROM durably_runs x INDEXED BY idx_durably_runs_status_lease_expires
      WHERE x.status = 'leased' AND x.lease_expires_at <= CAST(sqlc.arg(now) AS TEXT)
        AND (x.concurrency_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM durably_runs a
          WHERE a.status = 'leased' AND a.concurrency_key = x.concurrency_key AND a.key_scope = x.key_scope
            AND a.id <> x.id
            AND a.lease_expires_at IS NOT NULL AND a.lease_expires_at > CAST(sqlc.arg(now) AS TEXT)))
        AND (CAST(sqlc.arg(has_limits) AS INTEGER) = 0 OR NOT EXISTS (
          SELECT 1 FROM json_each(CAST(sqlc.arg(job_limits) AS TEXT)) j
          WHERE j.key = x.job_name AND j.value <= (
            SELECT count(*) FROM durably_runs l INDEXED BY idx_durably_runs_status_lease_expires
            WHERE l.status = 'leased' AND l.job_name = x.job_name
              AND l.lease_expires_at > CAST(sqlc.arg(now) AS TEXT))))
        AND (CAST(sqlc.arg(has_limits) AS INTEGER) = 0 OR NOT EXISTS (
          SELECT 1 FROM json_each(CAST(sqlc.arg(tenant_limits) AS TEXT)) j
          WHERE j.key = x.job_name AND j.value <= (
            SELECT count(*) FROM durably_runs l INDEXED BY idx_durably_runs_status_lease_expires
            WHERE l.status = 'leased' AND l.job_name = x.job_name AND l.key_scope = x.key_scope
              AND l.lease_expires_at > CAST(sqlc.arg(now) AS TEXT))))
      ORDER BY x.priority, x.created_at, x.id
      LIMIT 1)
  ) AS u
  ORDER BY u.priority, u.created_at, u.id
  LIMIT 1)
RETURNING *;

-- name: RenewLease :execrows
UPDATE durably_runs
SET lease_expires_at = CAST(sqlc.arg(lease_expires_at) AS TEXT), updated_at = CAST(sqlc.arg(now) AS TEXT)
WHERE id = sqlc.arg(id) AND status = 'leased' AND lease_generation = sqlc.arg(generation)
  AND lease_expires_at > CAST(sqlc.arg(now) AS TEXT);

-- name: ReleaseLease :execrows
-- A stopping worker hands a run back so another can take it at once. Fenced;
-- fails on the pending unique index when a same-key pending run exists, and
-- the store then hands it back with ExpireLease instead (D12). run_at is
-- cleared: the run is claimable at once and counts for its key again.
UPDATE durably_runs
SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL, run_at = NULL, ready = 1,
    updated_at = CAST(sqlc.arg(now) AS TEXT)
WHERE id = sqlc.arg(id) AND status = 'leased' AND lease_generation = sqlc.arg(generation);

-- name: DeferRun :execrows
-- A lease holder hands its run back to wait until run_at (a retry's next
-- attempt, a durable sleep, a wait for children or a signal), fenced by
-- generation only like the finish (R-065). started_at stays; with run_at
-- set, the run holds no concurrency key while it waits
-- (idx_durably_runs_pending_scope_concurrency), so this is never refused
-- for a pending sibling.
-- A wait for an event (waiting_for set) is ready at once when what it
-- waits for came since the engine looked (S-060): for children, when the
-- ends counted since seen_wakes (wakes - seen_wakes) leave none of the
-- awaited ones; for a signal, when any event came since. The right-hand
-- sides read the row as it was before this update.
UPDATE durably_runs
SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL,
    waiting_for = sqlc.narg(waiting_for),
    awaiting = CASE WHEN sqlc.narg(waiting_for) = 'children'
      THEN CAST(sqlc.arg(awaiting) AS INTEGER) - (wakes - CAST(sqlc.arg(seen_wakes) AS INTEGER)) ELSE 0 END,
    ready = CASE
      WHEN CAST(sqlc.arg(run_at) AS TEXT) <= CAST(sqlc.arg(now) AS TEXT) THEN 1
      WHEN sqlc.narg(waiting_for) = 'children' AND CAST(sqlc.arg(awaiting) AS INTEGER) - (wakes - CAST(sqlc.arg(seen_wakes) AS INTEGER)) <= 0 THEN 1
      WHEN sqlc.narg(waiting_for) LIKE 'signal:%' AND wakes <> CAST(sqlc.arg(seen_wakes) AS INTEGER) THEN 1
      ELSE 0 END,
    run_at = CASE
      WHEN sqlc.narg(waiting_for) = 'children' AND CAST(sqlc.arg(awaiting) AS INTEGER) - (wakes - CAST(sqlc.arg(seen_wakes) AS INTEGER)) <= 0
        AND CAST(sqlc.arg(now) AS TEXT) < CAST(sqlc.arg(run_at) AS TEXT) THEN CAST(sqlc.arg(now) AS TEXT)
      WHEN sqlc.narg(waiting_for) LIKE 'signal:%' AND wakes <> CAST(sqlc.arg(seen_wakes) AS INTEGER)
        AND CAST(sqlc.arg(now) AS TEXT) < CAST(sqlc.arg(run_at) AS TEXT) THEN CAST(sqlc.arg(now) AS TEXT)
      ELSE CAST(sqlc.arg(run_at) AS TEXT) END,
    attempt = CAST(sqlc.arg(attempt) AS INTEGER),
    attempts = COALESCE(sqlc.narg(attempts), attempts),
    current_step_index = CAST(sqlc.arg(current_step_index) AS INTEGER),
    completed_step_count = CAST(sqlc.arg(completed_step_count) AS INTEGER),
    updated_at = CAST(sqlc.arg(now) AS TEXT)
WHERE id = sqlc.arg(id) AND status = 'leased' AND lease_generation = sqlc.arg(generation);

-- name: ExpireLease :execrows
-- The hand-back of a run that may not become pending (its key has a pending
-- sibling, D12): the lease ends now, so the next claim takes the run over
-- as an expired lease. The generation moves on, so that the holder's writes
-- are refused from here on, as they would be for a pending run. The owner
-- is cleared: a hand-back is not a crash, and the claim counts none.
UPDATE durably_runs
SET lease_expires_at = CAST(sqlc.arg(now) AS TEXT), lease_generation = lease_generation + 1, lease_owner = NULL,
    updated_at = CAST(sqlc.arg(now) AS TEXT)
WHERE id = sqlc.arg(id) AND status = 'leased' AND lease_generation = sqlc.arg(generation);

-- name: WakeParent :execrows
-- The end of a child (its finish or its cancel) counts for its parent, in
-- the child's transaction (S-061): an event more (wakes), one awaited
-- child less (awaiting) while the parent waits for its children, and the
-- parent is ready at once when that was the last. The right-hand sides
-- read the row as it was before this update.
UPDATE durably_runs
SET wakes = wakes + 1,
    awaiting = CASE WHEN waiting_for = 'children' THEN awaiting - 1 ELSE awaiting END,
    ready = CASE WHEN status = 'pending' AND waiting_for = 'children' AND awaiting - 1 <= 0 THEN 1 ELSE ready END,
    run_at = CASE WHEN status = 'pending' AND waiting_for = 'children' AND awaiting - 1 <= 0 AND ready = 0
      THEN CAST(sqlc.arg(now) AS TEXT) ELSE run_at END
WHERE id = sqlc.arg(id);

-- name: SignalRun :execrows
-- A signal sent to an active run: an event more (wakes), and a run that
-- waits for a signal of this name is ready at once (S-062). No row: the
-- run is missing or ended, and the signal is not kept.
UPDATE durably_runs
SET wakes = wakes + 1,
    ready = CASE WHEN status = 'pending' AND waiting_for = 'signal:' || CAST(sqlc.arg(name) AS TEXT) THEN 1 ELSE ready END,
    run_at = CASE WHEN status = 'pending' AND waiting_for = 'signal:' || CAST(sqlc.arg(name) AS TEXT) AND ready = 0
      THEN CAST(sqlc.arg(now) AS TEXT) ELSE run_at END
WHERE id = sqlc.arg(id) AND status IN ('pending', 'leased');

-- name: InsertSignal :exec
INSERT INTO durably_signals (id, run_id, name, payload, created_at)
VALUES (sqlc.arg(id), sqlc.arg(run_id), sqlc.arg(name), sqlc.arg(payload), CAST(sqlc.arg(created_at) AS TEXT));

-- name: LeasedWakes :one
-- The fence of ReceiveSignal: the run's wakes while the lease is held.
SELECT wakes FROM durably_runs
WHERE id = sqlc.arg(id) AND status = 'leased' AND lease_generation = sqlc.arg(generation);

-- name: TakeSignal :one
-- The oldest signal of a name kept for a run, removed as it is delivered.
DELETE FROM durably_signals
WHERE id = (SELECT s.id FROM durably_signals s INDEXED BY idx_durably_signals_run_name
  WHERE s.run_id = sqlc.arg(run_id) AND s.name = sqlc.arg(name) ORDER BY s.id LIMIT 1)
RETURNING *;

-- name: GetSignals :many
-- The signals kept for an active run: those of an ended run are never
-- delivered (R-243).
SELECT s.* FROM durably_signals s
JOIN durably_runs r ON r.id = s.run_id
WHERE s.run_id = sqlc.arg(run_id) AND r.status IN ('pending', 'leased')
ORDER BY s.id;

-- name: DeleteSignalsOfRun :exec
DELETE FROM durably_signals WHERE run_id = sqlc.arg(run_id);

-- name: DeleteSignalsByRunID :exec
DELETE FROM durably_signals WHERE run_id IN (sqlc.slice(ids));

-- name: GetChildren :many
-- A run's children, oldest first, through idx_durably_runs_parent.
SELECT * FROM durably_runs INDEXED BY idx_durably_runs_parent
WHERE parent_run_id = sqlc.arg(parent_run_id)
ORDER BY created_at, id;

-- name: ActiveDescendants :many
-- The active descendants of a run, with their depth (1: its children),
-- deepest first: the cascade of its cancel (R-234). The walk goes through
-- idx_durably_runs_parent, ended runs included, since an ended child may
-- have active children of its own.
WITH RECURSIVE tree(id, depth) AS (
  SELECT c.id, 1 FROM durably_runs c WHERE c.parent_run_id = sqlc.arg(id)
  UNION ALL
  SELECT c.id, tree.depth + 1 FROM durably_runs c JOIN tree ON c.parent_run_id = tree.id
)
SELECT r.id, r.status, CAST(tree.depth AS INTEGER) AS depth FROM tree JOIN durably_runs r ON r.id = tree.id
WHERE r.status IN ('pending', 'leased')
ORDER BY tree.depth DESC, r.id;

-- name: SetProgress :execrows
UPDATE durably_runs
SET progress = sqlc.narg(progress), updated_at = CAST(sqlc.arg(now) AS TEXT)
WHERE id = sqlc.arg(id) AND status = 'leased' AND lease_generation = sqlc.arg(generation);

-- name: CompleteRun :execrows
UPDATE durably_runs
SET status = 'completed', output = sqlc.narg(output), error = NULL,
    current_step_index = CAST(sqlc.arg(current_step_index) AS INTEGER),
    completed_step_count = CAST(sqlc.arg(completed_step_count) AS INTEGER),
    lease_owner = NULL, lease_expires_at = NULL,
    completed_at = CAST(sqlc.arg(now) AS TEXT), updated_at = CAST(sqlc.arg(now) AS TEXT)
WHERE id = sqlc.arg(id) AND status = 'leased' AND lease_generation = sqlc.arg(generation);

-- name: FailRun :execrows
UPDATE durably_runs
SET status = 'failed', error = CAST(sqlc.arg(error) AS TEXT), attempts = COALESCE(sqlc.narg(attempts), attempts),
    current_step_index = CAST(sqlc.arg(current_step_index) AS INTEGER),
    completed_step_count = CAST(sqlc.arg(completed_step_count) AS INTEGER),
    lease_owner = NULL, lease_expires_at = NULL,
    completed_at = CAST(sqlc.arg(now) AS TEXT), updated_at = CAST(sqlc.arg(now) AS TEXT)
WHERE id = sqlc.arg(id) AND status = 'leased' AND lease_generation = sqlc.arg(generation);

-- name: GetRunForUpdate :one
SELECT * FROM durably_runs WHERE id = sqlc.arg(id);

-- name: CancelRun :one
UPDATE durably_runs
SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL,
    completed_at = CAST(sqlc.arg(now) AS TEXT), updated_at = CAST(sqlc.arg(now) AS TEXT)
WHERE id = sqlc.arg(id) AND status IN ('pending', 'leased')
RETURNING *;

-- name: ResumeRun :one
-- A failed or cancelled run becomes pending again, claimable at once,
-- keeping its steps, labels, keys, counters of steps, generation and
-- history (store.Resumer, S-072). Its retries and crashes restart at 0,
-- and started_at is cleared so that the claim sets it anew and the job's
-- timeout counts from the resumed start. Refused by the pending unique
-- index when the job has a pending run of the run's scope and concurrency
-- key (R-036); the store reports a conflict.
UPDATE durably_runs
SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL, run_at = NULL, ready = 1,
    started_at = NULL, completed_at = NULL, error = NULL, output = NULL, attempt = 0, crashes = 0,
    updated_at = CAST(sqlc.arg(now) AS TEXT)
WHERE id = sqlc.arg(id) AND status IN ('failed', 'cancelled')
RETURNING *;

-- name: CommittedRunIDs :many
-- Which of the runs a transactional trigger created are visible, that is
-- whose transaction committed (store.TxEnqueuer, S-071): by primary key.
SELECT id FROM durably_runs WHERE id IN (sqlc.slice(ids));

-- name: DeleteTerminalRun :one
DELETE FROM durably_runs
WHERE id = sqlc.arg(id) AND status IN ('completed', 'failed', 'cancelled')
RETURNING *;

-- name: SelectPurgeable :many
SELECT id FROM durably_runs
WHERE status IN ('completed', 'failed', 'cancelled') AND completed_at < CAST(sqlc.arg(older_than) AS TEXT)
ORDER BY completed_at
LIMIT CAST(sqlc.arg(lim) AS INTEGER);

-- name: DeleteRunsByID :exec
DELETE FROM durably_runs WHERE id IN (sqlc.slice(ids));

-- name: DeleteLabelsByRunID :exec
DELETE FROM durably_run_labels WHERE run_id IN (sqlc.slice(ids));

-- name: DeleteStepsByRunID :exec
DELETE FROM durably_steps WHERE run_id IN (sqlc.slice(ids));

-- name: DeleteLogsByRunID :exec
DELETE FROM durably_logs WHERE run_id IN (sqlc.slice(ids));

-- name: ListExpiredLeases :many
-- Expired leases that may go back to pending (S-039). Those whose key has a
-- pending sibling stay leased and expired, claimable as they are, instead
-- of being failed as S-038 has it (D12).
SELECT id FROM durably_runs x
WHERE x.status = 'leased' AND x.lease_expires_at IS NOT NULL AND x.lease_expires_at <= CAST(sqlc.arg(now) AS TEXT)
  AND (x.concurrency_key IS NULL OR NOT EXISTS (
    SELECT 1 FROM durably_runs o
    WHERE o.job_name = x.job_name AND o.key_scope = x.key_scope AND o.concurrency_key = x.concurrency_key
      AND o.status = 'pending'));

-- name: ResetExpiredLease :execrows
-- An expired lease with an owner is a crash, counted as the claim counts it.
UPDATE durably_runs
SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL, run_at = NULL, ready = 1,
    updated_at = CAST(sqlc.arg(now) AS TEXT),
    crashes = crashes + (lease_owner IS NOT NULL),
    attempts = CASE WHEN lease_owner IS NOT NULL
      THEN json_insert(CASE WHEN json_array_length(COALESCE(attempts, '[]')) >= 20 THEN json_remove(attempts, '$[0]') ELSE COALESCE(attempts, '[]') END, '$[#]', json_object(
        'attempt', attempt + crashes + 1, 'outcome', 'crashed', 'worker', lease_owner,
        'error', 'the execution by worker ' || lease_owner || ' ended without an outcome: its lease expired at ' || lease_expires_at,
        'at', lease_expires_at))
      ELSE attempts END
WHERE id = sqlc.arg(id) AND status = 'leased' AND lease_expires_at <= CAST(sqlc.arg(now) AS TEXT);

-- name: GetRun :one
SELECT * FROM durably_runs WHERE id = sqlc.arg(id);

-- name: CountPending :many
-- Pending runs per job, due at now or later (store.PendingCounter, for
-- metrics): idx_durably_runs_status_created yields the pending runs only,
-- not the finished history.
SELECT job_name,
  CAST(SUM(CASE WHEN run_at IS NULL OR run_at <= CAST(sqlc.arg(now) AS TEXT) THEN 1 ELSE 0 END) AS INTEGER) AS due,
  CAST(count(*) AS INTEGER) AS pending
FROM durably_runs
WHERE status = 'pending'
GROUP BY job_name
ORDER BY job_name;

-- name: ListRuns :many
-- Newest first (R-135) with optional status, job and label filters. Lists
-- travel as JSON arrays (one prepared statement for any length); labels as
-- "key\x00value" pairs, and a run matches when it has all of them. The
-- window is always bounded, so the walk of idx_durably_runs_created starts
-- at its upper end: created_from ('' for none) and the pair (upper_at,
-- upper_id), which the store sets to the end of a time range or to a page's
-- cursor (keyset pagination), '~' when there is neither ('~' sorts after
-- every stored time).
SELECT * FROM durably_runs r
WHERE (CAST(sqlc.arg(filter_status) AS INTEGER) = 0 OR r.status IN (SELECT value FROM json_each(CAST(sqlc.arg(statuses) AS TEXT))))
  AND (CAST(sqlc.arg(filter_job) AS INTEGER) = 0 OR r.job_name IN (SELECT value FROM json_each(CAST(sqlc.arg(job_names) AS TEXT))))
  AND (CAST(sqlc.arg(label_count) AS INTEGER) = 0 OR CAST(sqlc.arg(label_count) AS INTEGER) = (
    SELECT count(*) FROM durably_run_labels l
    WHERE l.run_id = r.id AND l.key || char(0) || l.value IN (SELECT value FROM json_each(CAST(sqlc.arg(label_pairs) AS TEXT)))))
  AND r.created_at >= CAST(sqlc.arg(created_from) AS TEXT)
  AND (r.created_at, r.id) < (CAST(sqlc.arg(upper_at) AS TEXT), CAST(sqlc.arg(upper_id) AS TEXT))
ORDER BY r.created_at DESC, r.id DESC
LIMIT CAST(sqlc.arg(lim) AS INTEGER) OFFSET CAST(sqlc.arg(off) AS INTEGER);

-- name: ListRunsByLabel :many
-- The same filter driven by one label: idx_durably_run_labels_key_value yields
-- that label's runs newest first, so a page costs its own rows, not the
-- tenant's whole history; the window (as in ListRuns) bounds that walk on
-- the index's created_at and run_id, the run's own.
SELECT r.* FROM durably_run_labels d
JOIN durably_runs r ON r.id = d.run_id
WHERE d.key = CAST(sqlc.arg(key) AS TEXT) AND d.value = CAST(sqlc.arg(value) AS TEXT)
  AND d.created_at >= CAST(sqlc.arg(created_from) AS TEXT)
  AND (d.created_at, d.run_id) < (CAST(sqlc.arg(upper_at) AS TEXT), CAST(sqlc.arg(upper_id) AS TEXT))
  AND (CAST(sqlc.arg(filter_status) AS INTEGER) = 0 OR r.status IN (SELECT value FROM json_each(CAST(sqlc.arg(statuses) AS TEXT))))
  AND (CAST(sqlc.arg(filter_job) AS INTEGER) = 0 OR r.job_name IN (SELECT value FROM json_each(CAST(sqlc.arg(job_names) AS TEXT))))
  AND (CAST(sqlc.arg(label_count) AS INTEGER) = 0 OR CAST(sqlc.arg(label_count) AS INTEGER) = (
    SELECT count(*) FROM durably_run_labels l
    WHERE l.run_id = r.id AND l.key || char(0) || l.value IN (SELECT value FROM json_each(CAST(sqlc.arg(label_pairs) AS TEXT)))))
ORDER BY d.created_at DESC, d.run_id DESC
LIMIT CAST(sqlc.arg(lim) AS INTEGER) OFFSET CAST(sqlc.arg(off) AS INTEGER);

-- name: CountRuns :one
-- Runs per status under ListRuns' filter without its status filter and
-- cursor, for a list's status counts: one row, one count per status, so
-- that nothing is grouped or sorted.
SELECT
  CAST(COALESCE(sum(r.status = 'pending'), 0) AS INTEGER) AS pending,
  CAST(COALESCE(sum(r.status = 'leased'), 0) AS INTEGER) AS leased,
  CAST(COALESCE(sum(r.status = 'completed'), 0) AS INTEGER) AS completed,
  CAST(COALESCE(sum(r.status = 'failed'), 0) AS INTEGER) AS failed,
  CAST(COALESCE(sum(r.status = 'cancelled'), 0) AS INTEGER) AS cancelled
FROM durably_runs r
WHERE (CAST(sqlc.arg(filter_job) AS INTEGER) = 0 OR r.job_name IN (SELECT value FROM json_each(CAST(sqlc.arg(job_names) AS TEXT))))
  AND r.created_at >= CAST(sqlc.arg(created_from) AS TEXT)
  AND r.created_at < CAST(sqlc.arg(created_to) AS TEXT);

-- name: CountRunsByLabel :one
-- CountRuns driven by one label's index, as ListRunsByLabel.
SELECT
  CAST(COALESCE(sum(r.status = 'pending'), 0) AS INTEGER) AS pending,
  CAST(COALESCE(sum(r.status = 'leased'), 0) AS INTEGER) AS leased,
  CAST(COALESCE(sum(r.status = 'completed'), 0) AS INTEGER) AS completed,
  CAST(COALESCE(sum(r.status = 'failed'), 0) AS INTEGER) AS failed,
  CAST(COALESCE(sum(r.status = 'cancelled'), 0) AS INTEGER) AS cancelled
FROM durably_run_labels d
JOIN durably_runs r ON r.id = d.run_id
WHERE d.key = CAST(sqlc.arg(key) AS TEXT) AND d.value = CAST(sqlc.arg(value) AS TEXT)
  AND d.created_at >= CAST(sqlc.arg(created_from) AS TEXT)
  AND d.created_at < CAST(sqlc.arg(created_to) AS TEXT)
  AND (CAST(sqlc.arg(filter_job) AS INTEGER) = 0 OR r.job_name IN (SELECT value FROM json_each(CAST(sqlc.arg(job_names) AS TEXT))))
  AND (CAST(sqlc.arg(label_count) AS INTEGER) = 0 OR CAST(sqlc.arg(label_count) AS INTEGER) = (
    SELECT count(*) FROM durably_run_labels l
    WHERE l.run_id = r.id AND l.key || char(0) || l.value IN (SELECT value FROM json_each(CAST(sqlc.arg(label_pairs) AS TEXT)))));

-- name: UpdateRunForTest :exec
-- The unfenced test hook of S-047: each field is written only when its set_ flag is true.
UPDATE durably_runs SET
  status = CASE WHEN CAST(sqlc.arg(set_status) AS BOOLEAN) THEN CAST(sqlc.arg(status) AS TEXT) ELSE status END,
  current_step_index = CASE WHEN CAST(sqlc.arg(set_current_step_index) AS BOOLEAN) THEN CAST(sqlc.arg(current_step_index) AS INTEGER) ELSE current_step_index END,
  lease_owner = CASE WHEN CAST(sqlc.arg(set_lease_owner) AS BOOLEAN) THEN sqlc.narg(lease_owner) ELSE lease_owner END,
  lease_expires_at = CASE WHEN CAST(sqlc.arg(set_lease_expires_at) AS BOOLEAN) THEN sqlc.narg(lease_expires_at) ELSE lease_expires_at END,
  started_at = CASE WHEN CAST(sqlc.arg(set_started_at) AS BOOLEAN) THEN sqlc.narg(started_at) ELSE started_at END,
  completed_at = CASE WHEN CAST(sqlc.arg(set_completed_at) AS BOOLEAN) THEN sqlc.narg(completed_at) ELSE completed_at END,
  created_at = CASE WHEN CAST(sqlc.arg(set_created_at) AS BOOLEAN) THEN CAST(sqlc.arg(created_at) AS TEXT) ELSE created_at END,
  updated_at = CAST(sqlc.arg(now) AS TEXT)
WHERE id = sqlc.arg(id);
