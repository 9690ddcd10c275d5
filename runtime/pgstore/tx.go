package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/durably-go/durably/internal/storekit"
	"github.com/durably-go/durably/runtime/pgstore/internal/pgdb"
	"github.com/durably-go/durably/store"
)

var (
	_ store.TxEnqueuer = (*Store)(nil)
	_ store.Resumer    = (*Store)(nil)
)

// Tx wraps a transaction of the caller's for a trigger that commits with
// it (durably's TriggerTx, R-250): any pgx.Tx on the store's database whose
// current schema (search_path) is the store's, from the store's Pool or a
// pool or connection of the application's own.
func Tx(tx pgx.Tx) store.Tx { return store.NewTx(tx) }

// EnqueueTx writes runs with the statements of tx, the caller's
// transaction (store.TxEnqueuer, S-070): a batch inside a savepoint, so
// that a conflict undoes this call's writes only; a single run with one
// statement, which PostgreSQL applies whole or not at all. The insert's
// NOTIFY is part of tx: other processes' idle workers wake when it
// commits. The calls are bounded by Options.Timeout; a statement cut
// short by it aborts tx, as any failed statement of a transaction does
// outside a savepoint.
//
// A run inserted with a key holds that key's unique index entry until tx
// ends: a trigger of the same key elsewhere, the store's own writer
// included, waits for tx (docs/transactions.md).
func (s *Store) EnqueueTx(ctx context.Context, tx store.Tx, items []store.NewRun) ([]store.Enqueued, error) {
	ptx, ok := tx.Value().(pgx.Tx)
	if !ok || ptx == nil {
		return nil, fmt.Errorf("pgstore: a transactional trigger needs a pgx.Tx (pgstore.Tx), got %T", tx.Value())
	}
	if len(items) == 0 {
		return nil, nil
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	q := pgdb.New(ptx)
	schema, err := q.CurrentSchema(ctx)
	if err != nil {
		return nil, s.callerFailed(ctx, fmt.Errorf("pgstore: read the transaction's schema: %w", err))
	}
	if schema != s.schema {
		return nil, fmt.Errorf("pgstore: the transaction's current schema is %q, not the store's %q: set its search_path as the store's pool sets it", schema, s.schema)
	}
	var sp storekit.Savepointer
	if len(items) > 1 {
		sp = txOps{ptx, q}
	}
	res, err := storekit.EnqueueTx(ctx, sp, enqueueOps{q: q, s: s}, items)
	if err != nil {
		if ce := (*store.ConflictError)(nil); errors.As(err, &ce) {
			return nil, ce
		}
		return nil, s.callerFailed(ctx, fmt.Errorf("pgstore: enqueue in the caller's transaction: %w", err))
	}
	return res, nil
}

// callerFailed is failed for a call on the caller's connection: it says
// when the store's deadline cut it short, but leaves the store's pool
// alone, since the silent connection may not be one of it.
func (s *Store) callerFailed(ctx context.Context, err error) error {
	var limit *noAnswerError
	if errors.As(context.Cause(ctx), &limit) && !errors.As(err, &limit) {
		err = fmt.Errorf("%w: %w", err, limit)
	}
	return classify(err)
}

// CommittedRuns reads which of ids exist (S-071).
func (s *Store) CommittedRuns(ctx context.Context, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	found, err := s.q.CommittedRunIDs(ctx, ids)
	return found, s.failed(ctx, err)
}

// ResumeRun makes a failed or cancelled run pending again (S-072), in a
// transaction of its own on the run's lane, which also wakes the idle
// workers of other processes when it commits (D4).
func (s *Store) ResumeRun(ctx context.Context, id string, now time.Time) (*store.Run, store.Status, error) {
	var run *store.Run
	var prev store.Status
	var conflict error
	err := s.do(ctx, id, &op{kind: opFunc, fn: func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) (err error) {
		run, prev, conflict = nil, "", nil
		run, prev, err = storekit.ResumeRun(ctx, txOps{tx, q}, id, now)
		if ce := (*store.ConflictError)(nil); errors.As(err, &ce) {
			conflict = ce
			return errRollback
		}
		if err != nil || run == nil {
			return err
		}
		return q.Notify(ctx, pgdb.NotifyParams{Channel: s.channel, Payload: "w:" + s.instance})
	}})
	switch {
	case err != nil:
		return nil, "", err
	case conflict != nil:
		return nil, prev, conflict
	}
	return run, prev, nil
}
