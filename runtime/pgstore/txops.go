package pgstore

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/durably-go/durably/internal/storekit"
	"github.com/durably-go/durably/runtime/pgstore/internal/pgdb"
	"github.com/durably-go/durably/store"
)

// txOps are PostgreSQL's operations for storekit's algorithms, inside a
// transaction of the store's own.
type txOps struct {
	tx pgx.Tx
	q  *pgdb.Queries
}

var (
	_ storekit.CancelOps  = txOps{}
	_ storekit.LeaseOps   = txOps{}
	_ storekit.RemoveOps  = txOps{}
	_ storekit.MigrateOps = txOps{}
	_ storekit.ResumeOps  = txOps{}
)

// Savepoint is pgx's nested transaction, which is a SAVEPOINT on the same
// connection, so the queries of the outer transaction run inside it.
func (o txOps) Savepoint(ctx context.Context) (rollback, release func(context.Context) error, err error) {
	sp, err := o.tx.Begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	return sp.Rollback, sp.Commit, nil
}

func (txOps) IsUniqueViolation(err error) bool { return isUniqueViolation(err) }

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

func (o txOps) RunForUpdate(ctx context.Context, id string) (*store.Run, error) {
	return optionalRun(o.q.GetRunForUpdate(ctx, id))
}

func (o txOps) Cancel(ctx context.Context, id string, now time.Time) (*store.Run, error) {
	return optionalRun(o.q.CancelRun(ctx, pgdb.CancelRunParams{Now: ts(now), ID: id}))
}

func (o txOps) Resume(ctx context.Context, id string, now time.Time) (*store.Run, error) {
	return optionalRun(o.q.ResumeRun(ctx, pgdb.ResumeRunParams{Now: ts(now), ID: id}))
}

func (o txOps) DeleteUnfinishedSteps(ctx context.Context, runID string) error {
	return o.q.DeleteUnfinishedSteps(ctx, runID)
}

func (o txOps) LockActiveDescendants(ctx context.Context, id string) ([]storekit.Descendant, error) {
	rows, err := o.q.LockActiveDescendants(ctx, id)
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
	w, err := o.q.SignalRun(ctx, pgdb.SignalRunParams{Name: sig.Name, Now: ts(sig.CreatedAt), ID: sig.RunID})
	if errors.Is(err, pgx.ErrNoRows) {
		return false, false, nil // the run is missing or ended
	}
	return err == nil, w.Valid && w.Bool, err
}

func (o txOps) InsertSignal(ctx context.Context, sig *store.Signal) error {
	return o.q.InsertSignal(ctx, pgdb.InsertSignalParams{ID: sig.ID, RunID: sig.RunID, Name: sig.Name,
		Payload: string(sig.Payload), CreatedAt: ts(sig.CreatedAt)})
}

func (o txOps) DeleteSignals(ctx context.Context, runIDs []string) error {
	return o.q.DeleteSignalsOfRuns(ctx, runIDs)
}

func (o txOps) WakeParent(ctx context.Context, id string, now time.Time) error {
	_, err := o.q.WakeParent(ctx, pgdb.WakeParentParams{Now: ts(now), ID: id})
	return err
}

func (o txOps) DeleteStepsAndLogs(ctx context.Context, runID string) error {
	return o.q.DeleteStepsAndLogs(ctx, runID)
}

func (o txOps) ReleaseLease(ctx context.Context, lease store.Lease, now time.Time) (int64, error) {
	return o.q.ReleaseLease(ctx, pgdb.ReleaseLeaseParams{Now: ts(now), ID: lease.RunID, Generation: lease.Generation})
}

func (o txOps) ExpireLease(ctx context.Context, lease store.Lease, now time.Time) (int64, error) {
	return o.q.ExpireLease(ctx, pgdb.ExpireLeaseParams{Now: ts(now), ID: lease.RunID, Generation: lease.Generation})
}

func (o txOps) ListExpiredLeases(ctx context.Context, now time.Time) ([]string, error) {
	return o.q.ListExpiredLeases(ctx, ts(now))
}

func (o txOps) ResetExpiredLease(ctx context.Context, id string, now time.Time) (int64, error) {
	return o.q.ResetExpiredLease(ctx, pgdb.ResetExpiredLeaseParams{Now: ts(now), ID: id})
}

func (o txOps) DeleteTerminalRun(ctx context.Context, id string) (*store.Run, error) {
	return optionalRun(o.q.DeleteTerminalRun(ctx, id))
}

func (o txOps) SelectPurgeable(ctx context.Context, olderThan time.Time, limit int) ([]string, error) {
	return o.q.SelectPurgeable(ctx, pgdb.SelectPurgeableParams{OlderThan: ts(olderThan), Lim: int32(limit)})
}

func (o txOps) DeleteRuns(ctx context.Context, ids []string) error {
	return o.q.DeleteRunsCascade(ctx, ids)
}

// SchemaVersion takes the migration lock first: the loop runs under it, so
// that concurrent processes migrate one at a time.
func (o txOps) SchemaVersion(ctx context.Context) (int64, error) {
	if err := o.q.LockMigrations(ctx); err != nil {
		return 0, err
	}
	present, err := o.q.SchemaVersionsTableExists(ctx)
	if err != nil || !present {
		return 0, err
	}
	return o.q.SchemaVersion(ctx)
}

// Exec runs a migration script: pgx sends a statement without arguments
// over the simple protocol, which takes many statements at once.
func (o txOps) Exec(ctx context.Context, script string) error {
	_, err := o.tx.Exec(ctx, script)
	return err
}

func (o txOps) RecordVersion(ctx context.Context, version int, at time.Time) error {
	return o.q.RecordSchemaVersion(ctx, pgdb.RecordSchemaVersionParams{Version: int32(version), AppliedAt: ts(at)})
}
