package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably"
)

var processCases = []Case{
	{"R-113 R-114 processOne and processUntilIdle", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		var calls Counter
		j := durably.MustRegister(e, StepsJob("j", &calls))
		ctx := Ctx(t)
		if ok, err := e.ProcessOne(ctx, ""); ok || err != nil {
			t.Fatalf("empty queue: %v %v", ok, err)
		}
		if n, err := e.ProcessUntilIdle(ctx, "", 0); n != 0 || err != nil {
			t.Fatalf("empty queue: %v %v", n, err)
		}
		for range 5 {
			MustTrigger(t, j, StepsInput{Count: 1})
		}
		if n, err := e.ProcessUntilIdle(ctx, "w1", 2); n != 2 || err != nil {
			t.Fatalf("maxRuns: %d %v", n, err)
		}
		if n, err := e.ProcessUntilIdle(ctx, "w1", 0); n != 3 || err != nil {
			t.Fatalf("rest: %d %v", n, err)
		}
		// ProcessOne claims an expired lease directly, without maintenance.
		r := MustTrigger(t, j, StepsInput{Count: 1})
		if _, err := e.Store().Claim(ctx, claimReq("dead", time.Now().Add(-time.Hour), 1)); err != nil {
			t.Fatal(err)
		}
		if ok, err := e.ProcessOne(ctx, "w2"); !ok || err != nil {
			t.Fatalf("expired lease: %v %v", ok, err)
		}
		if run := MustGet(t, e, r.ID); run.Status != durably.StatusCompleted || run.LeaseGeneration != 2 {
			t.Fatalf("run %+v", run)
		}
	}},
	{"R-115 R-053 concurrent processors split a backlog, each run once", func(t *testing.T, h *Harness) {
		var calls Counter
		var engines []*durably.Engine
		var j *durably.JobHandle[StepsInput, int]
		for i := range 3 {
			st := h.Store
			if i > 0 {
				st = h.OpenStore()
			}
			e := h.EngineOn(st, nil)
			j = durably.MustRegister(e, StepsJob("j", &calls))
			engines = append(engines, e)
		}
		var ids []string
		for range 30 {
			ids = append(ids, MustTrigger(t, j, StepsInput{Count: 2}).ID)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		total := 0
		for i, e := range engines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := e.ProcessUntilIdle(Ctx(t), fmt.Sprintf("w%d", i), 0)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				total += n
				mu.Unlock()
			}()
		}
		wg.Wait()
		if total != 30 {
			t.Fatalf("processed %d runs, want 30", total)
		}
		for _, id := range ids {
			for _, s := range []string{"step-1", "step-2"} {
				if n := calls.Get(id + "/" + s); n != 1 {
					t.Fatalf("%s/%s ran %d times", id, s, n)
				}
			}
		}
	}},
}
