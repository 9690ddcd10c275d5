package durably_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/chaos"
)

// The crash tests of child runs and signals (issue 22): worker processes
// killed with SIGKILL while a parent waits for its children and they run,
// and while a run waits for a signal that is sent meanwhile.

const (
	familyParents  = 4
	familyChildren = 6
)

// familyJobs are a parent that records a step, starts familyChildren
// children of the leaf job, waits for them and records a last step whose
// result is the sum of their outputs, and the leaf: crashSteps steps each
// worth its input times the step's number, as crashJob's. Every step logs
// its start and end in the effect log.
func familyJobs(effects *chaos.EffectLog, stepTime time.Duration) func(e *durably.Engine) *durably.JobHandle[crashInput, int] {
	leaf := crashJob(effects, stepTime)
	leaf.Name = "leaf"
	return func(e *durably.Engine) *durably.JobHandle[crashInput, int] {
		leaves := durably.MustRegister(e, leaf)
		return durably.MustRegister(e, &durably.Job[crashInput, int]{
			Name: "family",
			Run: func(ctx context.Context, s *durably.StepContext, in crashInput) (int, error) {
				logged := func(i int, f func() int) func(context.Context) (int, error) {
					return func(context.Context) (int, error) {
						effects.Write("start", s.RunID(), i)
						defer effects.Write("end", s.RunID(), i)
						return f(), nil
					}
				}
				if _, err := durably.RunStep(s, "prepare", logged(1, func() int { return 0 })); err != nil {
					return 0, err
				}
				items := make([]durably.BatchItem[crashInput], familyChildren)
				for i := range items {
					items[i].Input = crashInput{N: in.N*10 + i}
				}
				kids, err := leaves.StartChildren(s, "spawn", items)
				if err != nil {
					return 0, err
				}
				outs, err := durably.AwaitChildren(s, "gather", kids)
				if err != nil {
					return 0, err
				}
				return durably.RunStep(s, "total", logged(2, func() int {
					sum := 0
					for _, o := range outs {
						sum += o.Output
					}
					return sum
				}))
			},
		})
	}
}

// familyOutput is parent n's output: the sum of its children's.
func familyOutput(n int) int {
	sum := 0
	for i := range familyChildren {
		sum += (n*10 + i) * crashSteps * (crashSteps + 1) / 2
	}
	return sum
}

// TestFamilyCrashChild is the child process; it does nothing in a normal
// run.
func TestFamilyCrashChild(t *testing.T) {
	childOnly(t, "TestFamilyCrash")
	e, effects := composeChildEngine(t)
	familyJobs(effects, 15*time.Millisecond)(e)
	workUntilDone(t, e)
}

// composeChildEngine is the engine of a child process of these tests, on
// the parent's store, with the effect log the parent named: 4 slots, the
// kill loops' leases.
func composeChildEngine(t *testing.T) (*durably.Engine, *chaos.EffectLog) {
	t.Helper()
	effects, err := chaos.Open(os.Getenv(crashEffectEnv))
	if err != nil {
		t.Fatal(err)
	}
	e, err := durably.New(durably.Config{Store: openStore(t, os.Getenv(childStoreEnv)), MaxConcurrentRuns: 4, PollingInterval: 20 * time.Millisecond,
		LeaseDuration: crashLease, LeaseRenewInterval: crashLease / 4, PreserveSteps: true})
	if err != nil {
		t.Fatal(err)
	}
	return e, effects
}

// TestFamilyCrash kills worker processes while parents wait for their
// children and the children run, then at random moments (a parent's
// trigger of its children included); a last process finishes the work.
// Every parent completes with the sum of its children's outputs, has
// exactly its children (a parent executed again never starts a child
// twice, R-231), and no recorded step runs again.
func TestFamilyCrash(t *testing.T) {
	bothStores(t, "family.db", familyCrash)
}

func familyCrash(t *testing.T, storeSpec string) {
	effects := filepath.Join(t.TempDir(), "effects.log")
	cfg := durably.Config{PreserveSteps: true}
	cfg.Store = openStore(t, storeSpec)
	e, err := durably.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	family := familyJobs(nil, 0)(e)
	ctx := context.Background()
	if err := e.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	items := make([]durably.BatchItem[crashInput], familyParents)
	for i := range items {
		items[i].Input = crashInput{N: i + 1}
	}
	res, err := family.BatchTrigger(ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	// First kill: every parent waits, unleased, while children run.
	c := startChild(t, "TestFamilyCrashChild", storeSpec, crashEffectEnv+"="+effects)
	waitFor(t, 30*time.Second, "every parent to wait for its running children", func() bool {
		leased, err := e.ListRuns(ctx, durably.RunFilter{JobNames: []string{"leaf"}, Statuses: []durably.Status{durably.StatusLeased}})
		if err != nil {
			t.Fatal(err)
		}
		return len(leased) > 0 && allRuns(t, e, res, func(r *durably.Run) bool {
			return r.Status == durably.StatusPending && r.WaitingFor == "children"
		})
	})
	c.kill()
	killed := map[int]bool{c.pid(): true}
	for pid := range killLoopOf(t, "TestFamilyCrashChild", storeSpec, []string{crashEffectEnv + "=" + effects}, 3, 100*time.Millisecond, 400*time.Millisecond) {
		killed[pid] = true
	}
	for i, r := range res {
		completedRun(t, e, i, r.Run.ID, strconv.Itoa(familyOutput(i+1)))
		kids, err := e.GetChildren(ctx, r.Run.ID)
		if err != nil || len(kids) != familyChildren {
			t.Fatalf("parent %d has %d children, want %d: %v", i, len(kids), familyChildren, err)
		}
		for k, kid := range kids {
			if kid.Status != durably.StatusCompleted || string(kid.Input) != fmt.Sprintf(`{"n":%d}`, (i+1)*10+k) {
				t.Fatalf("parent %d, child %d: %+v", i, k, kid)
			}
		}
	}
	checkNoStepRanAfterCompletion(t, effects, killed)
}

// signalCrashEnv names the directory of the marker files of the signal
// crash test.
const signalCrashEnv = "DURABLY_SIGNAL_CRASH_DIR"

var crashSignal = durably.Signal[string]{Name: "go"}

// signalCrashJob records a step, waits for the signal "go", and records a
// step whose result is the payload. Its first step blocks in the first
// process that runs it for a run whose input is "block" (a marker file says
// it did), so that a kill finds that run leased in the middle of a step.
func signalCrashJob(effects *chaos.EffectLog, dir string) *durably.Job[string, string] {
	return &durably.Job[string, string]{
		Name:    "signalled",
		Signals: []durably.SignalDecl{crashSignal},
		Run: func(ctx context.Context, s *durably.StepContext, in string) (string, error) {
			_, err := durably.RunStep(s, "before", func(ctx context.Context) (int, error) {
				effects.Write("start", s.RunID(), 1)
				marker := filepath.Join(dir, s.RunID())
				if _, err := os.Stat(marker); in == "block" && errors.Is(err, os.ErrNotExist) {
					if err := os.WriteFile(marker, nil, 0o644); err != nil {
						return 0, err
					}
					<-ctx.Done() // killed meanwhile
					return 0, ctx.Err()
				}
				effects.Write("end", s.RunID(), 1)
				return 1, nil
			})
			if err != nil {
				return "", err
			}
			got, err := durably.WaitForSignal(s, "wait", crashSignal)
			if err != nil {
				return "", err
			}
			return durably.RunStep(s, "after", func(ctx context.Context) (string, error) {
				effects.Write("start", s.RunID(), 2)
				effects.Write("end", s.RunID(), 2)
				return in + ":" + got, nil
			})
		},
	}
}

// TestSignalCrashChild is the child process; it does nothing in a normal
// run.
func TestSignalCrashChild(t *testing.T) {
	childOnly(t, "TestSignalCrash")
	e, effects := composeChildEngine(t)
	durably.MustRegister(e, signalCrashJob(effects, os.Getenv(signalCrashEnv)))
	workUntilDone(t, e)
}

// TestSignalCrash sends signals while the only worker process is dead: to
// a run that waited for it, and to a run the process was executing when it
// was killed. A new process delivers each signal once and completes both
// runs.
func TestSignalCrash(t *testing.T) {
	bothStores(t, "signal.db", signalCrash)
}

func signalCrash(t *testing.T, storeSpec string) {
	dir := t.TempDir()
	effects := filepath.Join(dir, "effects.log")
	env := []string{crashEffectEnv + "=" + effects, signalCrashEnv + "=" + dir}
	e, job := parentEngine(t, storeSpec, durably.Config{PreserveSteps: true}, signalCrashJob(nil, ""))
	ctx := context.Background()
	waiting, err := job.Trigger(ctx, "wait")
	if err != nil {
		t.Fatal(err)
	}
	blocked, err := job.Trigger(ctx, "block")
	if err != nil {
		t.Fatal(err)
	}
	c := startChild(t, "TestSignalCrashChild", storeSpec, env...)
	waitFor(t, 30*time.Second, "one run to wait for its signal and the other to be in its step", func() bool {
		w, b := mustRun(t, e, waiting.Run.ID), mustRun(t, e, blocked.Run.ID)
		_, err := os.Stat(filepath.Join(dir, blocked.Run.ID))
		return w.Status == durably.StatusPending && w.WaitingFor == "signal:go" && b.Status == durably.StatusLeased && err == nil
	})
	c.kill()
	for _, r := range []*durably.Run{waiting.Run, blocked.Run} {
		if err := durably.SendSignal(ctx, e, r.ID, crashSignal, "sent-while-dead"); err != nil {
			t.Fatal(err)
		}
	}
	last := startChild(t, "TestSignalCrashChild", storeSpec, env...)
	if err := last.wait(); err != nil {
		t.Fatalf("child failed: %v\n%s", err, last.out)
	}
	for i, r := range []*durably.Run{waiting.Run, blocked.Run} {
		steps := completedRun(t, e, i, r.ID, strconv.Quote(string(r.Input[1:len(r.Input)-1])+":sent-while-dead"))
		if n := completedCount(steps); len(n) != 3 || n["wait"] != 1 {
			t.Fatalf("run %d: completed steps %v", i, n)
		}
	}
	if sigs, err := e.GetSignals(ctx, blocked.Run.ID); err != nil || len(sigs) != 0 {
		t.Fatalf("signals left: %v %v", sigs, err)
	}
	checkNoStepRanAfterCompletion(t, effects, map[int]bool{c.pid(): true})
}

// mustRun reads a run that must exist.
func mustRun(t *testing.T, e *durably.Engine, id string) *durably.Run {
	t.Helper()
	run, err := e.GetRun(context.Background(), id)
	if err != nil || run == nil {
		t.Fatalf("get run %s: %v %v", id, run, err)
	}
	return run
}
