package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// latencyEdges are the upper bounds (ms) of the latency histogram's
// buckets, the last bucket holding everything above them. They are fixed so
// that histograms of two builds or two stores compare bucket by bucket.
var latencyEdges = []float64{0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 7.5, 10, 20, 50, 100}

// bucket is one bar of a histogram: the samples at most Le ms (and above
// the previous bucket's bound); Le is "+Inf" for the last.
type bucket struct {
	Le    string `json:"le"`
	Count int    `json:"count"`
}

func histogram(samples []float64, edges []float64) []bucket {
	h := make([]bucket, len(edges)+1)
	for i, e := range edges {
		h[i].Le = strconv.FormatFloat(e, 'f', -1, 64)
	}
	h[len(edges)].Le = "+Inf"
	for _, v := range samples {
		h[sort.SearchFloat64s(edges, v)].Count++
	}
	return h
}

// mergeHistograms adds up the histograms of the repetitions (same edges).
func mergeHistograms(rs []result) []bucket {
	var sum []bucket
	for _, r := range rs {
		if sum == nil && r.Histogram != nil {
			sum = make([]bucket, len(r.Histogram))
			for i, b := range r.Histogram {
				sum[i].Le = b.Le
			}
		}
		for i, b := range r.Histogram {
			if i < len(sum) {
				sum[i].Count += b.Count
			}
		}
	}
	return sum
}

// printHistogram draws a histogram with its cumulative share, leaving out
// the empty buckets at both ends.
func printHistogram(w io.Writer, h []bucket) {
	first, last, total, peak := -1, -1, 0, 0
	for i, b := range h {
		if b.Count > 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
		total += b.Count
		peak = max(peak, b.Count)
	}
	if total == 0 {
		return
	}
	fmt.Fprintf(w, "  histogram (ms, %d samples)\n", total)
	cum := 0
	for i := first; i <= last; i++ {
		b := h[i]
		cum += b.Count
		lower := "0"
		if i > 0 {
			lower = h[i-1].Le
		}
		bar := strings.Repeat("#", (b.Count*50+peak-1)/peak)
		fmt.Fprintf(w, "  %6s ..%6s %7d %6.2f%%  %s\n", lower, b.Le, b.Count, 100*float64(cum)/float64(total), bar)
	}
}

// wlLatency: worker running, idle; n sequential trigger-and-wait calls of a
// 1-step job, each timed from before the trigger until the caller sees the
// run completed: p50/p90/p99/p99.9/max and a histogram. With -breakdown it
// also times each hand-off of a run (from the engine's events) and every
// store call the worker and the run make.
func wlLatency(ctx context.Context, c *config, db *benchDB, r *result) error {
	st, err := db.open(ctx)
	if err != nil {
		return err
	}
	var timed *timedStore
	if c.breakdown {
		timed = &timedStore{Store: st}
		st = timed
	}
	e, err := durably.New(durably.Config{Store: st, MaxConcurrentRuns: c.slots})
	if err != nil {
		return err
	}
	if err := e.Migrate(ctx); err != nil {
		return err
	}
	j := durably.MustRegister(e, oneJob)
	var stages *stageClock
	if c.breakdown {
		stages = &stageClock{}
		e.OnEvent(stages.observe)
	}
	if err := e.Start(); err != nil {
		return err
	}
	defer e.Stop(ctx)
	const warmup = 20
	lat := make([]float64, 0, c.n)
	stop := startProfile(c)
	stopTrace := startTrace(c)
	if timed != nil {
		timed.start()
	}
	for i := -warmup; i < c.n; i++ {
		if i == 0 && timed != nil {
			timed.reset()
		}
		var bg int64
		if timed != nil {
			bg = timed.background.Load()
		}
		t0 := time.Now()
		if stages != nil {
			stages.begin(t0)
		}
		out, err := j.TriggerAndWait(ctx, stepsInput{I: i})
		t1 := time.Now()
		if err != nil {
			return err
		}
		if out.Output != i {
			return fmt.Errorf("output %d, want %d", out.Output, i)
		}
		if i >= 0 {
			d := float64(t1.Sub(t0)) / float64(time.Millisecond)
			lat = append(lat, d)
			if stages != nil {
				stages.end(t1, timed.background.Load() != bg, d)
			}
		}
	}
	stopTrace()
	stop()
	sorted := slices.Clone(lat)
	sort.Float64s(sorted)
	for name, p := range map[string]float64{"p50_ms": 50, "p90_ms": 90, "p99_ms": 99, "p999_ms": 99.9} {
		r.Metrics[name], r.Units[name] = percentile(sorted, p), "ms"
	}
	r.Metrics["max_ms"], r.Units["max_ms"] = sorted[len(sorted)-1], "ms"
	r.Histogram = histogram(sorted, latencyEdges)
	if stages != nil {
		stages.report(r)
		timed.report(r, len(lat))
	}
	return nil
}

// stageClock times the hand-offs of the one run in flight from the
// engine's events, which it receives synchronously where they happen:
//
//	enqueue  before the trigger → run:trigger (the insert committed)
//	start    run:trigger → run:leased (the run's goroutine began)
//	begin    run:leased → step:start
//	finish   step:start → run:complete (the step, and the finish with the
//	         held step committed)
//	notify   run:complete → the caller has the output
type stageClock struct {
	mu                                 sync.Mutex
	t0, trigger, leased, step, complet time.Time
	stages                             map[string][]float64
	// Samples during which the worker called the store for itself (a
	// claim, maintenance), and the others.
	withBackground, without []float64
}

var stageNames = []string{"enqueue", "start", "begin", "finish", "notify"}

func (s *stageClock) begin(t0 time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.t0, s.trigger, s.leased, s.step, s.complet = t0, time.Time{}, time.Time{}, time.Time{}, time.Time{}
}

func (s *stageClock) observe(ev durably.Event) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch ev.Type {
	case durably.EventRunTrigger:
		s.trigger = now
	case durably.EventRunLeased:
		s.leased = now
	case durably.EventStepStart:
		s.step = now
	case durably.EventRunComplete:
		s.complet = now
	}
}

func (s *stageClock) end(t1 time.Time, background bool, total float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stages == nil {
		s.stages = map[string][]float64{}
	}
	ms := func(a, b time.Time) float64 { return float64(b.Sub(a)) / float64(time.Millisecond) }
	points := []time.Time{s.t0, s.trigger, s.leased, s.step, s.complet, t1}
	for i, name := range stageNames {
		if points[i].IsZero() || points[i+1].IsZero() {
			continue
		}
		s.stages[name] = append(s.stages[name], ms(points[i], points[i+1]))
	}
	if background {
		s.withBackground = append(s.withBackground, total)
	} else {
		s.without = append(s.without, total)
	}
}

func (s *stageClock) report(r *result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range stageNames {
		v := slices.Clone(s.stages[name])
		sort.Float64s(v)
		for _, p := range []float64{50, 99} {
			k := fmt.Sprintf("stage_%s_p%.0f_ms", name, p)
			r.Metrics[k], r.Units[k] = percentile(v, p), "ms"
		}
	}
	for k, v := range map[string][]float64{"with_worker_calls": s.withBackground, "without_worker_calls": s.without} {
		v = slices.Clone(v)
		sort.Float64s(v)
		r.Metrics[k+"_n"], r.Units[k+"_n"] = float64(len(v)), ""
		if len(v) > 0 {
			r.Metrics[k+"_p50_ms"], r.Units[k+"_p50_ms"] = percentile(v, 50), "ms"
			r.Metrics[k+"_p99_ms"], r.Units[k+"_p99_ms"] = percentile(v, 99), "ms"
		}
	}
}

// timedStore times the store calls of the latency workload. It hides the
// store's optional interfaces (the event transport: nothing watches here).
type timedStore struct {
	store.Store
	background atomic.Int64 // calls the worker makes for itself, counted at their start

	mu    sync.Mutex
	on    bool
	calls map[string][]float64
}

func (t *timedStore) start() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.on = true
	t.calls = map[string][]float64{}
}

func (t *timedStore) reset() { t.start() }

func (t *timedStore) record(name string, t0 time.Time) {
	d := float64(time.Since(t0)) / float64(time.Millisecond)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.on {
		t.calls[name] = append(t.calls[name], d)
	}
}

func (t *timedStore) report(r *result, samples int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for name, v := range t.calls {
		v = slices.Clone(v)
		sort.Float64s(v)
		k := "call_" + name
		r.Metrics[k+"_per_run"], r.Units[k+"_per_run"] = float64(len(v))/float64(samples), ""
		r.Metrics[k+"_p50_ms"], r.Units[k+"_p50_ms"] = percentile(v, 50), "ms"
		r.Metrics[k+"_p99_ms"], r.Units[k+"_p99_ms"] = percentile(v, 99), "ms"
		r.Metrics[k+"_max_ms"], r.Units[k+"_max_ms"] = v[len(v)-1], "ms"
	}
}

func (t *timedStore) Enqueue(ctx context.Context, runs []store.NewRun) ([]store.Enqueued, error) {
	defer t.record("Enqueue", time.Now())
	return t.Store.Enqueue(ctx, runs)
}

func (t *timedStore) Claim(ctx context.Context, req store.ClaimRequest) ([]*store.Run, error) {
	t.background.Add(1)
	defer t.record("Claim", time.Now())
	return t.Store.Claim(ctx, req)
}

func (t *timedStore) SaveStep(ctx context.Context, lease store.Lease, step *store.Step) (bool, error) {
	defer t.record("SaveStep", time.Now())
	return t.Store.SaveStep(ctx, lease, step)
}

func (t *timedStore) FinishRun(ctx context.Context, lease store.Lease, fin store.Finish) (bool, error) {
	defer t.record("FinishRun", time.Now())
	return t.Store.FinishRun(ctx, lease, fin)
}

func (t *timedStore) RenewLease(ctx context.Context, lease store.Lease, now, expiresAt time.Time) (bool, error) {
	defer t.record("RenewLease", time.Now())
	return t.Store.RenewLease(ctx, lease, now, expiresAt)
}

func (t *timedStore) ReleaseExpiredLeases(ctx context.Context, now time.Time) (int, error) {
	t.background.Add(1)
	defer t.record("ReleaseExpiredLeases", time.Now())
	return t.Store.ReleaseExpiredLeases(ctx, now)
}

func (t *timedStore) Maintain(ctx context.Context, now time.Time) error {
	t.background.Add(1)
	defer t.record("Maintain", time.Now())
	return t.Store.Maintain(ctx, now)
}

func (t *timedStore) GetRun(ctx context.Context, id string) (*store.Run, error) {
	defer t.record("GetRun", time.Now())
	return t.Store.GetRun(ctx, id)
}
