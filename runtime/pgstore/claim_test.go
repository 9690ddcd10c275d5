package pgstore

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/store"
)

// roundTrips counts what the store sends: statements sent alone and
// pipelined batches (each one round trip).
type roundTrips struct{ queries, batches atomic.Int64 }

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.queries.Add(1)
	return ctx
}
func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.batches.Add(1)
	return ctx
}
func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// tracedStore opens a store whose pool counts its round trips, with an
// engine and two jobs to fill it through.
func tracedStore(t *testing.T) (*Store, *roundTrips, *durably.JobHandle[int, int]) {
	t.Helper()
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(pgtest.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	ConfigurePool(cfg)
	rt := &roundTrips{}
	cfg.ConnConfig.Tracer = rt
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	st, err := New(ctx, pool, Options{DisableListen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e, err := durably.New(durably.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return st, rt, durably.MustRegister(e, &durably.Job[int, int]{Name: "j", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) { return in, nil }})
}

// TestClaimWithoutKeysIsOneRoundTrip: a claim of runs without concurrency
// keys or job limits is one statement, sent alone (no BEGIN, no COMMIT, no
// second round trip), and so is a claim that finds nothing.
func TestClaimWithoutKeysIsOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	st, rt, job := tracedStore(t)
	if _, err := job.BatchTrigger(ctx, make([]durably.BatchItem[int], 10)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ limit, want int }{{4, 4}, {8, 6}, {4, 0}} {
		rt.queries.Store(0)
		rt.batches.Store(0)
		runs, err := st.Claim(ctx, store.ClaimRequest{WorkerID: "w", Now: time.Now(), Lease: time.Minute, Limit: c.limit})
		if err != nil || len(runs) != c.want {
			t.Fatalf("claim of %d: %d runs, %v; want %d", c.limit, len(runs), err, c.want)
		}
		if q, b := rt.queries.Load(), rt.batches.Load(); q != 1 || b != 0 {
			t.Fatalf("claim of %d: %d statements and %d pipelines, want one statement", c.limit, q, b)
		}
	}
}

// TestClaimTakesHeldCandidatesInTheSameCall: candidates the one statement
// holds back (a concurrency key, a limited job) are claimed by the full
// claim in the same call, in claim order, and the next claim goes to the
// full claim directly while such candidates remain.
func TestClaimTakesHeldCandidatesInTheSameCall(t *testing.T) {
	ctx := context.Background()
	st, rt, job := tracedStore(t)
	items := []durably.BatchItem[int]{
		{Input: 1, Options: []durably.Option{durably.WithPriority(1), durably.WithConcurrencyKey("k1")}},
		{Input: 2, Options: []durably.Option{durably.WithPriority(2)}},
		{Input: 3, Options: []durably.Option{durably.WithPriority(3), durably.WithConcurrencyKey("k2")}},
		{Input: 4, Options: []durably.Option{durably.WithPriority(4)}},
		{Input: 5, Options: []durably.Option{durably.WithPriority(5), durably.WithConcurrencyKey("k3")}},
	}
	if _, err := job.BatchTrigger(ctx, items); err != nil {
		t.Fatal(err)
	}
	runs, err := st.Claim(ctx, store.ClaimRequest{WorkerID: "w", Now: time.Now(), Lease: time.Minute, Limit: 3})
	if err != nil || len(runs) != 3 {
		t.Fatalf("claim: %d runs, %v", len(runs), err)
	}
	for i, r := range runs {
		if r.Priority != i+1 || r.Status != store.StatusLeased {
			t.Fatalf("claimed run %d: priority %d, %s; want priority %d, leased", i, r.Priority, r.Status, i+1)
		}
	}
	if !st.lockedClaims.Load() {
		t.Fatal("keyed candidates were held, yet the next claim starts with the one statement")
	}
	rt.queries.Store(0)
	rt.batches.Store(0)
	runs, err = st.Claim(ctx, store.ClaimRequest{WorkerID: "w", Now: time.Now(), Lease: time.Minute, Limit: 3})
	if err != nil || len(runs) != 2 || runs[0].Priority != 4 || runs[1].Priority != 5 {
		t.Fatalf("second claim: %d runs, %v", len(runs), err)
	}
	if rt.queries.Load() != 0 {
		t.Fatalf("second claim sent %d statements alone; want the full claim's pipelines only", rt.queries.Load())
	}
	// Nothing keyed is left: the full claim finds no candidate needing a
	// lock, and the next claim is one statement again.
	if runs, err := st.Claim(ctx, store.ClaimRequest{WorkerID: "w", Now: time.Now(), Lease: time.Minute, Limit: 3}); err != nil || len(runs) != 0 {
		t.Fatalf("third claim: %d runs, %v", len(runs), err)
	}
	if st.lockedClaims.Load() {
		t.Fatal("no candidate needs a lock, yet claims stay on the full claim")
	}
}
