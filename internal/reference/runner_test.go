package reference_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/reference"
	"github.com/durably-go/durably/internal/reference/client"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/runtime/sqlitestore"
)

// newRunnerEngine is an engine on a fresh SQLite file with the reference
// jobs registered on h, migrated but not started; it keeps steps
// (PreserveSteps) for the client to read.
func newRunnerEngine(t *testing.T, h reference.Handlers, slots int) (*durably.Engine, *reference.Jobs) {
	t.Helper()
	st, err := sqlitestore.Open(filepath.Join(t.TempDir(), "r.db"), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e, err := durably.New(reference.Config(durably.Config{Store: st, PollingInterval: 20 * time.Millisecond, MaxConcurrentRuns: slots, PreserveSteps: true}))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	jobs, err := reference.Register(e, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Stop(context.Background()) })
	return e, jobs
}

// waitRun polls a run until ok holds for it.
func waitRun(t *testing.T, e *durably.Engine, id, what string, ok func(*durably.Run) bool) *durably.Run {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := e.GetRun(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if r != nil && ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s: never %s; last %+v", id, what, r)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var labels = reference.NewLabels("acme", reference.EnvProduction)

// TestDeclaredPriorityAndTriggerOptions: a job's declared priority is the
// default of its runs, and the generated triggers' options RunAt, Delay
// and Priority reach the run.
func TestDeclaredPriorityAndTriggerOptions(t *testing.T) {
	ctx := context.Background()
	_, jobs := newRunnerEngine(t, handlers, 1) // never started: runs stay as triggered
	seven := 7
	at := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	in := reference.ImportCSVInput{Filename: "a.csv", Mode: reference.ImportCSVInputModeAppend, Rows: []reference.ImportCSVInputRowsItem{{Sku: "s", Quantity: 1}}}
	before := time.Now()
	type got struct {
		run  *durably.Run
		err  error
		name string
	}
	var runs []got
	add := func(name string, r *durably.Run, err error) { runs = append(runs, got{r, err, name}) }
	csv, _, err := jobs.ImportCSV.Trigger(ctx, in, labels, reference.TriggerOptions{})
	add("import-csv, no options", runOf(csv), err)
	mail, _, err := jobs.SendMail.Trigger(ctx, "a@example.com", labels, reference.TriggerOptions{RunAt: at})
	add("send-email at a time", runOf(mail), err)
	ping, _, err := jobs.Ping.Trigger(ctx, labels, reference.TriggerOptions{Delay: time.Hour, Priority: &seven})
	add("ping delayed, priority 7", runOf(ping), err)
	for i, want := range []struct {
		priority int
		runAt    func(time.Time) bool
	}{
		{10, time.Time.IsZero},
		{-1, func(t time.Time) bool { return t.Equal(at) }},
		{7, func(t time.Time) bool {
			return !t.Before(before.Add(time.Hour).Truncate(time.Millisecond)) && t.Before(time.Now().Add(time.Hour))
		}},
	} {
		g := runs[i]
		if g.err != nil {
			t.Fatalf("%s: %v", g.name, g.err)
		}
		if g.run.Priority != want.priority || !want.runAt(g.run.RunAt) || g.run.Status != durably.StatusPending {
			t.Errorf("%s: priority %d, runAt %v, status %s; want priority %d", g.name, g.run.Priority, g.run.RunAt, g.run.Status, want.priority)
		}
	}
}

func runOf[I, O any](r *durably.TypedRun[I, O, reference.Labels]) *durably.Run {
	if r == nil {
		return nil
	}
	return r.Run
}

// TestDeclaredRetry: import-csv's declared retry policy reaches the
// engine: a body failing once is retried after the declared wait (500ms,
// less up to 20 % of jitter) instead of failing its run.
func TestDeclaredRetry(t *testing.T) {
	ctx := context.Background()
	var calls atomic.Int32
	h := handlers
	h.ImportCSV = func(ctx context.Context, s *durably.StepContext, in reference.ImportCSVInput) (reference.ImportCSVOutput, error) {
		if calls.Add(1) == 1 {
			return reference.ImportCSVOutput{}, errors.New("the file server is down")
		}
		return reference.ImportCSVOutput{Imported: len(in.Rows)}, nil
	}
	e, jobs := newRunnerEngine(t, h, 1)
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	in := reference.ImportCSVInput{Filename: "a.csv", Mode: reference.ImportCSVInputModeAppend, Rows: []reference.ImportCSVInputRowsItem{{Sku: "s", Quantity: 1}}}
	r, _, err := jobs.ImportCSV.Trigger(ctx, in, labels, reference.TriggerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deferred := waitRun(t, e, r.ID, "deferred for a retry", func(r *durably.Run) bool {
		return r.Attempt == 1 || r.Status.Terminal()
	})
	failedAt := time.Now()
	if deferred.Status.Terminal() {
		t.Fatalf("the first failure ended the run (%s: %s): the declared retry did not reach the engine", deferred.Status, deferred.Error)
	}
	if wait := deferred.RunAt.Sub(deferred.StartedAt); wait < 400*time.Millisecond-time.Millisecond || deferred.RunAt.After(failedAt.Add(500*time.Millisecond)) {
		t.Errorf("retry at %v, %v after the start: want the declared 500ms less up to 20 %%", deferred.RunAt, wait)
	}
	done := waitRun(t, e, r.ID, "completed", func(r *durably.Run) bool { return r.Status.Terminal() })
	if done.Status != durably.StatusCompleted || calls.Load() != 2 {
		t.Fatalf("run %s after %d calls, want completed after 2", done.Status, calls.Load())
	}
}

// TestDeclaredMaxRunning: ping's maxRunning: 1 reaches the engine. Two
// pings and a send-email of a lower priority wait for a worker of two
// slots; the first ping blocks. Without the limit the second ping would
// take the other slot and block too; with it, that slot runs the
// send-email and the second ping waits for the first.
func TestDeclaredMaxRunning(t *testing.T) {
	ctx := context.Background()
	release := make(chan struct{})
	var running, most atomic.Int32
	h := handlers
	h.Ping = func(ctx context.Context, s *durably.StepContext, in reference.PingInput) (reference.PingOutput, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return reference.PingOutput{}, nil
	}
	e, jobs := newRunnerEngine(t, h, 2)
	// Registered after the engine's Stop, so run before it: a failing test
	// lets the blocked pings end rather than Stop wait for them.
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	low := 100
	var ids []string
	for range 2 {
		r, _, err := jobs.Ping.Trigger(ctx, labels, reference.TriggerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	mail, _, err := jobs.SendMail.Trigger(ctx, "a@example.com", labels, reference.TriggerOptions{Priority: &low})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	waitRun(t, e, mail.ID, "completed", func(r *durably.Run) bool { return r.Status == durably.StatusCompleted })
	var pending int
	for _, id := range ids {
		if r, _ := e.GetRun(ctx, id); r.Status == durably.StatusPending {
			pending++
		}
	}
	if pending != 1 || most.Load() != 1 {
		t.Fatalf("%d pings pending while another runs, at most %d at once: want 1 and 1", pending, most.Load())
	}
	unblock()
	for _, id := range ids {
		waitRun(t, e, id, "completed", func(r *durably.Run) bool { return r.Status == durably.StatusCompleted })
	}
	if most.Load() != 1 {
		t.Fatalf("%d pings ran at once, want at most 1", most.Load())
	}
}

// TestClientTriggerOptions: the generated client's RunAt, Delay and
// Priority travel to a real handler on SQLite: the delayed run shows its
// runAt and priority, and a finished run's steps their attempt.
func TestClientTriggerOptions(t *testing.T) {
	ctx := context.Background()
	e, _ := newRunnerEngine(t, handlers, 1)
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	hh, err := durablyhttp.New(e, durablyhttp.Options[reference.AuthContext, reference.Labels]{Jobs: reference.JobSchemas()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(hh)
	t.Cleanup(srv.Close)
	t.Cleanup(hh.Close)
	c := client.New(srv.URL)
	three := 3
	at := time.Date(2031, 5, 6, 7, 8, 9, 123e6, time.FixedZone("CEST", 2*3600))
	before := time.Now()
	delayed, err := c.TriggerPing(ctx, client.TriggerOptions{Labels: labels, Delay: time.Hour, Priority: &three})
	if err != nil {
		t.Fatal(err)
	}
	scheduled, err := c.TriggerSendMail(ctx, "a@example.com", client.TriggerOptions{Labels: labels, RunAt: at})
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.GetPingRun(ctx, delayed.RunID)
	if err != nil || r == nil {
		t.Fatalf("get: %v %v", r, err)
	}
	if r.Priority != 3 || r.RunAt.Before(before.Add(time.Hour).Truncate(time.Millisecond)) || r.RunAt.After(time.Now().Add(time.Hour)) || r.Status != durably.StatusPending {
		t.Errorf("delayed ping: priority %d runAt %v status %s; want 3, an hour from the trigger, pending", r.Priority, r.RunAt, r.Status)
	}
	m, err := c.GetSendMailRun(ctx, scheduled.RunID)
	if err != nil || m == nil {
		t.Fatalf("get: %v %v", m, err)
	}
	if m.Priority != -1 || !m.RunAt.Equal(at) || m.Status != durably.StatusPending {
		t.Errorf("scheduled send-email: priority %d runAt %v status %s; want the declared -1, %v, pending", m.Priority, m.RunAt, m.Status, at)
	}
	// A negative delay is the server's to refuse, naming the member.
	if _, err := c.TriggerPing(ctx, client.TriggerOptions{Labels: labels, Delay: -time.Second}); !errors.Is(err, durably.ErrValidation) {
		t.Errorf("a negative delay: %v, want a validation error", err)
	}
	in := reference.ImportCSVInput{Filename: "a.csv", Mode: reference.ImportCSVInputModeAppend, Rows: []reference.ImportCSVInputRowsItem{{Sku: "s", Quantity: 1}}}
	out, err := c.TriggerAndWaitImportCSV(ctx, in, client.TriggerOptions{Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	steps, err := c.Steps(ctx, out.RunID)
	if err != nil || len(steps) != 1 || steps[0].Attempt != 1 {
		t.Fatalf("steps %+v %v: want one step of attempt 1", steps, err)
	}
}
