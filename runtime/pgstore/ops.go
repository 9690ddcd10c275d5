package pgstore

import (
	"context"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/durably-go/durably/internal/groupcommit"
	"github.com/durably-go/durably/internal/storekit"
	"github.com/durably-go/durably/runtime/pgstore/internal/pgdb"
	"github.com/durably-go/durably/store"
)

func text(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }

// lane is the writer of a run's writes: always the same one, so that a
// run's writes commit in the order they were made. Writes of no single run
// take lane 0: triggers (their unique indexes make concurrent inserts of
// the same key wait on each other, so two lanes inserting the same two keys
// in opposite orders could deadlock), published events (their order across
// runs is kept), and the sweeps of maintenance.
func (s *Store) lane(runID string) *groupcommit.Writer[*op] {
	if runID == "" || len(s.lanes) == 1 {
		return s.lanes[0]
	}
	return s.lanes[maphash.String(s.laneSeed, runID)%uint64(len(s.lanes))]
}

// do submits o to the lane of runID and waits for its group's commit, at
// most o's bound (Options.Timeout, or BulkTimeout for a bulk op) in all.
// When ctx or the bound ends first it returns an error while o may still be
// applied later (if its group had started), so a caller reads o's results,
// or what o.fn writes, only after do returned nil.
func (s *Store) do(ctx context.Context, runID string, o *op) error {
	ctx, cancel := s.opDeadline(ctx, o)
	defer cancel()
	return s.failed(ctx, s.lane(runID).Do(ctx, o))
}

// opDeadline bounds ctx to o's bound.
func (s *Store) opDeadline(ctx context.Context, o *op) (context.Context, context.CancelFunc) {
	if o.bulk {
		return withDeadline(ctx, s.bulkTimeout, "BulkTimeout")
	}
	return s.bound(ctx)
}

// Enqueue inserts runs all or nothing.
func (s *Store) Enqueue(ctx context.Context, items []store.NewRun) ([]store.Enqueued, error) {
	if len(items) == 0 {
		return nil, nil
	}
	o := &op{kind: opEnqueue, items: items}
	if err := s.do(ctx, "", o); err != nil {
		return nil, err
	}
	if o.conflict != nil {
		return nil, o.conflict
	}
	return o.enqueued, nil
}

// promoteBatch bounds the waiting runs one claim makes ready: a burst of
// runs falling due at once is promoted over a few claims, earliest first,
// rather than in one long write.
const promoteBatch = 1000

// Claim leases up to req.Limit runs (S-031): due waiting runs are promoted
// and candidates are row-locked with SKIP LOCKED, by priority then age; for
// those with a concurrency key, claimers of the same key (in the same key
// scope, D11) queue on an advisory lock and re-check, with a fresh snapshot,
// that no other run of the key holds an unexpired lease; for those of a job
// with a limit (req.JobLimits), claimers of the same job queue on another
// advisory lock and re-count the job's live leases the same way, so that
// the limit holds across processes.
//
// Most claims need none of those locks: they run as one statement
// (ClaimReady), one round trip, which leases the candidates that need no
// lock and counts the others ("held"). Only when some were held does the
// claim go on with the full claim for the rest of the limit (claimLocked:
// a transaction of BEGIN with the candidates, the locks and re-checks, and
// the lease with COMMIT). While the candidates keep needing locks (a queue
// of keyed runs or limited jobs), claims go to the full claim directly,
// until one finds no such candidate.
func (s *Store) Claim(ctx context.Context, req store.ClaimRequest) (runs []*store.Run, err error) {
	if req.Limit <= 0 {
		return nil, nil
	}
	limitJobs, limitCounts := make([]string, 0, len(req.JobLimits)), make([]int64, 0, len(req.JobLimits))
	for _, job := range slices.Sorted(maps.Keys(req.JobLimits)) {
		n := req.JobLimits[job]
		if n < 0 {
			return nil, fmt.Errorf("pgstore: claim: job limit of %q is %d, want >= 0", job, n)
		}
		limitJobs, limitCounts = append(limitJobs, job), append(limitCounts, int64(n))
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	defer func() { err = s.failed(ctx, err) }()
	if !s.lockedClaims.Load() {
		var held int64
		runs, held, err = s.claimReady(ctx, req, limitJobs, limitCounts)
		if err != nil || held == 0 {
			return sortClaimed(runs), err
		}
		s.lockedClaims.Store(true)
		if req.Limit -= len(runs); req.Limit == 0 {
			return sortClaimed(runs), nil
		}
	}
	more, err := s.claimLocked(ctx, req, limitJobs, limitCounts)
	if err != nil && len(runs) > 0 {
		// The runs leased already are this claim's: the held ones wait for
		// the next claim, which meets the failure again if it lasts.
		return sortClaimed(runs), nil
	}
	return sortClaimed(append(runs, more...)), err
}

// claimReady is the claim's one statement (ClaimReady with lease_free):
// the runs it leased, and how many candidates it held back for the full
// claim.
func (s *Store) claimReady(ctx context.Context, req store.ClaimRequest, limitJobs []string, limitCounts []int64) (runs []*store.Run, held int64, err error) {
	rec := &recorder{}
	_, _ = pgdb.New(rec).ClaimReady(ctx, pgdb.ClaimReadyParams{
		Now: ts(req.Now), PromoteLim: promoteBatch, LimitJobs: limitJobs, LimitCounts: limitCounts, Lim: int32(req.Limit),
		LeaseFree: true, WorkerID: req.WorkerID, LeaseExpiresAt: ts(req.Now.Add(req.Lease)),
	})
	rows, err := s.pool.Query(ctx, rec.sql, rec.args...)
	if err != nil {
		return nil, 0, fmt.Errorf("pgstore: claim: %w", err)
	}
	cands, leased, err := scanClaimReady(rows)
	if err != nil {
		return nil, 0, fmt.Errorf("pgstore: claim: %w", err)
	}
	if len(leased) > 0 {
		s.stats.commits.Add(1)
		s.stats.writes.Add(1)
	}
	runs, err = decodeRuns(leased)
	return runs, int64(len(cands) - len(leased)), err
}

// candidate is a row of ClaimReady: a run the claim chose, and whether the
// statement held it back for the full claim instead of leasing it.
type candidate struct {
	ID             string
	JobName        string
	ConcurrencyKey pgtype.Text
	KeyScope       string
	Held           bool
}

// scanClaimReady reads ClaimReady's rows: every candidate in claim order,
// and the runs it leased. sqlc's method would scan every run column as
// nullable (the LEFT JOIN), so the rows are scanned here, into the run
// record the other claims decode.
func scanClaimReady(rows pgx.Rows) (cands []candidate, leased []pgdb.DurablyRun, err error) {
	defer rows.Close()
	for rows.Next() {
		var c candidate
		var held pgtype.Bool
		if rows.RawValues()[5] == nil { // held: the run columns are NULL
			dst := make([]any, len(rows.RawValues())) // nil: skip the column
			dst[0], dst[1], dst[2], dst[3], dst[4] = &held, &c.ID, &c.JobName, &c.ConcurrencyKey, &c.KeyScope
			if err := rows.Scan(dst...); err != nil {
				return nil, nil, err
			}
			c.Held = true
			cands = append(cands, c)
			continue
		}
		r, err := pgx.RowToStructByPos[struct {
			Held           pgtype.Bool
			ID             string
			JobName        string
			ConcurrencyKey pgtype.Text
			KeyScope       string
			pgdb.DurablyRun
		}](rows)
		if err != nil {
			return nil, nil, err
		}
		cands = append(cands, candidate{ID: r.ID, JobName: r.JobName, ConcurrencyKey: r.ConcurrencyKey, KeyScope: r.KeyScope})
		leased = append(leased, r.DurablyRun)
	}
	return cands, leased, rows.Err()
}

// sortClaimed puts runs in claim order, by priority, then oldest first:
// UPDATE … RETURNING returns them in no particular order, and a claim may
// have leased them in two statements.
func sortClaimed(runs []*store.Run) []*store.Run {
	slices.SortFunc(runs, func(a, b *store.Run) int {
		if c := a.Priority - b.Priority; c != 0 {
			return c
		}
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return runs
}

// claimLocked is the full claim in a transaction of its own, pipelined:
// BEGIN with the candidates, then the lease with COMMIT, two round trips
// when no candidate has a key or a limited job; the advisory locks and
// re-checks in between for those that have. It also learns whether the
// candidates still need locks (Store.lockedClaims).
func (s *Store) claimLocked(ctx context.Context, req store.ClaimRequest, limitJobs []string, limitCounts []int64) (runs []*store.Run, err error) {
	now := ts(req.Now)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgstore: claim: %w", err)
	}
	defer conn.Release()
	inTx := false
	defer func() {
		if err != nil && inTx {
			// Release must not hand the pool a connection inside a
			// transaction. The claim's context may be over; the rollback
			// gets a bound of its own.
			rbCtx, cancel := s.bound(context.WithoutCancel(ctx))
			defer cancel()
			if _, rbErr := conn.Exec(rbCtx, "ROLLBACK"); rbErr != nil {
				conn.Conn().PgConn().Close(rbCtx) //nolint:errcheck
			}
		}
	}()
	rec := &recorder{}
	q := pgdb.New(rec)

	var b pgx.Batch
	b.Queue("BEGIN")
	inTx = true
	// Step 1, the candidates: the one-statement claim with nothing leased.
	_, _ = q.ClaimReady(ctx, pgdb.ClaimReadyParams{Now: now, Lim: int32(req.Limit), PromoteLim: promoteBatch,
		LimitJobs: limitJobs, LimitCounts: limitCounts, LeaseFree: false})
	var cands []candidate
	rec.queueRows(&b, func(rows pgx.Rows) (err error) {
		cands, _, err = scanClaimReady(rows)
		return err
	})
	if err := conn.SendBatch(ctx, &b).Close(); err != nil {
		return nil, fmt.Errorf("pgstore: claim candidates: %w", err)
	}
	s.lockedClaims.Store(slices.ContainsFunc(cands, func(c candidate) bool {
		_, limited := req.JobLimits[c.JobName]
		return c.ConcurrencyKey.Valid || limited
	}))
	if len(cands) == 0 {
		if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
			return nil, fmt.Errorf("pgstore: claim: commit: %w", err) // inTx: the deferred ROLLBACK cleans up
		}
		inTx = false
		return nil, nil
	}

	jobOf := make(map[string]string, len(cands))
	for _, c := range cands {
		jobOf[c.ID] = c.JobName
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
	if len(limitJobs) > 0 && len(ids) > 0 {
		if ids, err = s.capJobs(ctx, conn, q, rec, req, ids, jobOf, cands); err != nil {
			return nil, err
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
	return runs, nil
}

// capJobs is the claim's step 2 for jobs with a limit: it locks each limited
// job among ids (sorted, after the concurrency keys), re-counts the job's
// live leases with a fresh snapshot, and keeps of ids, in candidate order,
// only as many runs of each job as its limit still allows.
func (s *Store) capJobs(ctx context.Context, conn *pgxpool.Conn, q *pgdb.Queries, rec *recorder, req store.ClaimRequest, ids []string, jobOf map[string]string, cands []candidate) ([]string, error) {
	var jobs []string
	for _, id := range ids {
		if _, limited := req.JobLimits[jobOf[id]]; limited && !slices.Contains(jobs, jobOf[id]) {
			jobs = append(jobs, jobOf[id])
		}
	}
	if len(jobs) == 0 {
		return ids, nil
	}
	slices.Sort(jobs)
	var b pgx.Batch
	_ = q.LockJobs(ctx, jobs)
	rec.queueExec(&b)
	_, _ = q.LiveLeasesOfJobs(ctx, pgdb.LiveLeasesOfJobsParams{Jobs: jobs, Now: ts(req.Now), Ids: ids})
	room := make(map[string]int, len(jobs))
	rec.queueRows(&b, func(rows pgx.Rows) error {
		for rows.Next() {
			var job string
			var live int64
			if err := rows.Scan(&job, &live); err != nil {
				return err
			}
			room[job] = req.JobLimits[job] - int(live)
		}
		return rows.Err()
	})
	if err := conn.SendBatch(ctx, &b).Close(); err != nil {
		return nil, fmt.Errorf("pgstore: lock jobs: %w", err)
	}
	chosen := make(map[string]bool, len(ids))
	for _, id := range ids {
		chosen[id] = true
	}
	kept := ids[:0]
	for _, c := range cands { // candidate order: priority, then age
		if !chosen[c.ID] {
			continue
		}
		if r, limited := room[c.JobName]; limited {
			if r <= 0 {
				continue
			}
			room[c.JobName] = r - 1
		}
		kept = append(kept, c.ID)
	}
	return kept, nil
}

// RenewLease extends an unexpired lease.
func (s *Store) RenewLease(ctx context.Context, lease store.Lease, now, expiresAt time.Time) (bool, error) {
	o := &op{kind: opRenew, lease: lease, now: now, expiresAt: expiresAt}
	if err := s.do(ctx, lease.RunID, o); err != nil {
		return false, err
	}
	return o.ok, nil
}

// ReleaseLease hands a run back to pending or, when a same-key pending run
// forbids that, by expiring its lease now (D12).
func (s *Store) ReleaseLease(ctx context.Context, lease store.Lease, now time.Time) (bool, error) {
	var ok bool
	err := s.do(ctx, lease.RunID, &op{kind: opFunc, fn: func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) (err error) {
		ok, err = storekit.ReleaseLease(ctx, txOps{tx, q}, lease, now)
		return err
	}})
	if err != nil {
		return false, err
	}
	return ok, nil
}

// SaveStep records a step fenced by generation (S-036).
func (s *Store) SaveStep(ctx context.Context, lease store.Lease, step *store.Step) (bool, error) {
	o := &op{kind: opSaveStep, lease: lease, step: step}
	if err := s.do(ctx, lease.RunID, o); err != nil {
		return false, err
	}
	return o.ok, nil
}

// SetProgress queues a fenced progress write.
func (s *Store) SetProgress(ctx context.Context, lease store.Lease, progress *store.Progress, now time.Time) error {
	return s.lane(lease.RunID).Submit(&op{kind: opProgress, lease: lease, now: now, progress: storekit.EncodeProgress(progress)})
}

// FinishRun completes or fails the run.
func (s *Store) FinishRun(ctx context.Context, lease store.Lease, fin store.Finish) (bool, error) {
	if fin.Status != store.StatusCompleted && fin.Status != store.StatusFailed {
		return false, fmt.Errorf("pgstore: finish with status %q", fin.Status)
	}
	o := &op{kind: opFinish, lease: lease, fin: fin}
	if err := s.do(ctx, lease.RunID, o); err != nil {
		return false, err
	}
	return o.ok, nil
}

// DeferRun records d.Steps and hands the run back to wait until d.Until, in
// one transaction of its own, fenced by generation (store.Store.DeferRun).
// Not an array statement of the group: a deferral is once per retry or
// sleep, not per step.
func (s *Store) DeferRun(ctx context.Context, lease store.Lease, d store.Deferral) (bool, error) {
	d.Until = storekit.DeferUntil(d)
	var ok bool
	err := s.do(ctx, lease.RunID, &op{kind: opFunc, fn: func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) error {
		ok = false
		if len(d.Steps) > 0 {
			saves := make([]*op, len(d.Steps))
			for i, st := range d.Steps {
				saves[i] = &op{lease: lease, step: st}
			}
			saved, err := q.SaveSteps(ctx, stepsParams(saves, nil))
			if err != nil {
				return fmt.Errorf("pgstore: defer run: save steps: %w", err)
			}
			if len(saved) != len(d.Steps) { // refused: the deferral is refused too
				return errRollback
			}
		}
		n, err := q.DeferRun(ctx, pgdb.DeferRunParams{
			RunAt: ts(d.Until), Now: ts(d.Now), Attempt: int64(d.Attempt), Attempts: text(storekit.EncodeAttempts(d.Attempts)),
			CurrentStepIndex: int64(d.CurrentStepIndex), CompletedStepCount: int64(d.CompletedStepCount),
			ID: lease.RunID, Generation: lease.Generation,
		})
		if err != nil {
			return fmt.Errorf("pgstore: defer run: %w", err)
		}
		if n == 0 {
			return errRollback
		}
		ok = true
		return nil
	}})
	if err != nil {
		return false, err
	}
	return ok, nil
}

// AppendLogs queues log records.
func (s *Store) AppendLogs(ctx context.Context, logs []*store.Log) error {
	if len(logs) == 0 {
		return nil
	}
	// A batch of logs is one run's (one step's or the run's own).
	return s.lane(logs[0].RunID).Submit(&op{kind: opLogs, logs: logs})
}

// CancelRun cancels a pending or leased run (S-037).
func (s *Store) CancelRun(ctx context.Context, id string, now time.Time, deleteStepsIfPending bool) (*store.Run, store.Status, error) {
	var run *store.Run
	var prev store.Status
	err := s.do(ctx, id, &op{kind: opFunc, fn: func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) (err error) {
		run, prev, err = storekit.CancelRun(ctx, txOps{tx, q}, id, now, deleteStepsIfPending)
		return err
	}})
	if err != nil {
		return nil, "", err
	}
	return run, prev, nil
}

// DeleteRun removes a terminal run and its children (S-040).
func (s *Store) DeleteRun(ctx context.Context, id string) (*store.Run, error) {
	var run *store.Run
	err := s.do(ctx, id, &op{kind: opFunc, fn: func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) (err error) {
		run, err = storekit.DeleteRun(ctx, txOps{tx, q}, id)
		return err
	}})
	if err != nil {
		return nil, err
	}
	return run, nil
}

// PurgeRuns deletes old terminal runs (S-041).
func (s *Store) PurgeRuns(ctx context.Context, olderThan time.Time, limit int) (int, error) {
	var n int
	err := s.do(ctx, "", &op{kind: opFunc, bulk: true, fn: func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) (err error) {
		n, err = storekit.PurgeRuns(ctx, txOps{tx, q}, olderThan, limit)
		return err
	}})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// ReleaseExpiredLeases implements S-039 with D12 (storekit).
func (s *Store) ReleaseExpiredLeases(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := s.do(ctx, "", &op{kind: opFunc, fn: func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) (err error) {
		n, err = storekit.ReleaseExpiredLeases(ctx, txOps{tx, q}, now)
		return err
	}})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// PatchRun is the unfenced write of storetest.Patcher (S-047), for the
// contract suite; production code never calls it.
func (s *Store) PatchRun(ctx context.Context, id string, p store.RunPatch) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
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
