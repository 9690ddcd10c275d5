package pgstore

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/runtime/pgstore/internal/pgdb"
	"github.com/durably-go/durably/runtime/store"
)

// TestLabelLookupsUseTheIndex shows the plans of the label-scoped lookups
// generated code offers (ListRunsBy<Label>): the first page of one tenant
// comes from idx_durably_run_labels_key_value, in order, not from a scan and
// sort of the tenant's runs.
func TestLabelLookupsUseTheIndex(t *testing.T) {
	ctx := context.Background()
	st, job := explainSetup(t)
	// 20,000 runs over 100 organizations: enough for the planner to weigh
	// a walk of one tenant against a scan of every run.
	for b := range 40 {
		items := make([]durably.BatchItem[int], 500)
		for i := range items {
			n := b*500 + i
			items[i] = durably.BatchItem[int]{Input: n, Options: []durably.Option{durably.WithLabels(map[string]string{
				"organizationId": fmt.Sprintf("org-%02d", n%100), "env": []string{"production", "staging"}[(n/100)%2]})}}
		}
		if _, err := job.BatchTrigger(ctx, items); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.pool.Exec(ctx, "ANALYZE durably_runs; ANALYZE durably_run_labels"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		p       pgdb.ListRunsByLabelParams
		inOrder bool // the index yields the page in order: no sort at all
	}{
		{"one organization", pgdb.ListRunsByLabelParams{Key: "organizationId", Value: "org-07"}, true},
		// DriveBy (set by generated code) makes the tenant id drive; the
		// env is a filter on the walk, which stays in order.
		{"organization and env", pgdb.ListRunsByLabelParams{Key: "organizationId", Value: "org-07", OtherLabels: []byte(`{"env":"staging"}`)}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := &recorder{}
			p := c.p
			p.Statuses, p.JobNames = []string{}, []string{}
			if p.OtherLabels == nil {
				p.OtherLabels = []byte(`{}`)
			}
			p.Lim = pgtype.Int8{Int64: 20, Valid: true}
			_, _ = pgdb.New(rec).ListRunsByLabel(ctx, p)
			plan := explain(t, st, rec)
			if !strings.Contains(plan, "idx_durably_run_labels_key_value") || strings.Contains(plan, "Seq Scan") {
				t.Fatalf("the label lookup does not use the label index:\n%s", plan)
			}
			if c.inOrder && strings.Contains(plan, "Sort") {
				t.Fatalf("the page of one label is sorted instead of read in index order:\n%s", plan)
			}
		})
	}
	// And the store's own list, as the generated function calls it.
	start := time.Now()
	runs, err := st.ListRuns(ctx, store.RunFilter{Labels: map[string]string{"organizationId": "org-07", "env": "staging"}, DriveBy: "organizationId", Limit: 20})
	if err != nil || len(runs) != 20 {
		t.Fatalf("%d runs, %v", len(runs), err)
	}
	for _, r := range runs {
		if r.Labels["organizationId"] != "org-07" || r.Labels["env"] != "staging" {
			t.Fatalf("run with labels %v", r.Labels)
		}
	}
	t.Logf("first page of one organization and env among 20,000 runs: %v", time.Since(start))
}

// TestClaimSkipsLiveLeasesByIndex shows the plan of the claim's candidate
// query with many live leases: pending runs come from their own partial
// index in claim order, so the claim never steps over leased runs.
func TestClaimSkipsLiveLeasesByIndex(t *testing.T) {
	ctx := context.Background()
	st, job := explainSetup(t)
	for range 10 {
		items := make([]durably.BatchItem[int], 500)
		if _, err := job.BatchTrigger(ctx, items); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	for range 4 {
		if got, err := st.Claim(ctx, store.ClaimRequest{WorkerID: "w", Now: now, Lease: time.Hour, Limit: 500}); err != nil || len(got) != 500 {
			t.Fatalf("claim: %d, %v", len(got), err)
		}
	}
	if _, err := st.pool.Exec(ctx, "ANALYZE durably_runs"); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	_, _ = pgdb.New(rec).ClaimCandidates(ctx, pgdb.ClaimCandidatesParams{Now: ts(now), Lim: 8})
	plan := explain(t, st, rec)
	if !strings.Contains(plan, "idx_durably_runs_pending_created") || strings.Contains(plan, "Seq Scan") {
		t.Fatalf("the claim does not walk the pending index:\n%s", plan)
	}
}

// explain returns the plan of the statement rec captured, with its
// arguments, and logs it.
// explainSetup opens a store in a fresh schema with an engine and a job
// to fill it through.
func explainSetup(t *testing.T) (*Store, *durably.JobHandle[int, int]) {
	t.Helper()
	st, err := Open(context.Background(), pgtest.Schema(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e, err := durably.New(durably.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st, durably.MustRegister(e, &durably.Job[int, int]{Name: "j", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) { return in, nil }})
}

func explain(t *testing.T, st *Store, rec *recorder) string {
	t.Helper()
	var plan string
	args := []any{pgx.QueryExecModeSimpleProtocol}
	for _, a := range rec.args {
		if b, ok := a.([]byte); ok {
			a = string(b) // JSON text; the simple protocol would send bytes as bytea
		}
		args = append(args, a)
	}
	rows, err := st.pool.Query(context.Background(), "EXPLAIN "+rec.sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan += line + "\n"
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	t.Logf("EXPLAIN:\n%s", plan)
	return plan
}
