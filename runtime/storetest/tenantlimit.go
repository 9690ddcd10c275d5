package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// Per-tenant limits: a job's live leases counted per key scope.

var tenantLimitCases = []Case{
	{"R-216 a tenant at its limit is passed over: another tenant's run is claimed before its urgent backlog", func(t *testing.T, h *Harness) {
		migrate(t, h)
		now := delayEpoch
		var runs []*store.Run
		for i := range 20 { // tenant b's urgent backlog, older than a's run
			runs = append(runs, &store.Run{ID: runID("TENB", i), JobName: "j", KeyScope: `[["org","b"]]`, Priority: 0,
				CreatedAt: now.Add(time.Duration(i) * time.Millisecond)})
		}
		runs = append(runs, &store.Run{ID: runID("TENA", 0), JobName: "j", KeyScope: `[["org","a"]]`, Priority: 5, CreatedAt: now.Add(time.Second)})
		enqueueRuns(t, h.Store, runs...)
		req := store.ClaimRequest{WorkerID: "w", Now: now.Add(2 * time.Second), Lease: time.Hour, Limit: 3, TenantLimits: map[string]int{"j": 2}}
		got := claimIDs(t, h.Store, req)
		want := []string{runID("TENB", 0), runID("TENB", 1), runID("TENA", 0)}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("claimed %v, want b's first two (its limit) and a's run %v", got, want)
		}
		// b is at its limit while its leases live: nothing more of it.
		if got := claimIDs(t, h.Store, req); len(got) != 0 {
			t.Fatalf("claimed %v past b's limit", got)
		}
		// Without the limit b's backlog comes in order.
		req.TenantLimits = nil
		if got := claimIDs(t, h.Store, req); len(got) != 3 || got[0] != runID("TENB", 2) {
			t.Fatalf("without the limit: claimed %v", got)
		}
	}},
	{"R-216 a per-tenant limit holds with several stores claiming at once, per tenant", func(t *testing.T, h *Harness) {
		migrate(t, h)
		ctx := Ctx(t)
		now := delayEpoch
		tenants := []string{`[["org","a"]]`, `[["org","b"]]`, `[["org","c"]]`}
		var runs []*store.Run
		for i := range 45 {
			runs = append(runs, &store.Run{ID: runID("TENC", i), JobName: "capped", KeyScope: tenants[i%3],
				CreatedAt: now.Add(time.Duration(i) * time.Millisecond)})
		}
		// Keyed runs of the job too, so that claims take the locked path.
		runs = append(runs, &store.Run{ID: runID("TENK", 0), JobName: "capped", KeyScope: tenants[0], ConcurrencyKey: "k", CreatedAt: now})
		enqueueRuns(t, h.Store, runs...)
		const limit = 2
		stores := []store.Store{h.Store, h.OpenStore(), h.OpenStore(), h.OpenStore()}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, st := range stores {
			wg.Go(func() {
				<-start
				for range 5 {
					if _, err := st.Claim(ctx, store.ClaimRequest{WorkerID: fmt.Sprintf("w%d", i), Now: now.Add(2 * time.Second), Lease: time.Hour,
						Limit: 2, TenantLimits: map[string]int{"capped": limit}}); err != nil {
						t.Errorf("store %d: claim: %v", i, err)
						return
					}
				}
			})
		}
		close(start)
		wg.Wait()
		leased, err := h.Store.ListRuns(ctx, store.RunFilter{Statuses: []store.Status{store.StatusLeased}})
		if err != nil {
			t.Fatal(err)
		}
		per := map[string]int{}
		for _, r := range leased {
			per[r.KeyScope]++
		}
		for _, scope := range tenants {
			if per[scope] != limit {
				t.Fatalf("leased per tenant %v, want %d each", per, limit)
			}
		}
	}},
	{"R-216 Job.MaxRunningPerTenant limits each tenant's executing runs through the engine", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) {
			c.MaxConcurrentRuns = 6
			c.TenantLabels = []string{"org"}
		})
		var mu sync.Mutex
		running, peak := map[string]int{}, map[string]int{}
		gate := NewGate()
		j := durably.MustRegister(e, &durably.Job[Msg, Msg]{Name: "per-tenant", MaxRunningPerTenant: 2,
			Run: func(ctx context.Context, s *durably.StepContext, in Msg) (Msg, error) {
				org := s.Labels()["org"]
				mu.Lock()
				running[org]++
				peak[org] = max(peak[org], running[org])
				mu.Unlock()
				defer func() {
					mu.Lock()
					running[org]--
					mu.Unlock()
				}()
				return in, gate.Wait(ctx, org)
			}})
		for i := range 6 {
			for _, org := range []string{"a", "b"} {
				MustTrigger(t, j, Msg{fmt.Sprint(i)}, durably.WithLabels(map[string]string{"org": org}))
			}
		}
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		Eventually(t, "two runs of each tenant executing", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return running["a"] == 2 && running["b"] == 2
		})
		gate.Open()
		Eventually(t, "every run to complete", func() bool {
			done, err := e.ListRuns(Ctx(t), durably.RunFilter{Statuses: []durably.Status{durably.StatusCompleted}})
			if err != nil {
				t.Fatal(err)
			}
			return len(done) == 12
		})
		mu.Lock()
		defer mu.Unlock()
		if peak["a"] != 2 || peak["b"] != 2 {
			t.Fatalf("peak executing runs per tenant %v, want 2 each", peak)
		}
	}},
}
