package pgstore_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/runtime/pgstore"
	"github.com/durably-go/durably/runtime/storetest"
	"github.com/durably-go/durably/store"
)

// TestLimitsKeepIndexEntriesInBounds: the widest entry of
// idx_durably_runs_job_scope_idempotency the engine's limits allow (job
// name, key scope and idempotency key at their limits, of text no
// compression shrinks) is stored, and the same entry 400 bytes wider is
// refused by PostgreSQL's index: the limits leave room below the 2704-byte
// maximum, and what they keep out is what PostgreSQL refuses (SQLite would
// store it). The contract case for the maximal run shows the engine
// accepts and runs such a run; this one shows the margin.
func TestLimitsKeepIndexEntriesInBounds(t *testing.T) {
	st, err := pgstore.Open(context.Background(), pgtest.Schema(t), pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(19, 5))
	job, scope := storetest.IncompressibleText(rng, store.MaxJobNameBytes), storetest.IncompressibleText(rng, store.MaxKeyScopeBytes)
	for i, c := range []struct {
		keyBytes int
		refused  bool
	}{{store.MaxKeyBytes, false}, {store.MaxKeyBytes + 400, true}} {
		run := &store.Run{ID: "run-" + string(rune('a'+i)), JobName: job, KeyScope: scope, Input: []byte(`{}`), Labels: map[string]string{},
			IdempotencyKey: storetest.IncompressibleText(rng, c.keyBytes), CreatedAt: time.Now()}
		_, err := st.Enqueue(t.Context(), []store.NewRun{{Run: run}})
		if c.refused != (err != nil) || c.refused && !strings.Contains(err.Error(), "index row size") {
			t.Fatalf("an entry of %d bytes of text: %v; want refused by the index: %v",
				len(job)+len(scope)+c.keyBytes, err, c.refused)
		}
	}
}
