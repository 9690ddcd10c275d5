package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/durably-go/durably/runtime/sqlitestore/internal/sqlitedb"
	"github.com/durably-go/durably/store"
)

// TestClaimBatchStopsAtTheFirstCheckedRun: ClaimBatch claims the leading
// candidates in claim order only up to the first one that needs a check
// (a concurrency key, a job with a limit), which it leaves, with everything
// after it, to ClaimNext. Claiming past it would lease two runs of one key
// or exceed a job's limit in one statement.
func TestClaimBatchStopsAtTheFirstCheckedRun(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "durably.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Minute).Truncate(time.Millisecond).UTC()
	var items []store.NewRun
	for i, r := range []struct{ job, key string }{{"free", ""}, {"free", ""}, {"free", "k"}, {"free", ""}, {"lim", ""}, {"free", ""}} {
		items = append(items, store.NewRun{Run: &store.Run{ID: fmt.Sprintf("01J%023d", i), JobName: r.job, ConcurrencyKey: r.key,
			Input: []byte(`{}`), Labels: map[string]string{}, CreatedAt: base.Add(time.Duration(i) * time.Second)}})
	}
	if _, err := s.Enqueue(ctx, items); err != nil {
		t.Fatal(err)
	}
	batch := func(limits string) []string {
		var ids []string
		err := s.write(ctx, func(ctx context.Context, _ *sql.Tx, q *sqlitedb.Queries) error {
			rows, err := q.ClaimBatch(ctx, sqlitedb.ClaimBatchParams{WorkerID: "w", LeaseExpiresAt: store.FormatTime(base.Add(time.Hour)),
				Now: store.FormatTime(base.Add(time.Minute)), HasLimits: boolInt(limits != "{}"), JobLimits: limits, TenantLimits: "{}", Lim: 10})
			for _, r := range rows {
				ids = append(ids, r.ID)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(ids)
		return ids
	}
	id := func(i int) string { return items[i].Run.ID }
	if got, want := batch(`{"lim":1}`), []string{id(0), id(1)}; !slices.Equal(got, want) {
		t.Fatalf("first batch %v, want %v (stop before the keyed run)", got, want)
	}
	// The keyed run is first now: nothing is claimed by the batch.
	if got := batch(`{"lim":1}`); len(got) != 0 {
		t.Fatalf("batch claimed %v past a keyed run", got)
	}
	if got, err := s.Claim(ctx, store.ClaimRequest{WorkerID: "w", Now: base.Add(time.Minute), Lease: time.Hour, Limit: 2, JobLimits: map[string]int{"lim": 1}}); err != nil || len(got) != 2 || got[0].ID != id(2) || got[1].ID != id(3) {
		t.Fatalf("claim %v %v, want %s %s", got, err, id(2), id(3))
	}
	// Next is the limited job's run; without limits it needs no check.
	if got := batch(`{"lim":1}`); len(got) != 0 {
		t.Fatalf("batch claimed %v past a limited job's run", got)
	}
	if got, want := batch(`{}`), []string{id(4), id(5)}; !slices.Equal(got, want) {
		t.Fatalf("batch without limits %v, want %v", got, want)
	}
}
