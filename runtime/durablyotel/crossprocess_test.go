package durablyotel_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
)

// The cross-process case: the run is triggered here, inside a request's
// span; a worker process executes it and is killed (SIGKILL) in its second
// step; another worker process takes the run over once the lease expires,
// sleeps durably and finishes it. The second worker's spans, exported in
// that process, are in the trigger's trace: each execution a child of the
// trigger's span through the context stored with the run.

// crossModeEnv tells a child worker whether to hang in step b ("hang") or
// to finish the run ("finish").
const crossModeEnv = "DURABLYOTEL_TEST_MODE"

// hanging is the line a hanging child prints once it is inside step b.
const hanging = "DURABLYOTEL-HANGING"

func crossJob(mode string) *durably.Job[string, string] {
	return &durably.Job[string, string]{
		Name: "otel-cross",
		Run: func(ctx context.Context, s *durably.StepContext, in string) (string, error) {
			if _, err := durably.RunStep(s, "a", func(context.Context) (int, error) { return 1, nil }); err != nil {
				return "", err
			}
			_, err := durably.RunStep(s, "b", func(ctx context.Context) (int, error) {
				if mode == "hang" {
					fmt.Println(hanging)
					<-ctx.Done() // until the process is killed
					return 0, ctx.Err()
				}
				return 2, nil
			})
			if err != nil {
				return "", err
			}
			if err := durably.Sleep(s, "nap", 50*time.Millisecond); err != nil {
				return "", err
			}
			return durably.RunStep(s, "c", func(context.Context) (string, error) { return "done " + in, nil })
		},
	}
}

func TestTraceJoinsAcrossProcesses(t *testing.T) {
	bothStores(t, func(t *testing.T, spec string) {
		tel := newTelemetry(t)
		e := tel.engine(t, openStore(t, spec), nil) // triggers only: it executes nothing
		job := durably.MustRegister(e, crossJob(""))
		ctx, request := tel.requestSpan(t)
		res, err := job.Trigger(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		trig := named(tel.finished(), "trigger otel-cross")
		if len(trig) != 1 {
			t.Fatalf("%d trigger spans, want 1", len(trig))
		}

		doomed := startChild(t, "TestCrossProcessWorker", spec, crossModeEnv+"=hang")
		waitFor(t, 20*time.Second, "the first worker to reach step b", func() bool { return strings.Contains(doomed.out.String(), hanging) })
		_ = doomed.cmd.Process.Kill()

		spansFile := filepath.Join(t.TempDir(), "spans.json")
		finisher := startChild(t, "TestCrossProcessWorker", spec, crossModeEnv+"=finish", spansEnv+"="+spansFile)
		finisher.waitExit(t, 30*time.Second)
		run, err := e.GetRun(context.Background(), res.Run.ID)
		if err != nil || run.Status != durably.StatusCompleted || run.Crashes != 1 {
			t.Fatalf("run %+v, %v: want completed after one crash", run, err)
		}

		spans := readSpans(t, spansFile)
		traceID := request.SpanContext().TraceID().String()
		execs := named(spans, "execute otel-cross")
		if len(execs) != 2 {
			t.Fatalf("the second worker exported %d execution spans, want 2 (sleep, then finish): %+v", len(execs), spans)
		}
		for i, x := range execs {
			if x.TraceID != traceID || x.Parent != trig[0].SpanID || !x.Remote {
				t.Errorf("execution %d in the other process %+v: want it in trace %s, a child of the trigger's span %s", i, x, traceID, trig[0].SpanID)
			}
			// The crash counts as an attempt; the sleep does not.
			wantAttrs(t, x, map[string]string{"durably.run.attempt": "2", "durably.run.outcome": []string{"suspended", "completed"}[i]})
		}
		for _, c := range []struct{ step, exec string }{{"step b", execs[0].SpanID}, {"step c", execs[1].SpanID}} {
			s := named(spans, c.step)
			if len(s) != 1 || s[0].Parent != c.exec || s[0].TraceID != traceID {
				t.Errorf("%s: %+v, want one span in execution %s", c.step, s, c.exec)
			}
		}
		if a := named(spans, "step a"); len(a) != 0 {
			t.Errorf("step a replayed in the second worker, yet has a span: %+v", a)
		}
	})
}

// TestCrossProcessWorker is the worker process of
// TestTraceJoinsAcrossProcesses.
func TestCrossProcessWorker(t *testing.T) {
	childOnly(t)
	tel := newTelemetry(t)
	mode := os.Getenv(crossModeEnv)
	e := tel.engine(t, openStore(t, os.Getenv(storeEnv)), func(c *durably.Config) {
		// The hanging worker's lease expires a second after its death.
		c.LeaseDuration, c.LeaseRenewInterval = time.Second, 100*time.Millisecond
	})
	durably.MustRegister(e, crossJob(mode))
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	waitFor(t, 25*time.Second, "the run to end", func() bool {
		runs, err := e.ListRuns(ctx, durably.RunFilter{Statuses: []durably.Status{durably.StatusPending, durably.StatusLeased}})
		if err != nil {
			t.Fatal(err)
		}
		return len(runs) == 0
	})
	if err := e.Stop(ctx); err != nil { // its executions' spans have ended
		t.Fatal(err)
	}
	writeSpans(t, os.Getenv(spansEnv), tel.finished())
}
