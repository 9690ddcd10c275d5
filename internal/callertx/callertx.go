// Package callertx begins transactions of an application's own on a
// store's database, of the kind the transactional trigger takes (durably's
// TriggerTx, R-250): on SQLite the store's DB, on PostgreSQL its pool. The
// engine's tests, the stores' contract tests and durably-bench share it.
package callertx

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/durably-go/durably/runtime/pgstore"
	"github.com/durably-go/durably/runtime/sqlitestore"
	"github.com/durably-go/durably/store"
)

// Tx is an open transaction of the application's. Statements take
// parameters written $1, $2, …, which both engines read.
type Tx struct {
	tx       store.Tx
	exec     func(ctx context.Context, query string, args ...any) error
	strings  func(ctx context.Context, query string, args ...any) ([]string, error)
	integer  func(ctx context.Context, query string, args ...any) (int, error)
	commit   func(ctx context.Context) error
	rollback func(ctx context.Context) error
}

// Begin begins a transaction on st's database; st is a *sqlitestore.Store
// or a *pgstore.Store.
func Begin(ctx context.Context, st store.Store) (*Tx, error) {
	switch s := st.(type) {
	case *sqlitestore.Store:
		tx, err := s.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		return &Tx{
			tx: sqlitestore.Tx(tx),
			exec: func(ctx context.Context, q string, args ...any) error {
				_, err := tx.ExecContext(ctx, q, args...)
				return err
			},
			strings: func(ctx context.Context, q string, args ...any) ([]string, error) {
				return sqlStrings(tx.QueryContext(ctx, q, args...))
			},
			integer: func(ctx context.Context, q string, args ...any) (n int, err error) {
				err = tx.QueryRowContext(ctx, q, args...).Scan(&n)
				return n, err
			},
			commit:   func(context.Context) error { return tx.Commit() },
			rollback: func(context.Context) error { return tx.Rollback() },
		}, nil
	case *pgstore.Store:
		tx, err := s.Pool().Begin(ctx)
		if err != nil {
			return nil, err
		}
		return &Tx{
			tx: pgstore.Tx(tx),
			exec: func(ctx context.Context, q string, args ...any) error {
				_, err := tx.Exec(ctx, q, args...)
				return err
			},
			strings: func(ctx context.Context, q string, args ...any) ([]string, error) {
				rows, err := tx.Query(ctx, q, args...)
				if err != nil {
					return nil, err
				}
				return pgx.CollectRows(rows, pgx.RowTo[string])
			},
			integer: func(ctx context.Context, q string, args ...any) (n int, err error) {
				err = tx.QueryRow(ctx, q, args...).Scan(&n)
				return n, err
			},
			commit:   tx.Commit,
			rollback: tx.Rollback,
		}, nil
	}
	return nil, fmt.Errorf("callertx: no transactions of the caller's on a %T", st)
}

func sqlStrings(rows *sql.Rows, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// Tx is the transaction for TriggerTx.
func (t *Tx) Tx() store.Tx { return t.tx }

// Exec runs a statement.
func (t *Tx) Exec(ctx context.Context, query string, args ...any) error {
	return t.exec(ctx, query, args...)
}

// Strings reads a column of text (a query selecting one column, cast to
// text where it is not).
func (t *Tx) Strings(ctx context.Context, query string, args ...any) ([]string, error) {
	return t.strings(ctx, query, args...)
}

// Int reads one integer.
func (t *Tx) Int(ctx context.Context, query string, args ...any) (int, error) {
	return t.integer(ctx, query, args...)
}

// Commit commits the transaction.
func (t *Tx) Commit(ctx context.Context) error { return t.commit(ctx) }

// Rollback rolls it back; after a commit or a rollback it does nothing
// that matters.
func (t *Tx) Rollback(ctx context.Context) error { return t.rollback(ctx) }
