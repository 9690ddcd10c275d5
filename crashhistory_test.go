package durably_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// TestCrashHistoryKeepsTheLast20: a run keeps at most its last 20
// unsuccessful attempts, crashes counted by the stores included.
func TestCrashHistoryKeepsTheLast20(t *testing.T) {
	bothStores(t, "history.db", func(t *testing.T, spec string) {
		clock := &testClock{now: time.Now()}
		job := &durably.Job[fleetInput, string]{Name: "fragile", Retry: &durably.RetryPolicy{MaxAttempts: 100},
			Run: func(ctx context.Context, s *durably.StepContext, in fleetInput) (string, error) { return "done", nil }}
		e, h := parentEngine(t, spec, durably.Config{Now: clock.Now, LeaseDuration: 10 * time.Second}, job)
		ctx := context.Background()
		r, err := h.Trigger(ctx, fleetInput{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 25 {
			runs, err := e.Store().Claim(ctx, store.ClaimRequest{WorkerID: fmt.Sprintf("ghost-%d", i), Now: clock.Now(), Lease: 10 * time.Second, Limit: 1})
			if err != nil || len(runs) != 1 {
				t.Fatalf("crash %d: claim %v %v", i, runs, err)
			}
			clock.Advance(11 * time.Second)
		}
		if _, err := e.Store().ReleaseExpiredLeases(ctx, clock.Now()); err != nil { // the sweep counts the last
			t.Fatal(err)
		}
		got, err := e.GetRun(ctx, r.Run.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Crashes != 25 || len(got.Attempts) > 20 {
			t.Fatalf("%d crashes, %d attempts kept; want 25 crashes and at most the last 20 attempts", got.Crashes, len(got.Attempts))
		}
	})
}
