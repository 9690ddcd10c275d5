package storekit

import (
	"context"
	"fmt"
	"time"

	"github.com/durably-go/durably/runtime/store"
)

// MigrateOps are what the migration loop needs of a store's transaction,
// which the store holds (with a lock where several processes may migrate at
// once) for the whole loop.
type MigrateOps interface {
	// SchemaVersion is the highest version recorded, 0 on a new database.
	SchemaVersion(ctx context.Context) (int64, error)
	// Exec runs one migration's script.
	Exec(ctx context.Context, script string) error
	// RecordVersion records that version was applied at.
	RecordVersion(ctx context.Context, version int, at time.Time) error
}

// Migrate applies, in order, the migrations newer than the recorded
// version, each with its version record (R-116, S-015).
func Migrate(ctx context.Context, ops MigrateOps, migrations []store.Migration, now time.Time) error {
	version, err := ops.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	for _, m := range migrations {
		if int64(m.Version) <= version {
			continue
		}
		if err := ops.Exec(ctx, m.SQL); err != nil {
			return fmt.Errorf("migration %d: %w", m.Version, err)
		}
		if err := ops.RecordVersion(ctx, m.Version, now); err != nil {
			return fmt.Errorf("record migration %d: %w", m.Version, err)
		}
	}
	return nil
}
