// Package sqlitestore is the embedded SQLite store of durably: a file path is
// all it needs, no server, no cgo (modernc.org/sqlite).
//
// Durability is SQLite's strongest practical setting: WAL with
// synchronous=FULL, so a trigger that returned and a step recorded as
// completed survive a power loss. Throughput comes from group commit
// instead: every write of the process goes through one writer connection,
// and the writer commits whatever accumulated while the previous commit was
// being made durable in a single transaction (S-020). Reads use a separate
// pool of connections and never wait for the writer.
package sqlitestore

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/durably-go/durably/internal/groupcommit"
	"github.com/durably-go/durably/internal/storekit"
	"github.com/durably-go/durably/runtime/sqlitestore/internal/sqlitedb"
	"github.com/durably-go/durably/runtime/sqlitestore/internal/sqlitedriver"
	"github.com/durably-go/durably/store"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Options tune a Store. The zero value is the durable default.
type Options struct {
	// Synchronous is SQLite's synchronous pragma. The default FULL makes
	// every commit durable. NORMAL is faster and may lose the last
	// commits on power loss (never on a process crash); it is offered for
	// benchmarks and caches, never the default.
	Synchronous string
	// BusyTimeout is how long a statement waits for another process's
	// lock before failing. Default 10s.
	BusyTimeout time.Duration
	// ReadConns bounds the read pool. Default 4.
	ReadConns int
	// Logger receives errors of background work. Default slog.Default().
	Logger *slog.Logger
}

// Page caches, per connection, in KiB (a negative cache_size). SQLite's
// default is 2,000 KiB per connection, the largest part of the store's
// resident memory: the writer's cache fills up as a busy database is
// written. Its hot pages are few (the rightmost leaves and the interior
// pages of the tables and indexes a run's writes touch), and the file's
// other pages stay in the operating system's cache, a read away, so a
// smaller cache costs no measurable throughput (process, 8 slots). Readers
// serve pages of listings and single runs.
const (
	writerCache = "&_pragma=cache_size(-1000)"
	readerCache = "&_pragma=cache_size(-256)"
)

// Store is the SQLite store. Create it with Open.
type Store struct {
	path        string
	logger      *slog.Logger
	busyTimeout time.Duration // Options.BusyTimeout, restored after a checkpoint

	wdb    *sql.DB // exactly one connection: the writer
	rdb    *sql.DB // readers
	adb    *sql.DB // the application's (DB), for transactions a trigger joins
	file   string  // the database's file as SQLite names it (pragma_database_list)
	writer *groupcommit.Writer[op]

	closeOnce sync.Once
	closeErr  error
	stats     writeStats

	mu sync.Mutex // guards wq, rq, retired
	wq *sqlitedb.Queries
	rq *sqlitedb.Queries
	// retired are the statements a later prepare replaced: a reader that
	// took them before may still be using them, so they close with the
	// store.
	retired []*sqlitedb.Queries

	checkpoint checkpointState
	fault      atomic.Int32 // a Fault, for fault-injection tests (InjectFault)
}

// op is one unit of work for the writer. It runs inside the group's
// transaction (or outside any transaction when noTx is set) and reports
// infrastructure failures only; outcomes such as "lease refused" or
// "conflict" are results it stores in its closure.
type op struct {
	noTx bool
	fn   func(ctx context.Context, tx *sql.Tx, q *sqlitedb.Queries) error
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database file at path. path may also
// be a "file:" URI. Call the engine's Migrate (or Store.Migrate) before use.
func Open(path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlitestore: empty database path")
	}
	if opts.Synchronous == "" {
		opts.Synchronous = "FULL"
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 10 * time.Second
	}
	if opts.ReadConns <= 0 {
		opts.ReadConns = 4
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if sqlitedriver.URI && !strings.HasPrefix(path, "file:") {
		path = "file:" + path
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=synchronous(%s)&_pragma=foreign_keys(0)",
		opts.BusyTimeout.Milliseconds(), opts.Synchronous)
	wdb, err := sql.Open(sqlitedriver.Name, path+sep+common+writerCache+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	// Open the writer connection now so that a bad path fails here and
	// the WAL switch happens before any reader connects.
	if err := wdb.Ping(); err != nil {
		wdb.Close()
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	rdb, err := sql.Open(sqlitedriver.Name, path+sep+common+readerCache)
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	rdb.SetMaxOpenConns(opts.ReadConns)
	rdb.SetMaxIdleConns(opts.ReadConns)
	rdb.SetConnMaxLifetime(0)
	rdb.SetConnMaxIdleTime(0)
	file, err := mainFile(context.Background(), wdb)
	if err != nil {
		wdb.Close()
		rdb.Close()
		return nil, err
	}
	// The application's pool connects on first use only. Its connections
	// keep SQLite's default for foreign keys, which the store's turn off.
	appSettings := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=synchronous(%s)",
		opts.BusyTimeout.Milliseconds(), opts.Synchronous)
	adb, err := sql.Open(sqlitedriver.Name, path+sep+appSettings+readerCache+"&_txlock=immediate")
	if err != nil {
		wdb.Close()
		rdb.Close()
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	s := &Store{
		adb:         adb,
		file:        file,
		path:        path,
		logger:      opts.Logger,
		busyTimeout: opts.BusyTimeout,
		wdb:         wdb,
		rdb:         rdb,
		wq:          sqlitedb.New(wdb),
		rq:          sqlitedb.New(rdb),
	}
	s.writer = groupcommit.New(s.apply, 256, (&storekit.DroppedWrites{Logger: s.logger}).Report)
	return s, nil
}

// Close commits pending writes and closes the database. It gives the
// pending writes the busy timeout to commit (the wait for another
// process's lock is the one wait a write has), then gives up on them: they
// fail, unapplied (the transaction being committed may have been).
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.busyTimeout+closeMargin)
		defer cancel()
		s.writer.Close(ctx)
		s.mu.Lock()
		defer s.mu.Unlock()
		errs := []error{s.wq.Close(), s.rq.Close()}
		for _, q := range s.retired {
			errs = append(errs, q.Close())
		}
		s.closeErr = errors.Join(append(errs, s.adb.Close(), s.rdb.Close(), s.wdb.Close())...)
	})
	return s.closeErr
}

// closeMargin is what Close gives pending writes beyond the busy timeout:
// their own execution and commit, milliseconds each.
const closeMargin = 2 * time.Second

func (s *Store) queries() (w, r *sqlitedb.Queries) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wq, s.rq
}

// apply is the writer's commit function: operations that need no
// transaction run first, each alone; the others are committed as one group
// under groupcommit's failure policy.
func (s *Store) apply(ctx context.Context, ops []op) []error {
	errs := make([]error, len(ops))
	var grouped []op
	var at []int
	for i, o := range ops {
		if o.noTx {
			errs[i] = s.runGroup(ctx, []op{o})
		} else {
			grouped, at = append(grouped, o), append(at, i)
		}
	}
	for k, err := range groupcommit.Grouped(ctx, grouped, s.runGroup, transient, nil) {
		errs[at[k]] = err
	}
	return classifyAll(errs)
}

func classifyAll(errs []error) []error {
	for i := range errs {
		errs[i] = classify(errs[i])
	}
	return errs
}

func (s *Store) runGroup(ctx context.Context, ops []op) error {
	wq, _ := s.queries()
	if len(ops) == 1 && ops[0].noTx {
		return ops[0].fn(ctx, nil, wq)
	}
	if err := s.injected(); err != nil {
		return fmt.Errorf("sqlitestore: begin: %w", err)
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlitestore: begin: %w", err)
	}
	q := wq.WithTx(tx)
	for _, o := range ops {
		if err := o.fn(ctx, tx, q); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlitestore: commit: %w", err)
	}
	s.stats.commits.Add(1)
	s.stats.writes.Add(int64(len(ops)))
	return nil
}

type writeStats struct{ commits, writes atomic.Int64 }

// WriteStats reports the transactions the writer committed and the writes
// they carried.
func (s *Store) WriteStats() store.WriteStats {
	return store.WriteStats{Commits: s.stats.commits.Load(), Writes: s.stats.writes.Load()}
}

// write runs fn in the writer's next group and waits for the commit. When
// ctx ends first it returns ctx's error while fn may still run later, so a
// caller reads what fn writes only after write returned nil.
func (s *Store) write(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx, q *sqlitedb.Queries) error) error {
	return s.writer.Do(ctx, op{fn: fn})
}

// migrationFiles are the store's own migrations, from version 3 (sqlc
// reads them too, after the shared history of storekit.StoreMigrations).
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrations are migrationFiles, read once; a malformed set is a bug of
// this package that every test catches.
var migrations = sync.OnceValues(func() ([]storekit.Migration, error) {
	return storekit.StoreMigrations(migrationFiles, "migrations")
})

// Migrate applies the store's migrations newer than the database's
// version (R-116, S-015).
func (s *Store) Migrate(ctx context.Context) error { return s.MigrateTo(ctx, math.MaxInt, "") }

// MigrateTo applies the migrations up to version and then runs seed, a
// script, in the same transaction. It exists for tests that build a
// database as an older version left it (storetest.Migrator); use Migrate.
func (s *Store) MigrateTo(ctx context.Context, version int, seed string) error {
	all, err := migrations()
	if err != nil {
		return fmt.Errorf("sqlitestore: %w", err)
	}
	err = s.write(ctx, func(ctx context.Context, tx *sql.Tx, _ *sqlitedb.Queries) error {
		ops := migrateOps{txOps{tx: tx, q: sqlitedb.New(tx)}}
		return storekit.Migrate(ctx, ops, all, version, seed, time.Now())
	})
	if err != nil {
		return fmt.Errorf("sqlitestore: migrate: %w", err)
	}
	if err := s.prepare(ctx); err != nil {
		// Prepared statements only save parsing. They fail to prepare on a
		// schema older than this store's statements (MigrateTo an older
		// version, as the tests of migrating from an old database do); the
		// unprepared ones then fail only if used.
		s.logger.Warn("durably: statements not prepared; using unprepared statements", "err", err)
	}
	return nil
}

// prepare swaps in prepared statements once the tables exist: statements
// are then parsed once per connection instead of once per call.
func (s *Store) prepare(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	wq, err := sqlitedb.Prepare(ctx, s.wdb)
	if err != nil {
		return fmt.Errorf("sqlitestore: prepare: %w", err)
	}
	rq, err := sqlitedb.Prepare(ctx, s.rdb)
	if err != nil {
		wq.Close()
		return fmt.Errorf("sqlitestore: prepare: %w", err)
	}
	s.retired = append(s.retired, s.wq, s.rq)
	s.wq, s.rq = wq, rq
	return nil
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func decodeRun(r sqlitedb.DurablyRun) (*store.Run, error) {
	raw := storekit.RawRun{
		ID: r.ID, JobName: r.JobName, Input: r.Input, Status: r.Status,
		IdempotencyKey: r.IdempotencyKey.String, ConcurrencyKey: r.ConcurrencyKey.String, KeyScope: r.KeyScope, Labels: r.Labels,
		CurrentStepIndex: r.CurrentStepIndex, CompletedStepCount: r.CompletedStepCount,
		Progress: r.Progress.String, Output: r.Output.String, Error: r.Error.String,
		LeaseOwner: r.LeaseOwner.String, LeaseGeneration: r.LeaseGeneration,
		Priority: r.Priority, Attempt: r.Attempt, Crashes: r.Crashes, Attempts: r.Attempts.String, TraceContext: r.TraceContext.String,
		ParentRunID: r.ParentRunID.String, WaitingFor: r.WaitingFor.String, Wakes: r.Wakes,
	}
	if err := storekit.ParseTimes(
		storekit.TimeText{Dst: &raw.RunAt, Src: r.RunAt.String},
		storekit.TimeText{Dst: &raw.LeaseExpiresAt, Src: r.LeaseExpiresAt.String},
		storekit.TimeText{Dst: &raw.StartedAt, Src: r.StartedAt.String},
		storekit.TimeText{Dst: &raw.CompletedAt, Src: r.CompletedAt.String},
		storekit.TimeText{Dst: &raw.CreatedAt, Src: r.CreatedAt},
		storekit.TimeText{Dst: &raw.UpdatedAt, Src: r.UpdatedAt},
	); err != nil {
		return nil, fmt.Errorf("sqlitestore: run %s: %w", r.ID, err)
	}
	return raw.Decode()
}

func decodeRuns(rows []sqlitedb.DurablyRun) ([]*store.Run, error) {
	return storekit.DecodeAll(rows, decodeRun)
}

func decodeStep(r sqlitedb.DurablyStep) (*store.Step, error) {
	raw := storekit.RawStep{ID: r.ID, RunID: r.RunID, Name: r.Name, Index: r.Index, Status: r.Status,
		Output: r.Output.String, Error: r.Error.String, Attempt: r.Attempt}
	if err := storekit.ParseTimes(
		storekit.TimeText{Dst: &raw.StartedAt, Src: r.StartedAt},
		storekit.TimeText{Dst: &raw.CompletedAt, Src: r.CompletedAt.String},
	); err != nil {
		return nil, fmt.Errorf("sqlitestore: step %s: %w", r.ID, err)
	}
	return raw.Decode(), nil
}

func decodeSteps(rows []sqlitedb.DurablyStep) ([]*store.Step, error) {
	return storekit.DecodeAll(rows, decodeStep)
}

// optionalRun turns sql.ErrNoRows into a nil run.
func optionalRun(r sqlitedb.DurablyRun, err error) (*store.Run, error) {
	return storekit.Optional(r, err, sql.ErrNoRows, decodeRun)
}

// Enqueue inserts runs all or nothing.
func (s *Store) Enqueue(ctx context.Context, items []store.NewRun) ([]store.Enqueued, error) {
	if len(items) == 0 {
		return nil, nil
	}
	var out []store.Enqueued
	var conflict error
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx, q *sqlitedb.Queries) error {
		out, conflict = nil, nil
		// The group's transaction carries other callers' writes too, so
		// this call's items are undone alone, through a savepoint.
		rollback, release, err := txOps{tx, q}.Savepoint(ctx)
		if err != nil {
			return err
		}
		res, err := storekit.Enqueue(ctx, enqueueOps{q}, items)
		if err != nil {
			if rbErr := rollback(ctx); rbErr != nil {
				return errors.Join(err, rbErr)
			}
			var ce *store.ConflictError
			if errors.As(err, &ce) {
				conflict = err
				return nil
			}
			return err
		}
		out = res
		return release(ctx)
	})
	if err != nil {
		return nil, err
	}
	if conflict != nil {
		return nil, conflict
	}
	return out, nil
}

type enqueueOps struct{ q *sqlitedb.Queries }

func (e enqueueOps) Insert(ctx context.Context, runs []*store.Run) ([]bool, error) {
	inserted := make([]bool, len(runs))
	for i, r := range runs {
		created := store.FormatTime(r.CreatedAt)
		n, err := e.q.InsertRun(ctx, sqlitedb.InsertRunParams{
			ID: r.ID, JobName: r.JobName, Input: string(r.Input), Status: string(r.Status),
			IdempotencyKey: nullString(r.IdempotencyKey), ConcurrencyKey: nullString(r.ConcurrencyKey), KeyScope: r.KeyScope,
			Labels: storekit.EncodeLabels(r.Labels), LeaseOwner: nullString(r.LeaseOwner),
			LeaseExpiresAt: nullString(storekit.OptionalTime(r.LeaseExpiresAt)), LeaseGeneration: r.LeaseGeneration,
			StartedAt: nullString(storekit.OptionalTime(r.StartedAt)), CreatedAt: created,
			RunAt: nullString(storekit.OptionalTime(r.RunAt)), Ready: storekit.Ready(r), Priority: int64(r.Priority),
			TraceContext: nullString(r.TraceContext), ParentRunID: nullString(r.ParentRunID),
		})
		if err != nil {
			return nil, fmt.Errorf("sqlitestore: insert run: %w", err)
		}
		if n == 0 {
			continue
		}
		inserted[i] = true
		for k, v := range r.Labels {
			if err := e.q.InsertRunLabel(ctx, sqlitedb.InsertRunLabelParams{RunID: r.ID, Key: k, Value: v, CreatedAt: created}); err != nil {
				return nil, fmt.Errorf("sqlitestore: insert label: %w", err)
			}
		}
	}
	return inserted, nil
}

func (e enqueueOps) ByIdempotencyKey(ctx context.Context, job, scope, key string) (*store.Run, error) {
	return optionalRun(e.q.GetRunByIdempotencyKey(ctx, sqlitedb.GetRunByIdempotencyKeyParams{JobName: job, KeyScope: scope, IdempotencyKey: nullString(key)}))
}

func (e enqueueOps) PendingByConcurrencyKey(ctx context.Context, job, scope, key string) (*store.Run, error) {
	return optionalRun(e.q.GetPendingRunByConcurrencyKey(ctx, sqlitedb.GetPendingRunByConcurrencyKeyParams{JobName: job, KeyScope: scope, ConcurrencyKey: nullString(key)}))
}

// promoteBatch bounds the waiting runs one claim makes ready: a burst of
// runs falling due at once is promoted over a few claims, earliest first,
// rather than in one long write.
const promoteBatch = 1000

// Claim leases up to req.Limit runs (S-030), after promoting the waiting
// runs that are due: first, in one statement, the leading candidates that
// need no check (ClaimBatch), then the rest one statement each (ClaimNext).
// Job limits are exact: each ClaimNext counts the live leases that the
// statements before it, in this transaction of the single writer, left.
func (s *Store) Claim(ctx context.Context, req store.ClaimRequest) ([]*store.Run, error) {
	if req.Limit <= 0 {
		return nil, nil
	}
	limits, err := encodeJobLimits(req.JobLimits)
	if err != nil {
		return nil, err
	}
	tenantLimits, err := encodeJobLimits(req.TenantLimits)
	if err != nil {
		return nil, err
	}
	var runs []*store.Run
	err = s.write(ctx, func(ctx context.Context, _ *sql.Tx, q *sqlitedb.Queries) error {
		now := store.FormatTime(req.Now)
		if _, err := q.PromoteDue(ctx, sqlitedb.PromoteDueParams{Now: now, Lim: promoteBatch}); err != nil {
			return fmt.Errorf("sqlitestore: claim: promote due runs: %w", err)
		}
		params := sqlitedb.ClaimNextParams{
			WorkerID:       req.WorkerID,
			LeaseExpiresAt: store.FormatTime(req.Now.Add(req.Lease)),
			Now:            now,
			HasLimits:      boolInt(len(req.JobLimits)+len(req.TenantLimits) > 0),
			JobLimits:      limits,
			TenantLimits:   tenantLimits,
		}
		rows, err := q.ClaimBatch(ctx, sqlitedb.ClaimBatchParams{
			WorkerID: params.WorkerID, LeaseExpiresAt: params.LeaseExpiresAt, Now: now,
			HasLimits: params.HasLimits, JobLimits: limits, TenantLimits: tenantLimits, Lim: int64(req.Limit),
		})
		if err != nil {
			return fmt.Errorf("sqlitestore: claim: %w", err)
		}
		if runs, err = decodeRuns(rows); err != nil {
			return fmt.Errorf("sqlitestore: claim: %w", err)
		}
		slices.SortFunc(runs, claimOrder)
		for len(runs) < req.Limit {
			run, err := optionalRun(q.ClaimNext(ctx, params))
			if err != nil {
				return fmt.Errorf("sqlitestore: claim: %w", err)
			}
			if run == nil {
				break
			}
			runs = append(runs, run)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return runs, nil
}

// claimOrder is the claim's order: priority (smaller first), then age.
func claimOrder(a, b *store.Run) int {
	if c := cmp.Compare(a.Priority, b.Priority); c != 0 {
		return c
	}
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// RenewLease extends an unexpired lease.
func (s *Store) RenewLease(ctx context.Context, lease store.Lease, now, expiresAt time.Time) (bool, error) {
	var n int64
	err := s.write(ctx, func(ctx context.Context, _ *sql.Tx, q *sqlitedb.Queries) (err error) {
		n, err = q.RenewLease(ctx, sqlitedb.RenewLeaseParams{
			LeaseExpiresAt: store.FormatTime(expiresAt), Now: store.FormatTime(now),
			ID: lease.RunID, Generation: lease.Generation,
		})
		return err
	})
	if err != nil {
		return false, err
	}
	return n == 1, nil
}

// ReleaseLease hands the run back to pending or, when a same-key pending
// run forbids that, by expiring its lease now (D12).
func (s *Store) ReleaseLease(ctx context.Context, lease store.Lease, now time.Time) (bool, error) {
	var ok bool
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx, q *sqlitedb.Queries) (err error) {
		ok, err = storekit.ReleaseLease(ctx, txOps{tx, q}, lease, now)
		return err
	})
	if err != nil {
		return false, err
	}
	return ok, nil
}

// SaveStep records a step fenced by generation (S-036).
func (s *Store) SaveStep(ctx context.Context, lease store.Lease, step *store.Step) (bool, error) {
	var ok bool
	err := s.write(ctx, func(ctx context.Context, _ *sql.Tx, q *sqlitedb.Queries) error {
		n, err := insertStep(ctx, q, lease, step)
		if err != nil {
			return err
		}
		if n == 0 {
			ok = false
			return nil
		}
		if step.Status == store.StepCompleted {
			if _, err := q.AdvanceStepCounters(ctx, sqlitedb.AdvanceStepCountersParams{
				NextIndex: int64(step.Index + 1), Now: store.FormatTime(step.CompletedAt), ID: lease.RunID, Generation: lease.Generation,
			}); err != nil {
				return fmt.Errorf("sqlitestore: advance step counters: %w", err)
			}
		}
		ok = true
		return nil
	})
	if err != nil {
		return false, err
	}
	return ok, nil
}

// encodeJobLimits renders the limits as the JSON object ClaimNext reads;
// a negative limit is a caller's bug, refused rather than read as "none".
func encodeJobLimits(limits map[string]int) (string, error) {
	for job, n := range limits {
		if n < 0 {
			return "", fmt.Errorf("sqlitestore: claim: job limit of %q is %d, want >= 0", job, n)
		}
	}
	if len(limits) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(limits)
	if err != nil {
		return "", fmt.Errorf("sqlitestore: claim: job limits: %w", err)
	}
	return string(b), nil
}

// insertStep is the fenced insert of S-036; 0 rows means refused.
func insertStep(ctx context.Context, q *sqlitedb.Queries, lease store.Lease, step *store.Step) (int64, error) {
	n, err := q.InsertStep(ctx, sqlitedb.InsertStepParams{
		ID: step.ID, RunID: lease.RunID, Name: step.Name, StepIndex: int64(step.Index), Status: string(step.Status),
		Output: nullString(string(step.Output)), Error: nullString(step.Error),
		StartedAt: store.FormatTime(step.StartedAt), CompletedAt: nullString(store.FormatTime(step.CompletedAt)), Generation: lease.Generation,
		Attempt: storekit.StepAttempt(step),
	})
	if err != nil {
		return 0, fmt.Errorf("sqlitestore: save step %q: %w", step.Name, err)
	}
	return n, nil
}

// SetProgress queues a fenced progress write.
func (s *Store) SetProgress(ctx context.Context, lease store.Lease, progress *store.Progress, now time.Time) error {
	params := sqlitedb.SetProgressParams{
		Progress: nullString(storekit.EncodeProgress(progress)), Now: store.FormatTime(now),
		ID: lease.RunID, Generation: lease.Generation,
	}
	return s.writer.Submit(op{fn: func(ctx context.Context, _ *sql.Tx, q *sqlitedb.Queries) error {
		_, err := q.SetProgress(ctx, params)
		return err
	}})
}

// FinishRun records fin.Steps and completes or fails the run (R-072,
// R-073) and, if asked, deletes its steps and logs, all in one transaction
//
func (s *Store) FinishRun(ctx context.Context, lease store.Lease, fin store.Finish) (bool, error) {
	var ok bool
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx, q *sqlitedb.Queries) error {
		ok = false
		if len(fin.Steps) > 0 {
			rollback, release, err := txOps{tx, q}.Savepoint(ctx)
			if err != nil {
				return err
			}
			for _, st := range fin.Steps {
				n, err := insertStep(ctx, q, lease, st)
				if err != nil {
					return err
				}
				if n == 0 { // refused: the finish is refused too
					return rollback(ctx)
				}
			}
			if err := release(ctx); err != nil {
				return err
			}
		}
		now := store.FormatTime(fin.Now)
		cur, count := int64(fin.CurrentStepIndex), int64(fin.CompletedStepCount)
		var n int64
		var err error
		switch fin.Status {
		case store.StatusCompleted:
			n, err = q.CompleteRun(ctx, sqlitedb.CompleteRunParams{Output: nullString(string(fin.Output)), CurrentStepIndex: cur, CompletedStepCount: count, Now: now, ID: lease.RunID, Generation: lease.Generation})
		case store.StatusFailed:
			n, err = q.FailRun(ctx, sqlitedb.FailRunParams{Error: fin.Error, Attempts: nullString(storekit.EncodeAttempts(fin.Attempts)), CurrentStepIndex: cur, CompletedStepCount: count, Now: now, ID: lease.RunID, Generation: lease.Generation})
		default:
			return fmt.Errorf("sqlitestore: finish with status %q", fin.Status)
		}
		if err != nil {
			return fmt.Errorf("sqlitestore: finish run: %w", err)
		}
		if n == 0 {
			return nil
		}
		ok = true
		return finished(ctx, txOps{tx, q}, lease.RunID, fin)
	})
	if err != nil {
		return false, err
	}
	return ok, nil
}

// finished does what a run's finish does besides its own row, in its
// transaction: its steps and logs go (unless preserved), its undelivered
// signals too, and its parent counts its end (S-061).
func finished(ctx context.Context, o txOps, runID string, fin store.Finish) error {
	if fin.DeleteSteps {
		if err := o.DeleteStepsAndLogs(ctx, runID); err != nil {
			return err
		}
	}
	if err := o.q.DeleteSignalsOfRun(ctx, runID); err != nil {
		return fmt.Errorf("sqlitestore: delete signals: %w", err)
	}
	if fin.ParentRunID != "" {
		return o.WakeParent(ctx, fin.ParentRunID, fin.Now)
	}
	return nil
}

// DeferRun records d.Steps and hands the run back to wait until d.Until, in
// one transaction, fenced by generation (store.Store.DeferRun).
func (s *Store) DeferRun(ctx context.Context, lease store.Lease, d store.Deferral) (bool, error) {
	d.Until = storekit.DeferUntil(d)
	var ok bool
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx, q *sqlitedb.Queries) error {
		ok = false
		rollback, release, err := txOps{tx, q}.Savepoint(ctx)
		if err != nil {
			return err
		}
		for _, st := range d.Steps {
			n, err := insertStep(ctx, q, lease, st)
			if err != nil {
				return errors.Join(err, rollback(ctx))
			}
			if n == 0 { // refused: the deferral is refused too
				return rollback(ctx)
			}
		}
		waitingFor, awaiting, seen := storekit.WaitColumns(d.Wait)
		n, err := q.DeferRun(ctx, sqlitedb.DeferRunParams{
			WaitingFor: nullString(waitingFor), Awaiting: awaiting, SeenWakes: seen,
			RunAt: store.FormatTime(d.Until), Now: store.FormatTime(d.Now), Attempt: int64(d.Attempt),
			Attempts: nullString(storekit.EncodeAttempts(d.Attempts)), CurrentStepIndex: int64(d.CurrentStepIndex), CompletedStepCount: int64(d.CompletedStepCount),
			ID: lease.RunID, Generation: lease.Generation,
		})
		if err != nil {
			return errors.Join(fmt.Errorf("sqlitestore: defer run: %w", err), rollback(ctx))
		}
		if n == 0 {
			return rollback(ctx)
		}
		ok = true
		return release(ctx)
	})
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
	return s.writer.Submit(op{fn: func(ctx context.Context, _ *sql.Tx, q *sqlitedb.Queries) error {
		for _, l := range logs {
			if err := q.InsertLog(ctx, sqlitedb.InsertLogParams{
				ID: l.ID, RunID: l.RunID, StepName: nullString(l.StepName), Level: l.Level, Message: l.Message,
				Data: nullString(string(l.Data)), CreatedAt: store.FormatTime(l.CreatedAt),
			}); err != nil {
				return fmt.Errorf("sqlitestore: insert log: %w", err)
			}
		}
		return nil
	}})
}

// CancelRun cancels a pending or leased run and its active descendants
// (S-037, R-234).
func (s *Store) CancelRun(ctx context.Context, req store.CancelRequest) (store.Cancellation, error) {
	var out store.Cancellation
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx, q *sqlitedb.Queries) (err error) {
		out, err = storekit.CancelRun(ctx, txOps{tx, q}, req)
		return err
	})
	if err != nil {
		return store.Cancellation{}, err
	}
	return out, nil
}

// DeleteRun removes a terminal run and its children (S-040).
func (s *Store) DeleteRun(ctx context.Context, id string) (*store.Run, error) {
	var run *store.Run
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx, q *sqlitedb.Queries) (err error) {
		run, err = storekit.DeleteRun(ctx, txOps{tx, q}, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return run, nil
}

// PurgeRuns deletes old terminal runs (S-041).
func (s *Store) PurgeRuns(ctx context.Context, olderThan time.Time, limit int) (int, error) {
	var n int
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx, q *sqlitedb.Queries) (err error) {
		n, err = storekit.PurgeRuns(ctx, txOps{tx, q}, olderThan, limit)
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// ReleaseExpiredLeases implements S-039 with D12 (storekit).
func (s *Store) ReleaseExpiredLeases(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx, q *sqlitedb.Queries) (err error) {
		n, err = storekit.ReleaseExpiredLeases(ctx, txOps{tx, q}, now)
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// PatchRun is the unfenced write of storetest.Patcher (S-047), for the
// contract suite; production code never calls it.
func (s *Store) PatchRun(ctx context.Context, id string, p store.RunPatch) error {
	f, opt := storekit.Flatten(p), func(t time.Time) sql.NullString { return nullString(storekit.OptionalTime(t)) }
	params := sqlitedb.UpdateRunForTestParams{ID: id, Now: store.FormatTime(time.Now()), SetStatus: f.SetStatus, Status: f.Status,
		SetCurrentStepIndex: f.SetCurrentStepIndex, CurrentStepIndex: f.CurrentStepIndex, SetLeaseOwner: f.SetLeaseOwner, LeaseOwner: nullString(f.LeaseOwner),
		SetLeaseExpiresAt: f.SetLeaseExpiresAt, LeaseExpiresAt: opt(f.LeaseExpiresAt), SetStartedAt: f.SetStartedAt, StartedAt: opt(f.StartedAt),
		SetCompletedAt: f.SetCompletedAt, CompletedAt: opt(f.CompletedAt), SetCreatedAt: f.SetCreatedAt, CreatedAt: store.FormatTime(f.CreatedAt)}
	return s.write(ctx, func(ctx context.Context, _ *sql.Tx, q *sqlitedb.Queries) error {
		return q.UpdateRunForTest(ctx, params)
	})
}

// GetRun reads one run.
func (s *Store) GetRun(ctx context.Context, id string) (*store.Run, error) {
	_, rq := s.queries()
	run, err := optionalRun(rq.GetRun(ctx, id))
	return run, classify(err)
}

// ListRuns reads runs newest first; with labels it is driven by the first
// label's index (S-045).
func (s *Store) ListRuns(ctx context.Context, f store.RunFilter) ([]*store.Run, error) {
	_, rq := s.queries()
	statuses := make([]string, len(f.Statuses))
	for i, st := range f.Statuses {
		statuses[i] = string(st)
	}
	limit := int64(-1) // SQLite's "no limit", so offset without limit works (D5)
	if f.Limit > 0 {
		limit = int64(f.Limit)
	}
	from, upperAt, upperID := window(f)
	drive, pairs := labelPairs(f)
	var rows []sqlitedb.DurablyRun
	var err error
	if drive == "" {
		rows, err = rq.ListRuns(ctx, sqlitedb.ListRunsParams{
			FilterStatus: boolInt(len(statuses) > 0), Statuses: jsonList(statuses),
			FilterJob: boolInt(len(f.JobNames) > 0), JobNames: jsonList(f.JobNames),
			CreatedFrom: from, UpperAt: upperAt, UpperID: upperID,
			Off: int64(f.Offset), Lim: limit,
		})
	} else {
		rows, err = rq.ListRunsByLabel(ctx, sqlitedb.ListRunsByLabelParams{
			Key: drive, Value: f.Labels[drive],
			FilterStatus: boolInt(len(statuses) > 0), Statuses: jsonList(statuses),
			FilterJob: boolInt(len(f.JobNames) > 0), JobNames: jsonList(f.JobNames),
			LabelCount: int64(len(pairs)), LabelPairs: jsonList(pairs),
			CreatedFrom: from, UpperAt: upperAt, UpperID: upperID,
			Off: int64(f.Offset), Lim: limit,
		})
	}
	if err != nil {
		return nil, classify(fmt.Errorf("sqlitestore: list runs: %w", err))
	}
	return decodeRuns(rows)
}

// CountRuns counts runs per status; with labels it is driven by the first
// label's index, as ListRuns.
func (s *Store) CountRuns(ctx context.Context, f store.RunFilter) (map[store.Status]int, error) {
	_, rq := s.queries()
	from, to, _ := window(store.RunFilter{CreatedFrom: f.CreatedFrom, CreatedTo: f.CreatedTo})
	drive, pairs := labelPairs(f)
	var row sqlitedb.CountRunsRow
	var err error
	if drive == "" {
		row, err = rq.CountRuns(ctx, sqlitedb.CountRunsParams{
			FilterJob: boolInt(len(f.JobNames) > 0), JobNames: jsonList(f.JobNames),
			CreatedFrom: from, CreatedTo: to,
		})
	} else {
		var byLabel sqlitedb.CountRunsByLabelRow
		byLabel, err = rq.CountRunsByLabel(ctx, sqlitedb.CountRunsByLabelParams{
			Key: drive, Value: f.Labels[drive],
			FilterJob: boolInt(len(f.JobNames) > 0), JobNames: jsonList(f.JobNames),
			LabelCount: int64(len(pairs)), LabelPairs: jsonList(pairs),
			CreatedFrom: from, CreatedTo: to,
		})
		row = sqlitedb.CountRunsRow(byLabel)
	}
	if err != nil {
		return nil, classify(fmt.Errorf("sqlitestore: count runs: %w", err))
	}
	return storekit.StatusCounts(row.Pending, row.Leased, row.Completed, row.Failed, row.Cancelled), nil
}

// noUpperBound sorts after every stored time (digits): the upper end of a
// window that has none.
const noUpperBound = "~"

// window returns the bounds of the list queries: the lower bound of
// creation times ("" for none) and the pair every listed run sorts before.
func window(f store.RunFilter) (from, upperAt, upperID string) {
	if !f.CreatedFrom.IsZero() {
		from = store.FormatTime(f.CreatedFrom)
	}
	at, id, ok := f.UpperBound()
	if !ok {
		return from, noUpperBound, ""
	}
	return from, store.FormatTime(at), id
}

// labelPairs returns the label whose index drives a filtered query and the
// other labels as "key\x00value" pairs.
func labelPairs(f store.RunFilter) (drive string, pairs []string) {
	drive, rest := f.DrivingLabel()
	for _, k := range rest {
		pairs = append(pairs, k+"\x00"+f.Labels[k])
	}
	return drive, pairs
}

func jsonList(values []string) string {
	if len(values) == 0 {
		return "[]"
	}
	b, err := json.Marshal(values)
	if err != nil { // a []string always marshals
		panic(err)
	}
	return string(b)
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// GetSteps reads a run's steps.
func (s *Store) GetSteps(ctx context.Context, runID string) ([]*store.Step, error) {
	_, rq := s.queries()
	rows, err := rq.GetSteps(ctx, runID)
	if err != nil {
		return nil, classify(fmt.Errorf("sqlitestore: get steps: %w", err))
	}
	return decodeSteps(rows)
}

// GetCompletedSteps reads a run's completed steps.
func (s *Store) GetCompletedSteps(ctx context.Context, runID string) ([]*store.Step, error) {
	_, rq := s.queries()
	rows, err := rq.GetCompletedSteps(ctx, runID)
	if err != nil {
		return nil, classify(fmt.Errorf("sqlitestore: get completed steps: %w", err))
	}
	return decodeSteps(rows)
}

// GetLogs reads a run's logs.
func (s *Store) GetLogs(ctx context.Context, runID string) ([]*store.Log, error) {
	_, rq := s.queries()
	rows, err := rq.GetLogs(ctx, runID)
	if err != nil {
		return nil, classify(fmt.Errorf("sqlitestore: get logs: %w", err))
	}
	return storekit.DecodeAll(rows, decodeLog)
}

func decodeLog(r sqlitedb.DurablyLog) (*store.Log, error) {
	raw := storekit.RawLog{ID: r.ID, RunID: r.RunID, StepName: r.StepName.String, Level: r.Level, Message: r.Message, Data: r.Data.String}
	if err := storekit.ParseTimes(storekit.TimeText{Dst: &raw.CreatedAt, Src: r.CreatedAt}); err != nil {
		return nil, fmt.Errorf("sqlitestore: log %s: %w", r.ID, err)
	}
	return raw.Decode(), nil
}

// Wakeups returns nil: SQLite has no cross-process notification, so other
// processes are found by polling.
func (s *Store) Wakeups() <-chan struct{} { return nil }

// CountPending counts the pending runs per job, due at now or later
// (store.PendingCounter).
func (s *Store) CountPending(ctx context.Context, now time.Time) ([]store.PendingCount, error) {
	_, rq := s.queries()
	rows, err := rq.CountPending(ctx, store.FormatTime(now))
	if err != nil {
		return nil, classify(fmt.Errorf("sqlitestore: count pending runs: %w", err))
	}
	return storekit.PendingCounts(rows, func(r sqlitedb.CountPendingRow) (string, int64, int64) {
		return r.JobName, r.Due, r.Pending
	}), nil
}
