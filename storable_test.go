package durably_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/durably-go/durably"
)

// TestTextNoStoreCanHoldIsRefused: keys, label values and job names with a
// NUL character or bytes that are not UTF-8 are validation errors naming
// the field, on both stores, and writing nothing; run ids with them name
// no run. PostgreSQL refuses such text, so each of these failed in the
// database (and over HTTP as a 500).
func TestTextNoStoreCanHoldIsRefused(t *testing.T) {
	bothStores(t, "storable.db", func(t *testing.T, spec string) {
		ctx := context.Background()
		e, err := durably.New(durably.Config{Store: openStore(t, spec)})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		durably.MustRegister(e, &durably.Job[int, int]{Name: "j", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) { return in, nil }})
		for _, c := range []struct {
			name  string
			req   durably.TriggerRequest
			field string
		}{
			{"NUL in an idempotency key", durably.TriggerRequest{IdempotencyKey: "a\x00b"}, "idempotencyKey"},
			{"invalid UTF-8 in a concurrency key", durably.TriggerRequest{ConcurrencyKey: "a\xffb"}, "concurrencyKey"},
			{"NUL in a label value", durably.TriggerRequest{Labels: map[string]string{"org": "a\x00b"}}, "labels.org"},
			{"invalid UTF-8 in a label value", durably.TriggerRequest{Labels: map[string]string{"org": "\xff"}}, "labels.org"},
		} {
			c.req.JobName, c.req.Input = "j", json.RawMessage(`1`)
			_, err := e.TriggerRaw(ctx, c.req)
			if !errors.Is(err, durably.ErrValidation) || !strings.Contains(err.Error(), c.field) {
				t.Errorf("%s: %v; want a validation error naming %s", c.name, err, c.field)
			}
		}
		for _, f := range []durably.RunFilter{{Labels: map[string]string{"org": "a\x00"}}, {JobNames: []string{"\xff"}}} {
			if _, err := e.ListRuns(ctx, f); !errors.Is(err, durably.ErrValidation) {
				t.Errorf("ListRuns(%+v): %v; want a validation error", f, err)
			}
		}
		for _, id := range []string{"a\x00b", "\xff"} {
			if run, err := e.GetRun(ctx, id); run != nil || err != nil {
				t.Errorf("GetRun(%q): %v, %v; want no run", id, run, err)
			}
			if err := e.Cancel(ctx, id); !errors.Is(err, durably.ErrNotFound) {
				t.Errorf("Cancel(%q): %v; want not found", id, err)
			}
			if err := e.DeleteRun(ctx, id); !errors.Is(err, durably.ErrNotFound) {
				t.Errorf("DeleteRun(%q): %v; want not found", id, err)
			}
			if _, err := e.Retrigger(ctx, id); !errors.Is(err, durably.ErrNotFound) {
				t.Errorf("Retrigger(%q): %v; want not found", id, err)
			}
			if _, err := e.WaitForRun(ctx, id); !errors.Is(err, durably.ErrNotFound) {
				t.Errorf("WaitForRun(%q): %v; want not found", id, err)
			}
		}
		if runs, err := e.ListRuns(ctx, durably.RunFilter{}); err != nil || len(runs) != 0 {
			t.Fatalf("%d runs written by refused triggers (%v)", len(runs), err)
		}
	})
}
