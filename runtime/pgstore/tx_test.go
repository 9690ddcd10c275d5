package pgstore_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/runtime/pgstore"
	"github.com/durably-go/durably/store"
)

// TestEnqueueTxChecksTheSchema: a transaction whose current schema is not
// the store's is refused, naming both, and writes nothing (its runs would
// land where no worker of the store looks); one on a connection of the
// application's own with the store's search_path is taken (S-070).
func TestEnqueueTxChecksTheSchema(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mine, other := pgtest.Schema(t), pgtest.Schema(t)
	st := openMigrated(t, mine)
	openMigrated(t, other) // the other schema has the tables too
	now := store.Truncate(time.Now())
	run := func(id string) []store.NewRun {
		return []store.NewRun{{Run: &store.Run{ID: id, JobName: "j", Input: json.RawMessage(`{}`), CreatedAt: now}}}
	}
	for _, c := range []struct {
		dsn, id, wantErr string
	}{
		{other, "01TXSCHEMA0000000000000001", "not the store's"},
		{mine, "01TXSCHEMA0000000000000002", ""},
	} {
		conn, err := pgx.Connect(ctx, c.dsn)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = st.EnqueueTx(ctx, pgstore.Tx(tx), run(c.id))
		if c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
			t.Fatalf("EnqueueTx on %s: %v, want an error containing %q", c.dsn, err, c.wantErr)
		}
		if c.wantErr == "" && err != nil {
			t.Fatalf("EnqueueTx on the store's schema: %v", err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		_ = conn.Close(ctx)
		got, err := st.GetRun(ctx, c.id)
		if err != nil || (got == nil) != (c.wantErr != "") {
			t.Fatalf("run %s after the commit: %+v %v", c.id, got, err)
		}
	}
	if _, err := st.EnqueueTx(ctx, store.NewTx("not a transaction"), run("01TXSCHEMA0000000000000003")); err == nil || !strings.Contains(err.Error(), "needs a pgx.Tx") {
		t.Fatalf("EnqueueTx with a string: %v", err)
	}
}

func openMigrated(t *testing.T, dsn string) *pgstore.Store {
	t.Helper()
	st, err := pgstore.Open(context.Background(), dsn, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}
