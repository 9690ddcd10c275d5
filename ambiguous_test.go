package durably_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// lostReplyStore commits some writes and then reports them failed as an
// unavailable database, as when the connection dies between the server's
// COMMIT and its answer.
type lostReplyStore struct {
	store.Store
	mu    sync.Mutex
	steps int // SaveStep calls whose reply is lost, from the first on
	fins  int // likewise for FinishRun
}

func (s *lostReplyStore) take(n *int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if *n == 0 {
		return false
	}
	*n--
	return true
}

func (s *lostReplyStore) SaveStep(ctx context.Context, lease store.Lease, step *store.Step) (bool, error) {
	ok, err := s.Store.SaveStep(ctx, lease, step)
	if err == nil && ok && s.take(&s.steps) {
		return false, fmt.Errorf("save step: connection reset after commit: %w", store.ErrUnavailable)
	}
	return ok, err
}

func (s *lostReplyStore) FinishRun(ctx context.Context, lease store.Lease, fin store.Finish) (bool, error) {
	ok, err := s.Store.FinishRun(ctx, lease, fin)
	if err == nil && ok && s.take(&s.fins) {
		return false, fmt.Errorf("finish run: connection reset after commit: %w", store.ErrUnavailable)
	}
	return ok, err
}

// TestAmbiguousCommitCountsAsDone: a step record and a finish that committed
// although the engine was told the database failed are retried; the retry
// is refused or hits the step's unique id, and the engine recognises its
// own write instead of treating the run as lost: the run completes, each
// step ran once, run:complete is emitted once.
func TestAmbiguousCommitCountsAsDone(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			inner := openStore(t, newStoreSpec(t, kind, "a.db"))
			st := &lostReplyStore{Store: inner, steps: 2, fins: 1}
			logs := &syncBuffer{}
			e, err := durably.New(durably.Config{Store: st, PreserveSteps: true, Logger: newTextLogger(logs)})
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			runs := map[string]int{}
			job := durably.MustRegister(e, &durably.Job[int, int]{
				Name: "ambiguous",
				Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
					sum := 0
					for i := range 3 {
						v, err := durably.RunStep(s, fmt.Sprintf("step-%d", i), func(ctx context.Context) (int, error) {
							mu.Lock()
							runs[fmt.Sprint(i)]++
							mu.Unlock()
							return i, nil
						})
						if err != nil {
							return 0, err
						}
						// A step is recorded before the next one starts,
						// or within stepFlushDelay: wait for the record so
						// that each step's write goes alone.
						time.Sleep(20 * time.Millisecond)
						sum += v
					}
					return sum, nil
				},
			})
			var completes int
			e.OnEvent(func(ev durably.Event) {
				if ev.Type == durably.EventRunComplete {
					mu.Lock()
					completes++
					mu.Unlock()
				}
			})
			runToCompletion(t, e, job, 0, logs)
			time.Sleep(50 * time.Millisecond) // let a second run:complete show, if one were coming
			mu.Lock()
			defer mu.Unlock()
			for i := range 3 {
				if n := runs[fmt.Sprint(i)]; n != 1 {
					t.Errorf("step %d ran %d times, want once", i, n)
				}
			}
			if completes != 1 {
				t.Errorf("run:complete emitted %d times, want once", completes)
			}
			if st.steps != 0 || st.fins != 0 {
				t.Errorf("not every lost reply was exercised: %d steps, %d finishes left", st.steps, st.fins)
			}
			if out := logs.String(); strings.Contains(out, "Lease lost") || strings.Contains(out, "worker error") {
				t.Errorf("an ambiguous commit was taken for a failure:\n%s", out)
			}
		})
	}
}
