package durably

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/durably-go/durably/store"
)

// RunFilter selects runs: by statuses, job names and labels (all given
// labels must match), newest first, with Limit (<= 0: no limit) and Offset.
type RunFilter = store.RunFilter

// CheckLabelKeys applies the engine's rule for label keys to the
// keys of labels, sorted, and returns a validation error naming the first
// bad one: what a trigger or a filter with these labels would be refused
// for.
func CheckLabelKeys(labels map[string]string) error { return checkLabelKeys(labels) }

// GetRun returns the run, or nil when it does not exist.
func (e *Engine) GetRun(ctx context.Context, id string) (*Run, error) {
	if !storable(id) {
		return nil, nil // no run has such an id; the database would refuse the lookup
	}
	run, err := e.store.GetRun(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("durably: get run: %w", err)
	}
	return run, nil
}

// RunCursor is the place of a run in a list (RunFilter.After): the last
// run of a page.
type RunCursor = store.RunCursor

// ListRuns returns runs newest first. Label keys are checked as on
// trigger.
func (e *Engine) ListRuns(ctx context.Context, filter RunFilter) ([]*Run, error) {
	filter, err := e.checkFilter(filter)
	if err != nil {
		return nil, err
	}
	runs, err := e.store.ListRuns(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("durably: list runs: %w", err)
	}
	return runs, nil
}

// CountRuns returns how many runs match filter, per status (a status
// without runs is absent): the summary of a list. The filter's Statuses,
// After, Limit and Offset are ignored.
func (e *Engine) CountRuns(ctx context.Context, filter RunFilter) (map[Status]int, error) {
	filter.Statuses, filter.After, filter.Limit, filter.Offset = nil, nil, 0, 0
	filter, err := e.checkFilter(filter)
	if err != nil {
		return nil, err
	}
	counts, err := e.store.CountRuns(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("durably: count runs: %w", err)
	}
	return counts, nil
}

// checkFilter refuses what no store can look up, names the label that
// drives a label filter, and rounds the creation window to the stored
// precision.
func (e *Engine) checkFilter(filter RunFilter) (RunFilter, error) {
	if err := checkLabelKeys(filter.Labels); err != nil {
		return filter, err
	}
	if err := checkLabelValues(filter.Labels); err != nil {
		return filter, err
	}
	for _, name := range filter.JobNames {
		if err := checkText("jobName", name, MaxJobNameBytes); err != nil {
			return filter, err // no run has such a job name
		}
	}
	for _, s := range filter.Statuses {
		if !s.Valid() {
			return filter, validationErrorf("Invalid status: %s. Must be one of: pending, leased, completed, failed, cancelled", s)
		}
	}
	for _, b := range []struct {
		name string
		t    *time.Time
	}{{"createdFrom", &filter.CreatedFrom}, {"createdTo", &filter.CreatedTo}} {
		if b.t.IsZero() {
			continue
		}
		// Creation times are stored to the millisecond: a bound between
		// two milliseconds selects as the next one does, on both stores.
		if *b.t = ceilMillisecond(*b.t); !store.InRange(*b.t) {
			return filter, validationErrorf("%s must be between years 1 and 9999, got %s", b.name, b.t.Format(time.RFC3339))
		}
	}
	if c := filter.After; c != nil {
		if err := checkText("after", c.ID, MaxKeyBytes); err != nil {
			return filter, err // no run has such an id
		}
		if !store.InRange(c.CreatedAt) {
			return filter, validationErrorf("after must be a time between years 1 and 9999, got %s", c.CreatedAt.Format(time.RFC3339))
		}
		filter.After = &RunCursor{CreatedAt: store.Truncate(c.CreatedAt), ID: c.ID}
	}
	if filter.DriveBy == "" {
		for _, k := range e.cfg.SelectiveLabels {
			if _, ok := filter.Labels[k]; ok {
				filter.DriveBy = k
				break
			}
		}
	}
	return filter, nil
}

// ceilMillisecond rounds t up to the stored precision.
func ceilMillisecond(t time.Time) time.Time {
	if d := store.Truncate(t); d.Before(t) {
		return d.Add(time.Millisecond)
	}
	return store.Truncate(t)
}

// GetSteps returns a run's steps in index order.
func (e *Engine) GetSteps(ctx context.Context, runID string) ([]*StepRecord, error) {
	if !storable(runID) {
		return nil, nil // as GetRun
	}
	steps, err := e.store.GetSteps(ctx, runID)
	if err != nil {
		return nil, fmt.Errorf("durably: get steps: %w", err)
	}
	return steps, nil
}

// GetLogs returns a run's persisted logs in order.
func (e *Engine) GetLogs(ctx context.Context, runID string) ([]*LogRecord, error) {
	if !storable(runID) {
		return nil, nil // as GetRun
	}
	logs, err := e.store.GetLogs(ctx, runID)
	if err != nil {
		return nil, fmt.Errorf("durably: get logs: %w", err)
	}
	return logs, nil
}

// Cancel cancels a pending or leased run (R-095 … R-098), and with it its
// active descendants, its children's children included. A run
// executing in this process has its context cancelled at once; its
// current step may finish but its result is not recorded. A
// pending run loses its steps and logs unless PreserveSteps is set. Each
// cancelled run emits run:cancel, the descendants first.
func (e *Engine) Cancel(ctx context.Context, runID string) error {
	if !storable(runID) {
		return notFoundf("Run not found: %s", runID)
	}
	c, err := e.store.CancelRun(ctx, store.CancelRequest{ID: runID, Now: e.now(), DeleteSteps: !e.cfg.PreserveSteps})
	if err != nil {
		return fmt.Errorf("durably: cancel: %w", err)
	}
	run, prev := c.Run, c.Previous
	if run == nil {
		return notFoundf("Run not found: %s", runID)
	}
	switch prev {
	case store.StatusCompleted:
		return conflictf("Cannot cancel completed run: %s", runID)
	case store.StatusFailed:
		return conflictf("Cannot cancel failed run: %s", runID)
	case store.StatusCancelled:
		return conflictf("Cannot cancel already cancelled run: %s", runID)
	}
	for _, d := range c.Descendants {
		e.abortRunning(d.ID, ErrCancelled)
		e.emit(Event{Type: EventRunCancel, RunID: d.ID, JobName: d.JobName, Labels: d.Labels})
	}
	e.abortRunning(runID, ErrCancelled)
	e.emit(Event{Type: EventRunCancel, RunID: run.ID, JobName: run.JobName, Labels: run.Labels})
	if run.ParentRunID != "" {
		e.worker.wake() // its parent may be claimable now (S-061)
	}
	return nil
}

// DeleteRun deletes a terminal run with its steps, logs and labels.
func (e *Engine) DeleteRun(ctx context.Context, runID string) error {
	if !storable(runID) {
		return notFoundf("Run not found: %s", runID)
	}
	run, err := e.store.DeleteRun(ctx, runID)
	if err != nil {
		return fmt.Errorf("durably: delete run: %w", err)
	}
	if run == nil {
		current, err := e.store.GetRun(ctx, runID)
		if err != nil {
			return fmt.Errorf("durably: delete run: %w", err)
		}
		if current == nil {
			return notFoundf("Run not found: %s", runID)
		}
		return conflictf("Cannot delete %s run: %s", current.Status, runID)
	}
	e.emit(Event{Type: EventRunDelete, RunID: run.ID, JobName: run.JobName, Labels: run.Labels})
	return nil
}

// PurgeRuns deletes up to limit (default 500) terminal runs completed
// before olderThan, oldest first, and returns how many. It emits no
// events.
func (e *Engine) PurgeRuns(ctx context.Context, olderThan time.Time, limit int) (int, error) {
	if limit <= 0 {
		limit = 500
	}
	n, err := e.store.PurgeRuns(ctx, olderThan, limit)
	if err != nil {
		return n, fmt.Errorf("durably: purge runs: %w", err)
	}
	return n, nil
}

// waitOptions configure WaitForRun.
type waitOptions struct {
	timeout      time.Duration
	pollInterval time.Duration
	onProgress   func(Progress)
	onLog        func(LogRecord)
	timeoutName  string
}

// WithTimeout bounds a wait; when it elapses first the wait returns an
// ErrTimeout error ("waitForRun timeout after <n>ms") and the run goes on
// . A context deadline works too, returning the context's error.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.wait.timeout = d } }

// WithPollInterval sets how often a wait re-reads the run from storage,
// which is how runs finished by other processes are seen. Default:
// the engine's PollingInterval.
func WithPollInterval(d time.Duration) Option {
	return func(o *options) { o.wait.pollInterval = d }
}

// OnProgress calls fn for each live progress report of the awaited run made
// in this process.
func OnProgress(fn func(Progress)) Option { return func(o *options) { o.wait.onProgress = fn } }

// OnLog calls fn for each live log record of the awaited run made in this
// process.
func OnLog(fn func(LogRecord)) Option { return func(o *options) { o.wait.onLog = fn } }

// WaitForRun waits until the run completes and returns it (R-107 … R-111).
// A failed run returns an ErrRunFailed error carrying the run's message, a
// cancelled run ErrCancelled, a missing or deleted run ErrNotFound. Runs
// finished in this process are seen at once; runs finished elsewhere at the
// next poll (WithPollInterval, default the engine's PollingInterval).
func (e *Engine) WaitForRun(ctx context.Context, runID string, opts ...Option) (*Run, error) {
	o := collectOptions(opts)
	o.wait.timeoutName = "waitForRun"
	return e.waitForRun(ctx, runID, o.wait)
}

func (e *Engine) waitForRun(ctx context.Context, runID string, o waitOptions) (*Run, error) {
	if !storable(runID) {
		return nil, notFoundf("Run not found: %s", runID) // as GetRun: no run has such an id
	}
	w, err := e.newWaiter(o)
	if err != nil {
		return nil, err
	}
	defer w.close()
	w.bind(runID)
	return w.wait(ctx, true, nil)
}

// waiter follows one run's terminal and live events. It subscribes before
// the run is known, so that TriggerAndWait misses nothing of a run that
// starts executing before the trigger call returns.
type waiter struct {
	e           *Engine
	o           waitOptions
	interval    time.Duration
	unsubscribe func()

	mu       sync.Mutex
	runID    string
	early    []Event // events seen before bind, of any run
	dropped  bool    // early was full: an event of the run may be lost
	settled  chan struct{}
	live     chan Event
	complete *Event // the run:complete that settled the wait, if one did
}

// maxEarlyEvents bounds what a waiter keeps before it knows its run.
const maxEarlyEvents = 256

func (e *Engine) newWaiter(o waitOptions) (*waiter, error) {
	interval := o.pollInterval
	if interval < 0 {
		return nil, validationErrorf("pollingIntervalMs must be a positive finite number")
	}
	if interval == 0 {
		interval = e.cfg.PollingInterval
	}
	w := &waiter{e: e, o: o, interval: interval, settled: make(chan struct{}, 1), live: make(chan Event, 64)}
	w.unsubscribe = e.OnEvent(w.observe)
	return w, nil
}

func (w *waiter) close() { w.unsubscribe() }

func waitRelevant(t EventType) bool {
	switch t {
	case EventRunComplete, EventRunFail, EventRunCancel, EventRunDelete, EventRunProgress, EventLogWrite:
		return true
	}
	return false
}

func (w *waiter) observe(ev Event) {
	if !waitRelevant(ev.Type) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.runID == "" {
		if (ev.Type == EventRunProgress || ev.Type == EventLogWrite) && w.o.onProgress == nil && w.o.onLog == nil {
			return // nothing would take it: keep the room for ends of runs
		}
		if len(w.early) < maxEarlyEvents {
			w.early = append(w.early, ev)
		} else {
			w.dropped = true
		}
		return
	}
	if ev.RunID == w.runID {
		w.deliver(ev)
	}
}

// deliver hands an event of the run to the waiting goroutine; it never
// blocks the emitter.
func (w *waiter) deliver(ev Event) {
	switch ev.Type {
	case EventRunProgress, EventLogWrite:
		if w.o.onProgress != nil || w.o.onLog != nil {
			select {
			case w.live <- ev:
			default:
			}
		}
	default:
		if ev.Type == EventRunComplete {
			w.complete = &ev
		}
		select {
		case w.settled <- struct{}{}:
		default:
		}
	}
}

// completedOutput returns the output of a run:complete seen for the run,
// which spares the caller that only wants the output a read of the run.
func (w *waiter) completedOutput() (json.RawMessage, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.complete == nil {
		return nil, false
	}
	return w.complete.Output, true
}

func (w *waiter) bind(runID string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.runID = runID
	for _, ev := range w.early {
		if ev.RunID == runID {
			w.deliver(ev)
		}
	}
	w.early = nil
}

// waitOutput waits like wait but settles on a run:complete event without
// reading the run. created says the caller's own trigger just created the
// run: it cannot have finished before this waiter subscribed, so a finish
// in this process is an event, one elsewhere is found by the first poll,
// and the read wait would otherwise start with is skipped, unless an event
// was dropped before the waiter knew its run (a burst of other runs' ends).
func (w *waiter) waitOutput(ctx context.Context, created bool) (json.RawMessage, error) {
	w.mu.Lock()
	readFirst := !created || w.dropped
	w.mu.Unlock()
	run, err := w.wait(ctx, readFirst, func() (*Run, bool) {
		out, ok := w.completedOutput()
		if !ok {
			return nil, false
		}
		return &Run{Status: store.StatusCompleted, Output: out}, true
	})
	if err != nil {
		return nil, err
	}
	return run.Output, nil
}

// wait returns the run once it has finished, reading it at once if
// readFirst, then whenever an event of its end arrives and at every poll.
// seen, if not nil, settles the wait from what the events said, without a
// read.
func (w *waiter) wait(ctx context.Context, readFirst bool, seen func() (*Run, bool)) (*Run, error) {
	var timeout <-chan time.Time
	if w.o.timeout > 0 {
		t := time.NewTimer(w.o.timeout)
		defer t.Stop()
		timeout = t.C
	}
	ticker := time.NewTicker(w.interval)
	defer ticker.Stop()
	read := readFirst
	for {
		if seen != nil {
			if run, ok := seen(); ok {
				w.drainLive()
				return run, nil
			}
		}
		if read {
			run, err := w.e.store.GetRun(ctx, w.runID)
			if err != nil {
				return nil, fmt.Errorf("durably: wait for run: %w", err)
			}
			if done, err := settledRun(run, w.runID); done {
				w.drainLive()
				return run, err
			}
		}
		read = true
	wait:
		for {
			select {
			case <-w.settled:
				break wait
			case <-ticker.C:
				break wait
			case ev := <-w.live:
				w.e.callBack(w.o, ev)
			case <-timeout:
				return nil, newError(ErrTimeout, "%s timeout after %dms", w.o.timeoutName, w.o.timeout.Milliseconds())
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
}

// drainLive delivers live events that arrived before the run settled.
func (w *waiter) drainLive() {
	for {
		select {
		case ev := <-w.live:
			w.e.callBack(w.o, ev)
		default:
			return
		}
	}
}

// ErrRunFailed is the kind of the error the wait helpers return for a
// failed run; its message is the run's error.
var ErrRunFailed = fmt.Errorf("run failed")

func settledRun(run *Run, runID string) (bool, error) {
	if run == nil {
		return true, notFoundf("Run not found: %s", runID)
	}
	switch run.Status {
	case store.StatusCompleted:
		return true, nil
	case store.StatusFailed:
		msg := run.Error
		if msg == "" {
			msg = "Run failed"
		}
		return true, &Error{Kind: ErrRunFailed, Msg: msg}
	case store.StatusCancelled:
		return true, cancelledError(runID)
	}
	return false, nil
}

// callBack delivers a live event to the wait's callbacks; a panicking
// callback is ignored, as errors of callbacks are in the original.
func (e *Engine) callBack(o waitOptions, ev Event) {
	defer func() { _ = recover() }()
	switch ev.Type {
	case EventRunProgress:
		if o.onProgress != nil && ev.Progress != nil {
			o.onProgress(*ev.Progress)
		}
	case EventLogWrite:
		if o.onLog != nil {
			o.onLog(LogRecord{RunID: ev.RunID, StepName: ev.StepName, Level: ev.Level, Message: ev.Message, Data: ev.Data, CreatedAt: ev.Timestamp})
		}
	}
}
