package durably_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/sqlitestore"
	"github.com/durably-go/durably/store"
)

// gatedClaimStore holds the first claim that leases a run, once armed,
// until gate closes: a claim whose commit is slow to return.
type gatedClaimStore struct {
	store.Store
	armed   atomic.Bool
	holding chan struct{} // closed when a claim is held
	gate    chan struct{}
}

func (s *gatedClaimStore) Claim(ctx context.Context, req store.ClaimRequest) ([]*store.Run, error) {
	runs, err := s.Store.Claim(ctx, req)
	if len(runs) > 0 && s.armed.CompareAndSwap(true, false) {
		close(s.holding)
		<-s.gate
	}
	return runs, err
}

// TestDirectStartDuringClaimDoesNotStrandClaimedRun: a trigger that
// starts directly while the idle worker's claim is under way must not take
// the slot that claim is for; otherwise the claimed run stays leased,
// unstarted, for the whole of the direct run (R-210: no run is leased that
// no slot is about to execute).
func TestDirectStartDuringClaimDoesNotStrandClaimedRun(t *testing.T) {
	st, err := sqlitestore.Open(filepath.Join(t.TempDir(), "direct.db"), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	gs := &gatedClaimStore{Store: st, holding: make(chan struct{}), gate: make(chan struct{})}
	e, err := durably.New(durably.Config{Store: gs, MaxConcurrentRuns: 1, PollingInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	long := durably.MustRegister(e, &durably.Job[fleetInput, string]{Name: "long",
		Run: func(ctx context.Context, s *durably.StepContext, in fleetInput) (string, error) {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return "", nil
		}})
	quick := durably.MustRegister(e, &durably.Job[fleetInput, string]{Name: "quick",
		Run: func(ctx context.Context, s *durably.StepContext, in fleetInput) (string, error) { return "ok", nil }})
	ctx := context.Background()
	if err := e.Init(ctx); err != nil { // migrates and starts
		t.Fatal(err)
	}
	t.Cleanup(func() { close(release); _ = e.Stop(ctx) })
	// Let the worker find the queue empty (idle).
	time.Sleep(100 * time.Millisecond)
	gs.armed.Store(true)
	// A keyed trigger never starts directly: the worker claims it.
	q, err := quick.Trigger(ctx, fleetInput{}, durably.WithConcurrencyKey("k"))
	if err != nil {
		t.Fatal(err)
	}
	<-gs.holding // the claim has leased q and is returning
	l, err := long.Trigger(ctx, fleetInput{})
	if err != nil {
		t.Fatal(err)
	}
	close(gs.gate)
	if _, err := e.WaitForRun(ctx, q.Run.ID, durably.WithTimeout(3*time.Second)); err != nil {
		got, _ := e.GetRun(ctx, q.Run.ID)
		lr, _ := e.GetRun(ctx, l.Run.ID)
		t.Fatalf("claimed run %s (lease owner %q) did not run while the direct run was %s: %v", got.Status, got.LeaseOwner, lr.Status, err)
	}
}
