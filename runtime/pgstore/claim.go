package pgstore

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/durably-go/durably/runtime/pgstore/internal/pgdb"
	"github.com/durably-go/durably/store"
)

// promoteBatch bounds the waiting runs one claim makes ready: a burst of
// runs falling due at once is promoted over a few claims, earliest first,
// rather than in one long write.
const promoteBatch = 1000

// scopedKey is a concurrency key in its key scope (D11): the unit of the
// claim's "one leased run per key".
type scopedKey struct{ scope, key string }

// limits are a claim's caps as ClaimReady's arrays take them: the jobs
// with a MaxRunning and those with a per-tenant limit, sorted.
type limits struct {
	jobs, tenantJobs     []string
	counts, tenantCounts []int64
}

func claimLimits(req store.ClaimRequest) (limits, error) {
	var l limits
	for _, job := range slices.Sorted(maps.Keys(req.JobLimits)) {
		n := req.JobLimits[job]
		if n < 0 {
			return l, fmt.Errorf("pgstore: claim: job limit of %q is %d, want >= 0", job, n)
		}
		l.jobs, l.counts = append(l.jobs, job), append(l.counts, int64(n))
	}
	for _, job := range slices.Sorted(maps.Keys(req.TenantLimits)) {
		n := req.TenantLimits[job]
		if n < 0 {
			return l, fmt.Errorf("pgstore: claim: per-tenant limit of %q is %d, want >= 0", job, n)
		}
		l.tenantJobs, l.tenantCounts = append(l.tenantJobs, job), append(l.tenantCounts, int64(n))
	}
	// sqlc's arrays must not be NULL.
	l.jobs, l.counts = nonNil(l.jobs), nonNil(l.counts)
	l.tenantJobs, l.tenantCounts = nonNil(l.tenantJobs), nonNil(l.tenantCounts)
	return l, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Claim leases up to req.Limit runs (S-031): due waiting runs are promoted
// and candidates are row-locked with SKIP LOCKED, by priority then age; for
// those with a concurrency key, claimers of the same key (in the same key
// scope, D11) queue on an advisory lock and re-check, with a fresh snapshot,
// that no other run of the key holds an unexpired lease; for those of a job
// with a limit (req.JobLimits) or a per-tenant limit (req.TenantLimits),
// claimers of the same job (and scope) queue on another advisory lock and
// re-count its live leases the same way, so that the limits hold across
// processes.
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
	lim, err := claimLimits(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	defer func() { err = s.failed(ctx, err) }()
	if !s.lockedClaims.Load() {
		var held int64
		runs, held, err = s.claimReady(ctx, req, lim)
		if err != nil || held == 0 {
			return sortClaimed(runs), err
		}
		s.lockedClaims.Store(true)
		if req.Limit -= len(runs); req.Limit == 0 {
			return sortClaimed(runs), nil
		}
	}
	for {
		more, err := s.claimLocked(ctx, req, lim)
		if err != nil && len(runs) > 0 {
			// The runs leased already are this claim's: the held ones wait
			// for the next claim, which meets the failure again if it lasts.
			return sortClaimed(runs), nil
		}
		runs = append(runs, more...)
		req.Limit -= len(more)
		// A tenant's backlog can fill a pass's candidates beyond its
		// limit; leased up to it, the tenant is passed over by the next
		// pass, which reaches the runs behind it. Without more passes the
		// worker would wait for its next poll for them.
		// Every further pass leases at least one run, so there are at
		// most req.Limit of them; a worker whose claim comes back short
		// takes the queue for empty and waits for its poll.
		if err != nil || req.Limit == 0 || len(more) == 0 || len(lim.tenantJobs) == 0 {
			return sortClaimed(runs), err
		}
	}
}

// claimReadyParams are ClaimReady's parameters; leaseFree says whether it
// leases the candidates that need no lock (the one-statement claim) or
// only returns them all (the full claim's step 1).
func claimReadyParams(req store.ClaimRequest, lim limits, leaseFree bool) pgdb.ClaimReadyParams {
	p := pgdb.ClaimReadyParams{
		Now: ts(req.Now), PromoteLim: promoteBatch, Lim: int32(req.Limit),
		LimitJobs: lim.jobs, LimitCounts: lim.counts, TenantJobs: lim.tenantJobs, TenantCounts: lim.tenantCounts,
		LeaseFree: leaseFree,
	}
	if leaseFree {
		p.WorkerID, p.LeaseExpiresAt = req.WorkerID, ts(req.Now.Add(req.Lease))
	}
	return p
}

// claimReady is the claim's one statement (ClaimReady with lease_free):
// the runs it leased, and how many candidates it held back for the full
// claim.
func (s *Store) claimReady(ctx context.Context, req store.ClaimRequest, lim limits) (runs []*store.Run, held int64, err error) {
	rec := &recorder{}
	_, _ = pgdb.New(rec).ClaimReady(ctx, claimReadyParams(req, lim, true))
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

// lockedClaim is the full claim in progress: its transaction's connection,
// the request, and the candidates of step 1 in claim order.
type lockedClaim struct {
	conn  *pgxpool.Conn
	q     *pgdb.Queries
	rec   *recorder
	req   store.ClaimRequest
	lim   limits
	cands []candidate
}

// send runs the statements queued in b on the claim's connection.
func (c *lockedClaim) send(ctx context.Context, b *pgx.Batch, what string) error {
	if err := c.conn.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("pgstore: %s: %w", what, err)
	}
	return nil
}

// claimLocked is the full claim, in one transaction: the candidates, then
// the advisory locks and re-checks of their concurrency keys, their jobs'
// limits and their tenants' limits, each keeping of the candidates those
// still claimable, then the lease of what is left.
func (s *Store) claimLocked(ctx context.Context, req store.ClaimRequest, lim limits) (runs []*store.Run, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgstore: claim: %w", err)
	}
	defer conn.Release()
	inTx := true // from the first batch, which begins with BEGIN
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
	c := &lockedClaim{conn: conn, q: pgdb.New(rec), rec: rec, req: req, lim: lim}
	if err := c.candidates(ctx); err != nil {
		return nil, err
	}
	s.lockedClaims.Store(slices.ContainsFunc(c.cands, c.needsLocks))
	ids, err := c.lockKeys(ctx)
	if err != nil {
		return nil, err
	}
	if ids, err = c.capJobs(ctx, ids); err != nil {
		return nil, err
	}
	if ids, err = c.capTenants(ctx, ids); err != nil {
		return nil, err
	}
	if runs, err = c.lease(ctx, ids); err != nil {
		return nil, err
	}
	inTx = false
	s.stats.commits.Add(1)
	s.stats.writes.Add(1)
	return runs, nil
}

// needsLocks says whether a candidate needs the full claim's locks.
func (c *lockedClaim) needsLocks(cand candidate) bool {
	_, limited := c.req.JobLimits[cand.JobName]
	_, tenantLimited := c.req.TenantLimits[cand.JobName]
	return cand.ConcurrencyKey.Valid || limited || tenantLimited
}

// candidates is step 1: BEGIN and the one-statement claim with nothing
// leased, every candidate returned.
func (c *lockedClaim) candidates(ctx context.Context) error {
	var b pgx.Batch
	b.Queue("BEGIN")
	_, _ = c.q.ClaimReady(ctx, claimReadyParams(c.req, c.lim, false))
	c.rec.queueRows(&b, func(rows pgx.Rows) (err error) {
		c.cands, _, err = scanClaimReady(rows)
		return err
	})
	return c.send(ctx, &b, "claim candidates")
}

// lockKeys is step 2 for concurrency keys: the oldest candidate of each
// (scope, key), locked (sorted, so that claimers never wait in a cycle) and
// re-checked with a fresh snapshot. It returns, in candidate order, the
// candidates without a key and those whose key is free.
func (c *lockedClaim) lockKeys(ctx context.Context) ([]string, error) {
	var ids, keyed []string
	var keys []scopedKey
	keyOf := map[string]scopedKey{}
	for _, cand := range c.cands {
		if !cand.ConcurrencyKey.Valid {
			continue
		}
		k := scopedKey{scope: cand.KeyScope, key: cand.ConcurrencyKey.String}
		if slices.Contains(keys, k) {
			continue // one run per key per claim: the oldest candidate
		}
		keys, keyed, keyOf[cand.ID] = append(keys, k), append(keyed, cand.ID), k
	}
	blocked := map[scopedKey]bool{}
	if len(keys) > 0 {
		slices.SortFunc(keys, func(a, b scopedKey) int {
			return cmp.Or(strings.Compare(a.scope, b.scope), strings.Compare(a.key, b.key))
		})
		scopes, names := make([]string, len(keys)), make([]string, len(keys))
		for i, k := range keys {
			scopes[i], names[i] = k.scope, k.key
		}
		var b pgx.Batch
		_ = c.q.LockConcurrencyKeys(ctx, pgdb.LockConcurrencyKeysParams{Scopes: scopes, Keys: names})
		c.rec.queueExec(&b)
		_, _ = c.q.LeasedConcurrencyKeys(ctx, pgdb.LeasedConcurrencyKeysParams{Scopes: scopes, Keys: names, Now: ts(c.req.Now), Ids: keyed})
		c.rec.queueRows(&b, func(rows pgx.Rows) error {
			for rows.Next() {
				var k scopedKey
				if err := rows.Scan(&k.scope, &k.key); err != nil {
					return err
				}
				blocked[k] = true
			}
			return rows.Err()
		})
		if err := c.send(ctx, &b, "lock concurrency keys"); err != nil {
			return nil, err
		}
	}
	for _, cand := range c.cands {
		if k, isKeyed := keyOf[cand.ID]; isKeyed && !blocked[k] || !cand.ConcurrencyKey.Valid {
			ids = append(ids, cand.ID)
		}
	}
	return ids, nil
}

// capJobs is step 2 for jobs with a limit: it locks each limited job among
// ids (sorted, after the concurrency keys), re-counts the job's live leases
// with a fresh snapshot, and keeps of ids, in candidate order, only as many
// runs of each job as its limit still allows.
func (c *lockedClaim) capJobs(ctx context.Context, ids []string) ([]string, error) {
	jobOf := c.field(func(cand candidate) string { return cand.JobName })
	var jobs []string
	for _, id := range ids {
		if _, limited := c.req.JobLimits[jobOf[id]]; limited && !slices.Contains(jobs, jobOf[id]) {
			jobs = append(jobs, jobOf[id])
		}
	}
	if len(jobs) == 0 {
		return ids, nil
	}
	slices.Sort(jobs)
	var b pgx.Batch
	_ = c.q.LockJobs(ctx, jobs)
	c.rec.queueExec(&b)
	_, _ = c.q.LiveLeasesOfJobs(ctx, pgdb.LiveLeasesOfJobsParams{Jobs: jobs, Now: ts(c.req.Now), Ids: ids})
	room := make(map[string]int, len(jobs))
	c.rec.queueRows(&b, func(rows pgx.Rows) error {
		for rows.Next() {
			var job string
			var live int64
			if err := rows.Scan(&job, &live); err != nil {
				return err
			}
			room[job] = c.req.JobLimits[job] - int(live)
		}
		return rows.Err()
	})
	if err := c.send(ctx, &b, "lock jobs"); err != nil {
		return nil, err
	}
	return keepWithin(ids, jobOf, room), nil
}

// capTenants is step 2 for jobs with a per-tenant limit, as capJobs for
// each (job, key scope) among ids, locked after the jobs.
func (c *lockedClaim) capTenants(ctx context.Context, ids []string) ([]string, error) {
	groupOf := c.field(func(cand candidate) string { return cand.JobName + "\x1f" + cand.KeyScope })
	jobOf := c.field(func(cand candidate) string { return cand.JobName })
	var groups []string
	for _, id := range ids {
		if _, limited := c.req.TenantLimits[jobOf[id]]; limited && !slices.Contains(groups, groupOf[id]) {
			groups = append(groups, groupOf[id])
		}
	}
	if len(groups) == 0 {
		return ids, nil
	}
	slices.Sort(groups)
	jobs, scopes := make([]string, len(groups)), make([]string, len(groups))
	for i, g := range groups {
		jobs[i], scopes[i], _ = strings.Cut(g, "\x1f")
	}
	var b pgx.Batch
	_ = c.q.LockTenants(ctx, pgdb.LockTenantsParams{Jobs: jobs, Scopes: scopes})
	c.rec.queueExec(&b)
	_, _ = c.q.LiveLeasesOfTenants(ctx, pgdb.LiveLeasesOfTenantsParams{Jobs: jobs, Scopes: scopes, Now: ts(c.req.Now), Ids: ids})
	room := make(map[string]int, len(groups))
	c.rec.queueRows(&b, func(rows pgx.Rows) error {
		for rows.Next() {
			var job, scope string
			var live int64
			if err := rows.Scan(&job, &scope, &live); err != nil {
				return err
			}
			room[job+"\x1f"+scope] = c.req.TenantLimits[job] - int(live)
		}
		return rows.Err()
	})
	if err := c.send(ctx, &b, "lock tenants"); err != nil {
		return nil, err
	}
	return keepWithin(ids, groupOf, room), nil
}

// field maps each candidate's id to f of it.
func (c *lockedClaim) field(f func(candidate) string) map[string]string {
	m := make(map[string]string, len(c.cands))
	for _, cand := range c.cands {
		m[cand.ID] = f(cand)
	}
	return m
}

// keepWithin keeps of ids, in their order (the candidates'), those whose
// group has room left, counting each kept one; ids of no group in room are
// kept.
func keepWithin(ids []string, groupOf map[string]string, room map[string]int) []string {
	kept := ids[:0]
	for _, id := range ids {
		if r, limited := room[groupOf[id]]; limited {
			if r <= 0 {
				continue
			}
			room[groupOf[id]] = r - 1
		}
		kept = append(kept, id)
	}
	return kept
}

// lease is step 3: the lease of the runs kept (if any) and COMMIT.
func (c *lockedClaim) lease(ctx context.Context, ids []string) (runs []*store.Run, err error) {
	var b pgx.Batch
	if len(ids) > 0 {
		_, _ = c.q.ClaimRuns(ctx, pgdb.ClaimRunsParams{
			WorkerID: c.req.WorkerID, LeaseExpiresAt: ts(c.req.Now.Add(c.req.Lease)), Now: ts(c.req.Now), Ids: ids,
		})
		c.rec.queueRows(&b, func(rows pgx.Rows) error {
			claimed, err := pgx.CollectRows(rows, pgx.RowToStructByPos[pgdb.DurablyRun])
			if err != nil {
				return err
			}
			runs, err = decodeRuns(claimed)
			return err
		})
	}
	b.Queue("COMMIT")
	if err := c.send(ctx, &b, "claim runs"); err != nil {
		return nil, err
	}
	return runs, nil
}
