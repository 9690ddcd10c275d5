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
	"github.com/durably-go/durably/store"
)

// The suspension crash test (issue 14: a SIGKILL during a retry wait or a
// sleep loses nothing and duplicates nothing) kills worker processes whose
// runs are waiting for a retry or sleeping, with crash_test.go's
// child-process pattern and effect log.
const suspendRuns = 16

// suspendJob: step 1, step 2 failing its first attempt (retried after
// 1s), a 2s sleep (step 3), step 4. A marker file per run makes the
// first attempt fail in whichever process runs it; a failing attempt is
// logged as "fail", not "start", so the effect log's analysis counts only
// successful executions.
func suspendJob(effects *chaos.EffectLog, dir string) *durably.Job[crashInput, int] {
	return &durably.Job[crashInput, int]{
		Name:  "suspend",
		Retry: &durably.RetryPolicy{MaxAttempts: 3, Backoff: durably.BackoffFixed, Initial: time.Second},
		Run: func(ctx context.Context, s *durably.StepContext, in crashInput) (int, error) {
			step := func(i int) func(context.Context) (int, error) {
				return func(context.Context) (int, error) {
					if i == 2 {
						marker := filepath.Join(dir, s.RunID()+".failed")
						if _, err := os.Stat(marker); errors.Is(err, os.ErrNotExist) {
							if err := os.WriteFile(marker, nil, 0o644); err != nil {
								return 0, err
							}
							effects.Write("fail", s.RunID(), i)
							return 0, errors.New("first attempt fails")
						}
					}
					effects.Write("start", s.RunID(), i)
					effects.Write("end", s.RunID(), i)
					return in.N * i, nil
				}
			}
			a, err := durably.RunStep(s, "step-1", step(1))
			if err != nil {
				return 0, err
			}
			b, err := durably.RunStep(s, "step-2", step(2))
			if err != nil {
				return 0, err
			}
			if err := durably.Sleep(s, "step-3-nap", 2*time.Second); err != nil {
				return 0, err
			}
			c, err := durably.RunStep(s, "step-4", step(4))
			return a + b + c, err
		},
	}
}

// TestSuspendCrashChild is the child process; it does nothing in a normal
// run.
func TestSuspendCrashChild(t *testing.T) {
	childOnly(t, "TestSuspendCrash")
	effectsPath := os.Getenv(crashEffectEnv)
	effects, err := chaos.Open(effectsPath)
	if err != nil {
		t.Fatal(err)
	}
	e, err := durably.New(durably.Config{Store: openStore(t, os.Getenv(childStoreEnv)), MaxConcurrentRuns: 4, PollingInterval: 20 * time.Millisecond,
		// Leases of 2s: a killed child's leased runs are taken over soon,
		// and a live child's renewals, every 250ms, do not miss a lease's
		// end even on a loaded machine (a lease that ran out would rerun a
		// step without a kill, as R-063 allows).
		LeaseDuration: 2 * time.Second, LeaseRenewInterval: 250 * time.Millisecond, PreserveSteps: true})
	if err != nil {
		t.Fatal(err)
	}
	durably.MustRegister(e, suspendJob(effects, filepath.Dir(effectsPath)))
	workUntilDone(t, e)
}

// TestSuspendCrash kills processes while their runs wait for a retry or
// sleep; a last process finishes the work. Every run completes with the
// right output, its failed attempt kept in its history, and no recorded
// step runs again.
func TestSuspendCrash(t *testing.T) {
	bothStores(t, "suspend.db", suspendCrash)
}

func suspendCrash(t *testing.T, storeSpec string) {
	effects := filepath.Join(t.TempDir(), "effects.log")
	e, job := parentEngine(t, storeSpec, durably.Config{}, suspendJob(nil, ""))
	ctx := context.Background()
	items := make([]durably.BatchItem[crashInput], suspendRuns)
	for i := range items {
		items[i].Input = crashInput{N: i + 1}
	}
	res, err := job.BatchTrigger(ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	// Three children: the first is killed once every run waits for its
	// retry (its failed attempt recorded), the second once every run sleeps
	// (steps 1, 2 and the sleep recorded), the third finishes the work.
	waiting := func(r *durably.Run) bool {
		return r.Status == durably.StatusPending && r.Attempt == 1 && r.CompletedStepCount == 1
	}
	sleeping := func(r *durably.Run) bool { return r.Status == durably.StatusPending && r.CompletedStepCount == 3 }
	killed := map[int]bool{}
	for round, phase := range []func(*durably.Run) bool{waiting, sleeping, nil} {
		c := startChild(t, "TestSuspendCrashChild", storeSpec, crashEffectEnv+"="+effects)
		if phase == nil {
			if err := c.wait(); err != nil {
				t.Fatalf("child failed: %v\n%s", err, c.out)
			}
			break
		}
		waitFor(t, 30*time.Second, fmt.Sprintf("round %d's runs to get there", round), func() bool { return allRuns(t, e, res, phase) })
		c.kill()
		killed[c.pid()] = true
	}
	retried := 0
	for i, r := range res {
		steps := completedRun(t, e, i, r.Run.ID, strconv.Itoa((i+1)*7))
		completed := map[string]int{}
		for _, s := range steps {
			switch s.Status {
			case store.StepCompleted:
				completed[s.Name]++
			case store.StepFailed:
				retried++
			}
		}
		if len(completed) != 4 {
			t.Fatalf("run %d: completed steps %v", i, completed)
		}
	}
	if retried != suspendRuns {
		t.Fatalf("%d failed attempts recorded, want one per run", retried)
	}
	checkNoStepRanAfterCompletion(t, effects, killed)
}

// allRuns reports whether every run satisfies cond.
func allRuns(t *testing.T, e *durably.Engine, res []durably.TriggerResult, cond func(*durably.Run) bool) bool {
	for _, r := range res {
		run, err := e.GetRun(context.Background(), r.Run.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !cond(run) {
			return false
		}
	}
	return true
}
