package durably

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/durably-go/durably/runtime/store"
)

// worker is the engine's claim-and-execute loop (R-055 … R-059).
type worker struct {
	e *Engine

	mu       sync.Mutex
	running  bool
	stopping chan struct{} // closed by Stop: claim no more
	loopDone chan struct{} // closed when the loop has returned
	wakeCh   chan struct{} // a trigger in this process (D4)
	freed    chan struct{} // a slot freed up
	// Guarded by mu:
	executing int        // slots in use
	buffer    []*claimed // claimed runs waiting for a slot, oldest first
	idle      bool       // the last claim found fewer runs than it asked for

	inflight sync.WaitGroup
	active   sync.Map // run id → *execution, for in-process cancel

	maintenance struct {
		mu        sync.Mutex
		lastPurge time.Time
	}
}

// claimed is a run this worker holds a lease on, with the keeper of that
// lease, from the claim until the run ends.
type claimed struct {
	run    *Run
	keeper *leaseKeeper
}

// execution is one run being executed here.
type execution struct {
	abort context.CancelCauseFunc
}

func (w *worker) init(e *Engine) {
	w.e = e
	w.wakeCh = make(chan struct{}, 1)
	w.freed = make(chan struct{}, 1)
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// wake nudges an idle worker to claim now instead of at its next poll.
func (w *worker) wake() { signal(w.wakeCh) }

// Start starts the worker loop in the background; it is a no-op when the
// worker already runs. Stop it with Stop.
func (e *Engine) Start() error {
	w := &e.worker
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running {
		return nil
	}
	w.running = true
	w.idle = false
	w.stopping = make(chan struct{})
	w.loopDone = make(chan struct{})
	go w.loop(w.stopping, w.loopDone)
	return nil
}

// Stop stops claiming runs and waits for the runs in flight to finish
// . If ctx ends first, the runs still executing are cancelled with
// ErrShutdown: their steps' contexts end, nothing more is recorded for
// them, and their leases are handed back so that another worker resumes
// them at once. Stop then returns ctx's error. Stop on a stopped engine
// returns nil at once.
func (e *Engine) Stop(ctx context.Context) error {
	w := &e.worker
	w.mu.Lock()
	if !w.running {
		w.mu.Unlock()
		return nil
	}
	w.running = false
	close(w.stopping)
	loopDone := w.loopDone
	w.mu.Unlock()

	drained := make(chan struct{})
	go func() {
		<-loopDone
		w.inflight.Wait()
		close(drained)
	}()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
	}
	w.active.Range(func(_, v any) bool {
		v.(*execution).abort(ErrShutdown)
		return true
	})
	// Runs that honour their context unwind within moments and hand
	// their leases back; give them that moment, bounded, since ctx is over.
	select {
	case <-drained:
	case <-time.After(2 * time.Second):
	}
	return ctx.Err()
}

// loop keeps up to MaxConcurrentRuns runs executing. Runs are
// claimed in batches: enough to fill the free slots and a buffer of as many
// runs again, so that a slot that frees up starts its next run at once and
// claims cost one store call per several runs. A claim that comes back
// short means the queue is empty: the loop then runs idle maintenance (if
// nothing executes) and sleeps until a run finishes, a trigger wakes it (D4)
// or the poll interval passes.
func (w *worker) loop(stopping <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	defer w.releaseBuffer()
	e := w.e
	wakeups := e.store.Wakeups()
	poll := time.NewTimer(e.cfg.PollingInterval)
	defer poll.Stop()

	for {
		select {
		case <-stopping:
			return
		default:
		}
		w.startBuffered()
		if want := w.claimWant(); want > 0 {
			runs, err := e.claim(context.Background(), e.cfg.WorkerID, want)
			if err != nil {
				// Unlike the original, a failing database does not
				// make the worker spin: it waits for the next poll.
				e.logger.Error("durably: claim failed", "err", err)
			}
			w.mu.Lock()
			w.idle = err == nil && len(runs) < want
			for _, run := range runs {
				w.buffer = append(w.buffer, &claimed{run: run, keeper: e.keepLease(run)})
			}
			nothing := w.executing == 0 && len(w.buffer) == 0
			w.mu.Unlock()
			w.startBuffered()
			if err == nil && len(runs) == want {
				continue // the queue may hold more
			}
			if err == nil && nothing {
				w.idleMaintenance(context.Background())
			}
		}
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
		poll.Reset(e.cfg.PollingInterval)
		select {
		case <-stopping:
			return
		case <-w.freed:
		case <-w.wakeCh:
		case <-wakeups:
		case <-poll.C:
		}
	}
}

// claimWant is how many runs to claim now: the free slots plus a buffer of
// as many runs as there are slots (at least 4), claimed once half of the
// buffer is used up.
func (w *worker) claimWant() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	slots := w.e.cfg.MaxConcurrentRuns
	buffer := max(slots, 4)
	free := slots - w.executing
	want := free + buffer - len(w.buffer)
	if want <= 0 || (len(w.buffer) > 0 && want < buffer/2) {
		return 0
	}
	return want
}

// startBuffered starts buffered runs in free slots, oldest first.
func (w *worker) startBuffered() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.executing < w.e.cfg.MaxConcurrentRuns && len(w.buffer) > 0 {
		c := w.buffer[0]
		w.buffer[0] = nil
		w.buffer = w.buffer[1:]
		w.executing++
		w.launch(c)
	}
}

// launch executes c on its own goroutine in a slot already counted.
func (w *worker) launch(c *claimed) {
	w.inflight.Add(1)
	go w.executeInSlot(c)
}

// executeInSlot runs a claimed run in the slot and inflight count taken for
// it, and gives both back.
func (w *worker) executeInSlot(c *claimed) {
	defer w.inflight.Done()
	w.e.execute(c.run, c.keeper)
	w.mu.Lock()
	w.executing--
	w.mu.Unlock()
	signal(w.freed)
}

// releaseBuffer hands back the leases of claimed runs that never started.
func (w *worker) releaseBuffer() {
	w.mu.Lock()
	buffered := w.buffer
	w.buffer = nil
	w.mu.Unlock()
	for _, c := range buffered {
		c.keeper.stop()
		w.e.releaseLease(c.keeper.lease)
	}
}

// reserveDirect takes a slot for a run this engine triggers itself, when
// the worker is idle with a free slot: the run is then inserted already
// leased and starts without a claim (store.Claim).
func (w *worker) reserveDirect() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.running || !w.idle || len(w.buffer) > 0 || w.executing >= w.e.cfg.MaxConcurrentRuns {
		return false
	}
	w.executing++
	// Counted in flight from here, under mu while running holds, so that
	// a Stop that begins meanwhile waits for this run too.
	w.inflight.Add(1)
	return true
}

// unreserve gives back a slot reserveDirect took but did not use.
func (w *worker) unreserve() {
	w.mu.Lock()
	w.executing--
	w.mu.Unlock()
	w.inflight.Done()
	signal(w.freed)
}

// startDirect executes a run inserted leased, in the slot reserveDirect took.
func (w *worker) startDirect(run *Run) {
	go w.executeInSlot(&claimed{run: run, keeper: w.e.keepLease(run)})
}

// claim leases up to limit runs.
func (e *Engine) claim(ctx context.Context, workerID string, limit int) ([]*Run, error) {
	runs, err := e.store.Claim(ctx, store.ClaimRequest{WorkerID: workerID, Now: e.now(), Lease: e.cfg.LeaseDuration, Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("durably: claim: %w", err)
	}
	return runs, nil
}

// ProcessOne claims one run and executes it to the end, whatever the
// outcome, returning true; or returns false when nothing was claimable
// . It does no maintenance. workerID "" means a fresh worker id.
func (e *Engine) ProcessOne(ctx context.Context, workerID string) (bool, error) {
	if workerID == "" {
		workerID = "worker_" + e.newID()
	}
	runs, err := e.claim(ctx, workerID, 1)
	if err != nil || len(runs) == 0 {
		return false, err
	}
	e.worker.inflight.Add(1)
	defer e.worker.inflight.Done()
	e.execute(runs[0], e.keepLease(runs[0]))
	return true, nil
}

// ProcessUntilIdle processes runs one after another until none is claimable
// or maxRuns (if positive) were processed, and returns how many it
// processed. Idle maintenance runs when it stopped for lack of work.
func (e *Engine) ProcessUntilIdle(ctx context.Context, workerID string, maxRuns int) (int, error) {
	if workerID == "" {
		workerID = "worker_" + e.newID()
	}
	n := 0
	for maxRuns <= 0 || n < maxRuns {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		ok, err := e.ProcessOne(ctx, workerID)
		if err != nil {
			return n, err
		}
		if !ok {
			e.worker.idleMaintenance(ctx)
			return n, nil
		}
		n++
	}
	return n, nil
}

// idleMaintenance releases expired leases, purges old runs when RetainRuns
// is set (at most 100 per minute, R-105) and lets the store do its own
// housekeeping. Errors are reported as worker:error events.
func (w *worker) idleMaintenance(ctx context.Context) {
	e := w.e
	w.maintenance.mu.Lock()
	defer w.maintenance.mu.Unlock()
	now := e.now()
	if _, err := e.store.ReleaseExpiredLeases(ctx, now); err != nil {
		e.workerError(err, "idle-maintenance", "")
	}
	if e.cfg.RetainRuns > 0 && (w.maintenance.lastPurge.IsZero() || now.Sub(w.maintenance.lastPurge) >= time.Minute) {
		w.maintenance.lastPurge = now
		if _, err := e.store.PurgeRuns(ctx, now.Add(-e.cfg.RetainRuns), 100); err != nil {
			e.workerError(err, "idle-maintenance", "")
		}
	}
	if err := e.store.Maintain(ctx, now); err != nil {
		e.workerError(err, "wal-checkpoint", "")
	}
}

func (e *Engine) workerError(err error, context, runID string) {
	e.logger.Warn("durably: worker error", "context", context, "runId", runID, "err", err)
	e.emit(Event{Type: EventWorkerError, Error: err.Error(), Context: context, RunID: runID})
}

// execute runs a claimed run to its end (R-070 … R-075); keeper holds its
// lease from the claim on.
func (e *Engine) execute(run *Run, keeper *leaseKeeper) {
	defer keeper.stop()
	lease := keeper.lease
	job := e.job(run.JobName)
	if job == nil {
		// D7: the original fails such runs silently; we say why.
		msg := "job not registered: " + run.JobName
		ok, err := e.store.FinishRun(context.Background(), lease, store.Finish{Status: store.StatusFailed, Error: msg, Now: e.now(),
			CurrentStepIndex: run.CurrentStepIndex, CompletedStepCount: run.CompletedStepCount})
		if err != nil {
			e.workerError(err, "run-failure", run.ID)
		} else if ok {
			e.emit(Event{Type: EventRunFail, RunID: run.ID, JobName: run.JobName, Error: msg, FailedStepName: "unknown", Labels: run.Labels})
		}
		return
	}

	ctx, abort := context.WithCancelCause(context.Background())
	defer abort(nil)
	w := &e.worker
	w.active.Store(run.ID, &execution{abort: abort})
	defer w.active.Delete(run.ID)

	s := &StepContext{e: e, run: run, lease: lease, ctx: ctx, abort: abort, completed: map[string]*store.Step{},
		recordedIdx: run.CurrentStepIndex, recordedCnt: run.CompletedStepCount}
	s.logger = slog.New(&stepLogHandler{s: s})
	if keeper.attach(abort) {
		return // the lease ran out before the run could start
	}

	e.emit(Event{Type: EventRunLeased, RunID: run.ID, JobName: run.JobName, Input: run.Input,
		LeaseOwner: run.LeaseOwner, LeaseExpiresAt: run.LeaseExpiresAt, Labels: run.Labels})

	started := time.Now()
	if run.CompletedStepCount > 0 {
		steps, err := e.store.GetCompletedSteps(ctx, run.ID)
		if err != nil {
			// Without the record of completed steps we would run them
			// again: leave the run to be claimed once more.
			e.workerError(fmt.Errorf("load completed steps: %w", err), "run-failure", run.ID)
			e.releaseLease(lease)
			return
		}
		for _, st := range steps {
			s.completed[st.Name] = st
		}
	}

	output, runErr := e.callJob(ctx, job, s, run.Input)
	keeper.stop()

	// A job that ends with an error after its run was cancelled, lost its
	// lease or was stopped has nothing to record; a stopped
	// run's lease goes back so another worker resumes it. A job that
	// returns normally is completed, fenced, whatever happened.
	if runErr != nil && ctx.Err() != nil {
		if errors.Is(context.Cause(ctx), ErrShutdown) {
			// A step that completed just before the stop is recorded
			// before the lease goes back, so it does not run again.
			if err := s.flush(); err != nil {
				e.workerError(err, "run-failure", run.ID)
			}
			e.releaseLease(lease)
		}
		return
	}
	if errors.Is(runErr, ErrCancelled) || errors.Is(runErr, ErrLeaseLost) {
		return
	}
	// The step held back is recorded with the finish, unless it would be
	// deleted by it at once (PreserveSteps off): then only the counters
	// say it happened.
	pending, flushErr := s.takePending()
	if flushErr != nil {
		// A refused step write already ended the run (its context says
		// why). Any other failure to record a step leaves the run to be
		// resumed from its last recorded step, here or elsewhere, at once.
		if ctx.Err() == nil {
			e.workerError(flushErr, "run-failure", run.ID)
			e.releaseLease(lease)
		}
		return
	}
	now := e.now()
	fin := store.Finish{Status: store.StatusCompleted, Output: output, Now: now, DeleteSteps: !e.cfg.PreserveSteps}
	if runErr != nil {
		fin = store.Finish{Status: store.StatusFailed, Error: errorMessage(runErr), Now: now, DeleteSteps: !e.cfg.PreserveSteps}
	}
	fin.CurrentStepIndex, fin.CompletedStepCount = s.recordedIdx, s.recordedCnt
	if pending != nil {
		fin.CurrentStepIndex, fin.CompletedStepCount = pending.Index+1, s.recordedCnt+1
		if e.cfg.PreserveSteps {
			fin.Steps = []*store.Step{pending}
		}
	}
	var failedStep string
	if runErr != nil {
		// failedStepName is read before the steps may be deleted.
		failedStep = e.firstFailedStep(run.ID)
	}
	ok, err := e.store.FinishRun(context.Background(), lease, fin)
	switch {
	case err != nil && runErr == nil:
		e.workerError(err, "run-completion", run.ID)
	case err != nil:
		e.workerError(err, "run-failure", run.ID)
	case !ok && pending != nil:
		_ = s.refused(pending.Name, pending.Index) // as a refused step write would
	case !ok && runErr == nil:
		e.workerError(fmt.Errorf("Lease lost before completing run %s", run.ID), "run-completion", "")
	case !ok:
		e.workerError(fmt.Errorf("Lease lost before recording failure for run %s", run.ID), "run-failure", "")
	default:
		if pending != nil {
			s.stepCompleted(pending)
		}
		if runErr == nil {
			e.emit(Event{Type: EventRunComplete, RunID: run.ID, JobName: run.JobName, Output: output, Duration: time.Since(started), Labels: run.Labels})
		} else {
			e.emit(Event{Type: EventRunFail, RunID: run.ID, JobName: run.JobName, Error: fin.Error, FailedStepName: failedStep, Labels: run.Labels})
		}
	}
}

// callJob runs the job body; a panic fails the run instead of the process.
func (e *Engine) callJob(ctx context.Context, job *jobEntry, s *StepContext, input []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("job %q panicked: %v", job.name, r)
		}
	}()
	return job.execute(ctx, s, input)
}

func (e *Engine) firstFailedStep(runID string) string {
	steps, err := e.store.GetSteps(context.Background(), runID)
	if err == nil {
		for _, st := range steps {
			if st.Status == store.StepFailed {
				return st.Name
			}
		}
	}
	return "unknown"
}

// releaseLease hands a run back when this process gives it up.
func (e *Engine) releaseLease(lease store.Lease) {
	if _, err := e.store.ReleaseLease(context.Background(), lease, e.now()); err != nil {
		e.logger.Warn("durably: lease not released; it will expire", "runId", lease.RunID, "err", err)
	}
}

// leaseKeeper renews a run's lease every LeaseRenewInterval from the claim
// on, and ends the run with ErrLeaseLost when a renewal is refused or the
// lease runs out before a renewal succeeds.
type leaseKeeper struct {
	e     *Engine
	run   *Run
	lease store.Lease

	mu       sync.Mutex
	stopped  bool
	lost     bool
	abort    context.CancelCauseFunc // set once the run executes
	deadline *time.Timer
	renew    *time.Timer
}

func (e *Engine) keepLease(run *Run) *leaseKeeper {
	k := &leaseKeeper{e: e, run: run, lease: store.Lease{RunID: run.ID, Generation: run.LeaseGeneration}}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.deadline = time.AfterFunc(run.LeaseExpiresAt.Sub(e.now()), func() { k.lose() }) // on Config.Now's clock, as the lease was written
	k.renew = time.AfterFunc(e.cfg.LeaseRenewInterval, k.renewNow)
	return k
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
	e := k.e
	now := e.now()
	next := now.Add(e.cfg.LeaseDuration)
	ok, err := e.store.RenewLease(context.Background(), k.lease, now, next)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return
	}
	switch {
	case err != nil:
		e.workerError(err, "lease-renewal", k.run.ID)
	case !ok:
		k.lost = true
		if k.abort != nil {
			k.abort(ErrLeaseLost)
		}
		e.workerError(fmt.Errorf("Lease renewal lost ownership for run %s", k.run.ID), "lease-renewal", k.run.ID)
		return
	default:
		k.deadline.Reset(next.Sub(e.now())) // on Config.Now's clock, as the renewed lease is written
		e.emit(Event{Type: EventRunLeaseRenewed, RunID: k.run.ID, JobName: k.run.JobName, LeaseOwner: k.run.LeaseOwner, LeaseExpiresAt: next, Labels: k.run.Labels})
	}
	k.renew.Reset(e.cfg.LeaseRenewInterval)
}

// stop ends renewals; it may be called more than once.
func (k *leaseKeeper) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	k.deadline.Stop()
	k.renew.Stop()
}
