package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/durably-go/durably/runtime/storetest"
	"github.com/durably-go/durably/store"
)

// sqliteError runs a statement on a scratch database to get the error the
// driver really returns for it.
func sqliteError(t *testing.T, stmts ...string) error {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "scratch.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err = db.Exec(q); err != nil {
			return err
		}
	}
	t.Fatalf("%v: no error", stmts)
	return nil
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"injected busy", &faultError{code: FaultBusy}, true},
		{"injected disk full, wrapped", fmt.Errorf("sqlitestore: begin: %w", &faultError{code: FaultDiskFull}), true},
		{"extended busy code (SQLITE_BUSY_SNAPSHOT)", &faultError{code: Fault(codeBusy | 2<<8)}, true},
		{"extended I/O error (SQLITE_IOERR_FSYNC)", &faultError{code: Fault(codeIOErr | 4<<8)}, true},
		{"locked", &faultError{code: codeLocked}, true},
		{"disk full after max_page_count", sqliteError(t, "PRAGMA max_page_count=2", "CREATE TABLE a(x)", "CREATE TABLE b(x)", "CREATE TABLE c(x)"), true},
		{"unique constraint", sqliteError(t, "CREATE TABLE u(x UNIQUE)", "INSERT INTO u VALUES(1)", "INSERT INTO u VALUES(1)"), false},
		{"syntax error", sqliteError(t, "SELEC 1"), false},
		{"no such table", sqliteError(t, "SELECT * FROM missing"), false},
		{"plain error", errors.New("store: decode run: bad time"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify(tt.err)
			if is := errors.Is(got, store.ErrUnavailable); is != tt.want {
				t.Fatalf("classify(%v) unavailable = %v, want %v", tt.err, is, tt.want)
			}
			if tt.err != nil && (!errors.Is(got, tt.err) || got.Error() != tt.err.Error()) {
				t.Fatalf("classify(%v) = %v: the original error must stay visible", tt.err, got)
			}
		})
	}
}

func openMigrated(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	st, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestUnavailableWrites makes writes fail for real (another connection holds
// the write lock past the busy timeout) and by injection (busy, disk full):
// every write reports ErrUnavailable, and works again once the fault is
// gone, without reopening the store.
func TestUnavailableWrites(t *testing.T) {
	faults := []struct {
		name  string
		start func(t *testing.T, st *Store, path string) (end func())
	}{
		{"another process holds the lock", func(t *testing.T, st *Store, path string) func() {
			db, err := sql.Open("sqlite", path+"?_txlock=immediate")
			if err != nil {
				t.Fatal(err)
			}
			tx, err := db.Begin()
			if err != nil {
				t.Fatal(err)
			}
			return func() { _ = tx.Rollback(); _ = db.Close() }
		}},
		{"injected busy", func(t *testing.T, st *Store, _ string) func() {
			st.InjectFault(FaultBusy)
			return func() { st.InjectFault(NoFault) }
		}},
		{"injected disk full", func(t *testing.T, st *Store, _ string) func() {
			st.InjectFault(FaultDiskFull)
			return func() { st.InjectFault(NoFault) }
		}},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "d.db")
			st := openMigrated(t, path, Options{BusyTimeout: 50 * time.Millisecond})
			ctx := context.Background()
			calls := storetest.OutageCalls(ctx, st, time.Now(), false)
			end := f.start(t, st, path)
			for _, c := range calls {
				if err := c.Do(); !errors.Is(err, store.ErrUnavailable) {
					t.Errorf("%s during the fault: %v, want ErrUnavailable", c.Name, err)
				}
			}
			end()
			for _, c := range calls {
				if err := c.Do(); err != nil {
					t.Errorf("%s after the fault: %v", c.Name, err)
				}
			}
		})
	}
}
