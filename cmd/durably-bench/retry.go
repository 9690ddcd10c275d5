package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/durably-go/durably"
)

// retryJob is stepsJob's shape with a step that fails its first attempt
// in each run: the run is handed back (DeferRun) and claimed again after
// a 1 ms backoff, then completes. failed remembers the runs whose first
// attempt already failed.
func retryJob(failed *sync.Map) *durably.Job[stepsInput, int] {
	return &durably.Job[stepsInput, int]{
		Name:  "bench-retry",
		Retry: &durably.RetryPolicy{MaxAttempts: 2, Backoff: durably.BackoffFixed, Initial: time.Millisecond},
		Run: func(ctx context.Context, s *durably.StepContext, in stepsInput) (int, error) {
			a, err := durably.RunStep(s, "a", func(ctx context.Context) (int, error) { return in.I, nil })
			if err != nil {
				return 0, err
			}
			b, err := durably.RunStep(s, "flaky", func(ctx context.Context) (int, error) {
				if _, seen := failed.LoadOrStore(s.RunID(), true); !seen {
					return 0, errors.New("first attempt fails")
				}
				return 1, nil
			})
			return a + b, err
		},
	}
}

// wlRetry: n pending runs of a 2-step job whose second step fails once,
// worker with -slots slots: runs/s from start to the last completion,
// each run claimed twice (its retry waits without a slot).
func wlRetry(ctx context.Context, c *config, db *benchDB, r *result) error {
	e, err := db.engine(ctx, durably.Config{MaxConcurrentRuns: c.slots})
	if err != nil {
		return err
	}
	var failed sync.Map
	j := durably.MustRegister(e, retryJob(&failed))
	items := make([]durably.BatchItem[stepsInput], 0, batchSize)
	for i := range c.n {
		items = append(items, durably.BatchItem[stepsInput]{Input: stepsInput{I: i}})
		if len(items) == batchSize || i == c.n-1 {
			if _, err := j.BatchTrigger(ctx, items); err != nil {
				return err
			}
			items = items[:0]
		}
	}
	watch := watchCompletions(e, c.n)
	t0 := time.Now()
	if err := e.Start(); err != nil {
		return err
	}
	if err := watch.wait("retry"); err != nil {
		return err
	}
	elapsed := time.Since(t0)
	if err := e.Stop(ctx); err != nil {
		return err
	}
	r.Metrics["runs_per_s"], r.Units["runs_per_s"] = float64(c.n)/elapsed.Seconds(), "/s"
	if got, err := countStatus(ctx, e, durably.StatusCompleted); err != nil || got != c.n {
		return fmt.Errorf("%d completed runs, want %d (%v)", got, c.n, err)
	}
	return nil
}
