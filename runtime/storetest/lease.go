package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

var leaseJob = EchoJob("lease-job")

// leased triggers an echo run and claims it at now, returning the lease.
func leased(t *testing.T, e *durably.Engine, now time.Time, opts ...durably.Option) (*durably.Run, store.Lease) {
	t.Helper()
	j, err := durably.Register(e, leaseJob)
	if err != nil {
		t.Fatal(err)
	}
	r := MustTrigger(t, j, Msg{"x"}, opts...)
	runs, err := e.Store().Claim(Ctx(t), claimReq("w", now, 1))
	if err != nil || len(runs) != 1 || runs[0].ID != r.ID {
		t.Fatalf("claim: %v %v", runs, err)
	}
	return runs[0], store.Lease{RunID: r.ID, Generation: runs[0].LeaseGeneration}
}

var leaseCases = []Case{
	{"R-060 S-035 S-036 a stale generation changes nothing", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		st := e.Store()
		ctx := Ctx(t)
		t0 := time.Now()
		_, old := leased(t, e, t0)
		// Another worker reclaims after expiry: generation 2.
		again, err := st.Claim(ctx, claimReq("w2", t0.Add(31*time.Second), 1))
		if err != nil || len(again) != 1 {
			t.Fatal(err)
		}
		before := MustGet(t, e, old.RunID)
		now := t0.Add(32 * time.Second)
		step := &store.Step{ID: "01STEPSTALE000000000000000", RunID: old.RunID, Name: "s", Status: store.StepCompleted, Output: json.RawMessage(`1`), StartedAt: now, CompletedAt: now}
		if ok, err := st.SaveStep(ctx, old, step); ok || err != nil {
			t.Fatalf("stale SaveStep: %v %v", ok, err)
		}
		if ok, err := st.RenewLease(ctx, old, now, now.Add(time.Hour)); ok || err != nil {
			t.Fatalf("stale RenewLease: %v %v", ok, err)
		}
		if err := st.SetProgress(ctx, old, &store.Progress{Current: 9}, now); err != nil {
			t.Fatal(err)
		}
		for _, fin := range []store.Finish{
			{Status: store.StatusCompleted, Output: json.RawMessage(`"stale"`), Now: now},
			{Status: store.StatusFailed, Error: "stale", Now: now},
		} {
			if ok, err := st.FinishRun(ctx, old, fin); ok || err != nil {
				t.Fatalf("stale FinishRun: %v %v", ok, err)
			}
		}
		if ok, err := st.ReleaseLease(ctx, old, now); ok || err != nil {
			t.Fatalf("stale ReleaseLease: %v %v", ok, err)
		}
		// A write after the queued progress makes sure it was applied (or refused).
		if _, err := st.RenewLease(ctx, store.Lease{RunID: old.RunID, Generation: again[0].LeaseGeneration}, now, again[0].LeaseExpiresAt); err != nil {
			t.Fatal(err)
		}
		after := MustGet(t, e, old.RunID)
		if after.Status != store.StatusLeased || after.LeaseOwner != "w2" || after.LeaseGeneration != before.LeaseGeneration ||
			!after.LeaseExpiresAt.Equal(before.LeaseExpiresAt) || after.Output != nil || after.Error != "" || after.Progress != nil ||
			after.CompletedStepCount != 0 {
			t.Fatalf("stale writes changed the run:\nbefore %+v\nafter  %+v", before, after)
		}
		if steps, _ := st.GetSteps(ctx, old.RunID); len(steps) != 0 {
			t.Fatalf("stale step recorded: %+v", steps)
		}
	}},
	{"R-061 renewal extends only an unexpired lease", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		st := e.Store()
		t0 := time.Now()
		run, lease := leased(t, e, t0)
		ok, err := st.RenewLease(Ctx(t), lease, t0.Add(10*time.Second), t0.Add(40*time.Second))
		if err != nil || !ok {
			t.Fatalf("renew: %v %v", ok, err)
		}
		if got := MustGet(t, e, run.ID).LeaseExpiresAt; !got.Equal(store.Truncate(t0.Add(40 * time.Second))) {
			t.Fatalf("expiry %v", got)
		}
		ok, err = st.RenewLease(Ctx(t), lease, t0.Add(41*time.Second), t0.Add(71*time.Second))
		if err != nil || ok {
			t.Fatalf("renewal of an expired lease succeeded: %v %v", ok, err)
		}
	}},
	{"R-061 the worker renews leases while a run executes", func(t *testing.T, h *Harness) {
		gate := NewGate()
		e := h.Engine(func(c *durably.Config) {
			c.LeaseDuration = 400 * time.Millisecond
			c.LeaseRenewInterval = 50 * time.Millisecond
		})
		rec := Record(t, e)
		j := durably.MustRegister(e, &durably.Job[int, int]{Name: "long", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			return durably.RunStep(s, "work", func(ctx context.Context) (int, error) { return in, gate.Wait(ctx, "w") })
		}})
		r := MustTrigger(t, j, 5)
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		gate.Entered(t)
		Eventually(t, "three renewals", func() bool { return len(rec.Events(durably.EventRunLeaseRenewed)) >= 3 })
		// Outlived its first lease several times over, and still completes.
		gate.Open()
		run, err := e.WaitForRun(Ctx(t), r.ID)
		if err != nil || run.Status != durably.StatusCompleted {
			t.Fatalf("run %v err %v", run, err)
		}
	}},
	{"R-062 S-039 D12 idle maintenance releases expired leases; one with a pending sibling stays claimable", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		st := e.Store()
		ctx := Ctx(t)
		t0 := time.Now().Add(-time.Hour)
		// r1 expired, no sibling: back to pending. r2 expired with a
		// pending sibling: the original fails it (S-038); it stays an
		// expired lease instead, claimed before its sibling (D12).
		j := durably.MustRegister(e, EchoJob("j"))
		r1 := MustTrigger(t, j, Msg{"1"})
		r2 := MustTrigger(t, j, Msg{"2"}, durably.WithConcurrencyKey("k"))
		if runs, err := st.Claim(ctx, claimReq("w", t0, 2)); err != nil || len(runs) != 2 {
			t.Fatalf("claim %v %v", runs, err)
		}
		sibling := MustTrigger(t, j, Msg{"3"}, durably.WithConcurrencyKey("k"))
		rec := Record(t, e)
		n, err := st.ReleaseExpiredLeases(ctx, time.Now())
		if err != nil || n != 1 {
			t.Fatalf("released %d, %v", n, err)
		}
		a, b := MustGet(t, e, r1.ID), MustGet(t, e, r2.ID)
		if a.Status != durably.StatusPending || a.LeaseOwner != "" || !a.LeaseExpiresAt.IsZero() || a.LeaseGeneration != 1 || a.StartedAt.IsZero() {
			t.Fatalf("r1 %+v", a)
		}
		if b.Status != durably.StatusLeased || b.Error != "" || !b.CompletedAt.IsZero() || b.LeaseGeneration != 1 {
			t.Fatalf("r2 %+v", b)
		}
		if s := MustGet(t, e, sibling.ID); s.Status != durably.StatusPending {
			t.Fatalf("sibling %+v", s)
		}
		if len(rec.Events()) != 0 {
			t.Fatalf("events emitted: %v", rec.Events())
		}
		got, err := st.Claim(ctx, claimReq("w2", time.Now(), 5))
		if err != nil || len(got) != 2 || got[0].ID != r1.ID || got[1].ID != r2.ID || got[1].LeaseGeneration != 2 {
			t.Fatalf("claim after maintenance: %v %v; want %s and %s, not the sibling", got, err, r1.ID, r2.ID)
		}
	}},
	{"R-063 R-064 R-066 a run whose lease runs out stops cooperatively", func(t *testing.T, h *Harness) {
		var calls Counter
		gate := NewGate()
		e := h.Engine(func(c *durably.Config) {
			c.LeaseDuration = 200 * time.Millisecond
			c.LeaseRenewInterval = time.Hour // never renews: the local deadline fires
		})
		rec := Record(t, e)
		var stepErr error
		j := durably.MustRegister(e, &durably.Job[int, int]{Name: "j", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			if _, err := durably.RunStep(s, "first", func(ctx context.Context) (int, error) { calls.Inc("first"); return 1, nil }); err != nil {
				return 0, err
			}
			_, err := durably.RunStep(s, "second", func(ctx context.Context) (int, error) {
				calls.Inc("second")
				<-ctx.Done() // the deadline aborts the step's context
				gate.Open()
				return 2, nil
			})
			stepErr = err
			if err != nil {
				return 0, err
			}
			_, err = durably.RunStep(s, "third", func(ctx context.Context) (int, error) { calls.Inc("third"); return 3, nil })
			return 3, err
		}})
		r := MustTrigger(t, j, 0)
		ok, err := e.ProcessOne(Ctx(t), "")
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		if !errors.Is(stepErr, durably.ErrLeaseLost) {
			t.Fatalf("step error %v, want ErrLeaseLost", stepErr)
		}
		run := MustGet(t, e, r.ID)
		if run.Status != durably.StatusLeased || run.CompletedStepCount != 1 || calls.Get("third") != 0 {
			t.Fatalf("run %+v third=%d", run, calls.Get("third"))
		}
		if n := len(rec.Events(durably.EventRunComplete, durably.EventRunFail, durably.EventStepFail)); n != 0 {
			t.Fatalf("terminal events after lease loss: %v", rec.Types(r.ID))
		}
		// The completed step survives for the next owner.
		steps, _ := e.GetSteps(Ctx(t), r.ID)
		if len(steps) != 1 || steps[0].Name != "first" {
			t.Fatalf("steps %+v", steps)
		}
	}},
	{"R-064 S-035 a stale completion after reclaim is refused; the reclaimer wins", func(t *testing.T, h *Harness) {
		gate := NewGate()
		e1 := h.Engine(func(c *durably.Config) {
			c.LeaseDuration = 300 * time.Millisecond
			c.LeaseRenewInterval = time.Hour
		})
		e2 := h.EngineOn(h.OpenStore(), nil)
		rec := Record(t, e1)
		job := func(name string, wait bool) *durably.Job[int, string] {
			return &durably.Job[int, string]{Name: "contested", Run: func(ctx context.Context, s *durably.StepContext, in int) (string, error) {
				if wait {
					_ = gate.Wait(context.WithoutCancel(ctx), "old")
				}
				return name, nil
			}}
		}
		j1 := durably.MustRegister(e1, job("old", true))
		durably.MustRegister(e2, job("new", false))
		r := MustTrigger(t, j1, 0)
		done := make(chan error, 1)
		go func() { _, err := e1.ProcessOne(Ctx(t), "old"); done <- err }()
		gate.Entered(t)
		Eventually(t, "old lease expired", func() bool { return time.Now().After(MustGet(t, e2, r.ID).LeaseExpiresAt) })
		if ok, err := e2.ProcessOne(Ctx(t), "new"); err != nil || !ok {
			t.Fatalf("reclaim: %v %v", ok, err)
		}
		gate.Open()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		run := MustGet(t, e2, r.ID)
		if run.Status != durably.StatusCompleted || string(run.Output) != `"new"` {
			t.Fatalf("run %+v output %s", run, run.Output)
		}
		var sawLost bool
		for _, ev := range rec.Events(durably.EventWorkerError) {
			sawLost = sawLost || ev.Error == "Lease lost before completing run "+r.ID
		}
		if !sawLost || len(rec.Events(durably.EventRunComplete)) != 0 {
			t.Fatalf("old worker events: %v", rec.Types(""))
		}
	}},
	{"R-065 completion is fenced by generation, not expiry", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		t0 := time.Now().Add(-time.Hour)
		run, lease := leased(t, e, t0)
		ok, err := e.Store().FinishRun(Ctx(t), lease, store.Finish{Status: store.StatusCompleted, Output: json.RawMessage(`1`), Now: time.Now()})
		if err != nil || !ok {
			t.Fatalf("finish after expiry without reclaim: %v %v", ok, err)
		}
		if got := MustGet(t, e, run.ID); got.Status != durably.StatusCompleted || got.LeaseOwner != "" || !got.LeaseExpiresAt.IsZero() || got.CompletedAt.IsZero() {
			t.Fatalf("run %+v", got)
		}
	}},
}
