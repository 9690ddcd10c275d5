package durably_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// failFirstSaveStep refuses the first step record with an error that is not
// an outage, as a full disk on a file system the store does not classify
// would.
type failFirstSaveStep struct {
	store.Store
	failed atomic.Bool
}

func (f *failFirstSaveStep) SaveStep(ctx context.Context, lease store.Lease, st *store.Step) (bool, error) {
	if !f.failed.Swap(true) {
		return false, errors.New("the step record could not be written")
	}
	return f.Store.SaveStep(ctx, lease, st)
}

// TestRetryAfterAFailedStepRecordHandsTheRunBack: a run whose step record
// failed to write, and whose body then fails with a retryable error, goes
// back at once to be resumed from its last recorded step, and the failure
// is reported (worker:error), as when the body succeeds. The retry's
// hand-back used to drop the record's failure silently and keep the lease
// (and its renewals) with nothing running the run.
func TestRetryAfterAFailedStepRecordHandsTheRunBack(t *testing.T) {
	st := &failFirstSaveStep{Store: openStore(t, newStoreSpec(t, "sqlite", "stepfail.db"))}
	e, err := durably.New(durably.Config{Store: st, LeaseDuration: time.Minute, PollingInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var executions atomic.Int32
	j := durably.MustRegister(e, &durably.Job[int, int]{
		Name:  "flaky",
		Retry: &durably.RetryPolicy{MaxAttempts: 3, Initial: time.Millisecond},
		Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			v, err := durably.RunStep(s, "a", func(context.Context) (int, error) { return in + 1, nil })
			if err != nil {
				return 0, err
			}
			s.Progress(1, 2, "") // records the held step first: the write fails
			if executions.Add(1) == 1 {
				return 0, errors.New("try again")
			}
			return v, nil
		},
	})
	ctx := context.Background()
	if err := e.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	reported := make(chan string, 4)
	e.OnEvent(func(ev durably.Event) {
		if ev.Type == durably.EventWorkerError {
			select {
			case reported <- ev.RunID:
			default:
			}
		}
	})
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	defer e.Stop(ctx)
	res, err := j.Trigger(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	run, err := e.WaitForRun(ctx, res.Run.ID, durably.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatalf("the run was not resumed within 10 s of a 1-minute lease: %v", err)
	}
	if run.Status != durably.StatusCompleted {
		t.Fatalf("status %s, want completed", run.Status)
	}
	select {
	case id := <-reported:
		if id != res.Run.ID {
			t.Fatalf("worker:error for run %q, want %q", id, res.Run.ID)
		}
	default:
		t.Fatal("the failed step record was not reported (worker:error)")
	}
}
