package durably_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
)

// TestStepTimeoutPanicFailsRun: a step function that panics fails its run,
// as it does without a timeout, instead of ending the process; with a step
// timeout the function runs on a goroutine of its own (awaitBounded).
func TestStepTimeoutPanicFailsRun(t *testing.T) {
	for _, timeout := range []time.Duration{0, time.Minute} {
		job := &durably.Job[fleetInput, string]{Name: "panics", StepTimeout: timeout,
			Run: func(ctx context.Context, s *durably.StepContext, in fleetInput) (string, error) {
				return durably.RunStep(s, "boom", func(ctx context.Context) (string, error) { panic("boom") })
			}}
		e, h := parentEngine(t, newStoreSpec(t, "sqlite", "panic.db"), durably.Config{}, job)
		r, err := h.Trigger(context.Background(), fleetInput{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.ProcessUntilIdle(context.Background(), "", 0); err != nil {
			t.Fatal(err)
		}
		got, err := e.GetRun(context.Background(), r.Run.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != durably.StatusFailed || !strings.Contains(got.Error, "panicked") {
			t.Fatalf("step timeout %v: run %s %q, want failed for the panic", timeout, got.Status, got.Error)
		}
	}
}

// TestRunTimeoutStepPanicFailsRun: likewise under a job Timeout, which runs
// the body on a goroutine of its own.
func TestRunTimeoutStepPanicFailsRun(t *testing.T) {
	job := &durably.Job[fleetInput, string]{Name: "panics", Timeout: time.Minute,
		Run: func(ctx context.Context, s *durably.StepContext, in fleetInput) (string, error) {
			panic("body boom")
		}}
	e, h := parentEngine(t, newStoreSpec(t, "sqlite", "panic.db"), durably.Config{}, job)
	r, err := h.Trigger(context.Background(), fleetInput{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ProcessUntilIdle(context.Background(), "", 0); err != nil {
		t.Fatal(err)
	}
	got, err := e.GetRun(context.Background(), r.Run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != durably.StatusFailed || !strings.Contains(got.Error, "panicked") {
		t.Fatalf("run %s %q, want failed for the panic", got.Status, got.Error)
	}
}
