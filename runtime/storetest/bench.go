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
	engine := func(b *testing.B) (*durably.Engine, store.Store) {
		st := open(b)
		e, err := durably.New(durably.Config{Store: st})
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Migrate(context.Background()); err != nil {
			b.Fatal(err)
		}
		durably.MustRegister(e, EchoJob("echo"))
		return e, st
	}
	ctx := context.Background()
	input := json.RawMessage(`{"message":"hello"}`)
	labels := map[string]string{"organizationId": "org-07", "env": "production"}

	b.Run("Trigger", func(b *testing.B) {
		e, _ := engine(b)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e.TriggerRaw(ctx, durably.TriggerRequest{JobName: "echo", Input: input, Labels: labels}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("TriggerParallel", func(b *testing.B) {
		e, _ := engine(b)
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := e.TriggerRaw(ctx, durably.TriggerRequest{JobName: "echo", Input: input, Labels: labels}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("Claim", func(b *testing.B) {
		e, st := engine(b)
		benchPending(b, e, b.N, input, labels)
		now := time.Now()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			got, err := st.Claim(ctx, store.ClaimRequest{WorkerID: "w", Now: now, Lease: time.Minute, Limit: 1})
			if err != nil || len(got) != 1 {
				b.Fatalf("claim: %d runs, %v", len(got), err)
			}
		}
	})
	// A worker with 8 slots claims its free slots plus a buffer, about 4
	// to 16 runs per claim: one op is a claim of 8, per run in ns/run.
	b.Run("Claim8", func(b *testing.B) {
		e, st := engine(b)
		benchPending(b, e, 8*b.N, input, labels)
		now := time.Now()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			got, err := st.Claim(ctx, store.ClaimRequest{WorkerID: "w", Now: now, Lease: time.Minute, Limit: 8})
			if err != nil || len(got) != 8 {
				b.Fatalf("claim: %d runs, %v", len(got), err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(8*b.N), "ns/run")
	})
	// A claim that finds nothing: what an idle worker pays at each poll,
	// and every worker a wake-up sent in vain.
	b.Run("ClaimEmpty", func(b *testing.B) {
		_, st := engine(b)
		now := time.Now()
		b.ReportAllocs()
		for b.Loop() {
			got, err := st.Claim(ctx, store.ClaimRequest{WorkerID: "w", Now: now, Lease: time.Minute, Limit: 8})
			if err != nil || len(got) != 0 {
				b.Fatalf("claim: %d runs, %v", len(got), err)
			}
		}
	})
	// Runs with concurrency keys, one each: the claim that locks keys.
	b.Run("ClaimKeyed", func(b *testing.B) {
		e, st := engine(b)
		for start := 0; start < b.N; start += 500 {
			reqs := make([]durably.TriggerRequest, min(b.N-start, 500))
			for i := range reqs {
				reqs[i] = durably.TriggerRequest{JobName: "echo", Input: input, Labels: labels, ConcurrencyKey: fmt.Sprintf("k%d", start+i)}
			}
			if _, err := e.BatchTriggerRaw(ctx, reqs); err != nil {
				b.Fatal(err)
			}
		}
		now := time.Now()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			got, err := st.Claim(ctx, store.ClaimRequest{WorkerID: "w", Now: now, Lease: time.Minute, Limit: 1})
			if err != nil || len(got) != 1 {
				b.Fatalf("claim: %d runs, %v", len(got), err)
			}
		}
	})
	b.Run("StepPersist", func(b *testing.B) {
		e, st := engine(b)
		leases := benchLeased(b, e, st, 1, input, labels)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			saveStep(b, st, leases[0], i)
		}
	})
	b.Run("StepPersistParallel", func(b *testing.B) {
		e, st := engine(b)
		leases := benchLeased(b, e, st, 64, input, labels)
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
	})
	b.Run("Complete", func(b *testing.B) {
		e, st := engine(b)
		leases := benchLeased(b, e, st, b.N, input, labels)
		b.ReportAllocs()
		b.ResetTimer()
		for _, l := range leases {
			ok, err := st.FinishRun(ctx, l, store.Finish{Status: store.StatusCompleted, Output: input, Now: time.Now()})
			if err != nil || !ok {
				b.Fatalf("finish: %v %v", ok, err)
			}
		}
	})
	for _, c := range []struct {
		name   string
		filter store.RunFilter
	}{
		{"ListOneLabel", store.RunFilter{Labels: map[string]string{"organizationId": "org-42"}, Limit: 20}},
		{"ListTwoLabels", store.RunFilter{Labels: map[string]string{"organizationId": "org-42", "env": "staging"}, Limit: 20, DriveBy: "organizationId"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			e, st := engine(b)
			// 10,000 runs over 100 tenants and two environments.
			const runs, tenants = 10_000, 100
			for start := 0; start < runs; start += 500 {
				reqs := make([]durably.TriggerRequest, 500)
				for i := range reqs {
					n := start + i
					env := "production"
					if (n/tenants)%2 == 1 {
						env = "staging"
					}
					reqs[i] = durably.TriggerRequest{JobName: "echo", Input: input,
						Labels: map[string]string{"organizationId": fmt.Sprintf("org-%02d", n%tenants), "env": env}}
				}
				if _, err := e.BatchTriggerRaw(ctx, reqs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				got, err := st.ListRuns(ctx, c.filter)
				if err != nil || len(got) != 20 {
					b.Fatalf("list: %d runs, %v", len(got), err)
				}
			}
		})
	}
}

// benchPending inserts n pending runs in batches.
func benchPending(b *testing.B, e *durably.Engine, n int, input json.RawMessage, labels map[string]string) {
	b.Helper()
	for n > 0 {
		reqs := make([]durably.TriggerRequest, min(n, 500))
		for i := range reqs {
			reqs[i] = durably.TriggerRequest{JobName: "echo", Input: input, Labels: labels}
		}
		if _, err := e.BatchTriggerRaw(context.Background(), reqs); err != nil {
			b.Fatal(err)
		}
		n -= len(reqs)
	}
}

// benchLeased inserts n runs and claims them all.
func benchLeased(b *testing.B, e *durably.Engine, st store.Store, n int, input json.RawMessage, labels map[string]string) []store.Lease {
	b.Helper()
	benchPending(b, e, n, input, labels)
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
