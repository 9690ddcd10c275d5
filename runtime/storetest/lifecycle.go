package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

var lifecycleCases = []Case{
	{"a caller whose context ended never reads what the writer may still write (fails under go test -race)", func(t *testing.T, h *Harness) {
		// Every write goes through the store's writer; a caller whose
		// context ends first returns at once while its write may still be
		// applied. Reading the write's results then races with the writer,
		// which the race detector reports. The writes are of a live lease,
		// so that each is applied, not refused early.
		e := h.Engine(nil)
		st := h.Store
		now := time.Now()
		run := &store.Run{ID: "cancelled-callers", JobName: "j", Input: []byte("{}"), Labels: map[string]string{}, CreatedAt: now}
		if _, err := st.Enqueue(Ctx(t), []store.NewRun{{Run: run, Claim: &store.Claim{WorkerID: "w", ExpiresAt: now.Add(time.Hour)}}}); err != nil {
			t.Fatal(err)
		}
		lease := store.Lease{RunID: run.ID, Generation: 1}
		ended, cancel := context.WithCancel(context.Background())
		cancel()
		step := 0
		newStep := func() *store.Step {
			step++
			return &store.Step{ID: fmt.Sprint("s", step), RunID: run.ID, Name: fmt.Sprint("step", step), Index: step - 1,
				Status: store.StepCompleted, Output: []byte("1"), StartedAt: now, CompletedAt: now}
		}
		calls := []Call{
			{"RenewLease", func() error { _, err := st.RenewLease(ended, lease, now, now.Add(time.Hour)); return err }},
			{"SaveStep", func() error { _, err := st.SaveStep(ended, lease, newStep()); return err }},
			{"DeferRun", func() error {
				_, err := st.DeferRun(ended, lease, store.Deferral{Until: now.Add(time.Hour), Now: now, Attempt: 1})
				return err
			}},
			{"ReleaseLease", func() error { _, err := st.ReleaseLease(ended, lease, now); return err }},
			{"FinishRun", func() error {
				_, err := st.FinishRun(ended, lease, store.Finish{Status: store.StatusCompleted, Output: []byte("1"), Now: now})
				return err
			}},
			{"ReleaseExpiredLeases", func() error { _, err := st.ReleaseExpiredLeases(ended, now); return err }},
			{"CancelRun", func() error {
				_, err := st.CancelRun(ended, store.CancelRequest{ID: run.ID, Now: now})
				return err
			}},
			{"DeleteRun", func() error { _, err := st.DeleteRun(ended, run.ID); return err }},
			{"PurgeRuns", func() error { _, err := st.PurgeRuns(ended, now.Add(time.Hour), 10); return err }},
			{"Maintain", func() error { return st.Maintain(ended, now.Add(time.Hour)) }},
		}
		// One kind of call at a time: another kind could synchronise the
		// caller with the writer (a connection pool's lock) and hide the race.
		for _, c := range calls {
			for range 50 {
				_ = c.Do() // context.Canceled, or the write's own outcome if it won the race
			}
		}
		// The abandoned writes wedge nothing: the store still serves runs.
		j := durably.MustRegister(e, EchoJob("j"))
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		r := MustTrigger(t, j, Msg{"after"})
		Eventually(t, "the run triggered after the abandoned writes completes", func() bool {
			return MustGet(t, e, r.ID).Status == durably.StatusCompleted
		})
	}},
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
