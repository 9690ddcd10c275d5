-- durably-go SQLite schema, version 5: crash-counted attempts, the attempt
-- history and the trigger's trace context (issue 19, issue 21).
--
-- * crashes: executions of the run that ended without recording an
--   outcome: a process that died, hung or lost its database while it held
--   the lease. A claim that takes over an expired lease whose owner is set
--   counts one, and so does the sweep that resets such a lease to pending;
--   a hand-back (Stop, D12's ExpireLease) clears the owner and counts none.
--   The engine fails a run whose crashes reach its job's MaxAttempts.
-- * attempts: the run's unsuccessful attempts, a JSON array of
--   {attempt, outcome, step, error, at, worker}, kept whatever
--   PreserveSteps says (steps may be deleted at the finish). The engine
--   writes it with a retry's deferral and a failure's finish; a claim
--   appends a crash's entry itself. NULL: none.
-- * trace_context: the W3C trace context of the trigger (traceparent and
--   tracestate, as JSON), so that every execution of the run, in any
--   process, joins the trigger's trace. NULL: none.
ALTER TABLE durably_runs ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE durably_runs ADD COLUMN attempts TEXT;
ALTER TABLE durably_runs ADD COLUMN trace_context TEXT;
