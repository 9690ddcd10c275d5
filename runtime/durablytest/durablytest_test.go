package durablytest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablytest"
	"github.com/durably-go/durably/store"
	"go.uber.org/goleak"
)

// fakeTB records the failures of a helper under test. It embeds the real
// test for TempDir, Cleanup and Context; Fatalf ends the helper's
// goroutine as the real one does, so nothing after it runs.
type fakeTB struct {
	testing.TB
	mu     sync.Mutex
	fatals []string
	errs   []string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatals = append(f.fatals, fmt.Sprintf(format, args...))
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

// fatal runs fn with a fakeTB on its own goroutine and returns the message
// of its Fatalf, "" if it did not fail.
func fatal(t *testing.T, fn func(tb testing.TB)) string {
	t.Helper()
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.errs) > 0 {
		t.Errorf("unexpected Errorf: %q", f.errs)
	}
	switch len(f.fatals) {
	case 0:
		return ""
	case 1:
		return f.fatals[0]
	}
	t.Fatalf("Fatalf called %d times: %q", len(f.fatals), f.fatals)
	return ""
}

type Order struct {
	ID    string `json:"id"`
	Items int    `json:"items"`
}

type Receipt struct {
	Total int `json:"total"`
}

type Mail struct {
	To string `json:"to"`
}

// jobs registers a mail job and an order job that triggers it; the order
// job fails for orders without items.
func jobs(t testing.TB, eng *durably.Engine) (orders *durably.JobHandle[Order, Receipt], mails *durably.JobHandle[Mail, string]) {
	mails = durably.MustRegister(eng, &durably.Job[Mail, string]{
		Name: "mail",
		Run: func(ctx context.Context, s *durably.StepContext, m Mail) (string, error) {
			return "sent to " + m.To, nil
		},
	})
	orders = durably.MustRegister(eng, &durably.Job[Order, Receipt]{
		Name: "order",
		ValidateInput: func(o *Order) error {
			if o.ID == "" {
				return errors.New("id: required")
			}
			return nil
		},
		Run: func(ctx context.Context, s *durably.StepContext, o Order) (Receipt, error) {
			if o.Items == 0 {
				return Receipt{}, errors.New("empty order")
			}
			_, err := durably.RunStep(s, "mail", func(ctx context.Context) (string, error) {
				_, err := mails.Trigger(ctx, Mail{To: o.ID + "@example.com"},
					durably.WithLabels(map[string]string{"order": o.ID}))
				return "", err
			})
			return Receipt{Total: 10 * o.Items}, err
		},
	})
	return orders, mails
}

// TestMain fails the package when a goroutine outlives its tests, as the
// root package's does: an Env's cleanup must leave nothing behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestNewCleansUp: the engine New makes is stopped and its store closed by
// the test's cleanup, even when the test started the worker and added a
// schedule, so no goroutine of it (worker, scheduler, writer, connection
// pool) survives the test.
func TestNewCleansUp(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Run("env", func(t *testing.T) {
		env := durablytest.New(t, durably.Config{})
		orders, _ := jobs(t, env.Engine)
		if err := durably.AddSchedule(orders, durably.Schedule[Order]{Name: "s", Cron: "@hourly", Input: Order{ID: "s", Items: 1}}); err != nil {
			t.Fatal(err)
		}
		if err := env.Engine.Start(); err != nil {
			t.Fatal(err)
		}
		if _, err := orders.Trigger(t.Context(), Order{ID: "a", Items: 1}); err != nil {
			t.Fatal(err)
		}
		if goleak.Find(before) == nil {
			t.Fatal("no goroutine of the engine while it runs: the check sees nothing")
		}
	})
	goleak.VerifyNone(t, before)
}

func TestNewRefusesStoreAndClock(t *testing.T) {
	env := durablytest.New(t, durably.Config{})
	for name, cfg := range map[string]durably.Config{
		"store": {Store: env.Engine.Store()},
		"now":   {Now: time.Now},
	} {
		t.Run(name, func(t *testing.T) {
			msg := fatal(t, func(tb testing.TB) { durablytest.New(tb, cfg) })
			if !strings.Contains(msg, "leave Config.Store and Config.Now unset") {
				t.Fatalf("Fatalf = %q", msg)
			}
		})
	}
}

// TestNewUsesTheFakeClock: every stored time is the fake clock's, and the
// rest of the Config is honoured.
func TestNewUsesTheFakeClock(t *testing.T) {
	env := durablytest.New(t, durably.Config{PreserveSteps: true})
	if got, want := env.Clock.Now(), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Fatalf("clock starts at %s, want %s", got, want)
	}
	start := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	env.Clock.Set(start)
	orders, _ := jobs(t, env.Engine)
	out, err := durablytest.TriggerAndRun(t, orders, Order{ID: "a", Items: 1})
	if err != nil {
		t.Fatal(err)
	}
	run, err := env.Engine.GetRun(t.Context(), out.RunID)
	if err != nil {
		t.Fatal(err)
	}
	if !run.CreatedAt.Equal(start) || !run.CompletedAt.Equal(start) {
		t.Fatalf("run created %s, completed %s; want both at the fake clock's %s", run.CreatedAt, run.CompletedAt, start)
	}
	steps, err := env.Engine.GetSteps(t.Context(), out.RunID)
	if err != nil || len(steps) != 1 {
		t.Fatalf("steps = %d, %v; want the preserved step (PreserveSteps honoured)", len(steps), err)
	}
}

func TestClock(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	c := durablytest.NewClock(t0)
	if got := c.Advance(90 * time.Second); !got.Equal(t0.Add(90 * time.Second)) {
		t.Fatalf("Advance returned %s", got)
	}
	if !c.Now().Equal(t0.Add(90 * time.Second)) {
		t.Fatalf("Now = %s after Advance", c.Now())
	}
	c.Set(t0)
	if !c.Now().Equal(t0) {
		t.Fatalf("Now = %s after Set back", c.Now())
	}
}

func TestTriggerAndRun(t *testing.T) {
	t.Run("completed, with the runs it triggers", func(t *testing.T) {
		env := durablytest.New(t, durably.Config{})
		orders, mails := jobs(t, env.Engine)
		out, err := durablytest.TriggerAndRun(t, orders, Order{ID: "a", Items: 3})
		if err != nil {
			t.Fatal(err)
		}
		if out.Output.Total != 30 || out.Disposition != durably.Created || out.RunID == "" {
			t.Fatalf("outcome = %+v", out)
		}
		mail := durablytest.RequireTriggered(t, mails, Mail{To: "a@example.com"})
		if mail.Status != durably.StatusCompleted || mail.Output != "sent to a@example.com" {
			t.Fatalf("the triggered mail run is %s with %q; want it processed too", mail.Status, mail.Output)
		}
	})
	t.Run("failed", func(t *testing.T) {
		env := durablytest.New(t, durably.Config{})
		orders, _ := jobs(t, env.Engine)
		out, err := durablytest.TriggerAndRun(t, orders, Order{ID: "a"})
		if !errors.Is(err, durably.ErrRunFailed) || err.Error() != "empty order" {
			t.Fatalf("err = %v; want ErrRunFailed with the job's message", err)
		}
		if out.RunID == "" {
			t.Fatal("no run id for the failed run")
		}
	})
	t.Run("refused", func(t *testing.T) {
		env := durablytest.New(t, durably.Config{})
		orders, _ := jobs(t, env.Engine)
		_, err := durablytest.TriggerAndRun(t, orders, Order{Items: 1})
		if !errors.Is(err, durably.ErrValidation) || !strings.Contains(err.Error(), "id: required") {
			t.Fatalf("err = %v; want the validation error", err)
		}
	})
	t.Run("idempotent", func(t *testing.T) {
		env := durablytest.New(t, durably.Config{})
		orders, _ := jobs(t, env.Engine)
		first, err := durablytest.TriggerAndRun(t, orders, Order{ID: "a", Items: 1}, durably.WithIdempotencyKey("k"))
		if err != nil {
			t.Fatal(err)
		}
		again, err := durablytest.TriggerAndRun(t, orders, Order{ID: "a", Items: 2}, durably.WithIdempotencyKey("k"))
		if err != nil || again.RunID != first.RunID || again.Disposition != durably.Idempotent || again.Output.Total != 10 {
			t.Fatalf("second trigger = %+v, %v; want the first run's outcome, idempotent", again, err)
		}
	})
	t.Run("not finished", func(t *testing.T) {
		env := durablytest.New(t, durably.Config{})
		orders, _ := jobs(t, env.Engine)
		// A run of another worker holds the concurrency key: the new run
		// stays pending however long this one processes.
		if _, err := orders.Trigger(t.Context(), Order{ID: "held", Items: 1}, durably.WithConcurrencyKey("k")); err != nil {
			t.Fatal(err)
		}
		claimed, err := env.Engine.Store().Claim(t.Context(), store.ClaimRequest{WorkerID: "elsewhere", Now: env.Clock.Now(), Lease: time.Hour, Limit: 1})
		if err != nil || len(claimed) != 1 {
			t.Fatalf("claim = %d, %v", len(claimed), err)
		}
		out, err := durablytest.TriggerAndRun(t, orders, Order{ID: "b", Items: 1}, durably.WithConcurrencyKey("k"))
		if !errors.Is(err, durablytest.ErrNotFinished) || !strings.Contains(err.Error(), "is pending") {
			t.Fatalf("err = %v; want ErrNotFinished naming the status", err)
		}
		if _, err := durablytest.Result(t, orders, out.RunID); !errors.Is(err, durablytest.ErrNotFinished) {
			t.Fatalf("Result err = %v; want ErrNotFinished", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		env := durablytest.New(t, durably.Config{})
		orders, _ := jobs(t, env.Engine)
		res, err := orders.Trigger(t.Context(), Order{ID: "a", Items: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := env.Engine.Cancel(t.Context(), res.Run.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := durablytest.Result(t, orders, res.Run.ID); !errors.Is(err, durably.ErrCancelled) {
			t.Fatalf("Result err = %v; want ErrCancelled", err)
		}
	})
}

func TestResultOfAnotherJobsRunFails(t *testing.T) {
	env := durablytest.New(t, durably.Config{})
	orders, mails := jobs(t, env.Engine)
	out, err := durablytest.TriggerAndRun(t, orders, Order{ID: "a", Items: 1})
	if err != nil {
		t.Fatal(err)
	}
	msg := fatal(t, func(tb testing.TB) { durablytest.Result(tb, mails, out.RunID) })
	if want := fmt.Sprintf(`no run %s of job "mail"`, out.RunID); !strings.Contains(msg, want) {
		t.Fatalf("Fatalf = %q, want it to contain %q", msg, want)
	}
}

func TestRequireTriggered(t *testing.T) {
	env := durablytest.New(t, durably.Config{})
	orders, mails := jobs(t, env.Engine)
	for _, id := range []string{"a", "b"} {
		if _, err := durablytest.TriggerAndRun(t, orders, Order{ID: id, Items: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := mails.Trigger(t.Context(), Mail{To: "a@example.com"}, durably.WithIdempotencyKey("again"),
		durably.WithConcurrencyKey("c")); err != nil {
		t.Fatal(err)
	}

	t.Run("found", func(t *testing.T) {
		run := durablytest.RequireTriggered(t, mails, Mail{To: "b@example.com"},
			durablytest.Labels(map[string]string{"order": "b"}), durablytest.Status(durably.StatusCompleted))
		if run == nil || run.Input.To != "b@example.com" || run.Labels["order"] != "b" {
			t.Fatalf("run = %+v", run)
		}
		run = durablytest.RequireTriggered(t, mails, Mail{}, durablytest.AnyInput(), durablytest.IdempotencyKey("again"),
			durablytest.ConcurrencyKey("c"), durablytest.Status(durably.StatusPending))
		if run.IdempotencyKey != "again" {
			t.Fatalf("run = %+v", run)
		}
	})

	cases := []struct {
		name string
		call func(tb testing.TB)
		want []string // substrings of the failure message, "" for none
	}{
		{
			name: "input differs",
			call: func(tb testing.TB) {
				durablytest.RequireTriggered(tb, mails, Mail{To: "c@example.com"}, durablytest.Labels(map[string]string{"order": "b"}))
			},
			want: []string{
				`no run of job "mail" matches input {"to":"c@example.com"}, labels {order=b}`,
				"its 3 run(s), newest first:",
				`pending input {"to":"a@example.com"} labels {} idempotency key "again" concurrency key "c" (differs in input, labels)`,
				`completed input {"to":"b@example.com"} labels {order=b} (differs in input)`,
				`completed input {"to":"a@example.com"} labels {order=a} (differs in input, labels)`,
			},
		},
		{
			name: "status differs",
			call: func(tb testing.TB) {
				durablytest.RequireTriggered(tb, mails, Mail{To: "b@example.com"}, durablytest.Status(durably.StatusFailed))
			},
			want: []string{`matches input {"to":"b@example.com"}, status failed`, `labels {order=b} (differs in status)`},
		},
		{
			name: "keys differ",
			call: func(tb testing.TB) {
				durablytest.RequireTriggered(tb, mails, Mail{To: "a@example.com"}, durablytest.IdempotencyKey("x"), durablytest.ConcurrencyKey("y"))
			},
			want: []string{`idempotency key "x", concurrency key "y"`, `concurrency key "c" (differs in idempotency key, concurrency key)`},
		},
		{
			name: "several match",
			call: func(tb testing.TB) {
				durablytest.RequireTriggered(tb, mails, Mail{To: "a@example.com"})
			},
			want: []string{`2 runs of job "mail" match input {"to":"a@example.com"}, want exactly one`},
		},
		{
			name: "job has no runs",
			call: func(tb testing.TB) {
				other := durably.MustRegister(env.Engine, &durably.Job[Mail, string]{Name: "sms",
					Run: func(context.Context, *durably.StepContext, Mail) (string, error) { return "", nil }})
				durablytest.RequireTriggered(tb, other, Mail{To: "a@example.com"})
			},
			want: []string{`job "sms" has no runs; other jobs have: "mail" (3), "order" (2)`},
		},
		{
			name: "not triggered: passes",
			call: func(tb testing.TB) {
				durablytest.RequireNotTriggered(tb, mails, Mail{To: "c@example.com"})
				durablytest.RequireNotTriggered(tb, mails, Mail{To: "b@example.com"}, durablytest.Labels(map[string]string{"order": "a"}))
			},
			want: []string{""},
		},
		{
			name: "not triggered: fails",
			call: func(tb testing.TB) {
				durablytest.RequireNotTriggered(tb, mails, Mail{}, durablytest.AnyInput(), durablytest.Labels(map[string]string{"order": "a"}))
			},
			want: []string{
				`RequireNotTriggered: 1 run(s) of job "mail" match any input, labels {order=a}`,
				"the matching run(s), newest first:",
				`completed input {"to":"a@example.com"} labels {order=a}`,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg := fatal(t, tc.call)
			for _, w := range tc.want {
				if w == "" && msg != "" || !strings.Contains(msg, w) {
					t.Errorf("failure message:\n%s\nwant it to contain %q", msg, w)
				}
			}
		})
	}
}

// TestRequireTriggeredComparesJSON: the wanted input matches a run whose
// stored input is the same JSON value, whatever the Go values' details
// (here a nil and an empty slice, which encode differently, and maps in
// any order, which encode alike).
func TestRequireTriggeredComparesJSON(t *testing.T) {
	type Tags struct {
		Names []string       `json:"names,omitempty"`
		Meta  map[string]int `json:"meta"`
	}
	env := durablytest.New(t, durably.Config{})
	h := durably.MustRegister(env.Engine, &durably.Job[Tags, struct{}]{Name: "tags",
		Run: func(context.Context, *durably.StepContext, Tags) (struct{}, error) { return struct{}{}, nil }})
	if _, err := h.Trigger(t.Context(), Tags{Names: []string{}, Meta: map[string]int{"b": 2, "a": 1}}); err != nil {
		t.Fatal(err)
	}
	durablytest.RequireTriggered(t, h, Tags{Meta: map[string]int{"a": 1, "b": 2}})
	msg := fatal(t, func(tb testing.TB) { durablytest.RequireTriggered(tb, h, Tags{Meta: map[string]int{"a": 1}}) })
	if !strings.Contains(msg, `(differs in input)`) {
		t.Fatalf("a different map matched: %q", msg)
	}
}

// TestAdvanceFiresEveryTick: Advance lives through each tick in between,
// as a running engine does, where one FireDueSchedules call at the end
// would fire only the latest; the tick due at the start fires too.
func TestAdvanceFiresEveryTick(t *testing.T) {
	env := durablytest.New(t, durably.Config{})
	orders, mails := jobs(t, env.Engine)
	err := durably.AddSchedule(orders, durably.Schedule[Order]{Name: "hourly", Cron: "0 * * * *", Input: Order{ID: "h", Items: 1}})
	if err != nil {
		t.Fatal(err)
	}
	// 00:00, 01:00, 02:00 and 03:00, each an order and its mail.
	if n := env.Advance(3*time.Hour + 30*time.Minute); n != 8 {
		t.Fatalf("Advance processed %d runs, want 8", n)
	}
	for _, tick := range []string{"00", "01", "02", "03"} {
		key := "schedule:hourly:2026-01-01T" + tick + ":00:00Z"
		run := durablytest.RequireTriggered(t, orders, Order{ID: "h", Items: 1}, durablytest.IdempotencyKey(key),
			durablytest.Status(durably.StatusCompleted))
		if want := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(tick[1]-'0') * time.Hour); !run.CreatedAt.Equal(want) {
			t.Fatalf("tick %s's run was created at %s; want at the tick", tick, run.CreatedAt)
		}
	}
	if runs, _ := mails.ListRuns(t.Context(), durably.RunFilter{}); len(runs) != 4 {
		t.Fatalf("%d mails, want 4", len(runs))
	}
	if now := env.Clock.Now(); !now.Equal(time.Date(2026, 1, 1, 3, 30, 0, 0, time.UTC)) {
		t.Fatalf("clock = %s after Advance", now)
	}
	if n := env.Advance(29 * time.Minute); n != 0 {
		t.Fatalf("Advance before the next tick processed %d runs", n)
	}
	if n := env.AdvanceTo(time.Date(2026, 1, 1, 4, 0, 0, 0, time.UTC)); n != 2 {
		t.Fatalf("AdvanceTo the next tick processed %d runs, want 2", n)
	}
}

// TestProcessDue: a tick due on the clock fires once however often
// ProcessDue runs, and pending runs are processed with it.
func TestProcessDue(t *testing.T) {
	env := durablytest.New(t, durably.Config{})
	orders, _ := jobs(t, env.Engine)
	if _, err := orders.Trigger(t.Context(), Order{ID: "a", Items: 1}); err != nil {
		t.Fatal(err)
	}
	if err := durably.AddSchedule(orders, durably.Schedule[Order]{Name: "daily", Cron: "@daily", Input: Order{ID: "d", Items: 1}}); err != nil {
		t.Fatal(err)
	}
	if n := env.ProcessDue(); n != 4 {
		t.Fatalf("ProcessDue processed %d runs, want 4 (the pending order, the tick's, and their mails)", n)
	}
	if n := env.ProcessDue(); n != 0 {
		t.Fatalf("ProcessDue again processed %d runs", n)
	}
	durablytest.RequireTriggered(t, orders, Order{ID: "d", Items: 1}, durablytest.Status(durably.StatusCompleted))
}

func TestAdvanceRefusesTheClockBack(t *testing.T) {
	for name, tc := range map[string]struct {
		call func(e *durablytest.Env)
		want string
	}{
		"Advance":   {func(e *durablytest.Env) { e.Advance(-time.Second) }, "Advance(-1s): the clock only goes forward"},
		"AdvanceTo": {func(e *durablytest.Env) { e.AdvanceTo(e.Clock.Now().Add(-time.Hour)) }, "AdvanceTo(2025-12-31T23:00:00Z): the clock reads 2026-01-01T00:00:00Z"},
	} {
		t.Run(name, func(t *testing.T) {
			msg := fatal(t, func(tb testing.TB) {
				tc.call(durablytest.New(tb, durably.Config{}))
			})
			if !strings.Contains(msg, tc.want) {
				t.Fatalf("Fatalf = %q, want it to contain %q", msg, tc.want)
			}
		})
	}
}

// TestAdvanceJumpsOverFrequentSchedules: a 14-day Advance over a schedule
// of every 5 seconds is cheap: it lives through each tick of the daily
// schedule beside it, and fires the frequent one's latest due tick at each
// of those stops and at the end, as an engine late for its ticks does.
func TestAdvanceJumpsOverFrequentSchedules(t *testing.T) {
	env := durablytest.New(t, durably.Config{})
	orders, _ := jobs(t, env.Engine)
	for _, s := range []durably.Schedule[Order]{
		{Name: "fast", Cron: "@every 5s", Input: Order{ID: "fast", Items: 1}},
		// CatchUp none: the tick of December 31st, due at the start, does
		// not fire.
		{Name: "daily", Cron: "30 9 * * *", Input: Order{ID: "daily", Items: 1}, CatchUp: -1},
	} {
		if err := durably.AddSchedule(orders, s); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	env.Advance(14*24*time.Hour + time.Hour)
	took := time.Since(start)
	t.Logf("14 days in %s", took)
	if took > 5*time.Second {
		t.Errorf("Advance took %s", took)
	}
	runs, err := orders.ListRuns(t.Context(), durably.RunFilter{})
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, r := range runs {
		count[r.Input.ID]++
	}
	if count["daily"] != 14 {
		t.Errorf("%d daily runs, want 14: each tick lived through", count["daily"])
	}
	if count["fast"] != 1+14+1 {
		t.Errorf("%d runs of the frequent schedule, want 16: at the start, at each daily tick, at the end", count["fast"])
	}
	last := durablytest.RequireTriggered(t, orders, Order{ID: "fast", Items: 1}, durablytest.IdempotencyKey("schedule:fast:2026-01-15T01:00:00Z"))
	if last.Status != durably.StatusCompleted {
		t.Errorf("the last tick's run is %s", last.Status)
	}
}

// TestTickStops: up to TickStops ticks of a schedule, Advance stops at
// each; one more, and it jumps over them.
func TestTickStops(t *testing.T) {
	for _, c := range []struct {
		stops, want int
	}{
		{12, 13}, // the tick at the start and the 12 after it
		{11, 2},  // the tick at the start, and the latest at the end
	} {
		env := durablytest.New(t, durably.Config{})
		env.TickStops = c.stops
		orders, _ := jobs(t, env.Engine)
		if err := durably.AddSchedule(orders, durably.Schedule[Order]{Name: "fast", Cron: "@every 5s", Input: Order{ID: "f", Items: 1}}); err != nil {
			t.Fatal(err)
		}
		env.Advance(time.Minute)
		if runs, _ := orders.ListRuns(t.Context(), durably.RunFilter{}); len(runs) != c.want {
			t.Errorf("TickStops %d: %d runs in a minute of a 5s schedule, want %d", c.stops, len(runs), c.want)
		}
	}
}
