package durably

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/durably-go/durably/store"
)

// A run's execution, from the lease the worker claimed to the finish:
// the lease keeper, the run's context, the steps already completed, the
// completed step held back from the database, the fenced writes, and the
// finish. The worker (worker.go) only hands claimed runs to execute; the
// job's code sees the run through StepContext (step.go), which asks the
// execution only what its stepRecorder interface names.

// execution is one run being executed here.
type execution struct {
	e      *Engine
	run    *Run
	keeper *leaseKeeper
	ctx    context.Context // ends when the run is cancelled, its lease is lost, or the engine stops
	abort  context.CancelCauseFunc

	mu sync.Mutex
	// completed holds the run's completed steps by name: replay reads it
	// instead of querying per step (R-080 (3)).
	completed map[string]*store.Step
	// failures counts the failed attempts per step name; read
	// only for runs that were retried before.
	failures map[string]int
	job      *jobEntry
	// A completed step is held back instead of written at once: it is
	// written before the next step starts, or with the run's finish in the
	// same transaction, or after stepFlushDelay if the job does neither —
	// so the last step of a run costs no commit of its own.
	pending     *store.Step
	flushTimer  *time.Timer
	flushing    chan struct{} // closed when an in-progress flush ends
	flushErr    error         // sticky: a refused flush ends the run
	recordedIdx int           // current_step_index once recorded steps are counted
	recordedCnt int           // completed_step_count likewise
	obs         executionObservation
	// over is set once the body returned or was abandoned: its
	// StepContext, still in the hands of a goroutine that goes on,
	// records and emits nothing more.
	over atomic.Bool
}

// stepFlushDelay bounds how long a completed step may stay unrecorded while
// the job does something other than start a step or return.
const stepFlushDelay = time.Millisecond

// execute runs a claimed run to its end (R-070 … R-075); keeper holds its
// lease from the claim on. ending is called once the job has returned,
// when what is left is the write that ends the run (the worker then claims
// the slot's next run meanwhile), unless the run never started. No
// goroutine or timer of the run outlives execute.
func (e *Engine) execute(run *Run, keeper *leaseKeeper, ending func()) {
	defer keeper.stop()
	e.commits.claimed(run.ID)
	job := e.job(run.JobName)
	if job == nil {
		e.failUnregistered(run, keeper.lease)
		return
	}

	ctx, abort := context.WithCancelCause(e.executionContext(run))
	defer abort(nil)
	x := &execution{e: e, run: run, keeper: keeper, ctx: ctx, abort: abort, completed: map[string]*store.Step{},
		failures: map[string]int{}, job: job, recordedIdx: run.CurrentStepIndex, recordedCnt: run.CompletedStepCount}
	e.running.Store(run.ID, abort)
	defer e.running.Delete(run.ID)
	defer x.endObservation()
	defer x.settle()
	if keeper.attach(abort) {
		return // the lease ran out before the run could start
	}
	if x.crashedOut() || x.timedOutAlready() || x.orphaned() {
		return
	}
	stopDeadline := x.armDeadline()
	defer stopDeadline()

	e.emit(Event{Type: EventRunLeased, RunID: run.ID, JobName: run.JobName, Input: run.Input,
		LeaseOwner: run.LeaseOwner, LeaseExpiresAt: run.LeaseExpiresAt, Labels: run.Labels})

	started := time.Now()
	if !x.loadCompleted() {
		return
	}
	output, runErr := x.callJobBounded(job)
	// The deadline is the body's: one passing while the execution ends
	// (a renewal in flight, the finish) does not fail a run that returned
	// in time.
	stopDeadline()
	x.over.Store(true)
	x.jobReturned(runErr)
	ending()
	keeper.stop()
	x.finish(output, runErr, time.Since(started))
}

// failUnregistered fails a run whose job this process does not know.
func (e *Engine) failUnregistered(run *Run, lease store.Lease) {
	// D7: the original fails such runs silently; we say why.
	msg := "job not registered: " + run.JobName
	ok, err := e.store.FinishRun(context.Background(), lease, store.Finish{Status: store.StatusFailed, Error: msg, Now: e.now(),
		CurrentStepIndex: run.CurrentStepIndex, CompletedStepCount: run.CompletedStepCount, ParentRunID: run.ParentRunID})
	if err != nil {
		e.workerError(err, "run-failure", run.ID)
	} else if ok {
		e.emit(Event{Type: EventRunFail, RunID: run.ID, JobName: run.JobName, Error: msg, FailedStepName: "unknown", Labels: run.Labels})
	}
}

// loadCompleted reads the steps an earlier execution completed; false
// means the run cannot go on here and has been handed back.
func (x *execution) loadCompleted() bool {
	e, run := x.e, x.run
	// A run retried before has failed attempts to count as well: it reads
	// its whole step history; others read only the completed steps.
	retried := run.Attempt > 0
	if run.CompletedStepCount == 0 && !retried {
		return true
	}
	var steps []*store.Step
	_, err := e.retryWithinLease(x.ctx, "load completed steps", x.keeper.until, func() (err error) {
		if retried {
			steps, err = e.store.GetSteps(x.ctx, run.ID)
		} else {
			steps, err = e.store.GetCompletedSteps(x.ctx, run.ID)
		}
		return err
	})
	if err != nil {
		// Without the record of completed steps we would run them
		// again: leave the run to be claimed once more.
		e.workerError(fmt.Errorf("load completed steps: %w", err), "run-failure", run.ID)
		e.releaseLease(x.keeper)
		return false
	}
	x.mu.Lock()
	for _, st := range steps {
		switch st.Status {
		case store.StepCompleted:
			x.completed[st.Name] = st
		case store.StepFailed:
			x.failures[st.Name]++
		}
	}
	x.mu.Unlock()
	return true
}

// callJob runs the job body; a panic fails the run instead of the process.
func (x *execution) callJob(job *jobEntry) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("job %q panicked: %v", job.name, r)
		}
	}()
	s := newStepContext(x.e, x.run, x.keeper.lease, x.ctx, x)
	s.retry, s.stepTimeout, s.signals = job.retry, job.stepTimeout, job.signals
	return job.execute(x.ctx, s, x.run.Input)
}

// ---- the run's timeout (Job.Timeout) ----

// deadline is when the run times out: its first start plus its job's
// Timeout; zero when the job has none.
func (x *execution) deadline() time.Time {
	if x.job.timeout <= 0 {
		return time.Time{}
	}
	return x.run.StartedAt.Add(x.job.timeout)
}

// timedOutAlready fails a run claimed past its deadline (it waited, or a
// hung process lost it), without executing it, and reports whether it did.
func (x *execution) timedOutAlready() bool {
	d := x.deadline()
	if d.IsZero() || x.e.now().Before(d) {
		return false
	}
	err := runTimedOut(x.run.ID, x.job.timeout)
	x.end(store.Finish{Status: store.StatusFailed, Error: errorMessage(err), Attempts: x.withAttempt("", err)}, 0)
	return true
}

// armDeadline ends the run's context with a runTimedOut cause at its
// deadline, and tells the lease keeper not to renew past it; it returns
// the timer's stop.
func (x *execution) armDeadline() (stop func()) {
	d := x.deadline()
	if d.IsZero() {
		return func() {}
	}
	// Renewed until the body is abandoned, so that the lease outlasts the
	// timed-out finish (a hung process still loses it a lease later).
	x.keeper.noRenewalAfter(d.Add(abandonAfter))
	t := time.AfterFunc(d.Sub(x.e.now()), func() { x.abort(runTimedOut(x.run.ID, x.job.timeout)) }) // on Config.Now's clock
	return func() { t.Stop() }
}

// callJobBounded is callJob, except that a job with a Timeout runs on a
// goroutine of its own, which is abandoned if it has not returned
// abandonAfter past the deadline: the run then fails, and its slot frees,
// however the job's code hangs.
func (x *execution) callJobBounded(job *jobEntry) ([]byte, error) {
	if x.job.timeout <= 0 {
		return x.callJob(job)
	}
	out, err, returned := awaitBounded(x.ctx, func() ([]byte, error) { return x.callJob(job) })
	if !returned {
		x.e.logger.Warn("durably: job abandoned: it did not return after its run ended", "runId", x.run.ID, "jobName", x.run.JobName,
			"cause", context.Cause(x.ctx))
		return nil, context.Cause(x.ctx)
	}
	return out, err
}

// finish records how the job ended: it decides the
// outcome, then records it.
func (x *execution) finish(output []byte, runErr error, took time.Duration) {
	switch x.outcome(runErr) {
	case outcomeNothing:
	case outcomeHandBack:
		// A step that completed just before the stop is recorded before
		// the lease goes back, so it does not run again.
		if err := x.flush(); err != nil {
			x.e.workerError(err, "run-failure", x.run.ID)
		}
		x.e.releaseLease(x.keeper)
	case outcomeRetry:
		x.retryRun(runErr)
	case outcomeComplete:
		x.end(store.Finish{Status: store.StatusCompleted, Output: output}, took)
	case outcomeFail:
		x.end(store.Finish{Status: store.StatusFailed, Error: errorMessage(runErr),
			Attempts: x.withAttempt(failedStepOf(runErr), runErr)}, took)
	case outcomeTimedOut:
		err := context.Cause(x.ctx)
		x.end(store.Finish{Status: store.StatusFailed, Error: errorMessage(err), Attempts: x.withAttempt("", err)}, took)
	}
}

// outcome is what an execution's end records.
type outcome int

const (
	outcomeNothing  outcome = iota // handed back to wait, cancelled, or its lease lost: another execution ends the run
	outcomeHandBack                // stopped (ErrShutdown): the lease goes back for another worker
	outcomeRetry                   // the body failed outside any step and the job retries it
	outcomeComplete
	outcomeFail
	outcomeTimedOut                // past the job's Timeout: failed, never retried
)

// outcome decides how the job's return ends the execution. A job that ends
// with an error after its run was cancelled, lost its lease or was stopped
// has nothing to record, but a stopped run's lease goes back
// so another worker resumes it; a job that returns normally is completed,
// fenced, whatever happened.
func (x *execution) outcome(runErr error) outcome {
	cause := context.Cause(x.ctx)
	switch {
	case errors.Is(cause, ErrSuspended):
		return outcomeNothing
	case runErr != nil && x.ctx.Err() != nil && errors.Is(cause, ErrShutdown):
		return outcomeHandBack
	case x.ctx.Err() != nil && errors.Is(cause, ErrDeadline):
		return outcomeTimedOut
	case runErr != nil && x.ctx.Err() != nil,
		errors.Is(runErr, ErrCancelled), errors.Is(runErr, ErrLeaseLost):
		return outcomeNothing
	case runErr == nil:
		return outcomeComplete
	case x.job.retry.retries(attemptNumber(x.run)) && retryableRunError(runErr):
		return outcomeRetry
	}
	return outcomeFail
}

// failedStepOf names the step whose spent failure runErr returns, or ""
// for a failure of the body itself.
func failedStepOf(runErr error) string {
	var sf *stepFailure
	if errors.As(runErr, &sf) {
		return sf.step
	}
	return ""
}

// retryRun hands a run whose body failed outside any step back for its
// next attempt: its completed steps replay then.
func (x *execution) retryRun(runErr error) {
	e, run := x.e, x.run
	number := attemptNumber(run)
	until := store.Truncate(e.now().Add(x.job.retry.delay(number, jitterSource)))
	if ok, _ := x.suspend(until, nil, run.Attempt+1, x.withAttempt("", runErr)); ok {
		e.logger.InfoContext(x.ctx, "durably: run failed; retrying", "runId", run.ID, "jobName", run.JobName,
			"attempt", number, "nextAttemptAt", until, "err", runErr)
	}
}

// end writes the run's terminal record, fenced, with the step held back
// (which the finish records unless it deletes it at once, PreserveSteps
// off: then only the counters say it happened), and emits its event.
func (x *execution) end(fin store.Finish, took time.Duration) {
	e, run, lease := x.e, x.run, x.keeper.lease
	pending, flushErr := x.takePending()
	if flushErr != nil {
		x.recordFailed(flushErr)
		return
	}
	fin.Now, fin.DeleteSteps, fin.ParentRunID = e.now(), !e.cfg.PreserveSteps, run.ParentRunID
	x.mu.Lock()
	fin.CurrentStepIndex, fin.CompletedStepCount = x.recordedIdx, x.recordedCnt
	x.mu.Unlock()
	if pending != nil {
		fin.CurrentStepIndex, fin.CompletedStepCount = pending.Index+1, fin.CompletedStepCount+1
		if e.cfg.PreserveSteps {
			fin.Steps = []*store.Step{pending}
		}
	}
	var failedStep string
	if fin.Status == store.StatusFailed {
		// failedStepName is read before the steps may be deleted.
		failedStep = x.firstFailedStep()
	}
	ok, err := e.writeWithinLease(context.Background(), leaseWrite{name: "finish run", until: x.keeper.until,
		write: func() (bool, error) { return e.store.FinishRun(context.Background(), lease, fin) },
		committed: func(ctx context.Context) (bool, error) {
			// The run is terminal with this status, finished by this
			// generation.
			run, err := e.store.GetRun(ctx, lease.RunID)
			return err == nil && run != nil && run.Status == fin.Status && run.LeaseGeneration == lease.Generation, err
		}})
	where, what := "run-completion", "completing"
	if fin.Status == store.StatusFailed {
		where, what = "run-failure", "recording failure for"
	}
	switch {
	case err != nil:
		e.workerError(err, where, run.ID)
	case !ok && pending != nil:
		_ = x.refused(pending.Name, pending.Index) // as a refused step write would
	case !ok:
		//lint:ignore ST1005 the original's worker:error text, carried on the wire verbatim
		e.workerError(fmt.Errorf("Lease lost before %s run %s", what, run.ID), where, "")
	default:
		x.obs.recorded, x.obs.recordedError = fin.Status, fin.Error
		if pending != nil {
			x.stepCompleted(pending)
		}
		if fin.Status == store.StatusCompleted {
			e.emit(Event{Type: EventRunComplete, RunID: run.ID, JobName: run.JobName, Output: fin.Output, Duration: took, Labels: run.Labels})
		} else {
			e.emit(Event{Type: EventRunFail, RunID: run.ID, JobName: run.JobName, Error: fin.Error, FailedStepName: failedStep, Labels: run.Labels})
		}
		if run.ParentRunID != "" {
			// The parent may be claimable now (S-061); the claim that
			// follows this slot's end may have read before the finish.
			e.worker.wake()
		}
	}
}

// ---- attempts ----

// attemptNumber is the number of the run's current execution: one more
// than its retries and crashes so far.
func attemptNumber(run *Run) int { return run.Attempt + run.Crashes + 1 }

// Bounds of the attempt history kept with a run: it stays small whatever
// a run goes through.
const (
	maxAttemptHistory = 20
	maxAttemptError   = 2048 // bytes of one attempt's error
)

// withAttempt returns the run's attempt history with the current
// execution's unsuccessful end appended, the oldest entries dropped beyond
// maxAttemptHistory.
func (x *execution) withAttempt(step string, err error) []store.Attempt {
	outcome := store.AttemptFailed
	if errors.Is(err, ErrDeadline) {
		outcome = store.AttemptTimedOut
	}
	msg := errorMessage(err)
	if len(msg) > maxAttemptError {
		msg = strings.ToValidUTF8(msg[:maxAttemptError], "") + "…"
	}
	a := store.Attempt{Number: attemptNumber(x.run), Outcome: outcome, Step: step, Error: msg, At: store.Truncate(x.e.now())}
	all := append(slices.Clone(x.run.Attempts), a)
	return all[max(0, len(all)-maxAttemptHistory):]
}

// crashLimit is how many crashes a run of the job may have before it fails:
// its retry policy's MaxAttempts, or DefaultCrashLimit without one.
func (j *jobEntry) crashLimit() int {
	if j.retry == nil {
		return DefaultCrashLimit
	}
	return j.retry.MaxAttempts
}

// DefaultCrashLimit is how many crashes a run of a job without a retry
// policy may have before it fails (a job's Retry.MaxAttempts sets it for
// the job). A crash is an execution that ended without an outcome: its
// process died (SIGKILL, out of memory, a crash in cgo, os.Exit), hung, or
// lost its database for longer than the lease. Stop's hand-back is no
// crash.
const DefaultCrashLimit = 5

// crashedOut fails a run that has crashed as often as its job allows,
// instead of executing it once more, and reports whether it did. Such a
// run would otherwise take down process after process, forever.
func (x *execution) crashedOut() bool {
	run, limit := x.run, x.job.crashLimit()
	if run.Crashes < limit {
		return false
	}
	last := "no record of the last crash"
	if n := len(run.Attempts); n > 0 {
		last = run.Attempts[n-1].Error
	}
	times := "times"
	if run.Crashes == 1 {
		times = "time"
	}
	msg := fmt.Sprintf("Run crashed or was abandoned %d %s (its job allows %d): %s", run.Crashes, times, limit, last)
	x.end(store.Finish{Status: store.StatusFailed, Error: msg}, 0)
	return true
}

func (x *execution) firstFailedStep() string {
	steps, err := x.e.store.GetSteps(context.Background(), x.run.ID)
	if err == nil {
		for _, st := range steps {
			if st.Status == store.StepFailed {
				return st.Name
			}
		}
	}
	return "unknown"
}

// settle ends the execution's held-back step: a step the finish did not
// take (the run ended otherwise) is written now, as its flush timer would
// have done moments later, so that neither the timer nor its write
// outlives the execution.
func (x *execution) settle() {
	_ = x.flush()
}

// ---- stepRecorder: what StepContext asks of the execution ----

// replay returns the recorded output of the run's completed step name.
func (x *execution) replay(name string) (out []byte, ok bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	done, ok := x.completed[name]
	if !ok {
		return nil, false
	}
	return done.Output, true
}

// hold keeps a completed step back from the database (R-080 (7)): it is
// written, fenced by generation, before the next step, with the finish, or
// after stepFlushDelay. The caller flushed the step before it.
func (x *execution) hold(rec *store.Step) {
	if x.over.Load() {
		return // an abandoned body's step: the run is over, and no timer may outlive it
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.completed[rec.Name] = rec
	x.pending = rec
	x.flushTimer = time.AfterFunc(stepFlushDelay, func() { _ = x.flush() })
}

// flush writes the held-back step, if any, and reports a refusal.
// The job's goroutine and the flush timer may both call it.
func (x *execution) flush() error {
	x.mu.Lock()
	x.awaitFlush()
	rec := x.pending
	if rec == nil || x.flushErr != nil {
		err := x.flushErr
		x.mu.Unlock()
		return err
	}
	x.pending = nil
	x.flushTimer.Stop()
	done := make(chan struct{})
	x.flushing = done
	x.mu.Unlock()

	err := x.record(rec)

	x.mu.Lock()
	x.flushing = nil
	if err != nil {
		x.flushErr = err
	}
	x.mu.Unlock()
	close(done)
	return err
}

// save writes a step record, fenced, retrying while the database is
// unavailable and the lease lasts. A retry of a write that had committed
// is refused or hits the step's unique id; the step is then found with
// its id, and the write counts as done.
func (x *execution) save(rec *store.Step) (bool, error) {
	e := x.e
	lease := x.keeper.lease
	ctx := context.WithoutCancel(x.ctx)
	return e.writeWithinLease(x.ctx, leaseWrite{name: "record step", until: x.keeper.until,
		write: func() (bool, error) { return e.store.SaveStep(ctx, lease, rec) },
		committed: func(ctx context.Context) (bool, error) {
			steps, err := e.store.GetSteps(ctx, x.run.ID)
			return slices.ContainsFunc(steps, func(st *store.Step) bool { return st.ID == rec.ID }), err
		}})
}

// refused handles a step write the store turned down: the run was
// cancelled, or the lease is gone. It ends the run's context and returns
// the error the job should return.
func (x *execution) refused(name string, index int) error {
	e, run := x.e, x.run
	got, err := e.store.GetRun(context.WithoutCancel(x.ctx), run.ID)
	if err == nil && got != nil && got.Status == store.StatusCancelled {
		x.abort(ErrCancelled)
		if name == "" { // a hand-back outside any step
			return cancelledError(run.ID)
		}
		e.emit(Event{Type: EventStepCancel, RunID: run.ID, JobName: run.JobName, StepName: name, StepIndex: index, Labels: run.Labels})
		return cancelledError(run.ID)
	}
	x.abort(ErrLeaseLost)
	return leaseLostError(run.ID)
}

func (x *execution) ended() bool { return x.over.Load() }

// recordedStep returns the run's completed step name.
func (x *execution) recordedStep(name string) (*store.Step, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	st, ok := x.completed[name]
	return st, ok
}

// runDeadline is when the run times out (Job.Timeout); zero for none.
func (x *execution) runDeadline() time.Time { return x.deadline() }

// receive delivers the oldest signal named signal to rec, fenced, retrying
// while the database is unavailable and the lease lasts (S-063). A retry
// of a delivery that had committed is refused (the step exists, under a
// unique id and name) or finds no signal: the step is then read back by
// its id, and its output is the payload delivered.
func (x *execution) receive(signal string, rec *store.Step) (store.Receipt, error) {
	e, lease := x.e, x.keeper.lease
	ctx := context.WithoutCancel(x.ctx)
	var got store.Receipt
	tries := 0
	ok, err := e.writeWithinLease(x.ctx, leaseWrite{name: "receive signal", until: x.keeper.until,
		write: func() (bool, error) {
			tries++
			var ok bool
			var err error
			got, ok, err = e.store.ReceiveSignal(ctx, lease, signal, rec)
			return ok, err
		},
		committed: func(ctx context.Context) (bool, error) { return x.stepByID(ctx, rec.ID) != nil, nil }})
	switch {
	case err != nil:
		return store.Receipt{}, fmt.Errorf("durably: receive signal %q of run %s: %w", signal, x.run.ID, err)
	case !ok:
		return store.Receipt{}, x.refused(rec.Name, rec.Index)
	}
	if got.Signal == nil && tries > 1 {
		if st := x.stepByID(ctx, rec.ID); st != nil { // delivered before its answer was lost
			got.Signal = &store.Signal{RunID: x.run.ID, Name: signal, Payload: st.Output}
		}
	}
	if got.Signal == nil {
		return got, nil
	}
	delivered := *rec
	delivered.Output = got.Signal.Payload
	x.mu.Lock()
	x.completed[delivered.Name] = &delivered
	x.recordedIdx = delivered.Index + 1
	x.recordedCnt++
	x.mu.Unlock()
	e.emit(Event{Type: EventStepStart, RunID: x.run.ID, JobName: x.run.JobName, StepName: rec.Name, StepIndex: rec.Index, Labels: x.run.Labels})
	x.stepCompleted(&delivered)
	return got, nil
}

// stepByID reads the run's step with that id; nil when there is none or
// it cannot be read.
func (x *execution) stepByID(ctx context.Context, id string) *store.Step {
	steps, err := x.e.store.GetSteps(ctx, x.run.ID)
	if err != nil {
		return nil
	}
	for _, st := range steps {
		if st.ID == id {
			return st
		}
	}
	return nil
}

// attempts counts step name's failed attempts.
func (x *execution) attempts(name string) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.failures[name]
}

// recordFailed ends an execution whose held step could not be recorded.
// A refused write already ended the run (its context says why); any other
// failure leaves the run to be resumed from its last recorded step, here or
// elsewhere, at once.
func (x *execution) recordFailed(err error) {
	if x.ctx.Err() == nil {
		x.e.workerError(err, "run-failure", x.run.ID)
		x.e.releaseLease(x.keeper)
	}
}

// suspend hands the run back until until through DeferRun, recording the
// held-back step and steps in the same fenced write. The
// run's context then ends with the suspension's error, so that nothing
// more is written for it here, and the worker's slot frees up.
func (x *execution) suspend(until time.Time, steps []*store.Step, attempt int, attempts []store.Attempt) (bool, error) {
	return x.handBack(store.Deferral{Until: until, Steps: steps, Attempt: attempt, Attempts: attempts})
}

// await is suspend for a wait for children or a signal:
// the run is claimable at until, or as soon as what w names comes.
func (x *execution) await(until time.Time, steps []*store.Step, w *store.Wait) (bool, error) {
	return x.handBack(store.Deferral{Until: until, Steps: steps, Attempt: x.run.Attempt, Wait: w})
}

// handBack writes the deferral d of suspend and await.
func (x *execution) handBack(d store.Deferral) (bool, error) {
	e, run := x.e, x.run
	until, steps, attempt := d.Until, d.Steps, d.Attempt
	pending, err := x.takePending()
	if err != nil {
		x.recordFailed(err)
		return false, err
	}
	if pending != nil {
		steps = append([]*store.Step{pending}, steps...)
	}
	d.Now, d.Steps = e.now(), steps
	x.mu.Lock()
	d.CurrentStepIndex, d.CompletedStepCount = x.recordedIdx, x.recordedCnt
	x.mu.Unlock()
	for _, st := range steps {
		if st.Status == store.StepCompleted {
			d.CurrentStepIndex, d.CompletedStepCount = st.Index+1, d.CompletedStepCount+1
		}
	}
	// Renewals end first: one landing after the hand-back would be refused
	// and reported as a lost lease. The write's retries stay bounded by the
	// lease's end.
	x.keeper.stop()
	lease := x.keeper.lease
	ok, err := e.writeWithinLease(x.ctx, leaseWrite{name: "defer run", until: x.keeper.until,
		write: func() (bool, error) { return e.store.DeferRun(context.WithoutCancel(x.ctx), lease, d) },
		committed: func(ctx context.Context) (bool, error) {
			// The run waits, unleased, with our steps recorded.
			got, err := e.store.GetRun(ctx, run.ID)
			if err != nil || got == nil || got.Status != store.StatusPending || got.LeaseOwner != "" || got.Attempt != attempt {
				return false, err
			}
			if len(steps) == 0 {
				return true, nil
			}
			all, err := e.store.GetSteps(ctx, run.ID)
			last := steps[len(steps)-1].ID
			return slices.ContainsFunc(all, func(st *store.Step) bool { return st.ID == last }), err
		}})
	switch {
	case err != nil:
		// Nothing is known to be written: the run goes back at once and
		// its step runs again (with the same attempt number).
		e.workerError(fmt.Errorf("durably: defer run %s: %w", run.ID, err), "run-failure", run.ID)
		e.releaseLease(x.keeper)
		x.abort(suspendedError(run.ID, until))
		return false, err
	case !ok:
		last := steps
		if len(last) == 0 {
			return false, x.refused("", 0)
		}
		return false, x.refused(last[len(last)-1].Name, last[len(last)-1].Index)
	}
	serr := suspendedError(run.ID, until)
	x.abort(serr)
	x.mu.Lock()
	x.recordedIdx, x.recordedCnt = d.CurrentStepIndex, d.CompletedStepCount
	for _, st := range steps {
		if st.Status == store.StepFailed {
			x.failures[st.Name]++
		}
	}
	x.mu.Unlock()
	for _, st := range steps {
		if st.Status == store.StepCompleted {
			x.stepCompleted(st)
		}
	}
	if until.Before(waitForever) {
		e.worker.wakeAt(until) // this process knows when the run comes due
	}
	return true, serr
}

// ---- held-back steps, the execution's own side ----

// awaitFlush waits, with x.mu held (and released meanwhile), until no
// flush of the held-back step is in progress.
func (x *execution) awaitFlush() {
	for x.flushing != nil {
		ch := x.flushing
		x.mu.Unlock()
		<-ch
		x.mu.Lock()
	}
}

// takePending hands the held-back step to the finish, which records it.
func (x *execution) takePending() (*store.Step, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.awaitFlush()
	rec := x.pending
	x.pending = nil
	if rec != nil {
		x.flushTimer.Stop()
	}
	return rec, x.flushErr
}

// record writes a completed step (R-080 (7) … (9)).
func (x *execution) record(rec *store.Step) error {
	ok, err := x.save(rec)
	if err != nil {
		return fmt.Errorf("durably: record step %q of run %s: %w", rec.Name, x.run.ID, err)
	}
	if !ok {
		return x.refused(rec.Name, rec.Index) // (8)
	}
	x.mu.Lock()
	x.recordedIdx = rec.Index + 1 // the run's step counters, as the store advanced them
	x.recordedCnt++
	x.mu.Unlock()
	x.stepCompleted(rec)
	return nil
}

func (x *execution) stepCompleted(rec *store.Step) {
	run := x.run
	x.e.emit(Event{Type: EventStepComplete, RunID: run.ID, JobName: run.JobName, StepName: rec.Name, StepIndex: rec.Index,
		Output: rec.Output, Duration: rec.CompletedAt.Sub(rec.StartedAt), Labels: run.Labels})
}

// ---- fenced writes ----

// leaseWrite is a write of a lease holder, fenced by its generation: the
// store refuses it (false, nil) once the run is no longer leased to it.
type leaseWrite struct {
	name  string               // what the outage log calls it
	until func() time.Time     // the lease's end, on Config.Now's clock
	write func() (bool, error) // the store call
	// committed tells whether the write is in the database, when an
	// attempt failed as unavailable and a later one was refused or hit a
	// unique key: the first may have committed although its caller saw
	// the connection die. Nil: a refusal is a refusal.
	committed func(context.Context) (bool, error)
}

// writeWithinLease makes w, retrying while the database is unavailable and
// the lease lasts, or until ctx ends; a write that committed on an attempt
// whose answer was lost counts as done (w.committed), not as a lost lease.
func (e *Engine) writeWithinLease(ctx context.Context, w leaseWrite) (bool, error) {
	var ok bool
	retried, err := e.retryWithinLease(ctx, w.name, w.until, func() (err error) {
		ok, err = w.write()
		return err
	})
	if retried && !unavailable(err) && (err != nil || !ok) && w.committed != nil {
		if done, cerr := w.committed(context.WithoutCancel(ctx)); cerr == nil && done {
			e.outage.ok(e.logger)
			return true, nil
		}
	}
	return ok, err
}

// retryWithinLease calls try until it returns nil or an error other than
// ErrUnavailable, until the lease's end (on Config.Now's clock) comes before
// the next attempt would, or until ctx ends. retried reports that an attempt
// failed as unavailable before the last one. Reads a run cannot go on
// without (its completed steps) use it as writes do: they are as safe to
// repeat.
func (e *Engine) retryWithinLease(ctx context.Context, name string, until func() time.Time, try func() error) (retried bool, err error) {
	o := &e.outage
	var b backoff
	// A second bound on the wall clock, in case Config.Now is a clock that
	// does not advance: no lease outlives LeaseDuration without a renewal.
	var firstFailure time.Time
	for {
		err := try()
		if !unavailable(err) {
			if err == nil {
				o.ok(e.logger)
			}
			return retried, err
		}
		if !retried {
			retried, firstFailure = true, time.Now()
		}
		o.failed(e.logger, name, err)
		d := b.next()
		if !e.now().Add(d).Before(until()) || time.Since(firstFailure)+d > e.cfg.LeaseDuration || !sleepCtx(ctx, d) {
			return retried, err
		}
	}
}

// ---- the lease ----

// releaseLease hands a run back when this process gives it up: to pending,
// or by expiring its lease when a pending sibling forbids that (D12). It
// retries while the database is unavailable and the lease lasts. A
// hand-back that cannot happen is logged, never silent.
func (e *Engine) releaseLease(k *leaseKeeper) {
	lease := k.lease
	ok, err := e.writeWithinLease(context.Background(), leaseWrite{name: "release lease", until: k.until,
		write: func() (bool, error) { return e.store.ReleaseLease(context.Background(), lease, e.now()) }})
	switch {
	case err != nil:
		e.logger.WarnContext(e.runContext(lease.RunID), "durably: lease not released; it will expire", "runId", lease.RunID, "generation", lease.Generation, "err", err)
	case !ok:
		// Cancelled, finished or taken over meanwhile: nothing to hand back.
		e.logger.InfoContext(e.runContext(lease.RunID), "durably: lease not released: no longer held", "runId", lease.RunID, "generation", lease.Generation)
	}
}

// leaseKeeper renews a run's lease every LeaseRenewInterval from the claim
// on, and ends the run with ErrLeaseLost when a renewal is refused or the
// lease runs out before a renewal succeeds.
type leaseKeeper struct {
	e     *Engine
	run   *Run
	lease store.Lease

	mu          sync.Mutex
	stopped     bool
	lost        bool
	abort       context.CancelCauseFunc // set once the run executes
	deadline    *time.Timer
	renew       *time.Timer
	renewing    sync.WaitGroup // a renewal in progress, which stop waits for
	expires     time.Time      // the lease's end as last written, on Config.Now's clock
	lastRenewal time.Time      // no renewal at or after it (the run's deadline); zero: none
	retry       backoff        // between renewals the database turned away
}

func (e *Engine) keepLease(run *Run) *leaseKeeper {
	k := &leaseKeeper{e: e, run: run, lease: store.Lease{RunID: run.ID, Generation: run.LeaseGeneration}, expires: run.LeaseExpiresAt}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.deadline = time.AfterFunc(run.LeaseExpiresAt.Sub(e.now()), func() { k.lose() }) // on Config.Now's clock, as the lease was written
	k.renew = time.AfterFunc(e.cfg.LeaseRenewInterval, k.renewNow)
	return k
}

// until is when the lease ends unless renewed: the deadline of the
// retries of the lease holder's writes.
func (k *leaseKeeper) until() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.expires
}

// attach hands the keeper the run's abort; it reports whether the lease is
// already lost.
func (k *leaseKeeper) attach(abort context.CancelCauseFunc) (lost bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.abort = abort
	return k.lost
}

func (k *leaseKeeper) lose() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return
	}
	k.lost = true
	if k.abort != nil {
		k.abort(ErrLeaseLost)
	}
}

func (k *leaseKeeper) renewNow() {
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return
	}
	// Counted under mu before stop can see it, so that stop waits for it.
	k.renewing.Add(1)
	k.mu.Unlock()
	defer k.renewing.Done()

	e := k.e
	now := e.now()
	if k.pastLastRenewal(now) {
		return // the run is past its deadline: its lease runs out
	}
	next := now.Add(e.cfg.LeaseDuration)
	ok, err := e.store.RenewLease(context.Background(), k.lease, now, next)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return
	}
	switch {
	case err != nil && unavailable(err) && now.Before(k.expires):
		// Try again soon rather than at the next interval: the lease
		// must be renewed before it runs out.
		e.outage.failed(e.logger, "lease renewal", err)
		k.renew.Reset(k.retry.next())
		return
	case err != nil:
		e.workerError(err, "lease-renewal", k.run.ID)
	case !ok:
		k.lost = true
		if k.abort != nil {
			k.abort(ErrLeaseLost)
		}
		//lint:ignore ST1005 the original's worker:error text, carried on the wire verbatim
		e.workerError(fmt.Errorf("Lease renewal lost ownership for run %s", k.run.ID), "lease-renewal", k.run.ID)
		return
	default:
		e.outage.ok(e.logger)
		k.retry.reset()
		k.expires = next
		k.deadline.Reset(next.Sub(e.now())) // on Config.Now's clock, as the lease was written
		e.emit(Event{Type: EventRunLeaseRenewed, RunID: k.run.ID, JobName: k.run.JobName, LeaseOwner: k.run.LeaseOwner, LeaseExpiresAt: next, Labels: k.run.Labels})
	}
	k.renew.Reset(e.cfg.LeaseRenewInterval)
}

// noRenewalAfter stops renewals at t: a run past its deadline keeps its
// lease only until it runs out, so that a process that hangs with it
// loses it to another.
func (k *leaseKeeper) noRenewalAfter(t time.Time) {
	k.mu.Lock()
	k.lastRenewal = t
	k.mu.Unlock()
}

func (k *leaseKeeper) pastLastRenewal(now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return !k.lastRenewal.IsZero() && !now.Before(k.lastRenewal)
}

// stop ends renewals, waiting for one in progress; it may be called more
// than once.
func (k *leaseKeeper) stop() {
	k.mu.Lock()
	k.stopped = true
	k.deadline.Stop()
	k.renew.Stop()
	k.mu.Unlock()
	k.renewing.Wait()
}
