package pgstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

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
	now := store.FormatTime(req.Now)
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
			WorkerID: req.WorkerID, LeaseExpiresAt: store.FormatTime(req.Now.Add(req.Lease)), Now: now, Ids: ids,
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
func (s *Store) ReleaseLease(ctx context.Context, lease store.Lease, now time.Time) (bool, error) {
	var ok bool
	err := s.do(ctx, &op{kind: opFunc, fn: func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) error {
		ok = false
		ts := store.FormatTime(now)
		sp, err := tx.Begin(ctx)
		if err != nil {
			return err
		}
		n, err := pgdb.New(sp).ReleaseLease(ctx, pgdb.ReleaseLeaseParams{Now: ts, ID: lease.RunID, Generation: int32(lease.Generation)})
		if isUniqueViolation(err) {
			if err := sp.Rollback(ctx); err != nil {
				return err
			}
			if n, err = q.ExpireLease(ctx, pgdb.ExpireLeaseParams{Now: ts, ID: lease.RunID, Generation: int32(lease.Generation)}); err != nil {
				return fmt.Errorf("pgstore: expire lease: %w", err)
			}
			ok = n == 1
			return nil
		}
		if err != nil {
			_ = sp.Rollback(ctx)
			return fmt.Errorf("pgstore: release lease: %w", err)
		}
		ok = n == 1
		return sp.Commit(ctx)
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
	return s.writer.Submit(&op{kind: opProgress, lease: lease, now: now, progress: store.EncodeProgress(progress)})
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
func (s *Store) CancelRun(ctx context.Context, id string, now time.Time, deleteStepsIfPending bool) (*store.Run, store.Status, error) {
	var run *store.Run
	var prev store.Status
	err := s.do(ctx, &op{kind: opFunc, fn: func(ctx context.Context, _ pgx.Tx, q *pgdb.Queries) error {
		run, prev = nil, ""
		before, err := optionalRun(q.GetRunForUpdate(ctx, id))
		if err != nil || before == nil {
			return err
		}
		prev = before.Status
		if !prev.Active() {
			run = before
			return nil
		}
		if run, err = optionalRun(q.CancelRun(ctx, pgdb.CancelRunParams{Now: store.FormatTime(now), ID: id})); err != nil {
			return fmt.Errorf("pgstore: cancel: %w", err)
		}
		if prev == store.StatusPending && deleteStepsIfPending {
			return q.DeleteStepsAndLogs(ctx, id)
		}
		return nil
	}})
	return run, prev, err
}

// DeleteRun removes a terminal run and its children (S-040).
func (s *Store) DeleteRun(ctx context.Context, id string) (*store.Run, error) {
	var run *store.Run
	err := s.do(ctx, &op{kind: opFunc, fn: func(ctx context.Context, _ pgx.Tx, q *pgdb.Queries) error {
		var err error
		if run, err = optionalRun(q.DeleteTerminalRun(ctx, id)); err != nil || run == nil {
			return err
		}
		return q.DeleteRunsCascade(ctx, []string{id})
	}})
	return run, err
}

// PurgeRuns deletes old terminal runs (S-041).
func (s *Store) PurgeRuns(ctx context.Context, olderThan time.Time, limit int) (int, error) {
	var n int
	err := s.do(ctx, &op{kind: opFunc, fn: func(ctx context.Context, _ pgx.Tx, q *pgdb.Queries) error {
		ids, err := q.SelectPurgeable(ctx, pgdb.SelectPurgeableParams{OlderThan: store.FormatTime(olderThan), Lim: int32(limit)})
		if err != nil {
			return fmt.Errorf("pgstore: select purgeable: %w", err)
		}
		n = len(ids)
		if n == 0 {
			return nil
		}
		return q.DeleteRunsCascade(ctx, ids)
	}})
	return n, err
}

// ReleaseExpiredLeases implements S-039; expired leases with a pending
// sibling stay claimable as they are instead of failing (D12, not S-038).
func (s *Store) ReleaseExpiredLeases(ctx context.Context, now time.Time) (int, error) {
	var total int64
	err := s.do(ctx, &op{kind: opFunc, fn: func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) error {
		total = 0
		ts := store.FormatTime(now)
		ids, err := q.ListExpiredLeases(ctx, ts)
		if err != nil {
			return fmt.Errorf("pgstore: list expired leases: %w", err)
		}
		for _, id := range ids {
			sp, err := tx.Begin(ctx)
			if err != nil {
				return err
			}
			n, err := pgdb.New(sp).ResetExpiredLease(ctx, pgdb.ResetExpiredLeaseParams{Now: ts, ID: id})
			if isUniqueViolation(err) {
				// A pending sibling appeared since the list: this run
				// stays an expired lease, claimable as it is (D12).
				if err := sp.Rollback(ctx); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				_ = sp.Rollback(ctx)
				return fmt.Errorf("pgstore: reset expired lease: %w", err)
			}
			if err := sp.Commit(ctx); err != nil {
				return err
			}
			total += n
		}
		return nil
	}})
	return int(total), err
}

// PatchRun is the unfenced test hook of S-047.
func (s *Store) PatchRun(ctx context.Context, id string, p store.RunPatch) error {
	params := pgdb.UpdateRunForTestParams{ID: id, Now: store.FormatTime(time.Now())}
	if p.Status != nil {
		params.SetStatus, params.Status = true, string(*p.Status)
	}
	if p.CurrentStepIndex != nil {
		params.SetCurrentStepIndex, params.CurrentStepIndex = true, int64(*p.CurrentStepIndex)
	}
	if p.LeaseOwner != nil {
		params.SetLeaseOwner, params.LeaseOwner = true, text(*p.LeaseOwner)
	}
	if p.LeaseExpiresAt != nil {
		params.SetLeaseExpiresAt, params.LeaseExpiresAt = true, text(store.OptionalTime(*p.LeaseExpiresAt))
	}
	if p.StartedAt != nil {
		params.SetStartedAt, params.StartedAt = true, text(store.OptionalTime(*p.StartedAt))
	}
	if p.CompletedAt != nil {
		params.SetCompletedAt, params.CompletedAt = true, text(store.OptionalTime(*p.CompletedAt))
	}
	if p.CreatedAt != nil {
		params.SetCreatedAt, params.CreatedAt = true, store.FormatTime(*p.CreatedAt)
	}
	return s.q.UpdateRunForTest(ctx, params)
}

// scopedKey is a concurrency key in its key scope (D11): the unit of the
// claim's "one leased run per key".
type scopedKey struct{ scope, key string }
