package sqlitestore_test

import (
	"path/filepath"
	"testing"

	"github.com/durably-go/durably/runtime/sqlitestore"
	"github.com/durably-go/durably/runtime/store"
	"github.com/durably-go/durably/runtime/storetest"
)

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
			return st
		}
	})
}
