package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/store"
)

// finish drives a run to a terminal status by hand, completed at the given
// time.
func finish(t *testing.T, e *durably.Engine, id string, status store.Status, at time.Time) {
	t.Helper()
	if err := PatchRun(Ctx(t), e.Store(), id, store.RunPatch{Status: &status, CompletedAt: &at}); err != nil {
		t.Fatal(err)
	}
}

var retentionCases = []Case{
	{"R-103 S-040 delete removes a terminal run and everything of it", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) { c.PreserveSteps = true })
		rec := Record(t, e)
		var calls Counter
		j := durably.MustRegister(e, StepsJob("j", &calls))
		ctx := Ctx(t)
		WantKind(t, e.DeleteRun(ctx, "01NOPE0000000000000000000X"), durably.ErrNotFound, "Run not found: 01NOPE0000000000000000000X")
		r := MustTrigger(t, j, StepsInput{Count: 2}, durably.WithLabels(map[string]string{"org": "o"}))
		WantKind(t, e.DeleteRun(ctx, r.ID), durably.ErrConflict, "Cannot delete pending run: "+r.ID)
		if _, err := e.Store().Claim(ctx, claimReq("w", time.Now(), 1)); err != nil {
			t.Fatal(err)
		}
		WantKind(t, e.DeleteRun(ctx, r.ID), durably.ErrConflict, "Cannot delete leased run: "+r.ID)
		rewind(t, e.Store(), r.ID)
		if _, err := e.ProcessOne(ctx, ""); err != nil {
			t.Fatal(err)
		}
		if steps, _ := e.GetSteps(ctx, r.ID); len(steps) != 2 {
			t.Fatalf("%d steps before delete", len(steps))
		}
		if err := e.DeleteRun(ctx, r.ID); err != nil {
			t.Fatal(err)
		}
		if run, _ := e.GetRun(ctx, r.ID); run != nil {
			t.Fatal("run still there")
		}
		if steps, _ := e.GetSteps(ctx, r.ID); len(steps) != 0 {
			t.Fatal("steps still there")
		}
		if runs, _ := e.ListRuns(ctx, durably.RunFilter{Labels: map[string]string{"org": "o"}}); len(runs) != 0 {
			t.Fatal("label rows still match")
		}
		if evs := rec.Events(durably.EventRunDelete); len(evs) != 1 || evs[0].Labels["org"] != "o" {
			t.Fatalf("run:delete %+v", evs)
		}
	}},
	{"R-104 S-041 purge deletes old terminal runs, oldest first, up to the limit", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		rec := Record(t, e)
		j := durably.MustRegister(e, EchoJob("j"))
		base := time.Now().Add(-48 * time.Hour)
		var ids []string
		statuses := []store.Status{store.StatusCompleted, store.StatusFailed, store.StatusCancelled, store.StatusCompleted}
		for i, st := range statuses {
			r := MustTrigger(t, j, Msg{fmt.Sprint(i)})
			finish(t, e, r.ID, st, base.Add(time.Duration(i)*time.Hour))
			ids = append(ids, r.ID)
		}
		recent := MustTrigger(t, j, Msg{"recent"})
		finish(t, e, recent.ID, store.StatusCompleted, time.Now())
		active := MustTrigger(t, j, Msg{"active"})
		n, err := e.PurgeRuns(Ctx(t), time.Now().Add(-time.Hour), 3)
		if err != nil || n != 3 {
			t.Fatalf("purged %d %v", n, err)
		}
		for i, id := range ids {
			run, _ := e.GetRun(Ctx(t), id)
			if (i < 3) != (run == nil) {
				t.Fatalf("run %d (completed %v) present=%v", i, base.Add(time.Duration(i)*time.Hour), run != nil)
			}
		}
		n, _ = e.PurgeRuns(Ctx(t), time.Now().Add(-time.Hour), 0)
		if n != 1 || MustGet(t, e, recent.ID) == nil || MustGet(t, e, active.ID) == nil {
			t.Fatalf("second purge %d", n)
		}
		if len(rec.Events(durably.EventRunDelete)) != 0 {
			t.Fatal("purge emitted run:delete")
		}
	}},
	{"R-105 retainRuns purges during idle maintenance", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) { c.RetainRuns = time.Hour })
		j := durably.MustRegister(e, EchoJob("j"))
		old := MustTrigger(t, j, Msg{"old"})
		finish(t, e, old.ID, store.StatusCompleted, time.Now().Add(-2*time.Hour))
		young := MustTrigger(t, j, Msg{"young"})
		finish(t, e, young.ID, store.StatusCompleted, time.Now())
		// ProcessOne does no maintenance …
		if _, err := e.ProcessOne(Ctx(t), ""); err != nil {
			t.Fatal(err)
		}
		if run, _ := e.GetRun(Ctx(t), old.ID); run == nil {
			t.Fatal("ProcessOne purged")
		}
		// … an idle ProcessUntilIdle does.
		if _, err := e.ProcessUntilIdle(Ctx(t), "", 0); err != nil {
			t.Fatal(err)
		}
		if run, _ := e.GetRun(Ctx(t), old.ID); run != nil {
			t.Fatal("old run not purged")
		}
		if run, _ := e.GetRun(Ctx(t), young.ID); run == nil {
			t.Fatal("young run purged")
		}
		if _, err := durably.ParseRetention("30s"); err == nil || err.Error()[:len(`Invalid duration format: "30s"`)] != `Invalid duration format: "30s"` {
			t.Fatalf("ParseRetention(30s) = %v", err)
		}
		for in, want := range map[string]time.Duration{"0d": 0, "2d": 48 * time.Hour, "3h": 3 * time.Hour, "15m": 15 * time.Minute} {
			if got, err := durably.ParseRetention(in); err != nil || got != want {
				t.Fatalf("ParseRetention(%s) = %v %v", in, got, err)
			}
		}
	}},
}

var waitCases = []Case{
	{"R-107 R-108 R-110 wait helpers settle every way a run can end", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		var calls Counter
		j := durably.MustRegister(e, StepsJob("j", &calls))
		ctx := Ctx(t)
		_, err := e.WaitForRun(ctx, "x", durably.WithPollInterval(-time.Second))
		WantKind(t, err, durably.ErrValidation, "pollingIntervalMs must be a positive finite number")
		_, err = e.WaitForRun(ctx, "01NOPE0000000000000000000X")
		WantKind(t, err, durably.ErrNotFound, "Run not found: 01NOPE0000000000000000000X")
		pending := MustTrigger(t, j, StepsInput{Count: 1})
		_, err = e.WaitForRun(ctx, pending.ID, durably.WithTimeout(30*time.Millisecond))
		WantKind(t, err, durably.ErrTimeout, "waitForRun timeout after 30ms")
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		_, err = j.TriggerAndWait(ctx, StepsInput{Count: 2, FailAt: 2})
		WantKind(t, err, durably.ErrRunFailed, "boom at step 2")
		if err := e.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		c := MustTrigger(t, j, StepsInput{Count: 1})
		if err := e.Cancel(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		_, err = e.WaitForRun(ctx, c.ID)
		WantKind(t, err, durably.ErrCancelled, "Run was cancelled: "+c.ID)
		_, err = j.TriggerAndWait(ctx, StepsInput{Count: 1}, durably.WithTimeout(20*time.Millisecond))
		WantPrefix(t, err, durably.ErrTimeout, "triggerAndWait timeout after 20ms")
	}},
	{"R-109 R-111 wait settles from in-process events with live callbacks", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) { c.PollingInterval = time.Hour })
		j := durably.MustRegister(e, &durably.Job[int, int]{Name: "j", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			for i := 1; i <= 3; i++ {
				if _, err := durably.RunStep(s, fmt.Sprint(i), func(ctx context.Context) (int, error) {
					s.Progress(i, 3, "")
					s.Logger().Info("step", "i", i)
					return i, nil
				}); err != nil {
					return 0, err
				}
			}
			return 3, nil
		}})
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var progress, logs []int
		out, err := j.TriggerAndWait(Ctx(t), 0,
			durably.WithPollInterval(time.Hour), // only events can settle it
			durably.OnProgress(func(p durably.Progress) { mu.Lock(); progress = append(progress, p.Current); mu.Unlock() }),
			durably.OnLog(func(l durably.LogRecord) { mu.Lock(); logs = append(logs, len(l.Data)); mu.Unlock() }))
		if err != nil || out.Output != 3 {
			t.Fatalf("out %+v err %v", out, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if fmt.Sprint(progress) != "[1 2 3]" || len(logs) != 3 {
			t.Fatalf("progress %v logs %v", progress, logs)
		}
	}},
	{"R-109 runs finished by another process are seen by polling", func(t *testing.T, h *Harness) {
		waiter := h.Engine(nil)
		worker := h.EngineOn(h.OpenStore(), nil)
		durably.MustRegister(worker, EchoJob("echo"))
		jw := durably.MustRegister(waiter, EchoJob("echo"))
		if err := worker.Start(); err != nil {
			t.Fatal(err)
		}
		out, err := jw.TriggerAndWait(Ctx(t), Msg{"far"}, durably.WithPollInterval(10*time.Millisecond))
		if err != nil || out.Output.Message != "far" {
			t.Fatalf("out %+v err %v", out, err)
		}
	}},
	{"R-112 triggerAndWait on idempotent and coalesced triggers", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		var calls Counter
		j := durably.MustRegister(e, StepsJob("j", &calls))
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		ctx := Ctx(t)
		first, err := j.TriggerAndWait(ctx, StepsInput{Count: 3}, durably.WithIdempotencyKey("i"))
		if err != nil || first.Output != 6 {
			t.Fatal(first, err)
		}
		again, err := j.TriggerAndWait(ctx, StepsInput{Count: 1}, durably.WithIdempotencyKey("i"))
		if err != nil || again.Disposition != durably.Idempotent || again.Output != 6 || again.RunID != first.RunID {
			t.Fatalf("again %+v %v", again, err)
		}
		_, err = j.TriggerAndWait(ctx, StepsInput{Count: 1, FailAt: 1}, durably.WithIdempotencyKey("f"))
		WantKind(t, err, durably.ErrRunFailed, "boom at step 1")
		_, err = j.TriggerAndWait(ctx, StepsInput{Count: 5}, durably.WithIdempotencyKey("f"))
		WantKind(t, err, durably.ErrRunFailed, "boom at step 1")
		if err := e.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		// Coalesced: waits on the original pending run and gets its output.
		orig := MustTrigger(t, j, StepsInput{Count: 2}, durably.WithConcurrencyKey("k"))
		rec := Record(t, e)
		got := make(chan durably.Outcome[int], 1)
		go func() {
			out, err := j.TriggerAndWait(ctx, StepsInput{Count: 4}, durably.WithConcurrencyKey("k"), durably.WithCoalesceSkip())
			if err != nil {
				t.Error(err)
			}
			got <- out
		}()
		Eventually(t, "coalesced trigger", func() bool { return len(rec.Events(durably.EventRunCoalesced)) == 1 })
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		out := <-got
		if out.RunID != orig.ID || out.Disposition != durably.Coalesced || out.Output != 3 {
			t.Fatalf("coalesced outcome %+v", out)
		}
	}},
}

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

var queryCases = []Case{
	{"R-135 S-045 D5 list runs by status, job and labels", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		a := durably.MustRegister(e, EchoJob("a"))
		b := durably.MustRegister(e, EchoJob("b"))
		ctx := Ctx(t)
		var all []string
		for i := range 6 {
			j := a
			if i%2 == 1 {
				j = b
			}
			labels := map[string]string{"org": fmt.Sprint("o", i%3), "env": []string{"prod", "dev"}[i%2]}
			r := MustTrigger(t, j, Msg{fmt.Sprint(i)}, durably.WithLabels(labels))
			if err := PatchRun(ctx, e.Store(), r.ID, store.RunPatch{CreatedAt: ptr(time.Now().Add(time.Duration(i) * time.Second))}); err != nil {
				t.Fatal(err)
			}
			all = append(all, r.ID)
		}
		finish(t, e, all[0], store.StatusCompleted, time.Now())
		ids := func(f durably.RunFilter) []string {
			runs, err := e.ListRuns(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, r := range runs {
				out = append(out, r.ID)
			}
			return out
		}
		rev := func(idx ...int) []string {
			var out []string
			for _, i := range idx {
				out = append(out, all[i])
			}
			return out
		}
		cases := []struct {
			name string
			f    durably.RunFilter
			want []string
		}{
			{"all newest first", durably.RunFilter{}, rev(5, 4, 3, 2, 1, 0)},
			{"status", durably.RunFilter{Statuses: []durably.Status{durably.StatusCompleted}}, rev(0)},
			{"statuses", durably.RunFilter{Statuses: []durably.Status{durably.StatusCompleted, durably.StatusPending}}, rev(5, 4, 3, 2, 1, 0)},
			{"job", durably.RunFilter{JobNames: []string{"b"}}, rev(5, 3, 1)},
			{"one label", durably.RunFilter{Labels: map[string]string{"org": "o0"}}, rev(3, 0)},
			{"two labels", durably.RunFilter{Labels: map[string]string{"org": "o1", "env": "dev"}}, rev(1)},
			{"labels and job", durably.RunFilter{JobNames: []string{"a"}, Labels: map[string]string{"env": "prod"}}, rev(4, 2, 0)},
			{"labels and status", durably.RunFilter{Statuses: []durably.Status{durably.StatusPending}, Labels: map[string]string{"env": "prod"}}, rev(4, 2)},
			{"no match", durably.RunFilter{Labels: map[string]string{"org": "zz"}}, nil},
			{"limit", durably.RunFilter{Limit: 2}, rev(5, 4)},
			{"limit offset", durably.RunFilter{Limit: 2, Offset: 2}, rev(3, 2)},
			{"offset without limit (D5)", durably.RunFilter{Offset: 4}, rev(1, 0)},
			{"label offset without limit", durably.RunFilter{Offset: 1, Labels: map[string]string{"env": "prod"}}, rev(2, 0)},
		}
		for _, c := range cases {
			if got := ids(c.f); !slices.Equal(got, c.want) {
				t.Errorf("%s: got %v want %v", c.name, got, c.want)
			}
		}
		_, err := e.ListRuns(ctx, durably.RunFilter{Labels: map[string]string{"bad key": "x"}})
		WantPrefix(t, err, durably.ErrValidation, `Invalid label key "bad key"`)
		_, err = e.ListRuns(ctx, durably.RunFilter{Statuses: []durably.Status{"running"}})
		WantKind(t, err, durably.ErrValidation, "Invalid status: running. Must be one of: pending, leased, completed, failed, cancelled")
		// A job handle only sees its own runs.
		if runs, err := b.ListRuns(ctx, durably.RunFilter{JobNames: []string{"a"}}); err != nil || len(runs) != 3 {
			t.Fatalf("handle list: %d %v", len(runs), err)
		}
		if r, err := b.GetRun(ctx, all[0]); r != nil || err != nil {
			t.Fatalf("handle of b returned a run of a: %v %v", r, err)
		}
	}},
}

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
