package durablytest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablytest"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// TestAdvanceRunsADelayedRunAtItsTime: a run triggered for later is not
// processed before its time, and Advance past it processes it at its
// time, not at the end of the advance.
func TestAdvanceRunsADelayedRunAtItsTime(t *testing.T) {
	env := durablytest.New(t, durably.Config{})
	_, mails := jobs(t, env.Engine)
	out, err := durablytest.TriggerAndRun(t, mails, Mail{To: "later@example.com"}, durably.WithDelay(10*time.Minute))
	if !errors.Is(err, durablytest.ErrNotFinished) || !strings.Contains(err.Error(), "it waits until 2026-01-01T00:10:00Z") {
		t.Fatalf("err = %v; want ErrNotFinished naming the run's time", err)
	}
	durablytest.RequireTriggered(t, mails, Mail{To: "later@example.com"}, durablytest.RunAt(t0.Add(10*time.Minute)),
		durablytest.Status(durably.StatusPending))
	if n := env.Advance(9 * time.Minute); n != 0 {
		t.Fatalf("Advance before the run's time processed %d runs", n)
	}
	if n := env.Advance(time.Hour); n != 1 {
		t.Fatalf("Advance past the run's time processed %d runs, want 1", n)
	}
	res, err := durablytest.Result(t, mails, out.RunID)
	if err != nil || res.Output != "sent to later@example.com" {
		t.Fatalf("Result = %+v, %v", res, err)
	}
	run := durablytest.RequireTriggered(t, mails, Mail{To: "later@example.com"})
	if want := t0.Add(10 * time.Minute); !run.StartedAt.Equal(want) {
		t.Fatalf("the run started at %s; want at its time %s", run.StartedAt, want)
	}
}

// TestAdvanceWakesEachSleep: a run that sleeps twice wakes at each wake
// time; processing only at the end of the advance would wake it once, at
// the end, and leave it asleep until an hour later.
func TestAdvanceWakesEachSleep(t *testing.T) {
	env := durablytest.New(t, durably.Config{})
	naps := durably.MustRegister(env.Engine, &durably.Job[int, string]{
		Name: "naps",
		Run: func(ctx context.Context, s *durably.StepContext, n int) (string, error) {
			for i := range n {
				if err := durably.Sleep(s, fmt.Sprintf("nap-%d", i), time.Hour); err != nil {
					return "", err
				}
			}
			return "rested", nil
		},
	})
	out, err := durablytest.TriggerAndRun(t, naps, 2)
	if !errors.Is(err, durablytest.ErrNotFinished) || !strings.Contains(err.Error(), "until 2026-01-01T01:00:00Z") {
		t.Fatalf("err = %v; want ErrNotFinished until the first wake", err)
	}
	if n := env.Advance(150 * time.Minute); n != 2 {
		t.Fatalf("Advance processed %d runs, want 2 (a wake at 01:00, another at 02:00)", n)
	}
	res, err := durablytest.Result(t, naps, out.RunID)
	if err != nil || res.Output != "rested" {
		t.Fatalf("Result = %+v, %v", res, err)
	}
	run := durablytest.RequireTriggered(t, naps, 2, durablytest.Status(durably.StatusCompleted))
	if want := t0.Add(2 * time.Hour); !run.CompletedAt.Equal(want) {
		t.Fatalf("completed at %s, want %s (the second wake)", run.CompletedAt, want)
	}
}

// TestAdvanceRetriesAtEachAttempt: a step that fails twice is retried at
// each attempt's time, and the history keeps every attempt.
func TestAdvanceRetriesAtEachAttempt(t *testing.T) {
	env := durablytest.New(t, durably.Config{PreserveSteps: true})
	calls := 0
	flaky := durably.MustRegister(env.Engine, &durably.Job[string, string]{
		Name:  "flaky",
		Retry: &durably.RetryPolicy{MaxAttempts: 3, Backoff: durably.BackoffFixed, Initial: time.Minute},
		Run: func(ctx context.Context, s *durably.StepContext, url string) (string, error) {
			return durably.RunStep(s, "get", func(ctx context.Context) (string, error) {
				if calls++; calls < 3 {
					return "", fmt.Errorf("503 from %s", url)
				}
				return "200 OK", nil
			})
		},
	})
	out, err := durablytest.TriggerAndRun(t, flaky, "https://example.com")
	if !errors.Is(err, durablytest.ErrNotFinished) || !strings.Contains(err.Error(), "until 2026-01-01T00:01:00Z") {
		t.Fatalf("err = %v; want ErrNotFinished until the second attempt", err)
	}
	msg := fatal(t, func(tb testing.TB) {
		durablytest.RequireTriggered(tb, flaky, "https://example.com", durablytest.Status(durably.StatusCompleted))
	})
	if !strings.Contains(msg, "pending input \"https://example.com\" labels {} run at 2026-01-01T00:01:00Z attempt 1 (differs in status)") {
		t.Fatalf("failure message:\n%s\nwant the run's time and attempt", msg)
	}
	if n := env.Advance(time.Hour); n != 2 {
		t.Fatalf("Advance processed %d runs, want 2 (attempts at 00:01 and 00:02)", n)
	}
	res, err := durablytest.Result(t, flaky, out.RunID)
	if err != nil || res.Output != "200 OK" {
		t.Fatalf("Result = %+v, %v", res, err)
	}
	steps, err := env.Engine.GetSteps(t.Context(), out.RunID)
	if err != nil {
		t.Fatal(err)
	}
	var history []string
	for _, s := range steps {
		history = append(history, fmt.Sprintf("%s#%d %s %s", s.Name, s.Attempt, s.Status, s.StartedAt.Format(time.TimeOnly)))
	}
	want := []string{"get#1 failed 00:00:00", "get#2 failed 00:01:00", "get#3 completed 00:02:00"}
	if strings.Join(history, "; ") != strings.Join(want, "; ") {
		t.Fatalf("steps = %q, want %q", history, want)
	}
}

// TestRequireTriggeredRunAtAndPriority: the criteria of a run triggered
// for later, and what the failure message shows of them.
func TestRequireTriggeredRunAtAndPriority(t *testing.T) {
	env := durablytest.New(t, durably.Config{})
	_, mails := jobs(t, env.Engine)
	at := t0.Add(90 * time.Second)
	if _, err := mails.Trigger(t.Context(), Mail{To: "a@example.com"}, durably.WithRunAt(at), durably.WithPriority(5)); err != nil {
		t.Fatal(err)
	}
	durablytest.RequireTriggered(t, mails, Mail{To: "a@example.com"}, durablytest.RunAt(at), durablytest.Priority(5))
	msg := fatal(t, func(tb testing.TB) {
		durablytest.RequireTriggered(tb, mails, Mail{To: "a@example.com"}, durablytest.RunAt(time.Time{}), durablytest.Priority(1))
	})
	for _, want := range []string{
		`matches input {"to":"a@example.com"}, run at at once, priority 1`,
		`run at 2026-01-01T00:01:30Z priority 5 (differs in run at, priority)`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("failure message:\n%s\nwant it to contain %q", msg, want)
		}
	}
}

// TestChildrenAndSignalsInTests: a parent that waits for a child, which
// waits for a signal, is processed by ProcessDue as each becomes claimable,
// and a wait's timeout falls due with Advance.
func TestChildrenAndSignalsInTests(t *testing.T) {
	env := durablytest.New(t, durably.Config{})
	sig := durably.Signal[string]{Name: "go"}
	child := durably.MustRegister(env.Engine, &durably.Job[int, string]{Name: "child", Signals: []durably.SignalDecl{sig},
		Run: func(ctx context.Context, s *durably.StepContext, n int) (string, error) {
			got, err := durably.WaitForSignal(s, "wait", sig, durably.WithTimeout(time.Hour))
			if errors.Is(err, durably.ErrTimeout) {
				return "timed out", nil
			}
			return got, err
		}})
	parent := durably.MustRegister(env.Engine, &durably.Job[int, string]{Name: "parent",
		Run: func(ctx context.Context, s *durably.StepContext, n int) (string, error) {
			kid, err := child.StartChild(s, "spawn", n)
			if err != nil {
				return "", err
			}
			return durably.AwaitChild(s, "await", kid)
		}})
	ctx := context.Background()
	signalled, err := parent.Trigger(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	left, err := parent.Trigger(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	env.ProcessDue() // both parents and both children wait
	kids, err := env.Engine.GetChildren(ctx, signalled.Run.ID)
	if err != nil || len(kids) != 1 {
		t.Fatal(kids, err)
	}
	if err := durably.SendSignal(ctx, env.Engine, kids[0].ID, sig, "went"); err != nil {
		t.Fatal(err)
	}
	if n := env.ProcessDue(); n != 2 {
		t.Fatalf("the signal made %d runs claimable, want the child and its parent", n)
	}
	if res, err := durablytest.Result(t, parent, signalled.Run.ID); err != nil || res.Output != "went" {
		t.Fatalf("signalled parent: %+v %v", res, err)
	}
	if n := env.Advance(time.Hour); n != 2 {
		t.Fatalf("the timeout made %d runs claimable, want the other child and its parent", n)
	}
	if res, err := durablytest.Result(t, parent, left.Run.ID); err != nil || res.Output != "timed out" {
		t.Fatalf("the other parent: %+v %v", res, err)
	}
}
