package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	"github.com/durably-go/durably"
)

// The workloads of child runs and signals (issue 22).

// wlFanout: one parent run starts n children of the one-step job in one
// step, waits for them all and sums their outputs, on a worker of -slots
// slots: the time from the parent's trigger to its completion, the
// children per second, and how many times the parent executed (2 when
// the end of its last child woke it, not each one).
func wlFanout(ctx context.Context, c *config, db *benchDB, r *result) error {
	e, err := db.engine(ctx, durably.Config{MaxConcurrentRuns: c.slots})
	if err != nil {
		return err
	}
	children := durably.MustRegister(e, oneJob)
	var executions atomic.Int64
	parent := durably.MustRegister(e, &durably.Job[stepsInput, int]{
		Name: "bench-fanout",
		Run: func(ctx context.Context, s *durably.StepContext, in stepsInput) (int, error) {
			executions.Add(1)
			items := make([]durably.BatchItem[stepsInput], in.I)
			for i := range items {
				items[i].Input = stepsInput{I: i}
			}
			kids, err := children.StartChildren(s, "spawn", items)
			if err != nil {
				return 0, err
			}
			outs, err := durably.AwaitChildren(s, "gather", kids)
			if err != nil {
				return 0, err
			}
			sum := 0
			for _, o := range outs {
				if o.Err != nil {
					return 0, o.Err
				}
				sum += o.Output
			}
			return sum, nil
		},
	})
	if err := e.Start(); err != nil {
		return err
	}
	defer e.Stop(ctx)
	stop := startProfile(c)
	t0 := time.Now()
	out, err := parent.TriggerAndWait(ctx, stepsInput{I: c.n}, durably.WithPollInterval(time.Second))
	elapsed := time.Since(t0)
	stop()
	if err != nil {
		return err
	}
	if want := c.n * (c.n - 1) / 2; out.Output != want {
		return fmt.Errorf("the parent's output is %d, want %d", out.Output, want)
	}
	r.Metrics["fanout_ms"], r.Units["fanout_ms"] = float64(elapsed)/float64(time.Millisecond), "ms"
	r.Metrics["children_per_s"], r.Units["children_per_s"] = float64(c.n)/elapsed.Seconds(), "/s"
	r.Metrics["parent_executions"], r.Units["parent_executions"] = float64(executions.Load()), ""
	return nil
}

// benchSignal is the signal workload's signal.
var benchSignal = durably.Signal[int]{Name: "go"}

// wlSignal: worker running; n times in turn, a run of a job that waits for
// a signal is triggered and, once it waits (handed back, holding no slot),
// the signal is sent: the time from the send until the run completed with
// the payload, as its run:complete reaches the sender: p50/p90/p99/max and a
// histogram.
func wlSignal(ctx context.Context, c *config, db *benchDB, r *result) error {
	e, err := db.engine(ctx, durably.Config{MaxConcurrentRuns: c.slots})
	if err != nil {
		return err
	}
	j := durably.MustRegister(e, &durably.Job[stepsInput, int]{
		Name:    "bench-signal",
		Signals: []durably.SignalDecl{benchSignal},
		Run: func(ctx context.Context, s *durably.StepContext, in stepsInput) (int, error) {
			return durably.WaitForSignal(s, "wait", benchSignal)
		},
	})
	completed := make(chan durably.Event, 1)
	e.OnEvent(func(ev durably.Event) {
		if ev.Type == durably.EventRunComplete || ev.Type == durably.EventRunFail {
			completed <- ev
		}
	})
	if err := e.Start(); err != nil {
		return err
	}
	defer e.Stop(ctx)
	const warmup = 10
	lat := make([]float64, 0, c.n)
	stop := startProfile(c)
	for i := -warmup; i < c.n; i++ {
		res, err := j.Trigger(ctx, stepsInput{I: i})
		if err != nil {
			return err
		}
		if err := waitUntilWaiting(ctx, e, res.Run.ID); err != nil {
			return err
		}
		t0 := time.Now()
		if err := durably.SendSignal(ctx, e, res.Run.ID, benchSignal, i); err != nil {
			return err
		}
		ev := <-completed
		d := time.Since(t0)
		if ev.Type != durably.EventRunComplete || ev.RunID != res.Run.ID || string(ev.Output) != fmt.Sprint(i) {
			return fmt.Errorf("run %s ended with %+v", res.Run.ID, ev)
		}
		if i >= 0 {
			lat = append(lat, float64(d)/float64(time.Millisecond))
		}
	}
	stop()
	sorted := slices.Clone(lat)
	sort.Float64s(sorted)
	for name, p := range map[string]float64{"p50_ms": 50, "p90_ms": 90, "p99_ms": 99} {
		r.Metrics[name], r.Units[name] = percentile(sorted, p), "ms"
	}
	r.Metrics["max_ms"], r.Units["max_ms"] = sorted[len(sorted)-1], "ms"
	r.Histogram = histogram(sorted, latencyEdges)
	return nil
}

// waitUntilWaiting polls run id until it waits for its signal, handed back.
func waitUntilWaiting(ctx context.Context, e *durably.Engine, id string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		run, err := e.GetRun(ctx, id)
		if err != nil {
			return err
		}
		if run != nil && run.Status == durably.StatusPending && run.WaitingFor != "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("run %s did not wait for its signal within 10s: %+v", id, run)
		}
		time.Sleep(100 * time.Microsecond)
	}
}
