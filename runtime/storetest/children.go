package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// The cases of child runs (issue 22): R-230 … R-236, S-060, S-061, S-064.

// doubleJob is the children's job of these cases: its output is twice its
// input, and an input of -1 fails.
func doubleJob(calls *Counter) *durably.Job[int, int] {
	return &durably.Job[int, int]{
		Name: "double",
		Run: func(ctx context.Context, s *durably.StepContext, n int) (int, error) {
			return durably.RunStep(s, "double", func(context.Context) (int, error) {
				calls.Inc(s.RunID())
				if n < 0 {
					return 0, fmt.Errorf("refused %d", n)
				}
				return 2 * n, nil
			})
		},
	}
}

// fanOutJob starts a child of double per input, waits for them all, and
// returns the sum of their outputs; a child that did not complete fails it
// with the child's error. bodies counts its executions.
func fanOutJob(double *durably.JobHandle[int, int], bodies *Counter, opts ...durably.Option) *durably.Job[[]int, int] {
	return &durably.Job[[]int, int]{
		Name: "fan-out",
		Run: func(ctx context.Context, s *durably.StepContext, in []int) (int, error) {
			bodies.Inc(s.RunID())
			items := make([]durably.BatchItem[int], len(in))
			for i, n := range in {
				items[i].Input = n
			}
			kids, err := double.StartChildren(s, "spawn", items)
			if err != nil {
				return 0, err
			}
			outs, err := durably.AwaitChildren(s, "gather", kids, opts...)
			if err != nil {
				return 0, err
			}
			sum := 0
			for _, o := range outs {
				if o.Err != nil {
					return 0, durably.Permanent(o.Err)
				}
				sum += o.Output
			}
			return sum, nil
		},
	}
}

// childrenOf reads a run's children through the store.
func childrenOf(t *testing.T, e *durably.Engine, id string) []*store.Run {
	t.Helper()
	kids, err := e.Store().GetChildren(Ctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	return kids
}

// waitStatus waits until run id has the status.
func waitStatus(t *testing.T, e *durably.Engine, id string, want store.Status) *store.Run {
	t.Helper()
	var run *store.Run
	Eventually(t, fmt.Sprintf("run %s to be %s", id, want), func() bool {
		run = MustGet(t, e, id)
		return run.Status == want
	})
	return run
}

var childCases = []Case{
	{"R-230 R-232 a fan-out's children carry their parent; the parent waits without a slot and gathers their outputs", func(t *testing.T, h *Harness) {
		// One slot: the children run only if the waiting parent frees it.
		e := h.Engine(func(c *durably.Config) { c.MaxConcurrentRuns = 1 })
		var calls, bodies Counter
		double := durably.MustRegister(e, doubleJob(&calls))
		parent := durably.MustRegister(e, fanOutJob(double, &bodies))
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		out, err := parent.TriggerAndWait(Ctx(t), []int{1, 2, 3, 4, 5})
		if err != nil || out.Output != 30 {
			t.Fatalf("fan-out: %+v %v", out, err)
		}
		kids := childrenOf(t, e, out.RunID)
		if len(kids) != 5 {
			t.Fatalf("%d children, want 5", len(kids))
		}
		for i, k := range kids {
			if k.ParentRunID != out.RunID || k.JobName != "double" || k.Status != durably.StatusCompleted || string(k.Input) != fmt.Sprint(i+1) {
				t.Fatalf("child %d: %+v", i, k)
			}
		}
		if got := stepRows(t, e, out.RunID); len(got) != 0 {
			t.Fatalf("a completed run keeps no steps without PreserveSteps: %v", got)
		}
		if none := childrenOf(t, e, kids[0].ID); len(none) != 0 {
			t.Fatalf("a child without children lists %d", len(none))
		}
	}},
	{"R-232 S-060 S-061 the parent is woken by the end of its last awaited child, not by each", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) { c.MaxConcurrentRuns = 4; c.PreserveSteps = true })
		gate := NewGate()
		var bodies Counter
		gated := durably.MustRegister(e, &durably.Job[int, int]{Name: "gated",
			Run: func(ctx context.Context, s *durably.StepContext, n int) (int, error) {
				return durably.RunStep(s, "wait", func(ctx context.Context) (int, error) { return n, gate.Wait(ctx, s.RunID()) })
			}})
		parent := durably.MustRegister(e, &durably.Job[int, int]{Name: "parent",
			Run: func(ctx context.Context, s *durably.StepContext, n int) (int, error) {
				bodies.Inc("parent")
				items := make([]durably.BatchItem[int], n)
				for i := range items {
					items[i].Input = i
				}
				kids, err := gated.StartChildren(s, "spawn", items)
				if err != nil {
					return 0, err
				}
				outs, err := durably.AwaitChildren(s, "gather", kids)
				return len(outs), err
			}})
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		run := MustTrigger(t, parent, 3)
		for range 3 {
			gate.Entered(t)
		}
		// Every child holds a slot, blocked: the parent waits, unleased.
		p := waitStatus(t, e, run.ID, durably.StatusPending)
		if p.WaitingFor != store.WaitingChildren || p.LeaseOwner != "" || !p.RunAt.After(time.Now().Add(24*time.Hour)) {
			t.Fatalf("waiting parent: %+v", p)
		}
		gate.Open()
		done, err := e.WaitForRun(Ctx(t), run.ID)
		if err != nil || string(done.Output) != "3" {
			t.Fatalf("parent: %+v %v", done, err)
		}
		if n := bodies.Get("parent"); n != 2 {
			t.Fatalf("the parent executed %d times, want 2 (its start, and once its children ended)", n)
		}
		if got := stepRows(t, e, run.ID); !slices.Equal(got, []string{"spawn:completed:1", "gather:completed:1"}) {
			t.Fatalf("parent's steps %v", got)
		}
	}},
	{"R-232 R-233 a failed child reaches its parent as a ChildError; the outcome is recorded and replayed", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) { c.PreserveSteps = true })
		var calls, bodies Counter
		double := durably.MustRegister(e, doubleJob(&calls))
		got := Box[[]durably.ChildOutcome[int]]{}
		parent := durably.MustRegister(e, &durably.Job[int, int]{Name: "parent",
			Run: func(ctx context.Context, s *durably.StepContext, _ int) (int, error) {
				bodies.Inc("p")
				kids, err := double.StartChildren(s, "spawn", []durably.BatchItem[int]{{Input: 1}, {Input: -1}, {Input: 3}})
				if err != nil {
					return 0, err
				}
				outs, err := durably.AwaitChildren(s, "gather", kids)
				if err != nil {
					return 0, err
				}
				got.Set(outs)
				_, err = durably.AwaitChild(s, "second", kids[1])
				return 0, err
			}})
		run := MustTrigger(t, parent, 0)
		processAll(t, e)
		kids := childrenOf(t, e, run.ID)
		p := MustGet(t, e, run.ID)
		if len(kids) != 3 || p.Status != durably.StatusFailed {
			t.Fatalf("parent %+v, children %v", p, kids)
		}
		outs := got.Get()
		if len(outs) != 3 || outs[0].Output != 2 || outs[0].Err != nil || outs[2].Output != 6 || outs[2].Status != durably.StatusCompleted {
			t.Fatalf("outcomes %+v", outs)
		}
		var ce *durably.ChildError
		if !errors.As(outs[1].Err, &ce) || ce.Status != durably.StatusFailed || ce.Message != "refused -1" || ce.RunID != kids[1].ID ||
			ce.JobName != "double" || !errors.Is(outs[1].Err, durably.ErrChildFailed) || errors.Is(outs[1].Err, durably.ErrCancelled) {
			t.Fatalf("failed child's error %#v", outs[1].Err)
		}
		if want := fmt.Sprintf("child run %s of job %q failed: refused -1", kids[1].ID, "double"); p.Error != want {
			t.Fatalf("parent's error %q, want %q", p.Error, want)
		}
		// Each child ran once, and the parent twice: once to start them,
		// once when they had ended; the second wait found its child ended.
		for _, k := range kids {
			if n := calls.Get(k.ID); n != 1 {
				t.Fatalf("child %s ran %d times", k.ID, n)
			}
		}
		if n := bodies.Get("p"); n != 2 {
			t.Fatalf("parent executed %d times", n)
		}
		if rows := stepRows(t, e, run.ID); !slices.Equal(rows, []string{"spawn:completed:1", "gather:completed:1", "second:completed:1"}) {
			t.Fatalf("steps %v", rows)
		}
	}},
	{"R-233 S-061 a cancelled child wakes its waiting parent, which sees a ChildError of status cancelled", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		var calls Counter
		double := durably.MustRegister(e, doubleJob(&calls))
		parent := durably.MustRegister(e, &durably.Job[int, string]{Name: "parent",
			Run: func(ctx context.Context, s *durably.StepContext, _ int) (string, error) {
				kid, err := double.StartChild(s, "spawn", 1)
				if err != nil {
					return "", err
				}
				_, err = durably.AwaitChild(s, "await", kid)
				var ce *durably.ChildError
				if errors.As(err, &ce) {
					return string(ce.Status) + ": " + ce.Error(), nil // handled
				}
				return "", err
			}})
		ctx := Ctx(t)
		run := MustTrigger(t, parent, 0)
		if ok, err := e.ProcessOne(ctx, ""); !ok || err != nil { // the parent, which waits
			t.Fatal(ok, err)
		}
		kids := childrenOf(t, e, run.ID)
		if len(kids) != 1 || kids[0].Status != durably.StatusPending {
			t.Fatalf("children %+v", kids)
		}
		if err := e.Cancel(ctx, kids[0].ID); err != nil {
			t.Fatal(err)
		}
		if p := MustGet(t, e, run.ID); p.Status != durably.StatusPending || p.RunAt.After(time.Now().Add(time.Minute)) {
			t.Fatalf("the cancel did not wake the parent: %+v", p)
		}
		processAll(t, e)
		p := MustGet(t, e, run.ID)
		want := fmt.Sprintf(`"cancelled: child run %s of job \"double\" was cancelled"`, kids[0].ID)
		if p.Status != durably.StatusCompleted || string(p.Output) != want || calls.Get(kids[0].ID) != 0 {
			t.Fatalf("parent %+v (output %s, want %s)", p, p.Output, want)
		}
	}},
	{"R-231 a parent executed again after its step went unrecorded gets the same child, not a second one", func(t *testing.T, h *Harness) {
		st := &failStepOnce{Store: h.Store, name: "spawn"}
		e := h.EngineOn(st, nil)
		var calls Counter
		double := durably.MustRegister(e, doubleJob(&calls))
		var bodies Counter
		parent := durably.MustRegister(e, &durably.Job[int, int]{Name: "parent",
			Run: func(ctx context.Context, s *durably.StepContext, n int) (int, error) {
				bodies.Inc("p")
				kid, err := double.StartChild(s, "spawn", n)
				if err != nil {
					return 0, err
				}
				return durably.AwaitChild(s, "await", kid)
			}})
		run := MustTrigger(t, parent, 21)
		processAll(t, e)
		p := MustGet(t, e, run.ID)
		kids := childrenOf(t, e, run.ID)
		if p.Status != durably.StatusCompleted || string(p.Output) != "42" || len(kids) != 1 || calls.Get(kids[0].ID) != 1 {
			t.Fatalf("parent %+v, children %+v", p, kids)
		}
		if st.failed.Load() != 1 || bodies.Get("p") < 3 {
			t.Fatalf("the step's record was refused %d times and the parent executed %d times: the case did not happen", st.failed.Load(), bodies.Get("p"))
		}
	}},
	{"R-234 a child created after its parent's cancel is cancelled when claimed, not executed", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		rec := Record(t, e)
		var calls Counter
		durably.MustRegister(e, doubleJob(&calls))
		ctx := Ctx(t)
		parent := enqueueRuns(t, e.Store(), &store.Run{ID: runID("ORPHANP", 1), JobName: "gone", CreatedAt: time.Now()})[0]
		if err := e.Cancel(ctx, parent.ID); err != nil {
			t.Fatal(err)
		}
		// The parent's trigger of its child committed after the cancel,
		// which found no child to cancel.
		kid := enqueueRuns(t, e.Store(), &store.Run{ID: runID("ORPHANK", 1), JobName: "double", Input: []byte("1"), ParentRunID: parent.ID, CreatedAt: time.Now()})[0]
		sibling := enqueueRuns(t, e.Store(), &store.Run{ID: runID("ORPHANK", 2), JobName: "double", Input: []byte("2"), CreatedAt: time.Now()})[0]
		processAll(t, e)
		if got := MustGet(t, e, kid.ID); got.Status != durably.StatusCancelled || calls.Get(kid.ID) != 0 {
			t.Fatalf("the late child %+v ran %d times", got, calls.Get(kid.ID))
		}
		if got := MustGet(t, e, sibling.ID); got.Status != durably.StatusCompleted {
			t.Fatalf("a run without a parent: %+v", got)
		}
		if evs := rec.Events(durably.EventRunCancel); len(evs) != 2 || evs[1].RunID != kid.ID {
			t.Fatalf("run:cancel events %+v", evs)
		}
	}},
	{"R-235 a child inherits its parent's labels and keeps its tenant labels", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) { c.TenantLabels = []string{"org"} })
		var calls Counter
		double := durably.MustRegister(e, doubleJob(&calls))
		errs := Box[error]{}
		parent := durably.MustRegister(e, &durably.Job[int, int]{Name: "parent",
			Run: func(ctx context.Context, s *durably.StepContext, n int) (int, error) {
				if _, err := double.StartChild(s, "other-tenant", n, durably.WithLabels(map[string]string{"org": "b"})); err != nil {
					errs.Set(err)
				}
				kid, err := double.StartChild(s, "spawn", n, durably.WithLabels(map[string]string{"env": "staging", "extra": "x"}),
					durably.WithConcurrencyKey("k"))
				if err != nil {
					return 0, err
				}
				return durably.AwaitChild(s, "await", kid)
			}})
		run := MustTrigger(t, parent, 1, durably.WithLabels(map[string]string{"org": "a", "env": "production"}))
		processAll(t, e)
		WantPrefix(t, errs.Get(), durably.ErrValidation, `labels: "org" is a tenant label: a child keeps its parent's ("a"), got "b"`)
		kids := childrenOf(t, e, run.ID)
		if len(kids) != 1 {
			t.Fatalf("children %+v", kids)
		}
		k := kids[0]
		if want := map[string]string{"org": "a", "env": "staging", "extra": "x"}; fmt.Sprint(k.Labels) != fmt.Sprint(want) {
			t.Fatalf("child's labels %v, want %v", k.Labels, want)
		}
		parentRun := MustGet(t, e, run.ID)
		if k.KeyScope != parentRun.KeyScope || k.KeyScope == "" || k.ConcurrencyKey != "k" {
			t.Fatalf("child's scope %q, parent's %q", k.KeyScope, parentRun.KeyScope)
		}
	}},
	{"R-231 a child's idempotency key and coalescing are the engine's", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		var calls Counter
		double := durably.MustRegister(e, doubleJob(&calls))
		errs := Box[[]error]{}
		parent := durably.MustRegister(e, &durably.Job[int, int]{Name: "parent",
			Run: func(ctx context.Context, s *durably.StepContext, n int) (int, error) {
				_, e1 := double.StartChild(s, "a", n, durably.WithIdempotencyKey("mine"))
				_, e2 := double.StartChild(s, "b", n, durably.WithConcurrencyKey("k"), durably.WithCoalesceSkip())
				errs.Set([]error{e1, e2})
				return 0, nil
			}})
		MustTrigger(t, parent, 1)
		processAll(t, e)
		got := errs.Get()
		WantPrefix(t, got[0], durably.ErrValidation, "durably: a child's idempotency key is the engine's")
		WantPrefix(t, got[1], durably.ErrValidation, "durably: a child cannot be coalesced")
		if !durably.IsPermanent(got[0]) || CountRuns(t, e.Store()) != 1 {
			t.Fatalf("refused children: permanent %v, runs %d", durably.IsPermanent(got[0]), CountRuns(t, e.Store()))
		}
	}},
	{"R-232 a wait's timeout is kept as a step and holds across executions", func(t *testing.T, h *Harness) {
		e, clock := fakeEngine(h, h.Store, func(c *durably.Config) { c.PreserveSteps = true })
		var calls Counter
		double := durably.MustRegister(e, doubleJob(&calls))
		parent := durably.MustRegister(e, &durably.Job[int, string]{Name: "parent",
			Run: func(ctx context.Context, s *durably.StepContext, n int) (string, error) {
				kid, err := double.StartChild(s, "spawn", n, durably.WithDelay(24*time.Hour))
				if err != nil {
					return "", err
				}
				_, err = durably.AwaitChild(s, "await", kid, durably.WithTimeout(time.Hour))
				if errors.Is(err, durably.ErrTimeout) && durably.IsPermanent(err) {
					return err.Error(), nil
				}
				return "", err
			}})
		run := MustTrigger(t, parent, 1)
		processAll(t, e)
		p := MustGet(t, e, run.ID)
		deadline := delayEpoch.Add(time.Hour)
		if p.Status != durably.StatusPending || !p.RunAt.Equal(deadline) {
			t.Fatalf("waiting parent %+v, want runAt %s", p, deadline)
		}
		// Half-way, the parent is handed back and claimed again (as a
		// restart would): its deadline stays.
		clock.Set(delayEpoch.Add(30 * time.Minute))
		if n := processAll(t, e); n != 0 {
			t.Fatalf("%d runs claimed before the deadline", n)
		}
		clock.Set(deadline)
		processAll(t, e)
		p = MustGet(t, e, run.ID)
		want := fmt.Sprintf(`"Wait \"await\" timed out at %s"`, deadline.Format(time.RFC3339Nano))
		if p.Status != durably.StatusCompleted || string(p.Output) != want {
			t.Fatalf("parent %+v output %s, want %s", p, p.Output, want)
		}
		if rows := stepRows(t, e, run.ID); !slices.Equal(rows, []string{"spawn:completed:1", "await/deadline:completed:1", "await:completed:1"}) {
			t.Fatalf("steps %v", rows)
		}
		kid := childrenOf(t, e, run.ID)[0]
		if kid.Status != durably.StatusPending {
			t.Fatalf("a timed-out wait leaves its child alone: %+v", kid)
		}
	}},
	{"R-232 a parent suspended in one process resumes in another", func(t *testing.T, h *Harness) {
		var calls, bodies Counter
		engines := make([]*durably.Engine, 2)
		parents := make([]*durably.JobHandle[[]int, int], 2)
		for i := range engines {
			engines[i] = h.EngineOn(h.OpenStore(), nil)
			double := durably.MustRegister(engines[i], doubleJob(&calls))
			parents[i] = durably.MustRegister(engines[i], fanOutJob(double, &bodies))
		}
		ctx := Ctx(t)
		run := MustTrigger(t, parents[0], []int{5, 6})
		if ok, err := engines[0].ProcessOne(ctx, ""); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if err := engines[0].Stop(ctx); err != nil {
			t.Fatal(err)
		}
		processAll(t, engines[1])
		p := MustGet(t, engines[1], run.ID)
		if p.Status != durably.StatusCompleted || string(p.Output) != "22" || bodies.Get(run.ID) != 2 {
			t.Fatalf("parent %+v after %d executions", p, bodies.Get(run.ID))
		}
	}},
}

// The store's side of a wait for children (S-060, S-061), written
// straight to the store: the parent is claimable at once when its last
// awaited child ends, whether that end comes before the deferral (counted
// by wakes) or after it.
var childStoreCases = []Case{
	{"S-060 S-061 a child's end before or after its parent's deferral makes the parent claimable when none is left", func(t *testing.T, h *Harness) {
		migrate(t, h)
		st := h.Store
		now := time.Now()
		for _, c := range []struct {
			name       string
			kids       int
			endsBefore int // children that end between the parent's look and its deferral
			endsAfter  int
			ready      bool
		}{
			{"none ends", 2, 0, 0, false},
			{"one of two ends before", 2, 1, 0, false},
			{"both end before", 2, 2, 0, true},
			{"one before, one after", 2, 1, 1, true},
			{"both after", 2, 0, 2, true},
			{"one of three after", 3, 0, 1, false},
		} {
			t.Run(c.name, func(t *testing.T) {
				parent, kids := familyLeased(t, st, c.name, c.kids, now)
				seen := parent.Wakes // the engine looks at the children after the claim
				for _, k := range kids[:c.endsBefore] {
					finishChild(t, st, k, parent.ID, now)
				}
				ok, err := st.DeferRun(Ctx(t), store.Lease{RunID: parent.ID, Generation: parent.LeaseGeneration}, store.Deferral{
					Until: now.Add(time.Hour), Now: now, Wait: &store.Wait{Children: c.kids, SeenWakes: seen}})
				if err != nil || !ok {
					t.Fatalf("defer: %v %v", ok, err)
				}
				for _, k := range kids[c.endsBefore : c.endsBefore+c.endsAfter] {
					finishChild(t, st, k, parent.ID, now)
				}
				claimed := claimIDs(t, st, claimReq("w", now, 10))
				if got := slices.Contains(claimed, parent.ID); got != c.ready {
					t.Fatalf("parent claimable: %v, want %v (claimed %v)", got, c.ready, claimed)
				}
			})
		}
	}},
	{"S-061 children ending concurrently with their parent's deferral never leave it waiting", func(t *testing.T, h *Harness) {
		migrate(t, h)
		st := h.Store
		now := time.Now()
		rng := newRand(t)
		for trial := range 30 {
			n := 1 + rng.IntN(4)
			parent, kids := familyLeased(t, st, fmt.Sprint("t", trial), n, now)
			seen := parent.Wakes
			var wg sync.WaitGroup
			for _, k := range kids {
				wg.Go(func() { finishChild(t, st, k, parent.ID, now) })
			}
			ok, err := st.DeferRun(Ctx(t), store.Lease{RunID: parent.ID, Generation: parent.LeaseGeneration}, store.Deferral{
				Until: now.Add(time.Hour), Now: now, Wait: &store.Wait{Children: n, SeenWakes: seen}})
			wg.Wait()
			if err != nil || !ok {
				t.Fatalf("defer: %v %v", ok, err)
			}
			got := MustGetStore(t, st, parent.ID)
			if got.Status != store.StatusPending || !got.RunAt.Before(now.Add(time.Minute)) {
				t.Fatalf("trial %d: every child ended, yet the parent waits: %+v", trial, got)
			}
			if claimed := claimIDs(t, st, claimReq("w", now, 10)); !slices.Contains(claimed, parent.ID) {
				t.Fatalf("trial %d: parent not claimable: %v", trial, claimed)
			}
		}
	}},
}

// familyLeased enqueues a parent with n children and claims the parent,
// then the children, as workers would; it returns the parent's claim and
// the children's.
func familyLeased(t *testing.T, st store.Store, tag string, n int, now time.Time) (*store.Run, []*store.Run) {
	t.Helper()
	parentID := runID("P", int(hash(tag)%1e12))
	enqueueRuns(t, st, &store.Run{ID: parentID, JobName: "parent", CreatedAt: now.Add(-time.Second)})
	claimed, err := st.Claim(Ctx(t), claimReq("w", now, 1))
	if err != nil || len(claimed) != 1 || claimed[0].ID != parentID {
		t.Fatalf("claim parent: %v %v", claimed, err)
	}
	kids := make([]*store.Run, n)
	for i := range kids {
		kids[i] = &store.Run{ID: runID("K", int(hash(tag)%1e12)*10+i), JobName: "child", ParentRunID: parentID, CreatedAt: now}
	}
	enqueueRuns(t, st, kids...)
	leasedKids, err := st.Claim(Ctx(t), claimReq("w", now, n))
	if err != nil || len(leasedKids) != n {
		t.Fatalf("claim children: %v %v", leasedKids, err)
	}
	for _, k := range leasedKids {
		if k.ParentRunID != parentID {
			t.Fatalf("child %+v has no parent", k)
		}
	}
	return claimed[0], leasedKids
}

// finishChild completes a leased child as an execution would, counting its
// end for its parent.
func finishChild(t *testing.T, st store.Store, kid *store.Run, parentID string, now time.Time) {
	t.Helper()
	ok, err := st.FinishRun(Ctx(t), store.Lease{RunID: kid.ID, Generation: kid.LeaseGeneration},
		store.Finish{Status: store.StatusCompleted, Output: []byte("1"), Now: now, ParentRunID: parentID})
	if err != nil || !ok {
		t.Errorf("finish child %s: %v %v", kid.ID, ok, err)
	}
}

// MustGetStore reads a run that must exist straight from a store.
func MustGetStore(t *testing.T, st store.Store, id string) *store.Run {
	t.Helper()
	run, err := st.GetRun(Ctx(t), id)
	if err != nil || run == nil {
		t.Fatalf("get run %s: %v (run %v)", id, err, run)
	}
	return run
}

// hash is FNV-1a, for stable ids from a case's name.
func hash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// failStepOnce is a store whose first record of the step name fails with
// a permanent error, as a process dying before its write would leave it:
// the execution hands the run back and the next one runs the step again.
type failStepOnce struct {
	store.Store
	name   string
	failed atomic.Int32
}

func (f *failStepOnce) SaveStep(ctx context.Context, lease store.Lease, step *store.Step) (bool, error) {
	if step.Name == f.name && f.failed.CompareAndSwap(0, 1) {
		return false, errors.New("storetest: this step's record is lost")
	}
	return f.Store.SaveStep(ctx, lease, step)
}
