// Package durably runs jobs made of named steps whose results are persisted,
// so that a run interrupted by a crash or a deploy resumes from its last
// completed step. It is a Go port of the TypeScript library Durably
// (@coji/durably), on SQLite (embedded, the default) or PostgreSQL.
//
// A job is a Go function with a typed input and output. Inside it, each
// durable unit of work is a step, run with RunStep: the first execution
// records the step's result; a later execution of the same run (after a
// crash, a deploy, a lost lease) returns the recorded result without running
// the step again. Runs are claimed by workers through leases whose
// generation is a fencing token, so a worker that lost its lease can never
// overwrite the work of the one that took over.
//
//	eng, _ := durably.New(durably.Config{Store: st})
//	greet, _ := durably.Register(eng, &durably.Job[Input, Output]{
//		Name: "greet",
//		Run: func(ctx context.Context, s *durably.StepContext, in Input) (Output, error) {
//			msg, err := durably.RunStep(s, "compose", func(ctx context.Context) (string, error) {
//				return "hello " + in.Name, nil
//			})
//			return Output{Message: msg}, err
//		},
//	})
//	_ = eng.Init(ctx)
//	out, _ := greet.TriggerAndWait(ctx, Input{Name: "world"})
//
// Stores live in runtime/sqlitestore and runtime/pgstore; the HTTP handler
// in runtime/durablyhttp. See ARCHITECTURE.md for the path of a run.
package durably

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/durably-go/durably/internal/ulid"
	"github.com/durably-go/durably/store"
)

// Re-exported record types, so that users of the engine rarely need the
// store package.
type (
	// Run is the stored record of a run.
	Run = store.Run
	// StepRecord is the stored record of an executed step.
	StepRecord = store.Step
	// LogRecord is a persisted log record of a run.
	LogRecord = store.Log
	// Progress is what a run last reported about its advance.
	Progress = store.Progress
	// Status is the state of a run.
	Status = store.Status
	// Disposition says how a trigger was satisfied.
	Disposition = store.Disposition
	// Store is the storage interface the engine runs on.
	Store = store.Store
	// Attempt is one unsuccessful attempt in a run's history (Run.Attempts).
	Attempt = store.Attempt
)

// Run statuses and trigger dispositions.
const (
	StatusPending   = store.StatusPending
	StatusLeased    = store.StatusLeased
	StatusCompleted = store.StatusCompleted
	StatusFailed    = store.StatusFailed
	StatusCancelled = store.StatusCancelled

	Created    = store.Created
	Idempotent = store.Idempotent
	Coalesced  = store.Coalesced

	AttemptFailed   = store.AttemptFailed
	AttemptCrashed  = store.AttemptCrashed
	AttemptTimedOut = store.AttemptTimedOut
)

// Config configures an Engine. Zero values take the defaults of R-001.
type Config struct {
	// Store is where runs live. Required.
	Store store.Store
	// PollingInterval is how long an idle worker waits before it polls
	// again, and the default storage-poll interval of the wait helpers.
	// Triggers in this process, and on PostgreSQL in any process, wake
	// idle workers at once (D4), so polling is only the fallback.
	// Default 1s.
	PollingInterval time.Duration
	// MaxConcurrentRuns is the number of runs the worker executes at once,
	// 1 to 1000. Default 1.
	MaxConcurrentRuns int
	// LeaseDuration is how long a claim or renewal holds a run. Default 30s.
	LeaseDuration time.Duration
	// LeaseRenewInterval is how often an executing run renews its lease.
	// Default 5s.
	LeaseRenewInterval time.Duration
	// PreserveSteps keeps step and log rows after a run completes or fails.
	// By default they are deleted then.
	PreserveSteps bool
	// RetainRuns, when positive, purges terminal runs older than this
	// during idle maintenance, at most 100 a minute. ParseRetention
	// reads the original's "30d" / "12h" / "15m" form.
	RetainRuns time.Duration
	// Labels, when set, validates (and may normalise) the labels of every
	// trigger, including triggers without labels (D1).
	Labels LabelSchema
	// TenantLabels names the labels that identify a tenant (D11). When
	// set, idempotency keys, concurrency keys and coalescing are scoped by
	// the values of these labels: the same key in two tenants gives two
	// runs, a tenant's trigger never returns, coalesces onto or conflicts
	// with another tenant's run, and runs wait for each other's
	// concurrency key only within one tenant. A trigger missing one of
	// these labels is scoped with that label absent. WithGlobalKeys opts a
	// trigger out. Without TenantLabels every key is global, as in the
	// original. Runs triggered before TenantLabels was set keep their
	// global keys. Generated Config sets it from the labels durably.yaml
	// declares with tenant: true. Their keys and values together, as JSON,
	// are at most MaxKeyScopeBytes (docs/limits.md).
	TenantLabels []string
	// SelectiveLabels orders label keys from the most to the least
	// selective (a tenant id before an environment): a list filtered by
	// several labels walks the index of the first one present. Generated
	// Config sets it.
	SelectiveLabels []string
	// WorkerID names this engine's worker in lease_owner: at most
	// MaxWorkerIDBytes of UTF-8. Default "worker_" + a ULID, one per
	// engine.
	WorkerID string
	// Logger receives the engine's own diagnostics. Default slog.Default().
	Logger *slog.Logger
	// Now is the application clock; every stored time comes from it.
	// Default time.Now. Tests may supply their own.
	Now func() time.Time
	// Observer, when set, watches triggers, executions and step attempts,
	// for tracing and metrics (runtime/durablyotel: OpenTelemetry). Nil:
	// nothing is observed, at the cost of a nil check per hook.
	Observer Observer
}

// LabelSchema validates the labels of a trigger. It returns the labels to
// store, or an error whose message names the problem (it becomes
// "labels: <message>", HTTP 400).
type LabelSchema interface {
	ValidateLabels(labels map[string]string) (map[string]string, error)
}

// LabelSchemaFunc adapts a function to LabelSchema.
type LabelSchemaFunc func(labels map[string]string) (map[string]string, error)

// ValidateLabels calls f.
func (f LabelSchemaFunc) ValidateLabels(labels map[string]string) (map[string]string, error) {
	return f(labels)
}

// Engine triggers, executes and queries runs. It is safe for concurrent use.
type Engine struct {
	store  store.Store
	cfg    Config
	logger *slog.Logger
	ids    ulid.Generator
	events bus

	jobsMu sync.RWMutex
	jobs   map[string]*jobEntry
	// jobLimits is Job.MaxRunning of the jobs that have one, replaced (not
	// modified) on registration (store.ClaimRequest.JobLimits).
	jobLimits map[string]int
	// tenantLimits is Job.MaxRunningPerTenant likewise.
	tenantLimits map[string]int

	migrateMu sync.Mutex
	migrated  bool

	// transport carries events to and from other processes (D3), when the
	// store can.
	transport store.EventTransport

	worker worker
	sched  scheduler // periodic triggers (schedule.go)
	// running holds the abort (context.CancelCauseFunc) of each run that
	// executes here, by run id: cancelling a run ends its execution in this
	// process at once, and Stop ends them all.
	running sync.Map
	// outage is the database's unavailability as the engine's retried store
	// calls meet it, logged once per outage.
	outage outage
	// obs is Config.Observer; observed holds the context of each run it
	// watches execute here, by run id (observe.go).
	obs      Observer
	observed sync.Map
	// commits follows the transactions of transactional triggers
	// (txwatch.go).
	commits commitWatch
}

// New validates cfg and returns an engine. It does not touch the database:
// call Migrate (or Init) before use.
func New(cfg Config) (*Engine, error) {
	if cfg.Store == nil {
		return nil, validationErrorf("durably: Config.Store is required")
	}
	if cfg.MaxConcurrentRuns == 0 {
		cfg.MaxConcurrentRuns = 1
	}
	if cfg.MaxConcurrentRuns < 1 || cfg.MaxConcurrentRuns > 1000 {
		return nil, validationErrorf("maxConcurrentRuns must be between 1 and 1000")
	}
	if cfg.PollingInterval <= 0 {
		cfg.PollingInterval = time.Second
	}
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = 30 * time.Second
	}
	if cfg.LeaseRenewInterval <= 0 {
		cfg.LeaseRenewInterval = 5 * time.Second
	}
	if cfg.RetainRuns < 0 {
		return nil, validationErrorf("durably: Config.RetainRuns must not be negative")
	}
	if err := checkTenantLabels(cfg.TenantLabels); err != nil {
		return nil, err
	}
	cfg.TenantLabels = slices.Clone(cfg.TenantLabels)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	e := &Engine{
		store:  cfg.Store,
		cfg:    cfg,
		logger: cfg.Logger,
		jobs:   map[string]*jobEntry{},
	}
	if e.cfg.WorkerID == "" {
		e.cfg.WorkerID = "worker_" + e.newID()
	}
	if err := checkText("durably: Config.WorkerID", e.cfg.WorkerID, MaxWorkerIDBytes); err != nil {
		return nil, err
	}
	e.events.onPanic = func(r any, ev Event) {
		e.logger.Error("durably: event listener panicked", "event", ev.Type, "runId", ev.RunID, "panic", r)
	}
	e.worker.init(e)
	e.commits.init(e)
	if t, ok := cfg.Store.(store.EventTransport); ok {
		e.transport = t
		go e.receiveRemote(t.RemoteEvents())
	}
	e.attachObserver(cfg.Observer)
	return e, nil
}

// Store returns the engine's store.
func (e *Engine) Store() store.Store { return e.store }

// WorkerID returns the id this engine's worker writes into lease_owner.
func (e *Engine) WorkerID() string { return e.cfg.WorkerID }

// now is the application clock at the store's precision.
func (e *Engine) now() time.Time { return store.Truncate(e.cfg.Now()) }

func (e *Engine) newID() string { return e.ids.New(e.cfg.Now()) }

// Migrate creates or updates the schema. It is idempotent; concurrent calls
// share one migration and later calls return at once.
func (e *Engine) Migrate(ctx context.Context) error {
	e.migrateMu.Lock()
	defer e.migrateMu.Unlock()
	if e.migrated {
		return nil
	}
	if err := e.store.Migrate(ctx); err != nil {
		return fmt.Errorf("durably: migrate: %w", err)
	}
	e.migrated = true
	return nil
}

// Init migrates, then starts the worker.
func (e *Engine) Init(ctx context.Context) error {
	if err := e.Migrate(ctx); err != nil {
		return err
	}
	return e.Start()
}

// OnEvent calls fn for every event the engine emits, synchronously and in
// emission order, until the returned function is called. fn must not block:
// it runs on the goroutine that caused the event, often a run's.
func (e *Engine) OnEvent(fn func(Event)) (unsubscribe func()) {
	return e.events.subscribe(fn)
}

// Emit stamps and publishes an event, as if the engine had emitted it.
func (e *Engine) Emit(ev Event) { e.emit(ev) }

func (e *Engine) emit(ev Event) {
	now := e.now()
	e.events.emit(ev, now)
	if e.transport != nil && ev.Type != EventWorkerError && e.transport.Publishing() {
		ev.Timestamp = now
		b, err := ev.encodeTransport()
		if err == nil {
			err = e.transport.PublishEvents([][]byte{b})
		}
		if err != nil {
			e.logger.Warn("durably: event not published to other processes", "event", ev.Type, "err", err)
		}
	}
}

// workerError reports a failure that no caller sees: logged, and emitted as
// a worker:error event.
func (e *Engine) workerError(err error, context, runID string) {
	e.logger.WarnContext(e.runContext(runID), "durably: worker error", "context", context, "runId", runID, "err", err)
	e.emit(Event{Type: EventWorkerError, Error: err.Error(), Context: context, RunID: runID})
}

// abortRunning ends the execution of runID in this process, if it runs
// here, with cause.
func (e *Engine) abortRunning(runID string, cause error) {
	if abort, ok := e.running.Load(runID); ok {
		abort.(context.CancelCauseFunc)(cause)
	}
}

// receiveRemote re-emits the events other processes publish (D3). A remote
// cancellation also stops the run if it executes here.
func (e *Engine) receiveRemote(events <-chan []byte) {
	for b := range events {
		ev, err := decodeTransport(b)
		if err != nil {
			e.logger.Warn("durably: malformed remote event", "err", err)
			continue
		}
		if ev.Type == EventRunCancel {
			e.abortRunning(ev.RunID, ErrCancelled)
		}
		e.events.emit(ev, e.now())
	}
}

var retentionPattern = regexp.MustCompile(`^(\d+)(d|h|m)$`)

// ParseRetention reads a retention in the original's form: a whole number
// of days, hours or minutes ("30d", "12h", "15m"; "0d" is accepted, R-002).
func ParseRetention(s string) (time.Duration, error) {
	m := retentionPattern.FindStringSubmatch(s)
	if m == nil {
		//lint:ignore ST1005 the original's message, whose beginning R-002 fixes
		return 0, fmt.Errorf("Invalid duration format: %q. Use a number followed by d, h or m (e.g. \"30d\")", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n > int64(1<<62)/int64(24*time.Hour) {
		//lint:ignore ST1005 the original's message, whose beginning R-002 fixes
		return 0, fmt.Errorf("Invalid duration format: %q: number out of range", s)
	}
	unit := map[string]time.Duration{"d": 24 * time.Hour, "h": time.Hour, "m": time.Minute}[m[2]]
	return time.Duration(n) * unit, nil
}

// errorMessage is the message recorded for an error returned by a job,
// made fit to store (storedMessage).
func errorMessage(err error) string {
	if err == nil {
		return ""
	}
	var de *Error
	if errors.As(err, &de) {
		return storedMessage(de.Msg)
	}
	return storedMessage(err.Error())
}
