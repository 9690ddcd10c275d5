package durably_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// loseFirstEnqueueReply commits the first Enqueue and then reports the
// database unavailable, as a connection reset after COMMIT does.
type loseFirstEnqueueReply struct {
	store.Store
	lost       atomic.Bool
	leased     atomic.Bool  // the lost insert was of a run leased to its worker
	maintained atomic.Int32 // the worker has been idle
}

func (l *loseFirstEnqueueReply) Enqueue(ctx context.Context, runs []store.NewRun) ([]store.Enqueued, error) {
	res, err := l.Store.Enqueue(ctx, runs)
	if err == nil && !l.lost.Swap(true) {
		l.leased.Store(runs[0].Claim != nil)
		return nil, fmt.Errorf("%w: the reply of the commit was lost", store.ErrUnavailable)
	}
	return res, err
}

func (l *loseFirstEnqueueReply) Maintain(ctx context.Context, now time.Time) error {
	l.maintained.Add(1)
	return l.Store.Maintain(ctx, now)
}

// TestDirectStartWithALostReplyIsHandedBack: a trigger that an idle worker
// would start itself inserts its run leased to that worker. When the
// commit's reply is lost, the caller gets ErrUnavailable but the run may
// exist, leased to nobody that runs it: it is handed back at once and runs,
// instead of waiting out its lease (here a minute).
func TestDirectStartWithALostReplyIsHandedBack(t *testing.T) {
	bothStores(t, "lostreply.db", func(t *testing.T, spec string) {
		ctx := context.Background()
		st := &loseFirstEnqueueReply{Store: openStore(t, spec)}
		e, err := durably.New(durably.Config{Store: st, LeaseDuration: time.Minute, PollingInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		j := durably.MustRegister(e, &durably.Job[int, int]{Name: "j", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) { return in + 1, nil }})
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		defer e.Stop(ctx)
		for deadline := time.Now().Add(20 * time.Second); st.maintained.Load() == 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the worker never became idle")
			}
		}
		_, err = j.Trigger(ctx, 1)
		if !errors.Is(err, durably.ErrUnavailable) {
			t.Fatalf("trigger: %v, want the lost reply's ErrUnavailable", err)
		}
		if !st.leased.Load() {
			t.Fatal("the trigger was not a direct start: the test needs the run inserted leased")
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			runs, err := e.ListRuns(ctx, durably.RunFilter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(runs) != 1 {
				t.Fatalf("%d runs, want the one committed", len(runs))
			}
			if runs[0].Status == durably.StatusCompleted {
				if string(runs[0].Output) != "2" {
					t.Fatalf("output %s", runs[0].Output)
				}
				return
			}
			if time.Now().After(deadline) {
				b, _ := json.Marshal(runs[0])
				t.Fatalf("the run of the lost reply did not run within 10 s of a 1-minute lease: %s", b)
			}
			time.Sleep(10 * time.Millisecond) // poll
		}
	})
}
