package durably_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably"
)

// A fleet is several engines, each on a store of its own over one
// database, as separate processes would be.

// fleetRecord is what the runs of a fleet test saw.
type fleetRecord struct {
	mu        sync.Mutex
	running   int                  // bodies executing now
	peak      int                  // most bodies executing at once
	started   map[string]time.Time // run id → when its body began
	order     []string             // run tags in the order their bodies began
	beganTag  map[string]time.Time // run tag → when its body began
	perWorker map[string]int       // lease owner → runs executed
}

func newFleetRecord() *fleetRecord {
	return &fleetRecord{started: map[string]time.Time{}, beganTag: map[string]time.Time{}, perWorker: map[string]int{}}
}

type fleetInput struct {
	Tag string `json:"tag"`
}

// fleetJob returns, for the engine named worker, a job whose one step
// takes d and records when it began.
func fleetJob(rec *fleetRecord, d time.Duration, maxRunning int) func(worker string) *durably.Job[fleetInput, string] {
	return func(worker string) *durably.Job[fleetInput, string] { return fleetJobOf(rec, d, maxRunning, worker) }
}

func fleetJobOf(rec *fleetRecord, d time.Duration, maxRunning int, worker string) *durably.Job[fleetInput, string] {
	return &durably.Job[fleetInput, string]{
		Name:       "fleet",
		MaxRunning: maxRunning,
		Run: func(ctx context.Context, s *durably.StepContext, in fleetInput) (string, error) {
			rec.mu.Lock()
			rec.running++
			rec.peak = max(rec.peak, rec.running)
			rec.started[s.RunID()] = time.Now()
			rec.order = append(rec.order, in.Tag)
			rec.beganTag[in.Tag] = time.Now()
			rec.perWorker[worker]++
			rec.mu.Unlock()
			defer func() {
				rec.mu.Lock()
				rec.running--
				rec.mu.Unlock()
			}()
			return durably.RunStep(s, "work", func(ctx context.Context) (string, error) {
				select {
				case <-time.After(d):
					return in.Tag, nil
				case <-ctx.Done():
					return "", ctx.Err()
				}
			})
		},
	}
}

// startFleet starts n engines of slots each on spec, each with the job
// job returns for its name, and stops them when the test ends.
func startFleet[I, O any](t *testing.T, spec string, n, slots int, job func(worker string) *durably.Job[I, O]) {
	t.Helper()
	// All are opened and migrated first, then started together, so that
	// none starts a run's length after the others on a loaded machine.
	var fleet []*durably.Engine
	for i := range n {
		name := fmt.Sprintf("w%d", i)
		e, _ := parentEngine(t, spec, durably.Config{MaxConcurrentRuns: slots, PollingInterval: 50 * time.Millisecond,
			WorkerID: name}, job(name))
		fleet = append(fleet, e)
	}
	for _, e := range fleet {
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.Stop(context.Background()) })
	}
}

// waitAllDone waits until no run of e is pending or leased.
func waitAllDone(t *testing.T, e *durably.Engine, limit time.Duration) {
	t.Helper()
	waitFor(t, limit, "every run to end", func() bool {
		runs, err := e.ListRuns(context.Background(), durably.RunFilter{Statuses: []durably.Status{durably.StatusPending, durably.StatusLeased}})
		if err != nil {
			t.Fatal(err)
		}
		return len(runs) == 0
	})
}

// TestFleetLeasesOnlyRunsItStarts: two processes of one slot share a
// backlog of long runs evenly, and every run's body begins within moments
// of its lease (its first claim sets started_at). With a claim buffer, one
// process leased five of six runs and ran them one after another while
// the other sat idle.
func TestFleetLeasesOnlyRunsItStarts(t *testing.T) {
	bothStores(t, "fleet.db", func(t *testing.T, spec string) {
		rec := newFleetRecord()
		job := fleetJob(rec, 600*time.Millisecond, 0)
		parent, h := parentEngine(t, spec, durably.Config{}, job("parent"))
		ctx := context.Background()
		var ids []string
		for i := range 6 {
			r, err := h.Trigger(ctx, fleetInput{Tag: fmt.Sprint(i)})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, r.Run.ID)
		}
		startFleet(t, spec, 2, 1, job)
		waitAllDone(t, parent, 20*time.Second)

		rec.mu.Lock()
		defer rec.mu.Unlock()
		// 3 each when both start together; a claim buffer made it 5 and 1.
		for w, n := range rec.perWorker {
			if n < 2 || n > 4 {
				t.Errorf("worker %s executed %d of 6 runs, want about 3 each: %v", w, n, rec.perWorker)
			}
		}
		for _, id := range ids {
			run, err := parent.GetRun(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			// A body begins after its claim's commit and, for a run
			// claimed for an ending slot, after that slot's last write:
			// a few milliseconds, far less than a run.
			if wait := rec.started[id].Sub(run.StartedAt); wait > 300*time.Millisecond {
				t.Errorf("run %s began %v after it was leased: it waited, leased, for a slot", id, wait)
			}
		}
	})
}

// TestFleetMaxRunningCountsExecutingRuns: a job limited to 2 runs at once,
// on two processes of one slot, runs two at once. With a claim buffer, one
// process held both leases, one of them waiting for its only slot.
func TestFleetMaxRunningCountsExecutingRuns(t *testing.T) {
	bothStores(t, "fleet-limit.db", func(t *testing.T, spec string) {
		rec := newFleetRecord()
		job := fleetJob(rec, 300*time.Millisecond, 2)
		parent, h := parentEngine(t, spec, durably.Config{}, job("parent"))
		ctx := context.Background()
		for i := range 6 {
			if _, err := h.Trigger(ctx, fleetInput{Tag: fmt.Sprint(i)}); err != nil {
				t.Fatal(err)
			}
		}
		startFleet(t, spec, 2, 1, job)
		waitAllDone(t, parent, 20*time.Second)
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if rec.peak != 2 {
			t.Fatalf("at most %d runs executed at once, want MaxRunning's 2", rec.peak)
		}
	})
}

// TestFleetPriorityAcrossProcesses: a run of a smaller priority triggered
// while both processes are busy begins before every run of a larger
// priority triggered earlier, except one claimed for a slot ending as the
// trigger committed, or one a concurrent claim took as the urgent run was
// claimed (R-210: priority holds up to the time of one write).
// With a claim buffer, the runs claimed ahead began first, a run's length
// after the trigger.
func TestFleetPriorityAcrossProcesses(t *testing.T) {
	bothStores(t, "fleet-priority.db", func(t *testing.T, spec string) {
		rec := newFleetRecord()
		const runTime, oneWrite = time.Second, 400 * time.Millisecond
		job := fleetJob(rec, runTime, 0)
		parent, h := parentEngine(t, spec, durably.Config{}, job("parent"))
		ctx := context.Background()
		for i := range 5 {
			if _, err := h.Trigger(ctx, fleetInput{Tag: fmt.Sprint("bulk", i)}, durably.WithPriority(5)); err != nil {
				t.Fatal(err)
			}
		}
		startFleet(t, spec, 2, 1, job)
		waitFor(t, 10*time.Second, "two runs executing", func() bool {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			return rec.running == 2
		})
		if _, err := h.Trigger(ctx, fleetInput{Tag: "urgent"}, durably.WithPriority(0)); err != nil {
			t.Fatal(err)
		}
		committed := time.Now()
		waitAllDone(t, parent, 30*time.Second)
		rec.mu.Lock()
		defer rec.mu.Unlock()
		// Two claims at one moment may split the urgent run and a bulk
		// one between them (SKIP LOCKED): such a bulk run begins at most
		// moments before the urgent one, not a run's length.
		urgent := rec.beganTag["urgent"]
		for tag, began := range rec.beganTag {
			if tag != "urgent" && began.After(committed.Add(oneWrite)) && began.Before(urgent.Add(-oneWrite)) {
				t.Fatalf("%s began %v after the urgent run's trigger, before the urgent run (order %v)", tag, began.Sub(committed), rec.order)
			}
		}
	})
}
