package pgstore

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/runtime/pgstore/internal/pgdb"
	"github.com/durably-go/durably/store"
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
	// A window and a cursor (the dashboard's pages, issue 21) bound the
	// same walk: the index starts at the cursor, not at the tenant's newest
	// run.
	cursorAt := pgtype.Timestamptz{Time: time.Now().Add(-time.Hour), Valid: true}
	cases := []struct {
		name    string
		p       pgdb.ListRunsByLabelParams
		inOrder bool // the index yields the page in order: no sort at all
	}{
		{"one organization", pgdb.ListRunsByLabelParams{Key: "organizationId", Value: "org-07"}, true},
		// DriveBy (set by generated code) makes the tenant id drive; the
		// env is a filter on the walk, which stays in order.
		{"organization and env", pgdb.ListRunsByLabelParams{Key: "organizationId", Value: "org-07", OtherLabels: []byte(`{"env":"staging"}`)}, true},
		{"a page after a cursor", pgdb.ListRunsByLabelParams{Key: "organizationId", Value: "org-07", UpperAt: cursorAt, UpperID: "01J"}, true},
		{"a window", pgdb.ListRunsByLabelParams{Key: "organizationId", Value: "org-07", CreatedFrom: pgtype.Timestamptz{Time: time.Now().Add(-2 * time.Hour), Valid: true}, UpperAt: cursorAt}, true},
	}
	for _, c := range cases {
		for _, generic := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s generic=%v", c.name, generic), func(t *testing.T) {
				rec := &recorder{}
				p := c.p
				p.Statuses, p.JobNames = []string{}, []string{}
				if p.OtherLabels == nil {
					p.OtherLabels = []byte(`{}`)
				}
				if !p.CreatedFrom.Valid {
					p.CreatedFrom = pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
				}
				if !p.UpperAt.Valid {
					p.UpperAt = pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}
				}
				p.Lim = pgtype.Int8{Int64: 20, Valid: true}
				_, _ = pgdb.New(rec).ListRunsByLabel(ctx, p)
				plan := explainWith(t, st, rec, "EXPLAIN ", generic)
				if !strings.Contains(plan, "idx_durably_run_labels_key_value") || strings.Contains(plan, "Seq Scan") {
					t.Fatalf("the label lookup does not use the label index:\n%s", plan)
				}
				if !strings.Contains(plan, "ROW(created_at, run_id) < ROW(") {
					t.Fatalf("the window's upper end does not bound the index walk:\n%s", plan)
				}
				if c.inOrder && strings.Contains(plan, "Sort") {
					t.Fatalf("the page of one label is sorted instead of read in index order:\n%s", plan)
				}
			})
		}
	}
	// The status counts of one organization read its label index too.
	for _, generic := range []bool{false, true} {
		rec := &recorder{}
		_, _ = pgdb.New(rec).CountRunsByLabel(ctx, pgdb.CountRunsByLabelParams{Key: "organizationId", Value: "org-07",
			CreatedFrom: pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true},
			CreatedTo:   pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}, JobNames: []string{}, OtherLabels: []byte(`{}`)})
		plan := explainWith(t, st, rec, "EXPLAIN ", generic)
		if !strings.Contains(plan, "idx_durably_run_labels_key_value") || strings.Contains(plan, "Seq Scan") {
			t.Fatalf("generic=%v: the counts of one organization do not use the label index:\n%s", generic, plan)
		}
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
	_, _ = pgdb.New(rec).ClaimReady(ctx, pgdb.ClaimReadyParams{Now: ts(now), Lim: 8, PromoteLim: promoteBatch, LimitJobs: []string{}, LimitCounts: []int64{}, LeaseFree: false})
	plan := explain(t, st, rec)
	if !strings.Contains(plan, "idx_durably_runs_ready") || strings.Contains(plan, "Seq Scan") {
		t.Fatalf("the claim does not walk the ready index:\n%s", plan)
	}
	// The one-statement claim walks the same index and leases by primary
	// key, in the plan the store runs (generic), without reading the 2,000
	// live leases: the ready index yields the 8 candidates and stops.
	rec = &recorder{}
	_, _ = pgdb.New(rec).ClaimReady(ctx, pgdb.ClaimReadyParams{Now: ts(now), Lim: 8, PromoteLim: promoteBatch, LimitJobs: []string{}, LimitCounts: []int64{},
		LeaseFree: true, WorkerID: "w", LeaseExpiresAt: ts(now.Add(time.Minute))})
	plan = explainAnalyze(t, st, rec, true)
	if !strings.Contains(plan, "idx_durably_runs_ready") || strings.Contains(plan, "Seq Scan") {
		t.Fatalf("the one-statement claim does not walk the ready index:\n%s", plan)
	}
	if !regexp.MustCompile(`Index Scan using idx_durably_runs_ready on durably_runs \S+\s+\(cost=[^)]*\) \(actual rows=8 loops=1\)`).MatchString(plan) {
		t.Fatalf("the ready index did not yield exactly the 8 candidates:\n%s", plan)
	}
	if _, update, _ := strings.Cut(plan, "Update on durably_runs"); !strings.Contains(update, "Index Scan on durably_runs_pkey") && !strings.Contains(update, "Index Scan using durably_runs_pkey") {
		t.Fatalf("the one-statement claim does not lease by primary key:\n%s", plan)
	}
}

// TestClaimSkipsFutureRunsByIndex shows, with EXPLAIN ANALYZE, that a claim
// among 5,000 runs waiting for a later run_at (delayed triggers, retries,
// sleeps) reads none of them: the promotion's range scan of
// idx_durably_runs_waiting stops at the first run not due, the walk of ready
// runs uses idx_durably_runs_ready, which holds no waiting run, and neither
// reads the table sequentially. The 100 due runs are promoted and claimed in
// priority order.
func TestClaimSkipsFutureRunsByIndex(t *testing.T) {
	ctx := context.Background()
	st, job := explainSetup(t)
	base := time.Now()
	for b := range 10 {
		items := make([]durably.BatchItem[int], 500)
		for i := range items {
			items[i].Options = []durably.Option{durably.WithRunAt(base.Add(time.Hour + time.Duration(b*500+i)*time.Second))}
		}
		if _, err := job.BatchTrigger(ctx, items); err != nil {
			t.Fatal(err)
		}
	}
	due := make([]durably.BatchItem[int], 100)
	for i := range due {
		due[i].Input = i
		due[i].Options = []durably.Option{durably.WithRunAt(base.Add(time.Minute)), durably.WithPriority(100 - i)}
	}
	if _, err := job.BatchTrigger(ctx, due); err != nil {
		t.Fatal(err)
	}
	if _, err := st.pool.Exec(ctx, "ANALYZE durably_runs"); err != nil {
		t.Fatal(err)
	}
	now := base.Add(2 * time.Minute)
	rec := &recorder{}
	_, _ = pgdb.New(rec).ClaimReady(ctx, pgdb.ClaimReadyParams{Now: ts(now), Lim: 8, PromoteLim: promoteBatch, LimitJobs: []string{}, LimitCounts: []int64{}, LeaseFree: false})
	for _, generic := range []bool{false, true} {
		plan := explainAnalyze(t, st, rec, generic)
		for _, want := range []string{"idx_durably_runs_waiting", "Index Cond: (run_at <=", "idx_durably_runs_ready"} {
			if !strings.Contains(plan, want) {
				t.Fatalf("generic=%v: the claim's plan lacks %q:\n%s", generic, want, plan)
			}
		}
		if strings.Contains(plan, "Seq Scan on durably_runs") {
			t.Fatalf("generic=%v: the claim scans the run table:\n%s", generic, plan)
		}
		// The waiting index yields the 100 due runs and stops: not one of
		// the 5,000 future runs is read.
		if !regexp.MustCompile(`Index Scan using idx_durably_runs_waiting on durably_runs \S+\s+\(cost=[^)]*\) \(actual rows=100 loops=1\)`).MatchString(plan) {
			t.Fatalf("generic=%v: the waiting index did not yield exactly the 100 due runs:\n%s", generic, plan)
		}
	}
	runs, err := st.Claim(ctx, store.ClaimRequest{WorkerID: "w", Now: now, Lease: time.Hour, Limit: 3})
	if err != nil || len(runs) != 3 {
		t.Fatalf("claim: %d runs, %v", len(runs), err)
	}
	for i, r := range runs {
		if r.Priority != 1+i {
			t.Fatalf("claimed run %d has priority %d, want %d (smallest first)", i, r.Priority, 1+i)
		}
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
	return explainWith(t, st, rec, "EXPLAIN ", false)
}

// explainAnalyze runs the statement rec captured under EXPLAIN ANALYZE in a
// transaction it rolls back, so that a claim's writes leave no trace.
func explainAnalyze(t *testing.T, st *Store, rec *recorder, generic bool) string {
	t.Helper()
	return explainWith(t, st, rec, "EXPLAIN (ANALYZE, COSTS, TIMING OFF) ", generic)
}

func explainWith(t *testing.T, st *Store, rec *recorder, prefix string, generic bool) string {
	t.Helper()
	ctx := context.Background()
	tx, err := st.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	var plan string
	args := []any{pgx.QueryExecModeSimpleProtocol}
	for _, a := range rec.args {
		if b, ok := a.([]byte); ok {
			a = string(b) // JSON text; the simple protocol would send bytes as bytea
		}
		args = append(args, a)
	}
	stmt := prefix + rec.sql
	if generic {
		// The plan the store runs: ConfigurePool sets force_generic_plan,
		// so the statement is planned once, without its arguments' values.
		if _, err := tx.Exec(ctx, "SET LOCAL plan_cache_mode = force_generic_plan"); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "PREPARE durably_explain AS "+rec.sql); err != nil {
			t.Fatal(err)
		}
		// A prepared statement outlives the transaction, on a connection
		// the pool hands out again.
		defer tx.Exec(ctx, "DEALLOCATE durably_explain") //nolint:errcheck
		ph := make([]string, len(rec.args))
		for i := range ph {
			ph[i] = fmt.Sprintf("$%d", i+1)
		}
		stmt = prefix + "EXECUTE durably_explain(" + strings.Join(ph, ", ") + ")"
	}
	rows, err := tx.Query(ctx, stmt, args...)
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
