package storetest

import (
	"context"
	"fmt"
	"time"

	"github.com/durably-go/durably/store"
)

// Call is one store operation, named for messages.
type Call struct {
	Name string
	Do   func() error
}

// OutageCalls are the operations a store's fault tests run: each must fail
// with store.ErrUnavailable while the database is out of reach, and succeed
// on a migrated, empty database once it is back. With reads, the reads are
// included too (a fault that only blocks writers leaves them out).
func OutageCalls(ctx context.Context, st store.Store, now time.Time, reads bool) []Call {
	lease := store.Lease{RunID: "r1", Generation: 1}
	calls := []Call{
		{"Enqueue", func() error {
			_, err := st.Enqueue(ctx, []store.NewRun{{Run: &store.Run{ID: fmt.Sprint("run-", time.Now().UnixNano()), JobName: "j", Input: []byte("{}"), CreatedAt: now}}})
			return err
		}},
		{"Claim", func() error {
			_, err := st.Claim(ctx, store.ClaimRequest{WorkerID: "w", Now: now, Lease: time.Second, Limit: 1})
			return err
		}},
		{"SaveStep", func() error {
			_, err := st.SaveStep(ctx, lease, &store.Step{ID: "s1", RunID: "r1", Name: "a", Status: store.StepCompleted, StartedAt: now, CompletedAt: now})
			return err
		}},
		{"RenewLease", func() error { _, err := st.RenewLease(ctx, lease, now, now.Add(time.Second)); return err }},
		{"FinishRun", func() error {
			_, err := st.FinishRun(ctx, lease, store.Finish{Status: store.StatusCompleted, Now: now})
			return err
		}},
		{"DeferRun", func() error {
			_, err := st.DeferRun(ctx, lease, store.Deferral{Until: now.Add(time.Second), Now: now, Attempt: 1,
				Steps: []*store.Step{{ID: "s2", RunID: "r1", Name: "b", Status: store.StepFailed, Error: "x", StartedAt: now, CompletedAt: now, Attempt: 1}}})
			return err
		}},
		{"Claim with a job limit", func() error {
			_, err := st.Claim(ctx, store.ClaimRequest{WorkerID: "w", Now: now, Lease: time.Second, Limit: 1, JobLimits: map[string]int{"j": 1}})
			return err
		}},
		{"ReleaseLease", func() error { _, err := st.ReleaseLease(ctx, lease, now); return err }},
		{"ReleaseExpiredLeases", func() error { _, err := st.ReleaseExpiredLeases(ctx, now); return err }},
	}
	if reads {
		calls = append(calls,
			Call{"GetRun", func() error { _, err := st.GetRun(ctx, "r1"); return err }},
			Call{"ListRuns", func() error { _, err := st.ListRuns(ctx, store.RunFilter{}); return err }},
		)
	}
	return calls
}
