package durablyotel_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/durably-go/durably"
)

// A run that fails a step once (retried), sleeps, and completes: three
// executions, all in the trace of the request that triggered it, each step
// attempt in its execution's span.
func TestTraceFollowsARunThroughRetryAndSleep(t *testing.T) {
	bothStores(t, func(t *testing.T, spec string) {
		tel := newTelemetry(t)
		e := tel.engine(t, openStore(t, spec), nil)
		var bAttempts atomic.Int32
		job := durably.MustRegister(e, &durably.Job[string, string]{
			Name: "otel-steps",
			Run: func(ctx context.Context, s *durably.StepContext, in string) (string, error) {
				if _, err := durably.RunStep(s, "a", func(context.Context) (int, error) { return 1, nil }); err != nil {
					return "", err
				}
				_, err := durably.RunStep(s, "b", func(context.Context) (int, error) {
					if bAttempts.Add(1) == 1 {
						return 0, errors.New("b: first attempt fails")
					}
					return 2, nil
				}, durably.WithStepRetry(durably.RetryPolicy{MaxAttempts: 2, Initial: 10 * time.Millisecond, Backoff: durably.BackoffFixed}))
				if err != nil {
					return "", err
				}
				if err := durably.Sleep(s, "nap", 30*time.Millisecond); err != nil {
					return "", err
				}
				return durably.RunStep(s, "c", func(context.Context) (string, error) { return "done " + in, nil })
			},
		})
		ctx, request := tel.requestSpan(t)
		run := runToEnd(t, ctx, e, job)
		if run.Status != durably.StatusCompleted {
			t.Fatalf("run %s: %s %s", run.ID, run.Status, run.Error)
		}
		waitFor(t, 5*time.Second, "three executions' spans", func() bool { return len(named(tel.finished(), "execute otel-steps")) == 3 })
		spans := tel.finished()

		// The trigger: a producer span in the request's trace, whose
		// context is what the run stores.
		triggers := named(spans, "trigger otel-steps")
		if len(triggers) != 1 {
			t.Fatalf("%d trigger spans, want 1: %+v", len(triggers), spans)
		}
		trig := triggers[0]
		traceID := request.SpanContext().TraceID().String()
		if trig.TraceID != traceID || trig.Parent != request.SpanContext().SpanID().String() || trig.Kind != "producer" {
			t.Fatalf("trigger span %+v: want a producer child of the request span %s/%s", trig, traceID, request.SpanContext().SpanID())
		}
		wantAttrs(t, trig, map[string]string{"messaging.system": "durably", "messaging.operation.name": "trigger",
			"messaging.operation.type": "send", "messaging.destination.name": "otel-steps", "messaging.message.id": run.ID,
			"durably.run.id": run.ID, "durably.trigger.disposition": "created"})
		var stored map[string]string
		if err := json.Unmarshal([]byte(run.TraceContext), &stored); err != nil {
			t.Fatalf("stored trace context %q: %v", run.TraceContext, err)
		}
		if want := "00-" + traceID + "-" + trig.SpanID + "-01"; stored["traceparent"] != want {
			t.Fatalf("stored traceparent %q, want %q", stored["traceparent"], want)
		}

		// The executions: consumer spans, each a child of the trigger's
		// span through the stored context.
		execs := named(spans, "execute otel-steps")
		wantOutcomes := []string{"suspended", "suspended", "completed"}
		wantAttempt := []string{"1", "2", "2"} // the retry counts; the sleep does not
		for i, x := range execs {
			if x.TraceID != traceID || x.Parent != trig.SpanID || !x.Remote || x.Kind != "consumer" {
				t.Errorf("execution %d %+v: want a consumer span whose remote parent is the trigger's %s", i, x, trig.SpanID)
			}
			wantAttrs(t, x, map[string]string{"durably.run.outcome": wantOutcomes[i], "durably.run.attempt": wantAttempt[i],
				"messaging.operation.type": "process", "messaging.destination.name": "otel-steps", "messaging.message.id": run.ID,
				"durably.job.name": "otel-steps", "durably.run.id": run.ID, "messaging.client.id": e.WorkerID()})
			if x.Status != "Unset" {
				t.Errorf("execution %d status %s %q, want Unset", i, x.Status, x.Desc)
			}
		}

		// The step attempts: each in its execution's span.
		type want struct {
			name, exec, attempt, outcome, status string
		}
		steps := []want{
			{"step a", execs[0].SpanID, "1", "completed", "Unset"},
			{"step b", execs[0].SpanID, "1", "failed", "Error"},
			{"step b", execs[1].SpanID, "2", "completed", "Unset"},
			{"step c", execs[2].SpanID, "1", "completed", "Unset"},
		}
		var got []span
		for _, s := range spans {
			if strings.HasPrefix(s.Name, "step ") {
				got = append(got, s)
			}
		}
		if len(got) != len(steps) {
			t.Fatalf("%d step spans, want %d: %+v", len(got), len(steps), got)
		}
		for i, w := range steps {
			s := got[i]
			if s.Name != w.name || s.Parent != w.exec || s.TraceID != traceID || s.Status != w.status {
				t.Errorf("step span %d %+v: want %s in execution %s with status %s", i, s, w.name, w.exec, w.status)
			}
			wantAttrs(t, s, map[string]string{"durably.step.attempt": w.attempt, "durably.step.outcome": w.outcome,
				"durably.job.name": "otel-steps", "durably.run.id": run.ID})
		}
		if got[1].Desc != "b: first attempt fails" || len(got[1].Events) != 1 || got[1].Events[0] != "exception" {
			t.Errorf("failed step span: status %q, events %v; want the error recorded", got[1].Desc, got[1].Events)
		}

		// The metrics of the same story.
		rm := tel.collect(t)
		job1 := attribute.String("messaging.destination.name", "otel-steps")
		for _, c := range []struct {
			name  string
			match []attribute.KeyValue
			want  int64
		}{
			{"messaging.client.sent.messages", []attribute.KeyValue{job1, attribute.String("durably.trigger.disposition", "created")}, 1},
			{"messaging.client.operation.duration", []attribute.KeyValue{job1, attribute.String("messaging.operation.name", "trigger")}, 1},
			{"messaging.client.consumed.messages", []attribute.KeyValue{job1, attribute.String("messaging.system", "durably")}, 3},
			{"messaging.process.duration", []attribute.KeyValue{job1, attribute.String("durably.run.outcome", "suspended")}, 2},
			{"messaging.process.duration", []attribute.KeyValue{job1, attribute.String("durably.run.outcome", "completed")}, 1},
			{"durably.runs.ended", []attribute.KeyValue{attribute.String("durably.job.name", "otel-steps"), attribute.String("durably.run.status", "completed")}, 1},
			{"durably.run.duration", []attribute.KeyValue{attribute.String("durably.run.status", "completed")}, 1},
			{"durably.run.claim_delay", []attribute.KeyValue{attribute.String("durably.job.name", "otel-steps")}, 3},
			{"durably.step.duration", []attribute.KeyValue{attribute.String("durably.step.name", "b"), attribute.String("durably.step.outcome", "failed")}, 1},
			{"durably.step.duration", []attribute.KeyValue{attribute.String("durably.job.name", "otel-steps")}, 4},
			{"durably.lease.losses", nil, 0},
		} {
			if got := total(rm, c.name, c.match...); got != c.want {
				t.Errorf("%s %v = %d, want %d", c.name, c.match, got, c.want)
			}
		}
	})
}

// A run that fails: the execution's span and the failing step's carry the
// error; the run counts as failed.
func TestTraceOfAFailedRun(t *testing.T) {
	bothStores(t, func(t *testing.T, spec string) {
		tel := newTelemetry(t)
		e := tel.engine(t, openStore(t, spec), nil)
		job := durably.MustRegister(e, &durably.Job[string, string]{
			Name: "otel-fails",
			Run: func(ctx context.Context, s *durably.StepContext, in string) (string, error) {
				return durably.RunStep(s, "boom", func(context.Context) (string, error) { return "", errors.New("boom: no luck") })
			},
		})
		if run := runToEnd(t, context.Background(), e, job); run.Status != durably.StatusFailed {
			t.Fatalf("run %s, want failed", run.Status)
		}
		waitFor(t, 5*time.Second, "the execution's span", func() bool { return len(named(tel.finished(), "execute otel-fails")) == 1 })
		spans := tel.finished()
		x := named(spans, "execute otel-fails")[0]
		trig := named(spans, "trigger otel-fails")[0]
		if trig.Parent != "" || x.Parent != trig.SpanID || x.TraceID != trig.TraceID {
			t.Fatalf("trigger %+v (a root: no span in the caller's context), execution %+v: want the execution its child", trig, x)
		}
		wantAttrs(t, x, map[string]string{"durably.run.outcome": "failed", "durably.run.attempt": "1"})
		if x.Status != "Error" || x.Desc != "boom: no luck" {
			t.Errorf("execution status %s %q, want Error with the run's error", x.Status, x.Desc)
		}
		step := named(spans, "step boom")[0]
		if step.Status != "Error" || step.Parent != x.SpanID {
			t.Errorf("step span %+v: want an Error child of the execution", step)
		}
		rm := tel.collect(t)
		if got := total(rm, "durably.runs.ended", attribute.String("durably.run.status", "failed")); got != 1 {
			t.Errorf("runs ended failed = %d, want 1", got)
		}
		if got := total(rm, "messaging.process.duration", attribute.String("error.type", "failed")); got != 1 {
			t.Errorf("executions with error.type failed = %d, want 1", got)
		}
	})
}

// Triggers that create no run (idempotent hits) count with their
// disposition; a trigger the store refuses (a concurrency conflict) counts
// with its error type and its span carries the error.
func TestTriggerDispositionsAndErrors(t *testing.T) {
	bothStores(t, func(t *testing.T, spec string) {
		tel := newTelemetry(t)
		e := tel.engine(t, openStore(t, spec), nil) // not started: runs stay pending
		job := durably.MustRegister(e, &durably.Job[string, string]{
			Name: "otel-keys",
			Run:  func(ctx context.Context, s *durably.StepContext, in string) (string, error) { return in, nil },
		})
		ctx := context.Background()
		first, err := job.Trigger(ctx, "x", durably.WithIdempotencyKey("k"))
		if err != nil {
			t.Fatal(err)
		}
		again, err := job.Trigger(ctx, "x", durably.WithIdempotencyKey("k"))
		if err != nil || again.Run.ID != first.Run.ID {
			t.Fatalf("idempotent trigger: %v %v", again, err)
		}
		if _, err := job.Trigger(ctx, "y", durably.WithConcurrencyKey("c")); err != nil {
			t.Fatal(err)
		}
		if _, err := job.Trigger(ctx, "z", durably.WithConcurrencyKey("c")); !errors.Is(err, durably.ErrConflict) {
			t.Fatalf("second pending run of a concurrency key: %v, want a conflict", err)
		}
		if _, err := job.BatchTrigger(ctx, []durably.BatchItem[string]{{Input: "p"}, {Input: "q"}}); err != nil {
			t.Fatal(err)
		}
		spans := named(tel.finished(), "trigger otel-keys")
		if len(spans) != 5 {
			t.Fatalf("%d trigger spans, want 5", len(spans))
		}
		wantAttrs(t, spans[1], map[string]string{"durably.trigger.disposition": "idempotent", "durably.run.id": first.Run.ID})
		if spans[3].Status != "Error" {
			t.Errorf("refused trigger's span: status %s, want Error", spans[3].Status)
		}
		wantAttrs(t, spans[4], map[string]string{"messaging.batch.message_count": "2"})
		// The runs triggered together share the batch's trace context;
		// an idempotent hit keeps the first trigger's.
		runs, err := e.ListRuns(ctx, durably.RunFilter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range runs {
			var want span
			switch string(r.Input) {
			case `"x"`:
				want = spans[0]
			case `"y"`:
				want = spans[2]
			default:
				want = spans[4]
			}
			if !strings.Contains(r.TraceContext, want.TraceID+"-"+want.SpanID) {
				t.Errorf("run %s stores %q, want the context of span %s", r.Input, r.TraceContext, want.SpanID)
			}
		}
		rm := tel.collect(t)
		for _, c := range []struct {
			match attribute.KeyValue
			want  int64
		}{
			{attribute.String("durably.trigger.disposition", "created"), 4},
			{attribute.String("durably.trigger.disposition", "idempotent"), 1},
			{attribute.String("error.type", "conflict"), 1},
		} {
			if got := total(rm, "messaging.client.sent.messages", c.match); got != c.want {
				t.Errorf("sent messages %v = %d, want %d", c.match, got, c.want)
			}
		}
		if got := total(rm, "messaging.client.operation.duration", attribute.String("error.type", "conflict")); got != 1 {
			t.Errorf("trigger durations with error.type conflict = %d, want 1", got)
		}
	})
}

// Pending runs are counted by job, due and later, at each collection.
func TestWaitingRunsGauge(t *testing.T) {
	bothStores(t, func(t *testing.T, spec string) {
		tel := newTelemetry(t)
		e := tel.engine(t, openStore(t, spec), nil) // not started
		job := durably.MustRegister(e, &durably.Job[string, string]{
			Name: "otel-wait",
			Run:  func(ctx context.Context, s *durably.StepContext, in string) (string, error) { return in, nil },
		})
		ctx := context.Background()
		for _, opt := range []durably.Option{nil, nil, durably.WithDelay(time.Hour)} {
			if _, err := job.Trigger(ctx, "x", opt); err != nil {
				t.Fatal(err)
			}
		}
		rm := tel.collect(t)
		jobAttr := attribute.String("durably.job.name", "otel-wait")
		if due, later := total(rm, "durably.runs.waiting", jobAttr, attribute.Bool("durably.run.due", true)),
			total(rm, "durably.runs.waiting", jobAttr, attribute.Bool("durably.run.due", false)); due != 2 || later != 1 {
			t.Fatalf("waiting runs: %d due, %d later; want 2 and 1", due, later)
		}
		// Executed runs are no longer waiting.
		if n, err := e.ProcessUntilIdle(ctx, "", 0); err != nil || n != 2 {
			t.Fatalf("processed %d runs, %v; want 2", n, err)
		}
		rm = tel.collect(t)
		if due := total(rm, "durably.runs.waiting", jobAttr, attribute.Bool("durably.run.due", true)); due != 0 {
			t.Fatalf("waiting runs after processing: %d due, want 0", due)
		}
	})
}
