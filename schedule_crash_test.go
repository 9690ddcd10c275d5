package durably_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/pgtest"
)

// The schedule crash test runs schedulers in child processes (this test
// binary, re-executed) and kills them with SIGKILL just after ticks come
// due, while they fire them (issue 14: a SIGKILL during a cron tick loses
// nothing and duplicates nothing).
const (
	schedChildEnv = "DURABLY_SCHEDULE_CRASH_CHILD"
	schedStoreEnv = "DURABLY_SCHEDULE_CRASH_STORE"
	schedReady    = "SCHEDULE-CHILD-READY"
	schedPeriod   = 2 * time.Second
)

func tickJob() *durably.Job[Greeting, string] {
	return &durably.Job[Greeting, string]{
		Name: "tick",
		Run: func(ctx context.Context, s *durably.StepContext, in Greeting) (string, error) {
			return durably.RunStep(s, "greet", func(ctx context.Context) (string, error) { return "hello " + in.Name, nil })
		},
	}
}

// TestScheduleCrashChild is the child process; it does nothing in a
// normal run.
func TestScheduleCrashChild(t *testing.T) {
	if os.Getenv(schedChildEnv) != "1" {
		t.Skip("child process of TestScheduleCrash")
	}
	st := openCrashStore(t, os.Getenv(schedStoreEnv))
	e, err := durably.New(durably.Config{Store: st, PollingInterval: 20 * time.Millisecond,
		LeaseDuration: time.Second, LeaseRenewInterval: 250 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h := durably.MustRegister(e, tickJob())
	if err := durably.AddSchedule(h, durably.Schedule[Greeting]{Name: "crash", Cron: fmt.Sprintf("@every %s", schedPeriod),
		Input: Greeting{Name: "tick"}}); err != nil {
		t.Fatal(err)
	}
	if err := e.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	fmt.Println(schedReady)
	select {} // until killed
}

// TestScheduleCrash: two scheduler processes on one database, one of them
// killed with SIGKILL a few milliseconds after each tick comes due and
// restarted, never both down at once. Every tick from the first to the
// last has exactly one run, and every run completes.
func TestScheduleCrash(t *testing.T) {
	if os.Getenv(schedChildEnv) == "1" {
		t.Skip("in the child")
	}
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		scheduleCrash(t, "sqlite:"+filepath.Join(t.TempDir(), "sched.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		scheduleCrash(t, pgtest.Schema(t))
	})
}

type schedChild struct {
	cmd    *exec.Cmd
	waited chan error
	out    *strings.Builder
	once   sync.Once
}

// startSchedChild starts a child and returns once its scheduler runs.
func startSchedChild(t *testing.T, storeSpec string) *schedChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestScheduleCrashChild$", "-test.v")
	cmd.Env = append(os.Environ(), schedChildEnv+"=1", schedStoreEnv+"="+storeSpec)
	out := &strings.Builder{}
	cmd.Stderr = out
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	c := &schedChild{cmd: cmd, waited: make(chan error, 1), out: out}
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			if sc.Text() == schedReady {
				close(ready)
			}
		}
		c.waited <- cmd.Wait()
	}()
	select {
	case <-ready:
	case err := <-c.waited:
		t.Fatalf("child exited before it was ready: %v\n%s", err, out)
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("child not ready within 30s\n%s", out)
	}
	return c
}

func (c *schedChild) kill() {
	c.once.Do(func() {
		_ = c.cmd.Process.Kill() // SIGKILL on Unix
		<-c.waited
	})
}

func scheduleCrash(t *testing.T, storeSpec string) {
	st := openCrashStore(t, storeSpec)
	defer st.Close()
	e, err := durably.New(durably.Config{Store: st, PollingInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	durably.MustRegister(e, tickJob())
	ctx := context.Background()
	if err := e.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	children := []*schedChild{startSchedChild(t, storeSpec), startSchedChild(t, storeSpec)}
	defer func() {
		for _, c := range children {
			c.kill()
		}
	}()
	const kills = 6
	for range kills {
		// Just after the next tick comes due: the child is firing it.
		now := time.Now()
		due := now.Truncate(schedPeriod).Add(schedPeriod)
		time.Sleep(due.Sub(now) + time.Duration(rand.IntN(15))*time.Millisecond)
		i := rand.IntN(len(children))
		children[i].kill()
		children[i] = startSchedChild(t, storeSpec)
	}
	// One more tick with both alive, then stop everything.
	time.Sleep(schedPeriod)
	for _, c := range children {
		c.kill()
	}
	children = nil

	// The runs of ticks fired by a child killed before it executed them
	// are finished here.
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	defer e.Stop(ctx)
	var runs []*durably.Run
	deadline := time.Now().Add(30 * time.Second)
	for {
		runs, err = e.ListRuns(ctx, durably.RunFilter{JobNames: []string{"tick"}})
		if err != nil {
			t.Fatal(err)
		}
		done := 0
		for _, r := range runs {
			if r.Status == durably.StatusCompleted {
				done++
			}
		}
		if done == len(runs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d scheduled runs completed", done, len(runs))
		}
		time.Sleep(20 * time.Millisecond)
	}
	var ticks []time.Time
	for _, r := range runs {
		tick, err := time.Parse(time.RFC3339, strings.TrimPrefix(r.IdempotencyKey, "schedule:crash:"))
		if err != nil {
			t.Fatalf("run %s: key %q: %v", r.ID, r.IdempotencyKey, err)
		}
		ticks = append(ticks, tick)
	}
	slices.SortFunc(ticks, func(a, b time.Time) int { return a.Compare(b) })
	if len(ticks) < kills {
		t.Fatalf("%d ticks fired over %d kills a period apart: %v", len(ticks), kills, ticks)
	}
	for i := 1; i < len(ticks); i++ {
		if d := ticks[i].Sub(ticks[i-1]); d != schedPeriod {
			t.Fatalf("ticks %s and %s are %s apart, want %s: a tick was lost or run twice (all: %v)", ticks[i-1], ticks[i], d, schedPeriod, ticks)
		}
	}
	t.Logf("%d ticks, one run each, across %d SIGKILLs", len(ticks), kills)
}
