package main

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/chaos"
	"github.com/durably-go/durably/runtime/sqlitestore"
	"github.com/durably-go/durably/store"
)

// The chaos workload's jobs. Every step appends to a synced side-effect log
// (internal/chaos) in the workload's directory, which the parent reads at
// the end to tell what the crashes cost.
const (
	chaosSteps   = 5
	chaosDirEnv  = "DURABLY_CHAOS_DIR" // the workload's directory: effect log and hang markers
	chaosJobName = "chaos"
	// chaos-poison: its second step exits the worker process, so that every
	// execution of it is a crash; its crash limit is its MaxAttempts.
	chaosPoisonJob   = "chaos-poison"
	chaosPoisonExit  = 42
	chaosPoisonLimit = 3
	// chaos-hang: its second step blocks ignoring its context on the run's
	// first Hangs attempts; StepTimeout ends each such attempt, which is
	// retried up to chaosHangAttempts in all, then fails the run.
	chaosHangJob      = "chaos-hang"
	chaosHangAttempts = 2
	chaosStepTimeout  = 200 * time.Millisecond
)

type chaosInput struct {
	I int `json:"i"`
	// Hangs is how many attempts of a chaos-hang run's hang step block.
	Hangs int `json:"hangs,omitempty"`
	// StepMs is how long each step works; 0: 2 to 7 ms at random.
	StepMs int `json:"stepMs,omitempty"`
}

// chaosJobs builds the workload's three jobs. A parent process registers
// them only to trigger (its effects and markers are unset: it executes
// nothing).
type chaosJobs struct {
	effects *chaos.EffectLog
	markers string // directory of the hang markers
	// budget is the crash limit of the jobs that must never fail by a
	// crash: more crashes than the workload can inflict on one run
	// (chaosCrashBudget), so that such a run failed is a broken guarantee,
	// not bad luck.
	budget int
}

// chaosCrashBudget is the most crashes the workload can cause one run: one
// per worker process that dies (kills, and every execution of a poison
// step), one per database fault (a lease that expires while the database is
// away), and a margin for leases lost to a loaded machine's late renewals.
func chaosCrashBudget(kills, poisonRuns int) int {
	const faults, margin = 3, 3
	return kills + poisonRuns*chaosPoisonLimit + faults + margin
}

func (j chaosJobs) survivorPolicy() *durably.RetryPolicy {
	return &durably.RetryPolicy{MaxAttempts: j.budget, Backoff: durably.BackoffFixed, Initial: 10 * time.Millisecond}
}

// step is step-i of every job: it logs its start and end around a few
// milliseconds of work.
func (j chaosJobs) step(s *durably.StepContext, in chaosInput, i int) (int, error) {
	work := time.Duration(in.StepMs) * time.Millisecond
	if work == 0 {
		work = time.Duration(2+rand.IntN(6)) * time.Millisecond
	}
	return durably.RunStep(s, "step-"+strconv.Itoa(i), func(ctx context.Context) (int, error) {
		j.effects.Write("start", s.RunID(), i)
		time.Sleep(work)
		j.effects.Write("end", s.RunID(), i)
		return i, nil
	})
}

// steps is the job of most runs, keyed ones included: five steps.
func (j chaosJobs) steps() *durably.Job[chaosInput, int] {
	return &durably.Job[chaosInput, int]{
		Name:  chaosJobName,
		Retry: j.survivorPolicy(),
		Run: func(ctx context.Context, s *durably.StepContext, in chaosInput) (int, error) {
			sum := 0
			for i := 1; i <= chaosSteps; i++ {
				v, err := j.step(s, in, i)
				if err != nil {
					return 0, err
				}
				sum += v
			}
			return sum, nil
		},
	}
}

// poison's second step kills the worker process (os.Exit) every time it
// runs: the run must fail after exactly chaosPoisonLimit crashes, and take
// no other run with it.
func (j chaosJobs) poison() *durably.Job[chaosInput, int] {
	return &durably.Job[chaosInput, int]{
		Name:  chaosPoisonJob,
		Retry: &durably.RetryPolicy{MaxAttempts: chaosPoisonLimit},
		Run: func(ctx context.Context, s *durably.StepContext, in chaosInput) (int, error) {
			if _, err := j.step(s, in, 1); err != nil {
				return 0, err
			}
			return durably.RunStep(s, "poison", func(ctx context.Context) (int, error) {
				j.effects.Write("poison", s.RunID(), 2)
				os.Exit(chaosPoisonExit)
				return 0, nil
			})
		},
	}
}

// hang's second step blocks, deaf to its context, on the run's first Hangs
// attempts (counted across processes by marker files): StepTimeout ends
// the attempt, the engine abandons the function a second later and retries
// the step; a run whose every attempt hung fails.
func (j chaosJobs) hang() *durably.Job[chaosInput, int] {
	retry := durably.RetryPolicy{MaxAttempts: chaosHangAttempts, Backoff: durably.BackoffFixed, Initial: 10 * time.Millisecond}
	return &durably.Job[chaosInput, int]{
		Name:        chaosHangJob,
		Retry:       j.survivorPolicy(),
		StepTimeout: chaosStepTimeout,
		Run: func(ctx context.Context, s *durably.StepContext, in chaosInput) (int, error) {
			if _, err := j.step(s, in, 1); err != nil {
				return 0, err
			}
			if _, err := durably.RunStep(s, "hang", func(ctx context.Context) (int, error) {
				for k := 1; k <= in.Hangs; k++ {
					if j.claimMarker(s.RunID(), k) {
						j.effects.Write("hang", s.RunID(), k)
						time.Sleep(time.Hour) // deaf to ctx: only the engine's abandonment frees the slot
					}
				}
				return 0, nil
			}, durably.WithStepRetry(retry)); err != nil {
				return 0, err
			}
			return j.step(s, in, 3)
		},
	}
}

// claimMarker creates the marker of a run's k-th hang and reports whether
// this call created it (and so hangs).
func (j chaosJobs) claimMarker(runID string, k int) bool {
	f, err := os.OpenFile(filepath.Join(j.markers, "hang-"+runID+"-"+strconv.Itoa(k)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return false
	}
	_ = f.Sync()
	_ = f.Close()
	return true
}

// chaosChild is one worker process: it works until SIGINT, SIGKILL or a
// poison step's exit.
func chaosChild(c *config) error {
	ctx := context.Background()
	st, err := chaosChildStore(ctx, c)
	if err != nil {
		return err
	}
	defer st.Close()
	dir := os.Getenv(chaosDirEnv)
	if dir == "" {
		return errors.New(chaosDirEnv + " is not set")
	}
	effects, err := chaos.Open(filepath.Join(dir, "effects.log"))
	if err != nil {
		return err
	}
	defer effects.Close()
	e, err := durably.New(durably.Config{Store: st, MaxConcurrentRuns: c.slots, PollingInterval: 20 * time.Millisecond,
		LeaseDuration: chaosLease, LeaseRenewInterval: chaosLease / 4, WorkerID: chaosWorkerID(os.Getpid())})
	if err != nil {
		return err
	}
	e.OnEvent(func(ev durably.Event) {
		if ev.Type == durably.EventRunComplete && !ev.Remote() {
			effects.Write("complete", ev.RunID, 0)
		}
	})
	jobs := chaosJobs{effects: effects, markers: dir, budget: chaosCrashBudget(c.kills, chaosMix(c.n).poison)}
	steps := durably.MustRegister(e, jobs.steps())
	durably.MustRegister(e, jobs.poison())
	durably.MustRegister(e, jobs.hang())
	if err := e.Init(ctx); err != nil {
		return err
	}
	stopOrders := startChildOrders(ctx, st, steps)
	defer stopOrders()
	return stopOnInterrupt(e)
}

func chaosChildStore(ctx context.Context, c *config) (store.Store, error) {
	if isPostgres(c.db) {
		return (&benchDB{kind: "postgres", target: c.db}).open(ctx)
	}
	// A short busy timeout turns the parent's outage (a held write lock)
	// into SQLITE_BUSY errors the engine must retry, instead of writes
	// that just wait.
	return sqlitestore.Open(c.db, sqlitestore.Options{Synchronous: c.sync, BusyTimeout: 250 * time.Millisecond})
}

// chaosWorkerID names a worker process's engine after its pid, so that a
// run's attempt history says which process each crash happened in.
func chaosWorkerID(pid int) string { return "chaos-" + strconv.Itoa(pid) }
