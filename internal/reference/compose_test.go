package reference_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/reference"
	"github.com/durably-go/durably/internal/reference/client"
	"github.com/durably-go/durably/runtime/durablyclient"
)

// TestGeneratedChildrenAndSignals: a generated job starts a child of
// another generated job with its typed StartChild and waits for it, then
// for the declared signal "approve" with the generated step helper; the
// generated client sends the signal typed, and a payload that does not fit
// the declaration is refused naming the field (R-236, R-240 … R-244).
func TestGeneratedChildrenAndSignals(t *testing.T) {
	ctx := context.Background()
	jobs, c := composeServer(t)
	labels := reference.NewLabels("acme", reference.EnvProduction)
	in := reference.ImportCSVInput{Filename: "a.csv", Mode: reference.ImportCSVInputModeAppend, Rows: []reference.ImportCSVInputRowsItem{{Sku: "x", Quantity: 1}}}
	trig, err := c.TriggerImportCSV(ctx, in, client.TriggerOptions{Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	var run *client.ImportCSVRun
	deadline := time.Now().Add(10 * time.Second)
	for run == nil || run.WaitingFor != "signal:approve" {
		if time.Now().After(deadline) {
			t.Fatalf("the run never waited for its signal: %+v", run)
		}
		time.Sleep(10 * time.Millisecond)
		if run, err = c.GetImportCSVRun(ctx, trig.RunID); err != nil {
			t.Fatal(err)
		}
	}
	kids, err := c.Children(ctx, trig.RunID)
	if err != nil || len(kids) != 1 || kids[0].JobName != "send-email" || kids[0].ParentRunID != trig.RunID ||
		kids[0].Labels["organizationId"] != "acme" {
		t.Fatalf("children %+v %v", kids, err)
	}
	err = c.Signal(ctx, trig.RunID, "approve", map[string]any{"by": ""})
	var ce *durablyclient.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusBadRequest || ce.Message != "Invalid payload: by: length must be >= 1, but got 0" {
		t.Fatalf("a payload refused by the schema: %v", err)
	}
	if err := c.SignalImportCSVApprove(ctx, trig.RunID, reference.ImportCSVApprovePayload{By: "rita"}); err != nil {
		t.Fatal(err)
	}
	out, err := c.WaitImportCSV(ctx, trig.RunID)
	if err != nil || out.Imported != 1 || len(out.Warnings) != 1 || out.Warnings[0] != "approved by rita" || out.Skipped != 0 {
		t.Fatalf("output %+v %v", out, err)
	}
	// The engine's typed handle sends signals too; a run that ended refuses.
	err = jobs.ImportCSV.SignalApprove(ctx, trig.RunID, reference.ImportCSVApprovePayload{By: "late"})
	if !errors.Is(err, durably.ErrConflict) {
		t.Fatalf("a signal to an ended run: %v", err)
	}
}

// composeServer serves the reference jobs on SQLite, import-csv starting a
// send-email child, waiting for it, then for its signal approve; it
// returns the jobs and a client of the server.
func composeServer(t *testing.T) (*reference.Jobs, *client.Client) {
	t.Helper()
	e := referenceEngine(t)
	var jobs *reference.Jobs
	hs := handlers
	hs.ImportCSV = func(ctx context.Context, s *durably.StepContext, in reference.ImportCSVInput) (reference.ImportCSVOutput, error) {
		mail, err := jobs.SendMail.StartChild(s, "notify", reference.SendMailInput("owner@example.com"))
		if err != nil {
			return reference.ImportCSVOutput{}, err
		}
		sent, err := durably.AwaitChild(s, "notified", mail)
		if err != nil {
			return reference.ImportCSVOutput{}, err
		}
		ok, err := reference.WaitForImportCSVApprove(s, "approval", durably.WithTimeout(time.Hour))
		if err != nil {
			return reference.ImportCSVOutput{}, err
		}
		out := reference.ImportCSVOutput{Imported: len(in.Rows), Warnings: []string{"approved by " + ok.By}}
		if !bool(sent) {
			out.Skipped = 1
		}
		return out, nil
	}
	var err error
	if jobs, err = reference.Register(e, hs, reference.WithoutSchedules()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(serveReference(t, e))
	t.Cleanup(srv.Close)
	return jobs, client.New(srv.URL)
}
