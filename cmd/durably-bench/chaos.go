package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/durably-go/durably"
)

// The chaos workload: worker processes (this program, re-executed with
// -chaos-child; one at a time, chaosFleet) execute a backlog of runs while
// the parent takes the database away (an outage; on PostgreSQL also a
// silence and lost answers), SIGKILLs workers at random moments, and keeps
// triggering keyed runs. Some runs are poison (a step exits the worker
// process), some hang in a step deaf to its context. At the end it checks
// every run against what durably promises, and fails on a broken promise.
const (
	chaosLease   = time.Second
	chaosOutage  = 3 * time.Second
	chaosSilence = 5 * time.Second
	// chaosResumeBound is how soon after a fault every stalled run must
	// record a step again (issue 19 asks 20 s of a silent connection).
	chaosResumeBound = 20 * time.Second
	chaosKeys        = 4               // concurrency keys the keyed runs share
	chaosKeyedStepMs = 20              // keyed runs' steps: long enough that a key's next trigger finds it running
	chaosFinish      = 3 * time.Minute // bound on the last phase: every run ended
	chaosKillMin     = 100 * time.Millisecond
	chaosKillSpread  = 500 * time.Millisecond
)

// chaosMixCounts is the share of each kind of run in a workload of n.
type chaosMixCounts struct {
	poison, hang int // in the backlog
	lateHang     int // hanging runs triggered once no worker dies any more: one per slot (set by newChaosWorkload)
	idem         int // in the backlog, with an idempotency key each, re-triggered during the chaos
	keyed        int // concurrency-keyed, triggered during the chaos
}

func chaosMix(n int) chaosMixCounts {
	return chaosMixCounts{poison: max(1, n/50), hang: max(1, n/100), idem: max(1, n/10), keyed: max(chaosKeys, n/5)}
}

// chaosKind is what a run was triggered to test.
type chaosKind int

const (
	kindPlain    chaosKind = iota
	kindKeyed              // concurrency key
	kindIdem               // idempotency key
	kindPoison             // chaos-poison
	kindHang               // chaos-hang
	kindLateHang           // chaos-hang, triggered after the kills and the poison runs
)

// chaosWorkload is the parent's side.
type chaosWorkload struct {
	c                   *config
	e                   *durably.Engine
	steps, poison, hang *durably.JobHandle[chaosInput, int]
	dir                 string
	mix                 chaosMixCounts

	mu         sync.Mutex
	rolledBack []string             // runs of the parent's rolled-back orders
	runs       map[string]chaosKind // every run a trigger acknowledged as created
	idemIDs    map[string]string    // idempotency key → its run
	idem       idemTally
	keyed      keyedTally
	hangs      int // hanging runs triggered
}

type idemTally struct {
	retriggers, wrong int
	first             string // the first wrong answer
}

type keyedTally struct{ created, coalesced int }

// wlChaos: c.n runs in the backlog, faults, c.kills SIGKILLs; then checks.
func wlChaos(ctx context.Context, c *config, db *benchDB, r *result) error {
	if c.kills < 1 {
		return errors.New("chaos needs -kills 1 or more: the worker that lived through the faults is killed")
	}
	w, err := newChaosWorkload(ctx, c, db)
	if err != nil {
		return err
	}
	defer os.RemoveAll(w.dir)
	if err := w.triggerBacklog(ctx); err != nil {
		return err
	}
	faults, target, closeFaults, err := chaosFaults(db)
	if err != nil {
		return err
	}
	defer closeFaults()
	fleet, err := newChaosFleet(w.spawner(target))
	if err != nil {
		return err
	}
	estimate := time.Duration(w.c.kills) * (chaosKillMin + chaosKillSpread/2)
	for _, f := range faults {
		estimate += f.length + time.Second
	}
	if err := createOrders(ctx, w.e.Store()); err != nil {
		return err
	}
	stopFeed := w.startFeeder(ctx, estimate)
	stopOrders := w.startOrders(ctx)
	resumes, err := w.phases(ctx, fleet, faults)
	if err == nil {
		err = w.awaitKeyed(fleet)
	}
	stopFeed()
	stopOrders()
	if err == nil {
		// The late hanging runs come once the poison runs ended: no
		// worker dies under them any more.
		err = w.awaitEnd(ctx, fleet, chaosPoisonJob)
	}
	if err == nil {
		err = w.triggerLateHangs(ctx)
	}
	if err == nil {
		err = w.awaitEnd(ctx, fleet)
	}
	// Every step above falls through to here, so that no worker outlives
	// the workload.
	if err := errors.Join(err, fleet.stop()); err != nil {
		return err
	}
	return w.verdict(ctx, fleet, resumes, r)
}

func newChaosWorkload(ctx context.Context, c *config, db *benchDB) (*chaosWorkload, error) {
	e, err := db.engine(ctx, durably.Config{})
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "durably-chaos-")
	if err != nil {
		return nil, err
	}
	mix := chaosMix(c.n)
	mix.lateHang = max(2, c.slots)
	jobs := chaosJobs{budget: chaosCrashBudget(c.kills, mix.poison)} // the parent executes nothing: no effects
	return &chaosWorkload{c: c, e: e, dir: dir, mix: mix,
		steps:  durably.MustRegister(e, jobs.steps()),
		poison: durably.MustRegister(e, jobs.poison()),
		hang:   durably.MustRegister(e, jobs.hang()),
		runs:   map[string]chaosKind{}, idemIDs: map[string]string{}}, nil
}

// triggerBacklog triggers the c.n runs of the backlog, poison, hanging and
// idempotency-keyed runs spread among them (shuffled with a fixed seed).
func (w *chaosWorkload) triggerBacklog(ctx context.Context) error {
	kinds := make([]chaosKind, w.c.n)
	i := 0
	for _, k := range []struct {
		kind  chaosKind
		count int
	}{{kindPoison, w.mix.poison}, {kindHang, w.mix.hang}, {kindIdem, w.mix.idem}} {
		for range k.count {
			if i < len(kinds) {
				kinds[i], i = k.kind, i+1
			}
		}
	}
	rand.New(rand.NewPCG(19, 24)).Shuffle(len(kinds), func(a, b int) { kinds[a], kinds[b] = kinds[b], kinds[a] })
	for i, kind := range kinds {
		var res *durably.TriggerResult
		var err error
		switch kind {
		case kindPoison:
			res, err = w.poison.Trigger(ctx, chaosInput{I: i})
		case kindHang:
			res, err = w.triggerHang(ctx, i)
		case kindIdem:
			key := "idem-" + strconv.Itoa(i)
			res, err = w.steps.Trigger(ctx, chaosInput{I: i}, durably.WithIdempotencyKey(key))
			if err == nil {
				w.idemIDs[key] = res.Run.ID
			}
		default:
			res, err = w.steps.Trigger(ctx, chaosInput{I: i})
		}
		if err != nil {
			return fmt.Errorf("backlog: %w", err)
		}
		w.runs[res.Run.ID] = kind
	}
	return nil
}

// triggerHang triggers a chaos-hang run: one in two hangs once (and then
// completes), the others on every attempt (and fail).
func (w *chaosWorkload) triggerHang(ctx context.Context, i int) (*durably.TriggerResult, error) {
	w.mu.Lock()
	w.hangs++
	hangs := 1 + w.hangs%2
	w.mu.Unlock()
	return w.hang.Trigger(ctx, chaosInput{I: i, Hangs: hangs})
}

// triggerLateHangs triggers hanging runs, as many as the worker has
// slots, and as many ordinary runs after them: these complete only if the
// abandoned steps free their slots.
func (w *chaosWorkload) triggerLateHangs(ctx context.Context) error {
	for i := range w.mix.lateHang {
		res, err := w.triggerHang(ctx, w.c.n+i)
		if err != nil {
			return err
		}
		w.acknowledge(res.Run.ID, kindLateHang)
	}
	for i := range w.mix.lateHang {
		res, err := w.steps.Trigger(ctx, chaosInput{I: w.c.n + w.mix.lateHang + i})
		if err != nil {
			return err
		}
		w.acknowledge(res.Run.ID, kindPlain)
	}
	return nil
}

// spawner starts worker processes on target (the database, or the fault
// proxy in front of it).
func (w *chaosWorkload) spawner(target string) func() (*exec.Cmd, error) {
	self, err := os.Executable()
	return func() (*exec.Cmd, error) {
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(self, "-chaos-child", "-db", target, "-slots", strconv.Itoa(w.c.slots),
			"-sqlite-synchronous", w.c.sync, "-kills", strconv.Itoa(w.c.kills), "-n", strconv.Itoa(w.c.n))
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.Env = append(os.Environ(), chaosDirEnv+"="+w.dir)
		return cmd, cmd.Start()
	}
}

// startOrders places orders in transactions of the parent's while the
// workers die (the workers place their own: startChildOrders), every
// fourth rolled back: their runs must never exist.
func (w *chaosWorkload) startOrders(ctx context.Context) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	f := orderFeed{st: w.e.Store(), job: w.steps, first: 2 * orderBase, every: 25 * time.Millisecond,
		committed:  func(id string) { w.acknowledge(id, kindPlain) },
		rolledBack: func(id string) { w.mu.Lock(); w.rolledBack = append(w.rolledBack, id); w.mu.Unlock() }}
	wg.Go(func() { f.run(ctx, quit) })
	return func() { close(quit); wg.Wait() }
}

// phases runs the faults, one after the other, each while the worker has
// runs in flight, then the kills; it returns how long runs took to resume
// after each fault.
func (w *chaosWorkload) phases(ctx context.Context, fleet *chaosFleet, faults []chaosFault) (map[string]time.Duration, error) {
	resumes := map[string]time.Duration{}
	for _, f := range faults {
		d, err := w.fault(ctx, fleet, f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		resumes[f.name] = d
		fmt.Fprintf(os.Stderr, "chaos: %s: stalled runs went on %v after it ended\n", f.name, d.Round(time.Millisecond))
	}
	// The worker that lived through the faults goes first: a step it ran
	// again after a fault's lost lease is excused by its death (chaos.Analyze).
	if err := fleet.kill(); err != nil {
		return nil, err
	}
	for k := 1; k < w.c.kills; k++ {
		time.Sleep(chaosKillMin + rand.N(chaosKillSpread))
		if err := fleet.kill(); err != nil {
			return nil, err
		}
	}
	return resumes, nil
}

// awaitKeyed waits until the keyed runs reached their share (the feeder
// goes on triggering them meanwhile).
func (w *chaosWorkload) awaitKeyed(fleet *chaosFleet) error {
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		w.mu.Lock()
		created := w.keyed.created
		w.mu.Unlock()
		switch {
		case created >= w.mix.keyed:
			return nil
		case fleet.failure() != nil:
			return fleet.failure()
		case time.Now().After(deadline):
			return fmt.Errorf("only %d concurrency-keyed runs acknowledged in a minute after the kills, want %d", created, w.mix.keyed)
		}
	}
}

// awaitEnd waits until no run (of jobs, if any) is pending or leased.
func (w *chaosWorkload) awaitEnd(ctx context.Context, fleet *chaosFleet, jobs ...string) error {
	for deadline := time.Now().Add(chaosFinish); ; time.Sleep(50 * time.Millisecond) {
		left, err := w.e.ListRuns(ctx, durably.RunFilter{Statuses: []durably.Status{durably.StatusPending, durably.StatusLeased}, JobNames: jobs, Limit: 1})
		switch {
		case err != nil:
			return err
		case len(left) == 0:
			return nil
		case fleet.failure() != nil:
			return fleet.failure()
		case time.Now().After(deadline):
			return fmt.Errorf("runs still unfinished %v after the kills, e.g. %s (%s)", chaosFinish, left[0].ID, left[0].Status)
		}
	}
}

func isPostgres(db string) bool {
	u, err := url.Parse(db)
	return err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql")
}
