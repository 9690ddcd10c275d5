package durably_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// runFailEvents records the run:fail events of e.
func runFailEvents(e *durably.Engine) func() []durably.Event {
	var mu sync.Mutex
	var fails []durably.Event
	e.OnEvent(func(ev durably.Event) {
		if ev.Type == durably.EventRunFail {
			mu.Lock()
			fails = append(fails, ev)
			mu.Unlock()
		}
	})
	return func() []durably.Event {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(fails)
	}
}

// wantTimedOut checks that a run failed for its timeout, with the failure
// in its attempt history.
func wantTimedOut(t *testing.T, run *durably.Run, prefix string) {
	t.Helper()
	if run.Status != durably.StatusFailed || !strings.Contains(run.Error, prefix) {
		t.Fatalf("run %s: %q, want failed with %q", run.Status, run.Error, prefix)
	}
	if n := len(run.Attempts); n == 0 || run.Attempts[n-1].Outcome != durably.AttemptTimedOut {
		t.Fatalf("attempts %+v, want the last one timed out", run.Attempts)
	}
}

// TestRunTimeout: a run past its job's Timeout has its context ended with
// an ErrDeadline cause and fails, never retried, whether its body returns
// on the context's end or hangs (then it is abandoned, and its slot serves
// the next run); its lease is not renewed past the deadline.
func TestRunTimeout(t *testing.T) {
	bothStores(t, "timeout.db", func(t *testing.T, spec string) {
		hang := make(chan struct{})
		t.Cleanup(func() { close(hang) })
		var obeyed atomic.Bool
		job := &durably.Job[fleetInput, string]{Name: "slow", Timeout: 300 * time.Millisecond,
			Retry: &durably.RetryPolicy{MaxAttempts: 5, Initial: time.Millisecond},
			Run: func(ctx context.Context, s *durably.StepContext, in fleetInput) (string, error) {
				if in.Tag == "hang" {
					<-hang // ignores its context
					return "", nil
				}
				<-ctx.Done()
				obeyed.Store(errors.Is(context.Cause(ctx), durably.ErrDeadline))
				return "", ctx.Err()
			}}
		quick := &durably.Job[fleetInput, string]{Name: "quick",
			Run: func(ctx context.Context, s *durably.StepContext, in fleetInput) (string, error) { return "ok", nil }}
		e, h := parentEngine(t, spec, durably.Config{MaxConcurrentRuns: 1, PollingInterval: 20 * time.Millisecond,
			LeaseDuration: 2 * time.Second, LeaseRenewInterval: 50 * time.Millisecond}, job)
		q := durably.MustRegister(e, quick)
		fails := runFailEvents(e)
		ctx := context.Background()
		for _, tag := range []string{"obeys", "hang"} {
			r, err := h.Trigger(ctx, fleetInput{Tag: tag})
			if err != nil {
				t.Fatal(err)
			}
			next, err := q.Trigger(ctx, fleetInput{})
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Start(); err != nil {
				t.Fatal(err)
			}
			var latest time.Time // the latest lease end seen while it ran
			waitFor(t, 10*time.Second, "the slow run to end", func() bool {
				got, err := e.GetRun(ctx, r.Run.ID)
				if err != nil {
					t.Fatal(err)
				}
				if got.LeaseExpiresAt.After(latest) {
					latest = got.LeaseExpiresAt
				}
				return got.Status.Terminal()
			})
			got, err := e.GetRun(ctx, r.Run.ID)
			if err != nil {
				t.Fatal(err)
			}
			wantTimedOut(t, got, "timed out: its job allows 300ms")
			if got.Attempt != 0 {
				t.Fatalf("%s: a timed-out run was retried %d times", tag, got.Attempt)
			}
			// Renewals go on until the body is abandoned, a second past the deadline.
			if limit := got.StartedAt.Add(300*time.Millisecond + time.Second + 2*time.Second); latest.After(limit) {
				t.Fatalf("%s: lease renewed to %v, past the abandonment plus one lease (%v)", tag, latest, limit)
			}
			// The only slot is free again: the next run completes.
			if _, err := e.WaitForRun(ctx, next.Run.ID, durably.WithTimeout(10*time.Second)); err != nil {
				t.Fatalf("%s: the run behind it: %v", tag, err)
			}
			if err := e.Stop(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if !obeyed.Load() {
			t.Fatal("the body's context did not end with an ErrDeadline cause")
		}
		if got := fails(); len(got) != 2 {
			t.Fatalf("%d run:fail events, want 2", len(got))
		}
	})
}

// TestRunClaimedPastItsDeadlineFails: a run whose deadline passed while it
// waited or while a hung process held it fails when it is next claimed,
// without executing.
func TestRunClaimedPastItsDeadlineFails(t *testing.T) {
	bothStores(t, "late.db", func(t *testing.T, spec string) {
		clock := &testClock{now: time.Now()}
		var executed atomic.Int32
		job := &durably.Job[fleetInput, string]{Name: "bounded", Timeout: time.Hour,
			Run: func(ctx context.Context, s *durably.StepContext, in fleetInput) (string, error) {
				executed.Add(1)
				return "", nil
			}}
		e, h := parentEngine(t, spec, durably.Config{Now: clock.Now, LeaseDuration: 10 * time.Second}, job)
		ctx := context.Background()
		r, err := h.Trigger(ctx, fleetInput{})
		if err != nil {
			t.Fatal(err)
		}
		if runs, err := e.Store().Claim(ctx, store.ClaimRequest{WorkerID: "hung", Now: clock.Now(), Lease: 10 * time.Second, Limit: 1}); err != nil || len(runs) != 1 {
			t.Fatalf("claim: %v %v", runs, err)
		}
		clock.Advance(2 * time.Hour)
		if n, err := e.ProcessUntilIdle(ctx, "", 0); err != nil || n != 1 {
			t.Fatalf("ProcessUntilIdle: %d %v", n, err)
		}
		got, err := e.GetRun(ctx, r.Run.ID)
		if err != nil {
			t.Fatal(err)
		}
		wantTimedOut(t, got, "timed out")
		if executed.Load() != 0 {
			t.Fatal("a run past its deadline executed")
		}
	})
}

// TestStepTimeout: a step attempt past its timeout fails with an
// ErrDeadline error and is retried under its policy like any failure,
// whether its function returns on the context's end or hangs (then it is
// abandoned); each timed-out attempt is in the run's history.
func TestStepTimeout(t *testing.T) {
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	for _, tc := range []struct {
		name  string
		opt   []durably.StepOption
		job   time.Duration
		hangs bool
	}{
		{"job's StepTimeout, obeyed", nil, 100 * time.Millisecond, false},
		{"WithStepTimeout over none, obeyed", []durably.StepOption{durably.WithStepTimeout(100 * time.Millisecond)}, 0, false},
		{"WithStepTimeout over a longer one, hung", []durably.StepOption{durably.WithStepTimeout(100 * time.Millisecond)}, time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bothStores(t, "steptimeout.db", func(t *testing.T, spec string) {
				var stepErrs []error
				var mu sync.Mutex
				job := &durably.Job[fleetInput, string]{Name: "steps", StepTimeout: tc.job,
					Retry: &durably.RetryPolicy{MaxAttempts: 2, Initial: time.Millisecond},
					Run: func(ctx context.Context, s *durably.StepContext, in fleetInput) (string, error) {
						out, err := durably.RunStep(s, "call", func(ctx context.Context) (string, error) {
							if tc.hangs {
								<-hang
							} else {
								<-ctx.Done()
							}
							return "late", nil
						}, tc.opt...)
						mu.Lock()
						stepErrs = append(stepErrs, err)
						mu.Unlock()
						return out, err
					}}
				e, h := parentEngine(t, spec, durably.Config{MaxConcurrentRuns: 1, PollingInterval: 20 * time.Millisecond}, job)
				ctx := context.Background()
				r, err := h.Trigger(ctx, fleetInput{})
				if err != nil {
					t.Fatal(err)
				}
				if err := e.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = e.Stop(context.Background()) })
				if _, err := e.WaitForRun(ctx, r.Run.ID, durably.WithTimeout(20*time.Second)); err == nil {
					t.Fatal("the run completed")
				}
				got, err := e.GetRun(ctx, r.Run.ID)
				if err != nil {
					t.Fatal(err)
				}
				wantTimedOut(t, got, `Step "call" timed out after 100ms`)
				if len(got.Attempts) != 2 || got.Attempts[0].Outcome != durably.AttemptTimedOut || got.Attempts[0].Step != "call" {
					t.Fatalf("attempts %+v, want two timed-out attempts of call", got.Attempts)
				}
				mu.Lock()
				defer mu.Unlock()
				if len(stepErrs) != 2 || !errors.Is(stepErrs[1], durably.ErrDeadline) {
					t.Fatalf("RunStep returned %v, want an ErrDeadline error last", stepErrs)
				}
			})
		})
	}
}

// TestStepTimeoutRefusesNegative: a negative WithStepTimeout fails the
// step at once, permanently, naming the option.
func TestStepTimeoutRefusesNegative(t *testing.T) {
	var got error
	job := &durably.Job[fleetInput, string]{Name: "neg",
		Run: func(ctx context.Context, s *durably.StepContext, in fleetInput) (string, error) {
			_, got = durably.RunStep(s, "x", func(ctx context.Context) (string, error) { return "", nil }, durably.WithStepTimeout(-time.Second))
			return "", got
		}}
	e, h := parentEngine(t, newStoreSpec(t, "sqlite", "neg.db"), durably.Config{}, job)
	if _, err := h.Trigger(context.Background(), fleetInput{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ProcessUntilIdle(context.Background(), "", 0); err != nil {
		t.Fatal(err)
	}
	if got == nil || !durably.IsPermanent(got) || !strings.Contains(got.Error(), "WithStepTimeout") {
		t.Fatalf("RunStep: %v, want a permanent error naming WithStepTimeout", got)
	}
}
