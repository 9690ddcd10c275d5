package durably

import (
	"context"
	"errors"
	"time"

	"github.com/durably-go/durably/store"
)

// Observer watches what an engine does, for tracing and metrics:
// runtime/durablyotel implements it with OpenTelemetry, and the engine does
// not depend on any of it. Set it with Config.Observer; without one the
// engine calls nothing and pays a nil check per hook.
//
// Each Start method returns the context the observed work goes on with
// (a tracer puts its span there), and the matching End method is called
// with that context, on the same goroutine, once the work is over. The
// methods are called synchronously, on the hot path when an observer is
// set: they must not block. An observer may watch several engines.
type Observer interface {
	// Attach is called once by New with the engine, before New returns:
	// the observer may subscribe to its events (OnEvent) or read its
	// store from there.
	Attach(e *Engine)
	// StartTrigger is called when a trigger (Trigger, TriggerRaw, a
	// batch, a retrigger, a schedule's tick) is about to write its runs,
	// with the caller's context. Besides the context, it returns the
	// trace context to store with the runs it creates, "" for none:
	// StartExecution receives it back in Run.TraceContext, in whichever
	// process executes the run, however much later.
	StartTrigger(ctx context.Context, t TriggerInfo) (context.Context, string)
	// EndTrigger is called when the trigger's write returned: with a
	// result per run, or the error that wrote nothing.
	EndTrigger(ctx context.Context, t TriggerInfo, results []TriggerResult, err error)
	// StartExecution is called when a run starts to execute here, before
	// the job is called; the run's context (StepContext.Context) derives
	// from what it returns.
	StartExecution(ctx context.Context, x ExecutionInfo) context.Context
	// EndExecution is called when the execution is over (the run ended,
	// or was handed back, or this process lost it).
	EndExecution(ctx context.Context, x ExecutionInfo, end ExecutionEnd)
	// StartStep is called before a step's function runs (not when a
	// completed step replays); the function's context derives from what
	// it returns.
	StartStep(ctx context.Context, s StepInfo) context.Context
	// EndStep is called when the step's function returned.
	EndStep(ctx context.Context, s StepInfo, end StepEnd)
	// Outage is called when the database becomes unavailable to this
	// engine and when it answers again.
	Outage(o OutageInfo)
}

// OutageInfo is the beginning or the end of an outage of the database, as
// the engine's retried store calls meet it (the engine logs the same).
type OutageInfo struct {
	Down   bool          // it began (true) or ended
	Op     string        // the operation that met it, when it began
	Err    error         // the error that operation met, when it began
	Lasted time.Duration // how long it lasted, when it ended
}

// TriggerInfo is the trigger an Observer sees: the runs it asks for, in
// order, before they are written (an idempotent or coalesced one is then
// answered by another run, see TriggerResult).
type TriggerInfo struct {
	Runs  []*Run
	Batch bool // BatchTrigger or BatchTriggerRaw, all or nothing
	// InTx: the runs are written in a transaction of the caller's
	// (TriggerTx, R-250), and exist only if it commits, after EndTrigger.
	InTx bool
}

// ExecutionInfo is an execution as an Observer sees it.
type ExecutionInfo struct {
	// Run is the run as it was claimed. Do not modify it.
	Run *Run
	// Attempt numbers the run's executions that did not end in a
	// suspension: Run.Attempt (retries) + Run.Crashes + 1. An execution
	// resumed after a sleep keeps the attempt that slept.
	Attempt int
	// Due is when the run became claimable, and Claimed when it was
	// claimed, on the engine's clock (Config.Now): the run's wait in the
	// queue is Claimed - Due. Due is the run's creation, its wake time
	// (a delay, a sleep, a retry) or the expiry of a crashed execution's
	// lease, whichever is latest.
	Due, Claimed time.Time
}

// ExecutionEnd is how an execution ended.
type ExecutionEnd struct {
	Outcome Ending
	// Err is the job's error, when it returned one (the run failed, or is
	// retried, or was stopped while the job ran).
	Err error
}

// StepInfo is a step attempt as an Observer sees it.
type StepInfo struct {
	Run     *Run // do not modify it
	Name    string
	Index   int // the step's position in the run (D6)
	Attempt int // 1 for its first attempt; a retried step counts up
}

// StepEnd is how a step attempt ended.
type StepEnd struct {
	Outcome Ending // EndCompleted, EndFailed, or why the run stopped
	Err     error  // the step's error, nil when it completed
}

// Ending says how an execution or a step attempt ended. Its values are
// short snake_case words, meant to be used as metric attributes.
type Ending string

// The outcomes. A step attempt ends completed, failed or timed_out, or
// with one of cancelled, lease_lost, shutdown and suspended when its run
// stopped meanwhile; an execution with any of them.
const (
	// EndCompleted: the run was recorded completed; a step's
	// function returned a result.
	EndCompleted Ending = "completed"
	// EndFailed: the run was recorded failed; a step's function
	// returned an error (a retried step's attempt included).
	EndFailed Ending = "failed"
	// EndSuspended: the run was handed back to wait (a durable sleep,
	// a step's retry, a run claimed before its wake time).
	EndSuspended Ending = "suspended"
	// EndRetrying: the job's body failed outside a step and the run
	// was handed back to be retried.
	EndRetrying Ending = "retrying"
	// EndCancelled: the run was cancelled while it executed here.
	EndCancelled Ending = "cancelled"
	// EndLeaseLost: this process lost the run's lease; another may
	// execute it.
	EndLeaseLost Ending = "lease_lost"
	// EndShutdown: the engine stopped first; the lease was handed
	// back.
	EndShutdown Ending = "shutdown"
	// EndTimedOut: the run ran past its job's Timeout and was failed; a
	// step attempt ran past its step timeout (a failed attempt, retried
	// under its policy) or its run's.
	EndTimedOut Ending = "timed_out"
	// EndReleased: the run was handed back before the job ran (its
	// completed steps could not be read).
	EndReleased Ending = "released"
	// EndUnrecorded: the job ended but its end could not be written
	// (the database stayed away until the lease ran out); the run will be
	// claimed again as a crashed execution.
	EndUnrecorded Ending = "unrecorded"
)

// ---- the engine's side: each hook costs a nil check when no observer
// is set ----

// enqueue writes a trigger's runs, observed when an observer is set.
// t says what kind of trigger it is (its Runs are filled in here); write
// is the store's Enqueue, or its EnqueueTx in the caller's transaction.
func (e *Engine) enqueue(ctx context.Context, t TriggerInfo, runs []store.NewRun, write enqueueFunc) ([]store.Enqueued, error) {
	if e.obs != nil {
		return e.enqueueObserved(ctx, t, runs, write)
	}
	return write(ctx, runs)
}

// enqueueFunc writes runs: Store.Enqueue, or EnqueueTx bound to a
// transaction.
type enqueueFunc func(ctx context.Context, runs []store.NewRun) ([]store.Enqueued, error)

func (e *Engine) enqueueObserved(ctx context.Context, t TriggerInfo, runs []store.NewRun, write enqueueFunc) ([]store.Enqueued, error) {
	t.Runs = make([]*Run, len(runs))
	for i, nr := range runs {
		t.Runs[i] = nr.Run
	}
	ctx, traceContext := e.obs.StartTrigger(ctx, t)
	if len(traceContext) > MaxTraceContextBytes || !storable(traceContext) {
		// Metadata a store could refuse must not fail the trigger: the
		// runs go without it, their executions start a trace of their own.
		e.logger.WarnContext(ctx, "durably: trace context not stored: too long or not text", "bytes", len(traceContext))
		traceContext = ""
	}
	for _, nr := range runs {
		nr.Run.TraceContext = traceContext
	}
	enqueued, err := write(ctx, runs)
	var results []TriggerResult
	if err == nil {
		results = make([]TriggerResult, len(enqueued))
		for i, en := range enqueued {
			results[i] = TriggerResult{Run: en.Run, Disposition: en.Disposition}
		}
	}
	e.obs.EndTrigger(ctx, t, results, err)
	return enqueued, err
}

// executionObservation is what an execution keeps for its observer.
type executionObservation struct {
	jobRan        bool         // the job was called
	jobErr        error        // and returned this
	recorded      store.Status // the run's end as written (completed or failed), if it was
	recordedError string       // and its error
}

// executionContext is the context a run's execution derives from:
// the observer's, when one is set.
func (e *Engine) executionContext(run *Run) context.Context {
	if e.obs != nil {
		return e.startExecution(run)
	}
	return context.Background()
}

func (e *Engine) startExecution(run *Run) context.Context {
	ctx := e.obs.StartExecution(context.Background(), e.executionInfo(run))
	e.observed.Store(run.ID, ctx)
	return ctx
}

func (e *Engine) executionInfo(run *Run) ExecutionInfo {
	due := run.CreatedAt
	if run.RunAt.After(due) {
		due = run.RunAt
	}
	if n := len(run.Attempts); n > 0 && run.Attempts[n-1].At.After(due) {
		due = run.Attempts[n-1].At
	}
	return ExecutionInfo{Run: run, Attempt: attemptNumber(run), Due: due,
		Claimed: run.LeaseExpiresAt.Add(-e.cfg.LeaseDuration)}
}

// jobReturned notes the job's result for the observer.
func (x *execution) jobReturned(err error) {
	x.obs.jobRan, x.obs.jobErr = true, err
}

// endObservation reports the execution's end to the observer, if any.
func (x *execution) endObservation() {
	if x.e.obs != nil {
		x.endExecution()
	}
}

func (x *execution) endExecution() {
	e := x.e
	end := ExecutionEnd{Outcome: x.observedEnding(), Err: x.obs.jobErr}
	if end.Err == nil && x.obs.recordedError != "" { // failed without the job (a run that crashed too often)
		end.Err = errors.New(x.obs.recordedError)
	}
	e.obs.EndExecution(x.ctx, e.executionInfo(x.run), end)
	e.observed.Delete(x.run.ID)
}

// observedEnding says how the execution ended, from its context's cause
// and what it recorded.
func (x *execution) observedEnding() Ending {
	cause, o := context.Cause(x.ctx), x.obs
	switch {
	case errors.Is(cause, ErrSuspended):
		if o.jobErr != nil && !errors.Is(o.jobErr, ErrSuspended) {
			return EndRetrying // finish handed the failed body back
		}
		return EndSuspended
	case errors.Is(cause, ErrDeadline):
		return EndTimedOut
	case o.recorded == store.StatusCompleted:
		return EndCompleted
	case o.recorded == store.StatusFailed:
		return EndFailed
	case cause != nil:
		return stopOutcome(cause)
	case !o.jobRan && x.keeper.isLost():
		return EndLeaseLost
	case !o.jobRan:
		return EndReleased
	case errors.Is(o.jobErr, ErrCancelled) || errors.Is(o.jobErr, ErrLeaseLost):
		return stopOutcome(o.jobErr)
	default:
		return EndUnrecorded
	}
}

// stopOutcome names why a run stopped: the cause of its context's end.
func stopOutcome(cause error) Ending {
	switch {
	case errors.Is(cause, ErrCancelled):
		return EndCancelled
	case errors.Is(cause, ErrShutdown):
		return EndShutdown
	case errors.Is(cause, ErrSuspended):
		return EndSuspended
	case errors.Is(cause, ErrDeadline):
		return EndTimedOut
	default:
		return EndLeaseLost
	}
}

func (k *leaseKeeper) isLost() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lost
}

// stepAttempt names a step attempt for the observer.
type stepAttempt struct {
	name           string
	index, attempt int
}

// observeStep is the context a step's function runs in (before it is
// named and bounded): the run's, or the observer's derived from it when
// one is set.
func (s *StepContext) observeStep(at stepAttempt) context.Context {
	if s.e.obs == nil {
		return s.ctx
	}
	return s.startStep(at)
}

// startStep is kept out of line so that observeStep, its nil check,
// inlines.
//
//go:noinline
func (s *StepContext) startStep(at stepAttempt) context.Context {
	return s.e.obs.StartStep(s.ctx, StepInfo{Run: s.run, Name: at.name, Index: at.index, Attempt: at.attempt})
}

// stepReturned reports a step attempt's end to the observer, if any; ctx
// is what observeStep returned.
func (s *StepContext) stepReturned(ctx context.Context, at stepAttempt, err error) {
	if s.e.obs != nil {
		s.endStep(ctx, at, err)
	}
}

func (s *StepContext) endStep(ctx context.Context, at stepAttempt, err error) {
	end := StepEnd{Outcome: EndCompleted, Err: err}
	switch {
	case err == nil:
	case errors.Is(err, ErrCancelled), errors.Is(err, ErrLeaseLost), errors.Is(err, ErrShutdown), errors.Is(err, ErrSuspended),
		errors.Is(err, ErrDeadline):
		end.Outcome = stopOutcome(err)
	default:
		end.Outcome = EndFailed
	}
	s.e.obs.EndStep(ctx, StepInfo{Run: s.run, Name: at.name, Index: at.index, Attempt: at.attempt}, end)
}

// runContext is the context of run id's execution here while an observer
// watches it (so that the engine's log records about the run carry its
// trace), else context.Background().
func (e *Engine) runContext(runID string) context.Context {
	if e.obs != nil && runID != "" {
		if ctx, ok := e.observed.Load(runID); ok {
			return ctx.(context.Context)
		}
	}
	return context.Background()
}

// attachObserver sets obs as the engine's observer, if not nil.
func (e *Engine) attachObserver(obs Observer) {
	if obs == nil {
		return
	}
	e.obs = obs
	e.outage.notify = obs.Outage
	obs.Attach(e)
}

// observe tells the observer, if any, that an outage began or ended; o.mu
// is held.
func (o *outage) observe(down bool, op string, err error) {
	if o.notify == nil {
		return
	}
	info := OutageInfo{Down: down, Op: op, Err: err}
	if !down {
		info.Lasted = time.Since(o.since)
	}
	o.notify(info)
}
