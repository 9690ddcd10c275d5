// Package pgstore is the PostgreSQL store of durably (pgx/v5): the backend
// for many workers in many processes sharing one database.
//
// Claims use FOR UPDATE SKIP LOCKED plus an advisory lock per concurrency
// key (S-031). Writes of lease holders (steps, progress, renewals,
// completions) and triggers go through one writer per store that commits
// whatever accumulated during the previous commit in one transaction, with
// one array statement per kind of write: many runs' writes cost a handful of
// round trips and one WAL flush, with synchronous_commit left on. Triggers
// NOTIFY idle workers in other processes (D4); polling remains the fallback.
package pgstore

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/durably-go/durably/internal/groupcommit"
	"github.com/durably-go/durably/internal/storekit"
	"github.com/durably-go/durably/internal/ulid"
	"github.com/durably-go/durably/runtime/pgstore/internal/pgdb"
	"github.com/durably-go/durably/store"
)

// Options tune a Store. The zero value is the default.
type Options struct {
	// Logger receives errors of background work. Default slog.Default().
	Logger *slog.Logger
	// DisableListen turns off LISTEN/NOTIFY: idle workers then learn of
	// other processes' triggers only by polling.
	DisableListen bool
	// WriteLanes is the number of group-commit writers, each committing its
	// own groups (on connections of the store's pool), so that one group's
	// statements run while another's commit is flushed (PostgreSQL merges
	// concurrent WAL flushes). A run's writes always take the same lane, so
	// they commit in the order they were made. The events published to
	// other processes take lane 0, so with more than one lane another
	// process may hear of a run's progress or log before that lane has
	// committed it (the event itself carries the progress). More lanes mean
	// smaller groups and more commits per run: on a 2-core machine shared
	// with the server, 2 lanes lost 9–20 % of `process` throughput to 1
	// (BENCHMARKS.md), so the default is 1; a server with cores to spare may
	// gain from 2. Default DefaultWriteLanes.
	WriteLanes int

	// Timeout bounds each call to the database but those below: a group of
	// writes, a claim, a read of one run, its steps or its logs, a renewal,
	// a sweep of maintenance. When it passes, the call fails with
	// store.ErrUnavailable and its connection is closed; a write may still
	// have been applied (the engine re-checks its fenced writes). These
	// statements take milliseconds on a healthy server: the default leaves
	// room for lock waits and a slow disk, and bounds the time the engine
	// waits on a connection that went silent when the liveness check
	// cannot tell (docs/operations.md). Default DefaultTimeout.
	Timeout time.Duration
	// BulkTimeout bounds the calls whose size the caller chooses: ListRuns
	// (a listing without a limit reads every run) and PurgeRuns. Default
	// DefaultBulkTimeout.
	BulkTimeout time.Duration
	// MigrateTimeout bounds Migrate. By default it has none of its own
	// (the caller's context still applies): a migration rewrites tables
	// for as long as that takes and waits for another process's migration
	// to end, and a deadline could only make it start over. A connection
	// that stops answering meanwhile is abandoned all the same by the
	// liveness check.
	MigrateTimeout time.Duration
}

// abandonedTransaction is how long the sessions of Open's pool may leave a
// transaction idle before the server ends it (see Open).
const abandonedTransaction = time.Minute

// DefaultWriteLanes is Options.WriteLanes when it is zero.
const DefaultWriteLanes = 1

// The defaults of Options.Timeout and Options.BulkTimeout.
const (
	DefaultTimeout     = 15 * time.Second
	DefaultBulkTimeout = 2 * time.Minute
)

// Store is the PostgreSQL store. Create it with Open or New.
type Store struct {
	pool     *pgxpool.Pool
	ownsPool bool
	q        *pgdb.Queries
	logger   *slog.Logger
	// lanes are the group-commit writers (Options.WriteLanes); laneSeed
	// spreads runs over them.
	lanes    []*groupcommit.Writer[*op]
	laneSeed maphash.Seed
	stats    writeStats

	// instance tags this store's notifications so that it ignores its own.
	instance string
	channel  string
	// schema is the schema of the store's tables (the pool's
	// current_schema), which a caller's transaction must use too (EnqueueTx).
	schema string

	ids           ulid.Generator
	listenOnce    sync.Once
	listening     chan struct{} // closed once the first LISTEN took effect
	listeningOnce sync.Once
	closeOnce     sync.Once
	disableListen bool
	wakeups       chan struct{}
	remote        chan []byte

	watchMu  sync.Mutex
	watchers int
	publish  atomic.Bool // another process watches for events
	// lockedClaims: the last claim met candidates that need the full
	// claim's advisory locks (a concurrency key, a job limit), so the next
	// one starts there rather than with ClaimReady's leases (Claim).
	lockedClaims atomic.Bool
	presenceOnce sync.Once
	closing      chan struct{}
	listenDone   chan struct{}
	// life ends when the store closes, and with it the store's own work.
	life    context.Context
	endLife context.CancelFunc

	// The bounds of calls (Options).
	timeout, bulkTimeout, migrateTimeout time.Duration
	// conns are the connections the pool dialled, watched by the liveness
	// check; nil for a pool that ConfigurePool did not set up.
	conns     *connSet
	watchDone chan struct{}
	lastReset atomic.Int64 // unix nanoseconds of the last pool reset
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at dsn (a postgres:// URL or key=value
// string; search_path may be set in it) with a pool the store owns.
//
// Its sessions end a transaction left idle for abandonedTransaction
// (idle_in_transaction_session_timeout, unless dsn sets it): a connection
// that goes silent mid-transaction leaves its session on the server,
// holding its locks (a run's row, say, which other processes then wait
// for), until the server notices the client is gone, which by default
// takes hours. The store never leaves a transaction idle for more than a
// moment. (A pool passed to New is the caller's to configure.)
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: parse dsn: %w", err)
	}
	ConfigurePool(cfg)
	if _, set := cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !set {
		cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = fmt.Sprint(abandonedTransaction.Milliseconds())
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: connect: %w", err)
	}
	s, err := New(ctx, pool, opts)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.ownsPool = true
	return s, nil
}

// ConfigurePool sets what the store wants from a pool. Open applies it;
// call it on the config of a pool you pass to New.
//
// Sessions get plan_cache_mode=force_generic_plan, because the store's
// array statements plan the same whatever their arguments, and planning
// them anew for every execution (PostgreSQL's choice for the first
// executions and whenever a custom plan looks cheaper) costs more than
// running them.
//
// Connections are watched, so that one that stops answering is abandoned
// (docs/operations.md): the pool's dialer is wrapped (TCP keepalive and,
// on Linux, TCP_USER_TIMEOUT, so that the kernel gives up on a peer that
// acknowledges nothing for 25 s; a connect without connect_timeout gets
// 5 s) and a query tracer is added (pgx's multitracer keeps one already
// set); idle connections the pool pings before use get 3 s to answer
// unless PingTimeout is set. Calling it twice changes nothing more.
func ConfigurePool(cfg *pgxpool.Config) {
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	if _, set := cfg.ConnConfig.RuntimeParams["plan_cache_mode"]; !set {
		cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	}
	watchConns(cfg)
}

// New uses a pool the caller owns; Close leaves it open. Tables are found
// through the pool's search_path. See ConfigurePool.
func New(ctx context.Context, pool *pgxpool.Pool, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.Timeout = cmp.Or(max(opts.Timeout, 0), DefaultTimeout)
	opts.BulkTimeout = cmp.Or(max(opts.BulkTimeout, 0), DefaultBulkTimeout)
	q := pgdb.New(pool)
	bounded, cancel := withDeadline(ctx, opts.Timeout, "Timeout")
	schema, err := q.CurrentSchema(bounded)
	cancel()
	if sae := (pgx.ScanArgError{}); errors.As(err, &sae) {
		// current_schema() is NULL, which is the only thing that fails to
		// scan into its string, when no schema of the search_path exists:
		// say that rather than pgx's "cannot scan NULL into *string".
		path := pool.Config().ConnConfig.RuntimeParams["search_path"]
		if path == "" {
			path = "the server's default"
		}
		return nil, fmt.Errorf("pgstore: search_path (%s) names no existing schema; create the schema or fix the DSN: %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("pgstore: connect: %w", err)
	}
	s := &Store{
		pool:   pool,
		q:      q,
		logger: opts.Logger,
		// Notifications are per database, not per schema: the channel
		// carries the schema so that two durably schemas in one database
		// do not wake each other.
		channel:        "durably_" + schema,
		schema:         schema,
		disableListen:  opts.DisableListen,
		wakeups:        make(chan struct{}, 1),
		remote:         make(chan []byte, 4096),
		closing:        make(chan struct{}),
		listenDone:     make(chan struct{}),
		listening:      make(chan struct{}),
		watchDone:      make(chan struct{}),
		timeout:        opts.Timeout,
		bulkTimeout:    opts.BulkTimeout,
		migrateTimeout: opts.MigrateTimeout,
		conns:          watchedConns(pool),
	}
	s.life, s.endLife = context.WithCancel(context.Background())
	s.instance = s.ids.New(time.Now())
	n := opts.WriteLanes
	if n <= 0 {
		n = DefaultWriteLanes
	}
	s.laneSeed = maphash.MakeSeed()
	dropped := (&storekit.DroppedWrites{Logger: s.logger}).Report
	for range n {
		s.lanes = append(s.lanes, groupcommit.New(s.apply, 512, dropped))
	}
	go s.watch()
	return s, nil
}

// Pool returns the store's connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close commits pending writes, stops listening and, if the store opened
// the pool, closes it. Calling it again does nothing. It returns within
// about Options.Timeout whatever the database does: writes still pending
// then fail (those being committed may have been), and, if the store
// opened the pool, calls still waiting on it fail too.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		var lanes sync.WaitGroup
		for _, w := range s.lanes {
			lanes.Go(func() { w.Close(ctx) })
		}
		lanes.Wait()
		close(s.closing)
		s.endLife()
		s.listenOnce.Do(func() { close(s.listenDone) })
		<-s.listenDone
		<-s.watchDone
		if s.ownsPool {
			// Connections still in use (a listing, a claim) are cut, so that
			// the pool, which waits for them, closes now.
			s.conns.close()
			s.pool.Close()
		}
	})
	return nil
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

// Migrate applies the store's migrations newer than the database's version,
// holding an advisory lock so that concurrent processes migrate one at a
// time (R-116, S-015).
func (s *Store) Migrate(ctx context.Context) error {
	err := s.MigrateTo(ctx, math.MaxInt, "")
	if err == nil {
		s.presenceOnce.Do(func() { go s.presenceLoop() })
	}
	return err
}

// MigrateTo applies the migrations up to version and then runs seed, a
// script, in the same transaction. It exists for tests that build a
// database as an older version left it (storetest.Migrator); use Migrate.
func (s *Store) MigrateTo(ctx context.Context, version int, seed string) error {
	all, err := migrations()
	if err != nil {
		return fmt.Errorf("pgstore: %w", err)
	}
	ctx, cancel := withDeadline(ctx, s.migrateTimeout, "MigrateTimeout")
	defer cancel()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return storekit.Migrate(ctx, txOps{tx, s.q.WithTx(tx)}, all, version, seed, time.Now())
	})
	if err != nil {
		return s.failed(ctx, fmt.Errorf("pgstore: migrate: %w", err))
	}
	return nil
}

func decodeRun(r pgdb.DurablyRun) (*store.Run, error) {
	raw := storekit.RawRun{
		ID: r.ID, JobName: r.JobName, Input: r.Input, Status: r.Status,
		IdempotencyKey: r.IdempotencyKey.String, ConcurrencyKey: r.ConcurrencyKey.String, KeyScope: r.KeyScope, Labels: string(r.Labels),
		CurrentStepIndex: r.CurrentStepIndex, CompletedStepCount: r.CompletedStepCount,
		Progress: r.Progress.String, Output: r.Output.String, Error: r.Error.String,
		LeaseOwner: r.LeaseOwner.String, LeaseExpiresAt: fromTS(r.LeaseExpiresAt), LeaseGeneration: r.LeaseGeneration,
		StartedAt: fromTS(r.StartedAt), CompletedAt: fromTS(r.CompletedAt), CreatedAt: fromTS(r.CreatedAt), UpdatedAt: fromTS(r.UpdatedAt),
		RunAt: fromTS(r.RunAt), Priority: r.Priority, Attempt: r.Attempt, Crashes: r.Crashes, Attempts: r.Attempts.String, TraceContext: r.TraceContext.String,
		ParentRunID: r.ParentRunID.String, WaitingFor: r.WaitingFor.String, Wakes: r.Wakes,
	}
	return raw.Decode()
}

func decodeRuns(rows []pgdb.DurablyRun) ([]*store.Run, error) {
	return storekit.DecodeAll(rows, decodeRun)
}

func optionalRun(r pgdb.DurablyRun, err error) (*store.Run, error) {
	return storekit.Optional(r, err, pgx.ErrNoRows, decodeRun)
}

func decodeStep(r pgdb.DurablyStep) (*store.Step, error) {
	raw := storekit.RawStep{ID: r.ID, RunID: r.RunID, Name: r.Name, Index: r.Index, Status: r.Status,
		Output: r.Output.String, Error: r.Error.String, StartedAt: fromTS(r.StartedAt), CompletedAt: fromTS(r.CompletedAt),
		Attempt: r.Attempt}
	return raw.Decode(), nil
}

func decodeSteps(rows []pgdb.DurablyStep) ([]*store.Step, error) {
	return storekit.DecodeAll(rows, decodeStep)
}

// GetRun reads one run.
func (s *Store) GetRun(ctx context.Context, id string) (*store.Run, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	run, err := optionalRun(s.q.GetRun(ctx, id))
	return run, s.failed(ctx, err)
}

// ListRuns reads runs newest first; with labels it is driven by the first
// label's index (S-045). A limit of 0 or less is sent as NULL, PostgreSQL's
// "no limit", so offset without limit works (D5).
func (s *Store) ListRuns(ctx context.Context, f store.RunFilter) ([]*store.Run, error) {
	ctx, cancel := withDeadline(ctx, s.bulkTimeout, "BulkTimeout")
	defer cancel()
	statuses := make([]string, len(f.Statuses))
	for i, st := range f.Statuses {
		statuses[i] = string(st)
	}
	jobs := jobNames(f)
	var lim pgtype.Int8
	if f.Limit > 0 {
		lim = pgtype.Int8{Int64: int64(f.Limit), Valid: true}
	}
	from, upperAt, upperID := window(f)
	drive, otherLabels, err := otherLabels(f)
	if err != nil {
		return nil, fmt.Errorf("pgstore: list runs: %w", err)
	}
	var rows []pgdb.DurablyRun
	if drive == "" {
		rows, err = s.q.ListRuns(ctx, pgdb.ListRunsParams{
			Statuses: statuses, JobNames: jobs, LabelKeys: []string{}, LabelValues: []string{},
			CreatedFrom: from, UpperAt: upperAt, UpperID: upperID,
			Off: int64(f.Offset), Lim: lim,
		})
	} else {
		rows, err = s.q.ListRunsByLabel(ctx, pgdb.ListRunsByLabelParams{
			Key: drive, Value: f.Labels[drive],
			Statuses: statuses, JobNames: jobs, OtherLabels: otherLabels,
			CreatedFrom: from, UpperAt: upperAt, UpperID: upperID,
			Off: int64(f.Offset), Lim: lim,
		})
	}
	if err != nil {
		return nil, s.failed(ctx, fmt.Errorf("pgstore: list runs: %w", err))
	}
	return decodeRuns(rows)
}

// CountRuns counts runs per status; with labels it is driven by the first
// label's index, as ListRuns.
func (s *Store) CountRuns(ctx context.Context, f store.RunFilter) (map[store.Status]int, error) {
	from, to, _ := window(store.RunFilter{CreatedFrom: f.CreatedFrom, CreatedTo: f.CreatedTo})
	drive, otherLabels, err := otherLabels(f)
	if err != nil {
		return nil, fmt.Errorf("pgstore: count runs: %w", err)
	}
	var row pgdb.CountRunsRow
	if drive == "" {
		row, err = s.q.CountRuns(ctx, pgdb.CountRunsParams{JobNames: jobNames(f), CreatedFrom: from, CreatedTo: to})
	} else {
		var byLabel pgdb.CountRunsByLabelRow
		byLabel, err = s.q.CountRunsByLabel(ctx, pgdb.CountRunsByLabelParams{
			Key: drive, Value: f.Labels[drive], JobNames: jobNames(f), OtherLabels: otherLabels,
			CreatedFrom: from, CreatedTo: to,
		})
		row = pgdb.CountRunsRow(byLabel)
	}
	if err != nil {
		return nil, classify(fmt.Errorf("pgstore: count runs: %w", err))
	}
	return storekit.StatusCounts(row.Pending, row.Leased, row.Completed, row.Failed, row.Cancelled), nil
}

func jobNames(f store.RunFilter) []string {
	if f.JobNames == nil {
		return []string{}
	}
	return f.JobNames
}

// window returns the bounds of the list queries: the lower bound of
// creation times (-infinity for none) and the pair every listed run sorts
// before (infinity for none).
func window(f store.RunFilter) (from, upperAt pgtype.Timestamptz, upperID string) {
	from = pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
	if !f.CreatedFrom.IsZero() {
		from = ts(f.CreatedFrom)
	}
	at, id, ok := f.UpperBound()
	if !ok {
		return from, pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}, ""
	}
	return from, ts(at), id
}

// otherLabels returns the label whose index drives a filtered query and the
// other labels as a JSON object, which the run's labels must contain.
func otherLabels(f store.RunFilter) (drive string, others []byte, err error) {
	drive, rest := f.DrivingLabel()
	if drive == "" {
		return "", nil, nil
	}
	m := make(map[string]string, len(rest))
	for _, k := range rest {
		m[k] = f.Labels[k]
	}
	others, err = json.Marshal(m)
	return drive, others, err
}

// GetSteps reads a run's steps.
func (s *Store) GetSteps(ctx context.Context, runID string) ([]*store.Step, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.q.GetSteps(ctx, runID)
	if err != nil {
		return nil, s.failed(ctx, fmt.Errorf("pgstore: get steps: %w", err))
	}
	return decodeSteps(rows)
}

// GetCompletedSteps reads a run's completed steps.
func (s *Store) GetCompletedSteps(ctx context.Context, runID string) ([]*store.Step, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.q.GetCompletedSteps(ctx, runID)
	if err != nil {
		return nil, s.failed(ctx, fmt.Errorf("pgstore: get completed steps: %w", err))
	}
	return decodeSteps(rows)
}

// GetLogs reads a run's logs.
func (s *Store) GetLogs(ctx context.Context, runID string) ([]*store.Log, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.q.GetLogs(ctx, runID)
	if err != nil {
		return nil, s.failed(ctx, fmt.Errorf("pgstore: get logs: %w", err))
	}
	return storekit.DecodeAll(rows, decodeLog)
}

func decodeLog(r pgdb.DurablyLog) (*store.Log, error) {
	raw := storekit.RawLog{ID: r.ID, RunID: r.RunID, StepName: r.StepName.String, Level: r.Level, Message: r.Message, Data: r.Data.String, CreatedAt: fromTS(r.CreatedAt)}
	return raw.Decode(), nil
}

// Maintain drops parked event payloads older than a minute; PostgreSQL
// keeps its own house otherwise.
func (s *Store) Maintain(ctx context.Context, now time.Time) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.failed(ctx, s.q.DeleteEventPayloadsBefore(ctx, ts(now.Add(-payloadRetention))))
}

// CountPending counts the pending runs per job, due at now or later
// (store.PendingCounter).
func (s *Store) CountPending(ctx context.Context, now time.Time) ([]store.PendingCount, error) {
	rows, err := s.q.CountPending(ctx, ts(now))
	if err != nil {
		return nil, classify(fmt.Errorf("pgstore: count pending runs: %w", err))
	}
	return storekit.PendingCounts(rows, func(r pgdb.CountPendingRow) (string, int64, int64) {
		return r.JobName, r.Due, r.Pending
	}), nil
}
