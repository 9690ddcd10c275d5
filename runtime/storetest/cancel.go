package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

var cancelCases = []Case{
	{"R-095 cancel refuses missing and finished runs", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		var calls Counter
		j := durably.MustRegister(e, StepsJob("j", &calls))
		ctx := Ctx(t)
		WantKind(t, e.Cancel(ctx, "01NOPE0000000000000000000X"), durably.ErrNotFound, "Run not found: 01NOPE0000000000000000000X")
		done := MustTrigger(t, j, StepsInput{Count: 1})
		failed := MustTrigger(t, j, StepsInput{Count: 1, FailAt: 1})
		for range 2 {
			if _, err := e.ProcessOne(ctx, ""); err != nil {
				t.Fatal(err)
			}
		}
		cancelled := MustTrigger(t, j, StepsInput{Count: 1})
		if err := e.Cancel(ctx, cancelled.ID); err != nil {
			t.Fatal(err)
		}
		WantKind(t, e.Cancel(ctx, done.ID), durably.ErrConflict, "Cannot cancel completed run: "+done.ID)
		WantKind(t, e.Cancel(ctx, failed.ID), durably.ErrConflict, "Cannot cancel failed run: "+failed.ID)
		WantKind(t, e.Cancel(ctx, cancelled.ID), durably.ErrConflict, "Cannot cancel already cancelled run: "+cancelled.ID)
		if got := MustGet(t, e, done.ID); got.Status != durably.StatusCompleted {
			t.Fatalf("a cancel overwrote a completed run: %+v", got)
		}
	}},
	{"R-096 R-097 cancel of a pending run deletes its steps; of a leased run keeps them", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		st := e.Store()
		rec := Record(t, e)
		ctx := Ctx(t)
		now := time.Now()
		pending, lease := leased(t, e, now)
		step := &store.Step{ID: "01STEP0000000000000000000A", RunID: pending.ID, Name: "s", Status: store.StepCompleted, Output: json.RawMessage(`1`), StartedAt: now, CompletedAt: now}
		if ok, err := st.SaveStep(ctx, lease, step); !ok || err != nil {
			t.Fatal(ok, err)
		}
		// Leased: cancel keeps the steps.
		if err := e.Cancel(ctx, pending.ID); err != nil {
			t.Fatal(err)
		}
		run := MustGet(t, e, pending.ID)
		if run.Status != durably.StatusCancelled || run.CompletedAt.IsZero() || run.LeaseOwner != "" || !run.LeaseExpiresAt.IsZero() {
			t.Fatalf("cancelled run %+v", run)
		}
		if steps, _ := e.GetSteps(ctx, pending.ID); len(steps) != 1 {
			t.Fatalf("steps of a cancelled leased run: %d", len(steps))
		}
		// Pending with steps (a released lease): cancel deletes them.
		r2, lease2 := leased(t, e, now)
		step2 := &store.Step{ID: "01STEP0000000000000000000B", RunID: r2.ID, Name: "s", Status: store.StepCompleted, Output: json.RawMessage(`1`), StartedAt: now, CompletedAt: now}
		if ok, err := st.SaveStep(ctx, lease2, step2); !ok || err != nil {
			t.Fatal(ok, err)
		}
		rewind(t, st, r2.ID)
		if err := e.Cancel(ctx, r2.ID); err != nil {
			t.Fatal(err)
		}
		if steps, _ := e.GetSteps(ctx, r2.ID); len(steps) != 0 {
			t.Fatalf("steps of a cancelled pending run: %d", len(steps))
		}
		evs := rec.Events(durably.EventRunCancel)
		if len(evs) != 2 || evs[0].RunID != pending.ID || evs[0].JobName != "lease-job" {
			t.Fatalf("run:cancel events %+v", evs)
		}
	}},
	{"R-098 R-083 R-086 cancel while a step runs: context ends, result discarded", func(t *testing.T, h *Harness) {
		var calls Counter
		gate := NewGate()
		e := h.Engine(func(c *durably.Config) { c.PreserveSteps = true })
		rec := Record(t, e)
		var cause, stepErr Box[error]
		j := durably.MustRegister(e, &durably.Job[int, int]{Name: "j", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			_, err := durably.RunStep(s, "long", func(ctx context.Context) (int, error) {
				calls.Inc("long")
				_ = gate.Wait(ctx, "long")
				cause.Set(context.Cause(ctx))
				return 1, nil // finishes "successfully" after the cancel
			})
			stepErr.Set(err)
			if err != nil {
				return 0, err
			}
			_, err = durably.RunStep(s, "next", func(ctx context.Context) (int, error) { calls.Inc("next"); return 2, nil })
			return 2, err
		}})
		r := MustTrigger(t, j, 0)
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		gate.Entered(t)
		if err := e.Cancel(Ctx(t), r.ID); err != nil {
			t.Fatal(err)
		}
		if got := MustGet(t, e, r.ID).Status; got != durably.StatusCancelled {
			t.Fatalf("status right after cancel: %s", got)
		}
		Eventually(t, "step:cancel", func() bool { return len(rec.Events(durably.EventStepCancel)) == 1 })
		Eventually(t, "the job to end", func() bool { return stepErr.Get() != nil })
		if !errors.Is(cause.Get(), durably.ErrCancelled) || !errors.Is(stepErr.Get(), durably.ErrCancelled) {
			t.Fatalf("cause %v step error %v", cause.Get(), stepErr.Get())
		}
		if calls.Get("next") != 0 {
			t.Fatal("a step started after cancel")
		}
		steps, _ := e.GetSteps(Ctx(t), r.ID)
		for _, s := range steps {
			if s.Status == store.StepCompleted {
				t.Fatalf("a step finishing after cancel was recorded: %+v", s)
			}
		}
		if run := MustGet(t, e, r.ID); run.Status != durably.StatusCancelled {
			t.Fatalf("run %+v", run)
		}
		if n := len(rec.Events(durably.EventStepFail, durably.EventRunFail, durably.EventRunComplete)); n != 0 {
			t.Fatalf("events after cancel: %v", rec.Types(r.ID))
		}
	}},
	{"R-083 cancel from another process is caught at the step write", func(t *testing.T, h *Harness) {
		gate := NewGate()
		e := h.Engine(nil)
		other := h.EngineOn(h.OpenStore(), nil)
		rec := Record(t, e)
		j := durably.MustRegister(e, &durably.Job[int, int]{Name: "j", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			return durably.RunStep(s, "long", func(ctx context.Context) (int, error) {
				return 1, gate.Wait(context.WithoutCancel(ctx), "long")
			})
		}})
		r := MustTrigger(t, j, 0)
		done := make(chan struct{})
		go func() { defer close(done); _, _ = e.ProcessOne(Ctx(t), "") }()
		gate.Entered(t)
		if err := other.Cancel(Ctx(t), r.ID); err != nil {
			t.Fatal(err)
		}
		gate.Open()
		<-done
		if evs := rec.Events(durably.EventStepCancel); len(evs) != 1 || evs[0].StepName != "long" {
			t.Fatalf("step:cancel %+v", evs)
		}
		if run := MustGet(t, e, r.ID); run.Status != durably.StatusCancelled || run.CompletedStepCount != 0 {
			t.Fatalf("run %+v", run)
		}
	}},
}

var retriggerCases = []Case{
	{"R-100 R-101 R-102 retrigger makes a new run from a finished one", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) {
			c.Labels = durably.LabelSchemaFunc(func(l map[string]string) (map[string]string, error) { return l, nil })
		})
		rec := Record(t, e)
		var calls Counter
		j := durably.MustRegister(e, StepsJob("j", &calls))
		ctx := Ctx(t)
		WantKind(t, retrigger(e, "01NOPE0000000000000000000X"), durably.ErrNotFound, "Run not found: 01NOPE0000000000000000000X")
		pending := MustTrigger(t, j, StepsInput{Count: 1}, durably.WithConcurrencyKey("k"), durably.WithIdempotencyKey("i"), durably.WithLabels(map[string]string{"org": "o"}))
		WantKind(t, retrigger(e, pending.ID), durably.ErrConflict, "Cannot retrigger pending run: "+pending.ID)
		runs, _ := e.Store().Claim(ctx, claimReq("w", time.Now(), 1))
		WantKind(t, retrigger(e, runs[0].ID), durably.ErrConflict, "Cannot retrigger leased run: "+pending.ID)
		if err := e.Cancel(ctx, pending.ID); err != nil {
			t.Fatal(err)
		}
		fresh, err := e.Retrigger(ctx, pending.ID)
		if err != nil {
			t.Fatal(err)
		}
		if fresh.ID == pending.ID || fresh.Status != durably.StatusPending || fresh.ConcurrencyKey != "k" || fresh.IdempotencyKey != "" ||
			fresh.Labels["org"] != "o" || !jsonEq(fresh.Input, pending.Input) {
			t.Fatalf("retriggered %+v", fresh)
		}
		if old := MustGet(t, e, pending.ID); old.Status != durably.StatusCancelled {
			t.Fatalf("original changed: %+v", old)
		}
		// The fresh run is pending with the same key: another retrigger conflicts.
		WantKind(t, retrigger(e, pending.ID), durably.ErrConflict, `A pending run already exists for concurrency key "k" in job "j". Use coalesce: 'skip' to return the existing run instead.`)
		last := rec.Events(durably.EventRunTrigger)
		if len(last) != 2 || last[1].RunID != fresh.ID {
			t.Fatalf("run:trigger events %+v", last)
		}
	}},
	{"R-100 R-101 retrigger of an unknown job or an input the job now rejects", func(t *testing.T, h *Harness) {
		old := h.Engine(nil)
		loose := durably.MustRegister(old, &durably.Job[Msg, Msg]{Name: "echo", Run: func(ctx context.Context, s *durably.StepContext, in Msg) (Msg, error) { return in, nil }})
		gone := durably.MustRegister(old, EchoJob("gone"))
		r := MustTrigger(t, loose, Msg{""})
		r2 := MustTrigger(t, gone, Msg{"x"})
		for _, id := range []string{r.ID, r2.ID} {
			if err := old.Cancel(Ctx(t), id); err != nil {
				t.Fatal(err)
			}
		}
		strict := h.Engine(nil)
		durably.MustRegister(strict, EchoJob("echo")) // now requires a message
		WantKind(t, retrigger(strict, r.ID), durably.ErrValidation, fmt.Sprintf("Cannot retrigger run %s: Invalid input: message: required", r.ID))
		WantKind(t, retrigger(strict, r2.ID), durably.ErrNotFound, "Unknown job: gone")
	}},
}

func retrigger(e *durably.Engine, id string) error {
	_, err := e.Retrigger(context.Background(), id)
	return err
}
