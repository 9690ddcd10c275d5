package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// rewind puts a run back to pending as idle maintenance would after its
// worker died, keeping its steps.
func rewind(t *testing.T, st store.Store, id string) {
	t.Helper()
	empty := ""
	if err := PatchRun(Ctx(t), st, id, store.RunPatch{Status: ptr(store.StatusPending), LeaseOwner: &empty, LeaseExpiresAt: &time.Time{}}); err != nil {
		t.Fatal(err)
	}
}

var stepCases = []Case{
	{"R-080 R-081 R-085 replay by name skips completed steps and reruns failed ones", func(t *testing.T, h *Harness) {
		var calls Counter
		failSecond := true
		e := h.Engine(func(c *durably.Config) { c.PreserveSteps = true })
		rec := Record(t, e)
		j := durably.MustRegister(e, &durably.Job[int, int]{Name: "j", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			a, err := durably.RunStep(s, "step1", func(ctx context.Context) (int, error) { calls.Inc("step1"); return 10, nil })
			if err != nil {
				return 0, err
			}
			b, err := durably.RunStep(s, "step2", func(ctx context.Context) (int, error) {
				calls.Inc("step2")
				if failSecond {
					return 0, errors.New("transient")
				}
				return 20, nil
			})
			return a + b, err
		}})
		r := MustTrigger(t, j, 0)
		if ok, err := e.ProcessOne(Ctx(t), ""); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if run := MustGet(t, e, r.ID); run.Status != durably.StatusFailed || run.Error != "transient" {
			t.Fatalf("run %+v", run)
		}
		// Put it back to pending (as a lease release would) and run again.
		rewind(t, e.Store(), r.ID)
		failSecond = false
		startsBefore := len(rec.Events(durably.EventStepStart))
		if ok, err := e.ProcessOne(Ctx(t), ""); !ok || err != nil {
			t.Fatal(ok, err)
		}
		run := MustGet(t, e, r.ID)
		if run.Status != durably.StatusCompleted || string(run.Output) != "30" {
			t.Fatalf("run %+v output %s", run, run.Output)
		}
		if calls.Get("step1") != 1 || calls.Get("step2") != 2 {
			t.Fatalf("calls step1=%d step2=%d, want 1 and 2", calls.Get("step1"), calls.Get("step2"))
		}
		// The replayed step emitted nothing; only step2 started again.
		if got := len(rec.Events(durably.EventStepStart)) - startsBefore; got != 1 {
			t.Fatalf("%d step:start events on replay, want 1", got)
		}
		steps, _ := e.GetSteps(Ctx(t), r.ID)
		var statuses []string
		for _, s := range steps {
			statuses = append(statuses, s.Name+":"+string(s.Status))
		}
		if fmt.Sprint(statuses) != "[step1:completed step2:failed step2:completed]" {
			t.Fatalf("steps %v", statuses)
		}
	}},
	{"R-081 the same step name twice in one run runs once", func(t *testing.T, h *Harness) {
		var calls Counter
		e := h.Engine(nil)
		j := durably.MustRegister(e, &durably.Job[int, []int]{Name: "j", Run: func(ctx context.Context, s *durably.StepContext, in int) ([]int, error) {
			var out []int
			for i := range 2 {
				v, err := durably.RunStep(s, "same", func(ctx context.Context) (int, error) { calls.Inc("same"); return 100 + i, nil })
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			}
			return out, nil
		}})
		out, err := runNow(t, e, j, 0)
		if err != nil || fmt.Sprint(out) != "[100 100]" || calls.Get("same") != 1 {
			t.Fatalf("out %v err %v calls %d", out, err, calls.Get("same"))
		}
	}},
	{"R-082 R-073 R-075 a failing step fails the run at once", func(t *testing.T, h *Harness) {
		var calls Counter
		e := h.Engine(func(c *durably.Config) { c.PreserveSteps = true })
		rec := Record(t, e)
		j := durably.MustRegister(e, StepsJob("steps", &calls))
		r := MustTrigger(t, j, StepsInput{Count: 4, FailAt: 2})
		if ok, err := e.ProcessOne(Ctx(t), ""); !ok || err != nil {
			t.Fatal(ok, err)
		}
		run := MustGet(t, e, r.ID)
		if run.Status != durably.StatusFailed || run.Error != "boom at step 2" || calls.Get(r.ID+"/step-3") != 0 {
			t.Fatalf("run %+v", run)
		}
		fails := rec.Events(durably.EventRunFail)
		if len(fails) != 1 || fails[0].FailedStepName != "step-2" || fails[0].Error != "boom at step 2" {
			t.Fatalf("run:fail %+v", fails)
		}
		sf := rec.Events(durably.EventStepFail)
		if len(sf) != 1 || sf[0].StepName != "step-2" || sf[0].StepIndex != 1 || sf[0].Error != "boom at step 2" {
			t.Fatalf("step:fail %+v", sf)
		}
		if run.CurrentStepIndex != 1 || run.CompletedStepCount != 1 {
			t.Fatalf("counters advanced by a failed step: %+v", run)
		}
		// An error outside any step: failedStepName "unknown".
		j2 := durably.MustRegister(e, &durably.Job[int, int]{Name: "bare", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			return 0, errors.New("outside")
		}})
		r2 := MustTrigger(t, j2, 0)
		if ok, err := e.ProcessOne(Ctx(t), ""); !ok || err != nil {
			t.Fatal(ok, err)
		}
		fails = rec.Events(durably.EventRunFail)
		if len(fails) != 2 || fails[1].RunID != r2.ID || fails[1].FailedStepName != "unknown" {
			t.Fatalf("run:fail %+v", fails)
		}
	}},
	{"R-084 R-087 R-089 D6 steps: counters, timestamps, contiguous indexes", func(t *testing.T, h *Harness) {
		var calls Counter
		crash := true
		e := h.Engine(func(c *durably.Config) { c.PreserveSteps = true })
		rec := Record(t, e)
		j := durably.MustRegister(e, &durably.Job[int, int]{Name: "j", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			for _, name := range []string{"a", "b", "c"} {
				if _, err := durably.RunStep(s, name, func(ctx context.Context) (string, error) {
					calls.Inc(name)
					if name == "a" {
						time.Sleep(20 * time.Millisecond)
					}
					if name == "b" && crash {
						return "", errors.New("crash")
					}
					return name, nil
				}); err != nil {
					return 0, err
				}
			}
			return 0, nil
		}})
		r := MustTrigger(t, j, 0)
		if ok, err := e.ProcessOne(Ctx(t), ""); !ok || err != nil {
			t.Fatal(ok, err)
		}
		run := MustGet(t, e, r.ID)
		if run.CurrentStepIndex != 1 || run.CompletedStepCount != 1 {
			t.Fatalf("after a: %+v", run)
		}
		rewind(t, e.Store(), r.ID)
		crash = false
		if ok, err := e.ProcessOne(Ctx(t), ""); !ok || err != nil {
			t.Fatal(ok, err)
		}
		run = MustGet(t, e, r.ID)
		if run.CurrentStepIndex != 3 || run.CompletedStepCount != 3 || run.Status != durably.StatusCompleted {
			t.Fatalf("after resume: %+v", run)
		}
		steps, _ := e.GetSteps(Ctx(t), r.ID)
		var completed []string
		for _, s := range steps {
			if s.Status == store.StepCompleted {
				completed = append(completed, fmt.Sprintf("%s@%d", s.Name, s.Index))
			}
			if s.StartedAt.IsZero() || s.CompletedAt.Before(s.StartedAt) {
				t.Fatalf("step timestamps %+v", s)
			}
			if s.Name == "a" && s.CompletedAt.Sub(s.StartedAt) < 20*time.Millisecond {
				t.Fatalf("step a: startedAt must be taken before fn runs: %+v", s)
			}
		}
		// D6: b and c get indexes 1 and 2 after the resume, not 2 and 3.
		if fmt.Sprint(completed) != "[a@0 b@1 c@2]" {
			t.Fatalf("completed steps %v", completed)
		}
		var completes []string
		for _, ev := range rec.Events(durably.EventStepComplete) {
			completes = append(completes, fmt.Sprintf("%s@%d", ev.StepName, ev.StepIndex))
		}
		if fmt.Sprint(completes) != "[a@0 b@1 c@2]" {
			t.Fatalf("step:complete events %v", completes)
		}
	}},
	{"R-088 a step without a result replays as its zero value", func(t *testing.T, h *Harness) {
		var calls Counter
		e := h.Engine(func(c *durably.Config) { c.PreserveSteps = true })
		crash := true
		j := durably.MustRegister(e, &durably.Job[int, int]{Name: "j", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			p, err := durably.RunStep(s, "nil", func(ctx context.Context) (*int, error) { calls.Inc("nil"); return nil, nil })
			if err != nil || p != nil {
				return 0, fmt.Errorf("replayed %v %v", p, err)
			}
			if crash {
				return 0, errors.New("crash")
			}
			return 1, nil
		}})
		r := MustTrigger(t, j, 0)
		if ok, err := e.ProcessOne(Ctx(t), ""); !ok || err != nil {
			t.Fatal(ok, err)
		}
		steps, _ := e.GetSteps(Ctx(t), r.ID)
		if len(steps) != 1 || steps[0].Output != nil && string(steps[0].Output) != "null" {
			t.Fatalf("steps %+v", steps)
		}
		rewind(t, e.Store(), r.ID)
		crash = false
		if ok, err := e.ProcessOne(Ctx(t), ""); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if run := MustGet(t, e, r.ID); run.Status != durably.StatusCompleted || calls.Get("nil") != 1 {
			t.Fatalf("run %+v calls %d", run, calls.Get("nil"))
		}
	}},
	{"R-090 D10 progress and persisted slog logs", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) { c.PreserveSteps = true })
		rec := Record(t, e)
		j := durably.MustRegister(e, &durably.Job[int, int]{Name: "j", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			s.Logger().Info("before steps")
			_, err := durably.RunStep(s, "work", func(ctx context.Context) (int, error) {
				s.Progress(1, 2, "half")
				s.Logger().WarnContext(ctx, "inside", "n", 7, slog.Group("g", "k", "v"))
				s.Logger().Debug("not persisted")
				return 1, nil
			})
			s.ReportProgress(durably.Progress{Current: 2, Total: ptr(0)})
			s.Logger().Error("after", "err", errors.New("bad"))
			// slog's handler rules: With inside groups, nested groups, a
			// record's attributes under the open groups.
			s.Logger().With("a", 1).WithGroup("req").With("id", "r1").WithGroup("db").With("rows", 3).
				Info("grouped", "ms", 5, slog.Group("", "inl", true))
			return 2, err
		}})
		r := MustTrigger(t, j, 0)
		if ok, err := e.ProcessOne(Ctx(t), ""); !ok || err != nil {
			t.Fatal(ok, err)
		}
		run := MustGet(t, e, r.ID)
		if run.Progress == nil || run.Progress.Current != 2 || run.Progress.Total == nil || *run.Progress.Total != 0 || run.Progress.Message != nil {
			t.Fatalf("progress %+v", run.Progress)
		}
		pe := rec.Events(durably.EventRunProgress)
		if len(pe) != 2 || pe[0].Progress.Current != 1 || *pe[0].Progress.Message != "half" {
			t.Fatalf("progress events %+v", pe)
		}
		logs, err := e.GetLogs(Ctx(t), r.ID)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range logs {
			got = append(got, fmt.Sprintf("%s|%s|%s|%s", l.Level, l.StepName, l.Message, string(l.Data)))
		}
		want := []string{
			"info||before steps|",
			`warn|work|inside|{"g":{"k":"v"},"n":7}`,
			`error||after|{"err":"bad"}`,
			`info||grouped|{"a":1,"req":{"db":{"inl":true,"ms":5,"rows":3},"id":"r1"}}`,
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("logs\n got %q\nwant %q", got, want)
		}
		if n := len(rec.Events(durably.EventLogWrite)); n != 4 {
			t.Fatalf("%d log:write events", n)
		}
	}},
	{"R-106 R-074 steps and logs are deleted on completion unless preserved", func(t *testing.T, h *Harness) {
		for _, preserve := range []bool{false, true} {
			e := h.Engine(func(c *durably.Config) { c.PreserveSteps = preserve })
			var calls Counter
			name := fmt.Sprintf("j%v", preserve)
			j := durably.MustRegister(e, StepsJob(name, &calls))
			logger := durably.MustRegister(e, &durably.Job[int, int]{Name: name + "-log", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
				s.Logger().Info("hello")
				_, err := durably.RunStep(s, "x", func(ctx context.Context) (int, error) { return 0, errors.New("fail") })
				return 0, err
			}})
			ok := MustTrigger(t, j, StepsInput{Count: 2})
			bad := MustTrigger(t, logger, 0)
			for range 2 {
				if _, err := e.ProcessOne(Ctx(t), ""); err != nil {
					t.Fatal(err)
				}
			}
			for _, id := range []string{ok.ID, bad.ID} {
				steps, _ := e.GetSteps(Ctx(t), id)
				logs, _ := e.GetLogs(Ctx(t), id)
				if preserve != (len(steps) > 0) {
					t.Fatalf("preserve=%v: %d steps left for %s", preserve, len(steps), id)
				}
				if id == bad.ID && preserve != (len(logs) > 0) {
					t.Fatalf("preserve=%v: %d logs left", preserve, len(logs))
				}
			}
		}
	}},
}

// runNow triggers and processes a run in this goroutine, returning its output.
func runNow[I, O any](t *testing.T, e *durably.Engine, j *durably.JobHandle[I, O], in I) (O, error) {
	t.Helper()
	var zero O
	r := MustTrigger(t, j, in)
	if ok, err := e.ProcessOne(Ctx(t), ""); err != nil || !ok {
		return zero, fmt.Errorf("ProcessOne: %v %v", ok, err)
	}
	run, err := j.WaitForRun(Ctx(t), r.ID)
	if err != nil {
		return zero, err
	}
	return run.Output, nil
}

var _ = json.Valid
