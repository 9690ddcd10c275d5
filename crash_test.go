package durably_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/chaos"
)

// The crash test runs the job below in child processes (this test binary,
// re-executed) and kills them with SIGKILL at random moments. Each step
// appends "start"/"end" lines with the process id to a side-effect file,
// fsynced, so the parent can tell exactly which process executed what.
const (
	crashEffectEnv = "DURABLY_CRASH_EFFECTS"
	crashLeaseEnv  = "DURABLY_CRASH_LEASE"
	crashStepEnv   = "DURABLY_CRASH_STEP" // a step's duration; default 2–8 ms
	// crashGateEnv names a file a worker waits for, once ready, before it
	// works: workers started together then start working together,
	// whatever their (-race) start-up took.
	crashGateEnv = "DURABLY_CRASH_GATE"
	crashRuns    = 40
	// crashLease is the kill loops' lease: short enough that the next
	// child soon takes over a killed one's runs, long enough that a live
	// child's renewals (every lease/4) never all miss it on a loaded
	// machine under -race; a lease that ran out under its living holder
	// lets the same process claim the run again and rerun a step without
	// a kill, which the effect log's analysis (rightly) reports. 1s leases
	// did that twice under heavy load.
	crashLease = 2 * time.Second
	crashSteps = 5
)

// crashEnv is a TestCrashChild worker's environment: the effect log and
// the lease.
func crashEnv(effects string, lease time.Duration) []string {
	return []string{crashEffectEnv + "=" + effects, crashLeaseEnv + "=" + lease.String()}
}

// crashOutput is run i's output: the sum of (i+1)*step over its steps.
func crashOutput(i int) string { return strconv.Itoa((i + 1) * crashSteps * (crashSteps + 1) / 2) }

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

// TestCrashChild is the child process; it does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	childOnly(t, "TestCrashResume")
	effects, err := chaos.Open(os.Getenv(crashEffectEnv))
	if err != nil {
		t.Fatal(err)
	}
	// Short leases let the next process take over a killed one's runs
	// quickly; the two-process test uses long ones, so that no lease
	// expires while its holder is alive.
	lease, err := time.ParseDuration(os.Getenv(crashLeaseEnv))
	if err != nil {
		t.Fatal(err)
	}
	e, err := durably.New(durably.Config{
		Store:              openStore(t, os.Getenv(childStoreEnv)),
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
	if gate := os.Getenv(crashGateEnv); gate != "" {
		fmt.Println(childReady)
		waitFor(t, time.Minute, "the gate to open", func() bool {
			_, err := os.Stat(gate)
			return err == nil
		})
	}
	workUntilDone(t, e)
}

// TestCrashResume kills worker processes with SIGKILL at varying points
// and checks that no completed step ever runs again and no run is lost,
// on both stores.
func TestCrashResume(t *testing.T) {
	bothStores(t, "crash.db", crashResume)
}

func crashResume(t *testing.T, storeSpec string) {
	effects := filepath.Join(t.TempDir(), "effects.log")
	e, job := parentEngine(t, storeSpec, durably.Config{}, crashJob(nil, 0))
	ctx := context.Background()
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
	killed := killLoop(t, storeSpec, crashEnv(effects, crashLease), kills, 40*time.Millisecond, 200*time.Millisecond)

	// Every run completed with the right output: nothing was lost.
	for i, id := range ids {
		if completed := completedCount(completedRun(t, e, i, id, crashOutput(i))); len(completed) != crashSteps {
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
	bothStores(t, "two.db", twoProcesses)
}

func twoProcesses(t *testing.T, storeSpec string) {
	effects := filepath.Join(t.TempDir(), "effects.log")
	e, job := parentEngine(t, storeSpec, durably.Config{}, crashJob(nil, 0))
	ctx := context.Background()
	items := make([]durably.BatchItem[crashInput], 60)
	for i := range items {
		items[i].Input = crashInput{N: i}
	}
	if _, err := job.BatchTrigger(ctx, items); err != nil {
		t.Fatal(err)
	}
	// Both start working at once: a worker that started up first would
	// otherwise do all the work before the other one is up.
	gate := filepath.Join(t.TempDir(), "gate")
	env := append(crashEnv(effects, 30*time.Second), crashGateEnv+"="+gate)
	children := []*child{startChild(t, "TestCrashChild", storeSpec, env...), startChild(t, "TestCrashChild", storeSpec, env...)}
	for _, c := range children {
		c.ready(t, 30*time.Second)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range children {
		if err := c.wait(); err != nil {
			t.Errorf("child: %v\n%s", err, c.out)
		}
	}
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
