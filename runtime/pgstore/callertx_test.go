package pgstore_test

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/durably-go/durably/runtime/pgstore"
	"github.com/durably-go/durably/runtime/storetest"
	"github.com/durably-go/durably/store"
)

// callerTxStore is the store as the contract suite gets it: with the
// caller's transactions of the transactional trigger's cases, begun on the
// store's pool (storetest.CallerTxs).
type callerTxStore struct{ *pgstore.Store }

func (s callerTxStore) BeginCallerTx(ctx context.Context) (storetest.CallerTx, error) {
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		return nil, err
	}
	return pgCallerTx{tx}, nil
}

// pgCallerTx drives a pgx.Tx for the suite.
type pgCallerTx struct{ tx pgx.Tx }

func (c pgCallerTx) Tx() store.Tx { return pgstore.Tx(c.tx) }

func (c pgCallerTx) Exec(ctx context.Context, query string, args ...any) error {
	_, err := c.tx.Exec(ctx, query, args...)
	return err
}

func (c pgCallerTx) Int(ctx context.Context, query string, args ...any) (int, error) {
	var n int
	err := c.tx.QueryRow(ctx, query, args...).Scan(&n)
	return n, err
}

func (c pgCallerTx) Commit(ctx context.Context) error   { return c.tx.Commit(ctx) }
func (c pgCallerTx) Rollback(ctx context.Context) error { return c.tx.Rollback(ctx) }
