package storetest

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// tenantEngine is an engine whose keys are scoped by the "org" label (D11).
func tenantEngine(h *Harness, cfg func(*durably.Config)) *durably.Engine {
	return h.Engine(func(c *durably.Config) {
		c.TenantLabels = []string{"org"}
		if cfg != nil {
			cfg(c)
		}
	})
}

func org(o string) durably.Option { return durably.WithLabels(map[string]string{"org": o}) }

// mustTriggerRes triggers and returns the whole result.
func mustTriggerRes[I, O any](t *testing.T, j *durably.JobHandle[I, O], in I, opts ...durably.Option) *durably.TriggerResult {
	t.Helper()
	res, err := j.Trigger(Ctx(t), in, opts...)
	if err != nil {
		t.Fatalf("trigger %s: %v", j.Name(), err)
	}
	return res
}

var tenantCases = []Case{
	{"D11 R-033 an idempotency key is per tenant: two tenants get two runs, in either order", func(t *testing.T, h *Harness) {
		for _, order := range [][2]string{{"org-a", "org-b"}, {"org-b", "org-a"}} {
			t.Run(order[0]+" first", func(t *testing.T) {
				e := tenantEngine(h, nil)
				j := durably.MustRegister(e, EchoJob("idem-"+order[0]))
				first := mustTriggerRes(t, j, Msg{order[0]}, org(order[0]), durably.WithIdempotencyKey("invoice-42"))
				second := mustTriggerRes(t, j, Msg{order[1]}, org(order[1]), durably.WithIdempotencyKey("invoice-42"))
				if first.Disposition != durably.Created || second.Disposition != durably.Created || first.Run.ID == second.Run.ID {
					t.Fatalf("same key in two tenants: %s %s, %s %s; want two created runs",
						first.Run.ID, first.Disposition, second.Run.ID, second.Disposition)
				}
				if got := second.Run.Labels["org"]; got != order[1] {
					t.Fatalf("%s got a run of %s", order[1], got)
				}
				// Each tenant's repeat finds its own run, never the other's.
				for _, want := range []*durably.TriggerResult{first, second} {
					o := want.Run.Labels["org"]
					again := mustTriggerRes(t, j, Msg{"again"}, org(o), durably.WithIdempotencyKey("invoice-42"))
					if again.Disposition != durably.Idempotent || again.Run.ID != want.Run.ID {
						t.Fatalf("%s repeating its key got %s (%s), want its own run %s", o, again.Run.ID, again.Disposition, want.Run.ID)
					}
				}
				// Through the untyped path (HTTP) and a batch too.
				raw, err := e.TriggerRaw(Ctx(t), durably.TriggerRequest{JobName: j.Name(), Input: json.RawMessage(`{"message":"c"}`),
					IdempotencyKey: "invoice-42", Labels: map[string]string{"org": "org-c"}})
				if err != nil || raw.Disposition != durably.Created {
					t.Fatalf("org-c raw trigger: %+v %v", raw, err)
				}
				batch, err := j.BatchTrigger(Ctx(t), []durably.BatchItem[Msg]{
					{Input: Msg{"d"}, Options: []durably.Option{org("org-d"), durably.WithIdempotencyKey("invoice-42")}},
					{Input: Msg{"e"}, Options: []durably.Option{org("org-e"), durably.WithIdempotencyKey("invoice-42")}},
					{Input: Msg{"a"}, Options: []durably.Option{org(order[0]), durably.WithIdempotencyKey("invoice-42")}},
				})
				if err != nil {
					t.Fatal(err)
				}
				if batch[0].Disposition != durably.Created || batch[1].Disposition != durably.Created ||
					batch[2].Disposition != durably.Idempotent || batch[2].Run.ID != first.Run.ID {
					t.Fatalf("batch: %v %v %v", batch[0].Disposition, batch[1].Disposition, batch[2].Disposition)
				}
			})
		}
	}},
	{"D11 R-036 R-051 a concurrency key is per tenant: no conflict, no waiting across tenants", func(t *testing.T, h *Harness) {
		gate := NewGate()
		e := tenantEngine(h, func(c *durably.Config) { c.MaxConcurrentRuns = 4 })
		j := durably.MustRegister(e, &durably.Job[string, string]{Name: "keyed", Run: func(ctx context.Context, s *durably.StepContext, in string) (string, error) {
			return durably.RunStep(s, "work", func(ctx context.Context) (string, error) { return in, gate.Wait(ctx, in) })
		}})
		a := MustTrigger(t, j, "org-a", org("org-a"), durably.WithConcurrencyKey("nightly"))
		b := MustTrigger(t, j, "org-b", org("org-b"), durably.WithConcurrencyKey("nightly"))
		// Within one tenant the key still allows one pending run.
		_, err := j.Trigger(Ctx(t), "org-a", org("org-a"), durably.WithConcurrencyKey("nightly"))
		WantKind(t, err, durably.ErrConflict, "")
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		// Both execute at once: neither waits for the other's key.
		got := map[string]bool{gate.Entered(t): true, gate.Entered(t): true}
		if !got["org-a"] || !got["org-b"] {
			t.Fatalf("executing together: %v", got)
		}
		gate.Open()
		for _, id := range []string{a.ID, b.ID} {
			if run, err := e.WaitForRun(Ctx(t), id); err != nil || run.Status != durably.StatusCompleted {
				t.Fatalf("run %s: %+v %v", id, run, err)
			}
		}
	}},
	{"D11 R-051 a live lease blocks its key in its own tenant only", func(t *testing.T, h *Harness) {
		e := tenantEngine(h, nil)
		st := e.Store()
		ctx := Ctx(t)
		now := time.Now()
		a := durably.MustRegister(e, EchoJob("a"))
		b := durably.MustRegister(e, EchoJob("b"))
		a1 := MustTrigger(t, a, Msg{"a1"}, org("org-a"), durably.WithConcurrencyKey("k"))
		if got, err := st.Claim(ctx, claimReq("w", now, 5)); err != nil || len(got) != 1 || got[0].ID != a1.ID {
			t.Fatalf("claim a1: %v %v", got, err)
		}
		a2 := MustTrigger(t, b, Msg{"a2"}, org("org-a"), durably.WithConcurrencyKey("k")) // another job, same tenant
		b1 := MustTrigger(t, b, Msg{"b1"}, org("org-b"), durably.WithConcurrencyKey("k"))
		got, err := st.Claim(ctx, claimReq("w", now, 5))
		if err != nil || len(got) != 1 || got[0].ID != b1.ID {
			t.Fatalf("want only org-b's run while org-a's key is leased, got %v %v", got, err)
		}
		if run := MustGet(t, e, a2.ID); run.Status != durably.StatusPending {
			t.Fatalf("org-a's second run ran beside its key's lease: %+v", run)
		}
	}},
	{"D11 R-038 coalescing never returns another tenant's run", func(t *testing.T, h *Harness) {
		e := tenantEngine(h, nil)
		rec := Record(t, e)
		j := durably.MustRegister(e, EchoJob("j"))
		skip := []durably.Option{durably.WithConcurrencyKey("sync"), durably.WithCoalesceSkip()}
		a := mustTriggerRes(t, j, Msg{"a"}, append(skip, org("org-a"))...)
		b := mustTriggerRes(t, j, Msg{"b"}, append(skip, org("org-b"))...)
		if b.Disposition != durably.Created || b.Run.ID == a.Run.ID || b.Run.Labels["org"] != "org-b" {
			t.Fatalf("org-b coalesced onto %s (%s, %v)", b.Run.ID, b.Disposition, b.Run.Labels)
		}
		again := mustTriggerRes(t, j, Msg{"a again"}, append(skip, org("org-a"))...)
		if again.Disposition != durably.Coalesced || again.Run.ID != a.Run.ID {
			t.Fatalf("org-a's repeat: %s %s, want coalesced onto %s", again.Run.ID, again.Disposition, a.Run.ID)
		}
		for _, ev := range rec.Events(durably.EventRunCoalesced) {
			if ev.RunID != a.Run.ID {
				t.Fatalf("run:coalesced for %s", ev.RunID)
			}
		}
	}},
	{"D11 WithGlobalKeys keeps a key global across tenants; scoped and global keys never meet", func(t *testing.T, h *Harness) {
		e := tenantEngine(h, nil)
		j := durably.MustRegister(e, EchoJob("j"))
		g := durably.WithGlobalKeys()
		a := mustTriggerRes(t, j, Msg{"a"}, org("org-a"), g, durably.WithIdempotencyKey("once"))
		b := mustTriggerRes(t, j, Msg{"b"}, org("org-b"), g, durably.WithIdempotencyKey("once"))
		if b.Disposition != durably.Idempotent || b.Run.ID != a.Run.ID {
			t.Fatalf("global key: %s %s, want %s", b.Run.ID, b.Disposition, a.Run.ID)
		}
		MustTrigger(t, j, Msg{"a"}, org("org-a"), g, durably.WithConcurrencyKey("deploy"))
		_, err := j.Trigger(Ctx(t), Msg{"b"}, org("org-b"), g, durably.WithConcurrencyKey("deploy"))
		WantKind(t, err, durably.ErrConflict, "")
		// The same key scoped to a tenant, or to no tenant (the label is
		// missing), is another key.
		for _, opts := range [][]durably.Option{{org("org-a")}, nil} {
			res := mustTriggerRes(t, j, Msg{"scoped"}, append(opts, durably.WithIdempotencyKey("once"))...)
			if res.Disposition != durably.Created || res.Run.ID == a.Run.ID {
				t.Fatalf("scoped key %v found the global run: %s %s", opts, res.Run.ID, res.Disposition)
			}
		}
		// An engine without TenantLabels keeps every key global.
		plain := h.Engine(nil)
		pj := durably.MustRegister(plain, EchoJob("j"))
		if res := mustTriggerRes(t, pj, Msg{"x"}, org("org-z"), durably.WithIdempotencyKey("once")); res.Run.ID != a.Run.ID {
			t.Fatalf("without TenantLabels: %s %s, want the global run %s", res.Run.ID, res.Disposition, a.Run.ID)
		}
	}},
	{"D11 Retrigger keeps the run's tenant scope", func(t *testing.T, h *Harness) {
		e := tenantEngine(h, nil)
		j := durably.MustRegister(e, EchoJob("j"))
		done := MustTrigger(t, j, Msg{"a"}, org("org-a"), durably.WithConcurrencyKey("k"))
		if n, err := e.ProcessUntilIdle(Ctx(t), "", 0); err != nil || n != 1 {
			t.Fatalf("processed %d, %v", n, err)
		}
		MustTrigger(t, j, Msg{"b"}, org("org-b"), durably.WithConcurrencyKey("k"))
		again, err := e.Retrigger(Ctx(t), done.ID)
		if err != nil {
			t.Fatalf("retrigger beside another tenant's pending run of the key: %v", err)
		}
		_, err = e.Retrigger(Ctx(t), done.ID)
		WantPrefix(t, err, durably.ErrConflict, "A pending run already exists")
		if again.Labels["org"] != "org-a" {
			t.Fatalf("retriggered run %+v", again)
		}
	}},
	{"D11 D12 R-053 concurrent claimers: one live lease per tenant and key, expired leases with pending siblings included", func(t *testing.T, h *Harness) {
		e := tenantEngine(h, nil)
		var jobs []*durably.JobHandle[Msg, Msg]
		for _, name := range []string{"a", "b", "c"} {
			jobs = append(jobs, durably.MustRegister(e, EchoJob(name)))
		}
		orgs, keys := []string{"org-1", "org-2"}, []string{"k0", "k1", "k2"}
		// For each tenant and key: a run of a worker that crashed an hour
		// ago, then a pending run of the key in each job.
		for _, o := range orgs {
			for _, k := range keys {
				MustTrigger(t, jobs[0], Msg{"crashed"}, org(o), durably.WithConcurrencyKey(k))
			}
		}
		if got, err := e.Store().Claim(Ctx(t), claimReq("crashed", time.Now().Add(-time.Hour), 100)); err != nil || len(got) != 6 {
			t.Fatalf("claim: %d %v", len(got), err)
		}
		for _, o := range orgs {
			for _, k := range keys {
				for _, j := range jobs {
					MustTrigger(t, j, Msg{"pending"}, org(o), durably.WithConcurrencyKey(k))
				}
			}
		}
		leased := map[string][]string{}
		// Maintenance racing the claims, as an idle worker's would.
		release := func(st store.Store, now time.Time) {
			if _, err := st.ReleaseExpiredLeases(Ctx(t), now); err != nil {
				t.Errorf("release expired: %v", err)
			}
		}
		claimConcurrently(t, h, e, 10, release, func(runs []*store.Run) {
			for _, r := range runs {
				k := r.Labels["org"] + "/" + r.ConcurrencyKey
				leased[k] = append(leased[k], r.ID)
			}
		})
		if len(leased) != len(orgs)*len(keys) {
			t.Errorf("leased keys %v, want one run for each of %d tenant keys", leased, len(orgs)*len(keys))
		}
		for k, ids := range leased {
			if len(ids) != 1 {
				t.Errorf("key %s leased %d times while unexpired: %v", k, len(ids), ids)
			}
		}
		failed, err := e.ListRuns(Ctx(t), durably.RunFilter{Statuses: []durably.Status{durably.StatusFailed}})
		if err != nil || len(failed) != 0 {
			t.Errorf("failed runs %v, %v", failed, err)
		}
	}},
	{"D12 Stop hands back a run whose key has a pending sibling at once", func(t *testing.T, h *Harness) {
		gate := NewGate()
		e := h.Engine(nil) // 30s leases: waiting for expiry would fail the test
		j := durably.MustRegister(e, &durably.Job[int, int]{Name: "keyed", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			return durably.RunStep(s, "work", func(ctx context.Context) (int, error) { return in, gate.Wait(ctx, "work") })
		}})
		r1 := MustTrigger(t, j, 1, durably.WithConcurrencyKey("k"))
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		gate.Entered(t)
		held := MustGet(t, e, r1.ID)
		sibling := MustTrigger(t, j, 2, durably.WithConcurrencyKey("k"))
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := e.Stop(ctx); err == nil {
			t.Fatal("Stop met its deadline with a stuck run")
		}
		Eventually(t, "lease handed back", func() bool {
			run := MustGet(t, e, r1.ID)
			return run.LeaseGeneration > held.LeaseGeneration && !run.LeaseExpiresAt.After(time.Now())
		})
		// The old holder's writes are refused from the hand-back on.
		st := e.Store()
		old := store.Lease{RunID: r1.ID, Generation: held.LeaseGeneration}
		now := time.Now()
		step := &store.Step{ID: "01STEPSTALE000000000000D12", RunID: r1.ID, Name: "work", Status: store.StepCompleted, Output: json.RawMessage(`1`), StartedAt: now, CompletedAt: now}
		if ok, err := st.SaveStep(Ctx(t), old, step); ok || err != nil {
			t.Fatalf("the stopped holder's step write: %v %v", ok, err)
		}
		// Another worker takes it over now, not after 30s, and before its
		// younger sibling, which then waits for the key.
		got, err := st.Claim(Ctx(t), claimReq("w2", time.Now(), 5))
		if err != nil || len(got) != 1 || got[0].ID != r1.ID {
			t.Fatalf("claim after the hand-back: %v %v; want %s at once", got, err, r1.ID)
		}
		if run := MustGet(t, e, sibling.ID); run.Status != durably.StatusPending {
			t.Fatalf("sibling %+v", run)
		}
	}},
	{"D12 an expired lease with a pending sibling is resumed, not failed", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		st := e.Store()
		ctx := Ctx(t)
		var calls Counter
		j := durably.MustRegister(e, StepsJob("j", &calls))
		r1 := MustTrigger(t, j, StepsInput{Count: 2}, durably.WithConcurrencyKey("k"))
		// A worker that crashed an hour ago after step-1.
		runs, err := st.Claim(ctx, claimReq("crashed", time.Now().Add(-time.Hour), 1))
		if err != nil || len(runs) != 1 {
			t.Fatalf("claim: %v %v", runs, err)
		}
		t0 := time.Now().Add(-time.Hour)
		if ok, err := st.SaveStep(ctx, store.Lease{RunID: r1.ID, Generation: runs[0].LeaseGeneration},
			&store.Step{ID: "01STEPCRASHED0000000000D12", RunID: r1.ID, Name: "step-1", Index: 0, Status: store.StepCompleted,
				Output: json.RawMessage(`1`), StartedAt: t0, CompletedAt: t0}); !ok || err != nil {
			t.Fatalf("step-1: %v %v", ok, err)
		}
		sibling := MustTrigger(t, j, StepsInput{Count: 1}, durably.WithConcurrencyKey("k"))
		// Idle maintenance leaves it leased (it may not become pending)...
		if n, err := st.ReleaseExpiredLeases(ctx, time.Now()); err != nil || n != 0 {
			t.Fatalf("released %d, %v", n, err)
		}
		if run := MustGet(t, e, r1.ID); run.Status != durably.StatusLeased || run.Error != "" {
			t.Fatalf("after maintenance: %+v", run)
		}
		// ...and the next claims resume it, then run its sibling.
		for _, want := range []string{r1.ID, sibling.ID} {
			if ok, err := e.ProcessOne(ctx, ""); err != nil || !ok {
				t.Fatalf("process: %v %v", ok, err)
			}
			if run := MustGet(t, e, want); run.Status != durably.StatusCompleted {
				t.Fatalf("run %s: %+v", want, run)
			}
		}
		if calls.Get(r1.ID+"/step-1") != 0 || calls.Get(r1.ID+"/step-2") != 1 {
			t.Fatalf("resumed from the wrong step: step-1 ran %d times, step-2 %d", calls.Get(r1.ID+"/step-1"), calls.Get(r1.ID+"/step-2"))
		}
	}},
	{"S-015 D11 a version-1 database migrates to key scopes with its runs intact", func(t *testing.T, h *Harness) {
		ctx := Ctx(t)
		// A run as version 1 stored it. Written in SQL because the store's
		// statements need the latest version; plain SQL both engines take.
		seed := `
INSERT INTO durably_runs (id, job_name, input, status, idempotency_key, concurrency_key, labels, created_at, updated_at)
VALUES ('01J00000000000000000000MGR', 'j', '{"message":"legacy"}', 'pending', 'idem', 'ck', '{"org":"org-a"}',
        '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');
INSERT INTO durably_run_labels (run_id, key, value, created_at)
VALUES ('01J00000000000000000000MGR', 'org', 'org-a', '2026-01-01T00:00:00.000Z');`
		if err := h.migrator().MigrateTo(ctx, 1, seed); err != nil {
			t.Fatalf("migrate to version 1: %v", err)
		}
		e := h.Engine(nil) // migrates to the latest version
		const id = "01J00000000000000000000MGR"
		run := MustGet(t, e, id)
		if run.JobName != "j" || string(run.Input) != `{"message":"legacy"}` || run.Status != durably.StatusPending ||
			run.IdempotencyKey != "idem" || run.ConcurrencyKey != "ck" || run.Labels["org"] != "org-a" || run.KeyScope != "" {
			t.Fatalf("legacy run after migration: %+v", run)
		}
		// Its keys are global, as they were.
		j := durably.MustRegister(e, EchoJob("j"))
		if res := mustTriggerRes(t, j, Msg{"x"}, durably.WithIdempotencyKey("idem")); res.Disposition != durably.Idempotent || res.Run.ID != id {
			t.Fatalf("legacy idempotency key: %s %s", res.Run.ID, res.Disposition)
		}
		_, err := j.Trigger(ctx, Msg{"x"}, durably.WithConcurrencyKey("ck"))
		WantKind(t, err, durably.ErrConflict, "")
		// A tenant-scoped engine sees them as another scope's.
		scoped := tenantEngine(h, nil)
		sj := durably.MustRegister(scoped, EchoJob("j"))
		if res := mustTriggerRes(t, sj, Msg{"x"}, org("org-a"), durably.WithIdempotencyKey("idem")); res.Disposition != durably.Created {
			t.Fatalf("scoped key after migration: %s %s", res.Run.ID, res.Disposition)
		}
		// It still runs.
		if ok, err := e.ProcessOne(ctx, ""); err != nil || !ok {
			t.Fatalf("process: %v %v", ok, err)
		}
		if run := MustGet(t, e, id); run.Status != durably.StatusCompleted || string(run.Output) != `{"message":"legacy"}` {
			t.Fatalf("legacy run: %+v", run)
		}
		// Migrating again changes nothing.
		if err := h.Store.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	}},
	{"S-015 a version-2 database migrates to the latest schema with every value intact", func(t *testing.T, h *Harness) {
		ctx := Ctx(t)
		// Rows as version 2 stored them (text timestamps, labels and JSON as
		// text), in SQL both engines take. The output's odd spacing and key
		// order must survive byte for byte (S-003).
		const seed = `
INSERT INTO durably_runs (id, job_name, input, status, concurrency_key, key_scope, labels, current_step_index, completed_step_count,
  progress, lease_owner, lease_expires_at, lease_generation, started_at, created_at, updated_at)
VALUES ('01J0000000000000000000LEAS', 'j', '{"n":1}', 'leased', 'ck', '[["org","org-a"]]', '{"env":"prod","org":"org-a"}', 1, 1,
  '{"current":2,"total":5}', 'worker-1', '2026-01-01T00:10:00.000Z', 3, '2026-01-01T00:00:01.250Z',
  '2026-01-01T00:00:00.125Z', '2026-01-01T00:00:02.000Z');
INSERT INTO durably_run_labels (run_id, key, value, created_at) VALUES
  ('01J0000000000000000000LEAS', 'env', 'prod', '2026-01-01T00:00:00.125Z'),
  ('01J0000000000000000000LEAS', 'org', 'org-a', '2026-01-01T00:00:00.125Z');
INSERT INTO durably_steps (id, run_id, name, "index", status, output, started_at, completed_at)
VALUES ('01J0000000000000000000STEP', '01J0000000000000000000LEAS', 'first', 0, 'completed', '{"x":1}',
  '2026-01-01T00:00:01.500Z', '2026-01-01T00:00:01.999Z');
INSERT INTO durably_logs (id, run_id, step_name, level, message, data, created_at)
VALUES ('01J00000000000000000000LOG', '01J0000000000000000000LEAS', 'first', 'info', 'hello', '{"k":"v"}', '2026-01-01T00:00:01.600Z');
INSERT INTO durably_runs (id, job_name, input, status, labels, output, started_at, completed_at, created_at, updated_at)
VALUES ('01J0000000000000000000DONE', 'j', '{"n":2}', 'completed', '{}', '{"b": 1,  "a":2}',
  '2026-01-01T00:01:00.000Z', '2026-01-01T00:05:00.123Z', '2026-01-01T00:00:59.000Z', '2026-01-01T00:05:00.123Z');`
		if err := h.migrator().MigrateTo(ctx, 2, seed); err != nil {
			t.Fatalf("migrate to version 2: %v", err)
		}
		if err := h.Store.Migrate(ctx); err != nil {
			t.Fatalf("migrate to the latest version: %v", err)
		}
		at := func(s string) time.Time {
			v, err := store.ParseTime(s)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		run, err := h.Store.GetRun(ctx, "01J0000000000000000000LEAS")
		if err != nil || run == nil {
			t.Fatalf("leased run: %v %v", run, err)
		}
		total := 5
		want := &store.Run{ID: "01J0000000000000000000LEAS", JobName: "j", Input: []byte(`{"n":1}`), Status: store.StatusLeased,
			ConcurrencyKey: "ck", KeyScope: `[["org","org-a"]]`, CurrentStepIndex: 1, CompletedStepCount: 1,
			Progress: &store.Progress{Current: 2, Total: &total}, Labels: map[string]string{"env": "prod", "org": "org-a"},
			LeaseOwner: "worker-1", LeaseExpiresAt: at("2026-01-01T00:10:00.000Z"), LeaseGeneration: 3,
			StartedAt: at("2026-01-01T00:00:01.250Z"), CreatedAt: at("2026-01-01T00:00:00.125Z"), UpdatedAt: at("2026-01-01T00:00:02.000Z")}
		if !reflect.DeepEqual(run, want) {
			t.Errorf("leased run after migration:\n got %+v\nwant %+v", run, want)
		}
		done, err := h.Store.GetRun(ctx, "01J0000000000000000000DONE")
		if err != nil || done == nil {
			t.Fatalf("completed run: %v %v", done, err)
		}
		if string(done.Output) != `{"b": 1,  "a":2}` || !done.CompletedAt.Equal(at("2026-01-01T00:05:00.123Z")) || len(done.Labels) != 0 {
			t.Errorf("completed run after migration: output %s, completed %v, labels %v", done.Output, done.CompletedAt, done.Labels)
		}
		steps, err := h.Store.GetSteps(ctx, run.ID)
		if err != nil || len(steps) != 1 || string(steps[0].Output) != `{"x":1}` ||
			!steps[0].StartedAt.Equal(at("2026-01-01T00:00:01.500Z")) || !steps[0].CompletedAt.Equal(at("2026-01-01T00:00:01.999Z")) {
			t.Errorf("steps after migration: %+v %v", steps, err)
		}
		logs, err := h.Store.GetLogs(ctx, run.ID)
		if err != nil || len(logs) != 1 || string(logs[0].Data) != `{"k":"v"}` || !logs[0].CreatedAt.Equal(at("2026-01-01T00:00:01.600Z")) {
			t.Errorf("logs after migration: %+v %v", logs, err)
		}
		// The converted values still compare, filter and order as times and labels.
		listed, err := h.Store.ListRuns(ctx, store.RunFilter{Labels: map[string]string{"org": "org-a", "env": "prod"}})
		if err != nil || len(listed) != 1 || listed[0].ID != run.ID {
			t.Errorf("label filter after migration: %v %v", listed, err)
		}
		if n, err := h.Store.ReleaseExpiredLeases(ctx, at("2026-01-01T00:09:59.999Z")); err != nil || n != 0 {
			t.Errorf("a lease 1ms before its expiry was released: %d %v", n, err)
		}
		if n, err := h.Store.ReleaseExpiredLeases(ctx, at("2026-01-01T00:10:00.000Z")); err != nil || n != 1 {
			t.Errorf("the lease at its expiry was not released: %d %v", n, err)
		}
		if n, err := h.Store.PurgeRuns(ctx, at("2026-01-01T00:05:00.123Z"), 10); err != nil || n != 0 {
			t.Errorf("purged a run completed exactly at the bound: %d %v", n, err)
		}
		if n, err := h.Store.PurgeRuns(ctx, at("2026-01-01T00:05:00.124Z"), 10); err != nil || n != 1 {
			t.Errorf("purge after migration: %d %v", n, err)
		}
		// Migrating again changes nothing.
		if err := h.Store.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	}},
}
