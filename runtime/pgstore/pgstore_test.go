package pgstore_test

import (
	"context"
	"testing"

	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/runtime/pgstore"
	"github.com/durably-go/durably/runtime/storetest"
	"github.com/durably-go/durably/store"
)

// The suite fabricates states through PatchRun (S-047).
var _ storetest.Patcher = (*pgstore.Store)(nil)

// TestContract runs the whole contract suite on PostgreSQL, a fresh schema
// per test.
func TestContract(t *testing.T) {
	pgtest.DSN(t)
	storetest.Run(t, func(t *testing.T) func() store.Store {
		dsn := pgtest.Schema(t)
		return func() store.Store {
			st, err := pgstore.Open(context.Background(), dsn, pgstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			return callerTxStore{st}
		}
	})
}

// BenchmarkStore runs the hot-path micro-benchmarks on PostgreSQL, a fresh
// schema per benchmark.
func BenchmarkStore(b *testing.B) {
	pgtest.DSN(b)
	storetest.Benchmark(b, func(b *testing.B) store.Store {
		st, err := pgstore.Open(context.Background(), pgtest.Schema(b), pgstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = st.Close() })
		return st
	})
}
