package reference_test

import (
	"context"
	"testing"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/reference"
	"github.com/durably-go/durably/runtime/sqlitestore"
)

// TestGeneratedTriggerTx: a generated handle's TriggerTx writes the run in
// the caller's transaction, typed as Trigger's is (input, labels, options):
// it exists once the transaction commits, never when it rolls back.
func TestGeneratedTriggerTx(t *testing.T) {
	ctx := context.Background()
	e, jobs := newRunnerEngine(t, handlers, 1)
	st := e.Store().(*sqlitestore.Store)
	for _, commit := range []bool{true, false} {
		tx, err := st.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		low := 9
		run, disp, err := jobs.SendMail.TriggerTx(ctx, sqlitestore.Tx(tx), "a@example.com", labels, reference.TriggerOptions{Priority: &low})
		if err != nil || disp != durably.Created || run.Input != "a@example.com" || run.Labels.OrganizationID != "acme" || run.Priority != 9 {
			t.Fatalf("TriggerTx: %+v %s %v", run, disp, err)
		}
		if commit {
			err = tx.Commit()
		} else {
			err = tx.Rollback()
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := jobs.SendMail.GetRun(ctx, run.ID)
		if err != nil || (got != nil) != commit {
			t.Fatalf("after commit=%v the run is %+v (%v)", commit, got, err)
		}
	}
}
