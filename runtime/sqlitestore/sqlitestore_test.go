package sqlitestore_test

import (
	"path/filepath"
	"testing"

	"github.com/durably-go/durably/runtime/sqlitestore"
	"github.com/durably-go/durably/runtime/storetest"
	"github.com/durably-go/durably/store"
)

// The suite fabricates states through PatchRun (S-047).
var _ storetest.Patcher = (*sqlitestore.Store)(nil)

// TestContract runs the whole contract suite on a real SQLite file per test.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func() store.Store {
		path := filepath.Join(t.TempDir(), "durably.db")
		return func() store.Store {
			st, err := sqlitestore.Open(path, sqlitestore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			return callerTxStore{st}
		}
	})
}

// BenchmarkStore runs the hot-path micro-benchmarks on a SQLite file with
// the durable defaults (WAL, synchronous=FULL).
func BenchmarkStore(b *testing.B) {
	storetest.Benchmark(b, func(b *testing.B) store.Store {
		st, err := sqlitestore.Open(filepath.Join(b.TempDir(), "durably.db"), sqlitestore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = st.Close() })
		return st
	})
}
