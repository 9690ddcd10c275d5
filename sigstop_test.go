package durably_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/runtime/store"
)

// TestFrozenWorkerIsFenced freezes a worker process (SIGSTOP) in the middle
// of a step for longer than its lease, lets another process take the run
// over, and thaws the first one while the second executes that same step.
// The thawed process finishes its step, but nothing it writes is accepted:
// the step's record is the second process's, the run completes once with
// the right output, and every step has one record.
func TestFrozenWorkerIsFenced(t *testing.T) {
	if os.Getenv(crashChildEnv) == "1" {
		t.Skip("in the child")
	}
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		frozenWorker(t, "sqlite:"+filepath.Join(t.TempDir(), "frozen.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		frozenWorker(t, pgtest.Schema(t))
	})
}

// effectLines reads the side-effect file as [what, run, step, pid] fields.
func effectLines(t *testing.T, path string) [][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if f := strings.Fields(line); len(f) == 4 {
			out = append(out, f)
		}
	}
	return out
}

// inFlight returns the step pid has started and not ended, or "".
func inFlight(lines [][]string, pid string) string {
	open := ""
	for _, f := range lines {
		if f[3] != pid {
			continue
		}
		switch {
		case f[0] == "start":
			open = f[2]
		case f[0] == "end" && f[2] == open:
			open = ""
		}
	}
	return open
}

func frozenWorker(t *testing.T, storeSpec string) {
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
	res, err := job.Trigger(ctx, crashInput{N: 1})
	if err != nil {
		t.Fatal(err)
	}
	runID := res.Run.ID

	child := func() (*exec.Cmd, *strings.Builder, chan error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
		cmd.Env = append(os.Environ(), crashChildEnv+"=1", crashStoreEnv+"="+storeSpec, crashEffectEnv+"="+effects,
			crashLeaseEnv+"=1s", crashStepEnv+"=400ms")
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		return cmd, out, done
	}

	a, aOut, aDone := child()
	aPid := fmt.Sprint(a.Process.Pid)
	// Freeze A inside step 2 or later.
	var step string
	var stoppedAt time.Time
	waitFor(t, 20*time.Second, "the first worker to be inside a step", func() bool {
		lines := effectLines(t, effects)
		if s := inFlight(lines, aPid); s == "" || s == "1" {
			return false
		}
		if err := a.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		stoppedAt = time.Now()
		if step = inFlight(effectLines(t, effects), aPid); step == "" {
			_ = a.Process.Signal(syscall.SIGCONT) // it ended the step just before: try the next one
			return false
		}
		return true
	})
	// Its lease runs out while it is frozen.
	waitFor(t, 10*time.Second, "the frozen worker's lease to expire", func() bool {
		run, err := e.GetRun(ctx, runID)
		return err == nil && run.LeaseExpiresAt.Before(time.Now())
	})

	b, bOut, bDone := child()
	bPid := fmt.Sprint(b.Process.Pid)
	waitFor(t, 20*time.Second, "the second worker to start the frozen step", func() bool {
		return inFlight(effectLines(t, effects), bPid) == step
	})
	if err := a.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	for name, done := range map[string]chan error{"second": bDone, "thawed": aDone} {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s worker: %v\nA:\n%s\nB:\n%s", name, err, aOut, bOut)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s worker did not finish\nA:\n%s\nB:\n%s", name, aOut, bOut)
		}
	}

	// The thawed worker did finish its step after losing the lease...
	thawedEnds := 0
	for _, f := range effectLines(t, effects) {
		if f[0] == "end" && f[2] == step && f[3] == aPid {
			thawedEnds++
		}
	}
	if thawedEnds != 1 {
		t.Fatalf("the thawed worker ended step %s %d times, want once (the test did not exercise a late write)", step, thawedEnds)
	}
	// ...but its record is not the one kept.
	run, err := e.GetRun(ctx, runID)
	if err != nil || run.Status != durably.StatusCompleted || string(run.Output) != "15" {
		t.Fatalf("run: %+v %v", run, err)
	}
	steps, err := e.GetSteps(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	records := map[string]int{}
	for _, s := range steps {
		if s.Status != store.StepCompleted {
			continue
		}
		records[s.Name]++
		if s.Name == "step-"+step && s.StartedAt.Before(stoppedAt) {
			t.Errorf("step %s's record started at %v, before the first worker was frozen: the stale lease holder's write was accepted", step, s.StartedAt)
		}
	}
	for i := 1; i <= crashSteps; i++ {
		if n := records[fmt.Sprintf("step-%d", i)]; n != 1 {
			t.Errorf("step-%d has %d completed records, want 1", i, n)
		}
	}
	t.Logf("worker %s frozen in step %s; worker %s took the run over; the thawed worker's late step was refused", aPid, step, bPid)
}
