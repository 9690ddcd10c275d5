package durably

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/durably-go/durably/store"
)

// Option configures a trigger or a wait. Trigger uses the trigger options
// and ignores the wait options; WaitForRun the reverse; TriggerAndWait both.
type Option func(*options)

type options struct {
	trigger triggerOptions
	wait    waitOptions
}

type triggerOptions struct {
	idempotencyKey string
	concurrencyKey string
	labels         map[string]string
	coalesce       string
	// keepLabels skips the label schema: a retrigger keeps the original
	// run's labels as they are.
	keepLabels bool
	// globalKeys puts the keys in the global scope despite TenantLabels.
	globalKeys bool
	// runAt and delay delay the run (the later of both counts); priority,
	// when set, overrides the job's default.
	runAt    time.Time
	delay    time.Duration
	priority *int
	// parentRunID makes the run a child of that run.
	parentRunID string
}

func collectOptions(opts []Option) options {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return o
}

// WithIdempotencyKey makes the trigger return the existing run of the same
// job and key, in any status, instead of creating another. A key
// is at most MaxKeyBytes of UTF-8 (docs/limits.md).
func WithIdempotencyKey(key string) Option {
	return func(o *options) { o.trigger.idempotencyKey = key }
}

// WithConcurrencyKey allows at most one pending run per job and key, and at
// most one executing run per key across all jobs. A key is
// at most MaxKeyBytes of UTF-8.
func WithConcurrencyKey(key string) Option {
	return func(o *options) { o.trigger.concurrencyKey = key }
}

// WithGlobalKeys puts the trigger's idempotency and concurrency keys (and
// its coalescing) in the global key scope, shared by every tenant, even
// when Config.TenantLabels scopes keys by tenant (D11). Use it for keys
// that must be unique across tenants, e.g. a job run once per deployment;
// never for keys a tenant chooses. HTTP triggers cannot ask for it.
func WithGlobalKeys() Option {
	return func(o *options) { o.trigger.globalKeys = true }
}

// WithRunAt makes the run claimable no earlier than t, on the engine's
// clock (Config.Now). Until then it is pending: listed, cancellable, and
// counted by its idempotency and concurrency keys like any pending run. A
// time not after the trigger's means at once. With WithDelay, the later of
// both counts.
func WithRunAt(t time.Time) Option {
	return func(o *options) { o.trigger.runAt = t }
}

// WithDelay makes the run claimable d after the trigger (WithRunAt of the
// trigger's time plus d). A delay of 0 or less means at once; a negative
// delay is a validation error.
func WithDelay(d time.Duration) Option {
	return func(o *options) { o.trigger.delay = d }
}

// WithPriority sets the run's priority, overriding the job's Priority:
// runs with a smaller number are claimed first, then older ones (River's
// and DBOS's convention). Under sustained load a run of a larger number
// waits as long as runs of smaller numbers are claimable (docs/jobs.md,
// "Priorities and limits").
func WithPriority(p int) Option {
	return func(o *options) { o.trigger.priority = &p }
}

// WithLabels attaches immutable labels to the run, e.g. a tenant id: keys
// of at most MaxLabelKeyBytes, values of at most MaxLabelValueBytes
// (docs/limits.md; tenant labels have a limit together too).
func WithLabels(labels map[string]string) Option {
	return func(o *options) { o.trigger.labels = maps.Clone(labels) }
}

// WithCoalesceSkip returns the pending run of the same job and concurrency
// key, unchanged, instead of failing with a conflict. It needs
// WithConcurrencyKey.
func WithCoalesceSkip() Option {
	return func(o *options) { o.trigger.coalesce = CoalesceSkip }
}

// CoalesceSkip is the only coalesce mode.
const CoalesceSkip = "skip"

// TriggerRequest is an untyped trigger, as it arrives over HTTP (H-022).
type TriggerRequest struct {
	JobName        string            `json:"jobName"`
	Input          json.RawMessage   `json:"input"`
	IdempotencyKey string            `json:"idempotencyKey,omitempty"`
	ConcurrencyKey string            `json:"concurrencyKey,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	Coalesce       string            `json:"coalesce,omitempty"`
	// RunAt, Delay and Priority are WithRunAt, WithDelay and WithPriority
	// (issue 14; additive members runAt, delayMs, priority of the HTTP
	// trigger body). Zero RunAt and Delay: at once; nil Priority: the job's.
	RunAt    time.Time     `json:"runAt,omitzero"`
	Delay    time.Duration `json:"-"`
	Priority *int          `json:"priority,omitempty"`
}

// TriggerResult is a triggered run and how the trigger was satisfied.
type TriggerResult struct {
	Run         *Run
	Disposition Disposition
}

type parsedTrigger struct {
	job   string
	input json.RawMessage
	opts  triggerOptions
}

// TriggerRaw triggers a job by name with a JSON input, validated against
// the job's types and schemas before anything is written.
func (e *Engine) TriggerRaw(ctx context.Context, req TriggerRequest) (*TriggerResult, error) {
	p, err := e.parseRequest(req)
	if err != nil {
		return nil, err
	}
	return e.triggerOne(ctx, p)
}

// BatchTriggerRaw is BatchTrigger for untyped requests, possibly of
// several jobs, in one transaction.
func (e *Engine) BatchTriggerRaw(ctx context.Context, reqs []TriggerRequest) ([]TriggerResult, error) {
	parsed, err := e.parseRequests(reqs)
	if err != nil {
		return nil, err
	}
	return e.triggerBatch(ctx, parsed)
}

// parseRequests parses a batch's requests, naming the index of a bad one
//
func (e *Engine) parseRequests(reqs []TriggerRequest) ([]parsedTrigger, error) {
	parsed := make([]parsedTrigger, len(reqs))
	for i, r := range reqs {
		p, err := e.parseRequest(r)
		if err != nil {
			return nil, indexError(err, i)
		}
		parsed[i] = p
	}
	return parsed, nil
}

func (e *Engine) parseRequest(req TriggerRequest) (parsedTrigger, error) {
	job := e.job(req.JobName)
	if job == nil {
		return parsedTrigger{}, notFoundf("Job not found: %s", req.JobName)
	}
	input, err := job.parseInput(req.Input)
	if err != nil {
		return parsedTrigger{}, err
	}
	return parsedTrigger{job: req.JobName, input: input, opts: triggerOptions{
		idempotencyKey: req.IdempotencyKey,
		concurrencyKey: req.ConcurrencyKey,
		labels:         maps.Clone(req.Labels),
		coalesce:       req.Coalesce,
		runAt:          req.RunAt,
		delay:          req.Delay,
		priority:       req.Priority,
	}}, nil
}

// indexError adds the batch index to a validation message as R-047 words it.
func indexError(err error, i int) error {
	var de *Error
	if !errors.As(err, &de) || !errors.Is(err, ErrValidation) {
		return err
	}
	msg := de.Msg
	switch {
	case len(msg) > len("labels: ") && msg[:len("labels: ")] == "labels: ":
		msg = fmt.Sprintf("labels at index %d: %s", i, msg[len("labels: "):])
	case msg == "coalesce requires concurrencyKey":
		msg = fmt.Sprintf("coalesce requires concurrencyKey at index %d", i)
	case len(msg) > len("Invalid coalesce value") && msg[:len("Invalid coalesce value")] == "Invalid coalesce value":
		msg = fmt.Sprintf("Invalid coalesce value at index %d%s", i, msg[len("Invalid coalesce value"):])
	default:
		msg = fmt.Sprintf("at index %d: %s", i, msg)
	}
	return &Error{Kind: ErrValidation, Msg: msg}
}

// validateTriggerOptions applies R-030, R-032 (with D1), R-035 (with D2)
// and the limits of stored strings, returning the labels to store
// and the key scope (D11) they make.
func (e *Engine) validateTriggerOptions(o triggerOptions) (labels map[string]string, scope string, err error) {
	switch o.coalesce {
	case "", CoalesceSkip:
	default:
		return nil, "", validationErrorf("Invalid coalesce value: '%s'. Valid values: 'skip'", o.coalesce)
	}
	if o.coalesce == CoalesceSkip && o.concurrencyKey == "" {
		return nil, "", validationErrorf("coalesce requires concurrencyKey")
	}
	if o.delay < 0 {
		return nil, "", validationErrorf("delay must not be negative, got %s", o.delay)
	}
	if !o.runAt.IsZero() && !store.InRange(o.runAt) {
		return nil, "", validationErrorf("runAt must be between years 1 and 9999, got %s", o.runAt.UTC().Format(time.RFC3339))
	}
	labels = o.labels
	if e.cfg.Labels != nil && !o.keepLabels {
		validated, err := e.cfg.Labels.ValidateLabels(maps.Clone(labels))
		if err != nil {
			return nil, "", validationErrorf("labels: %s", err.Error())
		}
		labels = validated
	}
	if err := checkLabelKeys(labels); err != nil {
		return nil, "", err
	}
	if err := checkLabelValues(labels); err != nil {
		return nil, "", err
	}
	if err := checkText("idempotencyKey", o.idempotencyKey, MaxKeyBytes); err != nil {
		return nil, "", err
	}
	if err := checkText("concurrencyKey", o.concurrencyKey, MaxKeyBytes); err != nil {
		return nil, "", err
	}
	if !o.globalKeys {
		scope = e.keyScope(labels)
	}
	if err := e.checkKeyScope(scope); err != nil {
		return nil, "", err
	}
	if labels == nil {
		labels = map[string]string{}
	}
	return labels, scope, nil
}

// keyScope is the scope of the keys of a run with labels (D11), unless it
// asked for WithGlobalKeys: "" (global) without TenantLabels, else the JSON
// array of the tenant labels' [key, value] pairs in configured order, a
// missing label's value null. It is never "" for a scoped run, so no tenant shares the global
// scope, and it is injective, so no two tenants share a scope.
func (e *Engine) keyScope(labels map[string]string) string {
	if len(e.cfg.TenantLabels) == 0 {
		return ""
	}
	pairs := make([][2]any, len(e.cfg.TenantLabels))
	for i, k := range e.cfg.TenantLabels {
		pairs[i][0] = k
		if v, ok := labels[k]; ok {
			pairs[i][1] = v
		}
	}
	b, err := json.Marshal(pairs)
	if err != nil { // strings and nil always marshal
		panic(err)
	}
	return string(b)
}

// checkTenantLabels validates Config.TenantLabels: label keys, each
// once.
func checkTenantLabels(keys []string) error {
	for i, k := range keys {
		if !store.ValidLabelKey(k) {
			return validationErrorf("durably: Config.TenantLabels[%d] %q: %s", i, k, store.LabelKeyRule)
		}
		if slices.Contains(keys[:i], k) {
			return validationErrorf("durably: Config.TenantLabels[%d] %q: listed twice", i, k)
		}
	}
	return nil
}

// newRun validates a trigger's options (validateTriggerOptions) and makes
// the run to enqueue, created now.
func (e *Engine) newRun(it parsedTrigger, now time.Time) (store.NewRun, error) {
	labels, scope, err := e.validateTriggerOptions(it.opts)
	if err != nil {
		return store.NewRun{}, err
	}
	priority := e.jobPriority(it.job)
	if it.opts.priority != nil {
		priority = *it.opts.priority
	}
	runAt := it.opts.runAt
	if it.opts.delay > 0 && now.Add(it.opts.delay).After(runAt) {
		runAt = now.Add(it.opts.delay)
	}
	if !runAt.After(now) {
		runAt = time.Time{} // at once: the run is ready from its insert
	}
	return store.NewRun{
		Run: &store.Run{
			RunAt:          runAt,
			Priority:       priority,
			ID:             e.newID(),
			JobName:        it.job,
			Input:          it.input,
			IdempotencyKey: it.opts.idempotencyKey,
			ConcurrencyKey: it.opts.concurrencyKey,
			KeyScope:       scope,
			Labels:         labels,
			CreatedAt:      now,
			ParentRunID:    it.opts.parentRunID,
		},
		Coalesce: it.opts.coalesce == CoalesceSkip,
	}, nil
}

// newBatch is newRun for each item of a batch, whose errors name the
// item's index, and checks the batch's size.
func (e *Engine) newBatch(items []parsedTrigger) ([]store.NewRun, error) {
	now := e.now()
	runs := make([]store.NewRun, len(items))
	for i, it := range items {
		nr, err := e.newRun(it, now)
		if err != nil {
			return nil, indexError(err, i)
		}
		runs[i] = nr
	}
	if err := checkBatchSize(runs); err != nil {
		return nil, err
	}
	return runs, nil
}

// triggerOne triggers one run (R-030 … R-041). While this engine's worker
// idles with a free slot, a key-less run due at once is inserted already
// leased to it and starts at once: one commit instead of a trigger and a
// claim. Not a delayed run, nor a run of a job with a limit of running
// runs, which only the claim counts.
func (e *Engine) triggerOne(ctx context.Context, it parsedTrigger) (*TriggerResult, error) {
	now := e.now()
	nr, err := e.newRun(it, now)
	if err != nil {
		return nil, err
	}
	runs := []store.NewRun{nr}
	direct := nr.Run.ConcurrencyKey == "" && nr.Run.RunAt.IsZero() && !e.jobLimited(nr.Run.JobName) &&
		ctx.Err() == nil && e.worker.reserveDirect()
	if !direct {
		enqueued, err := e.enqueue(ctx, TriggerInfo{}, runs, e.store.Enqueue)
		if err != nil {
			return nil, triggerError(err)
		}
		out, created := e.announce(runs, enqueued)
		if created {
			e.worker.wake()
		}
		return &out[0], nil
	}
	claim := &store.Claim{WorkerID: e.cfg.WorkerID, ExpiresAt: now.Add(e.cfg.LeaseDuration)}
	runs[0].Claim = claim
	// A run inserted leased to this worker must start here: were the
	// caller to give up while the commit is under way, it could commit
	// with nobody to run it until its lease expired.
	enqueued, err := e.enqueue(context.WithoutCancel(ctx), TriggerInfo{}, runs, e.store.Enqueue)
	switch {
	case errors.Is(err, store.ErrUnavailable):
		// The insert may have committed, leased to this worker, before the
		// reply was lost: hand the lease back, while the slot stays taken,
		// so that the run does not wait out its lease with nobody to run
		// it. A run never inserted makes the hand-back a refused no-op.
		go e.handBackUncertainDirect(store.Lease{RunID: nr.Run.ID, Generation: 1}, claim.ExpiresAt)
		return nil, triggerError(err)
	case err != nil:
		e.worker.unreserve()
		return nil, triggerError(err)
	}
	out, created := e.announce(runs, enqueued)
	if created {
		e.worker.startDirect(out[0].Run)
	} else {
		e.worker.unreserve() // an idempotent or coalesced trigger
	}
	return &out[0], nil
}

// triggerBatch triggers items in one transaction, all or nothing (R-045
// … R-049).
func (e *Engine) triggerBatch(ctx context.Context, items []parsedTrigger) ([]TriggerResult, error) {
	if len(items) == 0 {
		return []TriggerResult{}, nil
	}
	runs, err := e.newBatch(items)
	if err != nil {
		return nil, err
	}
	enqueued, err := e.enqueue(ctx, TriggerInfo{Batch: true}, runs, e.store.Enqueue)
	if err != nil {
		return nil, triggerError(err)
	}
	out, created := e.announce(runs, enqueued)
	if created {
		e.worker.wake()
	}
	return out, nil
}

// triggerError is a store's refusal of a trigger as the engine reports it.
func triggerError(err error) error {
	var ce *store.ConflictError
	if errors.As(err, &ce) {
		return conflictf("%s", ce.Error())
	}
	return fmt.Errorf("durably: trigger: %w", err)
}

// announce makes the results of enqueued runs and emits their events
// in order; created says whether a run was created. It
// sets a wake-up for created runs that wait for their RunAt.
func (e *Engine) announce(runs []store.NewRun, enqueued []store.Enqueued) (out []TriggerResult, created bool) {
	out = make([]TriggerResult, len(enqueued))
	for i, en := range enqueued {
		out[i] = TriggerResult{Run: en.Run, Disposition: en.Disposition}
		if ev, ok := triggerEvent(runs[i], en); ok {
			e.emit(ev)
		}
		if en.Disposition == store.Created {
			created = true
			if !en.Run.RunAt.IsZero() {
				e.worker.wakeAt(en.Run.RunAt)
			}
		}
	}
	return out, created
}

// triggerEvent is the event of one enqueued item: run:trigger for
// a created run, run:coalesced for a coalesced one, none for an
// idempotent hit.
func triggerEvent(nr store.NewRun, en store.Enqueued) (Event, bool) {
	switch en.Disposition {
	case store.Created:
		return Event{Type: EventRunTrigger, RunID: en.Run.ID, JobName: en.Run.JobName, Input: en.Run.Input, Labels: en.Run.Labels}, true
	case store.Coalesced:
		return Event{Type: EventRunCoalesced, RunID: en.Run.ID, JobName: en.Run.JobName, Labels: en.Run.Labels,
			SkippedInput: nr.Run.Input, SkippedLabels: nr.Run.Labels}, true
	}
	return Event{}, false
}

// handBackUncertainDirect releases the lease of a direct start whose
// insert may have committed, retrying while the database is out of reach
// and the lease lasts, and then gives back the slot reserved for it.
func (e *Engine) handBackUncertainDirect(lease store.Lease, expires time.Time) {
	defer e.worker.unreserve()
	ok, err := e.writeWithinLease(context.Background(), leaseWrite{name: "release lease", until: func() time.Time { return expires },
		write: func() (bool, error) { return e.store.ReleaseLease(context.Background(), lease, e.now()) }})
	if err != nil {
		e.logger.Warn("durably: lease of a trigger whose commit is uncertain not released; it will expire", "runId", lease.RunID, "err", err)
	} else if ok {
		e.logger.Info("durably: a trigger's commit was uncertain; its run was committed and is handed back", "runId", lease.RunID)
	}
}

// Retrigger creates a new pending run with the input (re-validated against
// the job's current schema), labels and concurrency key of a finished run
// (R-100 … R-102). Its key is scoped by its labels like any trigger's
// (D11).
func (e *Engine) Retrigger(ctx context.Context, runID string) (*Run, error) {
	if !storable(runID) {
		return nil, notFoundf("Run not found: %s", runID) // as GetRun
	}
	run, err := e.store.GetRun(ctx, runID)
	if err != nil {
		return nil, fmt.Errorf("durably: retrigger: %w", err)
	}
	if run == nil {
		return nil, notFoundf("Run not found: %s", runID)
	}
	if run.Status == store.StatusPending || run.Status == store.StatusLeased {
		return nil, conflictf("Cannot retrigger %s run: %s", run.Status, runID)
	}
	job := e.job(run.JobName)
	if job == nil {
		return nil, notFoundf("Unknown job: %s", run.JobName)
	}
	input, err := job.parseInput(run.Input)
	if err != nil {
		return nil, validationErrorf("Cannot retrigger run %s: %s", runID, errorMessage(err))
	}
	res, err := e.triggerOne(ctx, parsedTrigger{job: run.JobName, input: input, opts: triggerOptions{
		concurrencyKey: run.ConcurrencyKey,
		labels:         run.Labels,
		keepLabels:     true,
	}})
	if err != nil {
		return nil, err
	}
	return res.Run, nil
}
