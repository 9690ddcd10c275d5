package pgstore_test

import (
	"context"
	"strings"
	"testing"

	"github.com/durably-go/durably/internal/datamodel"
	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/runtime/pgstore"
)

// TestSchemaMatchesDataModel checks that a database migrated to the latest
// version has exactly the tables and columns of the top-level schema.sql in
// PostgreSQL's own types, and the storage setting that lets a run be
// updated in place (fillfactor, migration 1, surviving migration 3's
// rewrite).
func TestSchemaMatchesDataModel(t *testing.T) {
	ctx := context.Background()
	model, err := datamodel.Read(ctx, "../../schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	pgtest.DSN(t)
	st, err := pgstore.Open(ctx, pgtest.Schema(t), pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// Catalog queries, for this test only.
	rows, err := st.Pool().Query(ctx, `SELECT table_name, column_name, data_type, is_nullable = 'NO'
		FROM information_schema.columns WHERE table_schema = current_schema()`)
	if err != nil {
		t.Fatal(err)
	}
	catalog, err := datamodel.Scan(rows)
	if err != nil {
		t.Fatal(err)
	}
	want := model.Map(func(table, column string, c datamodel.Column) datamodel.Column {
		switch c.Type {
		case "TEXT", "JSON": // JSON: the exact bytes (S-003)
			c.Type = "TEXT"
		case "INTEGER":
			c.Type = "BIGINT"
			if table == "durably_schema_versions" {
				c.Type = "INTEGER"
			}
		case "TIMESTAMP":
			c.Type = "TIMESTAMP WITH TIME ZONE"
		case "JSON_OBJECT":
			c.Type = "JSONB"
		}
		return c
	})
	if diff := datamodel.Diff(want, catalog, model.Tables()); diff != "" {
		t.Errorf("the migrated PostgreSQL schema differs from schema.sql:\n%s", diff)
	}
	var options []string
	if err := st.Pool().QueryRow(ctx, `SELECT COALESCE(reloptions, '{}') FROM pg_class
		WHERE oid = 'durably_runs'::regclass`).Scan(&options); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(options, ","), "fillfactor=70") {
		t.Errorf("durably_runs storage options %v, want fillfactor=70", options)
	}
}
