package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably"
)

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
