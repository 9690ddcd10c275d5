package storekit

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Migration is one versioned schema change of a store.
type Migration struct {
	Version int
	SQL     string
}

// history are versions 1 and 2, one schema both engines ran (TEXT and
// INTEGER only); each store's own migrations follow from version 3.
//
//go:embed history/*.sql
var history embed.FS

// StoreMigrations are a store's migrations: the shared history (versions 1
// and 2), then the store's own files NNNN_name.sql in dir of own, from
// version 3.
func StoreMigrations(own fs.FS, dir string) ([]Migration, error) {
	past, err := LoadMigrations(history, "history")
	if err != nil {
		return nil, err
	}
	mine, err := loadFiles(own, dir)
	if err != nil {
		return nil, err
	}
	return ordered(append(past, mine...))
}

// LoadMigrations reads a store's embedded migrations: the files
// NNNN_name.sql of dir, version NNNN, in order. Versions must run 1, 2, 3, …
// without gaps, so that a lost file fails at once rather than on a
// customer's database.
func LoadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	ms, err := loadFiles(fsys, dir)
	if err != nil {
		return nil, err
	}
	return ordered(ms)
}

func loadFiles(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || path.Ext(name) != ".sql" {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration file %q: name must be NNNN_name.sql", name)
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("migration file %q: %w", name, err)
		}
		out = append(out, Migration{Version: v, SQL: string(b)})
	}
	return out, nil
}

// ordered sorts migrations by version and checks that they run 1, 2, 3, …
func ordered(ms []Migration) ([]Migration, error) {
	slices.SortFunc(ms, func(a, b Migration) int { return a.Version - b.Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migrations: version %d where %d was expected", m.Version, i+1)
		}
	}
	return ms, nil
}

// MigrateOps are what the migration loop needs of a store's transaction,
// which the store holds (with a lock where several processes may migrate at
// once) for the whole loop.
type MigrateOps interface {
	// SchemaVersion is the highest version recorded, 0 on a new database.
	SchemaVersion(ctx context.Context) (int64, error)
	// Exec runs a script of statements.
	Exec(ctx context.Context, script string) error
	// RecordVersion records that version was applied at.
	RecordVersion(ctx context.Context, version int, at time.Time) error
}

// Migrate applies, in order, the migrations newer than the recorded version
// up to and including version target, each with its version record (R-116,
// S-015). Then, if seed is not empty, it runs seed in the same transaction:
// tests use it to write rows as an older version stored them.
func Migrate(ctx context.Context, ops MigrateOps, migrations []Migration, target int, seed string, now time.Time) error {
	version, err := ops.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	for _, m := range migrations {
		if int64(m.Version) <= version || m.Version > target {
			continue
		}
		if err := ops.Exec(ctx, m.SQL); err != nil {
			return fmt.Errorf("migration %d: %w", m.Version, err)
		}
		if err := ops.RecordVersion(ctx, m.Version, now); err != nil {
			return fmt.Errorf("record migration %d: %w", m.Version, err)
		}
	}
	if seed != "" {
		if err := ops.Exec(ctx, seed); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	return nil
}
