package durablyhttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyclient"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/store"
)

// text is n bytes of letters and digits that do not repeat in any pattern
// a store could compress: the keys that made PostgreSQL's index refuse the
// row from about 2.7 KB.
func text(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

// TestStringsPastTheirLimitAreBadInput: a key, label or tenant
// label past its limit is a 400 naming the member, on both stores, and
// nothing is written; at the limit it is stored. Filters past their limit
// are 400s too, run ids no run can have are 404s. PostgreSQL answered the
// 3000-byte key with a 500 (its index refused the row) where SQLite
// stored it.
func TestStringsPastTheirLimitAreBadInput(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		srv, e := lengthsServer(t, open)
		post := func(members string) (int, string) {
			return send(t, http.MethodPost, srv.URL+"/trigger", `{"jobName":"echo","input":{"message":"m"},`+members+`}`)
		}
		created := 0
		for _, c := range []struct {
			members string
			status  int
			field   string // named by the error
		}{
			{`"idempotencyKey":"` + text(durably.MaxKeyBytes) + `"`, 200, ""},
			{`"idempotencyKey":"` + text(durably.MaxKeyBytes+1) + `"`, 400, "idempotencyKey"},
			{`"idempotencyKey":"` + text(3000) + `"`, 400, "idempotencyKey"},
			{`"concurrencyKey":"` + text(durably.MaxKeyBytes) + `"`, 200, ""},
			{`"concurrencyKey":"` + text(durably.MaxKeyBytes+1) + `"`, 400, "concurrencyKey"},
			{`"labels":{"org":"o","note":"` + text(durably.MaxLabelValueBytes) + `"}`, 200, ""},
			{`"labels":{"org":"o","note":"` + text(durably.MaxLabelValueBytes+1) + `"}`, 400, "labels.note"},
			{`"labels":{"org":"o","` + text(durably.MaxLabelKeyBytes) + `":"v"}`, 200, ""},
			{`"labels":{"org":"o","` + text(durably.MaxLabelKeyBytes+1) + `":"v"}`, 400, "label key"},
			// The tenant label within its own limit, but six bytes a
			// character in the key scope: [["org","\u003c…"]].
			{`"labels":{"org":"` + strings.Repeat("<", durably.MaxLabelValueBytes) + `"}`, 400, "labels.org"},
			{`"labels":{"org":"` + strings.Repeat("<", (durably.MaxKeyScopeBytes-len(`[["org",""]]`))/6) + `"}`, 200, ""},
		} {
			status, body := post(c.members)
			if status != c.status || !strings.Contains(body, c.field) {
				t.Errorf("trigger with %.60s…: %d %.200s; want %d naming %s", c.members, status, body, c.status, c.field)
			}
			if status == 200 {
				created++
			}
		}
		for _, c := range []struct {
			method, path string
			status       int
			field        string
		}{
			{"GET", "/runs?jobName=" + text(durably.MaxJobNameBytes+1), 400, "jobName"},
			{"GET", "/runs?label.note=" + text(durably.MaxLabelValueBytes+1), 400, "labels.note"},
			{"GET", "/runs?label." + text(durably.MaxLabelKeyBytes+1) + "=v", 400, "label key"},
			{"GET", "/run?runId=" + text(3000), 404, "Run not found"},
			{"GET", "/steps?runId=" + text(3000), 404, "Run not found"},
			{"GET", "/subscribe?runId=" + text(3000), 404, "Run not found"},
			{"POST", "/cancel?runId=" + text(3000), 404, "Run not found"},
			{"POST", "/retrigger?runId=" + text(3000), 404, "Run not found"},
			{"DELETE", "/run?runId=" + text(100_000), 404, "Run not found"},
		} {
			if status, body := send(t, c.method, srv.URL+c.path, ""); status != c.status || !strings.Contains(body, c.field) {
				t.Errorf("%s %.60s…: %d %.200s; want %d naming %s", c.method, c.path, status, body, c.status, c.field)
			}
		}
		if runs, err := e.ListRuns(t.Context(), durably.RunFilter{}); err != nil || len(runs) != created {
			t.Fatalf("%d runs for %d accepted triggers (%v)", len(runs), created, err)
		}
	})
}

// TestClientSeesLengthLimitsAsValidationErrors: the Go client
// reports a refused key or filter as durably.ErrValidation with the
// server's message, and a run id no run can have as no run.
func TestClientSeesLengthLimitsAsValidationErrors(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		srv, _ := lengthsServer(t, open)
		c := durablyclient.New[durably.MapLabels](srv.URL)
		ctx := t.Context()
		_, err := c.Trigger(ctx, "echo", msg{"m"}, durablyclient.TriggerOptions[durably.MapLabels]{IdempotencyKey: text(durably.MaxKeyBytes + 1)})
		if !errors.Is(err, durably.ErrValidation) || !strings.Contains(err.Error(), "idempotencyKey") {
			t.Errorf("Trigger with a key past its limit: %v; want a validation error naming idempotencyKey", err)
		}
		labels := durably.MapLabels{"org": "o", "note": text(durably.MaxLabelValueBytes + 1)}
		_, err = c.Trigger(ctx, "echo", msg{"m"}, durablyclient.TriggerOptions[durably.MapLabels]{Labels: &labels})
		if !errors.Is(err, durably.ErrValidation) || !strings.Contains(err.Error(), "labels.note") {
			t.Errorf("Trigger with a label past its limit: %v; want a validation error naming labels.note", err)
		}
		if _, err := c.ListRuns(ctx, durablyclient.ListOptions[durably.MapLabels]{JobNames: []string{text(durably.MaxJobNameBytes + 1)}}); !errors.Is(err, durably.ErrValidation) {
			t.Errorf("ListRuns by a job name past its limit: %v; want a validation error", err)
		}
		if run, err := c.GetRun(ctx, text(3000)); run != nil || err != nil {
			t.Errorf("GetRun of a 3000-byte id: %v %v; want no run", run, err)
		}
	})
}

// lengthsServer serves an engine with the tenant label "org" and the job
// "echo", without authentication.
func lengthsServer(t *testing.T, open func() store.Store) (*httptest.Server, *durably.Engine) {
	t.Helper()
	e, err := durably.New(durably.Config{Store: open(), TenantLabels: []string{"org"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	durably.MustRegister(e, &durably.Job[msg, msg]{Name: "echo", Run: func(ctx context.Context, s *durably.StepContext, in msg) (msg, error) { return in, nil }})
	h, err := durablyhttp.New(e, durablyhttp.Options[struct{}, durably.MapLabels]{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, e
}

// send makes a request and returns the status and the body's "error", or
// the body.
func send(t *testing.T, method, rawURL, body string) (int, string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(method, u.String(), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var eb struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
		return res.StatusCode, eb.Error
	}
	return res.StatusCode, string(b)
}
