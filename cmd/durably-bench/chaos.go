package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/chaos"
	"github.com/durably-go/durably/internal/faultproxy"
	"github.com/durably-go/durably/runtime/sqlitestore"
	"github.com/durably-go/durably/store"
)

// The chaos workload: worker processes (this program, re-executed with
// -chaos-child) execute runs of a five-step job on the database while the
// parent SIGKILLs them at random moments and starts new ones, triggers keyed
// runs meanwhile, and once takes the database away for a few seconds
// (PostgreSQL: connections reset and refused by a fault proxy; SQLite:
// another connection holds the write lock past the workers' busy timeout). Every
// step appends to a synced side-effect log (internal/chaos, shared with the
// crash tests). At the end it counts what the crashes cost.
const (
	chaosSteps      = 5
	chaosLease      = time.Second
	chaosOutage     = 3 * time.Second
	chaosEffectsEnv = "DURABLY_CHAOS_EFFECTS"
)

type chaosInput struct {
	I int `json:"i"`
}

func chaosJob(effects *chaos.EffectLog) *durably.Job[chaosInput, int] {
	return &durably.Job[chaosInput, int]{
		Name: "chaos",
		Run: func(ctx context.Context, s *durably.StepContext, in chaosInput) (int, error) {
			sum := 0
			for i := 1; i <= chaosSteps; i++ {
				v, err := durably.RunStep(s, "step-"+strconv.Itoa(i), func(ctx context.Context) (int, error) {
					effects.Write("start", s.RunID(), i)
					time.Sleep(time.Duration(2+rand.IntN(6)) * time.Millisecond)
					effects.Write("end", s.RunID(), i)
					return i, nil
				})
				if err != nil {
					return 0, err
				}
				sum += v
			}
			return sum, nil
		},
	}
}

// chaosChild is one worker process: it works until SIGINT (or SIGKILL).
func chaosChild(c *config) error {
	ctx := context.Background()
	var st store.Store
	var err error
	if isPostgres(c.db) {
		st, err = (&benchDB{kind: "postgres", target: c.db}).open(ctx)
	} else {
		// A short busy timeout turns the parent's outage (a held write
		// lock) into SQLITE_BUSY errors the engine must retry, instead of
		// writes that just wait.
		st, err = sqlitestore.Open(c.db, sqlitestore.Options{Synchronous: c.sync, BusyTimeout: 250 * time.Millisecond})
	}
	if err != nil {
		return err
	}
	defer st.Close()
	effects, err := chaos.Open(os.Getenv(chaosEffectsEnv))
	if err != nil {
		return err
	}
	defer effects.Close()
	e, err := durably.New(durably.Config{Store: st, MaxConcurrentRuns: c.slots, PollingInterval: 20 * time.Millisecond,
		LeaseDuration: chaosLease, LeaseRenewInterval: chaosLease / 4})
	if err != nil {
		return err
	}
	e.OnEvent(func(ev durably.Event) {
		if ev.Type == durably.EventRunComplete && !ev.Remote() {
			effects.Write("complete", ev.RunID, 0)
		}
	})
	job := durably.MustRegister(e, chaosJob(effects))
	if err := e.Init(ctx); err != nil {
		return err
	}
	stopOrders := startChildOrders(ctx, st, job)
	sig := make(chan os.Signal, 1)
	signalNotify(sig)
	<-sig
	stopOrders()
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return e.Stop(stopCtx)
}

func isPostgres(db string) bool {
	u, err := url.Parse(db)
	return err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql")
}

// chaosRun is one repetition of the chaos workload: the parent's engine
// and what it learns as the workers are killed.
type chaosRun struct {
	ctx     context.Context
	c       *config
	e       *durably.Engine
	job     *durably.JobHandle[chaosInput, int]
	effects string // the effect log's path
	target  string // the database as the workers reach it
	self    string // this program, which the workers run

	mu         sync.Mutex
	acked      map[string]bool // every run a trigger acknowledged as created
	keyed      map[string]bool // those with a concurrency key
	rolledBack []string        // runs of the parent's rolled-back orders
	killed     map[int]bool    // pids of the workers killed
}

// wlChaos: c.n runs, c.kills SIGKILLs, one outage; counts what was lost.
func wlChaos(ctx context.Context, c *config, db *benchDB, r *result) error {
	e, err := db.engine(ctx, durably.Config{})
	if err != nil {
		return err
	}
	defer func() { _ = e.Stop(ctx) }() // ends the watch of its transactions' commits
	if err := createOrders(ctx, e.Store()); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "durably-chaos-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cr := &chaosRun{ctx: ctx, c: c, e: e, job: durably.MustRegister(e, chaosJob(nil)), effects: filepath.Join(dir, "effects.log"),
		self: self, acked: map[string]bool{}, keyed: map[string]bool{}, killed: map[int]bool{}}
	if err := cr.triggerBacklog(); err != nil {
		return err
	}
	target, down, up, closeOutage, err := chaosOutageOf(db)
	if err != nil {
		return err
	}
	defer closeOutage()
	cr.target = target

	stop := make(chan struct{})
	arrivals := cr.keepTriggering(stop)
	resume, err := cr.outage(down, up)
	if err != nil {
		return err
	}
	if err := cr.kills(); err != nil {
		return err
	}
	close(stop)
	arrivals.Wait()
	if err := cr.finish(); err != nil {
		return err
	}
	return cr.report(r, resume)
}

// triggerBacklog triggers the c.n runs the workers start with.
func (cr *chaosRun) triggerBacklog() error {
	for start := 0; start < cr.c.n; start += batchSize {
		items := make([]durably.BatchItem[chaosInput], 0, batchSize)
		for i := start; i < min(start+batchSize, cr.c.n); i++ {
			items = append(items, durably.BatchItem[chaosInput]{Input: chaosInput{I: i}})
		}
		res, err := cr.job.BatchTrigger(cr.ctx, items)
		if err != nil {
			return err
		}
		for _, t := range res {
			cr.acked[t.Run.ID] = true
		}
	}
	return nil
}

// chaosOutageOf returns how workers reach the database and how to take it
// away and give it back. Children reach PostgreSQL through a fault proxy,
// so that the outage is a refused and reset connection, as in a server
// restart. SQLite's outage is another connection holding the write lock.
func chaosOutageOf(db *benchDB) (target string, down, up func() error, closeAll func(), err error) {
	if db.kind == "postgres" {
		u, err := url.Parse(db.target)
		if err != nil {
			return "", nil, nil, nil, err
		}
		proxy, err := faultproxy.Start(u.Host)
		if err != nil {
			return "", nil, nil, nil, err
		}
		u.Host = proxy.Addr()
		return u.String(), func() error { proxy.Reset(); return proxy.Refuse() }, proxy.Restore, func() { proxy.Close() }, nil
	}
	var lock *sql.DB
	var tx *sql.Tx
	down = func() error {
		var err error
		if lock, err = sql.Open("sqlite", db.target+"?_txlock=immediate&_pragma=busy_timeout(10000)"); err != nil {
			return err
		}
		tx, err = lock.Begin()
		return err
	}
	up = func() error { return errors.Join(tx.Rollback(), lock.Close()) }
	return db.target, down, up, func() {}, nil
}

// spawn starts a worker. Workers place orders (transactional triggers)
// while they work, so that kills land inside their transactions; the last
// one does not.
func (cr *chaosRun) spawn(orders bool) (*exec.Cmd, chan error, error) {
	cmd := exec.Command(cr.self, "-chaos-child", "-db", cr.target, "-slots", strconv.Itoa(cr.c.slots), "-sqlite-synchronous", cr.c.sync)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Env = append(os.Environ(), chaosEffectsEnv+"="+cr.effects)
	if orders {
		cmd.Env = append(cmd.Env, chaosOrdersEnv+"=1")
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return cmd, done, nil
}

func (cr *chaosRun) kill(cmd *exec.Cmd, done chan error) {
	_ = cmd.Process.Kill()
	<-done
	cr.mu.Lock()
	cr.killed[cmd.Process.Pid] = true
	cr.mu.Unlock()
}

// keepTriggering triggers while workers die, until stop closes: keyed runs
// (one pending run per key at most, the rest coalesce onto it) and orders
// in transactions of the parent's, every fourth rolled back.
func (cr *chaosRun) keepTriggering(stop chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(25 * time.Millisecond):
			}
			res, err := cr.job.Trigger(cr.ctx, chaosInput{I: -i}, durably.WithConcurrencyKey("key-"+strconv.Itoa(i%4)), durably.WithCoalesceSkip())
			if err == nil && res.Disposition == durably.Created {
				cr.mu.Lock()
				cr.acked[res.Run.ID], cr.keyed[res.Run.ID] = true, true
				cr.mu.Unlock()
			}
		}
	})
	wg.Go(func() {
		chaosOrders(cr.ctx, cr.e.Store(), cr.job, 2*orderBase, 25*time.Millisecond, stop,
			func(id string) { cr.mu.Lock(); cr.acked[id] = true; cr.mu.Unlock() },
			func(id string) { cr.mu.Lock(); cr.rolledBack = append(cr.rolledBack, id); cr.mu.Unlock() })
	})
	return &wg
}

func (cr *chaosRun) completed() (int, error) {
	return countStatus(cr.ctx, cr.e, durably.StatusCompleted)
}

// outage takes the database away for chaosOutage with a worker in the
// middle of its runs, and returns how long after its return runs moved
// again.
func (cr *chaosRun) outage(down, up func() error) (time.Duration, error) {
	cmd, done, err := cr.spawn(true)
	if err != nil {
		return 0, err
	}
	time.Sleep(500 * time.Millisecond) // let it claim and work
	if err := down(); err != nil {
		return 0, fmt.Errorf("outage: %w", err)
	}
	time.Sleep(chaosOutage)
	before, err := cr.completed()
	if err != nil {
		return 0, err
	}
	if err := up(); err != nil {
		return 0, fmt.Errorf("end of outage: %w", err)
	}
	back := time.Now()
	for {
		n, err := cr.completed()
		if err != nil {
			return 0, err
		}
		if n > before {
			break
		}
		if time.Since(back) > time.Minute {
			return 0, errors.New("no run completed within a minute of the database's return")
		}
		time.Sleep(10 * time.Millisecond)
	}
	resume := time.Since(back)
	cr.kill(cmd, done)
	fmt.Fprintf(os.Stderr, "chaos: runs moved again %v after the database came back\n", resume.Round(time.Millisecond))
	return resume, nil
}

// kills starts the other workers one after another, each SIGKILLed after
// a random moment.
func (cr *chaosRun) kills() error {
	for k := 1; k < cr.c.kills; k++ {
		cmd, done, err := cr.spawn(true)
		if err != nil {
			return err
		}
		select {
		case err := <-done:
			return fmt.Errorf("worker exited on its own: %v", err)
		case <-time.After(time.Duration(100+rand.IntN(500)) * time.Millisecond):
		}
		cr.kill(cmd, done)
	}
	return nil
}

// finish lets a last worker finish everything: the acknowledged runs and
// the runs of the orders the killed workers committed.
func (cr *chaosRun) finish() error {
	cmd, done, err := cr.spawn(false)
	if err != nil {
		return err
	}
	t0 := time.Now()
	for {
		active, err := cr.e.ListRuns(cr.ctx, durably.RunFilter{Statuses: []durably.Status{durably.StatusPending, durably.StatusLeased}, Limit: 1})
		if err != nil {
			return err
		}
		if len(active) == 0 || time.Since(t0) > 3*time.Minute {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Signal(os.Interrupt)
	<-done
	return nil
}

// report counts what the crashes cost and fails when a guarantee broke.
func (cr *chaosRun) report(r *result, resume time.Duration) error {
	rep, err := chaos.Analyze(cr.effects, cr.killed)
	if err != nil {
		return err
	}
	lost, keyedFailed := 0, 0
	for id := range cr.acked {
		run, err := cr.e.GetRun(cr.ctx, id)
		if err != nil {
			return err
		}
		if run == nil || run.Status != durably.StatusCompleted {
			lost++
			if run != nil && run.Status == durably.StatusFailed && cr.keyed[id] {
				keyedFailed++
				fmt.Fprintf(os.Stderr, "chaos: keyed run %s failed: %s\n", id, run.Error)
			}
		}
	}
	orders, err := checkOrders(cr.ctx, cr.e, cr.rolledBack)
	if err != nil {
		return err
	}
	set := func(name string, v float64, unit string) { r.Metrics[name], r.Units[name] = v, unit }
	set("orders", float64(orders.orders), "")
	set("orders_rolled_back", float64(len(cr.rolledBack)), "")
	set("orders_lost", float64(orders.lost), "")
	set("orphan_order_runs", float64(orders.orphans), "")
	set("rolled_back_runs_present", float64(orders.rolledBackPresent), "")
	set("kills", float64(len(cr.killed)), "")
	set("runs", float64(len(cr.acked)), "")
	set("keyed_runs", float64(len(cr.keyed)), "")
	set("runs_lost", float64(lost-keyedFailed), "")
	set("keyed_runs_failed", float64(keyedFailed), "")
	set("steps_rerun_after_record", float64(rep.RerunsAfterRecord), "")
	set("steps_rerun_before_record", float64(rep.Reruns-rep.RerunsAfterRecord), "")
	set("steps_rerun_without_kill", float64(rep.RerunsWithoutKill), "")
	set("runs_completed_twice", float64(rep.CompletedTwice), "")
	set("outage_s", chaosOutage.Seconds(), "s")
	set("resume_after_outage_s", resume.Seconds(), "s")
	// A keyed run failed by a crash breaks D12 as surely as a lost run
	// breaks durability: both fail the workload (and CI's short run).
	if lost > 0 || rep.RerunsAfterRecord > 0 || rep.RerunsWithoutKill > 0 || rep.CompletedTwice > 0 {
		return fmt.Errorf("guarantee broken: %s; first violation: %s", formatMetrics(r.Metrics, r.Units), rep.First)
	}
	if err := orders.err(); err != nil {
		return fmt.Errorf("guarantee broken: %s: %w", formatMetrics(r.Metrics, r.Units), err)
	}
	return nil
}
