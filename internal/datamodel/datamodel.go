// Package datamodel reads the top-level schema.sql, the engine-neutral
// statement of the tables and columns every store keeps, so that each
// store's tests can check a migrated database against it
// (TestSchemaMatchesDataModel). Only tests import it.
package datamodel

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	_ "modernc.org/sqlite" // parses schema.sql: SQLite keeps declared type names as written
)

// Column is a column of the model: its neutral type (TEXT, INTEGER,
// TIMESTAMP, JSON, JSON_OBJECT) and whether it may be NULL.
type Column struct {
	Type    string
	NotNull bool
}

// Model maps table → column → Column.
type Model map[string]map[string]Column

// PostgresOnly are the model's tables that only PostgreSQL keeps: they carry
// events between processes (D3).
var PostgresOnly = []string{"durably_event_listeners", "durably_event_payloads"}

// Read parses the schema file at path. SQLite does the parsing: it accepts
// any type name and reports it back as declared.
func Read(ctx context.Context, path string) (Model, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("datamodel: %w", err)
	}
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		return nil, fmt.Errorf("datamodel: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // one in-memory database
	if _, err := db.ExecContext(ctx, string(b)); err != nil {
		return nil, fmt.Errorf("datamodel: %s: %w", path, err)
	}
	// Catalog queries of a scratch database: not part of any store, so not
	// in queries/.
	rows, err := db.QueryContext(ctx, `SELECT m.name, p.name, p.type, p."notnull" OR p.pk
		FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table'`)
	if err != nil {
		return nil, fmt.Errorf("datamodel: %w", err)
	}
	defer rows.Close()
	return Scan(rows)
}

// Diff compares a catalog, in the model's terms (the caller maps its
// engine's types to neutral ones), with the model's tables named in tables,
// and describes every difference, one per line; "" when they agree.
func Diff(model, catalog Model, tables []string) string {
	var out []string
	for _, t := range tables {
		want, got := model[t], catalog[t]
		if got == nil {
			out = append(out, fmt.Sprintf("table %s: missing", t))
			continue
		}
		for _, c := range slices.Sorted(maps.Keys(want)) {
			g, ok := got[c]
			switch {
			case !ok:
				out = append(out, fmt.Sprintf("%s.%s: missing", t, c))
			case g != want[c]:
				out = append(out, fmt.Sprintf("%s.%s: %+v, the model says %+v", t, c, g, want[c]))
			}
		}
		for _, c := range slices.Sorted(maps.Keys(got)) {
			if _, ok := want[c]; !ok {
				out = append(out, fmt.Sprintf("%s.%s: not in the model", t, c))
			}
		}
	}
	for _, t := range slices.Sorted(maps.Keys(catalog)) {
		if !slices.Contains(tables, t) {
			out = append(out, fmt.Sprintf("table %s: not in the model", t))
		}
	}
	return strings.Join(out, "\n")
}

// Tables lists the model's tables, without those in except.
func (m Model) Tables(except ...string) []string {
	var out []string
	for _, t := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(except, t) {
			out = append(out, t)
		}
	}
	return out
}

// Map returns the model with every column passed through f: how an engine
// stores the neutral types.
func (m Model) Map(f func(table, column string, c Column) Column) Model {
	out := Model{}
	for t, cols := range m {
		out[t] = map[string]Column{}
		for name, c := range cols {
			out[t][name] = f(t, name, c)
		}
	}
	return out
}

// Rows is what Scan reads: database/sql's and pgx's rows alike.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// Scan reads a catalog query's rows of (table, column, type, not null) into
// a Model, upper-casing the types.
func Scan(rows Rows) (Model, error) {
	m := Model{}
	for rows.Next() {
		var table, name, typ string
		var notNull bool
		if err := rows.Scan(&table, &name, &typ, &notNull); err != nil {
			return nil, fmt.Errorf("datamodel: %w", err)
		}
		if m[table] == nil {
			m[table] = map[string]Column{}
		}
		m[table][name] = Column{Type: strings.ToUpper(typ), NotNull: notNull}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("datamodel: %w", err)
	}
	return m, nil
}
