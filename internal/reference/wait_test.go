package reference_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/reference"
	"github.com/durably-go/durably/internal/reference/client"
	"github.com/durably-go/durably/runtime/durablyclient"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/runtime/sqlitestore"
)

// referenceEngine is an engine with the reference's Config on a fresh
// SQLite file, its store closed when the test ends.
func referenceEngine(t *testing.T) *durably.Engine {
	t.Helper()
	st, err := sqlitestore.Open(filepath.Join(t.TempDir(), "ref.db"), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e, err := durably.New(reference.Config(durably.Config{Store: st, PollingInterval: 20 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// serveReference starts e's worker and returns a handler of its jobs,
// both stopped when the test ends.
func serveReference(t *testing.T, e *durably.Engine) *durablyhttp.Handler[reference.AuthContext, reference.Labels] {
	t.Helper()
	if err := e.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Stop(context.Background()) })
	h, err := durablyhttp.New(e, durablyhttp.Options[reference.AuthContext, reference.Labels]{Jobs: reference.JobSchemas()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// waitServer serves the reference jobs on SQLite: send-email fails for an
// address with "fail" and blocks for one with "block" until its run ends.
func waitServer(t *testing.T) (*durably.Engine, *reference.Jobs, *httptest.Server) {
	t.Helper()
	e := referenceEngine(t)
	hs := handlers
	hs.SendMail = func(ctx context.Context, s *durably.StepContext, in reference.SendMailInput) (reference.SendMailOutput, error) {
		switch {
		case strings.Contains(string(in), "fail"):
			return false, errors.New("mailbox full")
		case strings.Contains(string(in), "block"):
			<-ctx.Done()
			return false, ctx.Err()
		}
		return true, nil
	}
	jobs, err := reference.Register(e, hs)
	if err != nil {
		t.Fatal(err)
	}
	h := serveReference(t, e)
	// /broken/ is the same handler with its event streams cut, as some
	// proxies do: Wait must fall back to polling.
	mux := http.NewServeMux()
	mux.Handle("/api/", http.StripPrefix("/api", h))
	mux.Handle("/broken/", http.StripPrefix("/broken", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "subscribe") {
			http.Error(w, "no streams here", http.StatusBadGateway)
			return
		}
		h.ServeHTTP(w, r)
	})))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return e, jobs, srv
}

// TestClientWaits: the generated client's TriggerAndWait and Wait return
// the typed output over the event stream, fall back to polling, report
// failed and cancelled runs, and stop with their context.
func TestClientWaits(t *testing.T) {
	_, jobs, srv := waitServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	labels := reference.NewLabels("acme", reference.EnvProduction)
	// An hour between polls: only the stream can end these waits in time.
	c := client.New(srv.URL+"/api", durablyclient.WithPollInterval(time.Hour))

	in := reference.ImportCSVInput{Filename: "a.csv", Mode: reference.ImportCSVInputModeReplace,
		Rows: []reference.ImportCSVInputRowsItem{{Sku: "a", Quantity: 1}, {Sku: "b", Quantity: 2}}}
	out, err := c.TriggerAndWaitImportCSV(ctx, in, client.TriggerOptions{Labels: labels})
	if err != nil || out.Output.Imported != 2 || len(out.Output.Warnings) != 1 || out.RunID == "" || out.Disposition != durably.Created {
		t.Fatalf("TriggerAndWaitImportCSV = %+v, %v", out, err)
	}
	if ok, err := c.TriggerAndWaitSendMail(ctx, "x@example.com", client.TriggerOptions{Labels: labels}); err != nil || !bool(ok.Output) {
		t.Fatalf("TriggerAndWaitSendMail = %+v, %v", ok, err)
	}
	if _, err := c.TriggerAndWaitPing(ctx, client.TriggerOptions{Labels: labels}); err != nil {
		t.Fatalf("TriggerAndWaitPing: %v", err)
	}

	// A failed run.
	_, err = c.TriggerAndWaitSendMail(ctx, "fail@example.com", client.TriggerOptions{Labels: labels})
	var re *durablyclient.RunError
	if !errors.As(err, &re) || re.Status != durably.StatusFailed || !strings.Contains(re.Message, "mailbox full") {
		t.Fatalf("a failed run: %v", err)
	}

	// A cancelled run, and a wait that its context ends first.
	blocked, err := c.TriggerSendMail(ctx, "block@example.com", client.TriggerOptions{Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = c.WaitSendMail(short, blocked.RunID)
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a wait past its context: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.WaitSendMail(ctx, blocked.RunID)
		done <- err
	}()
	if err := c.Cancel(ctx, blocked.RunID); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, durably.ErrCancelled) {
		t.Fatalf("a cancelled run: %v", err)
	}

	// Another job's run, and no run at all.
	if _, err := c.WaitPing(ctx, out.RunID); !errors.Is(err, durably.ErrNotFound) {
		t.Fatalf("waiting for a run of another job: %v", err)
	}
	if _, err := c.WaitPing(ctx, "nope"); !errors.Is(err, durably.ErrNotFound) {
		t.Fatalf("waiting for no run: %v", err)
	}

	// Without event streams, Wait polls.
	polling := client.New(srv.URL+"/broken", durablyclient.WithPollInterval(20*time.Millisecond))
	out, err = polling.TriggerAndWaitImportCSV(ctx, in, client.TriggerOptions{Labels: labels})
	if err != nil || out.Output.Imported != 2 {
		t.Fatalf("TriggerAndWait by polling = %+v, %v", out, err)
	}

	// The in-process handle of a job without input takes none either.
	run, _, err := jobs.Ping.Trigger(ctx, labels, reference.TriggerOptions{})
	if err != nil || run.JobName != "ping" || string(run.Run.Input) != "null" {
		t.Fatalf("Ping.Trigger = %+v, %v", run, err)
	}
}

// TestTriggerWithoutInput: over HTTP, a job declared without input takes a
// missing or null input, or {} (what the React client sends), stores null,
// and refuses any other.
func TestTriggerWithoutInput(t *testing.T) {
	e, _, srv := waitServer(t)
	labels := `"labels": {"organizationId": "acme", "env": "staging"}`
	for _, c := range []struct {
		body string
		code int
	}{
		{`{"jobName": "ping", ` + labels + `}`, http.StatusOK},
		{`{"jobName": "ping", "input": null, ` + labels + `}`, http.StatusOK},
		{`{"jobName": "ping", "input": {}, ` + labels + `}`, http.StatusOK},
		{`{"jobName": "ping", "input": {"x": 1}, ` + labels + `}`, http.StatusBadRequest},
		{`{"jobName": "ping", "input": [], ` + labels + `}`, http.StatusBadRequest},
		{`{"jobName": "ping", "input": 1, ` + labels + `}`, http.StatusBadRequest},
	} {
		res, err := http.Post(srv.URL+"/api/trigger", "application/json", bytes.NewBufferString(c.body))
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ RunID string }
		json.NewDecoder(res.Body).Decode(&body)
		res.Body.Close()
		if res.StatusCode != c.code {
			t.Errorf("%s: %d, want %d", c.body, res.StatusCode, c.code)
		}
		if c.code != http.StatusOK {
			continue
		}
		if r, err := e.GetRun(context.Background(), body.RunID); err != nil || r == nil || string(r.Input) != "null" {
			t.Errorf("%s: stored input %s (%v), want null", c.body, r.Input, err)
		}
	}
}

// TestHandleWait: the generated handle's Wait returns the typed output and
// run of a run it started, a failed run's error, and not found for a run
// of another job.
func TestHandleWait(t *testing.T) {
	ctx := context.Background()
	_, jobs, _ := waitServer(t)
	labels := reference.NewLabels("acme", reference.EnvStaging)
	run, _, err := jobs.SendMail.Trigger(ctx, "a@example.com", labels, reference.TriggerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, r, err := jobs.SendMail.Wait(ctx, run.ID, durably.WithTimeout(10*time.Second))
	if err != nil || !bool(out) || r == nil || r.Status != durably.StatusCompleted || r.Input != "a@example.com" || r.Labels.OrganizationID != "acme" {
		t.Fatalf("Wait: %v, %+v, %v", out, r, err)
	}
	failed, _, err := jobs.SendMail.Trigger(ctx, "fail@example.com", labels, reference.TriggerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, r, err := jobs.SendMail.Wait(ctx, failed.ID, durably.WithTimeout(10*time.Second)); !errors.Is(err, durably.ErrRunFailed) || r != nil || !strings.Contains(err.Error(), "mailbox full") {
		t.Fatalf("Wait of a failed run: %v, %v", r, err)
	}
	if _, _, err := jobs.Ping.Wait(ctx, run.ID, durably.WithTimeout(10*time.Second)); !errors.Is(err, durably.ErrNotFound) {
		t.Fatalf("Wait of another job's run: %v", err)
	}
}

// TestHTTPErrorsNameArrayIndexes: an HTTP trigger's input errors name the
// item of an array they are in, whether the schema refuses the value or
// the Go type cannot hold it (an integer beyond an int).
func TestHTTPErrorsNameArrayIndexes(t *testing.T) {
	_, _, srv := waitServer(t)
	labels := `"labels": {"organizationId": "acme", "env": "staging"}`
	rows := func(last string) string {
		return `{"jobName": "import-csv", ` + labels + `, "input": {"filename": "a.csv", "mode": "append", "rows": [{"sku": "a", "quantity": 1}, {"sku": "b", "quantity": 2}, ` + last + `]}}`
	}
	for _, c := range []struct{ body, want string }{
		{rows(`{"sku": "c", "quantity": 0}`), "Invalid input: rows[2].quantity: must be >= 1 but found 0"},
		{rows(`{"sku": "c", "quantity": 1e30}`), "Invalid input: rows[2].quantity: expected integer, got number 1e30"},
		{rows(`{"sku": "c", "quantity": 9223372036854775808}`), "Invalid input: rows[2].quantity: expected integer, got number 9223372036854775808"},
	} {
		res, err := http.Post(srv.URL+"/api/trigger", "application/json", bytes.NewBufferString(c.body))
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Error string }
		json.NewDecoder(res.Body).Decode(&body)
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest || body.Error != c.want {
			t.Errorf("%s: %d %q, want 400 %q", c.body, res.StatusCode, body.Error, c.want)
		}
	}
}

// TestZeroValuesThatCompile: the zero values the generated types let a
// trigger take are refused when it runs, naming the field, and nothing is
// stored: the zero TriggerLabels{} (required labels declared), a required
// label left "" or given an enum's zero value, and an enum's zero value in
// a required input field. The Go client's zero labels send none.
func TestZeroValuesThatCompile(t *testing.T) {
	ctx := context.Background()
	e, jobs, srv := waitServer(t)
	in := reference.ImportCSVInput{Filename: "a.csv", Mode: reference.ImportCSVInputModeAppend, Rows: []reference.ImportCSVInputRowsItem{{Sku: "s", Quantity: 1}}}
	noMode := in
	noMode.Mode = reference.ImportCSVInputMode{}
	for _, c := range []struct {
		name   string
		in     reference.ImportCSVInput
		labels reference.TriggerLabels
		want   string
	}{
		{"zero TriggerLabels", in, reference.TriggerLabels{}, "labels: Invalid input: env: required; organizationId: required"},
		{"empty required string label", in, reference.NewLabels("", reference.EnvStaging), "labels: Invalid input: organizationId: required"},
		{"zero enum label", in, reference.NewLabels("acme", reference.Env{}), "labels: Invalid input: env: required"},
		{"zero enum in a required input field", noMode, reference.NewLabels("acme", reference.EnvStaging), `Invalid input: mode: value must be one of "append", "replace"`},
	} {
		_, _, err := jobs.ImportCSV.Trigger(ctx, c.in, c.labels, reference.TriggerOptions{})
		if !errors.Is(err, durably.ErrValidation) || err.Error() != c.want {
			t.Errorf("%s: %v, want a validation error %q", c.name, err, c.want)
		}
	}
	cl := client.New(srv.URL + "/api")
	if _, err := cl.TriggerImportCSV(ctx, in, client.TriggerOptions{}); err == nil || !strings.Contains(err.Error(), "organizationId: required") {
		t.Errorf("client trigger with zero labels: %v, want the server's refusal of the missing labels", err)
	}
	if runs, err := e.ListRuns(ctx, durably.RunFilter{}); err != nil || len(runs) != 0 {
		t.Fatalf("refused triggers stored %d runs (%v)", len(runs), err)
	}
}
