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

// TestFenceGrowsAcrossExecutions: a step sees its run ID and lease
// generation, and the execution that takes over a run whose lease expired
// sees a higher generation than the one that lost it (issue 12 item 5).
func TestFenceGrowsAcrossExecutions(t *testing.T) {
	st, err := sqlitestore.Open(filepath.Join(t.TempDir(), "f.db"), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e, err := durably.New(durably.Config{Store: st, PollingInterval: 10 * time.Millisecond,
		LeaseDuration: time.Minute, LeaseRenewInterval: 20 * time.Millisecond, MaxConcurrentRuns: 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	fences := make(chan durably.Fence, 2)
	var executions atomic.Int32
	job := durably.MustRegister(e, &durably.Job[Greeting, Card]{
		Name: "fenced",
		Run: func(ctx context.Context, s *durably.StepContext, in Greeting) (Card, error) {
			return durably.RunStep(s, "effect", func(ctx context.Context) (Card, error) {
				if s.Fence() != (durably.Fence{RunID: s.RunID(), Generation: s.LeaseGeneration()}) {
					t.Errorf("Fence %+v disagrees with RunID %s, LeaseGeneration %d", s.Fence(), s.RunID(), s.LeaseGeneration())
				}
				fences <- s.Fence()
				if executions.Add(1) == 1 {
					<-ctx.Done() // the first execution waits until it loses its lease
					return Card{}, context.Cause(ctx)
				}
				return Card{Text: "done"}, nil
			})
		},
	})
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	defer e.Stop(ctx)
	res, err := job.Trigger(ctx, Greeting{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	first := <-fences
	if first.RunID != res.Run.ID || first.Generation < 1 {
		t.Fatalf("first execution's fence %+v for run %s", first, res.Run.ID)
	}
	past := time.Now().Add(-time.Hour)
	if err := st.PatchRun(ctx, res.Run.ID, store.RunPatch{LeaseExpiresAt: &past}); err != nil {
		t.Fatal(err)
	}
	select {
	case second := <-fences:
		if second.RunID != first.RunID || second.Generation <= first.Generation {
			t.Fatalf("second execution's fence %+v after %+v", second, first)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the run was not taken over after its lease expired")
	}
}
