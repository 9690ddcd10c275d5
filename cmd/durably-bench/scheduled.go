package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/durably-go/durably"
)

// wlScheduled: n runs of the one-step job triggered with a run-at time
// spread evenly over a window (due at -rate runs per second, at least one
// second long) that starts once every run is triggered; the worker runs
// meanwhile. Lateness is the time from a run's runAt until its claim (the
// run:leased event); throughput is n over the time from the first due time
// to the last completion.
func wlScheduled(ctx context.Context, c *config, db *benchDB, r *result) error {
	e, err := db.engine(ctx, durably.Config{MaxConcurrentRuns: c.slots})
	if err != nil {
		return err
	}
	j := durably.MustRegister(e, oneJob)
	rate := c.rate
	if rate <= 0 {
		rate = 1000
	}
	window := max(time.Second, time.Duration(c.n)*time.Second/time.Duration(rate))
	// The window starts after the triggers, estimated generously; a setup
	// that overran it would count its own time as lateness, and fails.
	base := time.Now().Add(time.Second + time.Duration(c.n)*200*time.Microsecond)
	due := make(map[string]time.Time, c.n)
	var mu sync.Mutex
	lateness := make([]float64, 0, c.n)
	done := make(chan struct{})
	var last time.Time
	completed := 0
	var failure error
	e.OnEvent(func(ev durably.Event) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		switch ev.Type {
		case durably.EventRunLeased:
			if at, ok := due[ev.RunID]; ok {
				lateness = append(lateness, float64(now.Sub(at))/float64(time.Millisecond))
			}
		case durably.EventRunComplete:
			completed++
			if completed == c.n {
				last = now
				close(done)
			}
		case durably.EventRunFail:
			failure = fmt.Errorf("run %s failed: %s", ev.RunID, ev.Error)
		}
	})
	if err := e.Start(); err != nil {
		return err
	}
	defer e.Stop(ctx)
	stop := startProfile(c)
	for start := 0; start < c.n; start += batchSize {
		items := make([]durably.BatchItem[stepsInput], min(batchSize, c.n-start))
		ats := make([]time.Time, len(items))
		for i := range items {
			k := start + i
			ats[i] = base.Add(time.Duration(k) * window / time.Duration(c.n))
			items[i] = durably.BatchItem[stepsInput]{Input: stepsInput{I: k}, Options: []durably.Option{durably.WithRunAt(ats[i])}}
		}
		res, err := j.BatchTrigger(ctx, items)
		if err != nil {
			return err
		}
		mu.Lock()
		for i, t := range res {
			due[t.Run.ID] = t.Run.RunAt
			if t.Run.RunAt.IsZero() {
				due[t.Run.ID] = ats[i]
			}
		}
		mu.Unlock()
	}
	if time.Now().After(base) {
		return fmt.Errorf("triggering %d runs took past the window's start; use a smaller -n", c.n)
	}
	select {
	case <-done:
	case <-time.After(window + 10*time.Minute):
		return errors.New("timed out")
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	if failure != nil {
		return failure
	}
	if len(lateness) != c.n {
		return fmt.Errorf("%d claims seen, want %d", len(lateness), c.n)
	}
	sort.Float64s(lateness)
	if lateness[0] < 0 {
		return fmt.Errorf("a run was claimed %.1f ms before its time", -lateness[0])
	}
	r.Metrics["runs_per_s"], r.Units["runs_per_s"] = float64(c.n)/last.Sub(base).Seconds(), "/s"
	r.Metrics["due_per_s"], r.Units["due_per_s"] = float64(c.n)/window.Seconds(), "/s"
	r.Metrics["late_p50_ms"], r.Units["late_p50_ms"] = percentile(lateness, 50), "ms"
	r.Metrics["late_p99_ms"], r.Units["late_p99_ms"] = percentile(lateness, 99), "ms"
	r.Metrics["late_max_ms"], r.Units["late_max_ms"] = lateness[len(lateness)-1], "ms"
	return nil
}
