package main

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/examples/orders/orderjobs"
	"github.com/durably-go/durably/runtime/sqlitestore"
)

// TestBothDeclarations runs the README's job as declared in Go and as
// generated from durably.yaml: each completes with the charge its steps
// recorded, and a second run of the same order is the first (its
// idempotency key), its card not charged again.
func TestBothDeclarations(t *testing.T) {
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "orders.db")
	for range 2 {
		plain, err := runPlain(ctx, db)
		if err != nil || plain.Charge != "ch-o-1-1200" {
			t.Fatalf("declared in Go: %+v, %v", plain, err)
		}
		generated, err := runGenerated(ctx, db)
		if err != nil || generated.Charge != "ch-o-2-1200" {
			t.Fatalf("generated: %+v, %v", generated, err)
		}
	}
	runs, err := engine(t, db).ListRuns(ctx, durably.RunFilter{})
	if err != nil || len(runs) != 2 {
		t.Fatalf("%d runs for two orders run twice each, %v", len(runs), err)
	}
}

// TestGeneratedInputIsChecked: the declaration's bounds hold for Go
// triggers too, as the README's comment says.
func TestGeneratedInputIsChecked(t *testing.T) {
	e := engine(t, filepath.Join(t.TempDir(), "orders.db"))
	if err := e.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	jobs, err := orderjobs.Register(e, orderjobs.Handlers{ProcessOrder: processGenerated})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = jobs.ProcessOrder.Trigger(context.Background(), orderjobs.ProcessOrderInput{ID: "o-3"}, orderjobs.TriggerOptions{})
	if !errors.Is(err, durably.ErrValidation) {
		t.Fatalf("an order of amount 0: %v, want a validation error", err)
	}
}

// engine is an engine, unstarted, on the SQLite file at path.
func engine(t *testing.T, path string) *durably.Engine {
	t.Helper()
	st, err := sqlitestore.Open(path, sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e, err := durably.New(durably.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	return e
}
