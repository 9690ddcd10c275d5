package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/internal/ulid"
	"github.com/durably-go/durably/runtime/store"
)

// leasedRuns opens a store with the given lanes and enqueues n runs leased
// to worker "w".
func leasedRuns(t *testing.T, lanes, n int) (*Store, string, []store.Lease) {
	t.Helper()
	ctx := context.Background()
	dsn := pgtest.Schema(t)
	st, err := Open(ctx, dsn, Options{WriteLanes: lanes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var ids ulid.Generator
	now := time.Now()
	items := make([]store.NewRun, n)
	for i := range items {
		items[i] = store.NewRun{
			Run:   &store.Run{ID: ids.New(now), JobName: "j", Input: json.RawMessage(`{}`), Labels: map[string]string{}, CreatedAt: now},
			Claim: &store.Claim{WorkerID: "w", ExpiresAt: now.Add(time.Hour)},
		}
	}
	if _, err := st.Enqueue(ctx, items); err != nil {
		t.Fatal(err)
	}
	leases := make([]store.Lease, n)
	for i, it := range items {
		leases[i] = store.Lease{RunID: it.Run.ID, Generation: 1}
	}
	return st, dsn, leases
}

func completedStep(lease store.Lease, index int) *store.Step {
	now := time.Now()
	return &store.Step{ID: fmt.Sprintf("%s-%d", lease.RunID, index), Name: fmt.Sprintf("s%d", index), Index: index,
		Status: store.StepCompleted, Output: json.RawMessage(`1`), StartedAt: now, CompletedAt: now}
}

// A write that waits for a row lock holds up only its own lane: the other
// lanes' runs go on committing. With one writer for the whole store, every
// run's steps queued behind it.
func TestWriteLanesDoNotWaitOnEachOther(t *testing.T) {
	ctx := context.Background()
	st, dsn, leases := leasedRuns(t, 2, 8)
	blocked := leases[0]
	var free store.Lease
	for _, l := range leases[1:] {
		if st.lane(l.RunID) != st.lane(blocked.RunID) {
			free = l
			break
		}
	}
	if free.RunID == "" {
		t.Fatal("all 8 runs hash to one lane")
	}

	locker, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(ctx)
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	// Hand-written: the test holds the row lock a concurrent claim would.
	if _, err := tx.Exec(ctx, "SELECT 1 FROM durably_runs WHERE id = $1 FOR UPDATE", blocked.RunID); err != nil {
		t.Fatal(err)
	}

	blockedDone := make(chan error, 1)
	go func() {
		ok, err := st.SaveStep(ctx, blocked, completedStep(blocked, 0))
		if err == nil && !ok {
			err = fmt.Errorf("step of %s refused", blocked.RunID)
		}
		blockedDone <- err
	}()
	// Wait until the blocked write is in its lane, waiting for the lock.
	for deadline := time.Now().Add(10 * time.Second); ; {
		var waiting int
		// Hand-written: a catalog view sqlc's schema does not hold.
		if err := locker.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))").Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the step write never waited for the row lock")
		}
		time.Sleep(time.Millisecond)
	}

	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ok, err := st.SaveStep(wctx, free, completedStep(free, 0))
	if err != nil || !ok {
		t.Fatalf("a run in another lane waited for the locked run: ok=%v err=%v", ok, err)
	}
	select {
	case err := <-blockedDone:
		t.Fatalf("the step of the locked run committed while its row was locked: %v", err)
	default:
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-blockedDone; err != nil {
		t.Fatal(err)
	}
}

// A run's writes take one lane, so fire-and-forget writes commit before the
// run's later writes: logs queued before a finish that deletes the run's
// steps and logs (preserveSteps=false) are deleted with them, never left
// behind.
func TestWriteLanesKeepARunsWritesInOrder(t *testing.T) {
	ctx := context.Background()
	st, _, leases := leasedRuns(t, 4, 64)
	var ids ulid.Generator
	for _, l := range leases {
		if err := st.AppendLogs(ctx, []*store.Log{{ID: ids.New(time.Now()), RunID: l.RunID, Level: "info", Message: "m", CreatedAt: time.Now()}}); err != nil {
			t.Fatal(err)
		}
	}
	errs := make(chan error, len(leases))
	for _, l := range leases {
		go func() {
			ok, err := st.FinishRun(ctx, l, store.Finish{Status: store.StatusCompleted, Output: json.RawMessage(`1`), Now: time.Now(), DeleteSteps: true})
			if err == nil && !ok {
				err = fmt.Errorf("finish of %s refused", l.RunID)
			}
			errs <- err
		}()
	}
	for range leases {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range leases {
		logs, err := st.GetLogs(ctx, l.RunID)
		if err != nil {
			t.Fatal(err)
		}
		if len(logs) != 0 {
			t.Fatalf("run %s: %d log(s) committed after the finish that deleted its logs", l.RunID, len(logs))
		}
	}
}

// A group of one step or one finish takes the one-row statements, larger
// groups the array statements: both fence by generation, advance the
// counters of a completed step, and refuse a finish exactly when its steps
// are refused.
func TestOneRowAndArrayStatementsFenceAlike(t *testing.T) {
	ctx := context.Background()
	for _, size := range []int{1, 3} {
		t.Run(fmt.Sprintf("group of %d", size), func(t *testing.T) {
			st, _, leases := leasedRuns(t, 1, 2*size)
			live, stale := leases[:size], leases[size:]
			var group []*op
			for i, l := range live {
				group = append(group, &op{kind: opSaveStep, lease: l, step: completedStep(l, i)})
			}
			for i, l := range stale {
				l.Generation++ // another holder's lease
				group = append(group, &op{kind: opFinish, lease: l, fin: store.Finish{Status: store.StatusCompleted, Output: json.RawMessage(`1`),
					Now: time.Now(), Steps: []*store.Step{completedStep(l, i)}, CurrentStepIndex: 1, CompletedStepCount: 1}})
			}
			saves, fins := group[:size], group[size:]
			for _, part := range [][]*op{saves, fins} {
				if err := st.pipeline(ctx, part); err != nil {
					t.Fatal(err)
				}
			}
			for i, o := range saves {
				if !o.ok {
					t.Fatalf("step of live lease %d refused", i)
				}
				run, err := st.GetRun(ctx, o.lease.RunID)
				if err != nil {
					t.Fatal(err)
				}
				if run.CurrentStepIndex != i+1 || run.CompletedStepCount != 1 {
					t.Fatalf("run %d after its step: index %d, count %d; want %d, 1", i, run.CurrentStepIndex, run.CompletedStepCount, i+1)
				}
			}
			for i, o := range fins {
				if o.ok {
					t.Fatalf("finish of stale lease %d accepted", i)
				}
				steps, err := st.GetSteps(ctx, o.lease.RunID)
				if err != nil {
					t.Fatal(err)
				}
				if len(steps) != 0 {
					t.Fatalf("stale lease %d: %d step(s) written with a refused finish", i, len(steps))
				}
			}
		})
	}
}
