package durably_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/chaos"
	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/runtime/store"
)

// The suspension crash test (issue 14: a SIGKILL during a retry wait or a
// sleep loses nothing and duplicates nothing) kills worker processes whose
// runs are waiting for a retry or sleeping, with crash_test.go's
// child-process pattern and effect log.
const (
	suspendChildEnv = "DURABLY_SUSPEND_CRASH_CHILD"
	suspendRuns     = 16
)

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
	if os.Getenv(suspendChildEnv) != "1" {
		t.Skip("child process of TestSuspendCrash")
	}
	effectsPath := os.Getenv(crashEffectEnv)
	effects, err := chaos.Open(effectsPath)
	if err != nil {
		t.Fatal(err)
	}
	st := openCrashStore(t, os.Getenv(crashStoreEnv))
	e, err := durably.New(durably.Config{Store: st, MaxConcurrentRuns: 4, PollingInterval: 20 * time.Millisecond,
		// Leases of 2s: a killed child's leased runs are taken over soon,
		// and a live child's renewals, every 250ms, do not miss a lease's
		// end even on a loaded machine (a lease that ran out would rerun a
		// step without a kill, as R-063 allows).
		LeaseDuration: 2 * time.Second, LeaseRenewInterval: 250 * time.Millisecond, PreserveSteps: true})
	if err != nil {
		t.Fatal(err)
	}
	durably.MustRegister(e, suspendJob(effects, filepath.Dir(effectsPath)))
	ctx := context.Background()
	if err := e.Init(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		runs, err := e.ListRuns(ctx, durably.RunFilter{Statuses: []durably.Status{durably.StatusPending, durably.StatusLeased}})
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = e.Stop(ctx)
	_ = st.Close()
}

// TestSuspendCrash kills processes while their runs wait for a retry or
// sleep; a last process finishes the work. Every run completes with the
// right output, its failed attempt kept in its history, and no recorded
// step runs again.
func TestSuspendCrash(t *testing.T) {
	if os.Getenv(suspendChildEnv) == "1" {
		t.Skip("in the child")
	}
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		suspendCrash(t, "sqlite:"+filepath.Join(t.TempDir(), "suspend.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		suspendCrash(t, pgtest.Schema(t))
	})
}

func suspendCrash(t *testing.T, storeSpec string) {
	effects := filepath.Join(t.TempDir(), "effects.log")
	st := openCrashStore(t, storeSpec)
	defer st.Close()
	e, err := durably.New(durably.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	job := durably.MustRegister(e, suspendJob(nil, ""))
	ctx := context.Background()
	if err := e.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
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
		cmd := exec.Command(os.Args[0], "-test.run=^TestSuspendCrashChild$", "-test.v")
		cmd.Env = append(os.Environ(), suspendChildEnv+"=1", crashStoreEnv+"="+storeSpec, crashEffectEnv+"="+effects)
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if phase == nil {
			if err := cmd.Wait(); err != nil {
				t.Fatalf("child failed: %v\n%s", err, out)
			}
			break
		}
		deadline := time.Now().Add(30 * time.Second)
		for !allRuns(t, e, res, phase) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the runs never got there\n%s", round, out)
			}
			time.Sleep(10 * time.Millisecond)
		}
		_ = cmd.Process.Kill() // SIGKILL on Unix
		_ = cmd.Wait()
		killed[cmd.Process.Pid] = true
	}
	retried := 0
	for i, r := range res {
		run, err := e.GetRun(ctx, r.Run.ID)
		if err != nil || run == nil || run.Status != durably.StatusCompleted {
			t.Fatalf("run %d: %+v %v", i, run, err)
		}
		if want := (i + 1) * 7; string(run.Output) != strconv.Itoa(want) {
			t.Fatalf("run %d output %s, want %d", i, run.Output, want)
		}
		steps, err := e.GetSteps(ctx, r.Run.ID)
		if err != nil {
			t.Fatal(err)
		}
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
