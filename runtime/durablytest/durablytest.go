// Package durablytest helps users of durably test their jobs in their own
// `go test`, as River's rivertest does for River: an engine on a temporary
// SQLite file with a fake clock (New), a job run synchronously to its end
// (TriggerAndRun), assertions on what was triggered (RequireTriggered,
// RequireNotTriggered), and a clock that, when advanced, fires the
// schedules and processes the runs that became due on it — delayed runs,
// sleeping runs, retries — each at its time (Env.Advance).
//
// Nothing here starts a worker: runs execute on the test's goroutine, one
// after another, through Engine.ProcessUntilIdle, so a test sees the same
// outcome every time. The helpers other than New and Env's methods take a
// job handle and work on any engine, PostgreSQL included. Because runs
// execute one after another, a job that waits inside a step for another
// run to finish (TriggerAndWait in a step) waits until its timeout.
package durablytest

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/sqlitestore"
)

// Clock is a fake clock for Config.Now. It stands still until Set or
// Advance moves it. It is safe for concurrent use: the engine reads it from
// its own goroutines (lease renewals).
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock reading start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time; pass it as Config.Now.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t, forward or back, and nothing else: to fire
// what t makes due, use Env.AdvanceTo.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// Advance moves the clock forward by d and returns the new time, and
// nothing else: to fire what becomes due, use Env.Advance.
func (c *Clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// Env is an engine on a temporary SQLite file, driven by a fake clock.
// Register jobs and add schedules on Engine as usual; do not Start it
// unless the test wants a background worker, which makes outcomes depend
// on timing.
type Env struct {
	Engine *durably.Engine
	Clock  *Clock
	// TickStops is the most ticks of one schedule that one Advance stops
	// at (0: DefaultTickStops). A schedule that ticks more often within
	// the jump is jumped over: Advance does not stop at its ticks, and at
	// each moment it stops for something else, and at the end, the
	// schedule fires its latest due tick only, as an engine that was late
	// for its ticks does (no burst of the ticks in between). Raise it to
	// live through every tick of a frequent schedule, at a few
	// milliseconds a tick.
	TickStops int
	tb        testing.TB
}

// DefaultTickStops is Env.TickStops when it is left zero: a week of an
// hourly schedule is lived through tick by tick, a day of one that ticks
// every five seconds is jumped over.
const DefaultTickStops = 200

// startTime is where an Env's clock starts: a fixed instant, so that a
// test and its schedules see the same times on every run.
func startTime() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }

// New returns an engine on a fresh SQLite file in tb.TempDir, migrated,
// whose Config.Now is the Env's fake clock, reading 2026-01-01T00:00:00Z
// (move it with Clock.Set before the first trigger to start elsewhere).
// cfg sets everything else; its Store and Now must be unset. The engine is stopped and its store
// closed when the test ends (tb.Cleanup): no goroutine of it outlives the
// test. A setup failure ends the test (Fatalf).
func New(tb testing.TB, cfg durably.Config) *Env {
	tb.Helper()
	if cfg.Store != nil || cfg.Now != nil {
		tb.Fatalf("durablytest.New: leave Config.Store and Config.Now unset; New supplies a temporary SQLite store and the fake clock")
		return nil
	}
	// A test's database need not survive a power loss: without syncs,
	// each run and tick Advance lives through costs half as much.
	st, err := sqlitestore.Open(filepath.Join(tb.TempDir(), "durably.db"), sqlitestore.Options{Synchronous: "OFF"})
	if err != nil {
		tb.Fatalf("durablytest.New: %v", err)
		return nil
	}
	clock := NewClock(startTime())
	cfg.Store, cfg.Now = st, clock.Now
	eng, err := durably.New(cfg)
	if err != nil {
		_ = st.Close()
		tb.Fatalf("durablytest.New: %v", err)
		return nil
	}
	// Registered before Migrate can fail, so that the store is closed
	// either way; cleanups run after the test's own, in reverse order,
	// and this one before TempDir's removal.
	tb.Cleanup(func() {
		// Stop waits for runs a started worker executes; a job that
		// ignores its context must not hang the test binary.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := eng.Stop(ctx); err != nil {
			tb.Errorf("durablytest: stop engine: %v", err)
		}
		if err := st.Close(); err != nil {
			tb.Errorf("durablytest: close store: %v", err)
		}
	})
	if err := eng.Migrate(tb.Context()); err != nil {
		tb.Fatalf("durablytest.New: %v", err)
		return nil
	}
	return &Env{Engine: eng, Clock: clock, tb: tb}
}

// ProcessDue fires the schedules due on the clock (FireDueSchedules) and
// processes every run claimable now, on the calling goroutine, until none
// is left; it returns how many runs it processed. Runs that the processed
// runs trigger are processed too. Runs are leased under the engine's
// WorkerID, as its own worker would. A store failure ends the test.
func (e *Env) ProcessDue() int {
	e.tb.Helper()
	ctx := e.tb.Context()
	if err := e.Engine.FireDueSchedules(ctx); err != nil {
		e.tb.Fatalf("durablytest: fire due schedules: %v", err)
		return 0
	}
	n, err := e.Engine.ProcessUntilIdle(ctx, e.Engine.WorkerID(), 0)
	if err != nil {
		e.tb.Fatalf("durablytest: process runs: %v", err)
	}
	return n
}

// Advance moves the clock forward by d as a running engine would live
// through it, and returns how many runs it processed: it processes what
// is due now, then stops at each moment up to the new time when something
// becomes due — a schedule tick, the time of a run triggered for later
// (WithDelay, WithRunAt), the end of a sleep, a retry's next attempt —
// firing and processing what is due then, and finally processes what is
// due at the new time. So a run that sleeps twice within d wakes twice,
// each time at its wake time, and every tick within d fires, not just the
// latest — up to TickStops ticks of a schedule: one that ticks more often
// within d (every 5s over 14 days) is jumped over at the cost of a few
// runs, firing only its latest due tick at each stop (see Env.TickStops),
// and the test's log says so. A negative d ends the test.
func (e *Env) Advance(d time.Duration) int {
	e.tb.Helper()
	if d < 0 {
		e.tb.Fatalf("durablytest: Advance(%v): the clock only goes forward; use Clock.Set to go back", d)
		return 0
	}
	return e.AdvanceTo(e.Clock.Now().Add(d))
}

// AdvanceTo is Advance to the time t, which must not be before the clock.
func (e *Env) AdvanceTo(t time.Time) int {
	e.tb.Helper()
	now := e.Clock.Now()
	if t.Before(now) {
		e.tb.Fatalf("durablytest: AdvanceTo(%s): the clock reads %s and only goes forward; use Clock.Set to go back",
			t.Format(time.RFC3339Nano), now.Format(time.RFC3339Nano))
		return 0
	}
	// A started engine fires a tick due when it starts; processing before
	// the first move does the same for a schedule added at this time.
	n := e.ProcessDue()
	jumped := e.frequentSchedules(t)
	for {
		next := e.nextDue(jumped)
		if next.IsZero() || next.After(t) {
			break
		}
		// Every tick in between, not just the latest: a running engine
		// fires each one as it comes, where FireDueSchedules alone would
		// fire only the latest (the no-burst policy for missed ticks). And
		// every wake time: a run that sleeps again after waking computes
		// its next wake from the time it woke.
		e.Clock.Set(next)
		n += e.ProcessDue()
	}
	e.Clock.Set(t)
	return n + e.ProcessDue()
}

// frequentSchedules are the schedules with more than TickStops ticks
// between the clock and t, which Advance does not stop at.
func (e *Env) frequentSchedules(t time.Time) map[string]bool {
	limit := e.TickStops
	if limit <= 0 {
		limit = DefaultTickStops
	}
	now := e.Clock.Now()
	defer e.Clock.Set(now)
	// Schedules computes each one's next tick from the clock: stepping the
	// clock tick by tick counts them without touching the database.
	counts := map[string]int{}
	frequent := map[string]bool{}
	at := now
	for {
		var next time.Time
		for _, s := range e.Engine.Schedules() {
			if s.Next.IsZero() || s.Next.After(t) || frequent[s.Name] {
				continue
			}
			if !s.Next.After(at) {
				continue
			}
			if next.IsZero() || s.Next.Before(next) {
				next = s.Next
			}
		}
		if next.IsZero() {
			break
		}
		for _, s := range e.Engine.Schedules() {
			if s.Next.Equal(next) && !frequent[s.Name] {
				counts[s.Name]++
				if counts[s.Name] > limit {
					frequent[s.Name] = true
					e.tb.Logf("durablytest: schedule %q ticks more than %d times before %s: Advance does not stop at them, and fires its latest due tick at each stop (Env.TickStops)",
						s.Name, limit, t.Format(time.RFC3339))
				}
			}
		}
		at = next
		e.Clock.Set(next)
	}
	return frequent
}

// nextDue is the earliest moment after the clock's when something becomes
// due: a schedule's next tick (but those of the schedules jumped over) or
// a pending run's RunAt; zero if none.
func (e *Env) nextDue(jumped map[string]bool) time.Time {
	e.tb.Helper()
	now := e.Clock.Now()
	var next time.Time
	earliest := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, s := range e.Engine.Schedules() {
		if !jumped[s.Name] {
			earliest(s.Next)
		}
	}
	// A test holds a handful of runs: listing the pending ones is cheap.
	pending, err := e.Engine.ListRuns(e.tb.Context(), durably.RunFilter{Statuses: []durably.Status{durably.StatusPending}})
	if err != nil {
		e.tb.Fatalf("durablytest: list pending runs: %v", err)
		return time.Time{}
	}
	for _, r := range pending {
		earliest(r.RunAt)
	}
	return next
}
