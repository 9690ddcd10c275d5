package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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
	var completed atomic.Int64
	done := make(chan struct{})
	var failure atomic.Value
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
	e.OnEvent(func(ev durably.Event) {
		switch ev.Type {
		case durably.EventRunComplete:
			if completed.Add(1) == int64(c.n) {
				close(done)
			}
		case durably.EventRunFail:
			failure.Store(ev.Error)
		}
	})
	t0 := time.Now()
	if err := e.Start(); err != nil {
		return err
	}
	p := &progress{what: "retry", total: c.n}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	timeout := time.After(10 * time.Minute)
wait:
	for {
		select {
		case <-done:
			break wait
		case <-tick.C:
			p.report(int(completed.Load()))
			if f := failure.Load(); f != nil {
				return fmt.Errorf("a run failed: %v", f)
			}
		case <-timeout:
			return errors.New("timed out")
		}
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
