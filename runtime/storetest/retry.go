package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durably-go/durably"
)

// flaky returns a step function that fails its first failures calls with
// "boom <n>" and then returns want, counting its calls under key.
func flaky(calls *Counter, key string, failures int, want int) func(context.Context) (int, error) {
	return func(context.Context) (int, error) {
		calls.Inc(key)
		if n := calls.Get(key); n <= failures {
			return 0, fmt.Errorf("boom %d", n)
		}
		return want, nil
	}
}

// processAll runs every claimable run on e to its end or its suspension.
func processAll(t *testing.T, e *durably.Engine) int {
	t.Helper()
	n, err := e.ProcessUntilIdle(Ctx(t), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// stepRows returns a run's step history as "name:status:attempt".
func stepRows(t *testing.T, e *durably.Engine, runID string) []string {
	t.Helper()
	steps, err := e.GetSteps(Ctx(t), runID)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, st := range steps {
		out = append(out, fmt.Sprintf("%s:%s:%d", st.Name, st.Status, st.Attempt))
	}
	return out
}

func equalRows(t *testing.T, got []string, want ...string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("step history %q, want %q", got, want)
	}
}

var fixedMinute = &durably.RetryPolicy{MaxAttempts: 3, Backoff: durably.BackoffFixed, Initial: time.Minute}

var retryCases = []Case{
	{"R-076 a failing step is retried after its backoff, each attempt kept in the history, until it succeeds", func(t *testing.T, h *Harness) {
		clock := newFakeClock(mustTime(t, "2026-05-04T10:00:00Z"))
		e := h.Engine(func(c *durably.Config) { c.Now = clock.Now; c.PreserveSteps = true })
		rec := Record(t, e)
		var calls Counter
		j := durably.MustRegister(e, &durably.Job[int, int]{Name: "j", Retry: fixedMinute,
			Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
				a, err := durably.RunStep(s, "before", func(context.Context) (int, error) { calls.Inc("before"); return 1, nil })
				if err != nil {
					return 0, err
				}
				b, err := durably.RunStep(s, "flaky", flaky(&calls, "flaky", 2, 41))
				return a + b, err
			}})
		r := MustTrigger(t, j, 0)
		for attempt := 1; attempt <= 2; attempt++ {
			if n := processAll(t, e); n != 1 {
				t.Fatalf("attempt %d: processed %d runs", attempt, n)
			}
			run := MustGet(t, e, r.ID)
			if run.Status != durably.StatusPending || run.Attempt != attempt || run.LeaseOwner != "" ||
				!run.RunAt.Equal(clock.Now().Add(time.Minute)) {
				t.Fatalf("after attempt %d: status %s, attempt %d, owner %q, runAt %s", attempt, run.Status, run.Attempt, run.LeaseOwner, run.RunAt)
			}
			// Not due yet: nothing to claim.
			if n := processAll(t, e); n != 0 {
				t.Fatalf("claimed a run waiting for its retry")
			}
			clock.Set(clock.Now().Add(time.Minute))
		}
		processAll(t, e)
		run := MustGet(t, e, r.ID)
		if run.Status != durably.StatusCompleted || string(run.Output) != "42" {
			t.Fatalf("run %s, output %s, error %q", run.Status, run.Output, run.Error)
		}
		if calls.Get("before") != 1 || calls.Get("flaky") != 3 {
			t.Fatalf("calls: before %d, flaky %d", calls.Get("before"), calls.Get("flaky"))
		}
		equalRows(t, stepRows(t, e, r.ID), "before:completed:1", "flaky:failed:1", "flaky:failed:2", "flaky:completed:3")
		if n := len(rec.Events(durably.EventStepFail)); n != 2 {
			t.Fatalf("%d step:fail events, want 2", n)
		}
		if n := len(rec.Events(durably.EventRunFail)); n != 0 {
			t.Fatalf("run:fail emitted for a retried run")
		}
	}},
	{"R-077 a step whose attempts are spent fails the run with its last error; Permanent fails at once", func(t *testing.T, h *Harness) {
		clock := newFakeClock(mustTime(t, "2026-05-04T10:00:00Z"))
		e := h.Engine(func(c *durably.Config) { c.Now = clock.Now; c.PreserveSteps = true })
		var calls Counter
		spent := durably.MustRegister(e, &durably.Job[int, int]{Name: "spent", Retry: &durably.RetryPolicy{MaxAttempts: 2, Initial: time.Minute},
			Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
				return durably.RunStep(s, "s", flaky(&calls, "spent", 99, 0))
			}})
		permanent := durably.MustRegister(e, &durably.Job[int, int]{Name: "permanent", Retry: &durably.RetryPolicy{MaxAttempts: 5, Initial: time.Minute},
			Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
				return durably.RunStep(s, "s", func(context.Context) (int, error) {
					calls.Inc("permanent")
					return 0, durably.Permanent(errors.New("bad request"))
				})
			}})
		r1, r2 := MustTrigger(t, spent, 0), MustTrigger(t, permanent, 0)
		processAll(t, e)
		clock.Set(clock.Now().Add(time.Minute))
		processAll(t, e)
		if run := MustGet(t, e, r1.ID); run.Status != durably.StatusFailed || run.Error != "boom 2" || run.Attempt != 1 {
			t.Fatalf("spent: %s %q attempt %d", run.Status, run.Error, run.Attempt)
		}
		equalRows(t, stepRows(t, e, r1.ID), "s:failed:1", "s:failed:2")
		if run := MustGet(t, e, r2.ID); run.Status != durably.StatusFailed || run.Error != "bad request" || run.Attempt != 0 {
			t.Fatalf("permanent: %s %q attempt %d", run.Status, run.Error, run.Attempt)
		}
		equalRows(t, stepRows(t, e, r2.ID), "s:failed:1")
		if calls.Get("spent") != 2 || calls.Get("permanent") != 1 {
			t.Fatalf("calls %d %d", calls.Get("spent"), calls.Get("permanent"))
		}
	}},
	{"R-076 R-077 a step's own policy overrides its job's", func(t *testing.T, h *Harness) {
		clock := newFakeClock(mustTime(t, "2026-05-04T10:00:00Z"))
		e := h.Engine(func(c *durably.Config) { c.Now = clock.Now; c.PreserveSteps = true })
		var calls Counter
		// No job policy; the step retries on its own.
		own := durably.MustRegister(e, &durably.Job[int, int]{Name: "own",
			Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
				return durably.RunStep(s, "s", flaky(&calls, "own", 1, 7),
					durably.WithStepRetry(durably.RetryPolicy{MaxAttempts: 2, Backoff: durably.BackoffFixed, Initial: time.Hour}))
			}})
		// A job policy of five attempts; the step turns retries off.
		off := durably.MustRegister(e, &durably.Job[int, int]{Name: "off", Retry: &durably.RetryPolicy{MaxAttempts: 5, Initial: time.Second},
			Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
				return durably.RunStep(s, "s", flaky(&calls, "off", 1, 7), durably.WithStepRetry(durably.RetryPolicy{MaxAttempts: 1}))
			}})
		r1, r2 := MustTrigger(t, own, 0), MustTrigger(t, off, 0)
		processAll(t, e)
		if run := MustGet(t, e, r2.ID); run.Status != durably.StatusFailed || run.Error != "boom 1" {
			t.Fatalf("off: %s %q", run.Status, run.Error)
		}
		clock.Set(clock.Now().Add(time.Minute))
		if n := processAll(t, e); n != 0 {
			t.Fatal("the step's one-hour wait was not used")
		}
		clock.Set(clock.Now().Add(time.Hour))
		processAll(t, e)
		if run := MustGet(t, e, r1.ID); run.Status != durably.StatusCompleted || string(run.Output) != "7" {
			t.Fatalf("own: %s %q", run.Status, run.Error)
		}
		equalRows(t, stepRows(t, e, r1.ID), "s:failed:1", "s:completed:2")
	}},
	{"R-078 a job body failing outside any step is retried as a whole run, its completed steps replayed", func(t *testing.T, h *Harness) {
		clock := newFakeClock(mustTime(t, "2026-05-04T10:00:00Z"))
		e := h.Engine(func(c *durably.Config) { c.Now = clock.Now })
		var calls Counter
		j := durably.MustRegister(e, &durably.Job[int, int]{Name: "j", Retry: fixedMinute,
			Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
				v, err := durably.RunStep(s, "s", func(context.Context) (int, error) { calls.Inc("s"); return 5, nil })
				if err != nil {
					return 0, err
				}
				if calls.Inc("body"); calls.Get("body") == 1 {
					return 0, errors.New("body failed")
				}
				return v, nil
			}})
		r := MustTrigger(t, j, 0)
		processAll(t, e)
		if run := MustGet(t, e, r.ID); run.Status != durably.StatusPending || run.Attempt != 1 {
			t.Fatalf("after the failure: %s attempt %d", run.Status, run.Attempt)
		}
		clock.Set(clock.Now().Add(time.Minute))
		processAll(t, e)
		if run := MustGet(t, e, r.ID); run.Status != durably.StatusCompleted || string(run.Output) != "5" {
			t.Fatalf("%s %q", run.Status, run.Error)
		}
		if calls.Get("s") != 1 || calls.Get("body") != 2 {
			t.Fatalf("step ran %d times, body %d", calls.Get("s"), calls.Get("body"))
		}
	}},
	{"R-079 a run waiting for a retry holds no worker slot: a 1-slot worker runs another run meanwhile", func(t *testing.T, h *Harness) {
		clock := newFakeClock(time.Now().UTC())
		e := h.Engine(func(c *durably.Config) { c.Now = clock.Now; c.MaxConcurrentRuns = 1 })
		var calls Counter
		flakyJob := durably.MustRegister(e, &durably.Job[int, int]{Name: "flaky", Retry: &durably.RetryPolicy{MaxAttempts: 2, Initial: time.Hour},
			Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
				return durably.RunStep(s, "s", flaky(&calls, "flaky", 1, 3))
			}})
		other := durably.MustRegister(e, EchoJob("other"))
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		r1 := MustTrigger(t, flakyJob, 0)
		Eventually(t, "the first attempt", func() bool { return MustGet(t, e, r1.ID).Attempt == 1 })
		r2 := MustTrigger(t, other, Msg{"hi"})
		Eventually(t, "the other run", func() bool { return MustGet(t, e, r2.ID).Status == durably.StatusCompleted })
		if run := MustGet(t, e, r1.ID); run.Status != durably.StatusPending || run.LeaseOwner != "" {
			t.Fatalf("waiting run: %s owner %q", run.Status, run.LeaseOwner)
		}
		clock.Set(clock.Now().Add(time.Hour))
		Eventually(t, "the retry", func() bool { return MustGet(t, e, r1.ID).Status == durably.StatusCompleted })
	}},
	{"R-093 R-094 a sleep hands the run back until its wake time, then replays as done", func(t *testing.T, h *Harness) {
		clock := newFakeClock(mustTime(t, "2026-05-04T10:00:00Z"))
		e := h.Engine(func(c *durably.Config) { c.Now = clock.Now; c.PreserveSteps = true })
		rec := Record(t, e)
		var calls Counter
		j := durably.MustRegister(e, sleeper(&calls, "j"))
		r := MustTrigger(t, j, 0)
		processAll(t, e)
		wake := mustTime(t, "2026-05-04T11:00:00Z")
		run := MustGet(t, e, r.ID)
		if run.Status != durably.StatusPending || !run.RunAt.Equal(wake) || run.Attempt != 0 || run.CompletedStepCount != 2 {
			t.Fatalf("sleeping run: %s runAt %s attempt %d completed %d", run.Status, run.RunAt, run.Attempt, run.CompletedStepCount)
		}
		steps, err := e.GetSteps(Ctx(t), r.ID)
		if err != nil || len(steps) != 2 || steps[1].Name != "nap" || string(steps[1].Output) != `"2026-05-04T11:00:00.000Z"` {
			t.Fatalf("steps %v %v", steps, err)
		}
		if got := rec.Types(r.ID); fmt.Sprint(got[len(got)-2:]) != "[step:start step:complete]" {
			t.Fatalf("events %q", got)
		}
		clock.Set(wake.Add(-time.Second))
		if n := processAll(t, e); n != 0 {
			t.Fatal("claimed before the wake time")
		}
		clock.Set(wake)
		processAll(t, e)
		if run := MustGet(t, e, r.ID); run.Status != durably.StatusCompleted || string(run.Output) != "3" {
			t.Fatalf("%s %q", run.Status, run.Error)
		}
		if calls.Get("a") != 1 || calls.Get("b") != 1 || calls.Get("body") != 2 {
			t.Fatalf("calls a %d b %d body %d", calls.Get("a"), calls.Get("b"), calls.Get("body"))
		}
		equalRows(t, stepRows(t, e, r.ID), "a:completed:1", "nap:completed:1", "b:completed:1")
	}},
	{"R-094 a sleeping run claimed before its wake time (a clock running ahead) sleeps again", func(t *testing.T, h *Harness) {
		clock := newFakeClock(mustTime(t, "2026-05-04T10:00:00Z"))
		// ahead makes the next reading of the clock, the claim's, an hour
		// and a minute later than the others, as a process whose clock
		// runs ahead would claim the run.
		var ahead sync.Once
		var armed atomic.Bool
		now := func() time.Time {
			if armed.Load() {
				skewed := false
				ahead.Do(func() { skewed = true })
				if skewed {
					return clock.Now().Add(time.Hour + time.Minute)
				}
			}
			return clock.Now()
		}
		e := h.Engine(func(c *durably.Config) { c.Now = now; c.PreserveSteps = true })
		var calls Counter
		j := durably.MustRegister(e, sleeper(&calls, "j"))
		r := MustTrigger(t, j, 0)
		processAll(t, e)
		armed.Store(true)
		// A worker id of its own: a fresh one would read the clock first.
		if ok, err := e.ProcessOne(Ctx(t), "worker_ahead"); !ok || err != nil {
			t.Fatalf("early claim: %v %v", ok, err)
		}
		wake := mustTime(t, "2026-05-04T11:00:00Z")
		if run := MustGet(t, e, r.ID); run.Status != durably.StatusPending || !run.RunAt.Equal(wake) || run.LeaseOwner != "" {
			t.Fatalf("after the early claim: %s runAt %s owner %q", run.Status, run.RunAt, run.LeaseOwner)
		}
		if calls.Get("b") != 0 || calls.Get("body") != 2 {
			t.Fatalf("step b ran %d times, body %d", calls.Get("b"), calls.Get("body"))
		}
		equalRows(t, stepRows(t, e, r.ID), "a:completed:1", "nap:completed:1")
		clock.Set(wake)
		processAll(t, e)
		if run := MustGet(t, e, r.ID); run.Status != durably.StatusCompleted || calls.Get("b") != 1 {
			t.Fatalf("%s %q, b ran %d times", run.Status, run.Error, calls.Get("b"))
		}
	}},
	{"R-079 R-094 a new engine on the same database resumes a run waiting for a retry or a sleep", func(t *testing.T, h *Harness) {
		clock := newFakeClock(mustTime(t, "2026-05-04T10:00:00Z"))
		var calls Counter
		retryJob := &durably.Job[int, int]{Name: "retry", Retry: fixedMinute,
			Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
				return durably.RunStep(s, "s", flaky(&calls, "retry", 1, 9))
			}}
		sleepJob := sleeper(&calls, "sleep")
		e1 := h.EngineOn(h.OpenStore(), func(c *durably.Config) { c.Now = clock.Now })
		r1 := MustTrigger(t, durably.MustRegister(e1, retryJob), 0)
		r2 := MustTrigger(t, durably.MustRegister(e1, sleepJob), 0)
		processAll(t, e1)
		if err := e1.Stop(Ctx(t)); err != nil {
			t.Fatal(err)
		}
		clock.Set(clock.Now().Add(time.Hour))
		e2 := h.EngineOn(h.OpenStore(), func(c *durably.Config) { c.Now = clock.Now })
		durably.MustRegister(e2, retryJob)
		durably.MustRegister(e2, sleepJob)
		if n := processAll(t, e2); n != 2 {
			t.Fatalf("processed %d", n)
		}
		for _, id := range []string{r1.ID, r2.ID} {
			if run := MustGet(t, e2, id); run.Status != durably.StatusCompleted {
				t.Fatalf("run %s: %s %q", id, run.Status, run.Error)
			}
		}
		if calls.Get("retry") != 2 || calls.Get("a") != 1 || calls.Get("b") != 1 {
			t.Fatalf("calls retry %d a %d b %d", calls.Get("retry"), calls.Get("a"), calls.Get("b"))
		}
	}},
}

// sleeper is a job of a step "a" (1), a one-hour sleep "nap" and a step
// "b" (2), returning their sum.
func sleeper(calls *Counter, name string) *durably.Job[int, int] {
	return &durably.Job[int, int]{Name: name, Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
		calls.Inc("body")
		a, err := durably.RunStep(s, "a", func(context.Context) (int, error) { calls.Inc("a"); return 1, nil })
		if err != nil {
			return 0, err
		}
		if err := durably.Sleep(s, "nap", time.Hour); err != nil {
			return 0, err
		}
		b, err := durably.RunStep(s, "b", func(context.Context) (int, error) { calls.Inc("b"); return 2, nil })
		return a + b, err
	}}
}
