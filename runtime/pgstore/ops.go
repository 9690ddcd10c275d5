package pgstore

import (
	"context"
	"fmt"
	"hash/maphash"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/durably-go/durably/internal/groupcommit"
	"github.com/durably-go/durably/internal/storekit"
	"github.com/durably-go/durably/runtime/pgstore/internal/pgdb"
	"github.com/durably-go/durably/store"
)

func text(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }

// lane is the writer of a run's writes: always the same one, so that a
// run's writes commit in the order they were made. Writes of no single run
// take lane 0: triggers (their unique indexes make concurrent inserts of
// the same key wait on each other, so two lanes inserting the same two keys
// in opposite orders could deadlock), published events (their order across
// runs is kept), and the sweeps of maintenance.
func (s *Store) lane(runID string) *groupcommit.Writer[*op] {
	if runID == "" || len(s.lanes) == 1 {
		return s.lanes[0]
	}
	return s.lanes[maphash.String(s.laneSeed, runID)%uint64(len(s.lanes))]
}

// do submits o to the lane of runID and waits for its group's commit, at
// most o's bound (Options.Timeout, or BulkTimeout for a bulk op) in all.
// When ctx or the bound ends first it returns an error while o may still be
// applied later (if its group had started), so a caller reads o's results,
// or what o.fn writes, only after do returned nil.
func (s *Store) do(ctx context.Context, runID string, o *op) error {
	ctx, cancel := s.opDeadline(ctx, o)
	defer cancel()
	return s.failed(ctx, s.lane(runID).Do(ctx, o))
}

// opDeadline bounds ctx to o's bound.
func (s *Store) opDeadline(ctx context.Context, o *op) (context.Context, context.CancelFunc) {
	if o.bulk {
		return withDeadline(ctx, s.bulkTimeout, "BulkTimeout")
	}
	return s.bound(ctx)
}

// Enqueue inserts runs all or nothing.
func (s *Store) Enqueue(ctx context.Context, items []store.NewRun) ([]store.Enqueued, error) {
	if len(items) == 0 {
		return nil, nil
	}
	o := &op{kind: opEnqueue, items: items}
	if err := s.do(ctx, "", o); err != nil {
		return nil, err
	}
	if o.conflict != nil {
		return nil, o.conflict
	}
	return o.enqueued, nil
}

// RenewLease extends an unexpired lease.
func (s *Store) RenewLease(ctx context.Context, lease store.Lease, now, expiresAt time.Time) (bool, error) {
	o := &op{kind: opRenew, lease: lease, now: now, expiresAt: expiresAt}
	if err := s.do(ctx, lease.RunID, o); err != nil {
		return false, err
	}
	return o.ok, nil
}

// ReleaseLease hands a run back to pending or, when a same-key pending run
// forbids that, by expiring its lease now (D12).
func (s *Store) ReleaseLease(ctx context.Context, lease store.Lease, now time.Time) (bool, error) {
	var ok bool
	err := s.do(ctx, lease.RunID, &op{kind: opFunc, fn: func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) (err error) {
		ok, err = storekit.ReleaseLease(ctx, txOps{tx, q}, lease, now)
		return err
	}})
	if err != nil {
		return false, err
	}
	return ok, nil
}

// SaveStep records a step fenced by generation (S-036).
func (s *Store) SaveStep(ctx context.Context, lease store.Lease, step *store.Step) (bool, error) {
	o := &op{kind: opSaveStep, lease: lease, step: step}
	if err := s.do(ctx, lease.RunID, o); err != nil {
		return false, err
	}
	return o.ok, nil
}

// SetProgress queues a fenced progress write.
func (s *Store) SetProgress(ctx context.Context, lease store.Lease, progress *store.Progress, now time.Time) error {
	return s.lane(lease.RunID).Submit(&op{kind: opProgress, lease: lease, now: now, progress: storekit.EncodeProgress(progress)})
}

// FinishRun completes or fails the run.
func (s *Store) FinishRun(ctx context.Context, lease store.Lease, fin store.Finish) (bool, error) {
	if fin.Status != store.StatusCompleted && fin.Status != store.StatusFailed {
		return false, fmt.Errorf("pgstore: finish with status %q", fin.Status)
	}
	o := &op{kind: opFinish, lease: lease, fin: fin}
	if err := s.do(ctx, lease.RunID, o); err != nil {
		return false, err
	}
	return o.ok, nil
}

// DeferRun records d.Steps and hands the run back to wait until d.Until, in
// one transaction of its own, fenced by generation (store.Store.DeferRun).
// Not an array statement of the group: a deferral is once per retry or
// sleep, not per step.
func (s *Store) DeferRun(ctx context.Context, lease store.Lease, d store.Deferral) (bool, error) {
	d.Until = storekit.DeferUntil(d)
	var ok bool
	err := s.do(ctx, lease.RunID, &op{kind: opFunc, fn: func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) error {
		ok = false
		if len(d.Steps) > 0 {
			saves := make([]*op, len(d.Steps))
			for i, st := range d.Steps {
				saves[i] = &op{lease: lease, step: st}
			}
			saved, err := q.SaveSteps(ctx, stepsParams(saves, nil))
			if err != nil {
				return fmt.Errorf("pgstore: defer run: save steps: %w", err)
			}
			if len(saved) != len(d.Steps) { // refused: the deferral is refused too
				return errRollback
			}
		}
		waitingFor, awaiting, seen := storekit.WaitColumns(d.Wait)
		n, err := q.DeferRun(ctx, pgdb.DeferRunParams{
			WaitingFor: text(waitingFor), Awaiting: awaiting, SeenWakes: seen,
			RunAt: ts(d.Until), Now: ts(d.Now), Attempt: int64(d.Attempt), Attempts: text(storekit.EncodeAttempts(d.Attempts)),
			CurrentStepIndex: int64(d.CurrentStepIndex), CompletedStepCount: int64(d.CompletedStepCount),
			ID: lease.RunID, Generation: lease.Generation,
		})
		if err != nil {
			return fmt.Errorf("pgstore: defer run: %w", err)
		}
		if n == 0 {
			return errRollback
		}
		ok = true
		return nil
	}})
	if err != nil {
		return false, err
	}
	return ok, nil
}

// AppendLogs queues log records.
func (s *Store) AppendLogs(ctx context.Context, logs []*store.Log) error {
	if len(logs) == 0 {
		return nil
	}
	// A batch of logs is one run's (one step's or the run's own).
	return s.lane(logs[0].RunID).Submit(&op{kind: opLogs, logs: logs})
}

// CancelRun cancels a pending or leased run and its active descendants
// (S-037, R-234), in a transaction of its own that locks them from the
// leaves up (storekit.CancelRun).
func (s *Store) CancelRun(ctx context.Context, req store.CancelRequest) (store.Cancellation, error) {
	var out store.Cancellation
	err := s.do(ctx, req.ID, &op{kind: opFunc, fn: func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) (err error) {
		out, err = storekit.CancelRun(ctx, txOps{tx, q}, req)
		return err
	}})
	if err != nil {
		return store.Cancellation{}, err
	}
	return out, nil
}

// DeleteRun removes a terminal run and its children (S-040).
func (s *Store) DeleteRun(ctx context.Context, id string) (*store.Run, error) {
	var run *store.Run
	err := s.do(ctx, id, &op{kind: opFunc, fn: func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) (err error) {
		run, err = storekit.DeleteRun(ctx, txOps{tx, q}, id)
		return err
	}})
	if err != nil {
		return nil, err
	}
	return run, nil
}

// PurgeRuns deletes old terminal runs (S-041).
func (s *Store) PurgeRuns(ctx context.Context, olderThan time.Time, limit int) (int, error) {
	var n int
	err := s.do(ctx, "", &op{kind: opFunc, bulk: true, fn: func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) (err error) {
		n, err = storekit.PurgeRuns(ctx, txOps{tx, q}, olderThan, limit)
		return err
	}})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// ReleaseExpiredLeases implements S-039 with D12 (storekit).
func (s *Store) ReleaseExpiredLeases(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := s.do(ctx, "", &op{kind: opFunc, fn: func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) (err error) {
		n, err = storekit.ReleaseExpiredLeases(ctx, txOps{tx, q}, now)
		return err
	}})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// PatchRun is the unfenced write of storetest.Patcher (S-047), for the
// contract suite; production code never calls it.
func (s *Store) PatchRun(ctx context.Context, id string, p store.RunPatch) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	f := storekit.Flatten(p)
	return s.q.UpdateRunForTest(ctx, pgdb.UpdateRunForTestParams{ID: id, Now: ts(time.Now()), SetStatus: f.SetStatus, Status: f.Status,
		SetCurrentStepIndex: f.SetCurrentStepIndex, CurrentStepIndex: f.CurrentStepIndex, SetLeaseOwner: f.SetLeaseOwner, LeaseOwner: text(f.LeaseOwner),
		SetLeaseExpiresAt: f.SetLeaseExpiresAt, LeaseExpiresAt: ts(f.LeaseExpiresAt), SetStartedAt: f.SetStartedAt, StartedAt: ts(f.StartedAt),
		SetCompletedAt: f.SetCompletedAt, CompletedAt: ts(f.CompletedAt), SetCreatedAt: f.SetCreatedAt, CreatedAt: ts(f.CreatedAt)})
}

// ts is t as a timestamptz parameter: to the millisecond the contract keeps
// (store.Truncate), NULL for the zero time.
func ts(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: store.Truncate(t), Valid: true}
}

// fromTS is a timestamptz column as the records hold it: the zero time for NULL.
func fromTS(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time
}
