package storetest

import (
	"context"
	"encoding/json"
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

// The cases of signals (issue 22): R-240 … R-245, S-060, S-062, S-063.

// Approval is the payload of the cases' signal.
type Approval struct {
	By     string `json:"by"`
	Amount int    `json:"amount"`
}

// approve is the cases' signal.
var approve = durably.Signal[Approval]{Name: "approve"}

// approvalJob waits for approvals, up to n of them (its input), each as a
// step of its own, and returns who approved, in order.
func approvalJob(bodies *Counter, opts ...durably.Option) *durably.Job[int, []string] {
	return &durably.Job[int, []string]{
		Name:    "approval",
		Signals: []durably.SignalDecl{approve},
		Run: func(ctx context.Context, s *durably.StepContext, n int) ([]string, error) {
			bodies.Inc(s.RunID())
			var by []string
			for i := range n {
				a, err := durably.WaitForSignal(s, fmt.Sprint("approval-", i), approve, opts...)
				if err != nil {
					return nil, err
				}
				by = append(by, fmt.Sprintf("%s:%d", a.By, a.Amount))
			}
			return by, nil
		},
	}
}

func signalsOfRun(t *testing.T, e *durably.Engine, id string) []string {
	t.Helper()
	sigs, err := e.GetSignals(Ctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range sigs {
		out = append(out, s.Name+" "+string(s.Payload))
	}
	return out
}

func send(t *testing.T, e *durably.Engine, id, by string, amount int) {
	t.Helper()
	if err := durably.SendSignal(Ctx(t), e, id, approve, Approval{By: by, Amount: amount}); err != nil {
		t.Fatalf("signal: %v", err)
	}
}

var signalCases = []Case{
	{"R-241 R-243 a signal sent before the run waits is kept for it; one sent while it waits wakes it", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) { c.PreserveSteps = true })
		var bodies Counter
		j := durably.MustRegister(e, approvalJob(&bodies))
		run := MustTrigger(t, j, 2)
		send(t, e, run.ID, "ann", 1) // before the run started
		if got := signalsOfRun(t, e, run.ID); !slices.Equal(got, []string{`approve {"by":"ann","amount":1}`}) {
			t.Fatalf("kept signals %v", got)
		}
		processAll(t, e) // receives the first, waits for the second
		p := MustGet(t, e, run.ID)
		if p.Status != durably.StatusPending || p.WaitingFor != "signal:approve" || p.LeaseOwner != "" || len(signalsOfRun(t, e, run.ID)) != 0 {
			t.Fatalf("waiting run %+v", p)
		}
		send(t, e, run.ID, "bob", 2)
		if p := MustGet(t, e, run.ID); p.RunAt.After(time.Now().Add(time.Minute)) {
			t.Fatalf("the signal did not wake the run: %+v", p)
		}
		processAll(t, e)
		p = MustGet(t, e, run.ID)
		if p.Status != durably.StatusCompleted || string(p.Output) != `["ann:1","bob:2"]` || bodies.Get(run.ID) != 2 {
			t.Fatalf("run %+v after %d executions", p, bodies.Get(run.ID))
		}
		if rows := stepRows(t, e, run.ID); !slices.Equal(rows, []string{"approval-0:completed:1", "approval-1:completed:1"}) {
			t.Fatalf("steps %v", rows)
		}
		steps, _ := e.GetSteps(Ctx(t), run.ID)
		if string(steps[1].Output) != `{"by":"bob","amount":2}` {
			t.Fatalf("the step records the payload: %s", steps[1].Output)
		}
	}},
	{"R-243 each signal is delivered once, oldest first; a run that ends discards the rest", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		var bodies Counter
		j := durably.MustRegister(e, approvalJob(&bodies))
		run := MustTrigger(t, j, 2)
		for i, by := range []string{"a", "b", "c"} {
			send(t, e, run.ID, by, i)
		}
		processAll(t, e)
		p := MustGet(t, e, run.ID)
		if p.Status != durably.StatusCompleted || string(p.Output) != `["a:0","b:1"]` {
			t.Fatalf("run %+v", p)
		}
		if got := signalsOfRun(t, e, run.ID); len(got) != 0 {
			t.Fatalf("an ended run keeps signals %v", got)
		}
		err := durably.SendSignal(Ctx(t), e, run.ID, approve, Approval{By: "late"})
		WantKind(t, err, durably.ErrConflict, "Cannot signal completed run: "+run.ID)
	}},
	{"R-242 a signal is refused for a missing run, an undeclared name, a payload that does not fit; nothing is kept", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		var bodies Counter
		j := durably.MustRegister(e, approvalJob(&bodies))
		run := MustTrigger(t, j, 1)
		ctx := Ctx(t)
		WantKind(t, e.Signal(ctx, "01NOPE0000000000000000000X", "approve", json.RawMessage(`{}`)), durably.ErrNotFound, "Run not found: 01NOPE0000000000000000000X")
		WantKind(t, e.Signal(ctx, run.ID, "reject", json.RawMessage(`{}`)), durably.ErrValidation, `name: job "approval" declares no signal "reject"`)
		for _, c := range []struct{ payload, msg string }{
			{`{"by":"x","amount":"1"}`, "Invalid payload: amount: expected integer, got string"},
			{`{"by":"x","extra":1}`, `Invalid payload: unknown field "extra"`},
			{`[1]`, "Invalid payload: (root): expected object, got array"},
			{`{`, "Invalid payload: unexpected EOF"},
			{`{"by":1} x`, "Invalid payload: by: expected string, got number"},
		} {
			err := e.Signal(ctx, run.ID, "approve", json.RawMessage(c.payload))
			WantPrefix(t, err, durably.ErrValidation, c.msg)
		}
		if got := signalsOfRun(t, e, run.ID); len(got) != 0 {
			t.Fatalf("refused signals were kept: %v", got)
		}
		if err := e.Signal(ctx, run.ID, "approve", json.RawMessage(`{"amount":7}`)); err != nil {
			t.Fatal(err)
		}
		processAll(t, e)
		if p := MustGet(t, e, run.ID); string(p.Output) != `[":7"]` {
			t.Fatalf("run %+v", p)
		}
	}},
	{"R-241 a signal wait's timeout ends it with ErrTimeout, recorded", func(t *testing.T, h *Harness) {
		e, clock := fakeEngine(h, h.Store, func(c *durably.Config) { c.PreserveSteps = true })
		job := &durably.Job[int, string]{Name: "approval", Signals: []durably.SignalDecl{approve},
			Run: func(ctx context.Context, s *durably.StepContext, _ int) (string, error) {
				_, err := durably.WaitForSignal(s, "wait", approve, durably.WithTimeout(time.Minute))
				if errors.Is(err, durably.ErrTimeout) {
					return "timed out: " + err.Error(), nil
				}
				return "", err
			}}
		j := durably.MustRegister(e, job)
		run := MustTrigger(t, j, 0)
		processAll(t, e)
		clock.Set(delayEpoch.Add(time.Minute))
		processAll(t, e)
		p := MustGet(t, e, run.ID)
		want := fmt.Sprintf(`"timed out: Wait \"wait\" timed out at %s"`, delayEpoch.Add(time.Minute).Format(time.RFC3339Nano))
		if p.Status != durably.StatusCompleted || string(p.Output) != want {
			t.Fatalf("run %+v output %s, want %s", p, p.Output, want)
		}
		if rows := stepRows(t, e, run.ID); !slices.Equal(rows, []string{"wait/deadline:completed:1", "wait:completed:1"}) {
			t.Fatalf("steps %v", rows)
		}
	}},
	{"R-243 a delivery whose answer was lost is found again, neither lost nor delivered twice", func(t *testing.T, h *Harness) {
		st := &loseReceipt{Store: h.Store}
		e := h.EngineOn(st, nil)
		var bodies Counter
		j := durably.MustRegister(e, approvalJob(&bodies))
		run := MustTrigger(t, j, 1)
		send(t, e, run.ID, "ann", 1)
		send(t, e, run.ID, "bob", 2)
		processAll(t, e)
		p := MustGet(t, e, run.ID)
		if st.lost.Load() != 1 || p.Status != durably.StatusCompleted || string(p.Output) != `["ann:1"]` {
			t.Fatalf("run %+v after %d lost answers", p, st.lost.Load())
		}
	}},
	{"R-241 a run waits for a signal only its job declares", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		j := durably.MustRegister(e, &durably.Job[int, int]{Name: "undeclared",
			Run: func(ctx context.Context, s *durably.StepContext, _ int) (int, error) {
				_, err := durably.WaitForSignal(s, "wait", approve)
				return 0, err
			}})
		run := MustTrigger(t, j, 0)
		processAll(t, e)
		p := MustGet(t, e, run.ID)
		if p.Status != durably.StatusFailed || p.Error != `durably: wait "wait": job "undeclared" declares no signal "approve" (Job.Signals)` {
			t.Fatalf("run %+v", p)
		}
		_, err := durably.Register(e, &durably.Job[int, int]{Name: "twice", Signals: []durably.SignalDecl{approve, approve},
			Run: func(context.Context, *durably.StepContext, int) (int, error) { return 0, nil }})
		if err == nil || err.Error() != `durably: job "twice": signal "approve" is declared twice` {
			t.Fatalf("register: %v", err)
		}
	}},
	{"R-234 S-064 cancelling a run cancels its active descendants, deepest first, and discards their signals", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		rec := Record(t, e)
		var bodies Counter
		approval := durably.MustRegister(e, approvalJob(&bodies))
		mid := durably.MustRegister(e, &durably.Job[int, int]{Name: "mid",
			Run: func(ctx context.Context, s *durably.StepContext, n int) (int, error) {
				kid, err := approval.StartChild(s, "leaf", 1)
				if err != nil {
					return 0, err
				}
				_, err = durably.AwaitChild(s, "await", kid)
				return 0, err
			}})
		root := durably.MustRegister(e, &durably.Job[int, int]{Name: "root",
			Run: func(ctx context.Context, s *durably.StepContext, n int) (int, error) {
				kid, err := mid.StartChild(s, "mid", 1)
				if err != nil {
					return 0, err
				}
				_, err = durably.AwaitChild(s, "await", kid)
				return 0, err
			}})
		ctx := Ctx(t)
		run := MustTrigger(t, root, 0)
		processAll(t, e) // root waits for mid, mid for leaf, leaf for a signal
		midRun := childrenOf(t, e, run.ID)[0]
		leaf := childrenOf(t, e, midRun.ID)[0]
		send(t, e, leaf.ID, "kept", 1)
		send(t, e, leaf.ID, "kept", 2)
		if err := e.Cancel(ctx, run.ID); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{run.ID, midRun.ID, leaf.ID} {
			if r := MustGet(t, e, id); r.Status != durably.StatusCancelled {
				t.Fatalf("run %s: %s", r.JobName, r.Status)
			}
		}
		var order []string
		for _, ev := range rec.Events(durably.EventRunCancel) {
			order = append(order, ev.JobName)
		}
		if !slices.Equal(order, []string{"approval", "mid", "root"}) {
			t.Fatalf("run:cancel order %v", order)
		}
		if got := signalsOfRun(t, e, leaf.ID); len(got) != 0 {
			t.Fatalf("a cancelled run keeps signals %v", got)
		}
		WantKind(t, e.Cancel(ctx, midRun.ID), durably.ErrConflict, "Cannot cancel already cancelled run: "+midRun.ID)
	}},
}

// The store's side of a wait for a signal (S-060, S-062, S-063).
var signalStoreCases = []Case{
	{"S-062 S-063 a signal is kept for an active run, delivered once with its step, and refused for an ended one", func(t *testing.T, h *Harness) {
		migrate(t, h)
		st := h.Store
		ctx := Ctx(t)
		now := time.Now()
		run, _ := familyLeased(t, st, "s062", 0, now)
		lease := store.Lease{RunID: run.ID, Generation: run.LeaseGeneration}
		for i, name := range []string{"a", "b", "a"} {
			sent, err := st.SendSignal(ctx, &store.Signal{ID: runID("SIG", i), RunID: run.ID, Name: name, Payload: json.RawMessage(fmt.Sprint(i)), CreatedAt: now})
			if err != nil || !sent {
				t.Fatalf("send %d: %v %v", i, sent, err)
			}
		}
		after := MustGetStore(t, st, run.ID)
		if after.Wakes != run.Wakes+3 {
			t.Fatalf("wakes %d after 3 signals, from %d", after.Wakes, run.Wakes)
		}
		step := func(i int) *store.Step {
			return &store.Step{ID: runID("STP", i), RunID: run.ID, Name: fmt.Sprint("wait-", i), Index: i, Status: store.StepCompleted, StartedAt: now, CompletedAt: now}
		}
		for i, want := range []string{"0", "2", ""} {
			got, ok, err := st.ReceiveSignal(ctx, lease, "a", step(i))
			if err != nil || !ok {
				t.Fatalf("receive %d: %v %v", i, ok, err)
			}
			if want == "" {
				if got.Signal != nil || got.Wakes != after.Wakes {
					t.Fatalf("receive with none kept: %+v", got)
				}
				continue
			}
			if got.Signal == nil || string(got.Signal.Payload) != want || got.Signal.Name != "a" {
				t.Fatalf("receive %d: %+v", i, got.Signal)
			}
		}
		steps, err := st.GetSteps(ctx, run.ID)
		if err != nil || len(steps) != 2 || string(steps[0].Output) != "0" || string(steps[1].Output) != "2" {
			t.Fatalf("steps %v %v", steps, err)
		}
		if r := MustGetStore(t, st, run.ID); r.CompletedStepCount != 2 || r.CurrentStepIndex != 2 {
			t.Fatalf("counters %+v", r)
		}
		if sigs, _ := st.GetSignals(ctx, run.ID); len(sigs) != 1 || sigs[0].Name != "b" {
			t.Fatalf("kept %v", sigs)
		}
		// A stale lease receives nothing and takes nothing.
		if _, ok, err := st.ReceiveSignal(ctx, store.Lease{RunID: run.ID, Generation: lease.Generation + 1}, "b", step(5)); ok || err != nil {
			t.Fatalf("stale receive: %v %v", ok, err)
		}
		if ok, err := st.FinishRun(ctx, lease, store.Finish{Status: store.StatusCompleted, Now: now}); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if sigs, _ := st.GetSignals(ctx, run.ID); len(sigs) != 0 {
			t.Fatalf("an ended run keeps %v", sigs)
		}
		if sent, err := st.SendSignal(ctx, &store.Signal{ID: runID("SIG", 9), RunID: run.ID, Name: "b", Payload: json.RawMessage("1"), CreatedAt: now}); sent || err != nil {
			t.Fatalf("signal to an ended run: %v %v", sent, err)
		}
		if sent, err := st.SendSignal(ctx, &store.Signal{ID: runID("SIG", 10), RunID: "missing", Name: "b", Payload: json.RawMessage("1"), CreatedAt: now}); sent || err != nil {
			t.Fatalf("signal to a missing run: %v %v", sent, err)
		}
	}},
	{"S-060 S-062 signals sent concurrently with a run's deferral never leave it waiting", func(t *testing.T, h *Harness) {
		migrate(t, h)
		st := h.Store
		now := time.Now()
		for trial := range 30 {
			run, _ := familyLeased(t, st, fmt.Sprint("sig", trial), 0, now)
			lease := store.Lease{RunID: run.ID, Generation: run.LeaseGeneration}
			got, ok, err := st.ReceiveSignal(Ctx(t), lease, "go", &store.Step{ID: runID("RCV", trial), RunID: run.ID, Name: "w", Status: store.StepCompleted, StartedAt: now, CompletedAt: now})
			if err != nil || !ok || got.Signal != nil {
				t.Fatalf("receive: %+v %v %v", got, ok, err)
			}
			var wg sync.WaitGroup
			wg.Go(func() {
				if sent, err := st.SendSignal(Ctx(t), &store.Signal{ID: runID("CSG", trial), RunID: run.ID, Name: "go", Payload: json.RawMessage("1"), CreatedAt: now}); !sent || err != nil {
					t.Errorf("send: %v %v", sent, err)
				}
			})
			ok, err = st.DeferRun(Ctx(t), lease, store.Deferral{Until: now.Add(time.Hour), Now: now, Wait: &store.Wait{Signal: "go", SeenWakes: got.Wakes}})
			wg.Wait()
			if err != nil || !ok {
				t.Fatalf("defer: %v %v", ok, err)
			}
			if claimed := claimIDs(t, st, claimReq("w", now, 10)); !slices.Contains(claimed, run.ID) {
				t.Fatalf("trial %d: the signal came, yet the run waits: %+v", trial, MustGetStore(t, st, run.ID))
			}
		}
	}},
	{"S-060 S-062 a signal sent between the run's look and its deferral makes it claimable at once", func(t *testing.T, h *Harness) {
		migrate(t, h)
		st := h.Store
		now := time.Now()
		run, _ := familyLeased(t, st, "between", 0, now)
		lease := store.Lease{RunID: run.ID, Generation: run.LeaseGeneration}
		got, ok, err := st.ReceiveSignal(Ctx(t), lease, "go", &store.Step{ID: runID("BTW", 1), RunID: run.ID, Name: "w", Status: store.StepCompleted, StartedAt: now, CompletedAt: now})
		if err != nil || !ok || got.Signal != nil {
			t.Fatalf("receive: %+v %v %v", got, ok, err)
		}
		if sent, err := st.SendSignal(Ctx(t), &store.Signal{ID: runID("BTW", 2), RunID: run.ID, Name: "go", Payload: json.RawMessage("1"), CreatedAt: now}); !sent || err != nil {
			t.Fatal(sent, err)
		}
		if ok, err := st.DeferRun(Ctx(t), lease, store.Deferral{Until: now.Add(time.Hour), Now: now, Wait: &store.Wait{Signal: "go", SeenWakes: got.Wakes}}); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if r := MustGetStore(t, st, run.ID); r.Status != store.StatusPending || r.WaitingFor != "signal:go" || !r.RunAt.Equal(store.Truncate(now)) {
			t.Fatalf("run %+v", r)
		}
		if claimed := claimIDs(t, st, claimReq("w", now, 10)); !slices.Equal(claimed, []string{run.ID}) {
			t.Fatalf("the signal came before the deferral, yet the run waits: %v", claimed)
		}
	}},
	{"S-060 a signal of another name does not wake a run; a deferral without events waits", func(t *testing.T, h *Harness) {
		migrate(t, h)
		st := h.Store
		now := time.Now()
		run, _ := familyLeased(t, st, "other", 0, now)
		lease := store.Lease{RunID: run.ID, Generation: run.LeaseGeneration}
		if ok, err := st.DeferRun(Ctx(t), lease, store.Deferral{Until: now.Add(time.Hour), Now: now, Wait: &store.Wait{Signal: "go", SeenWakes: run.Wakes}}); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if claimed := claimIDs(t, st, claimReq("w", now, 10)); len(claimed) != 0 {
			t.Fatalf("claimed %v", claimed)
		}
		if sent, err := st.SendSignal(Ctx(t), &store.Signal{ID: runID("OTH", 1), RunID: run.ID, Name: "stop", Payload: json.RawMessage("1"), CreatedAt: now}); !sent || err != nil {
			t.Fatal(sent, err)
		}
		if claimed := claimIDs(t, st, claimReq("w", now, 10)); len(claimed) != 0 {
			t.Fatalf("another signal woke the run: %v", claimed)
		}
		if sent, err := st.SendSignal(Ctx(t), &store.Signal{ID: runID("OTH", 2), RunID: run.ID, Name: "go", Payload: json.RawMessage("1"), CreatedAt: now}); !sent || err != nil {
			t.Fatal(sent, err)
		}
		if claimed := claimIDs(t, st, claimReq("w", now, 10)); !slices.Equal(claimed, []string{run.ID}) {
			t.Fatalf("its signal did not wake the run: %v", claimed)
		}
	}},
}

// loseReceipt is a store whose first delivery of a signal commits and
// then answers as if the connection had died before its answer came.
type loseReceipt struct {
	store.Store
	lost atomic.Int32
}

func (l *loseReceipt) ReceiveSignal(ctx context.Context, lease store.Lease, name string, rec *store.Step) (store.Receipt, bool, error) {
	got, ok, err := l.Store.ReceiveSignal(ctx, lease, name, rec)
	if err == nil && got.Signal != nil && l.lost.CompareAndSwap(0, 1) {
		return store.Receipt{}, false, fmt.Errorf("storetest: the answer was lost: %w", store.ErrUnavailable)
	}
	return got, ok, err
}
