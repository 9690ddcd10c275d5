package durably_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
)

// The schedule crash test runs schedulers in child processes (this test
// binary, re-executed) and kills them with SIGKILL just after ticks come
// due, while they fire them (issue 14: a SIGKILL during a cron tick loses
// nothing and duplicates nothing).
const schedPeriod = 2 * time.Second

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
	childOnly(t, "TestScheduleCrash")
	e, err := durably.New(durably.Config{Store: openStore(t, os.Getenv(childStoreEnv)), PollingInterval: 20 * time.Millisecond,
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
	fmt.Println(childReady)
	select {} // until killed
}

// TestScheduleCrash: two scheduler processes on one database, one of them
// killed with SIGKILL a few milliseconds after each tick comes due and
// restarted, never both down at once. Every tick from the first to the
// last has exactly one run, and every run completes.
func TestScheduleCrash(t *testing.T) {
	bothStores(t, "sched.db", scheduleCrash)
}

// startSchedChild starts a scheduler child and returns once it runs.
func startSchedChild(t *testing.T, storeSpec string) *child {
	t.Helper()
	c := startChild(t, "TestScheduleCrashChild", storeSpec)
	c.ready(t, 30*time.Second)
	return c
}

func scheduleCrash(t *testing.T, storeSpec string) {
	e, _ := parentEngine(t, storeSpec, durably.Config{PollingInterval: 20 * time.Millisecond}, tickJob())
	ctx := context.Background()
	children := []*child{startSchedChild(t, storeSpec), startSchedChild(t, storeSpec)}
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
	waitFor(t, 30*time.Second, "every scheduled run to complete", func() bool {
		var err error
		if runs, err = e.ListRuns(ctx, durably.RunFilter{JobNames: []string{"tick"}}); err != nil {
			t.Fatal(err)
		}
		done := 0
		for _, r := range runs {
			if r.Status == durably.StatusCompleted {
				done++
			}
		}
		return done == len(runs)
	})
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
