package durably_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/callertx"
	"github.com/durably-go/durably/store"
)

// The application's table of the tests below, in SQL both engines take:
// an order, whose run must exist exactly when the order does.
const (
	ordersTable  = "CREATE TABLE orders (n INTEGER PRIMARY KEY)"
	insertOrder  = "INSERT INTO orders (n) VALUES ($1)"
	selectOrders = "SELECT CAST(n AS TEXT) FROM orders"
	txBaseEnv    = "DURABLY_TX_BASE"
)

type orderInput struct {
	N int `json:"n"`
}

var orderJob = &durably.Job[orderInput, int]{
	Name: "order",
	Run: func(ctx context.Context, s *durably.StepContext, in orderInput) (int, error) {
		return durably.RunStep(s, "ship", func(ctx context.Context) (int, error) { return in.N, nil })
	},
}

// placeOrder writes order n and triggers its run in one transaction of the
// caller's, held open for up to hold before it commits.
func placeOrder(ctx context.Context, st store.Store, job *durably.JobHandle[orderInput, int], n int, hold time.Duration) error {
	tx, err := callertx.Begin(ctx, st)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := tx.Exec(ctx, insertOrder, n); err != nil {
		return err
	}
	if _, err := job.TriggerTx(ctx, tx.Tx(), orderInput{N: n}); err != nil {
		return err
	}
	time.Sleep(time.Duration(rand.Int64N(int64(hold) + 1)))
	return tx.Commit(ctx)
}

// TestTxCrashChild places orders until it is killed; it does nothing in a
// normal run.
func TestTxCrashChild(t *testing.T) {
	childOnly(t, "TestTxTriggerKilledInsideTransaction")
	base, err := strconv.Atoi(os.Getenv(txBaseEnv))
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t, os.Getenv(childStoreEnv))
	e, err := durably.New(durably.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	job := durably.MustRegister(e, orderJob)
	ctx := context.Background()
	for n := base; ; n++ {
		// Held open a few milliseconds, so that most kills land inside a
		// transaction, after its trigger.
		if err := placeOrder(ctx, st, job, n, 3*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if n == base+5 {
			fmt.Println(childReady)
		}
	}
}

// TestTxTriggerKilledInsideTransaction: processes placing orders, each an
// application row and its run triggered in one transaction, are
// SIGKILLed at random moments, most of them inside a transaction. Then
// every order the database holds has exactly its run and every run its
// order (a transaction cut short leaves neither), the database takes
// writes at once, and the runs all complete.
func TestTxTriggerKilledInsideTransaction(t *testing.T) {
	bothStores(t, "txcrash.db", func(t *testing.T, spec string) {
		ctx := context.Background()
		e, job := parentEngine(t, spec, durably.Config{PollingInterval: 20 * time.Millisecond, MaxConcurrentRuns: 4}, orderJob)
		tx, err := callertx.Begin(ctx, e.Store())
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Exec(ctx, ordersTable); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		const kills = 5
		for round := range kills {
			c := startChild(t, "TestTxCrashChild", spec, fmt.Sprintf("%s=%d", txBaseEnv, round*1_000_000))
			c.ready(t, time.Minute)
			time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond)
			c.kill()
		}
		// The database takes a transactional trigger at once: SQLite's
		// lock died with its holder, PostgreSQL aborts the holder's
		// transaction when its connection drops.
		if err := placeOrder(ctx, e.Store(), job, -1, 0); err != nil {
			t.Fatalf("an order after the kills: %v", err)
		}
		read, err := callertx.Begin(ctx, e.Store())
		if err != nil {
			t.Fatal(err)
		}
		texts, err := read.Strings(ctx, selectOrders)
		_ = read.Rollback(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var orders []int
		for _, s := range texts {
			n, err := strconv.Atoi(s)
			if err != nil {
				t.Fatal(err)
			}
			orders = append(orders, n)
		}
		slices.Sort(orders)
		runs, err := e.ListRuns(ctx, durably.RunFilter{})
		if err != nil {
			t.Fatal(err)
		}
		var ran []int
		for _, r := range runs {
			var in orderInput
			if err := json.Unmarshal(r.Input, &in); err != nil {
				t.Fatal(err)
			}
			ran = append(ran, in.N)
		}
		slices.Sort(ran)
		if !slices.Equal(orders, ran) {
			t.Fatalf("orders and runs differ:\norders %v\nruns   %v", orders, ran)
		}
		t.Logf("%d orders placed by %d processes killed", len(orders), kills)
		if len(orders) < kills*6+1 {
			t.Fatalf("only %d orders were placed", len(orders))
		}
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.Stop(ctx) })
		for _, r := range runs {
			if got, err := e.WaitForRun(ctx, r.ID, durably.WithTimeout(30*time.Second)); err != nil || got.Status != durably.StatusCompleted {
				t.Fatalf("run %s: %+v %v", r.ID, got, err)
			}
		}
	})
}
