package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
)

// TestPageCacheSizes: both pools open their connections with the bounded
// page caches (writerCache, readerCache), not SQLite's 2,000 KiB default.
func TestPageCacheSizes(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "durably.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, c := range []struct {
		name string
		db   *sql.DB
		want int64
	}{{"writer", s.wdb, -1000}, {"reader", s.rdb, -256}} {
		var got int64
		if err := c.db.QueryRowContext(context.Background(), "PRAGMA cache_size").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s cache_size %d, want %d", c.name, got, c.want)
		}
	}
}

// TestStatementsOutliveASecondMigrate: a reader holding the prepared
// statements of before a second Migrate (two engines on one store) can
// still use them: they close with the store, not when Migrate prepares new
// ones ("sql: statement is closed" before).
func TestStatementsOutliveASecondMigrate(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "durably.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	_, reader := s.queries()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := reader.GetRun(ctx, "nope"); err != nil && !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("a read with the statements taken before the second Migrate: %v", err)
	}
}
