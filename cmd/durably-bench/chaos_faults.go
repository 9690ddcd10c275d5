package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/faultproxy"
)

// chaosFault takes the database away from the workers: down starts it; up,
// after length, ends it (nil: the fault is a single event, such as answers
// lost on the connections open at that moment).
type chaosFault struct {
	name   string
	length time.Duration
	down   func() error
	up     func() error
}

// chaosFaults returns the faults of db's kind, the address workers reach
// the database at, and what closes it. SQLite's outage is another
// connection holding the write lock past the workers' busy timeout (real
// SQLITE_BUSY errors). PostgreSQL's workers go through a fault proxy: an
// outage (connections reset, new ones refused, as in a server restart), a
// silence (every connection stops answering without closing, as when a NAT
// forgets them) and lost answers (what the server sends back is lost: a
// commit goes through unbeknown to its client).
func chaosFaults(db *benchDB) (faults []chaosFault, target string, closeFn func(), err error) {
	if db.kind != "postgres" {
		var lock *sql.DB
		var tx *sql.Tx
		down := func() error {
			var err error
			if lock, err = sql.Open("sqlite", db.target+"?_txlock=immediate&_pragma=busy_timeout(10000)"); err != nil {
				return err
			}
			tx, err = lock.Begin()
			return err
		}
		up := func() error { return errors.Join(tx.Rollback(), lock.Close()) }
		return []chaosFault{{"outage", chaosOutage, down, up}}, db.target, func() {}, nil
	}
	u, err := url.Parse(db.target)
	if err != nil {
		return nil, "", nil, err
	}
	proxy, err := faultproxy.Start(u.Host)
	if err != nil {
		return nil, "", nil, err
	}
	u.Host = proxy.Addr()
	faults = []chaosFault{
		{"outage", chaosOutage, func() error { proxy.Reset(); return proxy.Refuse() }, proxy.Restore},
		{"silence", chaosSilence, func() error { proxy.Silence(); return nil }, proxy.Restore},
		{"lost_answers", 0, func() error { proxy.LoseAnswers(); return nil }, nil},
	}
	return faults, u.String(), func() { proxy.Close() }, nil
}

// chaosSnapshot is what was stalled when a fault ended: the runs leased
// then, with the steps each had recorded.
type chaosSnapshot map[string]int

// fault runs f while the worker has runs in flight and returns how long
// after its end every stalled run recorded a step again (or ended) and a
// run triggered after it completed; past chaosResumeBound it fails.
func (w *chaosWorkload) fault(ctx context.Context, fleet *chaosFleet, f chaosFault) (time.Duration, error) {
	if err := w.awaitInFlight(ctx, fleet); err != nil {
		return 0, err
	}
	var stalled chaosSnapshot
	var err error
	if f.up == nil {
		if stalled, err = w.snapshot(ctx); err != nil {
			return 0, err
		}
	}
	if err := f.down(); err != nil {
		return 0, err
	}
	time.Sleep(f.length) // the fault itself: nothing to poll for
	if f.up != nil {
		if stalled, err = w.snapshot(ctx); err != nil {
			return 0, err
		}
		if err := f.up(); err != nil {
			return 0, err
		}
	}
	back := time.Now()
	// A run triggered now completes only once the worker claims and writes
	// again: a write that went through unanswered (lost answers) cannot
	// pass for a recovery.
	probe, err := w.steps.Trigger(ctx, chaosInput{I: -1}, durably.WithPriority(-2))
	if err != nil {
		return 0, fmt.Errorf("trigger a probe: %w", err)
	}
	w.acknowledge(probe.Run.ID, kindPlain)
	stalled[probe.Run.ID] = chaosSteps - 1 // moved once it records its last step: completed
	for ; ; time.Sleep(10 * time.Millisecond) {
		moved, err := w.moved(ctx, stalled)
		switch {
		case err != nil:
			return 0, err
		case moved:
			return time.Since(back), nil
		case fleet.failure() != nil:
			return 0, fleet.failure()
		case time.Since(back) > chaosResumeBound:
			return 0, fmt.Errorf("guarantee broken: runs stalled by the fault did not go on within %v of its end: %v", chaosResumeBound, stalled)
		}
	}
}

// awaitInFlight makes sure the worker executes runs of the chaos job, so
// that a fault stalls some: it adds runs if the backlog ran dry and waits
// until one is leased.
func (w *chaosWorkload) awaitInFlight(ctx context.Context, fleet *chaosFleet) error {
	pending, err := w.e.ListRuns(ctx, durably.RunFilter{Statuses: []durably.Status{durably.StatusPending}, JobNames: []string{chaosJobName}, Limit: w.c.slots})
	if err != nil {
		return err
	}
	for i := len(pending); i < 2*w.c.slots; i++ {
		res, err := w.steps.Trigger(ctx, chaosInput{I: -1})
		if err != nil {
			return err
		}
		w.acknowledge(res.Run.ID, kindPlain)
	}
	for deadline := time.Now().Add(chaosResumeBound); ; time.Sleep(10 * time.Millisecond) {
		leased, err := w.e.ListRuns(ctx, durably.RunFilter{Statuses: []durably.Status{durably.StatusLeased}, JobNames: []string{chaosJobName}, Limit: 1})
		switch {
		case err != nil:
			return err
		case len(leased) > 0:
			return nil
		case fleet.failure() != nil:
			return fleet.failure()
		case time.Now().After(deadline):
			return errors.New("no run leased by the worker before the fault")
		}
	}
}

func (w *chaosWorkload) snapshot(ctx context.Context) (chaosSnapshot, error) {
	leased, err := w.e.ListRuns(ctx, durably.RunFilter{Statuses: []durably.Status{durably.StatusLeased}, JobNames: []string{chaosJobName}})
	if err != nil {
		return nil, err
	}
	s := chaosSnapshot{}
	for _, run := range leased {
		s[run.ID] = run.CompletedStepCount
	}
	return s, nil
}

// moved reports whether every run of s recorded a step since, or ended.
func (w *chaosWorkload) moved(ctx context.Context, s chaosSnapshot) (bool, error) {
	for id, steps := range s {
		run, err := w.e.GetRun(ctx, id)
		if err != nil {
			return false, err
		}
		if run != nil && !run.Status.Terminal() && run.CompletedStepCount <= steps {
			return false, nil
		}
	}
	return true, nil
}

func (w *chaosWorkload) acknowledge(id string, kind chaosKind) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.runs[id] = kind
}

// startFeeder triggers the concurrency-keyed runs, spread over the
// estimated length of the faults and kills, and re-triggers idempotency
// keys, until stop is called. Keyed runs go ahead of the backlog (priority
// -1): a key's pending run is claimed soon, so that its next trigger
// creates a run rather than coalescing (behind the whole backlog, a loaded
// machine once acknowledged 4 keyed runs). Their steps take
// chaosKeyedStepMs, so that a key's next run often waits for the one
// running: contention, and, when that one's worker dies, a pending sibling
// of an expired lease (D12).
func (w *chaosWorkload) startFeeder(ctx context.Context, estimate time.Duration) (stop func()) {
	pace := min(max(estimate*chaosKeys/time.Duration(w.mix.keyed), 20*time.Millisecond), time.Second)
	quit, done := make(chan struct{}), make(chan struct{})
	keys := make([]string, 0, len(w.idemIDs))
	for k := range w.idemIDs {
		keys = append(keys, k)
	}
	go func() {
		defer close(done)
		tick := time.NewTicker(pace)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			w.triggerKeyed(ctx, i)
			if len(keys) > 0 {
				w.retrigger(ctx, keys[rand.IntN(len(keys))])
			}
		}
	}()
	return func() { close(quit); <-done }
}

// triggerKeyed triggers a run of every concurrency key, until the keyed
// share is reached. Errors are expected while the database is away.
func (w *chaosWorkload) triggerKeyed(ctx context.Context, tick int) {
	for k := range chaosKeys {
		w.mu.Lock()
		full := w.keyed.created >= w.mix.keyed
		w.mu.Unlock()
		if full {
			return
		}
		res, err := w.steps.Trigger(ctx, chaosInput{I: -(tick*chaosKeys + k), StepMs: chaosKeyedStepMs},
			durably.WithConcurrencyKey("key-"+strconv.Itoa(k)), durably.WithCoalesceSkip(), durably.WithPriority(-1))
		if err != nil {
			continue
		}
		w.mu.Lock()
		switch res.Disposition {
		case durably.Created:
			w.runs[res.Run.ID] = kindKeyed
			w.keyed.created++
		case durably.Coalesced:
			w.keyed.coalesced++
		}
		w.mu.Unlock()
	}
}

// retrigger triggers an idempotency key again: the answer must be its run.
func (w *chaosWorkload) retrigger(ctx context.Context, key string) {
	res, err := w.steps.Trigger(ctx, chaosInput{}, durably.WithIdempotencyKey(key))
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.idem.retriggers++
	if want := w.idemIDs[key]; res.Disposition != durably.Idempotent || res.Run.ID != want {
		w.idem.wrong++
		if res.Disposition == durably.Created {
			w.runs[res.Run.ID] = kindIdem // a second run of the key: it must still end
		}
		if w.idem.first == "" {
			w.idem.first = fmt.Sprintf("key %s answered %s run %s, want idempotent run %s", key, res.Disposition, res.Run.ID, want)
		}
	}
}
