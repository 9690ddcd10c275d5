package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// CallerTxs is implemented by the stores the suite hands out (the store
// itself, or a wrapper the store's test gives it) whose transactional
// trigger (store.TxEnqueuer) the suite checks: it begins a transaction of
// the caller's on the store's database, of the kind the store's EnqueueTx
// takes. The cases of the transactional trigger skip on a store without.
type CallerTxs interface {
	BeginCallerTx(ctx context.Context) (CallerTx, error)
}

// CallerTx is a transaction of the caller's as the suite drives it.
type CallerTx interface {
	// Tx is the transaction for EnqueueTx (durably.TriggerTx).
	Tx() store.Tx
	// Exec runs a statement of the caller's own; parameters are written
	// $1, $2, …, which both engines take.
	Exec(ctx context.Context, query string, args ...any) error
	// Int reads one integer.
	Int(ctx context.Context, query string, args ...any) (int, error)
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// callerTxs returns h.Store as CallerTxs, skipping the test for a store
// that does not take the caller's transactions.
func (h *Harness) callerTxs() CallerTxs {
	c, ok := h.Store.(CallerTxs)
	if !ok {
		h.t.Skipf("store %T does not implement storetest.CallerTxs", h.Store)
	}
	return c
}

// begin begins a caller's transaction, rolled back when the test ends if
// it is still open.
func (h *Harness) begin(ctx context.Context) CallerTx {
	h.t.Helper()
	tx, err := h.callerTxs().BeginCallerTx(ctx)
	if err != nil {
		h.t.Fatalf("begin the caller's transaction: %v", err)
	}
	h.t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx
}

// callerTable creates the caller's own table, in a transaction of its own.
func (h *Harness) callerTable(ctx context.Context) {
	h.t.Helper()
	tx := h.begin(ctx)
	// The caller's table, in the SQL both engines take: not the store's.
	if err := tx.Exec(ctx, "CREATE TABLE caller_rows (k TEXT PRIMARY KEY)"); err != nil {
		h.t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		h.t.Fatal(err)
	}
}

// callerRows counts the caller's committed rows.
func (h *Harness) callerRows(ctx context.Context) int {
	h.t.Helper()
	tx := h.begin(ctx)
	defer func() { _ = tx.Rollback(ctx) }()
	n, err := tx.Int(ctx, "SELECT count(*) FROM caller_rows")
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

func echoReq(msg string) durably.TriggerRequest {
	return durably.TriggerRequest{JobName: "echo", Input: json.RawMessage(fmt.Sprintf(`{"message":%q}`, msg))}
}

// quiet is how long the cases wait to see that nothing happens: many
// rounds of the commit watch (whose first look is 1 ms after a trigger).
const quiet = 150 * time.Millisecond

var txTriggerCases = []Case{
	{"R-250 S-070 a run triggered in a transaction exists if and only if it commits, with the caller's rows", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		job := durably.MustRegister(e, EchoJob("echo"))
		ctx := Ctx(t)
		h.callerTable(ctx)
		tx := h.begin(ctx)
		if err := tx.Exec(ctx, "INSERT INTO caller_rows (k) VALUES ($1)", "kept"); err != nil {
			t.Fatal(err)
		}
		res, err := job.TriggerTx(ctx, tx.Tx(), Msg{"a"}, durably.WithLabels(map[string]string{"org": "o"}))
		if err != nil {
			t.Fatal(err)
		}
		if res.Disposition != durably.Created || res.Run.Status != durably.StatusPending || res.Run.Labels["org"] != "o" {
			t.Fatalf("trigger in a transaction: %s %+v", res.Disposition, res.Run)
		}
		if got, err := e.GetRun(ctx, res.Run.ID); err != nil || got != nil {
			t.Fatalf("the run is visible before the commit: %+v %v", got, err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if got := MustGet(t, e, res.Run.ID); got.Status != durably.StatusPending || !jsonEq(got.Input, json.RawMessage(`{"message":"a"}`)) {
			t.Fatalf("committed run %+v", got)
		}

		tx = h.begin(ctx)
		if err := tx.Exec(ctx, "INSERT INTO caller_rows (k) VALUES ($1)", "dropped"); err != nil {
			t.Fatal(err)
		}
		gone, err := e.BatchTriggerRawTx(ctx, tx.Tx(), []durably.TriggerRequest{echoReq("b"), echoReq("c")})
		if err != nil || len(gone) != 2 {
			t.Fatal(gone, err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		for _, r := range gone {
			if got, err := e.GetRun(ctx, r.Run.ID); err != nil || got != nil {
				t.Fatalf("a rolled-back run exists: %+v %v", got, err)
			}
		}
		if n := h.callerRows(ctx); n != 1 {
			t.Fatalf("%d caller rows, want the committed one", n)
		}
		if n := CountRuns(t, e.Store()); n != 1 {
			t.Fatalf("%d runs, want the committed one", n)
		}
	}},
	{"R-251 S-070 a refused trigger in a transaction undoes its own writes only; the transaction goes on", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		durably.MustRegister(e, EchoJob("echo"))
		ctx := Ctx(t)
		h.callerTable(ctx)
		tx := h.begin(ctx)
		if err := tx.Exec(ctx, "INSERT INTO caller_rows (k) VALUES ($1)", "before"); err != nil {
			t.Fatal(err)
		}
		first, err := e.TriggerRawTx(ctx, tx.Tx(), echoReq("first"))
		if err != nil {
			t.Fatal(err)
		}
		keyed := func(msg string) durably.TriggerRequest {
			r := echoReq(msg)
			r.ConcurrencyKey = "k"
			return r
		}
		// The batch's second item conflicts with its first: the whole
		// batch is refused, its first item undone.
		_, err = e.BatchTriggerRawTx(ctx, tx.Tx(), []durably.TriggerRequest{echoReq("x"), keyed("y"), keyed("z")})
		WantPrefix(t, err, durably.ErrConflict, "A pending run already exists")
		// Bad labels and input are refused before anything is written.
		bad := echoReq("w")
		bad.Labels = map[string]string{"bad key": "v"}
		_, err = e.TriggerRawTx(ctx, tx.Tx(), bad)
		WantPrefix(t, err, durably.ErrValidation, `Invalid label key "bad key"`)
		_, err = e.TriggerRawTx(ctx, tx.Tx(), echoReq(""))
		WantPrefix(t, err, durably.ErrValidation, "Invalid input:")
		// The transaction is still usable, and commits what it kept.
		if err := tx.Exec(ctx, "INSERT INTO caller_rows (k) VALUES ($1)", "after"); err != nil {
			t.Fatalf("the transaction is unusable after a refused trigger: %v", err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if n := h.callerRows(ctx); n != 2 {
			t.Fatalf("%d caller rows, want 2", n)
		}
		runs, err := e.ListRuns(ctx, durably.RunFilter{})
		if err != nil || len(runs) != 1 || runs[0].ID != first.Run.ID {
			t.Fatalf("runs after the commit: %v %v; want only %s", runs, err, first.Run.ID)
		}
	}},
	{"R-252 S-070 idempotency, coalescing, conflicts and tenant scopes inside a transaction", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) { c.TenantLabels = []string{"org"} })
		job := durably.MustRegister(e, EchoJob("echo"))
		ctx := Ctx(t)
		a := durably.WithLabels(map[string]string{"org": "a"})
		b := durably.WithLabels(map[string]string{"org": "b"})
		committed := MustTrigger(t, job, Msg{"outside"}, a, durably.WithIdempotencyKey("i"))
		tx := h.begin(ctx)
		want := func(res *durably.TriggerResult, err error) func(d durably.Disposition, id string) *durably.Run {
			return func(d durably.Disposition, id string) *durably.Run {
				t.Helper()
				if err != nil || res.Disposition != d || (id != "" && res.Run.ID != id) {
					t.Fatalf("got %+v %v, want %s of %q", res, err, d, id)
				}
				return res.Run
			}
		}
		want(job.TriggerTx(ctx, tx.Tx(), Msg{"again"}, a, durably.WithIdempotencyKey("i")))(durably.Idempotent, committed.ID)
		other := want(job.TriggerTx(ctx, tx.Tx(), Msg{"tenant b"}, b, durably.WithIdempotencyKey("i")))(durably.Created, "")
		// Later triggers in the transaction see earlier ones, uncommitted.
		want(job.TriggerTx(ctx, tx.Tx(), Msg{"b again"}, b, durably.WithIdempotencyKey("i")))(durably.Idempotent, other.ID)
		pending := want(job.TriggerTx(ctx, tx.Tx(), Msg{"keyed"}, a, durably.WithConcurrencyKey("k")))(durably.Created, "")
		want(job.TriggerTx(ctx, tx.Tx(), Msg{"skip"}, a, durably.WithConcurrencyKey("k"), durably.WithCoalesceSkip()))(durably.Coalesced, pending.ID)
		_, err := job.TriggerTx(ctx, tx.Tx(), Msg{"clash"}, a, durably.WithConcurrencyKey("k"))
		WantPrefix(t, err, durably.ErrConflict, "A pending run already exists")
		want(job.TriggerTx(ctx, tx.Tx(), Msg{"other tenant"}, b, durably.WithConcurrencyKey("k")))(durably.Created, "")
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if n := CountRuns(t, e.Store()); n != 4 {
			t.Fatalf("%d runs, want 4", n)
		}
		// Outside, the committed runs hold their keys as any run does.
		_, err = job.Trigger(ctx, Msg{"late"}, a, durably.WithConcurrencyKey("k"))
		WantPrefix(t, err, durably.ErrConflict, "A pending run already exists")
	}},
	{"R-253 R-254 a committed transaction's run is announced and started promptly; a rolled-back one never", func(t *testing.T, h *Harness) {
		// Polling is out of the picture: only the commit watch can wake
		// the worker.
		e := h.Engine(func(c *durably.Config) { c.PollingInterval = time.Hour })
		rec := Record(t, e)
		job := durably.MustRegister(e, EchoJob("echo"))
		ctx := Ctx(t)
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		// A transaction rolled back: its run never exists, runs or is
		// announced.
		gone := h.begin(ctx)
		never, err := job.TriggerTx(ctx, gone.Tx(), Msg{"never"})
		if err != nil {
			t.Fatal(err)
		}
		if err := gone.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		// The worker idles: a trigger outside a transaction would be
		// inserted leased to it (the direct start, R-055).
		tx := h.begin(ctx)
		res, err := job.TriggerTx(ctx, tx.Tx(), Msg{"go"})
		if err != nil {
			t.Fatal(err)
		}
		if res.Run.Status != durably.StatusPending || res.Run.LeaseOwner != "" {
			t.Fatalf("a run in the caller's transaction was inserted leased (direct start): %+v", res.Run)
		}
		time.Sleep(quiet)
		if evs := rec.Events(); len(evs) != 0 {
			t.Fatalf("events before the commit: %+v", evs)
		}
		committed := time.Now()
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		run, err := e.WaitForRun(ctx, res.Run.ID, durably.WithTimeout(5*time.Second), durably.WithPollInterval(time.Millisecond))
		if err != nil || run.Status != durably.StatusCompleted {
			t.Fatalf("the committed run did not complete: %+v %v", run, err)
		}
		if took := time.Since(committed); took > 2*time.Second {
			t.Fatalf("the committed run completed %v after the commit", took)
		}
		if got := rec.Types(res.Run.ID); len(got) < 2 || got[0] != "run:trigger" || got[1] != "run:leased" {
			t.Fatalf("events of the committed run %v, want run:trigger, then run:leased", got)
		}
		if got := rec.Types(never.Run.ID); len(got) != 0 {
			t.Fatalf("events of a run never committed: %v", got)
		}
		if got, err := e.GetRun(ctx, never.Run.ID); err != nil || got != nil {
			t.Fatalf("a run never committed exists: %+v %v", got, err)
		}
	}},
	{"R-255 S-070 the store refuses what is not its transaction, changing nothing", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		job := durably.MustRegister(e, EchoJob("echo"))
		ctx := Ctx(t)
		h.callerTxs()
		_, err := job.TriggerTx(ctx, durably.Tx{}, Msg{"a"})
		WantPrefix(t, err, durably.ErrValidation, "durably: a transactional trigger needs a transaction")
		if _, err := job.TriggerTx(ctx, store.NewTx(42), Msg{"a"}); err == nil {
			t.Fatal("a transaction of the wrong type was taken")
		}
		if n := CountRuns(t, e.Store()); n != 0 {
			t.Fatalf("%d runs written", n)
		}
	}},
	{"S-070 EnqueueTx never inserts a run leased; S-071 CommittedRuns sees committed runs only", func(t *testing.T, h *Harness) {
		ctx := Ctx(t)
		te, ok := h.Store.(store.TxEnqueuer)
		if !ok {
			t.Skipf("store %T does not implement store.TxEnqueuer", h.Store)
		}
		h.Engine(nil) // migrated
		now := store.Truncate(time.Now())
		tx := h.begin(ctx)
		nr := store.NewRun{Run: &store.Run{ID: "01TXCLAIM00000000000000001", JobName: "j", Input: json.RawMessage(`{}`), CreatedAt: now},
			Claim: &store.Claim{WorkerID: "w", ExpiresAt: now.Add(time.Minute)}}
		res, err := te.EnqueueTx(ctx, tx.Tx(), []store.NewRun{nr})
		if err != nil || len(res) != 1 || res[0].Run.Status != store.StatusPending || res[0].Run.LeaseOwner != "" {
			t.Fatalf("EnqueueTx with a claim: %+v %v", res, err)
		}
		ids := []string{nr.Run.ID, "01TXNONE000000000000000001"}
		if found, err := te.CommittedRuns(ctx, ids); err != nil || len(found) != 0 {
			t.Fatalf("CommittedRuns before the commit: %v %v", found, err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if found, err := te.CommittedRuns(ctx, ids); err != nil || len(found) != 1 || found[0] != nr.Run.ID {
			t.Fatalf("CommittedRuns after the commit: %v %v", found, err)
		}
		got, err := h.Store.GetRun(ctx, nr.Run.ID)
		if err != nil || got == nil || got.Status != store.StatusPending || got.LeaseGeneration != 0 {
			t.Fatalf("committed run %+v %v", got, err)
		}
	}},
	{"R-256 S-071 transactions triggering while the worker writes neither deadlock nor lose writes", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) { c.MaxConcurrentRuns = 4 })
		var calls Counter
		job := durably.MustRegister(e, StepsJob("steps", &calls))
		ctx := Ctx(t)
		h.callerTable(ctx)
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		const writers, each = 4, 15
		var mu sync.Mutex
		var kept, dropped []string
		var wg sync.WaitGroup
		errs := make(chan error, writers+1)
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					id, commit, err := txTriggerOnce(ctx, h, job, fmt.Sprintf("%d-%d", w, i), i%3 != 2)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					if commit {
						kept = append(kept, id)
					} else {
						dropped = append(dropped, id)
					}
					mu.Unlock()
				}
			})
		}
		wg.Go(func() { // plain triggers through the store's writer meanwhile
			for range each {
				res, err := job.Trigger(ctx, StepsInput{Count: 2})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				kept = append(kept, res.Run.ID)
				mu.Unlock()
			}
		})
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for _, id := range kept {
			if run, err := e.WaitForRun(ctx, id, durably.WithTimeout(20*time.Second)); err != nil || run.Status != durably.StatusCompleted {
				t.Fatalf("run %s: %+v %v", id, run, err)
			}
		}
		committedTxs := len(kept) - each
		if n := h.callerRows(ctx); n != committedTxs {
			t.Fatalf("%d caller rows, want %d", n, committedTxs)
		}
		for _, id := range dropped {
			if got, err := e.GetRun(ctx, id); err != nil || got != nil {
				t.Fatalf("a rolled-back run exists: %+v %v", got, err)
			}
		}
		found, err := e.Store().(store.TxEnqueuer).CommittedRuns(ctx, append(append([]string{}, kept...), dropped...))
		if err != nil || len(found) != len(kept) {
			t.Fatalf("CommittedRuns found %d of %d committed runs (%d rolled back): %v", len(found), len(kept), len(dropped), err)
		}
	}},
}

// txTriggerOnce writes a caller's row and triggers a run of job in one
// transaction, then commits it, or rolls it back.
func txTriggerOnce(ctx context.Context, h *Harness, job *durably.JobHandle[StepsInput, int], key string, commit bool) (string, bool, error) {
	tx, err := h.callerTxs().BeginCallerTx(ctx)
	if err != nil {
		return "", false, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := tx.Exec(ctx, "INSERT INTO caller_rows (k) VALUES ($1)", key); err != nil {
		return "", false, err
	}
	res, err := job.TriggerTx(ctx, tx.Tx(), StepsInput{Count: 2})
	if err != nil {
		return "", false, err
	}
	if commit {
		return res.Run.ID, true, tx.Commit(ctx)
	}
	return res.Run.ID, false, tx.Rollback(ctx)
}
