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

// TestLockHeldElsewhereIsBounded: another connection takes the write lock
// and never lets go (a stuck process, a tool left in a transaction).
// SQLite has no network to go silent; its one wait is for a lock, and each
// goes through the busy handler, in WAL mode only a writer's. So every
// write fails as unavailable within about the busy timeout, reads go on
// (WAL: a writer never blocks them), the checkpoint does not wait (its
// busy timeout is zero), and Close returns within its bound although
// writes are still queued.
func TestLockHeldElsewhereIsBounded(t *testing.T) {
	const busy = 200 * time.Millisecond
	path := filepath.Join(t.TempDir(), "d.db")
	st, err := Open(path, Options{BusyTimeout: busy})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("sqlite", path+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tx, err := other.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck
	if _, err := tx.Exec("DELETE FROM durably_runs WHERE id = 'none'"); err != nil {
		t.Fatal(err)
	}
	bounded := func(name string, call func() error) error {
		start := time.Now()
		err := call()
		if took := time.Since(start); took > busy+2*time.Second {
			t.Errorf("%s took %v while the lock is held elsewhere, want about the busy timeout (%v)", name, took, busy)
		}
		return err
	}
	for _, c := range storetest.OutageCalls(ctx, st, time.Now(), false) {
		if err := bounded(c.Name, c.Do); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s while the lock is held elsewhere: %v, want ErrUnavailable", c.Name, err)
		}
	}
	reads := []storetest.Call{
		{Name: "GetRun", Do: func() error { _, err := st.GetRun(ctx, "r1"); return err }},
		{Name: "ListRuns", Do: func() error { _, err := st.ListRuns(ctx, store.RunFilter{}); return err }},
		{Name: "GetSteps", Do: func() error { _, err := st.GetSteps(ctx, "r1"); return err }},
	}
	for _, c := range reads {
		if err := bounded(c.Name, c.Do); err != nil {
			t.Errorf("%s while the lock is held elsewhere: %v, want it to go on", c.Name, err)
		}
	}
	_ = bounded("Maintain", func() error { return st.Maintain(ctx, time.Now()) })
	// Writes queued when Close comes fail within its bound.
	for i := range 3 {
		_ = st.AppendLogs(ctx, []*store.Log{{ID: fmt.Sprint("l", i), RunID: "r1", Level: "info", Message: "m", CreatedAt: time.Now()}})
	}
	start := time.Now()
	_ = st.Close()
	if took := time.Since(start); took > busy+closeMargin+time.Second {
		t.Errorf("Close took %v while the lock is held elsewhere, want within the busy timeout and its margin", took)
	}
}
