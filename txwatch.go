package durably

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/durably-go/durably/store"
)

// The commit watch. A transactional trigger returns before its
// transaction commits, and neither database/sql nor pgx tells anyone else
// of a commit: the engine learns of it by asking the store whether a run
// the trigger created exists yet (store.TxEnqueuer.CommittedRuns), first
// commitPollFirst after the trigger, then at doubling intervals up to
// commitPollMax, for commitWatchWindow. A transaction that commits within
// the window has its runs announced (run:trigger, run:coalesced) and the
// worker woken at most commitPollMax after the commit, typically within a
// few milliseconds; one that rolls back is forgotten at the window's end,
// having announced nothing; runs of a later commit are claimed at the
// next poll, unannounced. All of a call's runs commit together, so one of
// them stands for all. A run this process claims before the watch looks
// (a poll, or the claim that waited for the caller's lock on SQLite) has
// its trigger announced first (claimed), so that here run:trigger always
// comes before the run's other events. The probes are reads by primary key, batched: one
// read per interval however many triggers wait.
const (
	commitPollFirst   = time.Millisecond
	commitPollMax     = 50 * time.Millisecond
	commitWatchWindow = time.Minute
	// maxAwaitedCommits bounds what the watch holds; past it the oldest
	// trigger is forgotten (its runs still run, at the next poll).
	maxAwaitedCommits = 10_000
	// commitProbeBatch bounds the ids of one read.
	commitProbeBatch = 500
)

// commitWatch follows the transactions of transactional triggers. Its
// goroutine runs while it has triggers to follow, and Stop ends it.
type commitWatch struct {
	e    *Engine
	kick chan struct{} // a trigger was added

	// waiting is len(entries), read without the lock by claimed.
	waiting atomic.Int64

	mu      sync.Mutex
	entries []*awaitedCommit
	byRun   map[string]*awaitedCommit // each created run's trigger
	// life is the running goroutine's context, nil while none runs; end
	// ends it, and done closes when it returned.
	life context.Context
	end  context.CancelFunc
	done chan struct{}
}

// awaitedCommit is one transactional trigger whose commit is awaited.
type awaitedCommit struct {
	probe  string   // a run the trigger created
	runs   []string // all of them
	events []Event  // what the trigger announces once committed
	ready  bool     // one of its runs is claimable at once
	wakeAt []time.Time
	until  time.Time // the end of the window, on the wall clock
	next   time.Time // when to look next
	step   time.Duration
	over   bool // seen committed, or given up
}

func (w *commitWatch) init(e *Engine) {
	w.e = e
	w.kick = make(chan struct{}, 1)
}

// await follows the transaction of a trigger that wrote runs and got
// enqueued: a trigger that created no run (idempotent or coalesced
// items only) has nothing to show its commit, and announces nothing.
func (w *commitWatch) await(te store.TxEnqueuer, runs []store.NewRun, enqueued []store.Enqueued) {
	a := &awaitedCommit{}
	for i, en := range enqueued {
		if en.Disposition == store.Created {
			if a.probe == "" {
				a.probe = en.Run.ID
			}
			a.runs = append(a.runs, en.Run.ID)
			if en.Run.RunAt.IsZero() {
				a.ready = true
			} else {
				a.wakeAt = append(a.wakeAt, en.Run.RunAt)
			}
		}
		if ev, ok := triggerEvent(runs[i], en); ok {
			a.events = append(a.events, ev)
		}
	}
	if a.probe == "" {
		return
	}
	now := time.Now()
	a.until, a.step, a.next = now.Add(commitWatchWindow), commitPollFirst, now.Add(commitPollFirst)
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.entries) >= maxAwaitedCommits {
		w.entries[0].over = true
		w.prune()
	}
	w.entries = append(w.entries, a)
	if w.byRun == nil {
		w.byRun = map[string]*awaitedCommit{}
	}
	for _, id := range a.runs {
		w.byRun[id] = a
	}
	w.waiting.Store(int64(len(w.entries)))
	if w.life == nil {
		w.life, w.end = context.WithCancel(context.Background())
		w.done = make(chan struct{})
		go w.loop(te, w.life, w.done)
		return
	}
	signal(w.kick)
}

// close ends the watch, forgetting what it followed, and waits for its
// goroutine.
func (w *commitWatch) close() {
	w.mu.Lock()
	life, end, done := w.life, w.end, w.done
	w.life, w.entries, w.byRun = nil, nil, nil
	w.waiting.Store(0)
	w.mu.Unlock()
	if life != nil {
		end()
		<-done
	}
}

func (w *commitWatch) loop(te store.TxEnqueuer, life context.Context, done chan struct{}) {
	defer close(done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next, ok := w.nextLook(life)
		if !ok {
			return
		}
		timer.Reset(time.Until(next))
		select {
		case <-life.Done():
			return
		case <-w.kick:
			continue
		case <-timer.C:
		}
		w.look(life, te)
	}
}

// nextLook is when the earliest trigger is due to be looked at; false
// when none is left (the goroutine then ends, and the next trigger starts
// another) or the watch was closed.
func (w *commitWatch) nextLook(life context.Context) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.life != life {
		return time.Time{}, false // closed
	}
	if len(w.entries) == 0 {
		w.end()
		w.life = nil
		return time.Time{}, false
	}
	next := w.entries[0].next
	for _, a := range w.entries[1:] {
		if a.next.Before(next) {
			next = a.next
		}
	}
	return next, true
}

// look asks the store about the triggers that are due and announces those
// whose runs are visible.
func (w *commitWatch) look(ctx context.Context, te store.TxEnqueuer) {
	now := time.Now()
	w.mu.Lock()
	var due []*awaitedCommit
	var probes []string
	for _, a := range w.entries {
		if !a.next.After(now) && len(due) < commitProbeBatch {
			due, probes = append(due, a), append(probes, a.probe)
		}
	}
	w.mu.Unlock()
	if len(due) == 0 {
		return
	}
	found, err := te.CommittedRuns(ctx, probes)
	if err != nil {
		w.e.logger.Debug("durably: commit watch: read failed; looking again later", "err", err)
	}
	committed := make(map[string]bool, len(found))
	for _, id := range found {
		committed[id] = true
	}
	var announce []*awaitedCommit
	w.mu.Lock()
	for _, a := range due {
		switch {
		case a.over:
		case committed[a.probe]:
			a.over = true
			announce = append(announce, a)
		case !now.Before(a.until):
			a.over = true
		default:
			a.step = min(2*a.step, commitPollMax)
			a.next = now.Add(a.step)
		}
	}
	w.prune()
	w.mu.Unlock()
	for _, a := range announce {
		w.announce(a)
	}
}

// prune forgets the triggers that are over; w.mu is held.
func (w *commitWatch) prune() {
	w.entries = slices.DeleteFunc(w.entries, func(a *awaitedCommit) bool {
		if a.over {
			for _, id := range a.runs {
				delete(w.byRun, id)
			}
		}
		return a.over
	})
	w.waiting.Store(int64(len(w.entries)))
}

// claimed is called when this process claimed a run, before the run's
// first event: a run of an awaited trigger that is claimed was committed,
// whatever woke the claim (a poll, the commit's wake-up of another
// engine's worker, a lock that the caller's transaction held), so its
// trigger is announced first, and its events keep their order here.
func (w *commitWatch) claimed(runID string) {
	if w.waiting.Load() == 0 {
		return
	}
	w.mu.Lock()
	a := w.byRun[runID]
	if a == nil || a.over {
		w.mu.Unlock()
		return
	}
	a.over = true
	w.prune()
	w.mu.Unlock()
	w.announce(a)
}

// announce emits a committed trigger's events and wakes the worker for its
// runs, as a trigger outside a transaction does at once.
func (w *commitWatch) announce(a *awaitedCommit) {
	for _, ev := range a.events {
		w.e.emit(ev)
	}
	for _, t := range a.wakeAt {
		w.e.worker.wakeAt(t)
	}
	if a.ready {
		w.e.worker.wake()
	}
}
