-- name: InsertRuns :many
-- Inserts what it can; a row that hits the idempotency or pending
-- concurrency-key index is skipped, and the store then looks up why (S-025).
-- Label rows are written for the inserted runs only, and when anything was
-- inserted, idle workers of other processes are notified at commit (D4).
-- Like every array statement here, it takes many callers' rows at once;
-- optional text values travel as '' inside arrays and are stored as NULL;
-- optional times travel as NULL elements.
-- A run started by its own worker at once is inserted leased (store.Claim)
-- and wakes nobody, and so does a run that waits for its run_at (ready = 0):
-- a claim now would not take it. Keys are unique within their key_scope (D11).
WITH ins AS (
  INSERT INTO durably_runs (
    id, job_name, input, status, idempotency_key, concurrency_key, key_scope, labels,
    current_step_index, completed_step_count, lease_owner, lease_expires_at, lease_generation,
    started_at, created_at, updated_at, run_at, ready, priority, trace_context, parent_run_id)
  SELECT u.id, u.job_name, u.input, u.status, NULLIF(u.idempotency_key, ''), NULLIF(u.concurrency_key, ''),
         u.key_scope, u.labels::jsonb, 0, 0, NULLIF(u.lease_owner, ''), u.lease_expires_at, u.lease_generation,
         u.started_at, u.created_at, u.created_at, u.run_at, u.ready, u.priority, NULLIF(u.trace_context, ''),
         NULLIF(u.parent_run_id, '')
  FROM (SELECT unnest(@ids::text[]) AS id,
          unnest(@statuses::text[]) AS status,
          unnest(@lease_owners::text[]) AS lease_owner,
          unnest(@lease_expires_ats::timestamptz[]) AS lease_expires_at,
          unnest(@lease_generations::bigint[]) AS lease_generation,
          unnest(@started_ats::timestamptz[]) AS started_at,
          unnest(@job_names::text[]) AS job_name,
          unnest(@inputs::text[]) AS input,
          unnest(@idempotency_keys::text[]) AS idempotency_key,
          unnest(@concurrency_keys::text[]) AS concurrency_key,
          unnest(@key_scopes::text[]) AS key_scope,
          unnest(@labels::text[]) AS labels,
          unnest(@created_ats::timestamptz[]) AS created_at,
          unnest(@run_ats::timestamptz[]) AS run_at,
          unnest(@readies::bigint[]) AS ready,
          unnest(@priorities::bigint[]) AS priority,
          unnest(@trace_contexts::text[]) AS trace_context,
          unnest(@parent_run_ids::text[]) AS parent_run_id) AS u
  ON CONFLICT DO NOTHING
  RETURNING id, status, created_at, ready
), lab AS (
  INSERT INTO durably_run_labels (run_id, key, value, created_at)
  SELECT ins.id, l.key, l.value, ins.created_at
  FROM ins
  JOIN (SELECT unnest(@label_run_ids::text[]) AS run_id,
          unnest(@label_keys::text[]) AS key,
          unnest(@label_values::text[]) AS value) AS l
    ON l.run_id = ins.id
), wake AS (
  SELECT pg_notify(@channel::text, @payload::text) FROM (SELECT 1 FROM ins WHERE status = 'pending' AND ready = 1 LIMIT 1) AS any_pending
)
-- The scalar subquery makes wake run: a CTE that is not referenced is not.
SELECT ins.id, (SELECT count(*) FROM wake) AS notified FROM ins;

-- name: InsertRun :many
-- InsertRuns for a group of one trigger, the usual case of a caller that
-- awaits each trigger: the same insert, labels and wake-up without the
-- run's arrays.
WITH ins AS (
  INSERT INTO durably_runs (
    id, job_name, input, status, idempotency_key, concurrency_key, key_scope, labels,
    current_step_index, completed_step_count, lease_owner, lease_expires_at, lease_generation,
    started_at, created_at, updated_at, run_at, ready, priority, trace_context, parent_run_id)
  VALUES (@id::text, @job_name::text, @input::text, @status::text, NULLIF(@idempotency_key::text, ''), NULLIF(@concurrency_key::text, ''),
    @key_scope::text, CAST(@labels::text AS jsonb), 0, 0, NULLIF(@lease_owner::text, ''), @lease_expires_at::timestamptz, @lease_generation::bigint,
    @started_at::timestamptz, @created_at::timestamptz, @created_at::timestamptz, @run_at::timestamptz, @ready::bigint, @priority::bigint, NULLIF(@trace_context::text, ''),
    NULLIF(@parent_run_id::text, ''))
  ON CONFLICT DO NOTHING
  RETURNING id, status, created_at, ready
), lab AS (
  INSERT INTO durably_run_labels (run_id, key, value, created_at)
  SELECT ins.id, l.key, l.value, ins.created_at
  FROM ins, (SELECT unnest(@label_keys::text[]) AS key, unnest(@label_values::text[]) AS value) AS l
), wake AS (
  SELECT pg_notify(@channel::text, @payload::text) FROM (SELECT 1 FROM ins WHERE status = 'pending' AND ready = 1 LIMIT 1) AS any_pending
)
SELECT ins.id, (SELECT count(*) FROM wake) AS notified FROM ins;

-- name: Notify :exec
SELECT pg_notify(@channel::text, @payload::text);

-- name: GetRunByIdempotencyKey :one
SELECT * FROM durably_runs
WHERE job_name = @job_name AND key_scope = @key_scope::text AND idempotency_key = @idempotency_key;

-- name: GetPendingRunByConcurrencyKey :one
SELECT * FROM durably_runs
WHERE job_name = @job_name AND key_scope = @key_scope::text AND concurrency_key = @concurrency_key
  AND status = 'pending' AND (started_at IS NULL OR run_at IS NULL)
ORDER BY created_at, id
LIMIT 1;

-- name: ClaimReady :many
-- The claim's candidates (S-031) and, with @lease_free, the lease of those
-- that need no lock: one statement, one round trip.
--
-- The candidates: the first claimable runs by priority (smaller first), then
-- age, row-locked, skipping rows another claimer holds.
-- promoted: waiting runs that are due become ready (ready = 1), read from
-- idx_durably_runs_waiting, which holds waiting runs only, by run_at: the
-- walk stops at the first run not due, so a run due later is never read.
-- At most @promote_lim per claim, earliest due first; they are candidates
-- of this claim (the other CTEs' snapshot predates the promotion) and,
-- unclaimed, ready for the next. "= ANY(ARRAY(…))" makes the update look
-- the chosen rows up by primary key (IN (…) plans a scan of the table).
-- caps: for each job with a limit (@limit_jobs, @limit_counts), the runs it
-- may still lease now; a job at its limit contributes no candidate, so its
-- backlog never crowds other jobs out of a claim, and no job has more
-- candidates than its room (rn). The claim re-counts under an advisory lock.
-- tcaps: the per-tenant limits (@tenant_jobs, @tenant_counts), counted per
-- job and key scope: a tenant at its job's limit contributes no candidate,
-- so its backlog, however urgent, never crowds another tenant's runs out
-- of a claim (issue 19), and no tenant has more candidates than its room
-- (trn). The claim re-counts those under advisory locks too. The test of a
-- tenant's room sits in a CASE for the reason caps' does.
-- The full jobs are one array (an InitPlan, computed once), tested inside a
-- CASE that hides it from the planner: as an anti join or "<> ALL", with
-- one job name in the table's statistics, the planner expects no pending
-- run to pass and sorts them all instead of walking idx_durably_runs_ready
-- in order (TestClaimSkipsLiveLeasesByIndex).
-- pending and expired: ready runs and expired leases from two partial
-- indexes, each in a useful order, so that live leases, waiting runs and
-- finished history are never scanned. A row locked here but not chosen
-- stays locked only until the statement's transaction ends. The guard is
-- per (key scope, concurrency key) (D11); an expired lease with a pending
-- sibling is a candidate like any other (D12).
--
-- With @lease_free, the candidates without a concurrency key, of a job
-- without a limit, and not promoted by this statement are leased at once as
-- ClaimRuns leases (R-050). The others, and all of them without
-- @lease_free, are "held": returned, not leased, for the full claim
-- (advisory locks, re-checks, ClaimRuns in one transaction). A promoted run
-- is held because this statement already updated its row (ready = 1), and
-- a row updated twice in one statement keeps only one of the updates.
-- One row per candidate, in claim order; the run columns are the leased
-- run's, NULL for a held candidate.
WITH promoted AS (
  UPDATE durably_runs w SET ready = 1
  WHERE w.id = ANY(ARRAY(
    SELECT d.id FROM durably_runs d
    WHERE d.status = 'pending' AND d.ready = 0 AND d.run_at <= @now::timestamptz
    ORDER BY d.run_at
    LIMIT @promote_lim
    FOR UPDATE SKIP LOCKED))
  RETURNING w.id, w.job_name, w.concurrency_key, w.key_scope, w.priority, w.created_at
), caps AS (
  SELECT l.job, l.n - (
    SELECT count(*) FROM durably_runs a
    WHERE a.status = 'leased' AND a.job_name = l.job AND a.lease_expires_at > @now::timestamptz) AS room
  FROM (SELECT unnest(@limit_jobs::text[]) AS job, unnest(@limit_counts::bigint[]) AS n) AS l
), tcaps AS (
  SELECT unnest(@tenant_jobs::text[]) AS job, unnest(@tenant_counts::bigint[]) AS n
), pending AS (
  SELECT p.id, p.job_name, p.concurrency_key, p.key_scope, p.priority, p.created_at, false AS promoted FROM durably_runs p
  WHERE p.status = 'pending' AND p.ready = 1
    AND (p.concurrency_key IS NULL OR NOT EXISTS (
      SELECT 1 FROM durably_runs a
      WHERE a.status = 'leased' AND a.concurrency_key = p.concurrency_key AND a.key_scope = p.key_scope
        AND a.lease_expires_at IS NOT NULL AND a.lease_expires_at > @now::timestamptz))
    AND CASE WHEN p.job_name = ANY(ARRAY(SELECT caps.job FROM caps WHERE caps.room <= 0)) THEN false ELSE true END
    AND CASE WHEN p.job_name = ANY(@tenant_jobs::text[]) THEN (SELECT tcaps.n FROM tcaps WHERE tcaps.job = p.job_name) > (
      SELECT count(*) FROM durably_runs a
      WHERE a.status = 'leased' AND a.job_name = p.job_name AND a.key_scope = p.key_scope AND a.lease_expires_at > @now::timestamptz)
      ELSE true END
  ORDER BY p.priority, p.created_at, p.id
  LIMIT @lim
  FOR UPDATE SKIP LOCKED
), expired AS (
  SELECT x.id, x.job_name, x.concurrency_key, x.key_scope, x.priority, x.created_at, false AS promoted FROM durably_runs x
  WHERE x.status = 'leased' AND x.lease_expires_at <= @now::timestamptz
    AND (x.concurrency_key IS NULL OR NOT EXISTS (
      SELECT 1 FROM durably_runs a
      WHERE a.status = 'leased' AND a.concurrency_key = x.concurrency_key AND a.key_scope = x.key_scope
        AND a.id <> x.id
        AND a.lease_expires_at IS NOT NULL AND a.lease_expires_at > @now::timestamptz))
    AND CASE WHEN x.job_name = ANY(ARRAY(SELECT caps.job FROM caps WHERE caps.room <= 0)) THEN false ELSE true END
    AND CASE WHEN x.job_name = ANY(@tenant_jobs::text[]) THEN (SELECT tcaps.n FROM tcaps WHERE tcaps.job = x.job_name) > (
      SELECT count(*) FROM durably_runs a
      WHERE a.status = 'leased' AND a.job_name = x.job_name AND a.key_scope = x.key_scope AND a.lease_expires_at > @now::timestamptz)
      ELSE true END
  ORDER BY x.priority, x.created_at, x.id
  LIMIT @lim
  FOR UPDATE SKIP LOCKED
), due AS (
  SELECT pr.id, pr.job_name, pr.concurrency_key, pr.key_scope, pr.priority, pr.created_at, true AS promoted FROM promoted pr
  WHERE (pr.concurrency_key IS NULL OR NOT EXISTS (
      SELECT 1 FROM durably_runs a
      WHERE a.status = 'leased' AND a.concurrency_key = pr.concurrency_key AND a.key_scope = pr.key_scope
        AND a.lease_expires_at IS NOT NULL AND a.lease_expires_at > @now::timestamptz))
    AND CASE WHEN pr.job_name = ANY(ARRAY(SELECT caps.job FROM caps WHERE caps.room <= 0)) THEN false ELSE true END
    AND CASE WHEN pr.job_name = ANY(@tenant_jobs::text[]) THEN (SELECT tcaps.n FROM tcaps WHERE tcaps.job = pr.job_name) > (
      SELECT count(*) FROM durably_runs a
      WHERE a.status = 'leased' AND a.job_name = pr.job_name AND a.key_scope = pr.key_scope AND a.lease_expires_at > @now::timestamptz)
      ELSE true END
), ranked AS (
  SELECT c.*, row_number() OVER (PARTITION BY c.job_name ORDER BY c.priority, c.created_at, c.id) AS rn,
    row_number() OVER (PARTITION BY c.job_name, c.key_scope ORDER BY c.priority, c.created_at, c.id) AS trn
  FROM (SELECT * FROM pending UNION ALL SELECT * FROM expired UNION ALL SELECT * FROM due) AS c
), chosen AS (
  SELECT r.id, r.job_name, r.concurrency_key, r.key_scope, r.priority, r.created_at,
    (NOT @lease_free::boolean OR r.promoted OR r.concurrency_key IS NOT NULL OR r.job_name = ANY(@limit_jobs::text[])
      OR r.job_name = ANY(@tenant_jobs::text[])) AS held
  FROM ranked r
  WHERE r.rn <= COALESCE((SELECT caps.room FROM caps WHERE caps.job = r.job_name), r.rn)
    AND r.trn <= COALESCE((SELECT tcaps.n - (
      SELECT count(*) FROM durably_runs a
      WHERE a.status = 'leased' AND a.job_name = r.job_name AND a.key_scope = r.key_scope AND a.lease_expires_at > @now::timestamptz)
      FROM tcaps WHERE tcaps.job = r.job_name), r.trn)
  ORDER BY r.priority, r.created_at, r.id
  LIMIT @lim
), leased AS (
  UPDATE durably_runs u
  SET status = 'leased',
      lease_owner = @worker_id::text,
      lease_expires_at = @lease_expires_at::timestamptz,
      lease_generation = u.lease_generation + 1,
      started_at = COALESCE(u.started_at, @now::timestamptz),
      -- An expired lease with an owner is an execution that ended
      -- without an outcome (a hand-back clears the owner): a crash,
      -- counted and recorded in the attempt history (issue 19). The
      -- right-hand sides read the row as it was before this update.
      crashes = u.crashes + CASE WHEN u.status = 'leased' AND u.lease_owner IS NOT NULL THEN 1 ELSE 0 END,
      attempts = CASE WHEN u.status = 'leased' AND u.lease_owner IS NOT NULL
        THEN ((CASE WHEN jsonb_array_length(COALESCE(u.attempts, '[]')::jsonb) >= 20 THEN COALESCE(u.attempts, '[]')::jsonb - 0 ELSE COALESCE(u.attempts, '[]')::jsonb END) || jsonb_build_array(jsonb_build_object(
          'attempt', u.attempt + u.crashes + 1, 'outcome', 'crashed', 'worker', u.lease_owner,
          'error', 'the execution by worker ' || u.lease_owner || ' ended without an outcome: its lease expired at ' || (to_jsonb(u.lease_expires_at) #>> '{}'),
          'at', u.lease_expires_at)))::text
        ELSE u.attempts END,
      updated_at = @now::timestamptz
  WHERE u.id = ANY(ARRAY(SELECT chosen.id FROM chosen WHERE NOT chosen.held))
  RETURNING u.*
)
SELECT c.held, c.id AS candidate_id, c.job_name AS candidate_job, c.concurrency_key AS candidate_key, c.key_scope AS candidate_scope, leased.*
FROM chosen c LEFT JOIN leased ON leased.id = c.id
ORDER BY c.priority, c.created_at, c.id;

-- name: LockJobs :exec
-- Step 2 for jobs with a limit: claimers of the same job queue here until
-- the holder commits, jobs sorted so that no two claimers wait in a cycle
-- (every claimer takes its concurrency-key locks first). The two-key form
-- keeps these locks apart from the concurrency keys' one-key locks.
-- The locks are taken in the order of their keys (the hashes), not of the
-- names: two names whose hashes collide are one lock, and an order by name
-- would take it at two places (a volatile function in the select list is
-- evaluated after ORDER BY).
SELECT pg_advisory_xact_lock(1685222009, h.h)
FROM (SELECT DISTINCT hashtext(u.job) AS h FROM (SELECT unnest(@jobs::text[]) AS job) AS u) AS h
ORDER BY h.h;

-- name: LiveLeasesOfJobs :many
-- Step 2, re-count with a fresh snapshot: each job's unexpired leases,
-- other than the candidates' own.
SELECT u.job::text AS job_name, (
  SELECT count(*) FROM durably_runs a
  WHERE a.status = 'leased' AND a.job_name = u.job AND a.lease_expires_at > @now::timestamptz
    AND NOT (a.id = ANY(@ids::text[])))::bigint AS live
FROM (SELECT unnest(@jobs::text[]) AS job) AS u;

-- name: LockTenants :exec
-- Step 2 for jobs with a per-tenant limit: claimers of the same job and
-- key scope queue here, the pairs sorted, after the jobs' locks; a key
-- space of its own (the two-key form's first key).
-- In the order of the keys, as LockJobs.
SELECT pg_advisory_xact_lock(1685222010, h.h)
FROM (SELECT DISTINCT hashtext(u.job || chr(31) || u.scope) AS h
      FROM (SELECT unnest(@jobs::text[]) AS job, unnest(@scopes::text[]) AS scope) AS u) AS h
ORDER BY h.h;

-- name: LiveLeasesOfTenants :many
-- Step 2, re-count with a fresh snapshot: each (job, key scope)'s unexpired
-- leases, other than the candidates' own.
SELECT u.job::text AS job_name, u.scope::text AS key_scope, (
  SELECT count(*) FROM durably_runs a
  WHERE a.status = 'leased' AND a.job_name = u.job AND a.key_scope = u.scope AND a.lease_expires_at > @now::timestamptz
    AND NOT (a.id = ANY(@ids::text[])))::bigint AS live
FROM (SELECT unnest(@jobs::text[]) AS job, unnest(@scopes::text[]) AS scope) AS u;

-- name: LockConcurrencyKeys :exec
-- Step 2: claimers of the same (scope, key) queue here until the holder
-- commits; the pairs come sorted so two claimers never wait on each other in
-- a cycle. A global key locks the hash of the key alone, as before key
-- scopes existed (D11), so processes of both versions exclude each other.
-- In the order of the keys, as LockJobs.
SELECT pg_advisory_xact_lock(h.h)
FROM (SELECT DISTINCT hashtext(CASE WHEN u.s = '' THEN u.k ELSE u.s || chr(31) || u.k END) AS h
      FROM (SELECT unnest(@scopes::text[]) AS s, unnest(@keys::text[]) AS k) AS u) AS h
ORDER BY h.h;

-- name: LeasedConcurrencyKeys :many
-- Step 2, re-check with a fresh snapshot: the (scope, key) pairs that
-- another run now leases.
SELECT DISTINCT r.key_scope, r.concurrency_key::text AS concurrency_key
FROM durably_runs r
JOIN (SELECT unnest(@scopes::text[]) AS s, unnest(@keys::text[]) AS k) AS u ON r.key_scope = u.s AND r.concurrency_key = u.k
WHERE r.status = 'leased'
  AND r.lease_expires_at IS NOT NULL AND r.lease_expires_at > @now::timestamptz
  AND NOT (r.id = ANY(@ids::text[]));

-- name: ClaimRuns :many
-- Step 3: lease the chosen runs (R-050), counting crashes as ClaimReady does.
UPDATE durably_runs u
SET status = 'leased',
    lease_owner = @worker_id::text,
    lease_expires_at = @lease_expires_at::timestamptz,
    lease_generation = u.lease_generation + 1,
    started_at = COALESCE(u.started_at, @now::timestamptz),
    crashes = u.crashes + CASE WHEN u.status = 'leased' AND u.lease_owner IS NOT NULL THEN 1 ELSE 0 END,
    attempts = CASE WHEN u.status = 'leased' AND u.lease_owner IS NOT NULL
      THEN ((CASE WHEN jsonb_array_length(COALESCE(u.attempts, '[]')::jsonb) >= 20 THEN COALESCE(u.attempts, '[]')::jsonb - 0 ELSE COALESCE(u.attempts, '[]')::jsonb END) || jsonb_build_array(jsonb_build_object(
        'attempt', u.attempt + u.crashes + 1, 'outcome', 'crashed', 'worker', u.lease_owner,
        'error', 'the execution by worker ' || u.lease_owner || ' ended without an outcome: its lease expired at ' || (to_jsonb(u.lease_expires_at) #>> '{}'),
        'at', u.lease_expires_at)))::text
      ELSE u.attempts END,
    updated_at = @now::timestamptz
WHERE u.id = ANY(@ids::text[])
RETURNING *;

-- name: RenewLeases :many
-- "r.id = ANY(ids)" repeats the join so that the planner looks runs up by
-- primary key instead of scanning every leased run (it cannot see into
-- unnest): so do the other array updates.
-- Each row carries its generation and its caller's clock, and comes back
-- with its generation: two holders of one run (a stale generation and the
-- live one) can meet in one group, and only the live one may be told ok.
UPDATE durably_runs r
SET lease_expires_at = u.lease_expires_at, updated_at = u.now
FROM (SELECT unnest(@ids::text[]) AS id,
        unnest(@generations::bigint[]) AS generation,
        unnest(@lease_expires_ats::timestamptz[]) AS lease_expires_at,
        unnest(@nows::timestamptz[]) AS now) AS u
WHERE r.id = ANY(@ids::text[]) AND r.id = u.id AND r.status = 'leased' AND r.lease_generation = u.generation
  AND r.lease_expires_at > u.now
RETURNING r.id, r.lease_generation;

-- name: ReleaseLease :execrows
-- A stopping worker hands a run back so another can take it at once. Fenced;
-- fails on the pending unique index when a same-key pending run exists, and
-- the store then hands it back with ExpireLease instead (D12). run_at is
-- cleared: the run is claimable at once and counts for its key again.
UPDATE durably_runs
SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL, run_at = NULL, ready = 1,
    updated_at = @now::timestamptz
WHERE id = @id AND status = 'leased' AND lease_generation = @generation;

-- name: DeferRun :execrows
-- A lease holder hands its run back to wait until run_at (a retry's next
-- attempt, a durable sleep, a wait for children or a signal), fenced by
-- generation only like the finish (R-065). started_at stays; with run_at
-- set, the run holds no concurrency key while it waits
-- (idx_durably_runs_pending_scope_concurrency), so this is never refused
-- for a pending sibling.
-- A wait for an event (waiting_for set) is ready at once when what it
-- waits for came since the engine looked (S-060), as in SQLite's. The
-- expressions read only the row itself: a child's end or a signal that
-- locked it first is seen, since the update then applies to the row as
-- that transaction left it (READ COMMITTED).
UPDATE durably_runs
SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL,
    waiting_for = sqlc.narg(waiting_for)::text,
    awaiting = CASE WHEN sqlc.narg(waiting_for)::text = 'children'
      THEN CAST(@awaiting AS bigint) - (wakes - CAST(@seen_wakes AS bigint)) ELSE 0 END,
    ready = CASE
      WHEN @run_at::timestamptz <= @now::timestamptz THEN 1
      WHEN sqlc.narg(waiting_for)::text = 'children' AND CAST(@awaiting AS bigint) - (wakes - CAST(@seen_wakes AS bigint)) <= 0 THEN 1
      WHEN sqlc.narg(waiting_for)::text LIKE 'signal:%' AND wakes <> CAST(@seen_wakes AS bigint) THEN 1
      ELSE 0 END,
    run_at = CASE
      WHEN sqlc.narg(waiting_for)::text = 'children' AND CAST(@awaiting AS bigint) - (wakes - CAST(@seen_wakes AS bigint)) <= 0
        AND @now::timestamptz < @run_at::timestamptz THEN @now::timestamptz
      WHEN sqlc.narg(waiting_for)::text LIKE 'signal:%' AND wakes <> CAST(@seen_wakes AS bigint)
        AND @now::timestamptz < @run_at::timestamptz THEN @now::timestamptz
      ELSE @run_at::timestamptz END,
    attempt = @attempt::bigint,
    attempts = COALESCE(sqlc.narg(attempts)::text, attempts),
    current_step_index = @current_step_index::bigint,
    completed_step_count = @completed_step_count::bigint,
    updated_at = @now::timestamptz
WHERE id = @id AND status = 'leased' AND lease_generation = @generation;

-- name: ExpireLease :execrows
-- The hand-back of a run that may not become pending (its key has a pending
-- sibling, D12): the lease ends now, so the next claim takes the run over
-- as an expired lease. The generation moves on, so that the holder's writes
-- are refused from here on, as they would be for a pending run. The owner
-- is cleared: a hand-back is not a crash, and the claim counts none.
UPDATE durably_runs
SET lease_expires_at = @now::timestamptz, lease_generation = lease_generation + 1, lease_owner = NULL, updated_at = @now::timestamptz
WHERE id = @id AND status = 'leased' AND lease_generation = @generation;

-- name: SetProgress :many
UPDATE durably_runs r
SET progress = NULLIF(u.progress, ''), updated_at = @now::timestamptz
FROM (SELECT unnest(@ids::text[]) AS id,
        unnest(@generations::bigint[]) AS generation,
        unnest(@progresses::text[]) AS progress) AS u
WHERE r.id = ANY(@ids::text[]) AND r.id = u.id AND r.status = 'leased' AND r.lease_generation = u.generation
RETURNING r.id, r.lease_generation;

-- name: FinishRuns :many
-- Completion and failure (R-072, R-073), fenced by generation only (R-065).
-- Runs whose delete_steps flag is set lose their steps and logs in the same
-- statement (preserveSteps=false, R-106). Rows come back with their
-- generation (RenewLeases says why).
WITH fin AS (
  UPDATE durably_runs r
  SET status = u.status,
      output = NULLIF(u.output, ''),
      error = CASE WHEN u.status = 'failed' THEN u.error ELSE NULL END,
      attempts = COALESCE(NULLIF(u.attempts, ''), r.attempts),
      current_step_index = u.current_step_index,
      completed_step_count = u.completed_step_count,
      lease_owner = NULL, lease_expires_at = NULL,
      completed_at = u.now, updated_at = u.now
  FROM (SELECT unnest(@ids::text[]) AS id,
          unnest(@nows::timestamptz[]) AS now,
          unnest(@generations::bigint[]) AS generation,
          unnest(@statuses::text[]) AS status,
          unnest(@outputs::text[]) AS output,
          unnest(@errors::text[]) AS error,
          unnest(@attempts::text[]) AS attempts,
          unnest(@delete_steps::boolean[]) AS delete_steps,
          unnest(@current_step_indexes::bigint[]) AS current_step_index,
          unnest(@completed_step_counts::bigint[]) AS completed_step_count) AS u
  WHERE r.id = ANY(@ids::text[]) AND r.id = u.id AND r.status = 'leased' AND r.lease_generation = u.generation
  RETURNING r.id, r.lease_generation, u.delete_steps, r.parent_run_id
), del_steps AS (
  DELETE FROM durably_steps WHERE run_id IN (SELECT fin.id FROM fin WHERE fin.delete_steps)
), del_logs AS (
  DELETE FROM durably_logs WHERE run_id IN (SELECT fin.id FROM fin WHERE fin.delete_steps)
), del_signals AS (
  DELETE FROM durably_signals WHERE run_id IN (SELECT fin.id FROM fin)
), wake AS (
  -- A child's end counts for its parent (S-061), as SQLite's WakeParent:
  -- a parent ending in this statement too is left alone (a row is
  -- updated once per statement).
  UPDATE durably_runs p
  SET wakes = p.wakes + k.n,
      awaiting = CASE WHEN p.waiting_for = 'children' THEN p.awaiting - k.n ELSE p.awaiting END,
      ready = CASE WHEN p.status = 'pending' AND p.waiting_for = 'children' AND p.awaiting - k.n <= 0 THEN 1 ELSE p.ready END,
      run_at = CASE WHEN p.status = 'pending' AND p.waiting_for = 'children' AND p.awaiting - k.n <= 0 AND p.ready = 0
        THEN k.now ELSE p.run_at END
  FROM (SELECT fin.parent_run_id AS id, count(*) AS n, max(u.now) AS now
        FROM fin JOIN (SELECT unnest(@ids::text[]) AS id, unnest(@nows::timestamptz[]) AS now) AS u ON u.id = fin.id
        WHERE fin.parent_run_id IS NOT NULL GROUP BY fin.parent_run_id) AS k
  WHERE p.id = k.id AND p.id NOT IN (SELECT fin.id FROM fin)
)
SELECT id, lease_generation FROM fin;

-- name: FinishRun :many
-- FinishRuns for a group that holds one finish: the same fenced update
-- without the arrays (the finish's steps, if any, are recorded by the
-- group's step statement before it).
WITH fin AS (
  UPDATE durably_runs r
  SET status = @status::text,
      output = NULLIF(@output::text, ''),
      error = CASE WHEN @status::text = 'failed' THEN @error::text ELSE NULL END,
      attempts = COALESCE(NULLIF(@attempts::text, ''), r.attempts),
      current_step_index = @current_step_index::bigint,
      completed_step_count = @completed_step_count::bigint,
      lease_owner = NULL, lease_expires_at = NULL,
      completed_at = @now::timestamptz, updated_at = @now::timestamptz
  WHERE r.id = @id::text AND r.status = 'leased' AND r.lease_generation = @generation::bigint
  RETURNING r.id, r.lease_generation, r.parent_run_id
), del_steps AS (
  DELETE FROM durably_steps WHERE @delete_steps::boolean AND run_id IN (SELECT fin.id FROM fin)
), del_logs AS (
  DELETE FROM durably_logs WHERE @delete_steps::boolean AND run_id IN (SELECT fin.id FROM fin)
), del_signals AS (
  DELETE FROM durably_signals WHERE run_id IN (SELECT fin.id FROM fin)
), wake AS (
  -- A child's end counts for its parent (S-061), as in FinishRuns.
  UPDATE durably_runs p
  SET wakes = p.wakes + 1,
      awaiting = CASE WHEN p.waiting_for = 'children' THEN p.awaiting - 1 ELSE p.awaiting END,
      ready = CASE WHEN p.status = 'pending' AND p.waiting_for = 'children' AND p.awaiting - 1 <= 0 THEN 1 ELSE p.ready END,
      run_at = CASE WHEN p.status = 'pending' AND p.waiting_for = 'children' AND p.awaiting - 1 <= 0 AND p.ready = 0
        THEN @now::timestamptz ELSE p.run_at END
  FROM fin
  WHERE p.id = fin.parent_run_id
)
SELECT id, lease_generation FROM fin;

-- name: GetRunForUpdate :one
SELECT * FROM durably_runs WHERE id = @id FOR UPDATE;

-- name: CancelRun :one
UPDATE durably_runs
SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL,
    completed_at = @now::timestamptz, updated_at = @now::timestamptz
WHERE id = @id AND status IN ('pending', 'leased')
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
    updated_at = @now::timestamptz
WHERE id = @id AND status IN ('failed', 'cancelled')
RETURNING *;

-- name: CommittedRunIDs :many
-- Which of the runs a transactional trigger created are visible, that is
-- whose transaction committed (store.TxEnqueuer, S-071): by primary key.
SELECT id FROM durably_runs WHERE id = ANY(@ids::text[]);

-- name: DeleteTerminalRun :one
DELETE FROM durably_runs
WHERE id = @id AND status IN ('completed', 'failed', 'cancelled')
RETURNING *;

-- name: SelectPurgeable :many
SELECT id FROM durably_runs
WHERE status IN ('completed', 'failed', 'cancelled') AND completed_at < @older_than::timestamptz
ORDER BY completed_at
LIMIT @lim
FOR UPDATE SKIP LOCKED;

-- name: DeleteRunsCascade :exec
-- The cascade of S-040 (there are no foreign keys, S-004).
WITH s AS (DELETE FROM durably_steps WHERE durably_steps.run_id = ANY(@ids::text[])),
     l AS (DELETE FROM durably_logs WHERE durably_logs.run_id = ANY(@ids::text[])),
     lb AS (DELETE FROM durably_run_labels WHERE durably_run_labels.run_id = ANY(@ids::text[])),
     sg AS (DELETE FROM durably_signals WHERE durably_signals.run_id = ANY(@ids::text[]))
DELETE FROM durably_runs WHERE durably_runs.id = ANY(@ids::text[]);

-- name: ListExpiredLeases :many
-- Expired leases that may go back to pending (S-039). Those whose key has a
-- pending sibling stay leased and expired, claimable as they are, instead
-- of being failed as S-038 has it (D12).
SELECT x.id FROM durably_runs x
WHERE x.status = 'leased' AND x.lease_expires_at IS NOT NULL AND x.lease_expires_at <= @now::timestamptz
  AND (x.concurrency_key IS NULL OR NOT EXISTS (
    SELECT 1 FROM durably_runs o
    WHERE o.job_name = x.job_name AND o.key_scope = x.key_scope AND o.concurrency_key = x.concurrency_key
      AND o.status = 'pending'));

-- name: ResetExpiredLease :execrows
-- An expired lease with an owner is a crash, counted as the claim counts it.
UPDATE durably_runs u
SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL, run_at = NULL, ready = 1,
    updated_at = @now::timestamptz,
    crashes = u.crashes + CASE WHEN u.status = 'leased' AND u.lease_owner IS NOT NULL THEN 1 ELSE 0 END,
    attempts = CASE WHEN u.status = 'leased' AND u.lease_owner IS NOT NULL
      THEN ((CASE WHEN jsonb_array_length(COALESCE(u.attempts, '[]')::jsonb) >= 20 THEN COALESCE(u.attempts, '[]')::jsonb - 0 ELSE COALESCE(u.attempts, '[]')::jsonb END) || jsonb_build_array(jsonb_build_object(
        'attempt', u.attempt + u.crashes + 1, 'outcome', 'crashed', 'worker', u.lease_owner,
        'error', 'the execution by worker ' || u.lease_owner || ' ended without an outcome: its lease expired at ' || (to_jsonb(u.lease_expires_at) #>> '{}'),
        'at', u.lease_expires_at)))::text
      ELSE u.attempts END
WHERE u.id = @id AND u.status = 'leased' AND u.lease_expires_at <= @now::timestamptz;

-- name: GetRun :one
SELECT * FROM durably_runs WHERE id = @id;

-- name: WakeParent :execrows
-- A child's cancel counts for its parent (S-061), as FinishRuns' wake.
UPDATE durably_runs
SET wakes = wakes + 1,
    awaiting = CASE WHEN waiting_for = 'children' THEN awaiting - 1 ELSE awaiting END,
    ready = CASE WHEN status = 'pending' AND waiting_for = 'children' AND awaiting - 1 <= 0 THEN 1 ELSE ready END,
    run_at = CASE WHEN status = 'pending' AND waiting_for = 'children' AND awaiting - 1 <= 0 AND ready = 0
      THEN @now::timestamptz ELSE run_at END
WHERE id = @id;

-- name: SignalRun :one
-- A signal sent to an active run: an event more (wakes), and a run that
-- waits for a signal of this name is ready at once (S-062); the update
-- locks the run's row, so that its end, which deletes its signals, comes
-- before or after the signal's insert as a whole. No row: the run is
-- missing or ended. It returns whether it woke the run.
UPDATE durably_runs
SET wakes = wakes + 1,
    ready = CASE WHEN status = 'pending' AND waiting_for = 'signal:' || @name::text THEN 1 ELSE ready END,
    run_at = CASE WHEN status = 'pending' AND waiting_for = 'signal:' || @name::text AND ready = 0
      THEN @now::timestamptz ELSE run_at END
WHERE id = @id AND status IN ('pending', 'leased')
RETURNING (status = 'pending' AND waiting_for = 'signal:' || @name::text) AS woken;

-- name: InsertSignal :exec
INSERT INTO durably_signals (id, run_id, name, payload, created_at)
VALUES (@id::text, @run_id::text, @name::text, @payload::text, @created_at::timestamptz);

-- name: LeasedWakes :one
-- The fence of ReceiveSignal: the run's wakes while the lease is held,
-- its row locked, so that a signal sent meanwhile is either seen by the
-- reads that follow or counted in wakes after them.
SELECT wakes FROM durably_runs
WHERE id = @id AND status = 'leased' AND lease_generation = @generation
FOR UPDATE;

-- name: TakeSignal :one
-- The oldest signal of a name kept for a run, removed as it is delivered.
DELETE FROM durably_signals
WHERE id = (SELECT s.id FROM durably_signals s
  WHERE s.run_id = @run_id::text AND s.name = @name::text ORDER BY s.id LIMIT 1)
RETURNING *;

-- name: GetSignals :many
-- The signals kept for an active run: those of an ended run are never
-- delivered (R-243).
SELECT s.* FROM durably_signals s
JOIN durably_runs r ON r.id = s.run_id
WHERE s.run_id = @run_id::text AND r.status IN ('pending', 'leased')
ORDER BY s.id;

-- name: DeleteSignalsOfRuns :exec
DELETE FROM durably_signals WHERE run_id = ANY(@ids::text[]);

-- name: GetChildren :many
-- A run's children, oldest first, through idx_durably_runs_parent.
SELECT * FROM durably_runs
WHERE parent_run_id = @parent_run_id::text
ORDER BY created_at, id;

-- name: LockActiveDescendants :many
-- The active descendants of a run with their status, deepest first, each
-- row locked in that order: the cascade of its cancel (R-234) takes its
-- locks from the leaves up, as a child's end does (its own row, then its
-- parent's), so that the two never wait on each other in a cycle. The
-- walk goes through idx_durably_runs_parent, ended runs included, since an
-- ended child may have active children of its own.
WITH RECURSIVE tree(id, depth) AS (
  SELECT c.id, 1 FROM durably_runs c WHERE c.parent_run_id = @id::text
  UNION ALL
  SELECT c.id, tree.depth + 1 FROM durably_runs c JOIN tree ON c.parent_run_id = tree.id
)
SELECT r.id, r.status, tree.depth FROM tree JOIN durably_runs r ON r.id = tree.id
WHERE r.status IN ('pending', 'leased')
ORDER BY tree.depth DESC, r.id
FOR UPDATE OF r;

-- name: CountPending :many
-- Pending runs per job, due at now or later (store.PendingCounter, for
-- metrics): idx_durably_runs_status_created yields the pending runs only,
-- not the finished history.
SELECT job_name,
  count(*) FILTER (WHERE run_at IS NULL OR run_at <= @now::timestamptz) AS due,
  count(*) AS pending
FROM durably_runs
WHERE status = 'pending'
GROUP BY job_name
ORDER BY job_name;

-- name: ListRuns :many
-- Newest first (R-135) with optional status, job and label filters (labels AND-ed).
-- A NULL limit means no limit, so offset without limit works (D5). The
-- window is always bounded, so that the walk of idx_durably_runs_created
-- starts at its upper end: created_from ('-infinity' for none) and the pair
-- (upper_at, upper_id), which the store sets to the end of a time range or
-- to a page's cursor (keyset pagination), 'infinity' when neither is set.
SELECT * FROM durably_runs r
WHERE (cardinality(@statuses::text[]) = 0 OR r.status = ANY(@statuses::text[]))
  AND (cardinality(@job_names::text[]) = 0 OR r.job_name = ANY(@job_names::text[]))
  AND (cardinality(@label_keys::text[]) = 0 OR cardinality(@label_keys::text[]) = (
    SELECT count(*) FROM durably_run_labels l
    JOIN (SELECT unnest(@label_keys::text[]) AS key, unnest(@label_values::text[]) AS value) AS f
      ON l.key = f.key AND l.value = f.value
    WHERE l.run_id = r.id))
  AND r.created_at >= @created_from::timestamptz
  AND (r.created_at, r.id) < (@upper_at::timestamptz, @upper_id::text)
ORDER BY r.created_at DESC, r.id DESC
LIMIT sqlc.narg(lim)::bigint OFFSET @off::bigint;

-- name: ListRunsByLabel :many
-- The same filter driven by one label through idx_durably_run_labels_key_value,
-- newest first, so a page of one tenant costs its own rows; the window (as
-- in ListRuns) bounds that walk on the index's created_at and run_id, the
-- run's own. The other labels
-- are a filter on the run's own labels (containment of a JSON object, '{}'
-- when there are none), not a join, so the walk stays in index order and
-- stops at the page's end. The CASE hides the containment from the planner,
-- whose fixed 1% estimate for @> would make it expect a short page and sort
-- every run of the tenant instead (TestLabelLookupsUseTheIndex).
SELECT r.* FROM durably_run_labels d
JOIN durably_runs r ON r.id = d.run_id
WHERE d.key = @key::text AND d.value = @value::text
  AND d.created_at >= @created_from::timestamptz
  AND (d.created_at, d.run_id) < (@upper_at::timestamptz, @upper_id::text)
  AND (cardinality(@statuses::text[]) = 0 OR r.status = ANY(@statuses::text[]))
  AND (cardinality(@job_names::text[]) = 0 OR r.job_name = ANY(@job_names::text[]))
  AND CASE WHEN r.labels @> @other_labels::jsonb THEN true ELSE false END
ORDER BY d.created_at DESC, d.run_id DESC
LIMIT sqlc.narg(lim)::bigint OFFSET @off::bigint;

-- name: CountRuns :one
-- Runs per status under ListRuns' filter without its status filter and
-- cursor, for a list's status counts: one row, one count per status, so
-- that nothing is grouped or sorted.
SELECT
  count(*) FILTER (WHERE r.status = 'pending') AS pending,
  count(*) FILTER (WHERE r.status = 'leased') AS leased,
  count(*) FILTER (WHERE r.status = 'completed') AS completed,
  count(*) FILTER (WHERE r.status = 'failed') AS failed,
  count(*) FILTER (WHERE r.status = 'cancelled') AS cancelled
FROM durably_runs r
WHERE (cardinality(@job_names::text[]) = 0 OR r.job_name = ANY(@job_names::text[]))
  AND r.created_at >= @created_from::timestamptz
  AND r.created_at < @created_to::timestamptz;

-- name: CountRunsByLabel :one
-- CountRuns driven by one label's index, as ListRunsByLabel.
SELECT
  count(*) FILTER (WHERE r.status = 'pending') AS pending,
  count(*) FILTER (WHERE r.status = 'leased') AS leased,
  count(*) FILTER (WHERE r.status = 'completed') AS completed,
  count(*) FILTER (WHERE r.status = 'failed') AS failed,
  count(*) FILTER (WHERE r.status = 'cancelled') AS cancelled
FROM durably_run_labels d
JOIN durably_runs r ON r.id = d.run_id
WHERE d.key = @key::text AND d.value = @value::text
  AND d.created_at >= @created_from::timestamptz
  AND d.created_at < @created_to::timestamptz
  AND (cardinality(@job_names::text[]) = 0 OR r.job_name = ANY(@job_names::text[]))
  AND r.labels @> @other_labels::jsonb;

-- name: UpdateRunForTest :exec
-- The unfenced test hook of S-047: each field is written only when its set_ flag is true.
UPDATE durably_runs SET
  status = CASE WHEN @set_status::boolean THEN @status::text ELSE status END,
  current_step_index = CASE WHEN @set_current_step_index::boolean THEN @current_step_index::bigint ELSE current_step_index END,
  lease_owner = CASE WHEN @set_lease_owner::boolean THEN sqlc.narg(lease_owner)::text ELSE lease_owner END,
  lease_expires_at = CASE WHEN @set_lease_expires_at::boolean THEN sqlc.narg(lease_expires_at)::timestamptz ELSE lease_expires_at END,
  started_at = CASE WHEN @set_started_at::boolean THEN sqlc.narg(started_at)::timestamptz ELSE started_at END,
  completed_at = CASE WHEN @set_completed_at::boolean THEN sqlc.narg(completed_at)::timestamptz ELSE completed_at END,
  created_at = CASE WHEN @set_created_at::boolean THEN @created_at::timestamptz ELSE created_at END,
  updated_at = @now::timestamptz
WHERE id = @id;
