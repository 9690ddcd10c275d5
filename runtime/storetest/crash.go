package storetest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// A crash is an execution that ended without recording an outcome; the
// store counts it where it sees it: a claim (or the sweep) taking over an
// expired lease that nobody handed back (S-052).

// wantCrashes checks a run's crash count and that its history ends with
// the crash of worker's execution, numbered number.
func wantCrashes(t *testing.T, run *store.Run, crashes, number int, worker string) {
	t.Helper()
	if run.Crashes != crashes {
		t.Fatalf("crashes = %d, want %d", run.Crashes, crashes)
	}
	if len(run.Attempts) == 0 {
		t.Fatalf("no attempt recorded for %d crashes", crashes)
	}
	last := run.Attempts[len(run.Attempts)-1]
	if last.Number != number || last.Outcome != store.AttemptCrashed || last.Worker != worker ||
		!strings.Contains(last.Error, worker) || last.At.IsZero() {
		t.Fatalf("last attempt %+v, want attempt %d crashed on %s", last, number, worker)
	}
}

var crashCases = []Case{
	{"S-052 a claim taking over an expired lease counts a crash and records it", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		st := e.Store()
		t0 := time.Now()
		first, _ := leased(t, e, t0)
		if first.Crashes != 0 || len(first.Attempts) != 0 {
			t.Fatalf("a first claim counted a crash: %+v", first)
		}
		for i, worker := range []string{"w", "w2", "w3"} {
			at := t0.Add(time.Duration(i+1) * 31 * time.Second)
			next := "w" + string(rune('2'+i))
			runs, err := st.Claim(Ctx(t), claimReq(next, at, 1))
			if err != nil || len(runs) != 1 {
				t.Fatalf("claim %d: %v %v", i, runs, err)
			}
			wantCrashes(t, runs[0], i+1, i+1, worker)
			if got := MustGet(t, e, first.ID); got.Crashes != i+1 || len(got.Attempts) != i+1 {
				t.Fatalf("stored run: %d crashes, %d attempts; want %d", got.Crashes, len(got.Attempts), i+1)
			}
		}
	}},
	{"S-052 R-204 a claim that locks (a keyed run of a limited job) counts a crash too", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		st := e.Store()
		j, err := durably.Register(e, leaseJob)
		if err != nil {
			t.Fatal(err)
		}
		r := MustTrigger(t, j, Msg{"x"}, durably.WithConcurrencyKey("k"))
		t0 := time.Now()
		req := func(worker string, now time.Time) store.ClaimRequest {
			q := claimReq(worker, now, 1)
			q.JobLimits = map[string]int{leaseJob.Name: 1}
			return q
		}
		for i, worker := range []string{"w1", "w2"} {
			runs, err := st.Claim(Ctx(t), req(worker, t0.Add(time.Duration(i)*31*time.Second)))
			if err != nil || len(runs) != 1 || runs[0].ID != r.ID {
				t.Fatalf("claim %d: %v %v", i, runs, err)
			}
			if i == 1 {
				wantCrashes(t, runs[0], 1, 1, "w1")
			}
		}
	}},
	{"S-052 the sweep of an expired lease counts a crash; a hand-back counts none", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		st := e.Store()
		ctx := Ctx(t)
		t0 := time.Now()
		run, _ := leased(t, e, t0)
		if n, err := st.ReleaseExpiredLeases(ctx, t0.Add(31*time.Second)); err != nil || n != 1 {
			t.Fatalf("sweep: %d %v", n, err)
		}
		swept := MustGet(t, e, run.ID)
		wantCrashes(t, swept, 1, 1, "w")
		// Claimed again and handed back (Stop): no crash.
		runs, err := st.Claim(ctx, claimReq("w2", t0.Add(32*time.Second), 1))
		if err != nil || len(runs) != 1 || runs[0].Crashes != 1 {
			t.Fatalf("claim after the sweep: %v %v", runs, err)
		}
		lease := store.Lease{RunID: run.ID, Generation: runs[0].LeaseGeneration}
		if ok, err := st.ReleaseLease(ctx, lease, t0.Add(33*time.Second)); !ok || err != nil {
			t.Fatalf("release: %v %v", ok, err)
		}
		runs, err = st.Claim(ctx, claimReq("w3", t0.Add(34*time.Second), 1))
		if err != nil || len(runs) != 1 || runs[0].Crashes != 1 || len(runs[0].Attempts) != 1 {
			t.Fatalf("a handed-back lease counted a crash: %v %v", runs, err)
		}
	}},
	{"S-052 D12 a lease handed back past a pending sibling is no crash", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		st := e.Store()
		ctx := Ctx(t)
		t0 := time.Now()
		j, err := durably.Register(e, leaseJob)
		if err != nil {
			t.Fatal(err)
		}
		r := MustTrigger(t, j, Msg{"a"}, durably.WithConcurrencyKey("k"))
		runs, err := st.Claim(ctx, claimReq("w", t0, 1))
		if err != nil || len(runs) != 1 {
			t.Fatalf("claim: %v %v", runs, err)
		}
		MustTrigger(t, j, Msg{"b"}, durably.WithConcurrencyKey("k")) // the pending sibling
		lease := store.Lease{RunID: r.ID, Generation: runs[0].LeaseGeneration}
		if ok, err := st.ReleaseLease(ctx, lease, t0.Add(time.Second)); !ok || err != nil {
			t.Fatalf("release: %v %v", ok, err)
		}
		if got := MustGet(t, e, r.ID); got.Status != store.StatusLeased {
			t.Fatalf("the sibling should have made the hand-back expire the lease, got %s", got.Status)
		}
		runs, err = st.Claim(ctx, claimReq("w2", t0.Add(2*time.Second), 1))
		if err != nil || len(runs) != 1 || runs[0].ID != r.ID {
			t.Fatalf("claim of the expired hand-back: %v %v", runs, err)
		}
		if runs[0].Crashes != 0 || len(runs[0].Attempts) != 0 {
			t.Fatalf("a hand-back counted as a crash: %+v", runs[0])
		}
	}},
	{"S-052 a deferral and a failure replace the attempt history; nil keeps it", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		st := e.Store()
		ctx := Ctx(t)
		t0 := time.Now()
		run, lease := leased(t, e, t0)
		first := []store.Attempt{{Number: 1, Outcome: store.AttemptFailed, Step: "s", Error: "boom", At: store.Truncate(t0)}}
		if ok, err := st.DeferRun(ctx, lease, store.Deferral{Until: t0, Now: t0, Attempt: 1, Attempts: first}); !ok || err != nil {
			t.Fatalf("defer: %v %v", ok, err)
		}
		if got := MustGet(t, e, run.ID); !attemptsEqual(got.Attempts, first) {
			t.Fatalf("after the deferral: %+v, want %+v", got.Attempts, first)
		}
		// A sleep's deferral passes no history: it is kept.
		runs, err := st.Claim(ctx, claimReq("w", t0.Add(time.Second), 1))
		if err != nil || len(runs) != 1 || !attemptsEqual(runs[0].Attempts, first) {
			t.Fatalf("claim: %v %v", runs, err)
		}
		lease = store.Lease{RunID: run.ID, Generation: runs[0].LeaseGeneration}
		if ok, err := st.DeferRun(ctx, lease, store.Deferral{Until: t0, Now: t0, Attempt: 1}); !ok || err != nil {
			t.Fatalf("defer: %v %v", ok, err)
		}
		runs, err = st.Claim(ctx, claimReq("w", t0.Add(2*time.Second), 1))
		if err != nil || len(runs) != 1 || !attemptsEqual(runs[0].Attempts, first) {
			t.Fatalf("a deferral without history changed it: %v %v", runs, err)
		}
		lease = store.Lease{RunID: run.ID, Generation: runs[0].LeaseGeneration}
		all := append(first, store.Attempt{Number: 2, Outcome: store.AttemptFailed, Error: "again", At: store.Truncate(t0.Add(3 * time.Second))})
		if ok, err := st.FinishRun(ctx, lease, store.Finish{Status: store.StatusFailed, Error: "again", Now: t0, DeleteSteps: true, Attempts: all}); !ok || err != nil {
			t.Fatalf("finish: %v %v", ok, err)
		}
		if got := MustGet(t, e, run.ID); !attemptsEqual(got.Attempts, all) {
			t.Fatalf("after the failure: %+v, want %+v", got.Attempts, all)
		}
	}},
	{"S-052 a run's trace context is stored as given", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		st := e.Store()
		const tc = `{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}`
		now := time.Now()
		for i, claim := range []*store.Claim{nil, {WorkerID: "w", ExpiresAt: now.Add(time.Minute)}} {
			id := []string{"01TRACECONTEXT000000000000", "01TRACECONTEXT000000000001"}[i]
			_, err := st.Enqueue(Ctx(t), []store.NewRun{{Run: &store.Run{ID: id, JobName: "j", Input: json.RawMessage(`{}`),
				CreatedAt: now, TraceContext: tc}, Claim: claim}})
			if err != nil {
				t.Fatal(err)
			}
			if got := MustGet(t, e, id); got.TraceContext != tc {
				t.Fatalf("trace context %q, want %q", got.TraceContext, tc)
			}
		}
	}},
}

func attemptsEqual(a, b []store.Attempt) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Number != y.Number || x.Outcome != y.Outcome || x.Step != y.Step || x.Error != y.Error || !x.At.Equal(y.At) || x.Worker != y.Worker {
			return false
		}
	}
	return true
}
