package sqlitestore_test

import (
	"context"
	"database/sql"

	"github.com/durably-go/durably/runtime/sqlitestore"
	"github.com/durably-go/durably/runtime/storetest"
	"github.com/durably-go/durably/store"
)

// callerTxStore is the store as the contract suite gets it: with the
// caller's transactions of the transactional trigger's cases, begun on the
// store's DB (storetest.CallerTxs).
type callerTxStore struct{ *sqlitestore.Store }

func (s callerTxStore) BeginCallerTx(ctx context.Context) (storetest.CallerTx, error) {
	tx, err := s.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return sqlCallerTx{tx}, nil
}

// sqlCallerTx drives a *sql.Tx for the suite.
type sqlCallerTx struct{ tx *sql.Tx }

func (c sqlCallerTx) Tx() store.Tx { return sqlitestore.Tx(c.tx) }

func (c sqlCallerTx) Exec(ctx context.Context, query string, args ...any) error {
	_, err := c.tx.ExecContext(ctx, query, args...)
	return err
}

func (c sqlCallerTx) Int(ctx context.Context, query string, args ...any) (int, error) {
	var n int
	err := c.tx.QueryRowContext(ctx, query, args...).Scan(&n)
	return n, err
}

func (c sqlCallerTx) Commit(context.Context) error   { return c.tx.Commit() }
func (c sqlCallerTx) Rollback(context.Context) error { return c.tx.Rollback() }
