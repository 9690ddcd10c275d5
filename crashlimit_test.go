package durably_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/chaos"
	"github.com/durably-go/durably/store"
)

// testClock is a settable clock for Config.Now.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestCrashesCountAsAttempts: an execution that ends without an outcome
// (its lease expired with nobody handing it back) counts as an attempt of
// the run; a run crashed as often as its job allows fails, with run:fail
// and an error saying so, without executing again; one below the limit
// executes and keeps its crashes in its attempt history. The limit is the
// job's Retry.MaxAttempts, or DefaultCrashLimit without a policy.
func TestCrashesCountAsAttempts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		retry   *durably.RetryPolicy
		crashes int
		fails   bool
	}{
		{"policy of 3, 2 crashes", &durably.RetryPolicy{MaxAttempts: 3}, 2, false},
		{"policy of 3, 3 crashes", &durably.RetryPolicy{MaxAttempts: 3}, 3, true},
		{"policy of 1, 1 crash", &durably.RetryPolicy{MaxAttempts: 1}, 1, true},
		{"no policy, default-1 crashes", nil, durably.DefaultCrashLimit - 1, false},
		{"no policy, default crashes", nil, durably.DefaultCrashLimit, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bothStores(t, "crashes.db", func(t *testing.T, spec string) {
				clock := &testClock{now: time.Now()}
				var executed atomic.Int32
				job := &durably.Job[fleetInput, string]{Name: "fragile", Retry: tc.retry,
					Run: func(ctx context.Context, s *durably.StepContext, in fleetInput) (string, error) {
						executed.Add(1)
						return "done", nil
					}}
				e, h := parentEngine(t, spec, durably.Config{Now: clock.Now, LeaseDuration: 10 * time.Second}, job)
				var fails []durably.Event
				var mu sync.Mutex
				e.OnEvent(func(ev durably.Event) {
					if ev.Type == durably.EventRunFail {
						mu.Lock()
						fails = append(fails, ev)
						mu.Unlock()
					}
				})
				ctx := context.Background()
				r, err := h.Trigger(ctx, fleetInput{})
				if err != nil {
					t.Fatal(err)
				}
				// Each crash: a worker claims the run and is never heard
				// of again; its lease runs out.
				for i := range tc.crashes {
					runs, err := e.Store().Claim(ctx, store.ClaimRequest{WorkerID: fmt.Sprintf("ghost-%d", i), Now: clock.Now(), Lease: 10 * time.Second, Limit: 1})
					if err != nil || len(runs) != 1 {
						t.Fatalf("crash %d: claim %v %v", i, runs, err)
					}
					clock.Advance(11 * time.Second)
				}
				if n, err := e.ProcessUntilIdle(ctx, "", 0); err != nil || n != 1 {
					t.Fatalf("ProcessUntilIdle: %d %v", n, err)
				}
				got, err := e.GetRun(ctx, r.Run.ID)
				if err != nil {
					t.Fatal(err)
				}
				if got.Crashes != tc.crashes || len(got.Attempts) != tc.crashes {
					t.Fatalf("%d crashes and %d attempts recorded, want %d", got.Crashes, len(got.Attempts), tc.crashes)
				}
				for i, a := range got.Attempts {
					if a.Number != i+1 || a.Outcome != durably.AttemptCrashed || a.Worker != fmt.Sprintf("ghost-%d", i) {
						t.Fatalf("attempt %d: %+v", i, a)
					}
				}
				if !tc.fails {
					if got.Status != durably.StatusCompleted || executed.Load() != 1 {
						t.Fatalf("status %s after %d executions, want completed after 1", got.Status, executed.Load())
					}
					return
				}
				want := fmt.Sprintf("Run crashed or was abandoned %d time", tc.crashes)
				if got.Status != durably.StatusFailed || !strings.HasPrefix(got.Error, want) || !strings.Contains(got.Error, "ghost-") {
					t.Fatalf("status %s, error %q; want failed with %q", got.Status, got.Error, want)
				}
				if executed.Load() != 0 {
					t.Fatalf("the run executed %d times after it crashed out", executed.Load())
				}
				mu.Lock()
				defer mu.Unlock()
				if len(fails) != 1 || fails[0].Error != got.Error {
					t.Fatalf("run:fail events %+v, want one with the run's error", fails)
				}
				// Never claimed again.
				if runs, err := e.Store().Claim(ctx, store.ClaimRequest{WorkerID: "late", Now: clock.Now().Add(time.Hour), Lease: time.Second, Limit: 10}); err != nil || len(runs) != 0 {
					t.Fatalf("a crashed-out run was claimed again: %v %v", runs, err)
				}
			})
		})
	}
}

// The exit test's child: a job whose step ends its own process, as an out
// of memory kill, a crash in cgo or a stray os.Exit would.
const exitEffectEnv = "DURABLY_EXIT_EFFECTS"

func exitJob(effects *chaos.EffectLog) *durably.Job[fleetInput, string] {
	return &durably.Job[fleetInput, string]{
		Name:  "exits",
		Retry: &durably.RetryPolicy{MaxAttempts: 3, Initial: time.Millisecond},
		Run: func(ctx context.Context, s *durably.StepContext, in fleetInput) (string, error) {
			return durably.RunStep(s, "fatal", func(ctx context.Context) (string, error) {
				effects.Write("start", s.RunID(), 1)
				os.Exit(3)
				return "", errors.New("unreachable")
			})
		},
	}
}

// TestExitChild is the exit test's worker process.
func TestExitChild(t *testing.T) {
	childOnly(t, "TestStepThatEndsItsProcessFailsAfterMaxAttempts")
	effects, err := chaos.Open(os.Getenv(exitEffectEnv))
	if err != nil {
		t.Fatal(err)
	}
	e, err := durably.New(durably.Config{Store: openStore(t, os.Getenv(childStoreEnv)), PollingInterval: 20 * time.Millisecond,
		LeaseDuration: time.Second, LeaseRenewInterval: 250 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	durably.MustRegister(e, exitJob(effects))
	workUntilDone(t, e)
}

// TestStepThatEndsItsProcessFailsAfterMaxAttempts: a step that kills its
// process (os.Exit) runs MaxAttempts times in all, in as many processes,
// and the next process fails the run instead of running it once more. It
// used to run on every start of every process, forever, with attempt 0.
func TestStepThatEndsItsProcessFailsAfterMaxAttempts(t *testing.T) {
	bothStores(t, "exit.db", func(t *testing.T, spec string) {
		path := t.TempDir() + "/effects.log"
		effects, err := chaos.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		parent, h := parentEngine(t, spec, durably.Config{}, exitJob(effects))
		ctx := context.Background()
		r, err := h.Trigger(ctx, fleetInput{})
		if err != nil {
			t.Fatal(err)
		}
		exits := 0
		for children := 0; ; children++ {
			if children == 8 {
				t.Fatalf("the run is still not over after %d processes", children)
			}
			c := startChild(t, "TestExitChild", spec, exitEffectEnv+"="+path)
			err, done := c.waitTimeout(time.Minute)
			if !done {
				t.Fatalf("a worker did not end within a minute:\n%s", c.out)
			}
			if err != nil {
				exits++
				continue
			}
			break // the worker found nothing left to do
		}
		got, err := parent.GetRun(ctx, r.Run.ID)
		if err != nil {
			t.Fatal(err)
		}
		report, err := chaos.Analyze(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if starts := report.Starts; starts != 3 || exits != 3 {
			t.Fatalf("the step started %d times in %d processes that exited; want 3 (MaxAttempts)", report.Starts, exits)
		}
		if got.Status != durably.StatusFailed || got.Crashes != 3 || !strings.HasPrefix(got.Error, "Run crashed or was abandoned 3 times") {
			t.Fatalf("run %s with %d crashes: %q", got.Status, got.Crashes, got.Error)
		}
		if len(got.Attempts) != 3 || got.Attempts[2].Outcome != durably.AttemptCrashed {
			t.Fatalf("attempt history %+v", got.Attempts)
		}
	})
}

// TestAttemptHistoryOutlivesSteps: a run's failed attempts (step, error,
// time) stay with the run after it failed, although its steps are deleted
// at the end (PreserveSteps off, the default): they used to keep only the
// last error.
func TestAttemptHistoryOutlivesSteps(t *testing.T) {
	bothStores(t, "history.db", func(t *testing.T, spec string) {
		clock := &testClock{now: time.Now()}
		var n atomic.Int32
		job := &durably.Job[fleetInput, string]{Name: "flaky", Retry: &durably.RetryPolicy{MaxAttempts: 3, Backoff: durably.BackoffFixed, Initial: time.Minute},
			Run: func(ctx context.Context, s *durably.StepContext, in fleetInput) (string, error) {
				return durably.RunStep(s, "call", func(ctx context.Context) (string, error) {
					return "", fmt.Errorf("upstream said no, time %d", n.Add(1))
				})
			}}
		e, h := parentEngine(t, spec, durably.Config{Now: clock.Now}, job)
		ctx := context.Background()
		r, err := h.Trigger(ctx, fleetInput{})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if _, err := e.ProcessUntilIdle(ctx, "", 0); err != nil {
				t.Fatal(err)
			}
			clock.Advance(2 * time.Minute)
		}
		got, err := e.GetRun(ctx, r.Run.ID)
		if err != nil {
			t.Fatal(err)
		}
		if steps, _ := e.GetSteps(ctx, r.Run.ID); got.Status != durably.StatusFailed || len(steps) != 0 {
			t.Fatalf("status %s with %d steps kept, want failed with its steps deleted", got.Status, len(steps))
		}
		if len(got.Attempts) != 3 {
			t.Fatalf("%d attempts kept: %+v", len(got.Attempts), got.Attempts)
		}
		for i, a := range got.Attempts {
			if a.Number != i+1 || a.Outcome != durably.AttemptFailed || a.Step != "call" ||
				a.Error != fmt.Sprintf("upstream said no, time %d", i+1) || a.At.IsZero() {
				t.Fatalf("attempt %d: %+v", i+1, a)
			}
		}
	})
}
