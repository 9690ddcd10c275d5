package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/durably-go/durably"
)

// The scaleout workload: N worker processes of one slot each drain a
// backlog of runs that each take a random time between -run-min and
// -run-max (seeded by -seed, the same backlog for every N), for N = 1, 2,
// 4, … up to -procs, in one invocation: the wall time of each N, its
// speed-up against N = 1, and how evenly the runs spread over the
// processes. With runs of 1–3 s the work is the runs' own time, not the
// database's: N processes should take about 1/N of one's time.

const scaleoutStatsEnv = "DURABLY_SCALEOUT_STATS"

type sleepInput struct {
	I  int `json:"i"`
	Ms int `json:"ms"`
}

// sleepJob is one step that works (sleeps) for the input's time.
var sleepJob = &durably.Job[sleepInput, int]{
	Name: "bench-sleep",
	Run: func(ctx context.Context, s *durably.StepContext, in sleepInput) (int, error) {
		return durably.RunStep(s, "work", func(ctx context.Context) (int, error) {
			t := time.NewTimer(time.Duration(in.Ms) * time.Millisecond)
			defer t.Stop()
			select {
			case <-t.C:
				return in.I, nil
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		})
	},
}

// scaleoutStats is what a worker process of the scaleout workload reports
// when it stops.
type scaleoutStats struct {
	Runs         []string `json:"runs"`          // the runs it completed
	BusyMs       float64  `json:"busy_ms"`       // from each run:leased to its run:complete
	LastComplete int64    `json:"last_complete"` // Unix ns of its last run:complete
}

// scaleoutCounts returns the process counts measured: powers of two up to
// procs, and procs itself.
func scaleoutCounts(procs int) []int {
	var ns []int
	for n := 1; n < procs; n *= 2 {
		ns = append(ns, n)
	}
	return append(ns, procs)
}

// scaleoutBacklog draws the runs' durations in ms, the same for every
// process count of a repetition.
func scaleoutBacklog(c *config) []int {
	r := rand.New(rand.NewPCG(c.seed, 19))
	lo, hi := c.runMin.Milliseconds(), c.runMax.Milliseconds()
	ms := make([]int, c.n)
	for i := range ms {
		ms[i] = int(lo + r.Int64N(hi-lo+1))
	}
	return ms
}

func wlScaleout(ctx context.Context, c *config, db *benchDB, r *result) error {
	if c.runMin <= 0 || c.runMax < c.runMin {
		return fmt.Errorf("-run-min %v and -run-max %v: want 0 < min <= max", c.runMin, c.runMax)
	}
	e, err := db.engine(ctx, durably.Config{})
	if err != nil {
		return err
	}
	j := durably.MustRegister(e, sleepJob)
	backlog := scaleoutBacklog(c)
	total, longest := 0, 0
	for _, ms := range backlog {
		total, longest = total+ms, max(longest, ms)
	}
	var one float64
	for k, procs := range scaleoutCounts(c.procs) {
		items := make([]durably.BatchItem[sleepInput], len(backlog))
		for i, ms := range backlog {
			items[i] = durably.BatchItem[sleepInput]{Input: sleepInput{I: i, Ms: ms}}
		}
		if _, err := j.BatchTrigger(ctx, items); err != nil {
			return err
		}
		stats, wall, err := scaleoutDrain(ctx, c, db, e, procs, (k+1)*c.n)
		if err != nil {
			return fmt.Errorf("%d processes: %w", procs, err)
		}
		if procs == 1 {
			one = wall.Seconds()
		}
		if err := scaleoutReport(r, procs, stats, wall, one, max(float64(total)/float64(procs), float64(longest))/1000, c.n); err != nil {
			return fmt.Errorf("%d processes: %w", procs, err)
		}
	}
	return nil
}

// scaleoutDrain starts procs worker processes of one slot, lets them go at
// once, and waits until done runs are completed in all; it returns their
// reports and the time from their start to the last completion.
func scaleoutDrain(ctx context.Context, c *config, db *benchDB, e *durably.Engine, procs, done int) ([]scaleoutStats, time.Duration, error) {
	dir, err := os.MkdirTemp("", "durably-scaleout-")
	if err != nil {
		return nil, 0, err
	}
	defer os.RemoveAll(dir)
	workers, err := startScaleoutWorkers(c, db, dir, procs)
	if err != nil {
		return nil, 0, err
	}
	defer workers.kill()
	t0 := workers.release()
	for deadline := time.Now().Add(time.Hour); ; time.Sleep(20 * time.Millisecond) {
		n, err := countStatus(ctx, e, durably.StatusCompleted)
		if err != nil {
			return nil, 0, err
		}
		if n >= done {
			break
		}
		if err := workers.failure(); err != nil {
			return nil, 0, err
		}
		if time.Now().After(deadline) {
			return nil, 0, errors.New("timed out")
		}
	}
	if err := workers.stop(); err != nil {
		return nil, 0, err
	}
	stats := make([]scaleoutStats, procs)
	var last int64
	for i := range stats {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("stats-%d.json", i)))
		if err != nil {
			return nil, 0, err
		}
		if err := json.Unmarshal(b, &stats[i]); err != nil {
			return nil, 0, err
		}
		last = max(last, stats[i].LastComplete)
	}
	return stats, time.Duration(last - t0.UnixNano()), nil
}

// scaleoutReport checks that every run completed once, in one process,
// and sets the metrics of procs processes.
func scaleoutReport(r *result, procs int, stats []scaleoutStats, wall time.Duration, one, bound float64, n int) error {
	seen := map[string]bool{}
	perProc := make([]int, procs)
	busy := make([]float64, procs)
	for i, st := range stats {
		for _, id := range st.Runs {
			if seen[id] {
				return fmt.Errorf("run %s completed twice", id)
			}
			seen[id] = true
		}
		perProc[i], busy[i] = len(st.Runs), st.BusyMs/1000/wall.Seconds()
	}
	if len(seen) != n {
		return fmt.Errorf("%d runs completed by the workers, want %d", len(seen), n)
	}
	p := "_p" + strconv.Itoa(procs)
	set := func(name string, v float64, unit string) { r.Metrics[name+p], r.Units[name+p] = v, unit }
	set("wall_s", wall.Seconds(), "s")
	set("bound_s", bound, "s")
	set("speedup", one/wall.Seconds(), "×")
	set("efficiency", one/wall.Seconds()/float64(procs), "")
	set("runs_per_proc_min", float64(slices.Min(perProc)), "")
	set("runs_per_proc_max", float64(slices.Max(perProc)), "")
	set("busy_share_min", slices.Min(busy), "")
	fmt.Fprintf(os.Stderr, "scaleout: %d × 1 slot: %.2f s (bound %.2f s), speed-up %.2f, runs per process %v, busy share %.2f..%.2f\n",
		procs, wall.Seconds(), bound, one/wall.Seconds(), perProc, slices.Min(busy), slices.Max(busy))
	return nil
}

// scaleoutWorkers are the worker processes of one process count.
type scaleoutWorkers struct {
	cmds   []*exec.Cmd
	starts []io.WriteCloser
	mu     sync.Mutex
	err    error
	exited sync.WaitGroup
}

// startScaleoutWorkers starts procs workers and waits until each is ready.
func startScaleoutWorkers(c *config, db *benchDB, dir string, procs int) (*scaleoutWorkers, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	w := &scaleoutWorkers{}
	for i := range procs {
		cmd := exec.Command(self, "-scaleout-child", "-db", db.target, "-sqlite-synchronous", c.sync)
		cmd.Stderr = os.Stderr
		cmd.Env = append(os.Environ(), scaleoutStatsEnv+"="+filepath.Join(dir, fmt.Sprintf("stats-%d.json", i)))
		in, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			w.kill()
			return nil, err
		}
		w.cmds, w.starts = append(w.cmds, cmd), append(w.starts, in)
		if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
			w.kill()
			return nil, fmt.Errorf("worker %d did not get ready", i)
		}
		w.exited.Add(1)
		go func() {
			defer w.exited.Done()
			if err := cmd.Wait(); err != nil {
				w.mu.Lock()
				w.err = errors.Join(w.err, fmt.Errorf("worker %d: %w", cmd.Process.Pid, err))
				w.mu.Unlock()
			}
		}()
	}
	return w, nil
}

// release lets every worker start and returns when.
func (w *scaleoutWorkers) release() time.Time {
	t0 := time.Now()
	for _, in := range w.starts {
		_ = in.Close()
	}
	return t0
}

func (w *scaleoutWorkers) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// stop interrupts the workers and waits for their reports.
func (w *scaleoutWorkers) stop() error {
	for _, cmd := range w.cmds {
		_ = cmd.Process.Signal(os.Interrupt)
	}
	w.exited.Wait()
	return w.failure()
}

// kill ends the workers still running (after an error); for those that
// ended, Kill only reports that they did.
func (w *scaleoutWorkers) kill() {
	for _, cmd := range w.cmds {
		_ = cmd.Process.Kill()
	}
}

// scaleoutChild is one worker process of the scaleout workload: one slot;
// it says "ready", waits for its stdin to close, works until interrupted
// and writes its report.
func scaleoutChild(c *config) error {
	ctx := context.Background()
	st, err := openTarget(ctx, c)
	if err != nil {
		return err
	}
	defer st.Close()
	e, err := durably.New(durably.Config{Store: st, MaxConcurrentRuns: 1})
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var stats scaleoutStats
	leased := map[string]time.Time{}
	e.OnEvent(func(ev durably.Event) {
		if ev.Remote() {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		switch ev.Type {
		case durably.EventRunLeased:
			leased[ev.RunID] = time.Now()
		case durably.EventRunComplete:
			now := time.Now()
			stats.Runs = append(stats.Runs, ev.RunID)
			stats.BusyMs += float64(now.Sub(leased[ev.RunID])) / float64(time.Millisecond)
			stats.LastComplete = now.UnixNano()
		}
	})
	durably.MustRegister(e, sleepJob)
	if err := e.Migrate(ctx); err != nil {
		return err
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin) // the start signal
	if err := e.Start(); err != nil {
		return err
	}
	err = stopOnInterrupt(e)
	mu.Lock()
	b, _ := json.Marshal(stats)
	mu.Unlock()
	return errors.Join(err, os.WriteFile(os.Getenv(scaleoutStatsEnv), b, 0o644))
}
