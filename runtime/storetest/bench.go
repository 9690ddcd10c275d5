package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// Benchmark runs the hot-path micro-benchmarks on the stores open returns,
// a fresh database per sub-benchmark: trigger, claim, step persist,
// complete and label-scoped list. Each operation is one durable commit
// unless its name says it runs in parallel, where the store may group
// several operations into one commit.
//
// The figures are for comparing stores and commits of this project with
// each other; the durably-bench command measures whole workloads.
func Benchmark(b *testing.B, open func(b *testing.B) store.Store) {
	for _, c := range []struct {
		name string
		run  func(b *testing.B, e *durably.Engine, st store.Store)
	}{
		{"Trigger", benchTrigger},
		{"TriggerParallel", benchTriggerParallel},
		{"Claim", func(b *testing.B, e *durably.Engine, st store.Store) { benchClaim(b, e, st, 1) }},
		// A worker with 8 slots claims its free slots plus a buffer,
		// about 4 to 16 runs per claim: one op is a claim of 8, per run
		// in ns/run.
		{"Claim8", func(b *testing.B, e *durably.Engine, st store.Store) { benchClaim(b, e, st, 8) }},
		{"ClaimEmpty", benchClaimEmpty},
		{"ClaimKeyed", benchClaimKeyed},
		{"StepPersist", benchStepPersist},
		{"StepPersistParallel", benchStepPersistParallel},
		{"Complete", benchComplete},
		{"ListOneLabel", func(b *testing.B, e *durably.Engine, st store.Store) {
			benchList(b, e, st, store.RunFilter{Labels: map[string]string{"organizationId": "org-42"}, Limit: 20})
		}},
		{"ListTwoLabels", func(b *testing.B, e *durably.Engine, st store.Store) {
			benchList(b, e, st, store.RunFilter{Labels: map[string]string{"organizationId": "org-42", "env": "staging"}, Limit: 20, DriveBy: "organizationId"})
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			st := open(b)
			e, err := durably.New(durably.Config{Store: st})
			if err != nil {
				b.Fatal(err)
			}
			if err := e.Migrate(context.Background()); err != nil {
				b.Fatal(err)
			}
			durably.MustRegister(e, EchoJob("echo"))
			c.run(b, e, st)
		})
	}
}

// The runs every benchmark triggers: a small input, two labels.
var (
	benchInput  = json.RawMessage(`{"message":"hello"}`)
	benchLabels = map[string]string{"organizationId": "org-07", "env": "production"}
)

func benchTrigger(b *testing.B, e *durably.Engine, _ store.Store) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.TriggerRaw(context.Background(), durably.TriggerRequest{JobName: "echo", Input: benchInput, Labels: benchLabels}); err != nil {
			b.Fatal(err)
		}
	}
}

func benchTriggerParallel(b *testing.B, e *durably.Engine, _ store.Store) {
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.TriggerRaw(context.Background(), durably.TriggerRequest{JobName: "echo", Input: benchInput, Labels: benchLabels}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// benchClaim claims limit runs per op; above one, it reports ns/run.
func benchClaim(b *testing.B, e *durably.Engine, st store.Store, limit int) {
	benchPending(b, e, limit*b.N)
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		got, err := st.Claim(context.Background(), store.ClaimRequest{WorkerID: "w", Now: now, Lease: time.Minute, Limit: limit})
		if err != nil || len(got) != limit {
			b.Fatalf("claim: %d runs, %v", len(got), err)
		}
	}
	if limit > 1 {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(limit*b.N), "ns/run")
	}
}

// benchClaimEmpty: a claim that finds nothing, what an idle worker pays at
// each poll, and every worker a wake-up sent in vain.
func benchClaimEmpty(b *testing.B, _ *durably.Engine, st store.Store) {
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		got, err := st.Claim(context.Background(), store.ClaimRequest{WorkerID: "w", Now: now, Lease: time.Minute, Limit: 8})
		if err != nil || len(got) != 0 {
			b.Fatalf("claim: %d runs, %v", len(got), err)
		}
	}
}

// benchClaimKeyed: runs with concurrency keys, one each, the claim that
// locks keys.
func benchClaimKeyed(b *testing.B, e *durably.Engine, st store.Store) {
	for start := 0; start < b.N; start += 500 {
		reqs := make([]durably.TriggerRequest, min(b.N-start, 500))
		for i := range reqs {
			reqs[i] = durably.TriggerRequest{JobName: "echo", Input: benchInput, Labels: benchLabels, ConcurrencyKey: fmt.Sprintf("k%d", start+i)}
		}
		if _, err := e.BatchTriggerRaw(context.Background(), reqs); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		got, err := st.Claim(context.Background(), store.ClaimRequest{WorkerID: "w", Now: now, Lease: time.Minute, Limit: 1})
		if err != nil || len(got) != 1 {
			b.Fatalf("claim: %d runs, %v", len(got), err)
		}
	}
}

func benchStepPersist(b *testing.B, e *durably.Engine, st store.Store) {
	leases := benchLeased(b, e, st, 1)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		saveStep(b, st, leases[0], i)
	}
}

func benchStepPersistParallel(b *testing.B, e *durably.Engine, st store.Store) {
	leases := benchLeased(b, e, st, 64)
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(next.Add(1))
			saveStep(b, st, leases[i%len(leases)], i)
		}
	})
}

func benchComplete(b *testing.B, e *durably.Engine, st store.Store) {
	leases := benchLeased(b, e, st, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for _, l := range leases {
		ok, err := st.FinishRun(context.Background(), l, store.Finish{Status: store.StatusCompleted, Output: benchInput, Now: time.Now()})
		if err != nil || !ok {
			b.Fatalf("finish: %v %v", ok, err)
		}
	}
}

// benchList lists a page of 20 of 10,000 runs over 100 tenants and two
// environments.
func benchList(b *testing.B, e *durably.Engine, st store.Store, filter store.RunFilter) {
	const runs, tenants = 10_000, 100
	for start := 0; start < runs; start += 500 {
		reqs := make([]durably.TriggerRequest, 500)
		for i := range reqs {
			n := start + i
			env := "production"
			if (n/tenants)%2 == 1 {
				env = "staging"
			}
			reqs[i] = durably.TriggerRequest{JobName: "echo", Input: benchInput,
				Labels: map[string]string{"organizationId": fmt.Sprintf("org-%02d", n%tenants), "env": env}}
		}
		if _, err := e.BatchTriggerRaw(context.Background(), reqs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		got, err := st.ListRuns(context.Background(), filter)
		if err != nil || len(got) != 20 {
			b.Fatalf("list: %d runs, %v", len(got), err)
		}
	}
}

// benchPending inserts n pending runs in batches.
func benchPending(b *testing.B, e *durably.Engine, n int) {
	b.Helper()
	for n > 0 {
		reqs := make([]durably.TriggerRequest, min(n, 500))
		for i := range reqs {
			reqs[i] = durably.TriggerRequest{JobName: "echo", Input: benchInput, Labels: benchLabels}
		}
		if _, err := e.BatchTriggerRaw(context.Background(), reqs); err != nil {
			b.Fatal(err)
		}
		n -= len(reqs)
	}
}

// benchLeased inserts n runs and claims them all.
func benchLeased(b *testing.B, e *durably.Engine, st store.Store, n int) []store.Lease {
	b.Helper()
	benchPending(b, e, n)
	var leases []store.Lease
	for len(leases) < n {
		got, err := st.Claim(context.Background(), store.ClaimRequest{WorkerID: "w", Now: time.Now(), Lease: time.Hour, Limit: min(n-len(leases), 500)})
		if err != nil || len(got) == 0 {
			b.Fatalf("claim: %d runs, %v", len(got), err)
		}
		for _, r := range got {
			leases = append(leases, store.Lease{RunID: r.ID, Generation: r.LeaseGeneration})
		}
	}
	return leases
}

func saveStep(b *testing.B, st store.Store, l store.Lease, i int) {
	now := time.Now()
	ok, err := st.SaveStep(context.Background(), l, &store.Step{
		ID: fmt.Sprintf("step-%s-%d", l.RunID, i), RunID: l.RunID, Name: fmt.Sprintf("s%d", i), Index: i,
		Status: store.StepCompleted, Output: json.RawMessage(`{"n":1}`), StartedAt: now, CompletedAt: now,
	})
	if err != nil || !ok {
		b.Errorf("save step: %v %v", ok, err)
	}
}
