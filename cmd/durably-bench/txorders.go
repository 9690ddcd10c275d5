package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/callertx"
	"github.com/durably-go/durably/store"
)

// Orders are the application's rows of the transactional trigger's
// workloads: each is written in one transaction with the run it triggers
// (durably's TriggerTx, R-250), so that an order exists exactly when its
// run does. The statements are the application's, not the store's, in SQL
// both engines take.
const (
	ordersTable = "CREATE TABLE bench_orders (n BIGINT PRIMARY KEY, run_id TEXT NOT NULL)"
	insertOrder = "INSERT INTO bench_orders (n, run_id) VALUES ($1, $2)"
	orderRunIDs = "SELECT run_id FROM bench_orders"
	countOrders = "SELECT count(*) FROM bench_orders"
	// orderBase numbers the chaos workload's orders (the input of their
	// runs) apart from its other runs: a worker's from orderBase + its
	// pid × 1e6, the parent's from 2 × orderBase.
	orderBase = 1_000_000_000_000
)

// createOrders creates the orders table.
func createOrders(ctx context.Context, st store.Store) error {
	tx, err := callertx.Begin(ctx, st)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := tx.Exec(ctx, ordersTable); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// placeOrder triggers a run of job with input in and writes order n
// naming it, in one transaction of the caller's, which it commits, or
// rolls back when commit is false. It returns the run's id.
func placeOrder[I any](ctx context.Context, st store.Store, job *durably.JobHandle[I, int], n int64, in I, commit bool) (string, error) {
	tx, err := callertx.Begin(ctx, st)
	if err != nil {
		return "", err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	res, err := job.TriggerTx(ctx, tx.Tx(), in)
	if err != nil {
		return "", err
	}
	if err := tx.Exec(ctx, insertOrder, n, res.Run.ID); err != nil {
		return "", err
	}
	if !commit {
		return res.Run.ID, tx.Rollback(ctx)
	}
	return res.Run.ID, tx.Commit(ctx)
}

// readOrders returns the committed orders' run ids.
func readOrders(ctx context.Context, st store.Store) (map[string]bool, error) {
	tx, err := callertx.Begin(ctx, st)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	ids, err := tx.Strings(ctx, orderRunIDs)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

// wlEnqueueTx: n runs of the 3-step job, no worker, each triggered in a
// transaction of the caller's that also writes the caller's order row,
// one at a time (each committed before the next begins): runs/s, to set
// beside enqueue's.
func wlEnqueueTx(ctx context.Context, c *config, db *benchDB, r *result) error {
	e, err := db.engine(ctx, durably.Config{})
	if err != nil {
		return err
	}
	j := durably.MustRegister(e, stepsJob)
	if err := createOrders(ctx, e.Store()); err != nil {
		return err
	}
	stop := startProfile(c)
	t0 := time.Now()
	for i := range c.n {
		if _, err := placeOrder(ctx, e.Store(), j, int64(i), stepsInput{I: i}, true); err != nil {
			return err
		}
	}
	elapsed := time.Since(t0)
	stop()
	r.Metrics["runs_per_s"], r.Units["runs_per_s"] = float64(c.n)/elapsed.Seconds(), "/s"
	if got, err := countStatus(ctx, e, durably.StatusPending); err != nil || got != c.n {
		return fmt.Errorf("%d pending runs after enqueue-tx, want %d (%v)", got, c.n, err)
	}
	tx, err := callertx.Begin(ctx, e.Store())
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if got, err := tx.Int(ctx, countOrders); err != nil || got != c.n {
		return fmt.Errorf("%d orders after enqueue-tx, want %d (%v)", got, c.n, err)
	}
	return e.Stop(ctx) // ends the watch of the commits
}

// orderFeed places orders every few milliseconds until stop closes, or
// most of them (0: no bound): a chaos worker's, all committed (its kill
// lands in their transactions), or the parent's, every fourth rolled back
// (into rolledBack). Failures during a fault are expected and skipped.
type orderFeed struct {
	st         store.Store
	job        *durably.JobHandle[chaosInput, int]
	first      int64 // the first order's number
	every      time.Duration
	most       int
	committed  func(id string) // nil: not reported
	rolledBack func(id string) // nil: nothing is rolled back
}

func (f orderFeed) run(ctx context.Context, stop <-chan struct{}) {
	for n := f.first; f.most == 0 || n < f.first+int64(f.most); n++ {
		select {
		case <-stop:
			return
		case <-time.After(f.every):
		}
		commit := f.rolledBack == nil || n%4 != 3
		id, err := placeOrder(ctx, f.st, f.job, n, chaosInput{I: int(n)}, commit)
		switch {
		case err != nil:
		case commit && f.committed != nil:
			f.committed(id)
		case !commit:
			f.rolledBack(id)
		}
	}
}

// childOrders bounds the orders one chaos worker places, so that the
// workload's end (every run over) comes once the kills stop.
const childOrders = 40

// startChildOrders starts a chaos worker's orders; the returned function
// stops them.
func startChildOrders(ctx context.Context, st store.Store, job *durably.JobHandle[chaosInput, int]) (stop func()) {
	f := orderFeed{st: st, job: job, first: orderBase + int64(os.Getpid())*1_000_000,
		every: time.Duration(5+rand.IntN(10)) * time.Millisecond, most: childOrders}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { f.run(ctx, quit) })
	return func() { close(quit); wg.Wait() }
}

// orderReport is what the chaos workload's orders say at the end.
type orderReport struct {
	orders, lost, orphans, rolledBackPresent int
}

// checkOrders compares the committed orders with the runs: every order's
// run completed, no run of an order without its order, no run of a
// rolled-back transaction.
func checkOrders(ctx context.Context, e *durably.Engine, rolledBack []string) (orderReport, error) {
	var rep orderReport
	orders, err := readOrders(ctx, e.Store())
	if err != nil {
		return rep, err
	}
	rep.orders = len(orders)
	runs, err := e.ListRuns(ctx, durably.RunFilter{JobNames: []string{"chaos"}})
	if err != nil {
		return rep, err
	}
	byID := make(map[string]*durably.Run, len(runs))
	for _, run := range runs {
		byID[run.ID] = run
		var in struct{ I int64 }
		if err := json.Unmarshal(run.Input, &in); err != nil {
			return rep, err
		}
		if in.I >= orderBase && !orders[run.ID] {
			rep.orphans++
			fmt.Fprintf(os.Stderr, "chaos: run %s of order %d exists without its order\n", run.ID, in.I)
		}
	}
	for id := range orders {
		if run := byID[id]; run == nil || run.Status != durably.StatusCompleted {
			rep.lost++
		}
	}
	for _, id := range rolledBack {
		if byID[id] != nil {
			rep.rolledBackPresent++
		}
	}
	return rep, nil
}

// errOrders says which promise of the transactional trigger broke.
func (r orderReport) err() error {
	if r.lost+r.orphans+r.rolledBackPresent == 0 {
		return nil
	}
	return errors.New("orders: lost " + strconv.Itoa(r.lost) + ", orphan runs " + strconv.Itoa(r.orphans) + ", runs of rolled-back transactions " + strconv.Itoa(r.rolledBackPresent))
}
