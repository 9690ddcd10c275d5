package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// Delayed and scheduled runs, priorities, job limits and deferrals (issue
// 14; R-200 … R-207, S-051 in docs/contract.md).

// delayEpoch is the fake clock's start in the cases below.
var delayEpoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeEngine is an engine on a fake clock starting at delayEpoch; its
// worker is not started: the cases claim with ProcessOne or the store.
func fakeEngine(h *Harness, st store.Store, cfg func(*durably.Config)) (*durably.Engine, *fakeClock) {
	clock := newFakeClock(delayEpoch)
	e := h.EngineOn(st, func(c *durably.Config) {
		c.Now = clock.Now
		if cfg != nil {
			cfg(c)
		}
	})
	return e, clock
}

// migrate brings the case's database to the latest schema, for cases
// that use the store without an engine.
func migrate(t *testing.T, h *Harness) {
	t.Helper()
	if err := h.Store.Migrate(Ctx(t)); err != nil {
		t.Fatalf("migrate: %v", err)
	}
}

// enqueueRuns inserts runs straight through the store, as a trigger would.
func enqueueRuns(t *testing.T, st store.Store, runs ...*store.Run) []*store.Run {
	t.Helper()
	items := make([]store.NewRun, len(runs))
	for i, r := range runs {
		if r.Labels == nil {
			r.Labels = map[string]string{}
		}
		if r.Input == nil {
			r.Input = []byte(`{}`)
		}
		items[i] = store.NewRun{Run: r}
	}
	res, err := st.Enqueue(Ctx(t), items)
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	out := make([]*store.Run, len(res))
	for i, r := range res {
		out[i] = r.Run
	}
	return out
}

func errorsIsConflict(err error) bool { return errors.Is(err, durably.ErrConflict) }

func errorsIsStoreConflict(err error) bool {
	var ce *store.ConflictError
	return errors.As(err, &ce)
}

// runID makes distinct, ordered run ids for store-level cases.
func runID(prefix string, i int) string { return fmt.Sprintf("01J%s%019d", prefix, i) }

func claimIDs(t *testing.T, st store.Store, req store.ClaimRequest) []string {
	t.Helper()
	runs, err := st.Claim(Ctx(t), req)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	ids := make([]string, len(runs))
	for i, r := range runs {
		ids[i] = r.ID
	}
	return ids
}

var delayCases = []Case{
	{"R-200 a delayed run is not claimed before its time and is claimed at it", func(t *testing.T, h *Harness) {
		e, clock := fakeEngine(h, h.Store, nil)
		j := durably.MustRegister(e, EchoJob("j"))
		ctx := Ctx(t)
		cases := []struct {
			name  string
			opts  []durably.Option
			runAt time.Time // zero: at once
		}{
			{"delay", []durably.Option{durably.WithDelay(time.Hour)}, delayEpoch.Add(time.Hour)},
			{"run-at", []durably.Option{durably.WithRunAt(delayEpoch.Add(2 * time.Hour))}, delayEpoch.Add(2 * time.Hour)},
			{"the later of both", []durably.Option{durably.WithRunAt(delayEpoch.Add(3 * time.Hour)), durably.WithDelay(time.Minute)}, delayEpoch.Add(3 * time.Hour)},
			{"run-at in the past is at once", []durably.Option{durably.WithRunAt(delayEpoch.Add(-time.Hour))}, time.Time{}},
			{"no delay is at once", []durably.Option{durably.WithDelay(0)}, time.Time{}},
		}
		ids := make([]string, len(cases))
		for i, c := range cases {
			r := MustTrigger(t, j, Msg{c.name}, c.opts...)
			ids[i] = r.ID
			if !r.RunAt.Equal(c.runAt) || r.Status != store.StatusPending {
				t.Fatalf("%s: trigger returned runAt %v status %s, want %v pending", c.name, r.RunAt, r.Status, c.runAt)
			}
			if got := MustGet(t, e, r.ID); !got.RunAt.Equal(c.runAt) {
				t.Fatalf("%s: stored runAt %v, want %v", c.name, got.RunAt, c.runAt)
			}
		}
		// The two immediate runs, and nothing else, until the first is due.
		if n, err := e.ProcessUntilIdle(ctx, "w", 0); err != nil || n != 2 {
			t.Fatalf("at the trigger: processed %d, %v; want the 2 immediate runs", n, err)
		}
		for i, c := range cases[:3] {
			clock.Set(c.runAt.Add(-time.Millisecond))
			if ok, err := e.ProcessOne(ctx, "w"); err != nil || ok {
				t.Fatalf("%s: claimed 1ms before its time: %v %v", c.name, ok, err)
			}
			clock.Set(c.runAt)
			if ok, err := e.ProcessOne(ctx, "w"); err != nil || !ok {
				t.Fatalf("%s: not claimed at its time: %v %v", c.name, ok, err)
			}
			if r := MustGet(t, e, ids[i]); r.Status != store.StatusCompleted || !r.RunAt.Equal(c.runAt) {
				t.Fatalf("%s: after its time: %s, runAt %v", c.name, r.Status, r.RunAt)
			}
		}
		_, err := j.Trigger(ctx, Msg{"x"}, durably.WithDelay(-time.Second))
		WantKind(t, err, durably.ErrValidation, "delay must not be negative, got -1s")
	}},
	{"R-201 a scheduled run is listed, cancelled and streamed like any pending run", func(t *testing.T, h *Harness) {
		e, clock := fakeEngine(h, h.Store, nil)
		j := durably.MustRegister(e, EchoJob("j"))
		rec := Record(t, e)
		ctx := Ctx(t)
		r := MustTrigger(t, j, Msg{"later"}, durably.WithDelay(time.Hour), durably.WithLabels(map[string]string{"org": "a"}))
		stream, err := e.SubscribeRun(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		listed, err := e.ListRuns(ctx, durably.RunFilter{Statuses: []store.Status{store.StatusPending}, Labels: map[string]string{"org": "a"}})
		if err != nil || len(listed) != 1 || listed[0].ID != r.ID || !listed[0].RunAt.Equal(delayEpoch.Add(time.Hour)) {
			t.Fatalf("list of pending runs: %+v %v", listed, err)
		}
		if got := rec.Types(r.ID); !reflect.DeepEqual(got, []string{"run:trigger"}) {
			t.Fatalf("events of the scheduled run: %v", got)
		}
		if err := e.Cancel(ctx, r.ID); err != nil {
			t.Fatalf("cancel of a scheduled run: %v", err)
		}
		select {
		case ev := <-stream:
			if ev.Type != durably.EventRunCancel {
				t.Fatalf("stream of the scheduled run: %s, want run:cancel", ev.Type)
			}
		case <-ctx.Done():
			t.Fatal("no run:cancel on the run's stream")
		}
		if got := MustGet(t, e, r.ID); got.Status != store.StatusCancelled {
			t.Fatalf("after cancel: %s", got.Status)
		}
		clock.Set(delayEpoch.Add(2 * time.Hour))
		if ok, err := e.ProcessOne(ctx, "w"); err != nil || ok {
			t.Fatalf("a cancelled scheduled run was claimed at its time: %v %v", ok, err)
		}
	}},
	{"R-202 idempotency and concurrency keys apply to scheduled runs as to any pending run", func(t *testing.T, h *Harness) {
		e, _ := fakeEngine(h, h.Store, nil)
		j := durably.MustRegister(e, EchoJob("j"))
		ctx := Ctx(t)
		first, err := j.Trigger(ctx, Msg{"a"}, durably.WithDelay(time.Hour), durably.WithIdempotencyKey("once"))
		if err != nil || first.Disposition != durably.Created {
			t.Fatalf("first: %+v %v", first, err)
		}
		again, err := j.Trigger(ctx, Msg{"b"}, durably.WithIdempotencyKey("once"))
		if err != nil || again.Disposition != durably.Idempotent || again.Run.ID != first.Run.ID {
			t.Fatalf("idempotent trigger: %+v %v", again, err)
		}
		keyed, err := j.Trigger(ctx, Msg{"c"}, durably.WithDelay(time.Hour), durably.WithConcurrencyKey("k"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = j.Trigger(ctx, Msg{"d"}, durably.WithConcurrencyKey("k"))
		if !errorsIsConflict(err) {
			t.Fatalf("a second pending run of the key: %v, want a conflict", err)
		}
		co, err := j.Trigger(ctx, Msg{"e"}, durably.WithConcurrencyKey("k"), durably.WithCoalesceSkip())
		if err != nil || co.Disposition != durably.Coalesced || co.Run.ID != keyed.Run.ID {
			t.Fatalf("coalesce onto the scheduled run: %+v %v", co, err)
		}
	}},
	{"R-203 runs are claimed by priority, smaller first, then oldest first", func(t *testing.T, h *Harness) {
		e, clock := fakeEngine(h, h.Store, nil)
		job := EchoJob("j")
		job.Priority = 5
		j := durably.MustRegister(e, job)
		ctx := Ctx(t)
		trigger := func(name string, opts ...durably.Option) string {
			clock.Set(clock.Now().Add(time.Millisecond)) // distinct creation times
			return MustTrigger(t, j, Msg{name}, opts...).ID
		}
		jobDefault := trigger("job default (5), oldest")
		late := trigger("due later, priority 0", durably.WithDelay(time.Second), durably.WithPriority(0))
		low := trigger("priority 9", durably.WithPriority(9))
		jobDefault2 := trigger("job default (5), newer")
		urgent := trigger("priority -3", durably.WithPriority(-3))
		urgent2 := trigger("priority -3, newer", durably.WithPriority(-3))
		if r := MustGet(t, e, jobDefault); r.Priority != 5 {
			t.Fatalf("Job.Priority: run has priority %d", r.Priority)
		}
		clock.Set(clock.Now().Add(2 * time.Second)) // the delayed run is due
		var order []string
		for {
			runs, err := e.Store().Claim(ctx, store.ClaimRequest{WorkerID: "w", Now: clock.Now(), Lease: 24 * time.Hour, Limit: 1})
			if err != nil {
				t.Fatal(err)
			}
			if len(runs) == 0 {
				break
			}
			order = append(order, runs[0].ID)
		}
		want := []string{urgent, urgent2, late, jobDefault, jobDefault2, low}
		if !reflect.DeepEqual(order, want) {
			t.Fatalf("claim order %v, want %v", order, want)
		}
		// A claim of several returns them in the same order.
		st := h.OpenStore()
		var runs []*store.Run
		for i, p := range []int{3, 1, 2, 1} {
			runs = append(runs, &store.Run{ID: runID("PRIO", i), JobName: "j", Priority: p, CreatedAt: delayEpoch.Add(time.Duration(i) * time.Millisecond)})
		}
		enqueueRuns(t, st, runs...)
		got := claimIDs(t, st, claimReq("w", delayEpoch.Add(time.Hour), 10))
		if want := []string{runs[1].ID, runs[3].ID, runs[2].ID, runs[0].ID}; !reflect.DeepEqual(got, want) {
			t.Fatalf("one claim of four: %v, want %v", got, want)
		}
	}},
	{"R-050 R-051 R-203 R-204 a claim of many takes runs in claim order around keyed and limited ones", func(t *testing.T, h *Harness) {
		// Key-less runs of unlimited jobs need no check; a store may claim
		// them together (SQLite: ClaimBatch) as long as the result is what
		// claiming one by one gives: keyed and limited runs in their place,
		// the blocked ones left pending.
		migrate(t, h)
		now := time.Now().Add(-time.Minute).Truncate(time.Millisecond).UTC()
		run := func(id, job, key string, prio, sec int) *store.Run {
			return &store.Run{ID: id, JobName: job, ConcurrencyKey: key, Priority: prio, CreatedAt: now.Add(time.Duration(sec) * time.Second)}
		}
		enqueueRuns(t, h.Store,
			run(runID("MIXF", 1), "free", "", 0, 1),
			run(runID("MIXK", 1), "free", "k", 0, 2),
			run(runID("MIXF", 2), "free", "", 0, 3),
			run(runID("MIXK", 2), "other", "k", 0, 4), // blocked by MIXK1's lease
			run(runID("MIXL", 1), "lim", "", 0, 5),
			run(runID("MIXL", 2), "lim", "", 0, 6), // blocked by the limit
			run(runID("MIXF", 3), "free", "", 0, 7),
			run(runID("MIXF", 4), "free", "", -1, 8), // first: smaller priority
			run(runID("MIXF", 5), "free", "", 1, 0),  // last: larger priority
		)
		req := func(limit int) store.ClaimRequest {
			return store.ClaimRequest{WorkerID: "w", Now: now.Add(time.Minute), Lease: time.Hour, Limit: limit, JobLimits: map[string]int{"lim": 1}}
		}
		if got, want := claimIDs(t, h.Store, req(3)), []string{runID("MIXF", 4), runID("MIXF", 1), runID("MIXK", 1)}; !slices.Equal(got, want) {
			t.Fatalf("first claim %v, want %v", got, want)
		}
		if got, want := claimIDs(t, h.Store, req(10)), []string{runID("MIXF", 2), runID("MIXL", 1), runID("MIXF", 3), runID("MIXF", 5)}; !slices.Equal(got, want) {
			t.Fatalf("second claim %v, want %v", got, want)
		}
		if got := claimIDs(t, h.Store, req(10)); len(got) != 0 {
			t.Fatalf("claimed blocked runs %v", got)
		}
	}},
	{"R-204 a job limit of N holds with several stores claiming at once", func(t *testing.T, h *Harness) {
		migrate(t, h)
		ctx := Ctx(t)
		now := delayEpoch
		var runs []*store.Run
		for i := range 30 {
			runs = append(runs, &store.Run{ID: runID("LIMA", i), JobName: "limited", CreatedAt: now.Add(time.Duration(i) * time.Millisecond)})
		}
		for i := range 6 { // newer than every limited run: a limited backlog must not hold them up
			runs = append(runs, &store.Run{ID: runID("LIMB", i), JobName: "free", CreatedAt: now.Add(time.Second + time.Duration(i)*time.Millisecond)})
		}
		enqueueRuns(t, h.Store, runs...)
		const limit = 3
		stores := []store.Store{h.Store, h.OpenStore(), h.OpenStore(), h.OpenStore()}
		var mu sync.Mutex
		byJob := map[string]int{}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, st := range stores {
			wg.Go(func() {
				<-start
				for range 5 {
					got, err := st.Claim(ctx, store.ClaimRequest{WorkerID: fmt.Sprintf("w%d", i), Now: now.Add(2 * time.Second), Lease: time.Hour, Limit: 2,
						JobLimits: map[string]int{"limited": limit}})
					if err != nil {
						t.Errorf("store %d: claim: %v", i, err)
						return
					}
					mu.Lock()
					for _, r := range got {
						byJob[r.JobName]++
					}
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		if byJob["limited"] != limit || byJob["free"] != 6 {
			t.Fatalf("claimed %v, want %d limited and all 6 free", byJob, limit)
		}
		leasedNow := func() int {
			all, err := h.Store.ListRuns(ctx, store.RunFilter{Statuses: []store.Status{store.StatusLeased}, JobNames: []string{"limited"}})
			if err != nil {
				t.Fatal(err)
			}
			return len(all)
		}
		if n := leasedNow(); n != limit {
			t.Fatalf("%d limited runs leased, want %d", n, limit)
		}
		// A finished run makes room for one more, and only one.
		all, err := h.Store.ListRuns(ctx, store.RunFilter{Statuses: []store.Status{store.StatusLeased}, JobNames: []string{"limited"}})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := h.Store.FinishRun(ctx, store.Lease{RunID: all[0].ID, Generation: all[0].LeaseGeneration},
			store.Finish{Status: store.StatusCompleted, Now: now.Add(3 * time.Second)}); err != nil || !ok {
			t.Fatalf("finish: %v %v", ok, err)
		}
		req := store.ClaimRequest{WorkerID: "w", Now: now.Add(3 * time.Second), Lease: time.Hour, Limit: 10, JobLimits: map[string]int{"limited": limit}}
		if got := claimIDs(t, stores[2], req); len(got) != 1 {
			t.Fatalf("after a finish: claimed %d, want 1", len(got))
		}
		// Expired leases do not count: once they expire, the limit is free again
		// (and the expired ones are claimable themselves).
		req.Now = now.Add(2 * time.Hour)
		got, err := stores[1].Claim(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		counts := map[string]int{}
		for _, r := range got {
			counts[r.JobName]++
		}
		if counts["limited"] != limit || counts["free"] != 6 {
			t.Fatalf("after the leases expired: claimed %v, want %d limited and the 6 free runs' expired leases", counts, limit)
		}
		// Without a limit for the job, a claim takes what it asks for.
		req.JobLimits = nil
		if got := claimIDs(t, stores[3], req); len(got) != 10 {
			t.Fatalf("without the limit: claimed %d, want 10", len(got))
		}
	}},
	{"R-204 Job.MaxRunning holds across engines and does not hold up other jobs", func(t *testing.T, h *Harness) {
		var running, most atomic.Int64
		release := make(chan struct{})
		limited := &durably.Job[Msg, Msg]{Name: "limited", MaxRunning: 2, Run: func(ctx context.Context, s *durably.StepContext, in Msg) (Msg, error) {
			n := running.Add(1)
			defer running.Add(-1)
			for {
				m := most.Load()
				if n <= m || most.CompareAndSwap(m, n) {
					break
				}
			}
			select {
			case <-release:
			case <-ctx.Done():
				return Msg{}, ctx.Err()
			}
			return in, nil
		}}
		var engines []*durably.Engine
		var handle *durably.JobHandle[Msg, Msg]
		var free *durably.JobHandle[Msg, Msg]
		for i := range 3 {
			st := h.Store
			if i > 0 {
				st = h.OpenStore()
			}
			e := h.EngineOn(st, func(c *durably.Config) { c.MaxConcurrentRuns = 4 })
			hj := durably.MustRegister(e, limited)
			fj := durably.MustRegister(e, EchoJob("free"))
			if i == 0 {
				handle, free = hj, fj
			}
			engines = append(engines, e)
		}
		ids := make([]string, 8)
		for i := range ids {
			ids[i] = MustTrigger(t, handle, Msg{fmt.Sprint(i)}).ID
		}
		for _, e := range engines {
			if err := e.Start(); err != nil {
				t.Fatal(err)
			}
		}
		Eventually(t, "two limited runs to execute", func() bool { return running.Load() == 2 })
		// Other jobs run meanwhile, on the slots the limit leaves free.
		out, err := free.TriggerAndWait(Ctx(t), Msg{"free"})
		if err != nil || out.Output.Message != "free" {
			t.Fatalf("a run of another job while the limited job is at its limit: %+v %v", out, err)
		}
		if m := most.Load(); m != 2 {
			t.Fatalf("%d limited runs at once, want 2", m)
		}
		close(release)
		Eventually(t, "every limited run to complete", func() bool {
			for _, id := range ids {
				if MustGet(t, engines[0], id).Status != store.StatusCompleted {
					return false
				}
			}
			return true
		})
		if m := most.Load(); m > 2 {
			t.Fatalf("%d limited runs at once, want at most 2", m)
		}
	}},
	{"R-205 DeferRun is fenced, records its steps, and the run is claimable again at Until and not before", func(t *testing.T, h *Harness) {
		migrate(t, h)
		ctx := Ctx(t)
		st := h.Store
		now := delayEpoch
		enqueueRuns(t, st, &store.Run{ID: runID("DEFR", 1), JobName: "j", CreatedAt: now})
		claimed, err := st.Claim(ctx, claimReq("w", now, 1))
		if err != nil || len(claimed) != 1 {
			t.Fatalf("claim: %v %v", claimed, err)
		}
		run := claimed[0]
		lease := store.Lease{RunID: run.ID, Generation: run.LeaseGeneration}
		until := now.Add(time.Minute)
		steps := []*store.Step{
			{ID: runID("STPA", 1), RunID: run.ID, Name: "fetch", Index: 0, Status: store.StepCompleted, Output: []byte(`1`), StartedAt: now, CompletedAt: now, Attempt: 1},
			{ID: runID("STPB", 1), RunID: run.ID, Name: "send", Index: 1, Status: store.StepFailed, Error: "timeout", StartedAt: now, CompletedAt: now, Attempt: 1},
		}
		d := store.Deferral{Until: until, Now: now.Add(time.Second), Steps: steps, CurrentStepIndex: 1, CompletedStepCount: 1, Attempt: 1}
		stale := store.Lease{RunID: run.ID, Generation: run.LeaseGeneration + 1}
		if ok, err := st.DeferRun(ctx, stale, d); err != nil || ok {
			t.Fatalf("deferral with a stale generation: %v %v", ok, err)
		}
		if got, _ := st.GetSteps(ctx, run.ID); len(got) != 0 {
			t.Fatalf("a refused deferral recorded %d steps", len(got))
		}
		if got, _ := st.GetRun(ctx, run.ID); got.Status != store.StatusLeased || !got.RunAt.IsZero() {
			t.Fatalf("a refused deferral changed the run: %s %v", got.Status, got.RunAt)
		}
		if ok, err := st.DeferRun(ctx, lease, d); err != nil || !ok {
			t.Fatalf("deferral: %v %v", ok, err)
		}
		got, err := st.GetRun(ctx, run.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != store.StatusPending || !got.RunAt.Equal(until) || got.Attempt != 1 || got.LeaseOwner != "" ||
			!got.LeaseExpiresAt.IsZero() || !got.StartedAt.Equal(run.StartedAt) || got.CurrentStepIndex != 1 || got.CompletedStepCount != 1 {
			t.Fatalf("deferred run: %+v", got)
		}
		recorded, err := st.GetSteps(ctx, run.ID)
		if err != nil || len(recorded) != 2 || recorded[1].Status != store.StepFailed || recorded[1].Attempt != 1 || recorded[0].Attempt != 1 {
			t.Fatalf("recorded steps: %+v %v", recorded, err)
		}
		// The holder's writes are refused from now on.
		if ok, _ := st.FinishRun(ctx, lease, store.Finish{Status: store.StatusCompleted, Now: now.Add(2 * time.Second)}); ok {
			t.Fatal("the deferred lease finished its run")
		}
		if ids := claimIDs(t, st, claimReq("w", until.Add(-time.Millisecond), 5)); len(ids) != 0 {
			t.Fatalf("claimed 1ms before Until: %v", ids)
		}
		again, err := st.Claim(ctx, claimReq("w2", until, 5))
		if err != nil || len(again) != 1 || again[0].ID != run.ID {
			t.Fatalf("claim at Until: %v %v", again, err)
		}
		if r := again[0]; r.LeaseGeneration <= run.LeaseGeneration || r.Attempt != 1 || !r.StartedAt.Equal(run.StartedAt) || r.LeaseOwner != "w2" {
			t.Fatalf("claimed again: %+v", r)
		}
		// A deferral to a time already past is claimable at once.
		lease = store.Lease{RunID: run.ID, Generation: again[0].LeaseGeneration}
		if ok, err := st.DeferRun(ctx, lease, store.Deferral{Until: until, Now: until.Add(time.Second), CurrentStepIndex: 1, CompletedStepCount: 1, Attempt: 2}); err != nil || !ok {
			t.Fatalf("second deferral: %v %v", ok, err)
		}
		again, err = st.Claim(ctx, claimReq("w", until.Add(time.Second), 5))
		if err != nil || len(again) != 1 {
			t.Fatalf("a run deferred to the past was not claimed at once: %v %v", again, err)
		}
		// A deferral without a time is claimable at once (Until = Now).
		lease = store.Lease{RunID: run.ID, Generation: again[0].LeaseGeneration}
		later := until.Add(2 * time.Second)
		if ok, err := st.DeferRun(ctx, lease, store.Deferral{Now: later, CurrentStepIndex: 1, CompletedStepCount: 1, Attempt: 3}); err != nil || !ok {
			t.Fatalf("deferral without a time: %v %v", ok, err)
		}
		if r, _ := st.GetRun(ctx, run.ID); !r.RunAt.Equal(later) || r.Attempt != 3 {
			t.Fatalf("deferred without a time: runAt %v attempt %d, want %v 3", r.RunAt, r.Attempt, later)
		}
		if ids := claimIDs(t, st, claimReq("w", later, 5)); len(ids) != 1 {
			t.Fatalf("a run deferred without a time was not claimed at once: %v", ids)
		}
	}},
	{"R-205 a deferral of a keyed run with a pending sibling is not refused", func(t *testing.T, h *Harness) {
		migrate(t, h)
		ctx := Ctx(t)
		st := h.Store
		now := delayEpoch
		enqueueRuns(t, st, &store.Run{ID: runID("KEYA", 1), JobName: "j", ConcurrencyKey: "k", CreatedAt: now})
		claimed, err := st.Claim(ctx, claimReq("w", now, 1))
		if err != nil || len(claimed) != 1 {
			t.Fatalf("claim: %v %v", claimed, err)
		}
		lease := store.Lease{RunID: claimed[0].ID, Generation: claimed[0].LeaseGeneration}
		sibling := enqueueRuns(t, st, &store.Run{ID: runID("KEYB", 1), JobName: "j", ConcurrencyKey: "k", CreatedAt: now.Add(time.Millisecond)})[0]
		until := now.Add(time.Minute)
		if ok, err := st.DeferRun(ctx, lease, store.Deferral{Until: until, Now: now.Add(time.Second), Attempt: 1}); err != nil || !ok {
			t.Fatalf("deferral with a pending sibling: %v %v", ok, err)
		}
		// The sibling holds the key for new triggers: a third conflicts, and
		// coalesces onto the sibling, not onto the deferred run.
		_, err = st.Enqueue(ctx, []store.NewRun{{Run: &store.Run{ID: runID("KEYC", 1), JobName: "j", ConcurrencyKey: "k", Input: []byte(`{}`), Labels: map[string]string{}, CreatedAt: now.Add(2 * time.Second)}}})
		if !errorsIsStoreConflict(err) {
			t.Fatalf("a third pending run of the key: %v, want a conflict", err)
		}
		co, err := st.Enqueue(ctx, []store.NewRun{{Coalesce: true, Run: &store.Run{ID: runID("KEYD", 1), JobName: "j", ConcurrencyKey: "k", Input: []byte(`{}`), Labels: map[string]string{}, CreatedAt: now.Add(2 * time.Second)}}})
		if err != nil || co[0].Disposition != store.Coalesced || co[0].Run.ID != sibling.ID {
			t.Fatalf("coalesce: %+v %v", co, err)
		}
		// At Until both are eligible, one lease per key at a time.
		ids := claimIDs(t, st, claimReq("w", until, 5))
		if len(ids) != 1 {
			t.Fatalf("claimed %v, want one run of the key", ids)
		}
	}},
	{"R-206 a worker starts the runs it delayed within moments of their times, not at the next poll", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) { c.PollingInterval = time.Minute; c.MaxConcurrentRuns = 4 })
		j := durably.MustRegister(e, EchoJob("j"))
		var mu sync.Mutex
		leasedAt := map[string]time.Time{}
		t.Cleanup(e.OnEvent(func(ev durably.Event) {
			if ev.Type == durably.EventRunLeased {
				mu.Lock()
				leasedAt[ev.RunID] = time.Now()
				mu.Unlock()
			}
		}))
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		// Due times close together, so that some pass while the worker
		// is busy starting the runs due before them: each must still be
		// claimed at its time.
		const n = 100
		runAt := map[string]time.Time{}
		for i := range n {
			r := MustTrigger(t, j, Msg{fmt.Sprint(i)}, durably.WithDelay(200*time.Millisecond+time.Duration(i)*2*time.Millisecond))
			runAt[r.ID] = r.RunAt
		}
		Eventually(t, "every delayed run to be claimed (polling interval 1m)", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(leasedAt) == n
		})
		var worst time.Duration
		for id, at := range leasedAt {
			late := at.Sub(runAt[id])
			if late < 0 {
				t.Fatalf("run %s claimed %v before its time", id, -late)
			}
			worst = max(worst, late)
		}
		t.Logf("%d delayed runs, claimed at most %v after their times", n, worst)
		// Milliseconds on a quiet machine (the log shows them); the bound
		// is far below the minute a poll would take, and above what the
		// whole suite's load on two cores under -race adds (0.5–1 s seen).
		if worst > 2*time.Second {
			t.Fatalf("a delayed run was claimed %v after its time (polling interval 1m)", worst)
		}
	}},
	{"S-015 S-051 a version-3 database migrates to version 4 with its runs intact and claimable", func(t *testing.T, h *Harness) {
		ctx := Ctx(t)
		const seed = `
INSERT INTO durably_runs (id, job_name, input, status, concurrency_key, key_scope, labels, current_step_index, completed_step_count,
  lease_generation, created_at, updated_at)
VALUES ('01J00000000000000000V3PEND', 'j', '{"n":1}', 'pending', 'ck', '', '{}', 0, 0, 0,
  '2026-01-01T00:00:00.125Z', '2026-01-01T00:00:00.125Z');
INSERT INTO durably_runs (id, job_name, input, status, labels, current_step_index, completed_step_count,
  lease_owner, lease_expires_at, lease_generation, started_at, created_at, updated_at)
VALUES ('01J00000000000000000V3LEAS', 'j', '{"n":2}', 'leased', '{}', 1, 1,
  'worker-1', '2026-01-01T00:10:00.000Z', 2, '2026-01-01T00:00:01.000Z', '2026-01-01T00:00:00.500Z', '2026-01-01T00:00:01.000Z');
INSERT INTO durably_steps (id, run_id, name, "index", status, output, started_at, completed_at)
VALUES ('01J00000000000000000V3STEP', '01J00000000000000000V3LEAS', 'first', 0, 'completed', '{"x":1}',
  '2026-01-01T00:00:01.500Z', '2026-01-01T00:00:01.999Z');`
		if err := h.migrator().MigrateTo(ctx, 3, seed); err != nil {
			t.Fatalf("migrate to version 3: %v", err)
		}
		if err := h.Store.Migrate(ctx); err != nil {
			t.Fatalf("migrate to the latest version: %v", err)
		}
		for _, id := range []string{"01J00000000000000000V3PEND", "01J00000000000000000V3LEAS"} {
			r, err := h.Store.GetRun(ctx, id)
			if err != nil || r == nil || !r.RunAt.IsZero() || r.Priority != 0 || r.Attempt != 0 {
				t.Fatalf("run %s after migration: %+v %v", id, r, err)
			}
		}
		steps, err := h.Store.GetSteps(ctx, "01J00000000000000000V3LEAS")
		if err != nil || len(steps) != 1 || steps[0].Attempt != 1 || string(steps[0].Output) != `{"x":1}` {
			t.Fatalf("steps after migration: %+v %v", steps, err)
		}
		// The pending run still holds its key and is claimable at once.
		_, err = h.Store.Enqueue(ctx, []store.NewRun{{Run: &store.Run{ID: runID("MIGR", 1), JobName: "j", ConcurrencyKey: "ck", Input: []byte(`{}`), Labels: map[string]string{}, CreatedAt: delayEpoch}}})
		if !errorsIsStoreConflict(err) {
			t.Fatalf("a second pending run of a migrated key: %v, want a conflict", err)
		}
		at := time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC) // before the lease expires
		if ids := claimIDs(t, h.Store, claimReq("w", at, 5)); len(ids) != 1 || ids[0] != "01J00000000000000000V3PEND" {
			t.Fatalf("claim after migration: %v", ids)
		}
		if err := h.Store.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	}},
}
