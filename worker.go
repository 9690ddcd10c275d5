package durably

import (
	"container/heap"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/durably-go/durably/store"
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
	dueCh    chan struct{} // wakeAt added an earlier due time
	// Guarded by mu:
	executing int        // slots in use
	ending    int        // of those, slots whose run is writing its end
	buffer    []*claimed // runs claimed for ending slots, oldest first
	idle      bool       // the last claim found fewer runs than it asked for
	due       dueTimes   // when runs this process delayed or deferred become due

	inflight sync.WaitGroup

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
	direct bool // inserted leased by this engine's trigger (reserveDirect)
}

func (w *worker) init(e *Engine) {
	w.e = e
	w.wakeCh = make(chan struct{}, 1)
	w.freed = make(chan struct{}, 1)
	w.dueCh = make(chan struct{}, 1)
}

// maxDueTimes bounds the due times a worker remembers; runs beyond it are
// found by the poll, as runs delayed by other processes are.
const maxDueTimes = 10000

// dueTimes is a min-heap of times on the engine's clock (Config.Now).
type dueTimes []time.Time

func (h dueTimes) Len() int           { return len(h) }
func (h dueTimes) Less(i, j int) bool { return h[i].Before(h[j]) }
func (h dueTimes) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueTimes) Push(x any)        { *h = append(*h, x.(time.Time)) }
func (h *dueTimes) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

// wakeAt makes the worker claim at t (on Config.Now's clock), when a run
// this process triggered with a delay, or deferred (a retry, a sleep),
// becomes due: such a run starts within moments of its time rather than at
// the next poll. Runs other processes delay are found by polling.
func (w *worker) wakeAt(t time.Time) {
	w.mu.Lock()
	if len(w.due) >= maxDueTimes {
		w.mu.Unlock()
		return
	}
	earliest := len(w.due) == 0 || t.Before(w.due[0])
	heap.Push(&w.due, t)
	w.mu.Unlock()
	if earliest {
		signal(w.dueCh)
	}
}

// nextDue drops the due times not after served (a claim at or after them
// has run) and returns the earliest later one, or the zero time.
func (w *worker) nextDue(served time.Time) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.due) > 0 && !w.due[0].After(served) {
		heap.Pop(&w.due)
	}
	if len(w.due) == 0 {
		return time.Time{}
	}
	return w.due[0]
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
	e.startScheduler()
	return nil
}

// Stop stops claiming runs and waits for the runs in flight to finish
// . If ctx ends first, the runs still executing are cancelled with
// ErrShutdown: their steps' contexts end, nothing more is recorded for
// them, and their leases are handed back so that another worker resumes
// them at once. Stop then returns ctx's error. Stop on a stopped engine
// returns nil at once. Stop also ends the watch of transactional
// triggers' commits: a run whose transaction commits later is
// claimed by polling, unannounced.
func (e *Engine) Stop(ctx context.Context) error {
	e.commits.close()
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
	e.stopScheduler()

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
	e.running.Range(func(_, abort any) bool {
		abort.(context.CancelCauseFunc)(ErrShutdown)
		return true
	})
	// Runs that honour their context unwind within moments and hand
	// their leases back; give them that moment, bounded, since ctx is over.
	grace := time.NewTimer(2 * time.Second)
	defer grace.Stop()
	select {
	case <-drained:
	case <-grace.C:
	}
	return ctx.Err()
}

// loop keeps up to MaxConcurrentRuns runs executing. It claims as
// many runs as slots are free or ending (claimWant), so that a run leased
// here always starts here at once, or as soon as the write that ends a
// slot's run returns. A claim that comes back short means the queue is
// empty: the loop then runs idle maintenance (if nothing executes) and
// sleeps until a slot frees or starts ending, a trigger wakes it (D4), a
// known due time comes, or the poll interval passes.
func (w *worker) loop(stopping <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	defer w.releaseBuffer()
	e := w.e
	wakeups := e.store.Wakeups()
	poll := time.NewTimer(e.cfg.PollingInterval)
	defer poll.Stop()
	dueTimer := time.NewTimer(time.Hour)
	dueTimer.Stop()
	defer dueTimer.Stop()
	var retry backoff
	var claimedAt time.Time // the clock before the last claim

	for {
		select {
		case <-stopping:
			return
		default:
		}
		w.startBuffered()
		// Whatever woke the loop (a trigger, a due time) may have made
		// runs claimable: the queue is no longer known to be empty. With
		// no slot to claim for, the end of a direct run must wake a claim;
		// with one, no trigger may take the slot this claim is for
		// (reserveDirect) while it is under way. In one critical section
		// with the count, so that a direct run ending in between is not
		// left quiet.
		if want := w.claimWant(); want > 0 {
			// Due times up to here are served by this claim (its Now is
			// later); later ones keep the due timer armed.
			claimedAt = e.now()
			switch w.claimRuns(stopping, want, &retry) {
			case stopLoop:
				return
			case claimAgain:
				continue
			}
		}
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
		poll.Reset(e.cfg.PollingInterval)
		if !w.wait(stopping, wakeups, poll, dueTimer, claimedAt) {
			return
		}
	}
}

// afterClaim is what the worker's loop does once a claim is over.
type afterClaim int

const (
	waitForWork afterClaim = iota // until a wake-up, a due time or the poll
	claimAgain                    // at once: the queue may hold more, or the database is to be tried again
	stopLoop                      // the worker stops
)

// claimRuns claims up to want runs, starts them on the free slots and says
// what the loop does next.
func (w *worker) claimRuns(stopping <-chan struct{}, want int, retry *backoff) afterClaim {
	e := w.e
	runs, err := e.claim(context.Background(), e.cfg.WorkerID, want)
	switch {
	case err == nil:
		e.outage.ok(e.logger)
		retry.reset()
	case unavailable(err):
		// The database is away: try again soon (at most retryMax
		// from now, so runs move on within moments of its return),
		// logging the outage once rather than every attempt.
		e.outage.failed(e.logger, "claim", err)
		if !sleepUntilStopped(stopping, retry.next()) {
			return stopLoop
		}
		return claimAgain
	default:
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
	select {
	case <-stopping:
		// Stop may have given up waiting during the claim: the
		// runs it brought go back (releaseBuffer), not into slots
		// nothing would abort.
		return stopLoop
	default:
	}
	w.startBuffered()
	if err == nil && len(runs) == want {
		return claimAgain // the queue may hold more
	}
	if err == nil && nothing {
		w.idleMaintenance(context.Background())
	}
	return waitForWork
}

// wait sleeps until a slot frees up, a trigger wakes the worker (D4), the
// poll interval passes, or a run this process knows of becomes due; false
// means stopping. Due times not after claimedAt were served by the last
// claim; one that passed since (while the loop started runs or did
// maintenance) makes the timer fire at once. The due timer is re-armed when
// an earlier due time comes.
func (w *worker) wait(stopping <-chan struct{}, wakeups <-chan struct{}, poll, dueTimer *time.Timer, claimedAt time.Time) bool {
	for {
		dueTimer.Stop()
		var dueC <-chan time.Time
		if next := w.nextDue(claimedAt); !next.IsZero() {
			dueTimer.Reset(max(0, next.Sub(w.e.now())))
			dueC = dueTimer.C
		}
		select {
		case <-stopping:
			return false
		case <-w.dueCh:
			continue
		case <-dueC:
		case <-w.freed:
		case <-w.wakeCh:
		case <-wakeups:
		case <-poll.C:
		}
		return true
	}
}

// sleepUntilStopped waits d or until stopping closes; false means stopping.
func sleepUntilStopped(stopping <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-stopping:
		return false
	case <-t.C:
		return true
	}
}

// claimWant is how many runs to claim now: one for each free slot, and one
// for each slot whose run is writing its end (its finish or its hand-back
// to wait), less the runs already claimed for those. A run claimed for an
// ending slot is leased while that write commits, often in the same
// commit, and starts as soon as the write returns, so a busy worker of
// short runs loses no commit between one run and the next; but no run is
// ever leased here that no slot here is about to execute. So a worker
// never holds runs that another process's idle slot could start (issue
// 19), Job.MaxRunning counts executing runs, and priority holds across
// processes up to the time of one write. The worker is no longer idle
// from here (see loop).
func (w *worker) claimWant() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.idle = false
	return max(0, w.e.cfg.MaxConcurrentRuns-w.executing+w.ending-len(w.buffer))
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
	ending := false
	w.e.execute(c.run, c.keeper, func() {
		w.mu.Lock()
		ending = true
		w.ending++
		quiet := c.direct && w.idle && len(w.buffer) == 0
		w.mu.Unlock()
		if !quiet { // see below
			signal(w.freed)
		}
	})
	w.mu.Lock()
	w.executing--
	if ending {
		w.ending--
	}
	quiet := c.direct && w.idle && len(w.buffer) == 0
	w.mu.Unlock()
	// A direct run's end makes nothing claimable: it held no concurrency
	// key and counted against no job limit, and it could start only
	// because the last claim had found nothing; whatever became claimable
	// since (a trigger here, a notification, a due time) wakes the loop by
	// itself, and runs of other processes are found by the poll, which
	// this leaves running. A claim here would only put an empty claim, and
	// idle maintenance, in front of the next trigger's commit.
	if !quiet {
		signal(w.freed)
	}
}

// releaseBuffer hands back the leases of claimed runs that never started.
func (w *worker) releaseBuffer() {
	w.mu.Lock()
	buffered := w.buffer
	w.buffer = nil
	w.mu.Unlock()
	// Concurrently: during an outage each hand-back retries until its
	// lease ends, and they should not wait for one another.
	var wg sync.WaitGroup
	for _, c := range buffered {
		c.keeper.stop()
		wg.Go(func() { w.e.releaseLease(c.keeper) })
	}
	wg.Wait()
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
	go w.executeInSlot(&claimed{run: run, keeper: w.e.keepLease(run), direct: true})
}

// claim leases up to limit runs.
func (e *Engine) claim(ctx context.Context, workerID string, limit int) ([]*Run, error) {
	jobs, perTenant := e.claimLimits()
	runs, err := e.store.Claim(ctx, store.ClaimRequest{WorkerID: workerID, Now: e.now(), Lease: e.cfg.LeaseDuration, Limit: limit,
		JobLimits: jobs, TenantLimits: perTenant})
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
	if err := checkText("workerID", workerID, MaxWorkerIDBytes); err != nil {
		return false, err
	}
	runs, err := e.claim(ctx, workerID, 1)
	if err != nil || len(runs) == 0 {
		return false, err
	}
	e.worker.inflight.Add(1)
	defer e.worker.inflight.Done()
	e.execute(runs[0], e.keepLease(runs[0]), func() {})
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
		w.maintenanceError(err, "idle-maintenance")
	}
	if e.cfg.RetainRuns > 0 && (w.maintenance.lastPurge.IsZero() || now.Sub(w.maintenance.lastPurge) >= time.Minute) {
		w.maintenance.lastPurge = now
		if _, err := e.store.PurgeRuns(ctx, now.Add(-e.cfg.RetainRuns), 100); err != nil {
			w.maintenanceError(err, "idle-maintenance")
		}
	}
	if err := e.store.Maintain(ctx, now); err != nil {
		w.maintenanceError(err, "wal-checkpoint")
	}
}

// maintenanceError reports a failed maintenance task; an unavailable
// database is part of the outage the claims already report, and the task
// runs again at the next idle moment.
func (w *worker) maintenanceError(err error, context string) {
	if unavailable(err) {
		w.e.outage.failed(w.e.logger, context, err)
		return
	}
	w.e.workerError(err, context, "")
}
