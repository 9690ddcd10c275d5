package durably_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// flakyRenewStore turns the first renewals away as an unavailable
// database would.
type flakyRenewStore struct {
	store.Store
	failures atomic.Int32
	calls    atomic.Int32
}

func (s *flakyRenewStore) RenewLease(ctx context.Context, lease store.Lease, now, expiresAt time.Time) (bool, error) {
	s.calls.Add(1)
	if s.failures.Add(-1) >= 0 {
		return false, fmt.Errorf("renew: connection refused: %w", store.ErrUnavailable)
	}
	return s.Store.RenewLease(ctx, lease, now, expiresAt)
}

// TestRenewalRetriedWithinLease: a renewal the database turns away is tried
// again within moments, not at the next renew interval, which here would be
// after the lease's end: the run keeps its lease and its step runs once.
func TestRenewalRetriedWithinLease(t *testing.T) {
	inner := openStore(t, newStoreSpec(t, "sqlite", "r.db"))
	st := &flakyRenewStore{Store: inner}
	st.failures.Store(2)
	logs := &syncBuffer{}
	e, err := durably.New(durably.Config{Store: st, Logger: newTextLogger(logs),
		LeaseDuration: time.Second, LeaseRenewInterval: 500 * time.Millisecond, PollingInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	executions := 0
	job := durably.MustRegister(e, &durably.Job[int, int]{
		Name: "long-step",
		Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			return durably.RunStep(s, "long", func(ctx context.Context) (int, error) {
				mu.Lock()
				executions++
				mu.Unlock()
				select {
				case <-time.After(2 * time.Second): // past the first lease's end
					return 1, nil
				case <-ctx.Done():
					return 0, context.Cause(ctx)
				}
			})
		},
	})
	runToCompletion(t, e, job, 0, logs)
	mu.Lock()
	defer mu.Unlock()
	if executions != 1 {
		t.Errorf("the step ran %d times, want once (the lease was lost)\n%s", executions, logs)
	}
	if st.calls.Load() < 3 {
		t.Errorf("%d renewal attempts, want the 2 refused ones and a successful one", st.calls.Load())
	}
	if out := logs.String(); strings.Contains(out, "lease-renewal") {
		t.Errorf("a transient renewal failure was reported as a worker error:\n%s", out)
	}
}
