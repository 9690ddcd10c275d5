package reference_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/internal/reference"
	"github.com/durably-go/durably/internal/reference/client"
	"github.com/durably-go/durably/runtime/durablyclient"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/runtime/pgstore"
	"github.com/durably-go/durably/runtime/sqlitestore"
	"github.com/durably-go/durably/store"
)

var handlers = reference.Handlers{
	ImportCSV: func(ctx context.Context, s *durably.StepContext, in reference.ImportCSVInput) (reference.ImportCSVOutput, error) {
		return durably.RunStep(s, "import", func(ctx context.Context) (reference.ImportCSVOutput, error) {
			out := reference.ImportCSVOutput{Imported: len(in.Rows)}
			if in.Mode == reference.ImportCSVInputModeReplace {
				out.Warnings = []string{"replaced"}
			}
			return out, nil
		})
	},
	SendMail: func(ctx context.Context, s *durably.StepContext, in reference.SendMailInput) (reference.SendMailOutput, error) {
		return reference.SendMailOutput(strings.Contains(string(in), "@")), nil
	},
	Ping: func(ctx context.Context, s *durably.StepContext, in reference.PingInput) (reference.PingOutput, error) {
		return reference.PingOutput{}, nil
	},
}

// TestRoundTrip: generated client → generated handler → runtime → typed
// output, on both stores.
func TestRoundTrip(t *testing.T) {
	stores := map[string]func(t *testing.T) store.Store{
		"sqlite": func(t *testing.T) store.Store {
			st, err := sqlitestore.Open(filepath.Join(t.TempDir(), "r.db"), sqlitestore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
		"postgres": func(t *testing.T) store.Store {
			st, err := pgstore.Open(context.Background(), pgtest.Schema(t), pgstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			roundTrip(t, open(t))
		})
	}
}

func roundTrip(t *testing.T, st store.Store) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	defer st.Close()
	e, err := durably.New(reference.Config(durably.Config{Store: st, PollingInterval: 20 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reference.Register(e, handlers); err != nil {
		t.Fatal(err)
	}
	if err := e.Init(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Stop(ctx)
	h, err := durablyhttp.New(e, durablyhttp.Options[reference.AuthContext, reference.Labels]{Jobs: reference.JobSchemas(), Auth: &durablyhttp.AuthConfig[reference.AuthContext, reference.Labels]{
		Authenticate: func(r *http.Request) (reference.AuthContext, error) {
			if r.Header.Get("Authorization") != "Bearer t0ken" {
				return reference.AuthContext{}, durablyhttp.Reject(401, "Unauthorized")
			}
			return reference.AuthContext{UserID: "u1", Role: reference.RoleAdmin}, nil
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.StripPrefix("/api/durably", h))
	defer srv.Close()
	defer h.Close()
	c := client.New(srv.URL+"/api/durably", durablyclient.WithRequestEditor(func(r *http.Request) error {
		r.Header.Set("Authorization", "Bearer t0ken")
		return nil
	}))

	labels := reference.NewLabels("acme", reference.EnvProduction)
	in := reference.ImportCSVInput{Filename: "items.csv", Mode: reference.ImportCSVInputModeReplace,
		Rows: []reference.ImportCSVInputRowsItem{{Sku: "a", Quantity: 1}, {Sku: "b", Quantity: 2}}}
	res, err := c.TriggerImportCSV(ctx, in, client.TriggerOptions{Labels: labels})
	if err != nil || res.Disposition != durably.Created {
		t.Fatalf("trigger: %+v %v", res, err)
	}
	var last durably.Event
	for ev, err := range c.SubscribeImportCSV(ctx, res.RunID) {
		if err != nil {
			t.Fatal(err)
		}
		last = ev
	}
	if last.Type != durably.EventRunComplete {
		t.Fatalf("stream ended with %s", last.Type)
	}
	run, err := c.GetImportCSVRun(ctx, res.RunID)
	if err != nil || run == nil {
		t.Fatalf("get: %v %v", run, err)
	}
	if run.Output.Imported != 2 || len(run.Output.Warnings) != 1 || run.Labels.Env != reference.EnvProduction ||
		run.Input.Mode != reference.ImportCSVInputModeReplace || run.Status != durably.StatusCompleted {
		t.Fatalf("typed run %+v", run)
	}
	runs, err := c.ListImportCSVRuns(ctx, client.ListOptions{Labels: &reference.Labels{OrganizationID: "acme"}})
	if err != nil || len(runs) != 1 || runs[0].ID != res.RunID {
		t.Fatalf("list: %v %v", runs, err)
	}
	if other, _ := c.GetSendMailRun(ctx, res.RunID); other != nil {
		t.Fatal("a run of import-csv came back as send-email's")
	}

	// Field-level validation from the generated schemas, as a 400.
	bad := in
	bad.Rows = []reference.ImportCSVInputRowsItem{{Sku: "", Quantity: 0}}
	_, err = c.TriggerImportCSV(ctx, bad, client.TriggerOptions{Labels: labels})
	if !errors.Is(err, durably.ErrValidation) || !strings.Contains(err.Error(), "rows[0].quantity") || !strings.Contains(err.Error(), "rows[0].sku") {
		t.Fatalf("bad input: %v", err)
	}
	_, err = c.TriggerImportCSV(ctx, in, client.TriggerOptions{Labels: reference.NewLabels("Not Valid!", reference.EnvStaging, reference.WithTeam("t"))})
	if !errors.Is(err, durably.ErrValidation) || !strings.Contains(err.Error(), "organizationId") {
		t.Fatalf("bad label: %v", err)
	}
	_, err = c.TriggerImportCSV(ctx, in, client.TriggerOptions{})
	if !errors.Is(err, durably.ErrValidation) || !strings.Contains(err.Error(), "labels: Invalid input: env: required") {
		t.Fatalf("missing labels (D1): %v", err)
	}

	// A scalar input and output, and a job without output.
	mail, err := c.TriggerSendMail(ctx, "x@example.com", client.TriggerOptions{Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.TriggerSendMail(ctx, "x", client.TriggerOptions{Labels: labels})
	if !errors.Is(err, durably.ErrValidation) {
		t.Fatalf("send-email with a 1-char address: %v", err)
	}
	ping, err := c.TriggerPing(ctx, client.TriggerOptions{Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{mail.RunID, ping.RunID} {
		for ev, err := range c.Subscribe(ctx, id) {
			if err != nil {
				t.Fatal(err)
			}
			_ = ev
		}
	}
	if r, _ := c.GetSendMailRun(ctx, mail.RunID); r == nil || !bool(r.Output) {
		t.Fatalf("send-email run %+v", r)
	}
	if r, _ := c.GetRun(ctx, ping.RunID); r == nil || r.Status != durably.StatusCompleted || string(r.Output) != "null" && r.Output != nil {
		t.Fatalf("ping run %+v output %s", r, r.Output)
	}

	// Discovery (GET /jobs) and typed server-side handles.
	jobs, err := c.Jobs(ctx)
	if err != nil || len(jobs) != 3 || jobs[0].Name != "import-csv" || !strings.Contains(string(jobs[0].Input), `"rows"`) {
		t.Fatalf("jobs: %v %v", jobs, err)
	}
	byOrg, err := reference.ListRunsByOrganizationID(ctx, e, "acme", durably.RunFilter{Statuses: []durably.Status{durably.StatusCompleted}})
	if err != nil || len(byOrg) != 3 {
		t.Fatalf("ListRunsByOrganizationID: %d %v", len(byOrg), err)
	}
	_, err = c.GetRun(ctx, "unknown")
	if err != nil {
		t.Fatalf("GetRun of a missing run: %v", err)
	}
	unauth := client.New(srv.URL + "/api/durably")
	if _, err := unauth.TriggerPing(ctx, client.TriggerOptions{}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("unauthenticated: %v", err)
	}
}
