package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/durably-go/durably/internal/storekit"
	"github.com/durably-go/durably/runtime/sqlitestore/internal/sqlitedb"
	"github.com/durably-go/durably/store"
)

// txOps are SQLite's operations for storekit's algorithms, inside the
// writer's transaction.
type txOps struct {
	tx *sql.Tx
	q  *sqlitedb.Queries
}

var (
	_ storekit.CancelOps = txOps{}
	_ storekit.LeaseOps  = txOps{}
	_ storekit.RemoveOps = txOps{}
	_ storekit.ResumeOps = txOps{}
)

// The savepoint statements are written here, not in queries/, because sqlc
// does not compile transaction control.
func (o txOps) Savepoint(ctx context.Context) (rollback, release func(context.Context) error, err error) {
	if _, err := o.tx.ExecContext(ctx, "SAVEPOINT durably_sp"); err != nil {
		return nil, nil, err
	}
	rollback = func(ctx context.Context) error {
		_, err := o.tx.ExecContext(ctx, "ROLLBACK TO durably_sp; RELEASE durably_sp")
		return err
	}
	release = func(ctx context.Context) error {
		_, err := o.tx.ExecContext(ctx, "RELEASE durably_sp")
		return err
	}
	return rollback, release, nil
}

func (txOps) IsUniqueViolation(err error) bool { return isUniqueViolation(err) }

func isUniqueViolation(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

func (o txOps) RunForUpdate(ctx context.Context, id string) (*store.Run, error) {
	return optionalRun(o.q.GetRunForUpdate(ctx, id))
}

func (o txOps) Cancel(ctx context.Context, id string, now time.Time) (*store.Run, error) {
	return optionalRun(o.q.CancelRun(ctx, sqlitedb.CancelRunParams{Now: store.FormatTime(now), ID: id}))
}

func (o txOps) Resume(ctx context.Context, id string, now time.Time) (*store.Run, error) {
	return optionalRun(o.q.ResumeRun(ctx, sqlitedb.ResumeRunParams{Now: store.FormatTime(now), ID: id}))
}

func (o txOps) DeleteUnfinishedSteps(ctx context.Context, runID string) error {
	return o.q.DeleteUnfinishedSteps(ctx, runID)
}

func (o txOps) LockActiveDescendants(ctx context.Context, id string) ([]storekit.Descendant, error) {
	// Nothing to lock: the single writer orders every write.
	rows, err := o.q.ActiveDescendants(ctx, nullString(id))
	if err != nil {
		return nil, err
	}
	out := make([]storekit.Descendant, len(rows))
	for i, r := range rows {
		out[i] = storekit.Descendant{ID: r.ID, Status: store.Status(r.Status)}
	}
	return out, nil
}

func (o txOps) SignalRun(ctx context.Context, sig *store.Signal) (found, woken bool, err error) {
	n, err := o.q.SignalRun(ctx, sqlitedb.SignalRunParams{Name: sig.Name, Now: store.FormatTime(sig.CreatedAt), ID: sig.RunID})
	return n > 0, false, err // nobody to tell: other processes poll
}

func (o txOps) InsertSignal(ctx context.Context, sig *store.Signal) error {
	return o.q.InsertSignal(ctx, sqlitedb.InsertSignalParams{ID: sig.ID, RunID: sig.RunID, Name: sig.Name,
		Payload: string(sig.Payload), CreatedAt: store.FormatTime(sig.CreatedAt)})
}

func (o txOps) DeleteSignals(ctx context.Context, runIDs []string) error {
	return o.q.DeleteSignalsByRunID(ctx, runIDs)
}

func (o txOps) WakeParent(ctx context.Context, id string, now time.Time) error {
	if _, err := o.q.WakeParent(ctx, sqlitedb.WakeParentParams{Now: store.FormatTime(now), ID: id}); err != nil {
		return fmt.Errorf("sqlitestore: count a child's end for run %s: %w", id, err)
	}
	return nil
}

func (o txOps) DeleteStepsAndLogs(ctx context.Context, runID string) error {
	if err := o.q.DeleteStepsOfRun(ctx, runID); err != nil {
		return fmt.Errorf("sqlitestore: delete steps: %w", err)
	}
	if err := o.q.DeleteLogsOfRun(ctx, runID); err != nil {
		return fmt.Errorf("sqlitestore: delete logs: %w", err)
	}
	return nil
}

func (o txOps) ReleaseLease(ctx context.Context, lease store.Lease, now time.Time) (int64, error) {
	return o.q.ReleaseLease(ctx, sqlitedb.ReleaseLeaseParams{Now: store.FormatTime(now), ID: lease.RunID, Generation: lease.Generation})
}

func (o txOps) ExpireLease(ctx context.Context, lease store.Lease, now time.Time) (int64, error) {
	return o.q.ExpireLease(ctx, sqlitedb.ExpireLeaseParams{Now: store.FormatTime(now), ID: lease.RunID, Generation: lease.Generation})
}

func (o txOps) ListExpiredLeases(ctx context.Context, now time.Time) ([]string, error) {
	return o.q.ListExpiredLeases(ctx, store.FormatTime(now))
}

func (o txOps) ResetExpiredLease(ctx context.Context, id string, now time.Time) (int64, error) {
	return o.q.ResetExpiredLease(ctx, sqlitedb.ResetExpiredLeaseParams{Now: store.FormatTime(now), ID: id})
}

func (o txOps) DeleteTerminalRun(ctx context.Context, id string) (*store.Run, error) {
	return optionalRun(o.q.DeleteTerminalRun(ctx, id))
}

func (o txOps) SelectPurgeable(ctx context.Context, olderThan time.Time, limit int) ([]string, error) {
	return o.q.SelectPurgeable(ctx, sqlitedb.SelectPurgeableParams{OlderThan: store.FormatTime(olderThan), Lim: int64(limit)})
}

func (o txOps) DeleteRuns(ctx context.Context, ids []string) error {
	if err := o.q.DeleteStepsByRunID(ctx, ids); err != nil {
		return fmt.Errorf("sqlitestore: delete steps: %w", err)
	}
	if err := o.q.DeleteLogsByRunID(ctx, ids); err != nil {
		return fmt.Errorf("sqlitestore: delete logs: %w", err)
	}
	if err := o.q.DeleteLabelsByRunID(ctx, ids); err != nil {
		return fmt.Errorf("sqlitestore: delete labels: %w", err)
	}
	if err := o.q.DeleteSignalsByRunID(ctx, ids); err != nil {
		return fmt.Errorf("sqlitestore: delete signals: %w", err)
	}
	return o.q.DeleteRunsByID(ctx, ids)
}

// migrateOps reads and records versions with unprepared statements: the
// tables may not exist yet.
type migrateOps struct{ txOps }

func (o migrateOps) SchemaVersion(ctx context.Context) (int64, error) {
	version, err := o.q.SchemaVersion(ctx)
	if err != nil && strings.Contains(err.Error(), "no such table") {
		return 0, nil
	}
	return version, err
}

func (o migrateOps) Exec(ctx context.Context, script string) error {
	_, err := o.tx.ExecContext(ctx, script)
	return err
}

func (o migrateOps) RecordVersion(ctx context.Context, version int, at time.Time) error {
	return o.q.RecordSchemaVersion(ctx, sqlitedb.RecordSchemaVersionParams{Version: int64(version), AppliedAt: store.FormatTime(at)})
}
