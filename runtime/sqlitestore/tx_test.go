package sqlitestore_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably/runtime/sqlitestore"
	"github.com/durably-go/durably/store"
)

// TestEnqueueTxChecksTheDatabase: a transaction on another database file
// is refused, naming both, and writes nothing there; one on a *sql.DB of
// the application's own opened on the same file, by another path (a
// symbolic link), is taken (S-070).
func TestEnqueueTxChecksTheDatabase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	st := openMigrated(t, filepath.Join(dir, "mine.db"))
	openMigrated(t, filepath.Join(dir, "other.db")) // the other file has the tables too
	link := filepath.Join(dir, "link.db")
	if err := os.Symlink(filepath.Join(dir, "mine.db"), link); err != nil {
		t.Fatal(err)
	}
	now := store.Truncate(time.Now())
	run := func(id string) []store.NewRun {
		return []store.NewRun{{Run: &store.Run{ID: id, JobName: "j", Input: json.RawMessage(`{}`), CreatedAt: now}}}
	}
	for _, c := range []struct {
		file, id, wantErr string
	}{
		{filepath.Join(dir, "other.db"), "01TXFILE000000000000000001", "not on the store's"},
		{link, "01TXFILE000000000000000002", ""},
	} {
		db, err := sql.Open("sqlite", c.file+"?_txlock=immediate&_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatal(err)
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = st.EnqueueTx(ctx, sqlitestore.Tx(tx), run(c.id))
		if c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
			t.Fatalf("EnqueueTx on %s: %v, want an error containing %q", c.file, err, c.wantErr)
		}
		if c.wantErr == "" && err != nil {
			t.Fatalf("EnqueueTx on the store's file by a link: %v", err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		_ = db.Close()
		got, err := st.GetRun(ctx, c.id)
		if err != nil || (got == nil) != (c.wantErr != "") {
			t.Fatalf("run %s after the commit: %+v %v", c.id, got, err)
		}
	}
	if _, err := st.EnqueueTx(ctx, store.NewTx("not a transaction"), run("01TXFILE000000000000000003")); err == nil || !strings.Contains(err.Error(), "needs a *sql.Tx") {
		t.Fatalf("EnqueueTx with a string: %v", err)
	}
}

func openMigrated(t *testing.T, path string) *sqlitestore.Store {
	t.Helper()
	st, err := sqlitestore.Open(path, sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}
