package storetest

import (
	"reflect"
	"testing"
	"time"

	"github.com/durably-go/durably/store"
)

// The count of runs waiting to be claimed, for metrics (S-053).

var pendingCases = []Case{
	{"S-053 pending runs are counted per job, due and later, and only pending runs", func(t *testing.T, h *Harness) {
		pc, ok := h.Store.(store.PendingCounter)
		if !ok {
			t.Skip("the store does not count pending runs (store.PendingCounter)")
		}
		migrate(t, h)
		st, ctx := h.Store, Ctx(t)
		now := delayEpoch
		count := func(at time.Time) []store.PendingCount {
			t.Helper()
			got, err := pc.CountPending(ctx, at)
			if err != nil {
				t.Fatalf("CountPending: %v", err)
			}
			return got
		}
		if got := count(now); len(got) != 0 {
			t.Fatalf("empty database: %+v", got)
		}
		enqueueRuns(t, st,
			&store.Run{ID: runID("P", 1), JobName: "b", CreatedAt: now},                               // due
			&store.Run{ID: runID("P", 2), JobName: "b", CreatedAt: now, RunAt: now.Add(-time.Minute)}, // due, never promoted
			&store.Run{ID: runID("P", 3), JobName: "b", CreatedAt: now, RunAt: now.Add(time.Hour)},    // later
			&store.Run{ID: runID("P", 4), JobName: "a", CreatedAt: now, RunAt: now.Add(time.Minute)},  // later
			&store.Run{ID: runID("P", 5), JobName: "c", CreatedAt: now},                               // claimed below
		)
		want := []store.PendingCount{{JobName: "a", Due: 0, Later: 1}, {JobName: "b", Due: 2, Later: 1}, {JobName: "c", Due: 1}}
		if got := count(now); !reflect.DeepEqual(got, want) {
			t.Fatalf("counts %+v, want %+v", got, want)
		}
		// Time passing makes later runs due; a run is due at its run_at.
		want = []store.PendingCount{{JobName: "a", Due: 1}, {JobName: "b", Due: 2, Later: 1}, {JobName: "c", Due: 1}}
		if got := count(now.Add(time.Minute)); !reflect.DeepEqual(got, want) {
			t.Fatalf("a minute later: counts %+v, want %+v", got, want)
		}
		// A claimed run is no longer pending; a deferred one waits again;
		// a finished one is history.
		runs, err := st.Claim(ctx, store.ClaimRequest{WorkerID: "w", Now: now, Lease: time.Minute, Limit: 3})
		if err != nil || len(runs) != 3 {
			t.Fatalf("claim: %d runs, %v", len(runs), err)
		}
		byID := map[string]*store.Run{}
		for _, r := range runs {
			byID[r.ID] = r
		}
		lease := func(id string) store.Lease { return store.Lease{RunID: id, Generation: byID[id].LeaseGeneration} }
		if ok, err := st.DeferRun(ctx, lease(runID("P", 1)), store.Deferral{Until: now.Add(time.Hour), Now: now, Attempt: 1}); !ok || err != nil {
			t.Fatalf("defer: %v %v", ok, err)
		}
		if ok, err := st.FinishRun(ctx, lease(runID("P", 5)), store.Finish{Status: store.StatusCompleted, Now: now}); !ok || err != nil {
			t.Fatalf("finish: %v %v", ok, err)
		}
		want = []store.PendingCount{{JobName: "a", Later: 1}, {JobName: "b", Later: 2}}
		if got := count(now); !reflect.DeepEqual(got, want) {
			t.Fatalf("after claim, deferral and finish: counts %+v, want %+v", got, want)
		}
	}},
}
