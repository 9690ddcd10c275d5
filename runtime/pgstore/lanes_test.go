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
	"github.com/durably-go/durably/store"
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

// fencedWrite makes a write of kind for lease, as the engine would send it.
func fencedWrite(kind opKind, lease store.Lease, index int) *op {
	now := time.Now()
	switch kind {
	case opSaveStep:
		return &op{kind: opSaveStep, lease: lease, step: completedStep(lease, index)}
	case opFinish:
		return &op{kind: opFinish, lease: lease, fin: store.Finish{Status: store.StatusCompleted, Output: json.RawMessage(`1`),
			Now: now, Steps: []*store.Step{completedStep(lease, index)}, CurrentStepIndex: 1, CompletedStepCount: 1}}
	case opRenew:
		return &op{kind: opRenew, lease: lease, now: now, expiresAt: now.Add(2 * time.Hour)}
	case opProgress:
		return &op{kind: opProgress, lease: lease, now: now, progress: fmt.Sprintf(`{"current":%d}`, lease.Generation)}
	}
	panic("no fenced write of this kind")
}

var fencedKinds = []struct {
	name string
	kind opKind
}{{"step", opSaveStep}, {"finish", opFinish}, {"renew", opRenew}, {"progress", opProgress}}

// Every fenced write takes a one-row statement in a group of one and an
// array statement in a bigger group; both apply a live lease's write and
// refuse a stale one's, also when one array statement holds both.
func TestOneRowAndArrayStatementsFenceAlike(t *testing.T) {
	ctx := context.Background()
	for _, k := range fencedKinds {
		for _, groups := range [][]int{{1}, {1}, {2, 1}} { // live writes, then stale ones, per group
			t.Run(fmt.Sprintf("%s/groups %v", k.name, groups), func(t *testing.T) {
				live, stale := groups[0], 0
				if len(groups) > 1 {
					stale = groups[1]
				}
				st, _, leases := leasedRuns(t, 1, live+stale+1)
				var group []*op
				for i, l := range leases[:live] {
					group = append(group, fencedWrite(k.kind, l, i))
				}
				for i, l := range leases[live : live+stale] {
					l.Generation++ // another holder's lease
					group = append(group, fencedWrite(k.kind, l, i))
				}
				if err := st.pipeline(ctx, group); err != nil {
					t.Fatal(err)
				}
				// And a group of one stale write: the one-row statement.
				alone := leases[live+stale]
				alone.Generation++
				one := fencedWrite(k.kind, alone, 0)
				if err := st.pipeline(ctx, []*op{one}); err != nil {
					t.Fatal(err)
				}
				for i, o := range append(group, one) {
					wantOK := i < live
					if o.ok != wantOK {
						t.Fatalf("write %d (generation %d): ok = %v, want %v", i, o.lease.Generation, o.ok, wantOK)
					}
					run, err := st.GetRun(ctx, o.lease.RunID)
					if err != nil {
						t.Fatal(err)
					}
					steps, err := st.GetSteps(ctx, o.lease.RunID)
					if err != nil {
						t.Fatal(err)
					}
					applied := map[opKind]bool{
						opSaveStep: len(steps) == 1 && run.CurrentStepIndex == i+1 && run.CompletedStepCount == 1,
						opFinish:   run.Status == store.StatusCompleted && len(steps) == 1,
						opRenew:    run.LeaseExpiresAt.After(time.Now().Add(90 * time.Minute)),
						opProgress: run.Progress != nil,
					}[k.kind]
					if applied != wantOK {
						t.Fatalf("write %d (generation %d): applied = %v, want %v (run %+v, %d steps)", i, o.lease.Generation, applied, wantOK, run, len(steps))
					}
				}
			})
		}
	}
}

// Two holders of one run, a stale generation and the live one, whose
// writes meet in one group: the live one's write applies and only the live
// one is told ok. Matching results by run instead of by lease told both.
func TestStaleAndLiveHolderOfOneRunInOneGroup(t *testing.T) {
	ctx := context.Background()
	for _, k := range fencedKinds {
		t.Run(k.name, func(t *testing.T) {
			st, _, leases := leasedRuns(t, 1, 1)
			live := leases[0]
			// Another claim took the run over: generation 2 is live now.
			if _, err := st.pool.Exec(ctx, "UPDATE durably_runs SET lease_generation = 2 WHERE id = $1", live.RunID); err != nil {
				t.Fatal(err)
			}
			stale := live
			live.Generation = 2
			for round, liveFirst := range []bool{false, true} {
				if k.kind == opFinish && liveFirst {
					break // the run is finished after the first round
				}
				so, lo := fencedWrite(k.kind, stale, 2*round), fencedWrite(k.kind, live, 2*round+1)
				order := []*op{so, lo}
				if liveFirst {
					order = []*op{lo, so}
				}
				if err := st.pipeline(ctx, order); err != nil {
					t.Fatal(err)
				}
				if !lo.ok || so.ok {
					t.Fatalf("live ok = %v, stale ok = %v; want true, false", lo.ok, so.ok)
				}
			}
			if k.kind == opProgress {
				run, err := st.GetRun(ctx, live.RunID)
				if err != nil {
					t.Fatal(err)
				}
				if run.Progress == nil || run.Progress.Current != 2 {
					t.Fatalf("progress %+v, want the live holder's (current 2)", run.Progress)
				}
			}
		})
	}
}
