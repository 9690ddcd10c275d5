package storekit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/durably-go/durably/store"
)

// ResumeOps are the statements ResumeRun runs, in the store's transaction.
type ResumeOps interface {
	Tx
	// RunForUpdate reads the run, locking it where the engine locks rows;
	// nil when there is no such run.
	RunForUpdate(ctx context.Context, id string) (*store.Run, error)
	// Resume sets a failed or cancelled run pending as store.Resumer
	// describes and returns it as it is then. It fails with the
	// database's unique violation when a pending sibling holds the run's
	// concurrency key.
	Resume(ctx context.Context, id string, now time.Time) (*store.Run, error)
	// DeleteUnfinishedSteps removes the run's failed and cancelled steps,
	// keeping the completed ones.
	DeleteUnfinishedSteps(ctx context.Context, runID string) error
}

// ResumeRun is store.Resumer.ResumeRun over ops (S-072). The run is read
// locked first, so that two resumes of one run, or a resume and a delete,
// take turns: one of two concurrent resumes finds the run pending.
func ResumeRun(ctx context.Context, ops ResumeOps, id string, now time.Time) (*store.Run, store.Status, error) {
	before, err := ops.RunForUpdate(ctx, id)
	if err != nil || before == nil {
		return nil, "", err
	}
	if before.Status != store.StatusFailed && before.Status != store.StatusCancelled {
		return before, before.Status, nil
	}
	rollback, release, err := ops.Savepoint(ctx)
	if err != nil {
		return nil, "", err
	}
	run, err := ops.Resume(ctx, id, now)
	if ops.IsUniqueViolation(err) {
		if err := rollback(ctx); err != nil {
			return nil, "", err
		}
		return nil, before.Status, &store.ConflictError{JobName: before.JobName, ConcurrencyKey: before.ConcurrencyKey}
	}
	if err == nil && run == nil {
		err = errors.New("the run changed under its lock")
	}
	if err == nil {
		err = ops.DeleteUnfinishedSteps(ctx, id)
	}
	if err != nil {
		return nil, "", errors.Join(fmt.Errorf("resume run %s: %w", id, err), rollback(ctx))
	}
	return run, before.Status, release(ctx)
}
