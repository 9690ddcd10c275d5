package pgstore

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/runtime/pgstore/internal/pgdb"
)

// TestJobLocksNeverDeadlock: claimers lock the jobs of their candidates
// in one order (LockJobs), so that no two wait on each other. The locks
// are on the names' hashtext: job139994 and job7241 collide, so one lock
// would be taken at two places of an order by name, and claimers locking
// [job139994, job5] and [job5, job7241] could each hold what the other
// waits for. Concurrent claimers lock random pairs of the three.
func TestJobLocksNeverDeadlock(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	names := []string{"job139994", "job5", "job7241"} // sorted by name
	var mu sync.Mutex
	var deadlocks int
	var wg sync.WaitGroup
	stop := time.Now().Add(3 * time.Second)
	for range 6 {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
		wg.Go(func() {
			for time.Now().Before(stop) {
				pair := slices.Clone(names)
				i := rand.IntN(3)
				pair = slices.Delete(pair, i, i+1) // one left out, the rest in name order
				tx, err := conn.Begin(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				err = pgdb.New(tx).LockJobs(ctx, pair)
				var pgErr *pgconn.PgError
				if errors.As(err, &pgErr) && pgErr.Code == "40P01" {
					mu.Lock()
					deadlocks++
					mu.Unlock()
				} else if err != nil {
					t.Error(err)
				}
				_ = tx.Rollback(ctx)
			}
		})
	}
	wg.Wait()
	if deadlocks > 0 {
		t.Fatalf("%d claims ended in a deadlock", deadlocks)
	}
}
