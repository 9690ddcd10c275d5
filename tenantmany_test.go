package durably_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably"
)

// TestManyTenantsBacklogsStartAtOnce: with as many tenants as free slots,
// each at most one run at a time and each with a backlog queued one tenant
// after another, every tenant's first run starts at the first claim, not
// at a poll after it (R-216: a scope at its limit is passed over).
func TestManyTenantsBacklogsStartAtOnce(t *testing.T) {
	bothStores(t, "tenants.db", func(t *testing.T, spec string) {
		const tenants, backlog = 16, 10
		var mu sync.Mutex
		began := map[string]time.Time{}
		release := make(chan struct{})
		job := &durably.Job[fleetInput, string]{Name: "work", MaxRunningPerTenant: 1,
			Run: func(ctx context.Context, s *durably.StepContext, in fleetInput) (string, error) {
				mu.Lock()
				began[s.Labels()["org"]] = time.Now()
				mu.Unlock()
				select {
				case <-release:
				case <-ctx.Done():
				}
				return in.Tag, nil
			}}
		e, h := parentEngine(t, spec, durably.Config{MaxConcurrentRuns: tenants, PollingInterval: time.Minute, TenantLabels: []string{"org"}}, job)
		ctx := context.Background()
		for org := range tenants {
			for i := range backlog {
				if _, err := h.Trigger(ctx, fleetInput{Tag: fmt.Sprint(org, "-", i)}, durably.WithLabels(map[string]string{"org": fmt.Sprint("t", org)})); err != nil {
					t.Fatal(err)
				}
			}
		}
		started := time.Now()
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { close(release); _ = e.Stop(context.Background()) })
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			n := len(began)
			mu.Unlock()
			if n == tenants {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d tenants' runs began within %v of the start, with a slot free for each", n, tenants, time.Since(started))
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}
