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

// wlChaos: c.n runs, c.kills SIGKILLs, one outage; counts what was lost.
func wlChaos(ctx context.Context, c *config, db *benchDB, r *result) error {
	e, err := db.engine(ctx, durably.Config{})
	if err != nil {
		return err
	}
	job := durably.MustRegister(e, chaosJob(nil))
	defer func() { _ = e.Stop(ctx) }() // ends the watch of its transactions' commits
	if err := createOrders(ctx, e.Store()); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "durably-chaos-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	effects := filepath.Join(dir, "effects.log")

	acked := map[string]bool{} // every run a trigger acknowledged as created
	keyed := map[string]bool{}
	for start := 0; start < c.n; start += batchSize {
		items := make([]durably.BatchItem[chaosInput], 0, batchSize)
		for i := start; i < min(start+batchSize, c.n); i++ {
			items = append(items, durably.BatchItem[chaosInput]{Input: chaosInput{I: i}})
		}
		res, err := job.BatchTrigger(ctx, items)
		if err != nil {
			return err
		}
		for _, t := range res {
			acked[t.Run.ID] = true
		}
	}

	// Children reach PostgreSQL through a fault proxy, so that the outage
	// is a refused and reset connection, as in a server restart. SQLite's
	// outage is another connection holding the write lock.
	target := db.target
	var down, up func() error
	if db.kind == "postgres" {
		u, err := url.Parse(db.target)
		if err != nil {
			return err
		}
		proxy, err := faultproxy.Start(u.Host)
		if err != nil {
			return err
		}
		defer proxy.Close()
		u.Host = proxy.Addr()
		target = u.String()
		down = func() error { proxy.Reset(); return proxy.Refuse() }
		up = proxy.Restore
	} else {
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
	}

	self, err := os.Executable()
	if err != nil {
		return err
	}
	var mu sync.Mutex
	killed := map[int]bool{}
	// Workers place orders (transactional triggers) while they work, so
	// that kills land inside their transactions; the last one does not.
	spawn := func(orders bool) (*exec.Cmd, chan error, error) {
		cmd := exec.Command(self, "-chaos-child", "-db", target, "-slots", strconv.Itoa(c.slots), "-sqlite-synchronous", c.sync)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.Env = append(os.Environ(), chaosEffectsEnv+"="+effects)
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
	kill := func(cmd *exec.Cmd, done chan error) {
		_ = cmd.Process.Kill()
		<-done
		mu.Lock()
		killed[cmd.Process.Pid] = true
		mu.Unlock()
	}

	// Keyed runs keep arriving while workers die: one pending run per key
	// at most, the rest coalesce onto it.
	stopTriggers := make(chan struct{})
	triggersDone := make(chan struct{})
	go func() {
		defer close(triggersDone)
		for i := 0; ; i++ {
			select {
			case <-stopTriggers:
				return
			case <-time.After(25 * time.Millisecond):
			}
			res, err := job.Trigger(ctx, chaosInput{I: -i}, durably.WithConcurrencyKey("key-"+strconv.Itoa(i%4)), durably.WithCoalesceSkip())
			if err == nil && res.Disposition == durably.Created {
				mu.Lock()
				acked[res.Run.ID], keyed[res.Run.ID] = true, true
				mu.Unlock()
			}
		}
	}()

	// The parent places orders too, rolling every fourth transaction back.
	var rolledBack []string
	ordersDone := make(chan struct{})
	go func() {
		defer close(ordersDone)
		chaosOrders(ctx, e.Store(), job, 2*orderBase, 25*time.Millisecond, stopTriggers,
			func(id string) { mu.Lock(); acked[id] = true; mu.Unlock() },
			func(id string) { mu.Lock(); rolledBack = append(rolledBack, id); mu.Unlock() })
	}()

	completedCount := func() (int, error) { return countStatus(ctx, e, durably.StatusCompleted) }

	// The outage, with a worker in the middle of its runs.
	cmd, done, err := spawn(true)
	if err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond) // let it claim and work
	if err := down(); err != nil {
		return fmt.Errorf("outage: %w", err)
	}
	time.Sleep(chaosOutage)
	before, err := completedCount()
	if err != nil {
		return err
	}
	if err := up(); err != nil {
		return fmt.Errorf("end of outage: %w", err)
	}
	back := time.Now()
	var resume time.Duration
	for {
		n, err := completedCount()
		if err != nil {
			return err
		}
		if n > before {
			resume = time.Since(back)
			break
		}
		if time.Since(back) > time.Minute {
			return errors.New("no run completed within a minute of the database's return")
		}
		time.Sleep(10 * time.Millisecond)
	}
	kill(cmd, done)
	fmt.Fprintf(os.Stderr, "chaos: runs moved again %v after the database came back\n", resume.Round(time.Millisecond))

	// The kills.
	for k := 1; k < c.kills; k++ {
		cmd, done, err := spawn(true)
		if err != nil {
			return err
		}
		select {
		case err := <-done:
			return fmt.Errorf("worker exited on its own: %v", err)
		case <-time.After(time.Duration(100+rand.IntN(500)) * time.Millisecond):
		}
		kill(cmd, done)
	}
	close(stopTriggers)
	<-triggersDone
	<-ordersDone

	// A last worker finishes everything: the acknowledged runs and the
	// runs of the orders the killed workers committed.
	cmd, done, err = spawn(false)
	if err != nil {
		return err
	}
	t0 := time.Now()
	for {
		active, err := e.ListRuns(ctx, durably.RunFilter{Statuses: []durably.Status{durably.StatusPending, durably.StatusLeased}, Limit: 1})
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

	rep, err := chaos.Analyze(effects, killed)
	if err != nil {
		return err
	}
	lost, keyedFailed := 0, 0
	for id := range acked {
		run, err := e.GetRun(ctx, id)
		if err != nil {
			return err
		}
		if run == nil || run.Status != durably.StatusCompleted {
			lost++
			if run != nil && run.Status == durably.StatusFailed && keyed[id] {
				keyedFailed++
				fmt.Fprintf(os.Stderr, "chaos: keyed run %s failed: %s\n", id, run.Error)
			}
		}
	}
	orders, err := checkOrders(ctx, e, rolledBack)
	if err != nil {
		return err
	}
	set := func(name string, v float64, unit string) { r.Metrics[name], r.Units[name] = v, unit }
	set("orders", float64(orders.orders), "")
	set("orders_rolled_back", float64(len(rolledBack)), "")
	set("orders_lost", float64(orders.lost), "")
	set("orphan_order_runs", float64(orders.orphans), "")
	set("rolled_back_runs_present", float64(orders.rolledBackPresent), "")
	set("kills", float64(len(killed)), "")
	set("runs", float64(len(acked)), "")
	set("keyed_runs", float64(len(keyed)), "")
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
