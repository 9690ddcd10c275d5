package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

var batchCases = []Case{
	{"R-046 empty batch writes nothing", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		j := durably.MustRegister(e, EchoJob("j"))
		rec := Record(t, e)
		res, err := j.BatchTrigger(Ctx(t), nil)
		if err != nil || len(res) != 0 || len(rec.Events()) != 0 || CountRuns(t, e.Store()) != 0 {
			t.Fatalf("res %v err %v events %d", res, err, len(rec.Events()))
		}
	}},
	{"R-047 batch validates every item first", func(t *testing.T, h *Harness) {
		schema := durably.LabelSchemaFunc(func(l map[string]string) (map[string]string, error) {
			if l["org"] == "" {
				//lint:ignore ST1005 a label schema's error as the original's validator words it
				return nil, fmt.Errorf("Invalid input: org: required")
			}
			return l, nil
		})
		e := h.Engine(func(c *durably.Config) { c.Labels = schema })
		j := durably.MustRegister(e, EchoJob("j"))
		ok := []durably.Option{durably.WithLabels(map[string]string{"org": "o"})}
		cases := []struct {
			items []durably.BatchItem[Msg]
			want  string
		}{
			{[]durably.BatchItem[Msg]{{Input: Msg{"a"}, Options: ok}, {Input: Msg{""}, Options: ok}}, "at index 1: Invalid input: message: required"},
			{[]durably.BatchItem[Msg]{{Input: Msg{"a"}, Options: ok}, {Input: Msg{"b"}}}, "labels at index 1: Invalid input: org: required"},
			{[]durably.BatchItem[Msg]{{Input: Msg{"a"}, Options: append([]durably.Option{durably.WithCoalesceSkip()}, ok...)}}, "coalesce requires concurrencyKey at index 0"},
		}
		for _, c := range cases {
			_, err := j.BatchTrigger(Ctx(t), c.items)
			WantKind(t, err, durably.ErrValidation, c.want)
		}
		_, err := e.BatchTriggerRaw(Ctx(t), []durably.TriggerRequest{
			{JobName: "j", Input: json.RawMessage(`{"message":"a"}`), Labels: map[string]string{"org": "o"}},
			{JobName: "j", Input: json.RawMessage(`{"message":"a"}`), Labels: map[string]string{"org": "o"}, Coalesce: "nope", ConcurrencyKey: "k"},
		})
		WantKind(t, err, durably.ErrValidation, "Invalid coalesce value at index 1: 'nope'. Valid values: 'skip'")
		if n := CountRuns(t, e.Store()); n != 0 {
			t.Fatalf("%d runs written", n)
		}
	}},
	{"R-048 R-049 batch is one transaction that sees itself", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		j := durably.MustRegister(e, EchoJob("j"))
		rec := Record(t, e)
		key := []durably.Option{durably.WithConcurrencyKey("k"), durably.WithCoalesceSkip()}
		res, err := j.BatchTrigger(Ctx(t), []durably.BatchItem[Msg]{
			{Input: Msg{"a"}, Options: key},
			{Input: Msg{"b"}, Options: key},
			{Input: Msg{"c"}},
			{Input: Msg{"d"}, Options: []durably.Option{durably.WithIdempotencyKey("i")}},
			{Input: Msg{"e"}, Options: []durably.Option{durably.WithIdempotencyKey("i")}},
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []durably.Disposition{durably.Created, durably.Coalesced, durably.Created, durably.Created, durably.Idempotent}
		for i, r := range res {
			if r.Disposition != want[i] {
				t.Fatalf("item %d: %s, want %s", i, r.Disposition, want[i])
			}
		}
		if res[1].Run.ID != res[0].Run.ID || res[4].Run.ID != res[3].Run.ID {
			t.Fatal("later items did not see earlier ones")
		}
		var types []durably.EventType
		for _, ev := range rec.Events() {
			types = append(types, ev.Type)
		}
		wantTypes := []durably.EventType{durably.EventRunTrigger, durably.EventRunCoalesced, durably.EventRunTrigger, durably.EventRunTrigger}
		if fmt.Sprint(types) != fmt.Sprint(wantTypes) {
			t.Fatalf("events %v, want %v", types, wantTypes)
		}
		// A conflict anywhere rolls the whole batch back.
		before := CountRuns(t, e.Store())
		_, err = j.BatchTrigger(Ctx(t), []durably.BatchItem[Msg]{
			{Input: Msg{"x"}},
			{Input: Msg{"y"}, Options: []durably.Option{durably.WithConcurrencyKey("z")}},
			{Input: Msg{"w"}, Options: []durably.Option{durably.WithConcurrencyKey("z")}},
		})
		WantKind(t, err, durably.ErrConflict, "")
		if after := CountRuns(t, e.Store()); after != before {
			t.Fatalf("batch not rolled back: %d runs before, %d after", before, after)
		}
	}},
}

// claimReq claims for tests at a given instant.
// claimConcurrently has six workers claim runs at once through three
// handles of the database (the engine's store and two more), rounds
// claims of up to 2 runs each, all as of one moment; got receives each
// worker's claimed runs, one call at a time. After each of its claims,
// worker 0 also calls also (if not nil) with its handle: maintenance racing
// the claims.
func claimConcurrently(t *testing.T, h *Harness, e *durably.Engine, rounds int, also func(st store.Store, now time.Time), got func(runs []*store.Run)) {
	t.Helper()
	stores := []store.Store{e.Store(), h.OpenStore(), h.OpenStore()}
	var mu sync.Mutex
	var wg sync.WaitGroup
	now := time.Now()
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := stores[w%len(stores)]
			for range rounds {
				runs, err := st.Claim(Ctx(t), claimReq(fmt.Sprintf("w%d", w), now, 2))
				if err != nil {
					t.Errorf("claim: %v", err)
					return
				}
				if w == 0 && also != nil {
					also(st, now)
				}
				mu.Lock()
				got(runs)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func claimReq(worker string, now time.Time, limit int) store.ClaimRequest {
	return store.ClaimRequest{WorkerID: worker, Now: now, Lease: 30 * time.Second, Limit: limit}
}

// placedRun is a run written straight into a store: pending, or leased to
// another worker until leaseEnds (in the past: an expired lease).
type placedRun struct {
	id, job, key string
	priority     int
	created      time.Time
	leaseEnds    time.Time // zero: pending
}

// placeRuns writes runs into st as pending runs, then makes the leased ones
// leased through the test hook (S-047): the store would not insert a run
// with a concurrency key leased.
func placeRuns(t *testing.T, st store.Store, runs []placedRun) {
	t.Helper()
	leased := store.StatusLeased
	for _, r := range runs {
		if _, err := st.Enqueue(Ctx(t), []store.NewRun{{Run: &store.Run{ID: r.id, JobName: r.job, ConcurrencyKey: r.key,
			Priority: r.priority, Input: []byte(`{}`), Labels: map[string]string{}, CreatedAt: r.created}}}); err != nil {
			t.Fatal(err)
		}
		if r.leaseEnds.IsZero() {
			continue
		}
		owner, ends, started := "another", r.leaseEnds, r.created
		if err := PatchRun(Ctx(t), st, r.id, store.RunPatch{Status: &leased, LeaseOwner: &owner, LeaseExpiresAt: &ends, StartedAt: &started}); err != nil {
			t.Fatal(err)
		}
	}
}

var claimCases = []Case{
	{"R-051 an expired lease whose key a live lease holds is not claimed", func(t *testing.T, h *Harness) {
		h.Engine(nil) // migrates
		now := store.Truncate(time.Now())
		placeRuns(t, h.Store, []placedRun{
			{id: "a-expired-k", job: "a", key: "k", created: now.Add(-3 * time.Minute), leaseEnds: now.Add(-time.Minute)},
			{id: "b-live-k", job: "b", key: "k", created: now.Add(-2 * time.Minute), leaseEnds: now.Add(time.Hour)},
			{id: "c-free", job: "c", created: now.Add(-time.Minute)},
		})
		if got, want := claimIDs(t, h.Store, claimReq("w", now, 10)), []string{"c-free"}; !slices.Equal(got, want) {
			t.Fatalf("claimed %v, want %v: the expired lease's key is held by a live lease", got, want)
		}
	}},
	{"R-050 a claim takes no more than its limit from pending runs and expired leases together, in claim order", func(t *testing.T, h *Harness) {
		h.Engine(nil)
		now := store.Truncate(time.Now())
		var runs []placedRun
		for i := range 3 {
			runs = append(runs,
				placedRun{id: fmt.Sprint("p", i), job: "j", created: now.Add(time.Duration(-10+2*i) * time.Second)},
				placedRun{id: fmt.Sprint("x", i), job: "j", created: now.Add(time.Duration(-9+2*i) * time.Second), leaseEnds: now.Add(-time.Second)})
		}
		placeRuns(t, h.Store, runs)
		if got, want := claimIDs(t, h.Store, claimReq("w", now, 3)), []string{"p0", "x0", "p1"}; !slices.Equal(got, want) {
			t.Fatalf("claim of 3: %v, want %v", got, want)
		}
	}},
	{"R-050 D13 expired leases are claimed by priority, then age, not by when they expired", func(t *testing.T, h *Harness) {
		h.Engine(nil)
		now := store.Truncate(time.Now())
		placeRuns(t, h.Store, []placedRun{
			{id: "low", job: "j", priority: 5, created: now.Add(-3 * time.Minute), leaseEnds: now.Add(-2 * time.Minute)},
			{id: "high", job: "j", priority: 0, created: now.Add(-2 * time.Minute), leaseEnds: now.Add(-time.Minute)},
		})
		if got, want := claimIDs(t, h.Store, claimReq("w", now, 1)), []string{"high"}; !slices.Equal(got, want) {
			t.Fatalf("claim of 1: %v, want %v", got, want)
		}
	}},
	{"R-050 S-030 S-031 claim takes the oldest eligible run", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		j := durably.MustRegister(e, EchoJob("j"))
		st := e.Store()
		base := time.Now().Add(-time.Hour).Truncate(time.Millisecond).UTC()
		var ids []string
		for i := range 3 {
			r := MustTrigger(t, j, Msg{fmt.Sprint(i)})
			ids = append(ids, r.ID)
		}
		// Created in reverse order of id: created_at decides, not id.
		for i, id := range ids {
			if err := PatchRun(Ctx(t), st, id, store.RunPatch{CreatedAt: ptr(base.Add(time.Duration(3-i) * time.Second))}); err != nil {
				t.Fatal(err)
			}
		}
		now := time.Now()
		got, err := st.Claim(Ctx(t), claimReq("w1", now, 1))
		if err != nil || len(got) != 1 || got[0].ID != ids[2] {
			t.Fatalf("claimed %v, %v; want %s", got, err, ids[2])
		}
		r := got[0]
		if r.Status != durably.StatusLeased || r.LeaseOwner != "w1" || r.LeaseGeneration != 1 ||
			!r.LeaseExpiresAt.Equal(store.Truncate(now.Add(30*time.Second))) || !r.StartedAt.Equal(store.Truncate(now)) {
			t.Fatalf("claimed run %+v", r)
		}
		rest, err := st.Claim(Ctx(t), claimReq("w1", now, 5))
		if err != nil || len(rest) != 2 || rest[0].ID != ids[1] || rest[1].ID != ids[0] {
			t.Fatalf("rest %v %v", rest, err)
		}
		none, err := st.Claim(Ctx(t), claimReq("w1", now, 5))
		if err != nil || len(none) != 0 {
			t.Fatalf("claimed from an empty queue: %v %v", none, err)
		}
	}},
	{"R-050 R-051 pending runs and expired leases compete by age; live leases are skipped", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		j := durably.MustRegister(e, EchoJob("j"))
		st := e.Store()
		ctx := Ctx(t)
		base := time.Now().Add(-time.Hour).Truncate(time.Millisecond).UTC()
		at := func(r *durably.Run, sec int) string {
			if err := PatchRun(ctx, st, r.ID, store.RunPatch{CreatedAt: ptr(base.Add(time.Duration(sec) * time.Second))}); err != nil {
				t.Fatal(err)
			}
			return r.ID
		}
		// b, c, d are leased a minute ago for 30 s; c's lease is renewed.
		b, c, d := at(MustTrigger(t, j, Msg{"b"}), 2), at(MustTrigger(t, j, Msg{"c"}), 3), at(MustTrigger(t, j, Msg{"d"}), 4)
		past := time.Now().Add(-time.Minute)
		leased, err := st.Claim(ctx, claimReq("old", past, 3))
		if err != nil || len(leased) != 3 {
			t.Fatalf("setup claim: %v %v", leased, err)
		}
		for _, r := range leased {
			if r.ID == c {
				if ok, err := st.RenewLease(ctx, store.Lease{RunID: c, Generation: r.LeaseGeneration}, past, time.Now().Add(time.Hour)); !ok || err != nil {
					t.Fatalf("renew: %v %v", ok, err)
				}
			}
		}
		a, f := at(MustTrigger(t, j, Msg{"a"}), 1), at(MustTrigger(t, j, Msg{"f"}), 5)
		got, err := st.Claim(ctx, claimReq("new", time.Now(), 10))
		var ids []string
		for _, r := range got {
			ids = append(ids, r.ID)
		}
		if want := []string{a, b, d, f}; err != nil || !slices.Equal(ids, want) {
			t.Fatalf("claimed %v, %v; want %v (c's lease is live)", ids, err, want)
		}
		if run := MustGet(t, e, c); run.LeaseOwner != "old" {
			t.Fatalf("live lease taken: %+v", run)
		}
	}},
	{"R-051 R-052 S-032 concurrency key excludes across jobs, blocked runs do not block others", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		a := durably.MustRegister(e, EchoJob("a"))
		b := durably.MustRegister(e, EchoJob("b"))
		st := e.Store()
		ctx := Ctx(t)
		now := time.Now()
		r1 := MustTrigger(t, a, Msg{"1"}, durably.WithConcurrencyKey("same-key"))
		got, err := st.Claim(ctx, claimReq("w", now, 1))
		if err != nil || len(got) != 1 || got[0].ID != r1.ID {
			t.Fatalf("claim 1: %v %v", got, err)
		}
		r2 := MustTrigger(t, b, Msg{"2"}, durably.WithConcurrencyKey("same-key"))
		free := MustTrigger(t, b, Msg{"3"})
		got, err = st.Claim(ctx, claimReq("w", now, 5))
		if err != nil || len(got) != 1 || got[0].ID != free.ID {
			t.Fatalf("want only the key-less run, got %v %v", got, err)
		}
		// Once the lease on the key expires, the blocked run is claimable,
		// and the expired one is reclaimed first (it is older).
		later := now.Add(31 * time.Second)
		got, err = st.Claim(ctx, claimReq("w2", later, 1))
		if err != nil || len(got) != 1 || got[0].ID != r1.ID || got[0].LeaseGeneration != 2 {
			t.Fatalf("want reclaim of %s, got %v %v", r1.ID, got, err)
		}
		got, err = st.Claim(ctx, claimReq("w2", later, 5))
		if err != nil || len(got) != 1 || got[0].ID != free.ID {
			t.Fatalf("key leased again: want only the expired key-less run, got %v %v", got, err)
		}
		if run := MustGet(t, e, r2.ID); run.Status != durably.StatusPending {
			t.Fatalf("blocked run %+v", run)
		}
	}},
	{"R-053 S-032 concurrent claimers: one winner per run and per key", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		var jobs []*durably.JobHandle[Msg, Msg]
		for _, name := range []string{"a", "b", "c"} {
			jobs = append(jobs, durably.MustRegister(e, EchoJob(name)))
		}
		// 30 key-less runs, and for each of 3 keys one pending run in each
		// of 3 jobs: the key exclusion spans jobs.
		for i := range 30 {
			MustTrigger(t, jobs[i%3], Msg{fmt.Sprint(i)})
		}
		for k := range 3 {
			for _, j := range jobs {
				MustTrigger(t, j, Msg{"keyed"}, durably.WithConcurrencyKey(fmt.Sprintf("k%d", k)))
			}
		}
		seen := map[string]int{}
		keys := map[string]int{}
		claimConcurrently(t, h, e, 25, nil, func(runs []*store.Run) {
			for _, r := range runs {
				seen[r.ID]++
				if r.ConcurrencyKey != "" {
					keys[r.ConcurrencyKey]++
				}
			}
		})
		for id, n := range seen {
			if n != 1 {
				t.Errorf("run %s claimed %d times", id, n)
			}
		}
		for k, n := range keys {
			if n != 1 {
				t.Errorf("key %s leased %d times while unexpired", k, n)
			}
		}
		if len(seen) != 30+3 {
			t.Errorf("claimed %d runs, want 33 (30 key-less + one per key)", len(seen))
		}
	}},
	{"R-054 S-032 expired lease is reclaimed by the claim itself", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		j := durably.MustRegister(e, EchoJob("j"))
		st := e.Store()
		r := MustTrigger(t, j, Msg{"x"})
		t0 := time.Now()
		first, err := st.Claim(Ctx(t), claimReq("old", t0, 1))
		if err != nil || len(first) != 1 {
			t.Fatal(err)
		}
		if got, _ := st.Claim(Ctx(t), claimReq("new", t0.Add(29*time.Second), 1)); len(got) != 0 {
			t.Fatal("an unexpired lease was reclaimed")
		}
		second, err := st.Claim(Ctx(t), claimReq("new", t0.Add(31*time.Second), 1))
		if err != nil || len(second) != 1 || second[0].ID != r.ID {
			t.Fatalf("reclaim: %v %v", second, err)
		}
		if second[0].LeaseGeneration <= first[0].LeaseGeneration || second[0].LeaseOwner != "new" || !second[0].StartedAt.Equal(first[0].StartedAt) {
			t.Fatalf("first %+v second %+v", first[0], second[0])
		}
	}},
	{"R-055 R-057 worker runs up to MaxConcurrentRuns at once", func(t *testing.T, h *Harness) {
		var running, peak atomic.Int32
		gate := NewGate()
		e := h.Engine(func(c *durably.Config) { c.MaxConcurrentRuns = 3 })
		j := durably.MustRegister(e, &durably.Job[int, int]{Name: "slow", Run: func(ctx2 context.Context, s *durably.StepContext, in int) (int, error) {
			return durably.RunStep(s, "work", func(ctx context.Context) (int, error) {
				n := running.Add(1)
				defer running.Add(-1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				return in, gate.Wait(ctx, "work")
			})
		}})
		var ids []string
		for i := range 7 {
			ids = append(ids, MustTrigger(t, j, i).ID)
		}
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			gate.Entered(t)
		}
		select {
		case who := <-gate.entered:
			t.Fatalf("a fourth run (%s) started while three slots were busy", who)
		case <-time.After(50 * time.Millisecond):
		}
		gate.Open()
		for _, id := range ids {
			if _, err := e.WaitForRun(Ctx(t), id); err != nil {
				t.Fatal(err)
			}
		}
		if p := peak.Load(); p != 3 {
			t.Fatalf("peak concurrency %d, want 3", p)
		}
	}},
	{"R-057 one slot executes runs one after another in claim order", func(t *testing.T, h *Harness) {
		var mu sync.Mutex
		var order []int
		e := h.Engine(nil)
		j := durably.MustRegister(e, &durably.Job[int, int]{Name: "ordered", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			mu.Lock()
			order = append(order, in)
			mu.Unlock()
			return in, nil
		}})
		var last string
		for i := range 5 {
			last = MustTrigger(t, j, i).ID
		}
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		if _, err := e.WaitForRun(Ctx(t), last); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(order) != "[0 1 2 3 4]" {
			t.Fatalf("order %v", order)
		}
	}},
	{"D4 a trigger wakes an idle worker without waiting for the poll", func(t *testing.T, h *Harness) {
		st := &countingClaims{Store: h.Store}
		e := h.EngineOn(st, func(c *durably.Config) { c.PollingInterval = time.Hour })
		j := durably.MustRegister(e, EchoJob("j"))
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		// Let the worker go idle first: its first claim finds nothing and
		// the next poll is an hour away.
		Eventually(t, "the worker's first claim", func() bool { return st.calls.Load() >= 1 })
		out, err := j.TriggerAndWait(Ctx(t), Msg{"wake"}, durably.WithTimeout(10*time.Second), durably.WithPollInterval(time.Hour))
		if err != nil || out.Output.Message != "wake" {
			t.Fatalf("out %+v err %v", out, err)
		}
	}},
	{"D7 R-070 a run of an unregistered job fails and says so", func(t *testing.T, h *Harness) {
		producer := h.Engine(nil)
		j := durably.MustRegister(producer, EchoJob("gone"))
		r := MustTrigger(t, j, Msg{"x"})
		consumer := h.Engine(nil) // knows no jobs
		rec := Record(t, consumer)
		ok, err := consumer.ProcessOne(Ctx(t), "")
		if err != nil || !ok {
			t.Fatalf("ProcessOne %v %v", ok, err)
		}
		run := MustGet(t, consumer, r.ID)
		if run.Status != durably.StatusFailed || run.Error != "job not registered: gone" {
			t.Fatalf("run %+v", run)
		}
		evs := rec.Events(durably.EventRunFail)
		if len(evs) != 1 || evs[0].Error != "job not registered: gone" {
			t.Fatalf("run:fail events %+v", evs)
		}
		if n := len(rec.Events(durably.EventRunLeased)); n != 0 {
			t.Fatalf("%d run:leased events", n)
		}
	}},
	{"R-071 R-072 the body runs on the stored input; an output the job rejects fails the run", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		rec := Record(t, e)
		j := durably.MustRegister(e, &durably.Job[Msg, Msg]{
			Name: "strict-out",
			Run: func(ctx context.Context, s *durably.StepContext, in Msg) (Msg, error) {
				return Msg{Message: in.Message + "!"}, nil
			},
			ValidateOutput: func(out *Msg) error {
				if out.Message == "bad!" {
					return errors.New("message: must not be bad")
				}
				return nil
			},
		})
		good := MustTrigger(t, j, Msg{"good"}, durably.WithLabels(map[string]string{"org": "a"}))
		bad := MustTrigger(t, j, Msg{"bad"})
		if n, err := e.ProcessUntilIdle(Ctx(t), "", 0); err != nil || n != 2 {
			t.Fatalf("ProcessUntilIdle %d %v", n, err)
		}
		if run := MustGet(t, e, good.ID); run.Status != durably.StatusCompleted || string(run.Output) != `{"message":"good!"}` {
			t.Fatalf("good run %+v output %s", run, run.Output)
		}
		run := MustGet(t, e, bad.ID)
		if run.Status != durably.StatusFailed || run.Error != "Invalid output: message: must not be bad" || run.Output != nil {
			t.Fatalf("bad run %+v", run)
		}
		leased := rec.Events(durably.EventRunLeased)
		if len(leased) != 2 || leased[0].RunID != good.ID || string(leased[0].Input) != `{"message":"good"}` ||
			leased[0].Labels["org"] != "a" || leased[0].LeaseOwner == "" || leased[0].LeaseExpiresAt.IsZero() {
			t.Fatalf("run:leased events %+v", leased)
		}
		if evs := rec.Events(durably.EventRunComplete); len(evs) != 1 || evs[0].RunID != good.ID {
			t.Fatalf("run:complete events %+v", evs)
		}
	}},
	{"R-059 D9 a step completed just before Stop gives up is recorded before the lease goes back", func(t *testing.T, h *Harness) {
		st := &heldStepWrites{Store: h.Store, entered: make(chan struct{}), release: make(chan struct{})}
		e := h.EngineOn(st, nil)
		j := durably.MustRegister(e, &durably.Job[int, int]{Name: "j", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			if _, err := durably.RunStep(s, "a", func(context.Context) (int, error) { return 1, nil }); err != nil {
				return 0, err
			}
			<-ctx.Done() // until Stop stops waiting
			return 0, context.Cause(ctx)
		}})
		r := MustTrigger(t, j, 0)
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-st.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("step a was never written")
		}
		expired, cancel := context.WithCancel(Ctx(t))
		cancel()
		_ = e.Stop(expired) // aborts the run while step a's write is held up
		close(st.release)
		Eventually(t, "the run handed back", func() bool { return MustGet(t, e, r.ID).Status == durably.StatusPending })
		steps, err := e.GetSteps(Ctx(t), r.ID)
		if err != nil || len(steps) != 1 || steps[0].Name != "a" || steps[0].Status != store.StepCompleted {
			t.Fatalf("steps %+v err %v: a completed step was lost at shutdown", steps, err)
		}
	}},
	{"R-062 a step write that fails (not refused) hands the run back at once", func(t *testing.T, h *Harness) {
		st := &failingStepWrite{Store: h.Store}
		e := h.EngineOn(st, func(c *durably.Config) { c.LeaseDuration = time.Hour })
		rec := Record(t, e)
		var calls Counter
		j := durably.MustRegister(e, StepsJob("j", &calls))
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		// With an hour-long lease, only a handed-back run completes in time.
		out, err := j.TriggerAndWait(Ctx(t), StepsInput{Count: 2}, durably.WithTimeout(10*time.Second))
		if err != nil || out.Output != 3 {
			t.Fatalf("out %+v err %v", out, err)
		}
		evs := rec.Events(durably.EventWorkerError)
		if len(evs) != 1 || evs[0].RunID != out.RunID || !strings.Contains(evs[0].Error, "disk full") {
			t.Fatalf("worker:error events %+v", evs)
		}
		// Step 1's record was lost with the failed write, so it ran again;
		// step 2 ran once.
		if one, two := calls.Get(out.RunID+"/step-1"), calls.Get(out.RunID+"/step-2"); one != 2 || two != 1 {
			t.Fatalf("calls step-1 %d step-2 %d", one, two)
		}
	}},
	{"R-059 Stop waits for runs in flight", func(t *testing.T, h *Harness) {
		gate := NewGate()
		e := h.Engine(nil)
		j := durably.MustRegister(e, &durably.Job[int, int]{Name: "slow", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			return durably.RunStep(s, "work", func(ctx context.Context) (int, error) { return in, gate.Wait(ctx, "work") })
		}})
		r := MustTrigger(t, j, 7)
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		gate.Entered(t)
		stopped := make(chan error, 1)
		go func() { stopped <- e.Stop(Ctx(t)) }()
		select {
		case err := <-stopped:
			t.Fatalf("Stop returned (%v) while a run was in flight", err)
		case <-time.After(50 * time.Millisecond):
		}
		gate.Open()
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}
		if run := MustGet(t, e, r.ID); run.Status != durably.StatusCompleted {
			t.Fatalf("run %s after Stop", run.Status)
		}
		if err := e.Stop(Ctx(t)); err != nil {
			t.Fatalf("second Stop: %v", err)
		}
	}},
	{"D9 Stop deadline cancels runs and hands their leases back", func(t *testing.T, h *Harness) {
		gate := NewGate()
		e := h.Engine(nil)
		var cause Box[error]
		j := durably.MustRegister(e, &durably.Job[int, int]{Name: "stuck", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			return durably.RunStep(s, "work", func(ctx context.Context) (int, error) {
				err := gate.Wait(ctx, "work")
				cause.Set(context.Cause(ctx))
				return in, err
			})
		}})
		r := MustTrigger(t, j, 1)
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		gate.Entered(t)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := e.Stop(ctx); err == nil {
			t.Fatal("Stop met its deadline with a stuck run")
		}
		Eventually(t, "lease handed back", func() bool { return MustGet(t, e, r.ID).Status == durably.StatusPending })
		if !errorsIs(cause.Get(), durably.ErrShutdown) {
			t.Fatalf("step context cause %v", cause.Get())
		}
		steps, _ := e.GetSteps(Ctx(t), r.ID)
		if len(steps) != 0 {
			t.Fatalf("a shutdown recorded steps: %+v", steps)
		}
	}},
	{"R-056 (fixed) one worker id per engine, or the configured one", func(t *testing.T, h *Harness) {
		for _, configured := range []string{"", "api-7"} {
			e := h.Engine(func(c *durably.Config) { c.WorkerID = configured })
			j := durably.MustRegister(e, EchoJob("j"+configured))
			rec := Record(t, e)
			var ids []string
			for i := range 3 {
				ids = append(ids, MustTrigger(t, j, Msg{fmt.Sprint(i)}).ID)
			}
			if n, err := e.ProcessUntilIdle(Ctx(t), e.WorkerID(), 0); err != nil || n != 3 {
				t.Fatalf("processed %d, %v", n, err)
			}
			want := e.WorkerID()
			if configured != "" && want != configured || configured == "" && !strings.HasPrefix(want, "worker_") {
				t.Fatalf("worker id %q with configured %q", want, configured)
			}
			leased := rec.Events(durably.EventRunLeased)
			if len(leased) != len(ids) {
				t.Fatalf("%d run:leased events for %d runs", len(leased), len(ids))
			}
			for _, ev := range leased {
				if ev.LeaseOwner != want {
					t.Fatalf("run %s leased by %q, want %q", ev.RunID, ev.LeaseOwner, want)
				}
			}
		}
	}},
	{"R-058 (fixed) a failing claim waits for the next poll instead of spinning", func(t *testing.T, h *Harness) {
		st := &failingClaims{Store: h.Store}
		e := h.EngineOn(st, func(c *durably.Config) { c.PollingInterval = 50 * time.Millisecond })
		durably.MustRegister(e, EchoJob("j"))
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		Eventually(t, "three failed claims", func() bool { return st.calls.Load() >= 3 })
		start, first := time.Now(), st.calls.Load()
		Eventually(t, "three more failed claims", func() bool { return st.calls.Load() >= first+3 })
		// Three polls take at least 2.5 intervals; a spinning worker makes
		// thousands of calls meanwhile.
		if elapsed := time.Since(start); elapsed < 100*time.Millisecond {
			t.Fatalf("3 claims in %v: the worker spins on a failing database", elapsed)
		}
	}},
}

// heldStepWrites is a store whose first step write waits for release.
type heldStepWrites struct {
	store.Store
	once             sync.Once
	entered, release chan struct{}
}

func (h *heldStepWrites) SaveStep(ctx context.Context, lease store.Lease, step *store.Step) (bool, error) {
	h.once.Do(func() {
		close(h.entered)
		<-h.release
	})
	return h.Store.SaveStep(ctx, lease, step)
}

// failingStepWrite is a store whose first step write fails, as with a
// full disk.
type failingStepWrite struct {
	store.Store
	failed atomic.Bool
}

func (f *failingStepWrite) SaveStep(ctx context.Context, lease store.Lease, step *store.Step) (bool, error) {
	if f.failed.CompareAndSwap(false, true) {
		return false, errors.New("disk full")
	}
	return f.Store.SaveStep(ctx, lease, step)
}

// countingClaims is a store that counts the worker's claims.
type countingClaims struct {
	store.Store
	calls atomic.Int64
}

func (c *countingClaims) Claim(ctx context.Context, req store.ClaimRequest) ([]*store.Run, error) {
	runs, err := c.Store.Claim(ctx, req)
	c.calls.Add(1) // after the claim, so a count of 1 means "went idle"
	return runs, err
}

// failingClaims is a store whose claims fail, as with a database that is
// down.
type failingClaims struct {
	store.Store
	calls atomic.Int64
}

func (f *failingClaims) Claim(ctx context.Context, req store.ClaimRequest) ([]*store.Run, error) {
	f.calls.Add(1)
	return nil, errors.New("database is down")
}
