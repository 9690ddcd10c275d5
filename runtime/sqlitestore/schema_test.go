package sqlitestore_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/durably-go/durably/internal/datamodel"
	"github.com/durably-go/durably/runtime/sqlitestore"
)

// TestSchemaMatchesDataModel checks that a database migrated to the latest
// version has exactly the tables and columns of the top-level schema.sql,
// SQLite's types standing for the neutral ones, and none of the tables only
// PostgreSQL keeps.
func TestSchemaMatchesDataModel(t *testing.T) {
	ctx := context.Background()
	model, err := datamodel.Read(ctx, "../../schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "durably.db")
	st, err := sqlitestore.Open(path, sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// A catalog query, for this test only.
	rows, err := db.QueryContext(ctx, `SELECT m.name, p.name, p.type, p."notnull" OR p.pk
		FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	catalog, err := datamodel.Scan(rows)
	if err != nil {
		t.Fatal(err)
	}
	want := model.Map(func(_, _ string, c datamodel.Column) datamodel.Column {
		switch c.Type {
		case "TIMESTAMP", "JSON", "JSON_OBJECT": // S-002, S-003
			c.Type = "TEXT"
		}
		return c
	})
	if diff := datamodel.Diff(want, catalog, model.Tables(datamodel.PostgresOnly...)); diff != "" {
		t.Errorf("the migrated SQLite schema differs from schema.sql:\n%s", diff)
	}
}
