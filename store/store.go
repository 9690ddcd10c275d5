// Package store is the seam between the durably engine and a database: the
// records the engine keeps (runs, steps, logs) and the Store interface every
// database driver implements. It holds what an author of a store needs and
// nothing else; the algorithms this module's two stores share are in
// internal/storekit (see ARCHITECTURE.md, "Adding a store").
//
// A Store is a dumb, fast, correct persistence layer. It enforces the
// invariants that must hold under concurrency (fencing by lease generation,
// one pending run per job and concurrency key, one completed step per run and
// name, at most one leased run per key scope and concurrency key) because only the
// database can enforce them across processes. Everything else (validation,
// events, error messages, retries of the protocol) belongs to the engine.
//
// The drivers are github.com/durably-go/durably/runtime/sqlitestore and
// github.com/durably-go/durably/runtime/pgstore; both pass the contract suite
// in github.com/durably-go/durably/runtime/storetest.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Store persists runs, steps and logs. All methods are safe for concurrent
// use. Methods that write on behalf of a lease holder take a Lease and report
// false, changing nothing, when the lease is no longer held.
//
// Every method returns within a bound of the store's own, whatever the
// database does and whatever the context: the engine calls with contexts
// that never end, so a connection that stops answering must not hold a
// call, nor the writes queued behind it, for ever. A call past its bound
// fails with ErrUnavailable; a write may then have been applied or not,
// as after any connection lost mid-commit. Close returns within a bound
// too.
type Store interface {
	// Migrate brings the database's schema to the version this store
	// needs, applying the store's own migrations newer than the recorded
	// version, each in its own transaction with its version record. It is
	// idempotent and safe to call from several processes at once (R-116,
	// S-015). Each store owns its migrations and schema: the engine never
	// sees SQL.
	Migrate(ctx context.Context) error
	// Close stops the store's background work and releases its
	// connections. Writes submitted before Close are committed first.
	Close() error

	// Enqueue inserts new pending runs in one transaction, all or nothing
	// . Items are processed in order and later items see
	// earlier ones. Each result is the created run, or the existing run
	// for an idempotent or coalesced item; keys match only
	// within the run's KeyScope (D11). A pending concurrency-key conflict
	// fails the whole call with *ConflictError.
	Enqueue(ctx context.Context, runs []NewRun) ([]Enqueued, error)

	// Claim leases up to req.Limit claimable runs, by Priority (smaller
	// first) and then oldest first (R-050 … R-054): pending runs whose RunAt
	// is not after req.Now and expired leases, never two live leases of
	// one (KeyScope, ConcurrencyKey) in any job, nor more live leases of a
	// job than req.JobLimits allows, nor of a job in one key scope than
	// req.TenantLimits allows. It returns fewer, or none, when fewer
	// are claimable. A store reaches the due runs through an index and does
	// not scan runs that are not due yet.
	Claim(ctx context.Context, req ClaimRequest) ([]*Run, error)
	// RenewLease extends an unexpired lease to expiresAt.
	RenewLease(ctx context.Context, lease Lease, now, expiresAt time.Time) (bool, error)
	// ReleaseLease hands a leased run back so that another worker can take
	// it at once (used by a stopping worker): to pending, or, when a pending
	// sibling of its job, scope and concurrency key forbids that, by ending
	// its lease now and advancing its generation, so that the next claim
	// takes it over as an expired lease (D12). Either way the holder's
	// writes are refused from then on. It reports false when the lease was
	// no longer held.
	ReleaseLease(ctx context.Context, lease Lease, now time.Time) (bool, error)
	// SaveStep records a step and, for a completed step, advances the
	// run's step counters, atomically (R-084, S-036).
	SaveStep(ctx context.Context, lease Lease, step *Step) (bool, error)
	// SetProgress queues a fenced write of the run's progress and
	// returns without waiting: progress is fire-and-forget. Like every
	// queued write, it is committed no later than any write that follows
	// it; a refused or failed write is dropped.
	SetProgress(ctx context.Context, lease Lease, progress *Progress, now time.Time) error
	// FinishRun completes or fails the run, fenced by generation only
	// after recording fin.Steps in the same transaction; with
	// DeleteSteps it removes the run's steps and logs there too.
	FinishRun(ctx context.Context, lease Lease, fin Finish) (bool, error)
	// DeferRun hands the leased run back to wait until d.Until, fenced by
	// generation only like FinishRun, after recording d.Steps in the same
	// transaction: the run becomes pending (started_at kept) with RunAt =
	// d.Until, no lease owner or expiry, and d.Attempt. It reports false,
	// changing nothing, when the lease is no longer held.
	DeferRun(ctx context.Context, lease Lease, d Deferral) (bool, error)
	// AppendLogs queues log records (D10) without waiting; they are
	// committed no later than any write that follows them.
	AppendLogs(ctx context.Context, logs []*Log) error

	// CancelRun cancels a pending or leased run (R-096, S-037) and, in the
	// same transaction, its active descendants, and returns what
	// it did: the run as it is afterwards together with its status
	// before, and the descendants it cancelled. A nil run means no such
	// run; a terminal previous status means nothing was changed. With
	// req.DeleteSteps, each cancelled run that was pending loses its steps
	// and logs. Every cancelled run loses its undelivered signals,
	// and the parent of the run, if it waits for its children, counts its
	// end (S-061).
	CancelRun(ctx context.Context, req CancelRequest) (Cancellation, error)
	// DeleteRun removes a terminal run with its steps, logs and labels
	// (R-103, S-040) and returns it; it returns nil when the run does not
	// exist or is not terminal.
	DeleteRun(ctx context.Context, id string) (*Run, error)
	// PurgeRuns removes up to limit terminal runs completed before
	// olderThan, oldest first, and returns how many (R-104, S-041).
	PurgeRuns(ctx context.Context, olderThan time.Time, limit int) (int, error)
	// ReleaseExpiredLeases resets expired leases to pending (R-062,
	// S-039). An expired lease whose job, scope and concurrency key has a
	// pending run is left as it is, to be claimed as an expired lease: it
	// is never failed for its sibling (D12, unlike S-038).
	ReleaseExpiredLeases(ctx context.Context, now time.Time) (int, error)
	// Maintain does the database's own housekeeping while the worker is
	// idle (SQLite: WAL checkpoint, R-141, R-142). It decides itself how
	// often work is due.
	Maintain(ctx context.Context, now time.Time) error

	// GetRun returns the run, or nil when it does not exist.
	GetRun(ctx context.Context, id string) (*Run, error)
	// ListRuns returns runs newest first.
	ListRuns(ctx context.Context, filter RunFilter) ([]*Run, error)
	// CountRuns returns how many runs match filter, per status (statuses
	// with none are absent). Its Statuses, After, Limit and Offset are
	// ignored: the counts are those of every status under the rest of the
	// filter, as a list's status summary shows them. Like ListRuns, it reads
	// a label filter through the driving label's index.
	CountRuns(ctx context.Context, filter RunFilter) (map[Status]int, error)
	// GetSteps returns the run's steps in index order.
	GetSteps(ctx context.Context, runID string) ([]*Step, error)
	// GetCompletedSteps returns the run's completed steps (replay, R-080).
	GetCompletedSteps(ctx context.Context, runID string) ([]*Step, error)
	// GetLogs returns the run's logs in creation order.
	GetLogs(ctx context.Context, runID string) ([]*Log, error)
	// GetChildren returns the runs whose ParentRunID is parentID, oldest
	// first, through an index of children.
	GetChildren(ctx context.Context, parentID string) ([]*Run, error)

	// SendSignal keeps sig for its run, if the run is active (pending or
	// leased), and reports whether it did (S-062). In the same
	// transaction it counts an event of the run (Run.Wakes) and, when the
	// run is pending and waits for a signal of sig's name (Deferral.Wait),
	// makes it claimable at once.
	SendSignal(ctx context.Context, sig *Signal) (bool, error)
	// ReceiveSignal takes the oldest signal named name kept for the leased
	// run and records rec, a completed step whose Output becomes the
	// signal's payload, in one transaction fenced like SaveStep (S-063):
	// a signal is delivered to one step, once. With no such signal it
	// writes nothing, and the receipt holds no signal but the run's Wakes
	// as the transaction saw it, for the deferral that follows
	// (Wait.SeenWakes). It reports false, writing nothing, when the lease
	// is no longer held.
	ReceiveSignal(ctx context.Context, lease Lease, name string, rec *Step) (Receipt, bool, error)
	// GetSignals returns the signals kept for an active run, oldest first;
	// none for a run that ended (its undelivered signals are discarded).
	GetSignals(ctx context.Context, runID string) ([]*Signal, error)

	// Wakeups delivers a value when another process created claimable
	// work, so that idle workers need not wait for their next poll (D4).
	// Stores without cross-process notification return nil.
	Wakeups() <-chan struct{}
}

// EventTransport is implemented by stores that carry engine events between
// the processes sharing a database (D3), so that a server streams the
// events of a run another server executes.
type EventTransport interface {
	// PublishEvents queues encoded events for the other processes and
	// returns at once; delivery is best-effort, in order per publisher.
	PublishEvents(payloads [][]byte) error
	// Publishing reports whether PublishEvents would carry events anywhere
	// now, so that an engine encodes events only when some process
	// watches.
	Publishing() bool
	// RemoteEvents delivers the payloads other processes published. The
	// channel closes when the store closes.
	RemoteEvents() <-chan []byte
	// WatchRemote declares that this process wants other processes'
	// events until release is called. Stores may publish only while some
	// process watches, so that nobody pays for events nobody reads.
	WatchRemote() (release func())
}

// Status is the state of a run.
type Status string

// The run statuses. Terminal: completed, failed, cancelled. Active: pending, leased.
const (
	StatusPending   Status = "pending"
	StatusLeased    Status = "leased"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
)

// Statuses lists every run status in the order the protocol names them.
var Statuses = []Status{StatusPending, StatusLeased, StatusCompleted, StatusFailed, StatusCancelled}

// Terminal reports whether the status is final.
func (s Status) Terminal() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// Active reports whether the run may still execute.
func (s Status) Active() bool { return s == StatusPending || s == StatusLeased }

// Valid reports whether s is one of the five statuses.
func (s Status) Valid() bool { return s.Terminal() || s.Active() }

// StepStatus is the outcome recorded for a step.
type StepStatus string

// The step statuses.
const (
	StepCompleted StepStatus = "completed"
	StepFailed    StepStatus = "failed"
	StepCancelled StepStatus = "cancelled"
)

// Disposition says how a trigger was satisfied.
type Disposition string

// The trigger dispositions.
const (
	Created    Disposition = "created"
	Idempotent Disposition = "idempotent"
	Coalesced  Disposition = "coalesced"
)

// Run is the stored record of one execution request of a job.
// Zero time values and empty strings stand for SQL NULL.
type Run struct {
	ID                 string
	JobName            string
	Input              json.RawMessage
	Status             Status
	IdempotencyKey     string
	ConcurrencyKey     string
	KeyScope           string // where both keys are unique (D11): "" is global; not on the wire
	CurrentStepIndex   int
	CompletedStepCount int
	Progress           *Progress
	Output             json.RawMessage // nil unless completed with a value
	Error              string
	Labels             map[string]string
	LeaseOwner         string
	LeaseExpiresAt     time.Time
	LeaseGeneration    int64
	StartedAt          time.Time
	CompletedAt        time.Time
	CreatedAt          time.Time
	UpdatedAt          time.Time
	// RunAt is when a pending run becomes claimable, on the engine's clock
	// (the claim's Now); zero: at once. Set by a trigger (run-at, delay)
	// and by DeferRun; kept after the claim, cleared when a lease goes back
	// to pending without a deferral.
	RunAt time.Time
	// Priority orders claims: a smaller number is claimed first, then
	// older runs first (River's and DBOS's convention). Default 0.
	Priority int
	// Attempt counts the deferrals for a retry (Deferral.Attempt); 0 for a
	// fresh run.
	Attempt int
	// Crashes counts the executions that ended without recording an
	// outcome: the holder of an expired lease that was not handed back
	// (a process that died, hung or lost its database). The claim that
	// takes such a lease over, or the sweep that resets it to pending,
	// counts it and appends its entry to Attempts.
	Crashes int
	// Attempts is the run's history of unsuccessful attempts, oldest
	// first, kept with the run whatever happens to its steps.
	Attempts []Attempt
	// TraceContext is the trigger's trace context (W3C traceparent and
	// tracestate as JSON), carried so that every execution joins the
	// trigger's trace; "" when there is none.
	TraceContext string
	// ParentRunID is the run whose step triggered this one, a child
	// "" for a run triggered otherwise.
	ParentRunID string
	// WaitingFor says what a pending run that was handed back with a
	// Deferral.Wait waits for besides RunAt: WaitingChildren, or
	// WaitingSignalPrefix and a signal's name; "" otherwise.
	WaitingFor string
	// Wakes counts the events addressed to the run so far: the ends of its
	// children and the signals sent to it. A deferral with a Wait compares
	// it with what the engine saw (S-060).
	Wakes int64
}

// What a waiting run waits for (Run.WaitingFor).
const (
	WaitingChildren     = "children"
	WaitingSignalPrefix = "signal:"
)

// Receipt is what ReceiveSignal found: the signal it delivered, or none
// and the run's Wakes.
type Receipt struct {
	Signal *Signal
	Wakes  int64
}

// Signal is a named message to a run, with a JSON payload, kept until a
// step of the run receives it.
type Signal struct {
	ID        string
	RunID     string
	Name      string
	Payload   json.RawMessage
	CreatedAt time.Time
}

// Attempt is one unsuccessful attempt of a run, as its history keeps it.
type Attempt struct {
	// Number is the run's attempt number: 1 for the first execution.
	Number int `json:"attempt"`
	// Outcome is AttemptFailed, AttemptCrashed or AttemptTimedOut.
	Outcome string `json:"outcome"`
	// Step is the step that failed, "" for the job's body or a crash.
	Step string `json:"step,omitempty"`
	// Error is what went wrong.
	Error string `json:"error"`
	// At is when the attempt ended (a crash: when its lease expired).
	At time.Time `json:"at"`
	// Worker is the worker whose execution crashed.
	Worker string `json:"worker,omitempty"`
}

// The outcomes of an unsuccessful attempt.
const (
	AttemptFailed   = "failed"
	AttemptCrashed  = "crashed"
	AttemptTimedOut = "timed out"
)

// Progress is what a run last reported about its advance.
type Progress struct {
	Current int     `json:"current"`
	Total   *int    `json:"total,omitempty"`
	Message *string `json:"message,omitempty"`
}

// Step is the stored record of one executed step.
type Step struct {
	ID          string
	RunID       string
	Name        string
	Index       int
	Status      StepStatus
	Output      json.RawMessage
	Error       string
	StartedAt   time.Time
	CompletedAt time.Time
	// Attempt is the 1-based attempt this row records; a step retried in
	// the run keeps one row per failed attempt. 0 is stored as 1.
	Attempt int
}

// Log is a persisted log record of a run (D10).
type Log struct {
	ID        string
	RunID     string
	StepName  string // empty outside a step
	Level     string // info, warn or error
	Message   string
	Data      json.RawMessage
	CreatedAt time.Time
}

// NewRun is a run to enqueue. Run must carry ID, JobName, Input, Labels,
// optional keys, CreatedAt and optionally RunAt and Priority; the store sets
// the rest as in R-010. A run whose RunAt is after CreatedAt waits, unclaimed,
// until a claim's Now reaches RunAt.
type NewRun struct {
	Run *Run
	// Coalesce returns the existing pending run of the same job, key scope
	// and concurrency key instead of failing with a conflict.
	Coalesce bool
	// Claim, when set, inserts the run already leased (generation 1,
	// started now), as if a claim had taken it in the same transaction:
	// a worker with an idle slot starts a run it triggers itself without a
	// second commit. Only for runs without a concurrency key, nor a
	// RunAt after CreatedAt (the store ignores it for those).
	Claim *Claim
}

// Claim leases a new run to a worker until ExpiresAt.
type Claim struct {
	WorkerID  string
	ExpiresAt time.Time
}

// Enqueued is the outcome of one enqueued item.
type Enqueued struct {
	Run         *Run
	Disposition Disposition
}

// ClaimRequest asks for up to Limit runs to lease to WorkerID until Now+Lease.
type ClaimRequest struct {
	WorkerID string
	Now      time.Time
	Lease    time.Duration
	Limit    int
	// JobLimits caps, per job name, the runs of that job leased at once
	// (live leases, across every process sharing the database); a job
	// absent from the map has no cap. The store enforces it: PostgreSQL
	// under an advisory lock per capped job, SQLite by its single writer.
	JobLimits map[string]int
	// TenantLimits caps, per job name, the runs of that job leased at once
	// in one key scope (a tenant, D11), enforced like JobLimits (PostgreSQL
	// under an advisory lock per job and scope). A run of a job and scope
	// at its cap is passed over, so that it never holds up other scopes.
	TenantLimits map[string]int
}

// Deferral hands a leased run back to wait (DeferRun): for a retry's next
// attempt or a durable sleep. While it waits, the run holds no lease, no
// worker slot and no concurrency key: a new run of its key may be triggered
// meanwhile, and the deferral is never refused because of one.
type Deferral struct {
	// Until is when the run is claimable again (its RunAt); the zero time
	// means Now.
	Until time.Time
	Now   time.Time
	// Steps are recorded first, fenced, in the same transaction (the
	// held-back step, a failed attempt).
	Steps []*Step
	// CurrentStepIndex and CompletedStepCount are the run's counters once
	// Steps are recorded.
	CurrentStepIndex   int
	CompletedStepCount int
	// Attempt is the run's Attempt after this deferral.
	Attempt int
	// Attempts, when not nil, replaces the run's attempt history.
	Attempts []Attempt
	// Wait, when set, makes the waiting run claimable before Until on an
	// event: the end of the children it awaits, or a signal (S-060).
	Wait *Wait
}

// Wait is what a deferred run waits for besides its time (Deferral.Wait).
// The store makes the run claimable at once, in the transaction of the
// event, when what it waits for comes; and at the deferral itself when
// it came meanwhile: events since the engine looked are counted by
// Run.Wakes, which the engine passes as it saw it (SeenWakes). Exactly
// one of Children and Signal is set.
type Wait struct {
	// Children is the number of the run's children the run awaits that
	// were still active when the engine looked. The end of any child of
	// the run counts one down, since SeenWakes included; the run is
	// claimable once none is left. (A child the run does not await counts
	// too: the run then wakes early, looks again and waits again.)
	Children int
	// Signal is the name of the signal the run waits for: a signal of
	// that name sent to the run makes it claimable, and so does any event
	// since SeenWakes.
	Signal string
	// SeenWakes is Run.Wakes as the engine saw it no later than it looked
	// at the children or the signals.
	SeenWakes int64
}

// CancelRequest asks CancelRun to cancel a run, with its active
// descendants.
type CancelRequest struct {
	ID  string
	Now time.Time
	// DeleteSteps removes the steps and logs of every cancelled run that
	// was pending (R-097; PreserveSteps off).
	DeleteSteps bool
}

// Cancellation is what CancelRun did.
type Cancellation struct {
	// Run is the run as it is afterwards; nil when there is no such run.
	Run *Run
	// Previous is its status before: a terminal one means nothing changed.
	Previous Status
	// Descendants are the run's descendants that were active and are
	// cancelled with it, as they are afterwards, each before its parent
	//
	Descendants []*Run
}

// WriteStats counts what a store has committed since it was opened: the
// transactions, and the writes (claims, steps, finishes, triggers, …) they
// carried. Diagnostics for benchmarks and monitoring: writes per commit is
// how well group commit works.
type WriteStats struct {
	Commits int64
	Writes  int64
}

// Lease identifies a lease holder: the run and the generation it claimed.
// The generation is the fencing token.
type Lease struct {
	RunID      string
	Generation int64
}

// Finish is the terminal write of an execution.
type Finish struct {
	Status      Status // StatusCompleted or StatusFailed
	Output      json.RawMessage
	Error       string
	Now         time.Time
	DeleteSteps bool
	// Steps are recorded, fenced like the finish, in the same transaction
	// before it: the engine holds a run's last step back so that it costs
	// no commit of its own.
	Steps []*Step
	// CurrentStepIndex and CompletedStepCount are the run's step counters
	// once Steps are recorded; the finish writes them.
	CurrentStepIndex   int
	CompletedStepCount int
	// Attempts, when not nil, replaces the run's attempt history.
	Attempts []Attempt
	// ParentRunID is the run's parent (Run.ParentRunID), "" for none: the
	// finish counts the child's end for it in the same transaction, and
	// makes it claimable when it awaited no other child (S-061).
	ParentRunID string
}

// RunFilter selects runs for ListRuns. Empty slices and a nil map do not
// filter; labels are AND-ed. Limit <= 0 means no limit, also together with
// an Offset (D5).
type RunFilter struct {
	Statuses []Status
	JobNames []string
	Labels   map[string]string
	Limit    int
	Offset   int
	// DriveBy names the label whose index a label filter walks: the most
	// selective one (a tenant id rather than an environment). Default: the
	// first key in sorted order.
	DriveBy string
	// CreatedFrom and CreatedTo bound the runs' creation time: from
	// CreatedFrom on, before CreatedTo. A zero time leaves its side open.
	CreatedFrom time.Time
	CreatedTo   time.Time
	// After continues a list after a run (keyset pagination): only runs
	// that come after it newest first, that is created before it, or at
	// the same time with a smaller ID. Unlike Offset, a page after a cursor
	// costs its own rows however deep in the list it is.
	After *RunCursor
}

// RunCursor is the place of a run in a list newest first: the last run of
// a page, for RunFilter.After.
type RunCursor struct {
	CreatedAt time.Time
	ID        string
}

// UpperBound returns the pair (creation time, ID) every run of the filter
// sorts before: the earlier of CreatedTo (with the empty ID, which no run
// has) and the cursor. ok is false when the filter sets neither.
func (f RunFilter) UpperBound() (at time.Time, id string, ok bool) {
	if !f.CreatedTo.IsZero() {
		at, ok = f.CreatedTo, true
	}
	if c := f.After; c != nil && (!ok || c.CreatedAt.Before(at)) {
		at, id, ok = c.CreatedAt, c.ID, true
	}
	return at, id, ok
}

// DrivingLabel returns the label key a filter's lookup walks first and the
// other keys, sorted.
func (f RunFilter) DrivingLabel() (string, []string) {
	keys := SortedKeys(f.Labels)
	if len(keys) == 0 {
		return "", nil
	}
	drive := keys[0]
	if _, ok := f.Labels[f.DriveBy]; ok {
		drive = f.DriveBy
	}
	rest := make([]string, 0, len(keys)-1)
	for _, k := range keys {
		if k != drive {
			rest = append(rest, k)
		}
	}
	return drive, rest
}

// RunPatch lists fields to overwrite; nil pointers are left alone.
// Pointers to zero values write SQL NULL for nullable columns. It is the
// argument of storetest.Patcher, the unfenced write the contract suite
// needs to fabricate states (S-047); it is not part of Store.
type RunPatch struct {
	Status           *Status
	CurrentStepIndex *int
	LeaseOwner       *string
	LeaseExpiresAt   *time.Time
	StartedAt        *time.Time
	CompletedAt      *time.Time
	CreatedAt        *time.Time
}

// ConflictError reports that an enqueued item would create a second pending
// run for its job and concurrency key, or that coalescing lost a race
// twice (R-038, AfterRetry).
type ConflictError struct {
	Index          int // position of the item in the Enqueue call
	JobName        string
	ConcurrencyKey string
	AfterRetry     bool
}

func (e *ConflictError) Error() string {
	if e.AfterRetry {
		return fmt.Sprintf("Conflict after retry for concurrency key %q in job %q. Concurrent modification detected.", e.ConcurrencyKey, e.JobName)
	}
	return fmt.Sprintf("A pending run already exists for concurrency key %q in job %q. Use coalesce: 'skip' to return the existing run instead.", e.ConcurrencyKey, e.JobName)
}

// ErrClosed is returned by operations submitted after Close.
var ErrClosed = errors.New("durably store: closed")

// ErrUnavailable marks a failure that says nothing about the operation
// itself: the database could not be reached or asked the caller to come
// back (connection refused or reset, administrator shutdown, serialization
// failure, SQLite busy or disk full), or did not answer within the store's
// bound (a connection gone silent). Stores wrap such errors so that
// errors.Is(err, ErrUnavailable) holds; the operation may be retried, and
// fenced writes are safe to retry.
var ErrUnavailable = errors.New("durably store: database unavailable")

// LabelKeyRule is what ValidLabelKey demands, worded for error messages.
const LabelKeyRule = "must contain only alphanumeric characters, dashes, underscores, dots, and slashes"

// ValidLabelKey reports whether k may be a label key: the engine,
// the HTTP handler and the generator all apply this one rule.
func ValidLabelKey(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '/'
		if !ok {
			return false
		}
	}
	return true
}
