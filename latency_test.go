package durably_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// callCounter counts the store calls that stand between a trigger and its
// caller seeing the run completed, besides the run's own two writes.
type callCounter struct {
	store.Store
	claims, getRuns, maintained, direct atomic.Int64
}

func (c *callCounter) Claim(ctx context.Context, req store.ClaimRequest) ([]*store.Run, error) {
	c.claims.Add(1)
	return c.Store.Claim(ctx, req)
}

func (c *callCounter) GetRun(ctx context.Context, id string) (*store.Run, error) {
	c.getRuns.Add(1)
	return c.Store.GetRun(ctx, id)
}

func (c *callCounter) Maintain(ctx context.Context, now time.Time) error {
	defer c.maintained.Add(1)
	return c.Store.Maintain(ctx, now)
}

func (c *callCounter) Enqueue(ctx context.Context, runs []store.NewRun) ([]store.Enqueued, error) {
	if len(runs) == 1 && runs[0].Claim != nil {
		c.direct.Add(1)
	}
	return c.Store.Enqueue(ctx, runs)
}

var latencyJob = &durably.Job[int, int]{
	Name: "latency",
	Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
		return durably.RunStep(s, "only", func(context.Context) (int, error) { return in + 1, nil })
	},
}

// idleEngine starts a worker on a counted store of kind and returns once
// the worker is idle (its first claim found nothing and its maintenance
// ended), so that each trigger that follows starts its run directly.
func idleEngine(t *testing.T, kind string, slots int) (*durably.Engine, *durably.JobHandle[int, int], *callCounter) {
	t.Helper()
	c := &callCounter{Store: openStore(t, newStoreSpec(t, kind, "latency.db"))}
	// No poll during the test: every claim is one the worker chose to make.
	e, err := durably.New(durably.Config{Store: c, MaxConcurrentRuns: slots, PollingInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	j := durably.MustRegister(e, latencyJob)
	ctx := context.Background()
	if err := e.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Stop(context.Background()) })
	for deadline := time.Now().Add(20 * time.Second); c.maintained.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the worker never became idle")
		}
	}
	return e, j, c
}

// A run that an idle worker's own trigger started leaves the worker idle:
// its end makes nothing claimable, so no claim (and no idle maintenance)
// follows it and gets in the way of the next trigger's commit.
func TestLatencyDirectRunsCauseNoClaims(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			e, j, c := idleEngine(t, kind, 4)
			ctx := context.Background()
			claimsBefore := c.claims.Load()
			const n = 20
			for i := range n {
				out, err := j.TriggerAndWait(ctx, i)
				if err != nil || out.Output != i+1 {
					t.Fatalf("run %d: %v %v", i, out, err)
				}
			}
			if err := e.Stop(ctx); err != nil { // the loop's last iteration is over
				t.Fatal(err)
			}
			if got := c.direct.Load(); got != n {
				t.Fatalf("%d of %d runs were inserted leased to the idle worker", got, n)
			}
			if got := c.claims.Load() - claimsBefore; got != 0 {
				t.Fatalf("%d claims after %d directly started runs, want 0", got, n)
			}
		})
	}
}

// TriggerAndWait of a run this process executes sees it finish through
// the run:complete event: it never reads the run.
func TestLatencyTriggerAndWaitReadsNoRun(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			_, j, c := idleEngine(t, kind, 4)
			ctx := context.Background()
			before := c.getRuns.Load()
			for i := range 10 {
				if _, err := j.TriggerAndWait(ctx, i); err != nil {
					t.Fatal(err)
				}
			}
			if got := c.getRuns.Load() - before; got != 0 {
				t.Fatalf("TriggerAndWait read the run %d times for 10 runs executed here, want 0", got)
			}
		})
	}
}

// TestLatencyTriggerAndWaitAfterABurstOfOtherRuns: TriggerAndWait skips
// its first read of a run it created, counting on seeing the run's end as
// an event. Before it knows the run's id it keeps a bounded number of
// events; when a burst of other runs' ends fills that (here while the
// trigger commits and the run finishes, before the waiter learns the id),
// the run's own run:complete is dropped, and the first read must not be
// skipped: without it the caller waited a whole poll interval (here: timed
// out) for a run that had completed. Other runs' logs and progress are not
// kept at all when nothing would take them.
func TestLatencyTriggerAndWaitAfterABurstOfOtherRuns(t *testing.T) {
	for _, burst := range []durably.EventType{durably.EventRunComplete, durably.EventLogWrite} {
		t.Run(string(burst), func(t *testing.T) {
			st := openStore(t, newStoreSpec(t, "sqlite", "burst.db"))
			e, err := durably.New(durably.Config{Store: st, PollingInterval: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			j := durably.MustRegister(e, &durably.Job[int, int]{
				Name:       "quick",
				MaxRunning: 10, // not started directly: the worker claims it
				Run:        func(ctx context.Context, s *durably.StepContext, in int) (int, error) { return in + 1, nil },
			})
			ctx := context.Background()
			if err := e.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			completed := make(chan string, 1)
			var flooded atomic.Bool
			e.OnEvent(func(ev durably.Event) {
				switch {
				case ev.Type == durably.EventRunComplete && !strings.HasPrefix(ev.RunID, "other-"):
					select {
					case completed <- ev.RunID:
					default:
					}
				case ev.Type == durably.EventRunTrigger && !flooded.Swap(true):
					for i := range 300 {
						e.Emit(durably.Event{Type: burst, RunID: fmt.Sprintf("other-%d", i), Message: "x"})
					}
					// The trigger returns only once its run is done, so that
					// the run's end comes before the waiter knows its id.
					select {
					case <-completed:
					case <-time.After(10 * time.Second):
					}
				}
			})
			if err := e.Start(); err != nil {
				t.Fatal(err)
			}
			defer e.Stop(ctx)
			out, err := j.TriggerAndWait(ctx, 1, durably.WithPollInterval(time.Minute), durably.WithTimeout(3*time.Second))
			if err != nil {
				t.Fatalf("TriggerAndWait of a run that had completed: %v", err)
			}
			if out.Output != 2 {
				t.Fatalf("output %d, want 2", out.Output)
			}
		})
	}
}

// A run that finds the only slot taken by a directly started run is
// claimed as that run ends and starts at once, without a poll (there is
// none within the test).
func TestLatencyRunQueuedBehindADirectRunStartsWhenItEnds(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			c := &callCounter{Store: openStore(t, newStoreSpec(t, kind, "queued.db"))}
			e, err := durably.New(durably.Config{Store: c, MaxConcurrentRuns: 1, PollingInterval: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			started, release := make(chan int, 2), make(chan struct{})
			j := durably.MustRegister(e, &durably.Job[int, int]{
				Name: "blocking",
				Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
					return durably.RunStep(s, "only", func(context.Context) (int, error) {
						started <- in
						if in == 0 {
							<-release
						}
						return in, nil
					})
				},
			})
			ctx := context.Background()
			if err := e.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			if err := e.Start(); err != nil {
				t.Fatal(err)
			}
			defer e.Stop(ctx)
			for deadline := time.Now().Add(20 * time.Second); c.maintained.Load() == 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the worker never became idle")
				}
			}
			first, err := j.Trigger(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got := <-started; got != 0 {
				t.Fatalf("run %d started first", got)
			}
			if c.direct.Load() != 1 {
				t.Fatal("the first run was not started directly")
			}
			second, err := j.Trigger(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			// Let the woken worker claim the second run into its buffer
			// (or not yet: either order must start it).
			time.Sleep(20 * time.Millisecond)
			close(release)
			for _, id := range []string{first.Run.ID, second.Run.ID} {
				if _, err := e.WaitForRun(ctx, id, durably.WithTimeout(20*time.Second), durably.WithPollInterval(50*time.Millisecond)); err != nil {
					t.Fatalf("run %s: %v", id, err)
				}
			}
		})
	}
}

// BenchmarkTriggerAndWait is the latency workload's hot path: an idle
// worker, one 1-step run at a time, from the trigger to the caller holding
// the output (two durable commits per run).
func BenchmarkTriggerAndWait(b *testing.B) {
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run(kind, func(b *testing.B) {
			st := openStore(b, newStoreSpec(b, kind, "bench.db"))
			e, err := durably.New(durably.Config{Store: st, MaxConcurrentRuns: 8})
			if err != nil {
				b.Fatal(err)
			}
			j := durably.MustRegister(e, latencyJob)
			ctx := context.Background()
			if err := e.Migrate(ctx); err != nil {
				b.Fatal(err)
			}
			if err := e.Start(); err != nil {
				b.Fatal(err)
			}
			defer e.Stop(ctx)
			for i := range 20 { // the worker settles idle
				if _, err := j.TriggerAndWait(ctx, i); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := j.TriggerAndWait(ctx, i); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
