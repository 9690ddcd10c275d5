package durably_test

import (
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/runtime/store"
)

// TestCrashDelayed: delayed runs waiting and falling due while
// worker processes (TestCrashChild) are killed with SIGKILL and restarted
// lose nothing and duplicate nothing (issue 14): every run completes once,
// with each step completed once, none started before its time, and no step
// ran again after it was recorded.
func TestCrashDelayed(t *testing.T) {
	if os.Getenv(crashChildEnv) == "1" {
		t.Skip("in the child")
	}
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		crashDelayed(t, "sqlite:"+filepath.Join(t.TempDir(), "delayed.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		crashDelayed(t, pgtest.Schema(t))
	})
}

func crashDelayed(t *testing.T, storeSpec string) {
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
	// Delays spread over two seconds: runs wait, fall due and execute
	// while children are killed every few hundred milliseconds.
	var ids []string
	for i := range crashRuns {
		delay := time.Duration(i) * 2 * time.Second / crashRuns
		res, err := job.Trigger(ctx, crashInput{N: i + 1}, durably.WithDelay(delay), durably.WithIdempotencyKey("delayed-"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.Run.ID)
	}
	kills := 5
	if os.Getenv("CI") == "true" {
		kills = 10
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
			case <-time.After(time.Duration(150+rand.IntN(250)) * time.Millisecond):
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
	runs, err := e.ListRuns(ctx, durably.RunFilter{JobNames: []string{"crash"}})
	if err != nil || len(runs) != crashRuns {
		t.Fatalf("%d runs, want %d: %v", len(runs), crashRuns, err)
	}
	for i, id := range ids {
		run, err := e.GetRun(ctx, id)
		if err != nil || run == nil || run.Status != durably.StatusCompleted {
			t.Fatalf("run %d: %+v %v", i, run, err)
		}
		if !run.RunAt.IsZero() && run.StartedAt.Before(run.RunAt) {
			t.Fatalf("run %d started at %v, before its time %v", i, run.StartedAt, run.RunAt)
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
	t.Logf("%d children killed with SIGKILL while delayed runs waited and fell due", len(killed))
}
