package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably"
)

var lifecycleCases = []Case{
	{"Close is idempotent: closing a store again is harmless", func(t *testing.T, h *Harness) {
		st := h.OpenStore()
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}},
	{"R-116 S-015 migrate is idempotent and safe concurrently", func(t *testing.T, h *Harness) {
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e, err := durably.New(durably.Config{Store: h.OpenStore()})
				if err != nil {
					errs <- err
					return
				}
				errs <- e.Migrate(Ctx(t))
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		e := h.Engine(nil)
		if err := e.Migrate(Ctx(t)); err != nil {
			t.Fatal(err)
		}
		j := durably.MustRegister(e, EchoJob("j"))
		MustTrigger(t, j, Msg{"after migrate"})
	}},
	{"R-001 a Config.Now behind the wall clock does not end leases early", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) { c.Now = func() time.Time { return time.Now().Add(-time.Hour) } })
		j := durably.MustRegister(e, &durably.Job[int, int]{Name: "j", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			return durably.RunStep(s, "wait", func(ctx context.Context) (int, error) {
				select { // long enough for a deadline computed on the wall clock to fire
				case <-time.After(100 * time.Millisecond):
					return in, nil
				case <-ctx.Done():
					return 0, context.Cause(ctx)
				}
			})
		}})
		r := MustTrigger(t, j, 7)
		if ok, err := e.ProcessOne(Ctx(t), ""); !ok || err != nil {
			t.Fatalf("ProcessOne %v %v", ok, err)
		}
		if run := MustGet(t, e, r.ID); run.Status != durably.StatusCompleted {
			t.Fatalf("run %+v: the lease was treated as expired", run)
		}
	}},
	{"R-001 R-061 a Config.Now behind the wall clock does not end leases at the first renewal", func(t *testing.T, h *Harness) {
		// The renewed deadline must be measured on Config.Now's clock, as
		// the renewed lease is written; on the wall clock, an hour behind,
		// it lies in the past and the first renewal drops the lease.
		e := h.Engine(func(c *durably.Config) {
			c.Now = func() time.Time { return time.Now().Add(-time.Hour) }
			c.LeaseRenewInterval = 10 * time.Millisecond
		})
		renewed := make(chan struct{}, 100)
		defer e.OnEvent(func(ev durably.Event) {
			if ev.Type == durably.EventRunLeaseRenewed {
				select {
				case renewed <- struct{}{}:
				default:
				}
			}
		})()
		j := durably.MustRegister(e, &durably.Job[int, int]{Name: "j", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			return durably.RunStep(s, "renewals", func(ctx context.Context) (int, error) {
				for range 3 { // outlive three renewals
					select {
					case <-renewed:
					case <-ctx.Done():
						return 0, context.Cause(ctx)
					}
				}
				return in, nil
			})
		}})
		r := MustTrigger(t, j, 7)
		if ok, err := e.ProcessOne(Ctx(t), ""); !ok || err != nil {
			t.Fatalf("ProcessOne %v %v", ok, err)
		}
		if run := MustGet(t, e, r.ID); run.Status != durably.StatusCompleted {
			t.Fatalf("run %+v: the renewed lease was treated as expired", run)
		}
	}},
	{"R-001 R-021 configuration and registration rules", func(t *testing.T, h *Harness) {
		for _, n := range []int{-1, 1001} {
			_, err := durably.New(durably.Config{Store: h.Store, MaxConcurrentRuns: n})
			WantKind(t, err, durably.ErrValidation, "maxConcurrentRuns must be between 1 and 1000")
		}
		e := h.Engine(nil)
		def := EchoJob("j")
		h1, err := durably.Register(e, def)
		if err != nil {
			t.Fatal(err)
		}
		h2, err := durably.Register(e, def)
		if err != nil || h1 != h2 {
			t.Fatalf("same definition: %v %v", h2, err)
		}
		_, err = durably.Register(e, EchoJob("j"))
		if err == nil || err.Error() != `Job "j" is already registered with a different definition` {
			t.Fatalf("different definition: %v", err)
		}
	}},
	{"R-118 R-120 events: sequence, domain types, panicking listeners", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		rec := Record(t, e)
		t.Cleanup(e.OnEvent(func(ev durably.Event) { panic("listener bug") }))
		j := durably.MustRegister(e, EchoJob("j"))
		// No worker needed to trigger or query.
		r := MustTrigger(t, j, Msg{"x"})
		if _, err := e.ProcessOne(Ctx(t), ""); err != nil {
			t.Fatal(err)
		}
		evs := rec.Events()
		for i, ev := range evs {
			if ev.Sequence != int64(i+1) || ev.Timestamp.IsZero() {
				t.Fatalf("event %d: sequence %d timestamp %v", i, ev.Sequence, ev.Timestamp)
			}
		}
		want := "[run:trigger run:leased step:start step:complete run:complete]"
		if got := fmt.Sprint(rec.Types(r.ID)); got != want {
			t.Fatalf("events %s want %s", got, want)
		}
		if !durably.EventRunTrigger.IsDomain() || durably.EventStepStart.IsDomain() {
			t.Fatal("IsDomain")
		}
		if run := MustGet(t, e, r.ID); run.Status != durably.StatusCompleted {
			t.Fatalf("a panicking listener broke the run: %+v", run)
		}
		_ = errors.New
	}},
	{"R-125 R-126 per-run stream: snapshot, live events, close", func(t *testing.T, h *Harness) {
		gate := NewGate()
		e := h.Engine(nil)
		j := durably.MustRegister(e, &durably.Job[int, int]{Name: "j", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			_, err := durably.RunStep(s, "a", func(ctx context.Context) (int, error) {
				s.Progress(1, 2, "a")
				return 1, gate.Wait(ctx, "a")
			})
			if err != nil {
				return 0, err
			}
			return durably.RunStep(s, "b", func(ctx context.Context) (int, error) { return 2, nil })
		}})
		r := MustTrigger(t, j, 0)
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		gate.Entered(t)
		t.Cleanup(gate.Open)
		Eventually(t, "progress recorded", func() bool { return MustGet(t, e, r.ID).Progress != nil })
		ctx := Ctx(t)
		ch, err := e.SubscribeRun(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		first := <-ch
		second := <-ch
		if first.Type != durably.EventRunLeased || first.Sequence != 0 || second.Type != durably.EventRunProgress || second.Progress.Current != 1 {
			t.Fatalf("snapshot %+v %+v", first, second)
		}
		gate.Open()
		for ev := range ch {
			got = append(got, string(ev.Type))
		}
		want := "[step:complete step:start step:complete run:complete]"
		if fmt.Sprint(got) != want {
			t.Fatalf("live %v want %s", got, want)
		}
		// A finished run: one snapshot event, then the stream closes.
		ch, err = e.SubscribeRun(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		var after []durably.Event
		for ev := range ch {
			after = append(after, ev)
		}
		if len(after) != 1 || after[0].Type != durably.EventRunComplete || string(after[0].Output) != "2" {
			t.Fatalf("snapshot of a completed run %+v", after)
		}
	}},
}
