package durably_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/sqlitestore"
	"github.com/durably-go/durably/store"
)

// slowRenewStore, once armed, signals each renewal and holds it for hold:
// a database slow to answer a renewal.
type slowRenewStore struct {
	store.Store
	armed    atomic.Bool
	renewing chan struct{}
	hold     time.Duration
}

func (s *slowRenewStore) RenewLease(ctx context.Context, l store.Lease, now, until time.Time) (bool, error) {
	if s.armed.Load() {
		select {
		case s.renewing <- struct{}{}:
		default:
		}
		time.Sleep(s.hold)
		s.armed.Store(false)
	}
	return s.Store.RenewLease(ctx, l, now, until)
}

// TestRunReturningBeforeItsDeadlineCompletes: a body that returns normally
// before its run's deadline completes the run, even when the execution's
// own bookkeeping after the return (waiting for a renewal in flight) runs
// past the deadline.
func TestRunReturningBeforeItsDeadlineCompletes(t *testing.T) {
	st, err := sqlitestore.Open(filepath.Join(t.TempDir(), "deadline.db"), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ss := &slowRenewStore{Store: st, renewing: make(chan struct{}, 1), hold: 700 * time.Millisecond}
	e, err := durably.New(durably.Config{Store: ss, LeaseRenewInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var returnedLate atomic.Bool
	h := durably.MustRegister(e, &durably.Job[fleetInput, string]{Name: "bounded", Timeout: time.Second,
		Run: func(ctx context.Context, s *durably.StepContext, in fleetInput) (string, error) {
			time.Sleep(500 * time.Millisecond)
			ss.armed.Store(true)
			<-ss.renewing // one more renewal, now in flight, is slow to return
			returnedLate.Store(ctx.Err() != nil)
			return "done", nil
		}})
	ctx := context.Background()
	if err := e.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := h.Trigger(ctx, fleetInput{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ProcessOne(ctx, ""); err != nil {
		t.Fatal(err)
	}
	got, err := e.GetRun(ctx, r.Run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if returnedLate.Load() {
		t.Skip("the body returned after its deadline on this machine")
	}
	if got.Status != durably.StatusCompleted {
		t.Fatalf("run that returned before its deadline: %s %q, want completed", got.Status, got.Error)
	}
}

// TestAbandonedBodyRecordsNothing: a body abandoned past its run's deadline
// goes on on its goroutine, but nothing it writes is recorded, and
// no event of the run follows its run:fail.
func TestAbandonedBodyRecordsNothing(t *testing.T) {
	late := make(chan struct{})
	wrote := make(chan struct{})
	job := &durably.Job[fleetInput, string]{Name: "abandoned", Timeout: 200 * time.Millisecond,
		Run: func(ctx context.Context, s *durably.StepContext, in fleetInput) (string, error) {
			<-late // ignores its context
			s.Logger().Info("written by an abandoned body")
			s.Progress(1, 2, "from an abandoned body")
			close(wrote)
			return "", nil
		}}
	e, h := parentEngine(t, newStoreSpec(t, "sqlite", "abandoned.db"), durably.Config{}, job)
	var afterFail atomic.Int32
	var failed atomic.Bool
	e.OnEvent(func(ev durably.Event) {
		switch {
		case ev.Type == durably.EventRunFail:
			failed.Store(true)
		case failed.Load():
			afterFail.Add(1)
			t.Logf("after run:fail: %s", ev.Type)
		}
	})
	ctx := context.Background()
	r, err := h.Trigger(ctx, fleetInput{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ProcessOne(ctx, ""); err != nil {
		t.Fatal(err)
	}
	close(late)
	<-wrote
	logs, err := e.GetLogs(ctx, r.Run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) > 0 || afterFail.Load() > 0 {
		t.Fatalf("an abandoned body recorded %d log lines and caused %d events after run:fail", len(logs), afterFail.Load())
	}
}

// TestAbandonedRunCountsNoCrash: a run abandoned past its deadline is
// failed by its own process, a second after the deadline; with a lease
// shorter than that second plus a renewal interval, the lease (not renewed
// past the deadline) runs out first and another process takes the run over
// as a crash.
func TestAbandonedRunCountsNoCrash(t *testing.T) {
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	job := func(string) *durably.Job[fleetInput, string] {
		return &durably.Job[fleetInput, string]{Name: "hangs", Timeout: 300 * time.Millisecond,
			Run: func(ctx context.Context, s *durably.StepContext, in fleetInput) (string, error) {
				<-hang
				return "", nil
			}}
	}
	spec := newStoreSpec(t, "sqlite", "abandon.db")
	cfg := durably.Config{LeaseDuration: 600 * time.Millisecond, LeaseRenewInterval: 100 * time.Millisecond, PollingInterval: 20 * time.Millisecond}
	a, h := parentEngine(t, spec, cfg, job("a"))
	b, _ := parentEngine(t, spec, cfg, job("b"))
	ctx := context.Background()
	r, err := h.Trigger(ctx, fleetInput{})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = a.ProcessOne(ctx, "a") }()
	waitFor(t, 5*time.Second, "a to lease the run", func() bool {
		got, err := a.GetRun(ctx, r.Run.ID)
		return err == nil && got.LeaseOwner == "a"
	})
	if err := b.Start(); err != nil { // another process, polling
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop(ctx) })
	waitFor(t, 5*time.Second, "the run to end", func() bool {
		got, err := a.GetRun(ctx, r.Run.ID)
		return err == nil && got.Status.Terminal()
	})
	got, err := a.GetRun(ctx, r.Run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != durably.StatusFailed || got.Crashes != 0 {
		t.Fatalf("run %s, %d crashes, attempts %+v: want failed for its timeout, no crash", got.Status, got.Crashes, got.Attempts)
	}
}
