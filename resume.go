package durably

import (
	"context"
	"errors"
	"fmt"

	"github.com/durably-go/durably/store"
)

// Resume makes a failed or cancelled run pending again, to go on from its
// first unfinished step (R-260 … R-266): the same run, whose completed
// steps replay their recorded outputs, unlike Retrigger's new run from the
// start. It keeps the run's id, input, labels, keys, priority, completed
// steps, logs and attempt history; the failed and cancelled step records
// are dropped (their errors stay in Attempts), its retries and crashes
// start again from 0, and Job.Timeout counts from the resumed start. It
// emits run:resume and wakes the worker; the run is claimed like any
// pending run.
//
// A missing run is ErrNotFound, as is a run whose job is not registered
// (Unknown job: NAME); a pending, leased or completed run is a conflict,
// and so is a run whose completed steps were deleted when it ended
// (Config.PreserveSteps off; Retrigger it instead) and a run whose job has
// a pending run of its concurrency key. The input is checked
// against the job's current input type first, and left as stored.
func (e *Engine) Resume(ctx context.Context, runID string) (*Run, error) {
	rs, ok := e.store.(store.Resumer)
	if !ok {
		return nil, fmt.Errorf("durably: the store (%T) cannot resume runs: it does not implement store.Resumer", e.store)
	}
	if err := e.checkResumable(ctx, runID); err != nil {
		return nil, err
	}
	run, prev, err := rs.ResumeRun(ctx, runID, e.now())
	var ce *store.ConflictError
	switch {
	case errors.As(err, &ce):
		return nil, conflictf("Cannot resume run %s: a pending run already exists for concurrency key %q in job %q", runID, ce.ConcurrencyKey, ce.JobName)
	case err != nil:
		return nil, fmt.Errorf("durably: resume: %w", err)
	case run == nil:
		return nil, notFoundf("Run not found: %s", runID)
	case prev != store.StatusFailed && prev != store.StatusCancelled:
		return nil, conflictf("Cannot resume %s run: %s", prev, runID) // it changed since checkResumable read it
	}
	e.emit(Event{Type: EventRunResume, RunID: run.ID, JobName: run.JobName, Labels: run.Labels})
	e.worker.wake()
	return run, nil
}

// checkResumable refuses what Resume refuses before it writes (R-261,
// the run must exist, have failed or been cancelled, belong to a
// registered job whose input type takes its input, and still have the
// steps it completed.
func (e *Engine) checkResumable(ctx context.Context, runID string) error {
	if !storable(runID) {
		return notFoundf("Run not found: %s", runID) // as GetRun
	}
	run, err := e.store.GetRun(ctx, runID)
	if err != nil {
		return fmt.Errorf("durably: resume: %w", err)
	}
	if run == nil {
		return notFoundf("Run not found: %s", runID)
	}
	if run.Status != store.StatusFailed && run.Status != store.StatusCancelled {
		return conflictf("Cannot resume %s run: %s", run.Status, runID)
	}
	job := e.job(run.JobName)
	if job == nil {
		return notFoundf("Unknown job: %s", run.JobName)
	}
	if _, err := job.parseInput(run.Input); err != nil {
		return validationErrorf("Cannot resume run %s: %s", runID, errorMessage(err))
	}
	if run.CompletedStepCount == 0 {
		return nil
	}
	steps, err := e.store.GetCompletedSteps(ctx, runID)
	if err != nil {
		return fmt.Errorf("durably: resume: %w", err)
	}
	if len(steps) < run.CompletedStepCount {
		return conflictf("Cannot resume run %s: the %d steps it completed were deleted when it ended (Config.PreserveSteps is off); retrigger it instead", runID, run.CompletedStepCount)
	}
	return nil
}
