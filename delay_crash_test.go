package durably_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/durably-go/durably"
)

// TestCrashDelayed: delayed runs waiting and falling due while
// worker processes (TestCrashChild) are killed with SIGKILL and restarted
// lose nothing and duplicate nothing (issue 14): every run completes once,
// with each step completed once, none started before its time, and no step
// ran again after it was recorded.
func TestCrashDelayed(t *testing.T) {
	bothStores(t, "delayed.db", crashDelayed)
}

func crashDelayed(t *testing.T, storeSpec string) {
	effects := filepath.Join(t.TempDir(), "effects.log")
	e, job := parentEngine(t, storeSpec, durably.Config{}, crashJob(nil, 0))
	ctx := context.Background()
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
	killed := killLoop(t, storeSpec, crashEnv(effects, crashLease), kills, 150*time.Millisecond, 250*time.Millisecond)
	runs, err := e.ListRuns(ctx, durably.RunFilter{JobNames: []string{"crash"}})
	if err != nil || len(runs) != crashRuns {
		t.Fatalf("%d runs, want %d: %v", len(runs), crashRuns, err)
	}
	for i, id := range ids {
		steps := completedRun(t, e, i, id, crashOutput(i))
		run, err := e.GetRun(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !run.RunAt.IsZero() && run.StartedAt.Before(run.RunAt) {
			t.Fatalf("run %d started at %v, before its time %v", i, run.StartedAt, run.RunAt)
		}
		if completed := completedCount(steps); len(completed) != crashSteps {
			t.Fatalf("run %d: completed steps %v", i, completed)
		}
	}
	checkNoStepRanAfterCompletion(t, effects, killed)
	t.Logf("%d children killed with SIGKILL while delayed runs waited and fell due", len(killed))
}
