package durably_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably"
)

// TestTenantBacklogCannotDelayAnotherTenant: with MaxRunningPerTenant
// below the slots, one tenant's backlog of urgent runs leaves a slot to
// the other tenants, so another tenant's run of a larger priority number
// begins within moments, where it waited for the whole backlog.
func TestTenantBacklogCannotDelayAnotherTenant(t *testing.T) {
	bothStores(t, "fair.db", func(t *testing.T, spec string) {
		const runTime = 500 * time.Millisecond
		var mu sync.Mutex
		began := map[string]time.Time{}
		job := &durably.Job[fleetInput, string]{Name: "work", MaxRunningPerTenant: 1,
			Run: func(ctx context.Context, s *durably.StepContext, in fleetInput) (string, error) {
				mu.Lock()
				began[in.Tag] = time.Now()
				mu.Unlock()
				select {
				case <-time.After(runTime):
				case <-ctx.Done():
				}
				return in.Tag, nil
			}}
		e, h := parentEngine(t, spec, durably.Config{MaxConcurrentRuns: 2, PollingInterval: time.Minute, TenantLabels: []string{"org"}}, job)
		ctx := context.Background()
		b := durably.WithLabels(map[string]string{"org": "b"})
		for i := range 10 {
			if _, err := h.Trigger(ctx, fleetInput{Tag: fmt.Sprint("b", i)}, b, durably.WithPriority(0)); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.Stop(context.Background()) })
		waitFor(t, 10*time.Second, "b's first run", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(began) > 0
		})
		triggered := time.Now()
		if _, err := h.Trigger(ctx, fleetInput{Tag: "a"}, durably.WithLabels(map[string]string{"org": "a"}), durably.WithPriority(5)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, "a's run to begin", func() bool {
			mu.Lock()
			defer mu.Unlock()
			_, ok := began["a"]
			return ok
		})
		mu.Lock()
		defer mu.Unlock()
		// Without the limit, b's backlog took both slots and a's run
		// began after it, 2.5 s later.
		if wait := began["a"].Sub(triggered); wait > runTime {
			t.Fatalf("a's run began %v after its trigger, behind b's backlog; want within one run (%v)", wait, runTime)
		}
	})
}
