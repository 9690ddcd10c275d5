package pgstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/durably-go/durably/internal/storekit"
	"github.com/durably-go/durably/runtime/pgstore/internal/pgdb"
	"github.com/durably-go/durably/runtime/store"
)

func text(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }

func (s *Store) do(ctx context.Context, o *op) error { return s.writer.Do(ctx, o) }

// Enqueue inserts runs all or nothing.
func (s *Store) Enqueue(ctx context.Context, items []store.NewRun) ([]store.Enqueued, error) {
	if len(items) == 0 {
		return nil, nil
	}
	o := &op{kind: opEnqueue, items: items}
	if err := s.do(ctx, o); err != nil {
		return nil, err
	}
	if o.conflict != nil {
		return nil, o.conflict
	}
	return o.enqueued, nil
}

// Claim leases up to req.Limit runs (S-031): candidates are row-locked with
// SKIP LOCKED; for those with a concurrency key, claimers of the same key
// (in the same key scope, D11) queue on an advisory lock and re-check, with
// a fresh snapshot, that no other run of the key holds an unexpired lease. The transaction is
// pipelined: BEGIN with the candidates, then the lease with COMMIT, two
// round trips when no candidate has a key.
func (s *Store) Claim(ctx context.Context, req store.ClaimRequest) (runs []*store.Run, err error) {
	if req.Limit <= 0 {
		return nil, nil
	}
	defer func() { err = classify(err) }()
	now := ts(req.Now)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgstore: claim: %w", err)
	}
	defer conn.Release()
	inTx := false
	defer func() {
		if err != nil && inTx {
			// Release must not hand the pool a connection inside a transaction.
			if _, rbErr := conn.Exec(context.WithoutCancel(ctx), "ROLLBACK"); rbErr != nil {
				conn.Conn().PgConn().Close(context.Background()) //nolint:errcheck
			}
		}
	}()
	rec := &recorder{}
	q := pgdb.New(rec)

	var b pgx.Batch
	b.Queue("BEGIN")
	inTx = true
	_, _ = q.ClaimCandidates(ctx, pgdb.ClaimCandidatesParams{Now: now, Lim: int32(req.Limit)})
	var cands []pgdb.ClaimCandidatesRow
	rec.queueRows(&b, func(rows pgx.Rows) error {
		for rows.Next() {
			var c pgdb.ClaimCandidatesRow
			if err := rows.Scan(&c.ID, &c.ConcurrencyKey, &c.KeyScope); err != nil {
				return err
			}
			cands = append(cands, c)
		}
		return rows.Err()
	})
	if err := conn.SendBatch(ctx, &b).Close(); err != nil {
		return nil, fmt.Errorf("pgstore: claim candidates: %w", err)
	}
	if len(cands) == 0 {
		_, err := conn.Exec(ctx, "COMMIT")
		inTx = err != nil
		return nil, err
	}

	ids := make([]string, 0, len(cands))
	var keys []scopedKey
	seen := map[scopedKey]bool{}
	keyOf := map[string]scopedKey{}
	for _, c := range cands {
		if !c.ConcurrencyKey.Valid {
			ids = append(ids, c.ID)
			continue
		}
		k := scopedKey{scope: c.KeyScope, key: c.ConcurrencyKey.String}
		if seen[k] {
			continue // one run per key per claim: the oldest candidate
		}
		seen[k] = true
		keys = append(keys, k)
		keyOf[c.ID] = k
	}
	if len(keys) > 0 {
		slices.SortFunc(keys, func(a, b scopedKey) int {
			if c := strings.Compare(a.scope, b.scope); c != 0 {
				return c
			}
			return strings.Compare(a.key, b.key)
		})
		scopes, names := make([]string, len(keys)), make([]string, len(keys))
		for i, k := range keys {
			scopes[i], names[i] = k.scope, k.key
		}
		keyed := make([]string, 0, len(keyOf))
		for id := range keyOf {
			keyed = append(keyed, id)
		}
		var b pgx.Batch
		_ = q.LockConcurrencyKeys(ctx, pgdb.LockConcurrencyKeysParams{Scopes: scopes, Keys: names})
		rec.queueExec(&b)
		_, _ = q.LeasedConcurrencyKeys(ctx, pgdb.LeasedConcurrencyKeysParams{Scopes: scopes, Keys: names, Now: now, Ids: keyed})
		var blocked []scopedKey
		rec.queueRows(&b, func(rows pgx.Rows) error {
			for rows.Next() {
				var k scopedKey
				if err := rows.Scan(&k.scope, &k.key); err != nil {
					return err
				}
				blocked = append(blocked, k)
			}
			return rows.Err()
		})
		if err := conn.SendBatch(ctx, &b).Close(); err != nil {
			return nil, fmt.Errorf("pgstore: lock concurrency keys: %w", err)
		}
		for _, id := range keyed {
			if !slices.Contains(blocked, keyOf[id]) {
				ids = append(ids, id)
			}
		}
	}

	b = pgx.Batch{}
	if len(ids) > 0 {
		_, _ = q.ClaimRuns(ctx, pgdb.ClaimRunsParams{
			WorkerID: req.WorkerID, LeaseExpiresAt: ts(req.Now.Add(req.Lease)), Now: now, Ids: ids,
		})
		rec.queueRows(&b, func(rows pgx.Rows) error {
			claimed, err := pgx.CollectRows(rows, pgx.RowToStructByPos[pgdb.DurablyRun])
			if err != nil {
				return err
			}
			runs, err = decodeRuns(claimed)
			return err
		})
	}
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, &b).Close(); err != nil {
		return nil, fmt.Errorf("pgstore: claim runs: %w", err)
	}
	inTx = false
	s.stats.commits.Add(1)
	s.stats.writes.Add(1)
	// UPDATE … RETURNING comes in no particular order; runs start oldest first.
	slices.SortFunc(runs, func(a, b *store.Run) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return runs, nil
}

// RenewLease extends an unexpired lease.
func (s *Store) RenewLease(ctx context.Context, lease store.Lease, now, expiresAt time.Time) (bool, error) {
	o := &op{kind: opRenew, lease: lease, now: now, expiresAt: expiresAt}
	err := s.do(ctx, o)
	return o.ok, err
}

// ReleaseLease hands a run back to pending or, when a same-key pending run
// forbids that, by expiring its lease now (D12).
func (s *Store) ReleaseLease(ctx context.Context, lease store.Lease, now time.Time) (ok bool, err error) {
	err = s.do(ctx, &op{kind: opFunc, fn: func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) (err error) {
		ok, err = storekit.ReleaseLease(ctx, txOps{tx, q}, lease, now)
		return err
	}})
	return ok, err
}

// SaveStep records a step fenced by generation (S-036).
func (s *Store) SaveStep(ctx context.Context, lease store.Lease, step *store.Step) (bool, error) {
	o := &op{kind: opSaveStep, lease: lease, step: step}
	err := s.do(ctx, o)
	return o.ok, err
}

// SetProgress queues a fenced progress write.
func (s *Store) SetProgress(ctx context.Context, lease store.Lease, progress *store.Progress, now time.Time) error {
	return s.writer.Submit(&op{kind: opProgress, lease: lease, now: now, progress: storekit.EncodeProgress(progress)})
}

// FinishRun completes or fails the run.
func (s *Store) FinishRun(ctx context.Context, lease store.Lease, fin store.Finish) (bool, error) {
	if fin.Status != store.StatusCompleted && fin.Status != store.StatusFailed {
		return false, fmt.Errorf("pgstore: finish with status %q", fin.Status)
	}
	o := &op{kind: opFinish, lease: lease, fin: fin}
	err := s.do(ctx, o)
	return o.ok, err
}

// AppendLogs queues log records.
func (s *Store) AppendLogs(ctx context.Context, logs []*store.Log) error {
	if len(logs) == 0 {
		return nil
	}
	return s.writer.Submit(&op{kind: opLogs, logs: logs})
}

// CancelRun cancels a pending or leased run (S-037).
func (s *Store) CancelRun(ctx context.Context, id string, now time.Time, deleteStepsIfPending bool) (run *store.Run, prev store.Status, err error) {
	err = s.do(ctx, &op{kind: opFunc, fn: func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) (err error) {
		run, prev, err = storekit.CancelRun(ctx, txOps{tx, q}, id, now, deleteStepsIfPending)
		return err
	}})
	return run, prev, err
}

// DeleteRun removes a terminal run and its children (S-040).
func (s *Store) DeleteRun(ctx context.Context, id string) (run *store.Run, err error) {
	err = s.do(ctx, &op{kind: opFunc, fn: func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) (err error) {
		run, err = storekit.DeleteRun(ctx, txOps{tx, q}, id)
		return err
	}})
	return run, err
}

// PurgeRuns deletes old terminal runs (S-041).
func (s *Store) PurgeRuns(ctx context.Context, olderThan time.Time, limit int) (n int, err error) {
	err = s.do(ctx, &op{kind: opFunc, fn: func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) (err error) {
		n, err = storekit.PurgeRuns(ctx, txOps{tx, q}, olderThan, limit)
		return err
	}})
	return n, err
}

// ReleaseExpiredLeases implements S-039 with D12 (storekit).
func (s *Store) ReleaseExpiredLeases(ctx context.Context, now time.Time) (n int, err error) {
	err = s.do(ctx, &op{kind: opFunc, fn: func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) (err error) {
		n, err = storekit.ReleaseExpiredLeases(ctx, txOps{tx, q}, now)
		return err
	}})
	return n, err
}

// PatchRun is the unfenced write of storetest.Patcher (S-047), for the
// contract suite; production code never calls it.
func (s *Store) PatchRun(ctx context.Context, id string, p store.RunPatch) error {
	f := storekit.Flatten(p)
	return s.q.UpdateRunForTest(ctx, pgdb.UpdateRunForTestParams{ID: id, Now: ts(time.Now()), SetStatus: f.SetStatus, Status: f.Status,
		SetCurrentStepIndex: f.SetCurrentStepIndex, CurrentStepIndex: f.CurrentStepIndex, SetLeaseOwner: f.SetLeaseOwner, LeaseOwner: text(f.LeaseOwner),
		SetLeaseExpiresAt: f.SetLeaseExpiresAt, LeaseExpiresAt: ts(f.LeaseExpiresAt), SetStartedAt: f.SetStartedAt, StartedAt: ts(f.StartedAt),
		SetCompletedAt: f.SetCompletedAt, CompletedAt: ts(f.CompletedAt), SetCreatedAt: f.SetCreatedAt, CreatedAt: ts(f.CreatedAt)})
}

// scopedKey is a concurrency key in its key scope (D11): the unit of the
// claim's "one leased run per key".
type scopedKey struct{ scope, key string }

// ts is t as a timestamptz parameter: to the millisecond the contract keeps
// (store.Truncate), NULL for the zero time.
func ts(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: store.Truncate(t), Valid: true}
}

// fromTS is a timestamptz column as the records hold it: the zero time for NULL.
func fromTS(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time
}
