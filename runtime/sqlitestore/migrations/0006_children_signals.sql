-- durably-go SQLite schema, version 6: child runs and signals (issue 22).
--
-- * parent_run_id: the run whose step triggered this one (a child), NULL
--   otherwise. idx_durably_runs_parent lists a run's children, for its
--   wait, its page and the cascade of its cancel.
-- * waiting_for: what a pending run handed back to wait for an event waits
--   for besides run_at: 'children', or 'signal:' and the signal's name;
--   NULL otherwise (a sleep, a retry).
-- * awaiting: while a run waits for its children, how many of those it
--   awaits are still active; the end of each child counts one down and the
--   last makes the parent ready, in the child's own transaction.
-- * wakes: the events addressed to the run so far (its children's ends,
--   the signals sent to it). A run's deferral compares it with the count
--   the engine saw before it looked, so that an event between the look
--   and the deferral is not lost: it makes the run ready at once.
-- * durably_signals: the signals kept for a run until a step of it receives
--   one (oldest first per name, idx_durably_signals_run_name), deleted when
--   delivered and when the run ends.
ALTER TABLE durably_runs ADD COLUMN parent_run_id TEXT;
ALTER TABLE durably_runs ADD COLUMN waiting_for TEXT;
ALTER TABLE durably_runs ADD COLUMN awaiting INTEGER NOT NULL DEFAULT 0;
ALTER TABLE durably_runs ADD COLUMN wakes INTEGER NOT NULL DEFAULT 0;

CREATE INDEX IF NOT EXISTS idx_durably_runs_parent
  ON durably_runs (parent_run_id, created_at, id)
  WHERE parent_run_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS durably_signals (
  id         TEXT NOT NULL PRIMARY KEY,
  run_id     TEXT NOT NULL,
  name       TEXT NOT NULL,
  payload    TEXT NOT NULL,
  created_at TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS idx_durably_signals_run_name
  ON durably_signals (run_id, name, id);
