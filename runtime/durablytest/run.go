package durablytest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/durably-go/durably"
)

// ErrNotFinished is the kind of the error TriggerAndRun and Result return
// for a run that is still pending or leased once nothing more is
// claimable: it waits for the clock (a later start, a sleep, a retry's
// next attempt; the message says until when), or for a concurrency key or
// a job limit held by a run that is not processed here. Advance the clock
// (Env.Advance), then call Result.
var ErrNotFinished = errors.New("run not finished")

// TriggerAndRun triggers h's job with in and opts, processes runs on the
// calling goroutine until none is claimable (Engine.ProcessUntilIdle: the
// run, and whatever it and the runs before it trigger), and returns the
// run's outcome as TriggerAndWait would: its typed output, or the error of
// a failed (durably.ErrRunFailed, the run's message) or cancelled
// (durably.ErrCancelled) run, or ErrNotFinished. A trigger that is refused
// (validation, conflict) returns its error and processes nothing.
// Schedules are not fired: that is Env.ProcessDue's and Env.Advance's work.
// A store failure ends the test.
func TriggerAndRun[I, O any, L durably.Labels[L]](tb testing.TB, h *durably.TypedJob[I, O, L], in I, opts ...durably.Option) (durably.Outcome[O], error) {
	tb.Helper()
	res, err := h.Trigger(tb.Context(), in, opts...)
	if err != nil {
		return durably.Outcome[O]{}, err
	}
	if _, err := h.Engine().ProcessUntilIdle(tb.Context(), h.Engine().WorkerID(), 0); err != nil {
		tb.Fatalf("durablytest: process runs: %v", err)
		return durably.Outcome[O]{RunID: res.Run.ID, Disposition: res.Disposition}, err
	}
	out, err := Result(tb, h, res.Run.ID)
	out.Disposition = res.Disposition
	return out, err
}

// Result returns the outcome of a run of h's job as it stands, processing
// nothing: its typed output if it completed, the error of a failed or
// cancelled run as TriggerAndWait returns it, or ErrNotFinished if it is
// still pending or leased. The outcome's Disposition is empty. A run that
// does not exist or belongs to another job ends the test.
func Result[I, O any, L durably.Labels[L]](tb testing.TB, h *durably.TypedJob[I, O, L], runID string) (durably.Outcome[O], error) {
	tb.Helper()
	out := durably.Outcome[O]{RunID: runID}
	run, err := h.GetRun(tb.Context(), runID)
	if err != nil {
		tb.Fatalf("durablytest: get run %s: %v", runID, err)
		return out, err
	}
	if run == nil {
		err := fmt.Errorf("durablytest: no run %s of job %q", runID, h.Name())
		tb.Fatalf("%v", err)
		return out, err
	}
	switch run.Status {
	case durably.StatusPending, durably.StatusLeased:
		waits := "another worker holds its concurrency key or its job's limit of running runs"
		if run.Status == durably.StatusPending && !run.RunAt.IsZero() {
			// Kept after a claim, so only a pending run's is a wait.
			waits = "it waits until " + run.RunAt.Format(time.RFC3339Nano) + "; advance the clock, then call Result"
		}
		return out, fmt.Errorf("durablytest: run %s of job %q is %s with nothing left to process (%s): %w",
			runID, h.Name(), run.Status, waits, ErrNotFinished)
	}
	// The run is finished, so the engine's own wait returns at once, with
	// the errors TriggerAndWait gives.
	typed, err := h.WaitForRun(tb.Context(), runID)
	if err != nil {
		return out, err
	}
	out.Output = typed.Output
	return out, nil
}
