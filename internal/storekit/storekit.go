// Package storekit holds what the stores of this module share below the
// store.Store interface: the algorithms written once over small per-engine
// operations (enqueue, cancel, release, expiry, delete, purge, the migration
// loop), the row codecs and the classification of transient failures. A
// store implements the operations with its sqlc queries; the algorithm, and
// with it the policy (D12's refused returns, R-097's deletions), lives here.
//
// It is internal because its shape follows the stores of this module; a
// store written elsewhere implements store.Store itself and proves itself
// with runtime/storetest.
package storekit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/durably-go/durably/store"
)

// Tx is what the algorithms need of a store's open transaction besides its
// queries: a savepoint, so that a statement the database refuses is undone
// alone (the transaction carries other callers' writes), and the dialect's
// word for a unique violation.
type Tx interface {
	// Savepoint opens a savepoint; the caller then calls exactly one of
	// rollback (undo back to it and drop it) or release (keep the work).
	Savepoint(ctx context.Context) (rollback, release func(context.Context) error, err error)
	IsUniqueViolation(err error) bool
}

// CancelOps are the statements CancelRun runs, in the store's transaction.
type CancelOps interface {
	Tx
	// LockActiveDescendants returns the active descendants of run id with
	// their status, deepest first, locking each where the engine locks
	// rows, in that order.
	LockActiveDescendants(ctx context.Context, id string) ([]Descendant, error)
	// RunForUpdate reads the run, locking it where the engine locks rows;
	// nil when there is no such run.
	RunForUpdate(ctx context.Context, id string) (*store.Run, error)
	// Cancel sets an active run cancelled and returns it as it is then;
	// nil when it was not active.
	Cancel(ctx context.Context, id string, now time.Time) (*store.Run, error)
	// DeleteStepsAndLogs removes the run's steps and logs.
	DeleteStepsAndLogs(ctx context.Context, runID string) error
	// DeleteSignals removes the signals kept for the runs.
	DeleteSignals(ctx context.Context, runIDs []string) error
	// WakeParent counts a child's end for its parent, id (S-061).
	WakeParent(ctx context.Context, id string, now time.Time) error
}

// Descendant is an active descendant of a run, as the cascade of its
// cancel finds it.
type Descendant struct {
	ID     string
	Status store.Status
}

// CancelRun is store.Store.CancelRun (R-096, S-037, R-097, R-234) over
// ops. Locks are taken from the leaves up, the run's active descendants
// (deepest first), then the run, then its parent: the order of a child's
// end (its row, then its parent's), so that a cancel and the ends of the
// runs of its tree never wait for each other in a cycle. A descendant
// created after they were read (its parent's trigger racing the cancel)
// is not cancelled here: the engine cancels it when it first executes.
func CancelRun(ctx context.Context, ops CancelOps, req store.CancelRequest) (store.Cancellation, error) {
	rollback, release, err := ops.Savepoint(ctx)
	if err != nil {
		return store.Cancellation{}, err
	}
	out, err := cancelTree(ctx, ops, req)
	if err != nil || out.Run == nil || !out.Previous.Active() {
		// Nothing to keep: no such run, an ended one, or a failure.
		return out, errors.Join(err, rollback(ctx))
	}
	return out, release(ctx)
}

func cancelTree(ctx context.Context, ops CancelOps, req store.CancelRequest) (store.Cancellation, error) {
	descendants, err := ops.LockActiveDescendants(ctx, req.ID)
	if err != nil {
		return store.Cancellation{}, fmt.Errorf("find the descendants of run %s: %w", req.ID, err)
	}
	before, err := ops.RunForUpdate(ctx, req.ID)
	if err != nil || before == nil {
		return store.Cancellation{}, err
	}
	if !before.Status.Active() {
		return store.Cancellation{Run: before, Previous: before.Status}, nil
	}
	out := store.Cancellation{Previous: before.Status}
	cancelled := make([]string, 0, len(descendants)+1)
	wasPending := func(id string, status store.Status) error {
		if status != store.StatusPending || !req.DeleteSteps {
			return nil
		}
		if err := ops.DeleteStepsAndLogs(ctx, id); err != nil {
			return fmt.Errorf("delete steps and logs of run %s: %w", id, err)
		}
		return nil
	}
	for _, d := range descendants {
		run, err := ops.Cancel(ctx, d.ID, req.Now)
		if err != nil {
			return store.Cancellation{}, fmt.Errorf("cancel run %s, a descendant of %s: %w", d.ID, req.ID, err)
		}
		if run == nil {
			continue // ended since it was read (a store without row locks)
		}
		if err := wasPending(d.ID, d.Status); err != nil {
			return store.Cancellation{}, err
		}
		out.Descendants = append(out.Descendants, run)
		cancelled = append(cancelled, d.ID)
	}
	if out.Run, err = ops.Cancel(ctx, req.ID, req.Now); err != nil || out.Run == nil {
		return store.Cancellation{}, errors.Join(fmt.Errorf("cancel run %s: not active", req.ID), err)
	}
	if err := wasPending(req.ID, before.Status); err != nil {
		return store.Cancellation{}, err
	}
	if err := ops.DeleteSignals(ctx, append(cancelled, req.ID)); err != nil {
		return store.Cancellation{}, fmt.Errorf("delete the signals of run %s: %w", req.ID, err)
	}
	if parent := before.ParentRunID; parent != "" {
		if err := ops.WakeParent(ctx, parent, req.Now); err != nil {
			return store.Cancellation{}, fmt.Errorf("count the end of run %s for its parent %s: %w", req.ID, parent, err)
		}
	}
	return out, nil
}

// SignalOps are the statements SendSignal runs, in the store's transaction.
type SignalOps interface {
	// SignalRun counts the signal's event on its run, if the run is
	// active, and makes it claimable if it waits for a signal of that
	// name; found is false for a missing or ended run, woken says whether
	// it made the run claimable (a store that cannot tell says false).
	SignalRun(ctx context.Context, sig *store.Signal) (found, woken bool, err error)
	// InsertSignal keeps the signal.
	InsertSignal(ctx context.Context, sig *store.Signal) error
}

// SendSignal is store.Store.SendSignal over ops (S-062): the run's row is
// updated first, so that a finish or a cancel of the run, which deletes
// its signals, comes wholly before or after it. woken says whether the
// run waited for the signal, for a store that announces claimable work.
func SendSignal(ctx context.Context, ops SignalOps, sig *store.Signal) (sent, woken bool, err error) {
	found, woken, err := ops.SignalRun(ctx, sig)
	if err != nil || !found {
		return false, false, err
	}
	if err := ops.InsertSignal(ctx, sig); err != nil {
		return false, false, fmt.Errorf("insert signal: %w", err)
	}
	return true, woken, nil
}

// LeaseOps are the statements that hand leases back, in the store's
// transaction. Each returns the number of runs changed (0 or 1 for one id).
type LeaseOps interface {
	Tx
	// ReleaseLease sets the leased run of this generation pending.
	ReleaseLease(ctx context.Context, lease store.Lease, now time.Time) (int64, error)
	// ExpireLease ends the lease of this generation now and advances the
	// generation, leaving the run leased (D12).
	ExpireLease(ctx context.Context, lease store.Lease, now time.Time) (int64, error)
	// ListExpiredLeases lists the runs whose lease expired before now and
	// whose job, scope and concurrency key has no pending run.
	ListExpiredLeases(ctx context.Context, now time.Time) ([]string, error)
	// ResetExpiredLease sets an expired lease pending.
	ResetExpiredLease(ctx context.Context, id string, now time.Time) (int64, error)
}

// ReleaseLease is store.Store.ReleaseLease over ops: back to pending or,
// when the pending index refuses that because a sibling is pending, an
// expired lease that the next claim takes over (D12).
func ReleaseLease(ctx context.Context, ops LeaseOps, lease store.Lease, now time.Time) (bool, error) {
	rollback, release, err := ops.Savepoint(ctx)
	if err != nil {
		return false, err
	}
	n, err := ops.ReleaseLease(ctx, lease, now)
	if ops.IsUniqueViolation(err) {
		if err := rollback(ctx); err != nil {
			return false, err
		}
		if n, err = ops.ExpireLease(ctx, lease, now); err != nil {
			return false, fmt.Errorf("expire lease of run %s: %w", lease.RunID, err)
		}
		return n == 1, nil
	}
	if err != nil {
		return false, errors.Join(fmt.Errorf("release lease of run %s: %w", lease.RunID, err), rollback(ctx))
	}
	return n == 1, release(ctx)
}

// ReleaseExpiredLeases is store.Store.ReleaseExpiredLeases over ops (S-039):
// an expired lease whose return to pending is refused, because a sibling
// went pending since the list was read, stays an expired lease, claimable
// as it is; it is never failed (D12, not S-038).
func ReleaseExpiredLeases(ctx context.Context, ops LeaseOps, now time.Time) (int, error) {
	ids, err := ops.ListExpiredLeases(ctx, now)
	if err != nil {
		return 0, fmt.Errorf("list expired leases: %w", err)
	}
	total := 0
	for _, id := range ids {
		rollback, release, err := ops.Savepoint(ctx)
		if err != nil {
			return 0, err
		}
		n, err := ops.ResetExpiredLease(ctx, id, now)
		if ops.IsUniqueViolation(err) {
			if err := rollback(ctx); err != nil {
				return 0, err
			}
			continue
		}
		if err != nil {
			return 0, errors.Join(fmt.Errorf("reset expired lease of run %s: %w", id, err), rollback(ctx))
		}
		if err := release(ctx); err != nil {
			return 0, err
		}
		total += int(n)
	}
	return total, nil
}

// RemoveOps are the statements that remove finished runs.
type RemoveOps interface {
	// DeleteTerminalRun deletes the run if it is terminal and returns it
	// as it was; nil otherwise.
	DeleteTerminalRun(ctx context.Context, id string) (*store.Run, error)
	// SelectPurgeable lists up to limit terminal runs completed before
	// olderThan, oldest first.
	SelectPurgeable(ctx context.Context, olderThan time.Time, limit int) ([]string, error)
	// DeleteRuns deletes the runs with their steps, logs and labels.
	DeleteRuns(ctx context.Context, ids []string) error
}

// DeleteRun is store.Store.DeleteRun over ops (R-103, S-040).
func DeleteRun(ctx context.Context, ops RemoveOps, id string) (*store.Run, error) {
	run, err := ops.DeleteTerminalRun(ctx, id)
	if err != nil || run == nil {
		return nil, err
	}
	if err := ops.DeleteRuns(ctx, []string{id}); err != nil {
		return nil, fmt.Errorf("delete run %s: %w", id, err)
	}
	return run, nil
}

// PurgeRuns is store.Store.PurgeRuns over ops (R-104, S-041).
func PurgeRuns(ctx context.Context, ops RemoveOps, olderThan time.Time, limit int) (int, error) {
	ids, err := ops.SelectPurgeable(ctx, olderThan, limit)
	if err != nil {
		return 0, fmt.Errorf("select purgeable runs: %w", err)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	if err := ops.DeleteRuns(ctx, ids); err != nil {
		return 0, fmt.Errorf("purge runs: %w", err)
	}
	return len(ids), nil
}

// Optional decodes a row read by a query that may find nothing: noRows is
// the driver's "no rows" error, which becomes a nil run.
func Optional[R any](row R, err error, noRows error, decode func(R) (*store.Run, error)) (*store.Run, error) {
	if errors.Is(err, noRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decode(row)
}

// DecodeAll decodes rows in order.
func DecodeAll[R, T any](rows []R, decode func(R) (T, error)) ([]T, error) {
	out := make([]T, 0, len(rows))
	for _, r := range rows {
		v, err := decode(r)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// unavailableError marks err as store.ErrUnavailable while keeping it (and
// whatever it wraps) visible to errors.Is and errors.As.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return e.err.Error() }

func (e *unavailableError) Unwrap() []error { return []error{e.err, store.ErrUnavailable} }

// Classify wraps the failures transient recognises, which the engine
// retries (fenced writes are safe to repeat) and the HTTP handler answers
// with 503, so that errors.Is(err, store.ErrUnavailable) holds; other
// errors pass unchanged.
func Classify(err error, transient func(error) bool) error {
	if err == nil || errors.Is(err, store.ErrUnavailable) || !transient(err) {
		return err
	}
	return &unavailableError{err: err}
}

// FlatPatch is a store.RunPatch as the stores' UPDATE takes it: each field
// with a flag saying whether to write it (the query's set_ parameters). A
// zero time or empty owner in a set field writes NULL.
type FlatPatch struct {
	SetStatus, SetCurrentStepIndex, SetLeaseOwner                 bool
	SetLeaseExpiresAt, SetStartedAt, SetCompletedAt, SetCreatedAt bool
	Status, LeaseOwner                                            string
	CurrentStepIndex                                              int64
	LeaseExpiresAt, StartedAt, CompletedAt, CreatedAt             time.Time
}

// Flatten turns the patch's optional fields into flags and values.
func Flatten(p store.RunPatch) FlatPatch {
	var f FlatPatch
	if p.Status != nil {
		f.SetStatus, f.Status = true, string(*p.Status)
	}
	if p.CurrentStepIndex != nil {
		f.SetCurrentStepIndex, f.CurrentStepIndex = true, int64(*p.CurrentStepIndex)
	}
	if p.LeaseOwner != nil {
		f.SetLeaseOwner, f.LeaseOwner = true, *p.LeaseOwner
	}
	set := func(flag *bool, dst *time.Time, src *time.Time) {
		if src != nil {
			*flag, *dst = true, *src
		}
	}
	set(&f.SetLeaseExpiresAt, &f.LeaseExpiresAt, p.LeaseExpiresAt)
	set(&f.SetStartedAt, &f.StartedAt, p.StartedAt)
	set(&f.SetCompletedAt, &f.CompletedAt, p.CompletedAt)
	set(&f.SetCreatedAt, &f.CreatedAt, p.CreatedAt)
	return f
}
