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
	"github.com/durably-go/durably/store"
)

// fixableJob runs steps one, two and three; two fails while broken is set,
// and blocks on gate when one is given. Calls are counted per step.
func fixableJob(name string, broken *atomic.Bool, gate *Gate, calls *Counter) *durably.Job[Msg, string] {
	return &durably.Job[Msg, string]{
		Name: name,
		Run: func(ctx context.Context, s *durably.StepContext, in Msg) (string, error) {
			out := in.Message
			for _, step := range []string{"one", "two", "three"} {
				v, err := durably.RunStep(s, step, func(ctx context.Context) (string, error) {
					calls.Inc(step)
					if step == "two" && gate != nil {
						if err := gate.Wait(ctx, s.RunID()); err != nil {
							return "", err
						}
					}
					if step == "two" && broken.Load() {
						return "", errors.New("two is broken")
					}
					return step, nil
				})
				if err != nil {
					return "", err
				}
				out += "/" + v
			}
			return out, nil
		},
	}
}

// failedAtTwo triggers a run of j and processes it until it fails at step
// two, and returns it.
func failedAtTwo(t *testing.T, e *durably.Engine, j *durably.JobHandle[Msg, string], opts ...durably.Option) *durably.Run {
	t.Helper()
	r := MustTrigger(t, j, Msg{"m"}, opts...)
	if _, err := e.ProcessOne(Ctx(t), ""); err != nil {
		t.Fatal(err)
	}
	failed := MustGet(t, e, r.ID)
	if failed.Status != durably.StatusFailed {
		t.Fatalf("run not failed: %+v", failed)
	}
	return failed
}

var resumeCases = []Case{
	{"R-260 R-264 S-072 a failed run resumes from its first unfinished step, keeping its completed steps", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) { c.PreserveSteps = true })
		rec := Record(t, e)
		var broken atomic.Bool
		var calls Counter
		broken.Store(true)
		j := durably.MustRegister(e, fixableJob("fixable", &broken, nil, &calls))
		ctx := Ctx(t)
		failed := failedAtTwo(t, e, j, durably.WithLabels(map[string]string{"org": "o"}), durably.WithIdempotencyKey("i"))
		broken.Store(false)
		resumed, err := e.Resume(ctx, failed.ID)
		if err != nil {
			t.Fatal(err)
		}
		if resumed.ID != failed.ID || resumed.Status != durably.StatusPending || resumed.Error != "" || !resumed.CompletedAt.IsZero() ||
			!resumed.StartedAt.IsZero() || resumed.LeaseOwner != "" || resumed.Attempt != 0 || resumed.Crashes != 0 ||
			resumed.CompletedStepCount != 1 || resumed.LeaseGeneration != failed.LeaseGeneration ||
			resumed.IdempotencyKey != "i" || resumed.Labels["org"] != "o" || len(resumed.Attempts) != len(failed.Attempts) {
			t.Fatalf("resumed run %+v\nfailed run %+v", resumed, failed)
		}
		if steps, err := e.GetSteps(ctx, failed.ID); err != nil || len(steps) != 1 || steps[0].Name != "one" {
			t.Fatalf("steps of the resumed run: %v %v; want the completed one only", steps, err)
		}
		evs := rec.Events(durably.EventRunResume)
		if len(evs) != 1 || evs[0].RunID != failed.ID || evs[0].JobName != "fixable" || evs[0].Labels["org"] != "o" {
			t.Fatalf("run:resume events %+v", evs)
		}
		if _, err := e.ProcessOne(ctx, ""); err != nil {
			t.Fatal(err)
		}
		done := MustGet(t, e, failed.ID)
		if done.Status != durably.StatusCompleted || string(done.Output) != `"m/one/two/three"` || done.StartedAt.Before(failed.StartedAt) {
			t.Fatalf("resumed run ended %+v", done)
		}
		if calls.Get("one") != 1 || calls.Get("two") != 2 || calls.Get("three") != 1 {
			t.Fatalf("calls one=%d two=%d three=%d; want 1, 2, 1", calls.Get("one"), calls.Get("two"), calls.Get("three"))
		}
		// The idempotency key still answers with the same run.
		again, err := j.Trigger(ctx, Msg{"m"}, durably.WithIdempotencyKey("i"), durably.WithLabels(map[string]string{"org": "o"}))
		if err != nil || again.Disposition != durably.Idempotent || again.Run.ID != failed.ID {
			t.Fatalf("idempotent trigger after the resume: %+v %v", again, err)
		}
	}},
	{"R-261 resume refuses missing, active, completed and unregistered runs, changing nothing", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) { c.PreserveSteps = true })
		var calls Counter
		j := durably.MustRegister(e, StepsJob("j", &calls))
		ctx := Ctx(t)
		_, err := e.Resume(ctx, "01NOPE0000000000000000000X")
		WantKind(t, err, durably.ErrNotFound, "Run not found: 01NOPE0000000000000000000X")
		done := MustTrigger(t, j, StepsInput{Count: 1})
		if _, err := e.ProcessOne(ctx, ""); err != nil {
			t.Fatal(err)
		}
		pending := MustTrigger(t, j, StepsInput{Count: 1})
		_, err = e.Resume(ctx, done.ID)
		WantKind(t, err, durably.ErrConflict, "Cannot resume completed run: "+done.ID)
		_, err = e.Resume(ctx, pending.ID)
		WantKind(t, err, durably.ErrConflict, "Cannot resume pending run: "+pending.ID)
		runs, err := e.Store().Claim(ctx, claimReq("w", time.Now(), 1))
		if err != nil || len(runs) != 1 {
			t.Fatal(runs, err)
		}
		_, err = e.Resume(ctx, pending.ID)
		WantKind(t, err, durably.ErrConflict, "Cannot resume leased run: "+pending.ID)
		// A run of a job this engine does not have.
		other := h.Engine(func(c *durably.Config) { c.PreserveSteps = true })
		var broken atomic.Bool
		broken.Store(true)
		oj := durably.MustRegister(other, fixableJob("elsewhere", &broken, nil, &calls))
		failed := failedAtTwo(t, other, oj)
		_, err = e.Resume(ctx, failed.ID)
		WantKind(t, err, durably.ErrNotFound, "Unknown job: elsewhere")
		if got := MustGet(t, e, failed.ID); got.Status != durably.StatusFailed {
			t.Fatalf("a refused resume changed the run: %+v", got)
		}
	}},
	{"R-262 a run whose completed steps were deleted at its end is not resumed; one without completed steps is", func(t *testing.T, h *Harness) {
		e := h.Engine(nil) // PreserveSteps off
		var broken atomic.Bool
		var calls Counter
		broken.Store(true)
		j := durably.MustRegister(e, fixableJob("fixable", &broken, nil, &calls))
		ctx := Ctx(t)
		failed := failedAtTwo(t, e, j)
		_, err := e.Resume(ctx, failed.ID)
		WantKind(t, err, durably.ErrConflict, fmt.Sprintf("Cannot resume run %s: the 1 steps it completed were deleted when it ended (Config.PreserveSteps is off); retrigger it instead", failed.ID))
		if got := MustGet(t, e, failed.ID); got.Status != durably.StatusFailed {
			t.Fatalf("a refused resume changed the run: %+v", got)
		}
		// Failing at the first step, nothing was lost: it resumes.
		var steps Counter
		sj := durably.MustRegister(e, StepsJob("steps", &steps))
		first := MustTrigger(t, sj, StepsInput{Count: 2, FailAt: 1})
		if _, err := e.ProcessOne(ctx, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Resume(ctx, first.ID); err != nil {
			t.Fatal(err)
		}
		if got := MustGet(t, e, first.ID); got.Status != durably.StatusPending {
			t.Fatalf("resumed run %+v", got)
		}
	}},
	{"R-263 a cancelled run resumes; its crashes start again and its attempt history stays", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) { c.PreserveSteps = true })
		ctx := Ctx(t)
		now := time.Now()
		r, _ := leased(t, e, now)
		// Its worker died: another claim takes the expired lease over,
		// counting a crash (S-052); then the run is cancelled.
		if again, err := e.Store().Claim(ctx, claimReq("w2", now.Add(31*time.Second), 1)); err != nil || len(again) != 1 {
			t.Fatal(again, err)
		}
		if err := e.Cancel(ctx, r.ID); err != nil {
			t.Fatal(err)
		}
		cancelled := MustGet(t, e, r.ID)
		if cancelled.Crashes != 1 || len(cancelled.Attempts) != 1 {
			t.Fatalf("cancelled run %+v", cancelled)
		}
		resumed, err := e.Resume(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if resumed.Crashes != 0 || resumed.Attempt != 0 || len(resumed.Attempts) != 1 || resumed.Attempts[0].Outcome != store.AttemptCrashed ||
			resumed.LeaseGeneration != cancelled.LeaseGeneration {
			t.Fatalf("resumed: crashes %d attempt %d generation %d history %+v", resumed.Crashes, resumed.Attempt, resumed.LeaseGeneration, resumed.Attempts)
		}
		if _, err := e.ProcessOne(ctx, ""); err != nil {
			t.Fatal(err)
		}
		if got := MustGet(t, e, r.ID); got.Status != durably.StatusCompleted || got.LeaseGeneration != cancelled.LeaseGeneration+1 {
			t.Fatalf("resumed cancelled run ended %+v", got)
		}
	}},
	{"R-263 a resumed run's failed step has its whole retry budget again", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) { c.PreserveSteps = true })
		var broken atomic.Bool
		var calls Counter
		broken.Store(true)
		job := fixableJob("retried", &broken, nil, &calls)
		job.Retry = &durably.RetryPolicy{MaxAttempts: 3, Backoff: durably.BackoffFixed, Initial: time.Millisecond}
		j := durably.MustRegister(e, job)
		ctx := Ctx(t)
		r := MustTrigger(t, j, Msg{"m"})
		// untilSettled processes the run until it is failed or completed.
		untilSettled := func() *durably.Run {
			var run *durably.Run
			Eventually(t, "the run to end", func() bool {
				if _, err := e.ProcessOne(ctx, ""); err != nil {
					t.Fatal(err)
				}
				run = MustGet(t, e, r.ID)
				return run.Status.Terminal()
			})
			return run
		}
		failed := untilSettled()
		if failed.Status != durably.StatusFailed || calls.Get("two") != 3 || len(failed.Attempts) != 3 {
			t.Fatalf("first life: %+v, two called %d times", failed, calls.Get("two"))
		}
		if _, err := e.Resume(ctx, r.ID); err != nil {
			t.Fatal(err)
		}
		again := untilSettled()
		if again.Status != durably.StatusFailed || calls.Get("two") != 6 || calls.Get("one") != 1 || len(again.Attempts) != 6 {
			t.Fatalf("second life: %+v; one called %d, two %d times (want 1, 6: three attempts more)", again, calls.Get("one"), calls.Get("two"))
		}
	}},
	{"R-265 a resumed run takes its concurrency key back, or is refused while a pending run holds it", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) { c.PreserveSteps = true; c.TenantLabels = []string{"org"} })
		var broken atomic.Bool
		var calls Counter
		broken.Store(true)
		j := durably.MustRegister(e, fixableJob("keyed", &broken, nil, &calls))
		ctx := Ctx(t)
		a := durably.WithLabels(map[string]string{"org": "a"})
		b := durably.WithLabels(map[string]string{"org": "b"})
		failed := failedAtTwo(t, e, j, a, durably.WithConcurrencyKey("k"))
		sibling := MustTrigger(t, j, Msg{"sibling"}, a, durably.WithConcurrencyKey("k"))
		MustTrigger(t, j, Msg{"other tenant"}, b, durably.WithConcurrencyKey("k"))
		_, err := e.Resume(ctx, failed.ID)
		WantKind(t, err, durably.ErrConflict, fmt.Sprintf("Cannot resume run %s: a pending run already exists for concurrency key \"k\" in job \"keyed\"", failed.ID))
		if got := MustGet(t, e, failed.ID); got.Status != durably.StatusFailed {
			t.Fatalf("a refused resume changed the run: %+v", got)
		}
		if err := e.Cancel(ctx, sibling.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Resume(ctx, failed.ID); err != nil {
			t.Fatal(err)
		}
		_, err = j.Trigger(ctx, Msg{"late"}, a, durably.WithConcurrencyKey("k"))
		WantPrefix(t, err, durably.ErrConflict, "A pending run already exists")
	}},
	{"S-072 of two concurrent resumes of a run, one resumes it and the other finds it pending", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) { c.PreserveSteps = true })
		rs, ok := e.Store().(store.Resumer)
		if !ok {
			t.Skipf("store %T does not implement store.Resumer", e.Store())
		}
		var broken atomic.Bool
		var calls Counter
		broken.Store(true)
		j := durably.MustRegister(e, fixableJob("fixable", &broken, nil, &calls))
		ctx := Ctx(t)
		for range 5 {
			failed := failedAtTwo(t, e, j)
			var wg sync.WaitGroup
			prev := make([]store.Status, 2)
			for i := range prev {
				st := h.OpenStore().(store.Resumer)
				if i == 0 {
					st = rs
				}
				wg.Go(func() {
					run, p, err := st.ResumeRun(ctx, failed.ID, time.Now())
					if err != nil || run == nil {
						t.Errorf("resume %d: %+v %v", i, run, err)
					}
					prev[i] = p
				})
			}
			wg.Wait()
			if !(prev[0] == store.StatusFailed && prev[1] == store.StatusPending || prev[0] == store.StatusPending && prev[1] == store.StatusFailed) {
				t.Fatalf("previous statuses of two resumes: %v", prev)
			}
			if _, err := e.ProcessOne(ctx, ""); err != nil { // fails again
				t.Fatal(err)
			}
		}
	}},
	{"D4 R-253 R-264 a transactional trigger's commit and a resume wake idle workers of other processes", func(t *testing.T, h *Harness) {
		if h.Store.Wakeups() == nil {
			t.Skipf("store %T does not wake other processes", h.Store)
		}
		producer := h.Engine(func(c *durably.Config) { c.PreserveSteps = true })
		var broken atomic.Bool
		var calls Counter
		broken.Store(true)
		job := fixableJob("fixable", &broken, nil, &calls)
		pj := durably.MustRegister(producer, job)
		claims := &countingClaims{Store: h.OpenStore()}
		consumer := h.EngineOn(claims, func(c *durably.Config) { c.PollingInterval = time.Hour; c.PreserveSteps = true })
		durably.MustRegister(consumer, job)
		if err := consumer.Start(); err != nil {
			t.Fatal(err)
		}
		Eventually(t, "the worker's first claim", func() bool { return claims.calls.Load() >= 1 })
		ctx := Ctx(t)
		tx := h.begin(ctx)
		res, err := pj.TriggerTx(ctx, tx.Tx(), Msg{"m"})
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		ended := func(status durably.Status) {
			t.Helper()
			Eventually(t, "the other process to run the run", func() bool { return MustGet(t, producer, res.Run.ID).Status == status })
		}
		ended(durably.StatusFailed)
		broken.Store(false)
		// The claim the consumer makes as the failed run's slot frees must
		// be over: the resumed run is then found only by a wake-up.
		time.Sleep(quiet)
		if _, err := producer.Resume(ctx, res.Run.ID); err != nil {
			t.Fatal(err)
		}
		ended(durably.StatusCompleted)
	}},
}
