package durably_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// slowWritesStore makes lease renewals and step writes take a while, as a
// loaded database does, and counts those in progress.
type slowWritesStore struct {
	store.Store
	delay    time.Duration
	inFlight atomic.Int32
	started  chan string // "renew" or "step" as each call begins
}

func (s *slowWritesStore) begin(what string) func() {
	s.inFlight.Add(1)
	select {
	case s.started <- what:
	default:
	}
	time.Sleep(s.delay) // the slow database itself, not a wait for an outcome
	return func() { s.inFlight.Add(-1) }
}

func (s *slowWritesStore) RenewLease(ctx context.Context, lease store.Lease, now, expiresAt time.Time) (bool, error) {
	defer s.begin("renew")()
	return s.Store.RenewLease(ctx, lease, now, expiresAt)
}

func (s *slowWritesStore) SaveStep(ctx context.Context, lease store.Lease, step *store.Step) (bool, error) {
	defer s.begin("step")()
	return s.Store.SaveStep(ctx, lease, step)
}

// TestNothingOfARunOutlivesIt: once a run's execution returns, no write of
// it is still in progress: neither a lease renewal that began before the
// job returned, nor the write of a step held back when the run ended
// without a finish (here: cancelled by the job itself). Stop relies on
// this to leave no goroutine behind.
func TestNothingOfARunOutlivesIt(t *testing.T) {
	for _, tc := range []struct {
		name  string
		step  bool   // whether the job completes a step first
		await string // the store call the job waits to see begin
		after func(ctx context.Context, e *durably.Engine, s *durably.StepContext) error
	}{
		{name: "renewal in progress", await: "renew",
			after: func(context.Context, *durably.Engine, *durably.StepContext) error { return nil }},
		{name: "held-back step of a cancelled run", step: true, await: "step",
			after: func(ctx context.Context, e *durably.Engine, s *durably.StepContext) error {
				if err := e.Cancel(ctx, s.RunID()); err != nil {
					return err
				}
				return s.Err()
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := openStore(t, newStoreSpec(t, "sqlite", "o.db"))
			st := &slowWritesStore{Store: inner, delay: 300 * time.Millisecond, started: make(chan string, 16)}
			e, err := durably.New(durably.Config{Store: st, LeaseDuration: 10 * time.Second, LeaseRenewInterval: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			job := durably.MustRegister(e, &durably.Job[int, int]{
				Name: "j",
				Run: func(ctx context.Context, s *durably.StepContext, _ int) (int, error) {
					if tc.step {
						if _, err := durably.RunStep(s, "a", func(context.Context) (int, error) { return 1, nil }); err != nil {
							return 0, err
						}
					}
					deadline := time.After(5 * time.Second)
					for {
						select {
						case what := <-st.started:
							if what != tc.await {
								continue
							}
						case <-deadline:
							return 0, errors.New("the awaited store call never began")
						}
						break
					}
					return 0, tc.after(ctx, e, s)
				},
			})
			if err := e.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := job.Trigger(ctx, 0); err != nil {
				t.Fatal(err)
			}
			ok, err := e.ProcessOne(ctx, "")
			if !ok || err != nil {
				t.Fatalf("ProcessOne: %v %v", ok, err)
			}
			if n := st.inFlight.Load(); n != 0 {
				t.Errorf("%d store writes of the run still in progress after its execution returned", n)
			}
		})
	}
}
