package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

var errorsIs = errors.Is

var triggerCases = []Case{
	{"R-010 new run defaults", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		job := durably.MustRegister(e, EchoJob("echo"))
		res, err := job.Trigger(Ctx(t), Msg{Message: "hi"}, durably.WithLabels(map[string]string{"org": "a"}))
		if err != nil {
			t.Fatal(err)
		}
		if res.Disposition != durably.Created {
			t.Fatalf("disposition %s", res.Disposition)
		}
		r := MustGet(t, e, res.Run.ID)
		if r.Status != durably.StatusPending || r.LeaseGeneration != 0 || r.CurrentStepIndex != 0 || r.CompletedStepCount != 0 {
			t.Fatalf("bad defaults: %+v", r)
		}
		if r.Progress != nil || r.Output != nil || r.Error != "" || r.LeaseOwner != "" || !r.LeaseExpiresAt.IsZero() || !r.StartedAt.IsZero() || !r.CompletedAt.IsZero() {
			t.Fatalf("fields not null: %+v", r)
		}
		if !r.CreatedAt.Equal(r.UpdatedAt) || r.CreatedAt.IsZero() {
			t.Fatalf("createdAt %v updatedAt %v", r.CreatedAt, r.UpdatedAt)
		}
		if r.Labels["org"] != "a" || !jsonEq(r.Input, json.RawMessage(`{"message":"hi"}`)) {
			t.Fatalf("labels %v input %s", r.Labels, r.Input)
		}
		if len(r.ID) != 26 {
			t.Fatalf("id %q is not a ULID", r.ID)
		}
		// The returned run equals the stored one.
		if res.Run.ID != r.ID || res.Run.Status != r.Status || !res.Run.CreatedAt.Equal(r.CreatedAt) {
			t.Fatalf("returned %+v stored %+v", res.Run, r)
		}
	}},
	{"R-030 coalesce validation", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		durably.MustRegister(e, EchoJob("echo"))
		ctx := Ctx(t)
		_, err := e.TriggerRaw(ctx, durably.TriggerRequest{JobName: "echo", Input: json.RawMessage(`{"message":"a"}`), Coalesce: "merge", ConcurrencyKey: "k"})
		WantKind(t, err, durably.ErrValidation, "Invalid coalesce value: 'merge'. Valid values: 'skip'")
		_, err = e.TriggerRaw(ctx, durably.TriggerRequest{JobName: "echo", Input: json.RawMessage(`{"message":"a"}`), Coalesce: "skip"})
		WantKind(t, err, durably.ErrValidation, "coalesce requires concurrencyKey")
		if n := CountRuns(t, e.Store()); n != 0 {
			t.Fatalf("%d runs written", n)
		}
	}},
	{"R-031 input validated and parsed before writing", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		job := durably.MustRegister(e, EchoJob("echo"))
		ctx := Ctx(t)
		cases := []struct {
			input string
			want  string
		}{
			{`{"message":""}`, "Invalid input: message: required"},
			{`{"message":"a","extra":1}`, `Invalid input: unknown field "extra"`},
			{`{"message":5}`, "Invalid input: message: expected string, got number"},
			{`{"message":`, "Invalid input: "},
			{`[1]`, "Invalid input: (root): expected object, got array"},
		}
		for _, c := range cases {
			_, err := e.TriggerRaw(ctx, durably.TriggerRequest{JobName: "echo", Input: json.RawMessage(c.input)})
			WantPrefix(t, err, durably.ErrValidation, c.want)
		}
		_, err := job.Trigger(ctx, Msg{})
		WantKind(t, err, durably.ErrValidation, "Invalid input: message: required")
		if n := CountRuns(t, e.Store()); n != 0 {
			t.Fatalf("%d runs written", n)
		}
		// The parsed (canonical) form is stored.
		res, err := e.TriggerRaw(ctx, durably.TriggerRequest{JobName: "echo", Input: json.RawMessage(`{ "message" : "x" }`)})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(MustGet(t, e, res.Run.ID).Input); got != `{"message":"x"}` {
			t.Fatalf("stored input %s", got)
		}
		_, err = e.TriggerRaw(ctx, durably.TriggerRequest{JobName: "nope", Input: json.RawMessage(`{}`)})
		WantKind(t, err, durably.ErrNotFound, "Job not found: nope")
	}},
	{"R-032 D1 labels schema applies to every trigger", func(t *testing.T, h *Harness) {
		schema := durably.LabelSchemaFunc(func(l map[string]string) (map[string]string, error) {
			if l["org"] == "" {
				//lint:ignore ST1005 a label schema's error as the original's validator words it
				return nil, fmt.Errorf("Invalid input: org: required")
			}
			out := maps.Clone(l)
			out["normalised"] = "yes"
			return out, nil
		})
		e := h.Engine(func(c *durably.Config) { c.Labels = schema })
		job := durably.MustRegister(e, EchoJob("echo"))
		ctx := Ctx(t)
		_, err := job.Trigger(ctx, Msg{Message: "a"})
		WantKind(t, err, durably.ErrValidation, "labels: Invalid input: org: required")
		_, err = job.Trigger(ctx, Msg{Message: "a"}, durably.WithLabels(map[string]string{"x": "y"}))
		WantKind(t, err, durably.ErrValidation, "labels: Invalid input: org: required")
		if n := CountRuns(t, e.Store()); n != 0 {
			t.Fatalf("%d runs written", n)
		}
		run := MustTrigger(t, job, Msg{Message: "a"}, durably.WithLabels(map[string]string{"org": "o1"}))
		if got := MustGet(t, e, run.ID).Labels; got["normalised"] != "yes" || got["org"] != "o1" {
			t.Fatalf("stored labels %v", got)
		}
	}},
	{"R-033 R-041 idempotency per job, forever, silent", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		a := durably.MustRegister(e, EchoJob("a"))
		b := durably.MustRegister(e, EchoJob("b"))
		rec := Record(t, e)
		ctx := Ctx(t)
		first := MustTrigger(t, a, Msg{Message: "1"}, durably.WithIdempotencyKey("k"))
		// Terminal runs still count: cancel it, then trigger again.
		if err := e.Cancel(ctx, first.ID); err != nil {
			t.Fatal(err)
		}
		again, err := a.Trigger(ctx, Msg{Message: "2"}, durably.WithIdempotencyKey("k"), durably.WithLabels(map[string]string{"x": "y"}))
		if err != nil {
			t.Fatal(err)
		}
		if again.Disposition != durably.Idempotent || again.Run.ID != first.ID || !jsonEq(again.Run.Input, first.Input) || len(again.Run.Labels) != 0 {
			t.Fatalf("idempotent trigger returned %+v (%s)", again.Run, again.Disposition)
		}
		other := MustTrigger(t, b, Msg{Message: "1"}, durably.WithIdempotencyKey("k"))
		if other.ID == first.ID {
			t.Fatal("idempotency keys leaked across jobs")
		}
		if got := len(rec.Events(durably.EventRunTrigger)); got != 2 {
			t.Fatalf("run:trigger emitted %d times, want 2 (none for the idempotent hit)", got)
		}
	}},
	{"R-034 idempotency wins over coalesce and conflicts", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		j := durably.MustRegister(e, EchoJob("j"))
		first := MustTrigger(t, j, Msg{Message: "1"}, durably.WithIdempotencyKey("i"), durably.WithConcurrencyKey("c"))
		for _, opts := range [][]durably.Option{
			{durably.WithIdempotencyKey("i"), durably.WithConcurrencyKey("c")},
			{durably.WithIdempotencyKey("i"), durably.WithConcurrencyKey("c"), durably.WithCoalesceSkip()},
		} {
			res, err := j.Trigger(Ctx(t), Msg{Message: "2"}, opts...)
			if err != nil || res.Disposition != durably.Idempotent || res.Run.ID != first.ID {
				t.Fatalf("got %+v, %v", res, err)
			}
		}
	}},
	{"R-039 precedence: validation, then idempotency, then the key conflict", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		j := durably.MustRegister(e, EchoJob("j"))
		first := MustTrigger(t, j, Msg{Message: "1"}, durably.WithIdempotencyKey("i"), durably.WithConcurrencyKey("c"))
		// (1) Invalid input fails even when the idempotency key would hit.
		_, err := j.Trigger(Ctx(t), Msg{}, durably.WithIdempotencyKey("i"))
		WantKind(t, err, durably.ErrValidation, "Invalid input: message: required")
		// (3) before (2) here (a fix, see README): a malformed label key
		// fails even when the idempotency key would hit.
		_, err = j.Trigger(Ctx(t), Msg{Message: "x"}, durably.WithIdempotencyKey("i"), durably.WithLabels(map[string]string{"bad key": "v"}))
		WantKind(t, err, durably.ErrValidation, `Invalid label key "bad key": must contain only alphanumeric characters, dashes, underscores, dots, and slashes`)
		// (4) Without an idempotent hit, the pending key conflicts, or
		// coalesces when asked.
		_, err = j.Trigger(Ctx(t), Msg{Message: "2"}, durably.WithConcurrencyKey("c"))
		WantKind(t, err, durably.ErrConflict, "")
		res, err := j.Trigger(Ctx(t), Msg{Message: "2"}, durably.WithConcurrencyKey("c"), durably.WithCoalesceSkip())
		if err != nil || res.Disposition != durably.Coalesced || res.Run.ID != first.ID {
			t.Fatalf("coalesce: %+v, %v", res, err)
		}
	}},
	{"R-035 D2 label keys are validated", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		j := durably.MustRegister(e, EchoJob("j"))
		for _, key := range []string{"has space", `q"uote`, ""} {
			_, err := j.Trigger(Ctx(t), Msg{Message: "x"}, durably.WithLabels(map[string]string{key: "v"}))
			WantKind(t, err, durably.ErrValidation, fmt.Sprintf("Invalid label key %q: must contain only alphanumeric characters, dashes, underscores, dots, and slashes", key))
		}
		run := MustTrigger(t, j, Msg{Message: "x"}, durably.WithLabels(map[string]string{"app.kubernetes.io/name": "v", "a-b_c": "any value at all"}))
		if len(MustGet(t, e, run.ID).Labels) != 2 {
			t.Fatal("valid keys not stored")
		}
		if n := CountRuns(t, e.Store()); n != 1 {
			t.Fatalf("%d runs", n)
		}
	}},
	{"R-036 R-037 one pending run per job and concurrency key", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		j := durably.MustRegister(e, EchoJob("j"))
		other := durably.MustRegister(e, EchoJob("other"))
		ctx := Ctx(t)
		first := MustTrigger(t, j, Msg{Message: "1"}, durably.WithConcurrencyKey("k"))
		_, err := j.Trigger(ctx, Msg{Message: "2"}, durably.WithConcurrencyKey("k"))
		WantKind(t, err, durably.ErrConflict, `A pending run already exists for concurrency key "k" in job "j". Use coalesce: 'skip' to return the existing run instead.`)
		// Other keys, other jobs and key-less runs are independent.
		MustTrigger(t, j, Msg{Message: "3"}, durably.WithConcurrencyKey("k2"))
		MustTrigger(t, other, Msg{Message: "4"}, durably.WithConcurrencyKey("k"))
		MustTrigger(t, j, Msg{Message: "5"})
		MustTrigger(t, j, Msg{Message: "6"})
		// A leased run does not count: lease the first, then one more pending is allowed.
		claimed, err := e.Store().Claim(ctx, store.ClaimRequest{WorkerID: "w", Now: first.CreatedAt, Lease: time.Minute, Limit: 1})
		if err != nil || len(claimed) != 1 || claimed[0].ID != first.ID {
			t.Fatalf("claim: %v %v", claimed, err)
		}
		res, err := j.Trigger(ctx, Msg{Message: "7"}, durably.WithConcurrencyKey("k"))
		if err != nil || res.Disposition != durably.Created {
			t.Fatalf("with the key leased, a pending run must be allowed: %v", err)
		}
		_, err = j.Trigger(ctx, Msg{Message: "8"}, durably.WithConcurrencyKey("k"))
		WantKind(t, err, durably.ErrConflict, "")
	}},
	{"R-038 R-041 coalesce returns the pending run unchanged", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		j := durably.MustRegister(e, EchoJob("j"))
		rec := Record(t, e)
		first := MustTrigger(t, j, Msg{Message: "first"}, durably.WithConcurrencyKey("k"), durably.WithLabels(map[string]string{"v": "1"}))
		res, err := j.Trigger(Ctx(t), Msg{Message: "second"}, durably.WithConcurrencyKey("k"), durably.WithCoalesceSkip(), durably.WithLabels(map[string]string{"v": "2"}))
		if err != nil || res.Disposition != durably.Coalesced || res.Run.ID != first.ID {
			t.Fatalf("got %+v %v", res, err)
		}
		stored := MustGet(t, e, first.ID)
		if !jsonEq(stored.Input, json.RawMessage(`{"message":"first"}`)) || stored.Labels["v"] != "1" {
			t.Fatalf("pending run changed: %+v", stored)
		}
		evs := rec.Events(durably.EventRunCoalesced)
		if len(evs) != 1 {
			t.Fatalf("%d run:coalesced events", len(evs))
		}
		ev := evs[0]
		if ev.RunID != first.ID || ev.Labels["v"] != "1" || ev.SkippedLabels["v"] != "2" || !jsonEq(ev.SkippedInput, json.RawMessage(`{"message":"second"}`)) {
			t.Fatalf("run:coalesced %+v", ev)
		}
		if n := len(rec.Events(durably.EventRunTrigger)); n != 1 {
			t.Fatalf("%d run:trigger events, want 1", n)
		}
	}},
	{"R-033 R-036 R-038 S-026 concurrent triggers race safely", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		j := durably.MustRegister(e, EchoJob("j"))
		const n = 24
		type outcome struct {
			res *durably.TriggerResult
			err error
		}
		race := func(opts ...durably.Option) []outcome {
			out := make([]outcome, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res, err := j.Trigger(Ctx(t), Msg{Message: fmt.Sprint(i)}, opts...)
					out[i] = outcome{res, err}
				}()
			}
			wg.Wait()
			return out
		}
		count := func(outs []outcome) (created, idem, coal, conflicts int, ids map[string]bool) {
			ids = map[string]bool{}
			for _, o := range outs {
				switch {
				case o.err != nil && errors.Is(o.err, durably.ErrConflict):
					conflicts++
				case o.err != nil:
					t.Fatalf("unexpected error: %v", o.err)
				case o.res.Disposition == durably.Created:
					created++
				case o.res.Disposition == durably.Idempotent:
					idem++
				case o.res.Disposition == durably.Coalesced:
					coal++
				}
				if o.res != nil {
					ids[o.res.Run.ID] = true
				}
			}
			return
		}
		c, i, _, x, ids := count(race(durably.WithIdempotencyKey("idem")))
		if c != 1 || i != n-1 || x != 0 || len(ids) != 1 {
			t.Fatalf("idempotency race: created %d idempotent %d conflicts %d ids %d", c, i, x, len(ids))
		}
		c, _, _, x, _ = count(race(durably.WithConcurrencyKey("ck")))
		if c != 1 || x != n-1 {
			t.Fatalf("concurrency-key race: created %d conflicts %d", c, x)
		}
		c, _, co, x, ids := count(race(durably.WithConcurrencyKey("ck2"), durably.WithCoalesceSkip()))
		if c != 1 || co != n-1 || x != 0 || len(ids) != 1 {
			t.Fatalf("coalesce race: created %d coalesced %d conflicts %d ids %d", c, co, x, len(ids))
		}
		if got := CountRuns(t, e.Store()); got != 3 {
			t.Fatalf("%d runs, want 3", got)
		}
	}},
}
