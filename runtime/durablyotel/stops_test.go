package durablyotel_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyotel"
	"github.com/durably-go/durably/store"
)

// blockingJob's step waits for the run's context to end; entered is
// closed once it runs.
func blockingJob(name string, entered chan struct{}) *durably.Job[string, string] {
	return &durably.Job[string, string]{
		Name: name,
		Run: func(ctx context.Context, s *durably.StepContext, in string) (string, error) {
			return durably.RunStep(s, "wait", func(ctx context.Context) (string, error) {
				close(entered)
				<-ctx.Done()
				return "", ctx.Err()
			})
		},
	}
}

// A run cancelled while it executes: its execution and step end cancelled,
// without an error status, and the run counts as cancelled.
func TestTraceOfACancelledRun(t *testing.T) {
	bothStores(t, func(t *testing.T, spec string) {
		tel := newTelemetry(t)
		e := tel.engine(t, openStore(t, spec), nil)
		entered := make(chan struct{})
		job := durably.MustRegister(e, blockingJob("otel-cancel", entered))
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		res, err := job.Trigger(context.Background(), "x")
		if err != nil {
			t.Fatal(err)
		}
		<-entered
		if err := e.Cancel(context.Background(), res.Run.ID); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the execution's span", func() bool { return len(named(tel.finished(), "execute otel-cancel")) == 1 })
		spans := tel.finished()
		x, step := named(spans, "execute otel-cancel")[0], named(spans, "step wait")[0]
		wantAttrs(t, x, map[string]string{"durably.run.outcome": "cancelled"})
		wantAttrs(t, step, map[string]string{"durably.step.outcome": "cancelled"})
		if x.Status != "Unset" || step.Status != "Unset" {
			t.Errorf("statuses %s, %s: a cancellation is no error", x.Status, step.Status)
		}
		if got := total(tel.collect(t), "durably.runs.ended", attribute.String("durably.run.status", "cancelled")); got != 1 {
			t.Errorf("runs ended cancelled = %d, want 1", got)
		}
	})
}

// refusedRenewals is a store whose lease renewals are refused, as when
// another worker took the run over.
type refusedRenewals struct{ store.Store }

func (refusedRenewals) RenewLease(context.Context, store.Lease, time.Time, time.Time) (bool, error) {
	return false, nil
}

// A lost lease: the execution ends lease_lost with an error status and is
// counted; what the engine logs about it carries the execution's span.
func TestLeaseLossIsCountedAndLoggedInTheRunsSpan(t *testing.T) {
	bothStores(t, func(t *testing.T, spec string) {
		tel := newTelemetry(t)
		logs := &syncBuffer{}
		e := tel.engine(t, refusedRenewals{openStore(t, spec)}, func(c *durably.Config) {
			c.LeaseRenewInterval = 20 * time.Millisecond
			c.Logger = slog.New(durablyotel.LogHandler(slog.NewJSONHandler(logs, nil)))
		})
		entered := make(chan struct{})
		job := durably.MustRegister(e, blockingJob("otel-lost", entered))
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		if _, err := job.Trigger(context.Background(), "x"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the execution's span", func() bool { return len(named(tel.finished(), "execute otel-lost")) == 1 })
		x := named(tel.finished(), "execute otel-lost")[0]
		wantAttrs(t, x, map[string]string{"durably.run.outcome": "lease_lost"})
		if x.Status != "Error" {
			t.Errorf("execution status %s, want Error", x.Status)
		}
		if got := total(tel.collect(t), "durably.lease.losses", attribute.String("durably.job.name", "otel-lost")); got != 1 {
			t.Errorf("lease losses = %d, want 1", got)
		}
		line := logLine(t, logs.String(), "durably: worker error")
		if line["trace_id"] != x.TraceID || line["span_id"] != x.SpanID {
			t.Errorf("the worker error's log line %v: want trace_id %s and span_id %s", line, x.TraceID, x.SpanID)
		}
	})
}

// logLine returns the first JSON log line with message msg.
func logLine(t *testing.T, logs, msg string) map[string]any {
	t.Helper()
	for l := range strings.SplitSeq(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == msg {
			return m
		}
	}
	t.Fatalf("no log line %q in:\n%s", msg, logs)
	return nil
}

// A job body failing outside any step is retried; the engine's log line
// about it carries the failed execution's span.
func TestRetryLogCarriesTheExecutionsSpan(t *testing.T) {
	bothStores(t, func(t *testing.T, spec string) {
		tel := newTelemetry(t)
		logs := &syncBuffer{}
		e := tel.engine(t, openStore(t, spec), func(c *durably.Config) {
			c.Logger = slog.New(durablyotel.LogHandler(slog.NewJSONHandler(logs, nil)))
		})
		var calls atomic.Int32
		job := durably.MustRegister(e, &durably.Job[string, string]{
			Name:  "otel-body-retry",
			Retry: &durably.RetryPolicy{MaxAttempts: 2, Initial: 10 * time.Millisecond},
			Run: func(ctx context.Context, s *durably.StepContext, in string) (string, error) {
				if calls.Add(1) == 1 {
					return "", errors.New("body fails once")
				}
				return in, nil
			},
		})
		if run := runToEnd(t, context.Background(), e, job); run.Status != durably.StatusCompleted {
			t.Fatalf("run %s", run.Status)
		}
		waitFor(t, 5*time.Second, "two executions' spans", func() bool { return len(named(tel.finished(), "execute otel-body-retry")) == 2 })
		execs := named(tel.finished(), "execute otel-body-retry")
		wantAttrs(t, execs[0], map[string]string{"durably.run.outcome": "retrying", "durably.run.attempt": "1"})
		wantAttrs(t, execs[1], map[string]string{"durably.run.outcome": "completed", "durably.run.attempt": "2"})
		line := logLine(t, logs.String(), "durably: run failed; retrying")
		if line["trace_id"] != execs[0].TraceID || line["span_id"] != execs[0].SpanID {
			t.Errorf("the retry's log line %v: want trace_id %s and span_id %s", line, execs[0].TraceID, execs[0].SpanID)
		}
	})
}

// flakyClaims is a store whose claims fail as unavailable while down is
// set.
type flakyClaims struct {
	store.Store
	down atomic.Bool
}

func (s *flakyClaims) Claim(ctx context.Context, req store.ClaimRequest) ([]*store.Run, error) {
	if s.down.Load() {
		return nil, fmt.Errorf("test: database away: %w", store.ErrUnavailable)
	}
	return s.Store.Claim(ctx, req)
}

// An outage of the database is counted as it begins, with the operation
// that met it, and measured when it ends.
func TestOutagesAreCountedAndMeasured(t *testing.T) {
	bothStores(t, func(t *testing.T, spec string) {
		tel := newTelemetry(t)
		st := &flakyClaims{Store: openStore(t, spec)}
		st.down.Store(true)
		e := tel.engine(t, st, nil)
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the outage to be counted", func() bool {
			return total(tel.collect(t), "durably.store.outages", attribute.String("durably.store.operation", "claim")) == 1
		})
		if got := total(tel.collect(t), "durably.store.outage.duration"); got != 0 {
			t.Fatalf("an outage in progress is measured: %d", got)
		}
		st.down.Store(false)
		waitFor(t, 10*time.Second, "the outage's end to be measured", func() bool {
			return total(tel.collect(t), "durably.store.outage.duration") == 1
		})
		if got := total(tel.collect(t), "durably.store.outages"); got != 1 {
			t.Errorf("outages = %d, want 1 (retries within one outage are one)", got)
		}
	})
}

// A run that crashed as often as its job allows fails without executing
// again: its last execution's span says so, with the reason.
func TestTraceOfARunThatCrashedOut(t *testing.T) {
	bothStores(t, func(t *testing.T, spec string) {
		tel := newTelemetry(t)
		st := openStore(t, spec)
		e := tel.engine(t, st, nil) // not started: the ghost claims first
		job := durably.MustRegister(e, &durably.Job[string, string]{
			Name:  "otel-crashed",
			Retry: &durably.RetryPolicy{MaxAttempts: 1},
			Run:   func(ctx context.Context, s *durably.StepContext, in string) (string, error) { return in, nil },
		})
		ctx := context.Background()
		res, err := job.Trigger(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		// A worker that claims the run and is never heard of again.
		past := time.Now().Add(-time.Minute)
		if runs, err := st.Claim(ctx, store.ClaimRequest{WorkerID: "ghost", Now: past, Lease: time.Second, Limit: 1}); err != nil || len(runs) != 1 {
			t.Fatalf("ghost claim: %d runs, %v", len(runs), err)
		}
		if n, err := e.ProcessUntilIdle(ctx, "", 0); err != nil || n != 1 {
			t.Fatalf("processed %d, %v", n, err)
		}
		if run, _ := e.GetRun(ctx, res.Run.ID); run.Status != durably.StatusFailed || run.Crashes != 1 {
			t.Fatalf("run %s with %d crashes, want failed after 1", run.Status, run.Crashes)
		}
		x := named(tel.finished(), "execute otel-crashed")
		if len(x) != 1 {
			t.Fatalf("%d execution spans, want 1", len(x))
		}
		wantAttrs(t, x[0], map[string]string{"durably.run.outcome": "failed", "durably.run.attempt": "2"})
		if x[0].Status != "Error" || !strings.Contains(x[0].Desc, "crashed") {
			t.Errorf("execution status %s %q, want Error saying the run crashed", x[0].Status, x[0].Desc)
		}
	})
}

// Timeouts: a step attempt past its step timeout ends timed_out (and the
// run, its attempt spent, fails); a run past its job's Timeout ends its
// execution timed_out, with an error status and the reason.
func TestTraceOfTimeouts(t *testing.T) {
	bothStores(t, func(t *testing.T, spec string) {
		tel := newTelemetry(t)
		e := tel.engine(t, openStore(t, spec), nil)
		waitForEnd := func(ctx context.Context) (string, error) {
			<-ctx.Done()
			return "", ctx.Err()
		}
		stepJob := durably.MustRegister(e, &durably.Job[string, string]{
			Name: "otel-step-timeout",
			Run: func(ctx context.Context, s *durably.StepContext, in string) (string, error) {
				return durably.RunStep(s, "slow", waitForEnd, durably.WithStepTimeout(20*time.Millisecond))
			},
		})
		runJob := durably.MustRegister(e, &durably.Job[string, string]{
			Name:    "otel-run-timeout",
			Timeout: 50 * time.Millisecond,
			Run: func(ctx context.Context, s *durably.StepContext, in string) (string, error) {
				return durably.RunStep(s, "slow", waitForEnd)
			},
		})
		for _, c := range []struct {
			job               *durably.JobHandle[string, string]
			execution, step   string
			executionContains string
		}{
			{stepJob, "failed", "timed_out", "timed out"},
			{runJob, "timed_out", "timed_out", "timed out"},
		} {
			name := c.job.Name()
			if run := runToEnd(t, context.Background(), e, c.job); run.Status != durably.StatusFailed {
				t.Fatalf("%s: run %s, want failed", name, run.Status)
			}
			waitFor(t, 5*time.Second, name+"'s execution span", func() bool { return len(named(tel.finished(), "execute "+name)) == 1 })
			x := named(tel.finished(), "execute "+name)[0]
			wantAttrs(t, x, map[string]string{"durably.run.outcome": c.execution})
			if x.Status != "Error" || !strings.Contains(x.Desc, c.executionContains) {
				t.Errorf("%s: execution status %s %q, want Error saying it timed out", name, x.Status, x.Desc)
			}
			var step span
			for _, s := range named(tel.finished(), "step slow") {
				if s.Attrs["durably.job.name"] == name {
					step = s
				}
			}
			wantAttrs(t, step, map[string]string{"durably.step.outcome": c.step})
			if step.Status != "Error" || step.Parent != x.SpanID {
				t.Errorf("%s: step span %+v, want an Error child of the execution", name, step)
			}
		}
	})
}
