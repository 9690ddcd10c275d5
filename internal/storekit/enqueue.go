package storekit

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/durably-go/durably/store"
)

// EnqueueOps are the primitives a driver offers, inside its transaction, for
// the shared enqueue algorithm.
type EnqueueOps interface {
	// Insert inserts the runs that violate no unique index (with their
	// label rows) and reports which were inserted. Later runs must see
	// earlier ones.
	Insert(ctx context.Context, runs []*store.Run) (inserted []bool, err error)
	// ByIdempotencyKey returns the run of job with the key in scope, or nil.
	ByIdempotencyKey(ctx context.Context, job, scope, key string) (*store.Run, error)
	// PendingByConcurrencyKey returns the oldest pending run of job with
	// the key in scope, or nil.
	PendingByConcurrencyKey(ctx context.Context, job, scope, key string) (*store.Run, error)
}

// Enqueue runs the enqueue algorithm of S-025 over ops: insert first, then
// interpret what blocked an insert, which is race-free where check-then-insert
// is not (S-026). The caller provides the transaction and rolls it back when
// Enqueue returns an error.
func Enqueue(ctx context.Context, ops EnqueueOps, items []store.NewRun) ([]store.Enqueued, error) {
	runs := PrepareRuns(items)
	inserted, err := ops.Insert(ctx, runs)
	if err != nil {
		return nil, err
	}
	return Resolve(ctx, ops, items, runs, inserted)
}

// PrepareRuns makes the rows to insert for items, with the defaults of R-010.
func PrepareRuns(items []store.NewRun) []*store.Run {
	runs := make([]*store.Run, len(items))
	for i, it := range items {
		runs[i] = prepareNewRun(it.Run)
		if c := it.Claim; c != nil && it.Run.ConcurrencyKey == "" && Ready(runs[i]) == 1 {
			r := runs[i]
			r.Status, r.LeaseOwner, r.LeaseGeneration = store.StatusLeased, c.WorkerID, 1
			r.LeaseExpiresAt, r.StartedAt = store.Truncate(c.ExpiresAt), r.CreatedAt
		}
	}
	return runs
}

// Resolve completes Enqueue after the insert: created runs are returned as
// inserted, the others are explained by resolveBlocked. Drivers that insert
// the items of several callers in one statement call it per caller.
func Resolve(ctx context.Context, ops EnqueueOps, items []store.NewRun, runs []*store.Run, inserted []bool) ([]store.Enqueued, error) {
	out := make([]store.Enqueued, len(items))
	for i, it := range items {
		if inserted[i] {
			out[i] = store.Enqueued{Run: cloneRun(runs[i]), Disposition: store.Created}
			continue
		}
		var err error
		if out[i], err = resolveBlocked(ctx, ops, i, runs[i], it.Coalesce); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// resolveBlocked explains an insert that hit a unique index: an idempotent
// hit wins over everything, then coalescing onto the pending run
// (R-038, retried once when that run was claimed in between), else a conflict.
func resolveBlocked(ctx context.Context, ops EnqueueOps, index int, run *store.Run, coalesce bool) (store.Enqueued, error) {
	for attempt := 0; ; attempt++ {
		if run.IdempotencyKey != "" {
			existing, err := ops.ByIdempotencyKey(ctx, run.JobName, run.KeyScope, run.IdempotencyKey)
			if err != nil {
				return store.Enqueued{}, err
			}
			if existing != nil {
				return store.Enqueued{Run: existing, Disposition: store.Idempotent}, nil
			}
		}
		if run.ConcurrencyKey == "" {
			return store.Enqueued{}, fmt.Errorf("durably store: run %s of job %q violates a unique index that is neither its idempotency key nor its concurrency key", run.ID, run.JobName)
		}
		conflict := &store.ConflictError{Index: index, JobName: run.JobName, ConcurrencyKey: run.ConcurrencyKey, AfterRetry: attempt > 0}
		if !coalesce {
			return store.Enqueued{}, conflict
		}
		pending, err := ops.PendingByConcurrencyKey(ctx, run.JobName, run.KeyScope, run.ConcurrencyKey)
		if err != nil {
			return store.Enqueued{}, err
		}
		if pending != nil {
			return store.Enqueued{Run: pending, Disposition: store.Coalesced}, nil
		}
		if attempt > 0 {
			return store.Enqueued{}, conflict
		}
		inserted, err := ops.Insert(ctx, []*store.Run{run})
		if err != nil {
			return store.Enqueued{}, err
		}
		if inserted[0] {
			return store.Enqueued{Run: cloneRun(run), Disposition: store.Created}, nil
		}
	}
}

func prepareNewRun(in *store.Run) *store.Run {
	r := cloneRun(in)
	r.Status = store.StatusPending
	r.CreatedAt = store.Truncate(r.CreatedAt)
	r.UpdatedAt = r.CreatedAt
	r.CurrentStepIndex, r.CompletedStepCount, r.LeaseGeneration, r.Attempt = 0, 0, 0, 0
	if !r.RunAt.IsZero() {
		r.RunAt = store.Truncate(r.RunAt)
	}
	if r.Labels == nil {
		r.Labels = map[string]string{}
	}
	return r
}

func cloneRun(r *store.Run) *store.Run {
	c := *r
	c.Labels = maps.Clone(r.Labels)
	return &c
}

// Savepointer opens a savepoint in an open transaction (Tx's first half).
type Savepointer interface {
	Savepoint(ctx context.Context) (rollback, release func(context.Context) error, err error)
}

// EnqueueTx is store.TxEnqueuer.EnqueueTx over ops, whose statements run
// in the caller's transaction: Enqueue inside a savepoint of sp, so that a
// conflict or an error undoes this call's writes alone and leaves the
// caller's transaction usable (S-070). A nil sp writes without one, for a
// store whose every write of a single item is one statement (PostgreSQL's
// insert with its labels), which the database applies whole or not at
// all. Claims are dropped: a run is never inserted leased in a
// transaction whose commit the engine does not see.
func EnqueueTx(ctx context.Context, sp Savepointer, ops EnqueueOps, items []store.NewRun) ([]store.Enqueued, error) {
	unclaimed := make([]store.NewRun, len(items))
	for i, it := range items {
		it.Claim = nil
		unclaimed[i] = it
	}
	if sp == nil {
		return Enqueue(ctx, ops, unclaimed)
	}
	rollback, release, err := sp.Savepoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("savepoint: %w", err)
	}
	res, err := Enqueue(ctx, ops, unclaimed)
	if err != nil {
		if rbErr := rollback(ctx); rbErr != nil {
			return nil, errors.Join(err, fmt.Errorf("rollback to savepoint: %w", rbErr))
		}
		return nil, err
	}
	if err := release(ctx); err != nil {
		return nil, fmt.Errorf("release savepoint: %w", err)
	}
	return res, nil
}
