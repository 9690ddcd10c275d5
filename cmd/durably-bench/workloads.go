package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/durably-go/durably"
)

// stepResult is what each benchmark step returns: a small struct, as in
// the peers' harnesses.
type stepResult struct {
	V   int    `json:"v"`
	Tag string `json:"tag"`
}

type stepsInput struct {
	I int `json:"i"`
}

// stepsJob is the job of enqueue and process: three persisted steps.
var stepsJob = &durably.Job[stepsInput, int]{
	Name: "bench-steps",
	Run: func(ctx context.Context, s *durably.StepContext, in stepsInput) (int, error) {
		a, err := durably.RunStep(s, "a", func(ctx context.Context) (stepResult, error) { return stepResult{V: in.I, Tag: "a"}, nil })
		if err != nil {
			return 0, err
		}
		b, err := durably.RunStep(s, "b", func(ctx context.Context) (stepResult, error) { return stepResult{V: a.V + 1, Tag: "b"}, nil })
		if err != nil {
			return 0, err
		}
		c, err := durably.RunStep(s, "c", func(ctx context.Context) (stepResult, error) { return stepResult{V: b.V + 1, Tag: "c"}, nil })
		if err != nil {
			return 0, err
		}
		if sum := a.V + b.V + c.V; sum != 3*in.I+3 {
			return 0, fmt.Errorf("bad step results for %d: %v %v %v", in.I, a, b, c)
		}
		return c.V, nil
	},
}

// oneJob is the job of latency: one persisted step.
var oneJob = &durably.Job[stepsInput, int]{
	Name: "bench-one",
	Run: func(ctx context.Context, s *durably.StepContext, in stepsInput) (int, error) {
		r, err := durably.RunStep(s, "only", func(ctx context.Context) (stepResult, error) { return stepResult{V: in.I, Tag: "only"}, nil })
		return r.V, err
	},
}

const batchSize = 500

// insertPending inserts n pending runs of job in batches (untimed setup).
func insertPending(ctx context.Context, j *durably.JobHandle[stepsInput, int], n int, labels func(i int) map[string]string) error {
	p := &progress{what: "setup: inserting runs", total: n}
	for start := 0; start < n; start += batchSize {
		items := make([]durably.BatchItem[stepsInput], 0, batchSize)
		for i := start; i < min(start+batchSize, n); i++ {
			it := durably.BatchItem[stepsInput]{Input: stepsInput{I: i}}
			if labels != nil {
				it.Options = []durably.Option{durably.WithLabels(labels(i))}
			}
			items = append(items, it)
		}
		if _, err := j.BatchTrigger(ctx, items); err != nil {
			return err
		}
		if n >= 20_000 {
			p.report(start + len(items))
		}
	}
	return nil
}

func countStatus(ctx context.Context, e *durably.Engine, status durably.Status) (int, error) {
	runs, err := e.ListRuns(ctx, durably.RunFilter{Statuses: []durably.Status{status}})
	return len(runs), err
}

// wlEnqueue: n runs of the 3-step job, no worker, triggered one at a time
// (each awaited), or in batches of 500: runs/s.
func wlEnqueue(ctx context.Context, c *config, db *benchDB, r *result) error {
	e, err := db.engine(ctx, durably.Config{})
	if err != nil {
		return err
	}
	j := durably.MustRegister(e, stepsJob)
	stop := startProfile(c)
	t0 := time.Now()
	if c.workload == "enqueue" {
		for i := range c.n {
			if _, err := j.Trigger(ctx, stepsInput{I: i}); err != nil {
				return err
			}
		}
	} else if err := insertPending(ctx, j, c.n, nil); err != nil {
		return err
	}
	elapsed := time.Since(t0)
	stop()
	r.Metrics["runs_per_s"], r.Units["runs_per_s"] = float64(c.n)/elapsed.Seconds(), "/s"
	if got, err := countStatus(ctx, e, durably.StatusPending); err != nil || got != c.n {
		return fmt.Errorf("%d pending runs after enqueue, want %d (%v)", got, c.n, err)
	}
	return nil
}

// wlProcess: n pending runs inserted untimed; the clock runs from worker
// start until all are completed: runs/s, steps/s and peak RSS.
func wlProcess(ctx context.Context, c *config, db *benchDB, r *result) error {
	e, err := db.engine(ctx, durably.Config{MaxConcurrentRuns: c.slots})
	if err != nil {
		return err
	}
	j := durably.MustRegister(e, stepsJob)
	if err := insertPending(ctx, j, c.n, nil); err != nil {
		return err
	}
	watch := watchCompletions(e, c.n)
	runtime.GC()
	debug.FreeOSMemory()
	commits := startCommitCount(ctx, e.Store(), db)
	rss := startRSS()
	stop := startProfile(c)
	cpu := startCPUShares(db)
	t0 := time.Now()
	if err := e.Start(); err != nil {
		return err
	}
	if err := watch.wait("process"); err != nil {
		return err
	}
	elapsed := time.Since(t0)
	cpu.stop(c.n, r)
	stop()
	peak := rss.stop()
	if err := e.Stop(ctx); err != nil {
		return err
	}
	r.Metrics["runs_per_s"], r.Units["runs_per_s"] = float64(c.n)/elapsed.Seconds(), "/s"
	r.Metrics["steps_per_s"], r.Units["steps_per_s"] = float64(3*c.n)/elapsed.Seconds(), "/s"
	r.Metrics["peak_rss_mb"], r.Units["peak_rss_mb"] = peak, "MB"
	if got, err := countStatus(ctx, e, durably.StatusCompleted); err != nil || got != c.n {
		return fmt.Errorf("%d completed runs, want %d (%v)", got, c.n, err)
	}
	commits.stop(ctx, c.n, r)
	return nil
}

// wlList: n runs over 100 organizations (labels organizationId, env); the
// first page (limit 20) of one organization, and of one organization and
// env: median of 50 calls each.
func wlList(ctx context.Context, c *config, db *benchDB, r *result) error {
	e, err := db.engine(ctx, durably.Config{})
	if err != nil {
		return err
	}
	j := durably.MustRegister(e, stepsJob)
	envs := []string{"production", "staging"}
	if err := insertPending(ctx, j, c.n, func(i int) map[string]string {
		return map[string]string{"organizationId": fmt.Sprintf("org-%03d", i%100), "env": envs[(i/100)%2]}
	}); err != nil {
		return err
	}
	measure := func(labels map[string]string) (float64, error) {
		var ds []float64
		for i := range 53 {
			t0 := time.Now()
			// DriveBy as the generated code of a durably.yaml sets it
			// (the tenant id is the selective label).
			runs, err := e.ListRuns(ctx, durably.RunFilter{Labels: labels, Limit: 20, DriveBy: "organizationId"})
			d := time.Since(t0)
			if err != nil {
				return 0, err
			}
			if len(runs) != 20 {
				return 0, fmt.Errorf("page of %d runs, want 20", len(runs))
			}
			if i >= 3 { // warm-up
				ds = append(ds, float64(d)/float64(time.Millisecond))
			}
		}
		sort.Float64s(ds)
		return median(ds), nil
	}
	stop := startProfile(c)
	defer stop()
	one, err := measure(map[string]string{"organizationId": "org-042"})
	if err != nil {
		return err
	}
	two, err := measure(map[string]string{"organizationId": "org-042", "env": "staging"})
	if err != nil {
		return err
	}
	r.Metrics["one_label_ms"], r.Units["one_label_ms"] = one, "ms"
	r.Metrics["two_labels_ms"], r.Units["two_labels_ms"] = two, "ms"
	return nil
}

// writeHeapProfile writes the heap profile of -memprofile, if any, after a
// collection, so that it shows what is live rather than garbage.
func writeHeapProfile(c *config) {
	if c.memprofile == "" {
		return
	}
	f, err := os.Create(c.memprofile)
	if err != nil {
		fatalf("memprofile: %v", err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		fatalf("memprofile: %v", err)
	}
	// The heap profile leaves out stacks and the runtime's own memory.
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	fmt.Fprintf(os.Stderr, "memprofile: sys %.1f MB, heap in use %.1f MB, heap idle not released %.1f MB, stacks %.1f MB, goroutines %d, GCs %d\n",
		mb(m.Sys), mb(m.HeapInuse), mb(m.HeapIdle-m.HeapReleased), mb(m.StackSys), runtime.NumGoroutine(), m.NumGC)
}

func mb(n uint64) float64 { return float64(n) / (1 << 20) }

// startProfile starts the CPU profile of -cpuprofile, if any.
func startProfile(c *config) (stop func()) {
	if c.profile == "" {
		return func() {}
	}
	f, err := os.Create(c.profile)
	if err != nil {
		fatalf("cpuprofile: %v", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fatalf("cpuprofile: %v", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}

// startTrace starts the runtime/trace of -trace, if any.
func startTrace(c *config) (stop func()) {
	if c.trace == "" {
		return func() {}
	}
	f, err := os.Create(c.trace)
	if err != nil {
		fatalf("trace: %v", err)
	}
	if err := trace.Start(f); err != nil {
		fatalf("trace: %v", err)
	}
	return func() {
		trace.Stop()
		_ = f.Close()
	}
}

// completions counts an engine's run:complete events up to n and keeps the
// first failure: the workloads that time a started worker wait on it.
type completions struct {
	n       int64
	count   atomic.Int64
	done    chan struct{}
	failure atomic.Value
}

func watchCompletions(e *durably.Engine, n int) *completions {
	w := &completions{n: int64(n), done: make(chan struct{})}
	e.OnEvent(func(ev durably.Event) {
		switch ev.Type {
		case durably.EventRunComplete:
			if w.count.Add(1) == w.n {
				close(w.done)
			}
		case durably.EventRunFail:
			w.failure.CompareAndSwap(nil, ev.Error)
		}
	})
	return w
}

// wait reports progress every second until all n runs completed, a run
// failed, or ten minutes passed.
func (w *completions) wait(what string) error {
	p := &progress{what: what, total: int(w.n)}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	timeout := time.After(10 * time.Minute)
	for {
		select {
		case <-w.done:
			return nil
		case <-tick.C:
			p.report(int(w.count.Load()))
			if f := w.failure.Load(); f != nil {
				return fmt.Errorf("a run failed: %v", f)
			}
		case <-timeout:
			return errors.New("timed out")
		}
	}
}

// cpuShares measures where a timed part's CPU went: this process (the
// engine and its store's client side), the PostgreSQL server's processes,
// and the whole machine (cores busy, from /proc/stat), so that a figure
// can say whether the machine's cores or the waits bound it.
type cpuShares struct {
	self, machine float64
	pg            time.Duration
	postgres      bool
}

func startCPUShares(db *benchDB) *cpuShares {
	s := &cpuShares{self: cpuSeconds(rusageSelf), machine: machineBusySeconds(), postgres: db.kind == "postgres"}
	if s.postgres {
		s.pg = postgresCPU()
	}
	return s
}

func (s *cpuShares) stop(runs int, r *result) {
	self := cpuSeconds(rusageSelf) - s.self
	n := float64(runs)
	r.Metrics["engine_cpu_us_per_run"], r.Units["engine_cpu_us_per_run"] = self*1e6/n, "µs"
	if s.postgres && s.pg >= 0 {
		if pg := postgresCPU(); pg >= 0 {
			r.Metrics["server_cpu_us_per_run"], r.Units["server_cpu_us_per_run"] = float64((pg-s.pg).Microseconds())/n, "µs"
		}
	}
	if m := machineBusySeconds(); m >= 0 && s.machine >= 0 {
		r.Metrics["machine_cpu_us_per_run"], r.Units["machine_cpu_us_per_run"] = (m-s.machine)*1e6/n, "µs"
	}
}

// machineBusySeconds is the CPU time all cores spent outside idle and
// iowait since boot (/proc/stat), or -1 where there is none.
func machineBusySeconds() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal …
	if len(f) < 9 || f[0] != "cpu" {
		return -1
	}
	var busy int64
	for i, v := range f[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return float64(busy) / 100 // USER_HZ
}
