package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/durably-go/durably/internal/storekit"
	"github.com/durably-go/durably/runtime/sqlitestore/internal/sqlitedb"
	"github.com/durably-go/durably/store"
)

var (
	_ store.TxEnqueuer = (*Store)(nil)
	_ store.Resumer    = (*Store)(nil)
)

// Tx wraps a transaction on the store's database file for a trigger that
// commits with it (durably's TriggerTx, R-250). Begin it with
// Store.BeginTx, or on a *sql.DB of your own opened on the same file.
func Tx(tx *sql.Tx) store.Tx { return store.NewTx(tx) }

// DB returns a pool of connections on the store's database file for the
// application's own tables, with the store's settings (WAL, synchronous,
// busy timeout), whose transactions begin IMMEDIATE: they take SQLite's
// one write lock at BEGIN, so that a transaction that reads before it
// writes never fails with SQLITE_BUSY halfway (a deferred one may, when
// another connection wrote since its read). While such a transaction is
// open, the store's own writes wait for it, up to the busy timeout
// (docs/transactions.md). The store closes it.
func (s *Store) DB() *sql.DB { return s.adb }

// BeginTx begins a transaction on DB, for writes of the application's
// that a trigger joins (Tx).
func (s *Store) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	return s.adb.BeginTx(ctx, opts)
}

// mainFileQuery reads the file of a connection's main database, "" for an
// in-memory or temporary one. Written here, not in queries/: sqlc does not
// know SQLite's pragma functions.
const mainFileQuery = "SELECT file FROM pragma_database_list WHERE name = 'main'"

type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func mainFile(ctx context.Context, db queryRower) (string, error) {
	var file string
	if err := db.QueryRowContext(ctx, mainFileQuery).Scan(&file); err != nil {
		return "", fmt.Errorf("sqlitestore: read the database's file: %w", err)
	}
	return file, nil
}

// sameDatabase refuses a transaction on another database than the
// store's: its runs would be written where no worker of this store looks.
func (s *Store) sameDatabase(ctx context.Context, tx *sql.Tx) error {
	file, err := mainFile(ctx, tx)
	if err != nil {
		return err
	}
	if file == s.file && file != "" {
		return nil
	}
	if file != "" && s.file != "" {
		a, errA := os.Stat(file)
		b, errB := os.Stat(s.file)
		if errA == nil && errB == nil && os.SameFile(a, b) {
			return nil
		}
	}
	return fmt.Errorf("sqlitestore: the transaction is on database %q, not on the store's %q", file, s.file)
}

// EnqueueTx writes runs with the statements of tx, the caller's
// transaction on this store's database file (store.TxEnqueuer, S-070),
// inside a savepoint: a conflict or error undoes this call's writes only.
// The runs become visible when tx commits; this store's writer does not
// take part, so it waits for tx to end before its next group, as for any
// other writer of the file.
func (s *Store) EnqueueTx(ctx context.Context, tx store.Tx, items []store.NewRun) ([]store.Enqueued, error) {
	sqlTx, ok := tx.Value().(*sql.Tx)
	if !ok || sqlTx == nil {
		return nil, fmt.Errorf("sqlitestore: a transactional trigger needs a *sql.Tx on the store's database (sqlitestore.Tx), got %T", tx.Value())
	}
	if len(items) == 0 {
		return nil, nil
	}
	if err := s.sameDatabase(ctx, sqlTx); err != nil {
		return nil, classify(err)
	}
	q := sqlitedb.New(sqlTx)
	res, err := storekit.EnqueueTx(ctx, txOps{sqlTx, q}, enqueueOps{q}, items)
	if err != nil {
		if ce := (*store.ConflictError)(nil); errors.As(err, &ce) {
			return nil, ce
		}
		return nil, classify(fmt.Errorf("sqlitestore: enqueue in the caller's transaction: %w", err))
	}
	return res, nil
}

// CommittedRuns reads which of ids exist (S-071), on the read pool.
func (s *Store) CommittedRuns(ctx context.Context, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	_, rq := s.queries()
	found, err := rq.CommittedRunIDs(ctx, ids)
	return found, classify(err)
}

// ResumeRun makes a failed or cancelled run pending again (S-072).
func (s *Store) ResumeRun(ctx context.Context, id string, now time.Time) (*store.Run, store.Status, error) {
	var run *store.Run
	var prev store.Status
	var conflict error
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx, q *sqlitedb.Queries) (err error) {
		run, prev, conflict = nil, "", nil
		run, prev, err = storekit.ResumeRun(ctx, txOps{tx, q}, id, now)
		if ce := (*store.ConflictError)(nil); errors.As(err, &ce) {
			// Undone to its savepoint: the group's other writes stand.
			conflict, err = ce, nil
		}
		return err
	})
	switch {
	case err != nil:
		return nil, "", err
	case conflict != nil:
		return nil, prev, conflict
	}
	return run, prev, nil
}
