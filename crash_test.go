package durably_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/chaos"
	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/runtime/pgstore"
	"github.com/durably-go/durably/runtime/sqlitestore"
	"github.com/durably-go/durably/runtime/store"
)

// The crash test runs the job below in child processes (this test binary,
// re-executed) and kills them with SIGKILL at random moments. Each step
// appends "start"/"end" lines with the process id to a side-effect file,
// fsynced, so the parent can tell exactly which process executed what.
const (
	crashChildEnv  = "DURABLY_CRASH_CHILD"
	crashStoreEnv  = "DURABLY_CRASH_STORE"
	crashEffectEnv = "DURABLY_CRASH_EFFECTS"
	crashLeaseEnv  = "DURABLY_CRASH_LEASE"
	crashStepEnv   = "DURABLY_CRASH_STEP" // a step's duration; default 2–8 ms
	crashRuns      = 40
	crashSteps     = 5
)

type crashInput struct {
	N int `json:"n"`
}

func crashJob(effects *chaos.EffectLog, stepTime time.Duration) *durably.Job[crashInput, int] {
	return &durably.Job[crashInput, int]{
		Name: "crash",
		Run: func(ctx context.Context, s *durably.StepContext, in crashInput) (int, error) {
			sum := 0
			for i := 1; i <= crashSteps; i++ {
				v, err := durably.RunStep(s, fmt.Sprintf("step-%d", i), func(ctx context.Context) (int, error) {
					effects.Write("start", s.RunID(), i)
					if stepTime > 0 {
						time.Sleep(stepTime)
					} else {
						time.Sleep(time.Duration(2+rand.IntN(6)) * time.Millisecond)
					}
					effects.Write("end", s.RunID(), i)
					return in.N * i, nil
				})
				if err != nil {
					return 0, err
				}
				sum += v
			}
			return sum, nil
		},
	}
}

func openCrashStore(t testing.TB, spec string) store.Store {
	t.Helper()
	var st store.Store
	var err error
	if path, ok := strings.CutPrefix(spec, "sqlite:"); ok {
		st, err = sqlitestore.Open(path, sqlitestore.Options{})
	} else {
		st, err = pgstore.Open(context.Background(), spec, pgstore.Options{})
	}
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestCrashChild is the child process; it does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	if os.Getenv(crashChildEnv) != "1" {
		t.Skip("child process of TestCrashResume")
	}
	effects, err := chaos.Open(os.Getenv(crashEffectEnv))
	if err != nil {
		t.Fatal(err)
	}
	st := openCrashStore(t, os.Getenv(crashStoreEnv))
	// Short leases let the next process take over a killed one's runs
	// quickly; the two-process test uses long ones, so that no lease
	// expires while its holder is alive.
	lease, err := time.ParseDuration(os.Getenv(crashLeaseEnv))
	if err != nil {
		t.Fatal(err)
	}
	e, err := durably.New(durably.Config{
		Store:              st,
		MaxConcurrentRuns:  4,
		PollingInterval:    20 * time.Millisecond,
		LeaseDuration:      lease,
		LeaseRenewInterval: lease / 4,
		PreserveSteps:      true,
	})
	if err != nil {
		t.Fatal(err)
	}
	var stepTime time.Duration
	if v := os.Getenv(crashStepEnv); v != "" {
		if stepTime, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	durably.MustRegister(e, crashJob(effects, stepTime))
	ctx := context.Background()
	if err := e.Init(ctx); err != nil {
		t.Fatal(err)
	}
	// Work until every run is completed (the parent may kill us first).
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

// TestCrashResume kills worker processes with SIGKILL at varying points
// and checks that no completed step ever runs again and no run is lost,
// on both stores.
func TestCrashResume(t *testing.T) {
	if os.Getenv(crashChildEnv) == "1" {
		t.Skip("in the child")
	}
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		crashResume(t, "sqlite:"+filepath.Join(t.TempDir(), "crash.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		crashResume(t, pgtest.Schema(t))
	})
}

func crashResume(t *testing.T, storeSpec string) {
	effects := filepath.Join(t.TempDir(), "effects.log")
	st := openCrashStore(t, storeSpec)
	defer st.Close()
	e, err := durably.New(durably.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	job := durably.MustRegister(e, crashJob(nil, 0))
	ctx := context.Background()
	if err := e.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range crashRuns {
		res, err := job.Trigger(ctx, crashInput{N: i + 1})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.Run.ID)
	}

	// CI kills 15 children; a local run kills 5, which is enough to
	// exercise a takeover of killed processes' runs but costs a third of
	// the child starts (each is a -race binary starting up).
	kills := 5
	if os.Getenv("CI") == "true" {
		kills = 15
	}
	killed := map[int]bool{}
	for round := 0; ; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v")
		cmd.Env = append(os.Environ(), crashChildEnv+"=1", crashStoreEnv+"="+storeSpec, crashEffectEnv+"="+effects, crashLeaseEnv+"=1s")
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		if round < kills {
			select {
			case err := <-waited:
				if err != nil {
					t.Fatalf("child failed: %v\n%s", err, out)
				}
			case <-time.After(time.Duration(40+rand.IntN(200)) * time.Millisecond):
				_ = cmd.Process.Kill() // SIGKILL on Unix
				<-waited
				killed[cmd.Process.Pid] = true
				continue
			}
		} else if err := <-waited; err != nil {
			t.Fatalf("child failed: %v\n%s", err, out)
		}
		break
	}
	if len(killed) < 3 {
		t.Fatalf("only %d children were killed before the work was done: the test did not exercise crashes", len(killed))
	}

	// Every run completed with the right output: nothing was lost.
	for i, id := range ids {
		run, err := e.GetRun(ctx, id)
		if err != nil || run == nil || run.Status != durably.StatusCompleted {
			t.Fatalf("run %d: %+v %v", i, run, err)
		}
		want := (i + 1) * crashSteps * (crashSteps + 1) / 2
		if got, _ := strconv.Atoi(string(run.Output)); got != want {
			t.Fatalf("run %d output %s, want %d", i, run.Output, want)
		}
		steps, _ := e.GetSteps(ctx, id)
		completed := map[string]int{}
		for _, s := range steps {
			if s.Status == store.StepCompleted {
				completed[s.Name]++
			}
		}
		if len(completed) != crashSteps {
			t.Fatalf("run %d: completed steps %v", i, completed)
		}
	}
	checkNoStepRanAfterCompletion(t, effects, killed)
	t.Logf("%d children killed with SIGKILL", len(killed))
}

// checkNoStepRanAfterCompletion reads the side-effect log. A step is
// recorded before the next step of its run starts, so once a process has
// started step i+1 of a run, step i of that run must never start again;
// and a step that ran more than once did so only because the process that
// ran it earlier was killed.
func checkNoStepRanAfterCompletion(t *testing.T, path string, killed map[int]bool) {
	t.Helper()
	r, err := chaos.Analyze(path, killed)
	if err != nil {
		t.Fatal(err)
	}
	if r.RerunsAfterRecord > 0 || r.RerunsWithoutKill > 0 {
		t.Fatalf("%d steps re-run after their record, %d without a kill; first: %s", r.RerunsAfterRecord, r.RerunsWithoutKill, r.First)
	}
	t.Logf("%d step executions were repeated after a kill before the step was recorded", r.Reruns)
}

// TestTwoProcessesNeverRunTwice starts two worker processes on one database
// at once: every run completes, every step runs exactly once,
// and both processes take a share of the work.
func TestTwoProcessesNeverRunTwice(t *testing.T) {
	if os.Getenv(crashChildEnv) == "1" {
		t.Skip("in the child")
	}
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		twoProcesses(t, pgtest.Schema(t))
	})
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		twoProcesses(t, "sqlite:"+filepath.Join(t.TempDir(), "two.db"))
	})
}

func twoProcesses(t *testing.T, storeSpec string) {
	effects := filepath.Join(t.TempDir(), "effects.log")
	st := openCrashStore(t, storeSpec)
	defer st.Close()
	e, err := durably.New(durably.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	job := durably.MustRegister(e, crashJob(nil, 0))
	ctx := context.Background()
	if err := e.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	items := make([]durably.BatchItem[crashInput], 60)
	for i := range items {
		items[i].Input = crashInput{N: i}
	}
	if _, err := job.BatchTrigger(ctx, items); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
			cmd.Env = append(os.Environ(), crashChildEnv+"=1", crashStoreEnv+"="+storeSpec, crashEffectEnv+"="+effects, crashLeaseEnv+"=30s")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("child: %v\n%s", err, out)
			}
		}()
	}
	wg.Wait()
	data, err := os.ReadFile(effects)
	if err != nil {
		t.Fatal(err)
	}
	starts := map[string]int{}
	pids := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if f[0] == "start" {
			starts[f[1]+"/"+f[2]]++
			pids[f[3]]++
		}
	}
	if len(starts) != len(items)*crashSteps {
		t.Fatalf("%d distinct steps ran, want %d", len(starts), len(items)*crashSteps)
	}
	for k, n := range starts {
		if n != 1 {
			t.Fatalf("step %s ran %d times", k, n)
		}
	}
	if len(pids) != 2 {
		t.Fatalf("work split over %d processes: %v", len(pids), pids)
	}
	runs, err := e.ListRuns(ctx, durably.RunFilter{Statuses: []durably.Status{durably.StatusCompleted}})
	if err != nil || len(runs) != len(items) {
		t.Fatalf("%d completed runs, %v", len(runs), err)
	}
	t.Logf("steps per process: %v", pids)
}
