package durablyhttp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/runtime/sqlitestore"
	"github.com/durably-go/durably/store"
)

// flakyStore is a real SQLite store whose reads and API writes fail with
// store.ErrUnavailable while down is set, as a store does while its
// database is unreachable. Claim and the worker's writes stay real.
type flakyStore struct {
	*sqlitestore.Store
	down    atomic.Bool
	getRuns atomic.Bool // GetRun keeps working while down, to reach the next call
}

var errOutage = fmt.Errorf("dial tcp 10.0.0.7:5432 user=app: connection refused: %w", store.ErrUnavailable)

func (f *flakyStore) fail() error {
	if f.down.Load() {
		return errOutage
	}
	return nil
}

func (f *flakyStore) GetRun(ctx context.Context, id string) (*store.Run, error) {
	if err := f.fail(); err != nil && !f.getRuns.Load() {
		return nil, err
	}
	return f.Store.GetRun(ctx, id)
}

func (f *flakyStore) ListRuns(ctx context.Context, filter store.RunFilter) ([]*store.Run, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return f.Store.ListRuns(ctx, filter)
}

func (f *flakyStore) GetSteps(ctx context.Context, runID string) ([]*store.Step, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return f.Store.GetSteps(ctx, runID)
}

func (f *flakyStore) Enqueue(ctx context.Context, runs []store.NewRun) ([]store.Enqueued, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return f.Store.Enqueue(ctx, runs)
}

func (f *flakyStore) CancelRun(ctx context.Context, req store.CancelRequest) (store.Cancellation, error) {
	if err := f.fail(); err != nil {
		return store.Cancellation{}, err
	}
	return f.Store.CancelRun(ctx, req)
}

func (f *flakyStore) DeleteRun(ctx context.Context, id string) (*store.Run, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return f.Store.DeleteRun(ctx, id)
}

func openFlaky(t *testing.T) (*flakyStore, func() store.Store) {
	st, err := sqlitestore.Open(filepath.Join(t.TempDir(), "h.db"), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &flakyStore{Store: st}
	return f, func() store.Store { return f }
}

// started starts v's worker.
func (v *env) started() *env {
	v.t.Helper()
	if err := v.e.Start(); err != nil {
		v.t.Fatal(err)
	}
	return v
}

// wantJSONError checks the one shape of the handler's own errors (H-011):
// application/json, an object whose only member is "error".
func wantJSONError(t *testing.T, r response, status int, msg string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d (body %s)", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json (body %s)", ct, r.body)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil || len(m) != 1 {
		t.Fatalf("body %s is not {\"error\": …}", r.body)
	}
	got, ok := m["error"].(string)
	if !ok || !strings.HasPrefix(got, msg) {
		t.Fatalf("error %q, want it to start with %q", m["error"], msg)
	}
	retry := r.header.Get("Retry-After")
	if (status == 429 || status == 503) != (retry != "") {
		t.Fatalf("%d with Retry-After %q", status, retry)
	}
}

// tryStream opens a stream and returns its answer: for a refusal the full
// response, for a stream (200) the open stream's response with body "".
func (v *env) tryStream(path string, hdr http.Header) (response, func()) {
	v.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", v.srv.URL+"/api/durably"+path, nil)
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		v.t.Fatal(err)
	}
	closeIt := func() { cancel(); res.Body.Close() }
	if res.StatusCode == 200 {
		v.t.Cleanup(closeIt)
		return response{res.StatusCode, res.Header, ""}, closeIt
	}
	b, _ := io.ReadAll(res.Body)
	closeIt()
	return response{res.StatusCode, res.Header, string(b)}, func() {}
}

// waitStreams polls until the handler has n streams open.
func (v *env) waitStreams(n int, within time.Duration) time.Duration {
	v.t.Helper()
	start := time.Now()
	for v.h.OpenStreams() != n {
		if time.Since(start) > within {
			v.t.Fatalf("%d streams open after %v, want %d", v.h.OpenStreams(), within, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// TestHandlerErrorsOneShape goes through every error the handler makes
// itself: each is {"error": …} JSON (429 and 503 with Retry-After), except
// the 404 of an unknown route, which the protocol fixes as plain text
// (H-003), and a hook's own response, which is verbatim (H-013).
func TestHandlerErrorsOneShape(t *testing.T) {
	flaky, open := openFlaky(t)
	v := newEnv(t, open, func(_ *durably.Config, o *durablyhttp.Options[user, testLabels]) {
		o.MaxBodyBytes = 64
		o.MaxStreams = 1
		o.OnRequest = func(r *http.Request) error {
			if r.Header.Get("X-Fail") != "" {
				return errors.New("secret detail")
			}
			return nil
		}
	}).started()
	done := v.trigger(`{"jobName":"echo","input":{"message":"hi"}}`, admin)
	v.waitStatus(done, durably.StatusCompleted)
	withFail := admin.Clone()
	withFail.Set("X-Fail", "1")

	cases := []struct {
		name         string
		method, path string
		body         string
		hdr          http.Header
		before       func(t *testing.T) func()
		status       int
		msg          string
	}{
		{"missing runId", "GET", "/run", "", admin, nil, 400, "runId query parameter is required"},
		{"unknown run", "GET", "/steps?runId=nope", "", admin, nil, 404, "Run not found"},
		{"malformed body", "POST", "/trigger", `{"jobName":`, admin, nil, 400, "Invalid JSON body"},
		{"missing jobName", "POST", "/trigger", `{}`, admin, nil, 400, "jobName is required"},
		{"unknown job", "POST", "/trigger", `{"jobName":"nope","input":{}}`, admin, nil, 404, "Job not found: nope"},
		{"invalid input", "POST", "/trigger", `{"jobName":"echo","input":{}}`, admin, nil, 400, "Invalid input"},
		{"body too large", "POST", "/trigger", `{"jobName":"echo","input":{"message":"` + strings.Repeat("x", 100) + `"}}`, admin, nil, 413, "request body too large (limit 64 bytes)"},
		{"invalid status", "GET", "/runs?status=running", "", admin, nil, 400, "Invalid status: running"},
		{"invalid limit", "GET", "/runs?limit=-1", "", admin, nil, 400, "Invalid limit"},
		{"invalid offset", "GET", "/runs?offset=x", "", admin, nil, 400, "Invalid offset"},
		{"invalid label key", "GET", "/runs?label.a%20b=1", "", admin, nil, 400, "Invalid label key"},
		{"wrong status for cancel", "POST", "/cancel?runId=" + done, "", admin, nil, 409, "Cannot cancel completed run"},
		{"internal error", "GET", "/runs", "", withFail, nil, 500, "Internal Server Error"},
		{"database unavailable", "GET", "/runs", "", admin, func(*testing.T) func() {
			flaky.down.Store(true)
			return func() { flaky.down.Store(false) }
		}, 503, "Service Unavailable"},
		{"stream bound", "GET", "/runs/subscribe", "", admin, func(t *testing.T) func() {
			r, stop := v.tryStream("/runs/subscribe", admin)
			if r.status != 200 {
				t.Fatalf("first stream: %d %s", r.status, r.body)
			}
			return func() { stop(); v.waitStreams(0, 5*time.Second) }
		}, 429, "Too many open event streams (limit 1)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.before != nil {
				defer c.before(t)()
			}
			wantJSONError(t, v.do(c.method, c.path, c.body, c.hdr), c.status, c.msg)
		})
	}

	// The exceptions the protocol makes: the unknown route's text 404
	// (also for a wrong method on a known route: H-003 has no 405) and a
	// hook's verbatim response.
	for _, c := range []struct{ method, path string }{{"GET", "/nope"}, {"PUT", "/trigger"}, {"GET", "/trigger"}} {
		r := v.do(c.method, c.path, "", admin)
		if r.status != 404 || r.body != "Not Found" || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
			t.Errorf("%s %s: %d %q %s", c.method, c.path, r.status, r.body, r.header.Get("Content-Type"))
		}
	}
	v.do("GET", "/runs", "", nil).want(t, 401, "Unauthorized")

	// Last, because it is for good: a closed handler refuses new streams.
	v.h.Close()
	wantJSONError(t, v.do("GET", "/runs/subscribe", "", admin), 503, "server is shutting down")
}

// TestUnavailableIs503 checks issue 12 item 2 over HTTP: while the store
// reports store.ErrUnavailable, every route that reads or writes it answers
// 503 with Retry-After and a JSON error that does not leak the store's
// text; when it is back, the same requests succeed.
func TestUnavailableIs503(t *testing.T) {
	flaky, open := openFlaky(t)
	v := newEnv(t, open, func(_ *durably.Config, o *durablyhttp.Options[user, testLabels]) {
		o.RetryAfter = 3 * time.Second
	}).started()
	id := v.trigger(`{"jobName":"echo","input":{"message":"hi"}}`, admin)
	v.waitStatus(id, durably.StatusCompleted)
	pending := v.trigger(`{"jobName":"slow","input":{"message":"x"}}`, admin)

	routes := []struct {
		method, path, body string
		getRunWorks        bool // the route's later store call is the one that fails
	}{
		{"POST", "/trigger", `{"jobName":"echo","input":{"message":"hi"}}`, false},
		{"GET", "/runs", "", false},
		{"GET", "/run?runId=" + id, "", false},
		{"GET", "/steps?runId=" + id, "", false},
		{"GET", "/steps?runId=" + id, "", true},
		{"POST", "/retrigger?runId=" + id, "", false},
		{"POST", "/retrigger?runId=" + id, "", true},
		{"POST", "/cancel?runId=" + pending, "", false},
		{"POST", "/cancel?runId=" + pending, "", true},
		{"DELETE", "/run?runId=" + id, "", false},
		{"DELETE", "/run?runId=" + id, "", true},
		{"GET", "/subscribe?runId=" + id, "", false},
	}
	flaky.down.Store(true)
	for _, r := range routes {
		flaky.getRuns.Store(r.getRunWorks)
		got := v.do(r.method, r.path, r.body, admin)
		wantJSONError(t, got, 503, "Service Unavailable")
		if got.header.Get("Retry-After") != "3" || strings.Contains(got.body, "10.0.0.7") {
			t.Fatalf("%s %s: Retry-After %q, body %s", r.method, r.path, got.header.Get("Retry-After"), got.body)
		}
	}
	flaky.getRuns.Store(false)
	flaky.down.Store(false)
	v.do("GET", "/runs", "", admin).want(t, 200, "")
	v.do("GET", "/steps?runId="+id, "", admin).want(t, 200, "")
	v.do("POST", "/cancel?runId="+pending, "", admin).want(t, 200, `{"success":true}`)
}

// TestStreamBounds: past MaxStreamsPerPrincipal or MaxStreams a stream is
// refused with 429, and a stream that ends gives its slot back.
func TestStreamBounds(t *testing.T) {
	_, open := openFlaky(t)
	v := newEnv(t, open, func(_ *durably.Config, o *durablyhttp.Options[user, testLabels]) {
		o.MaxStreams = 3
		o.MaxStreamsPerPrincipal = 2
		o.StreamPrincipal = func(r *http.Request, u user) string { return u.ID }
	}).started()
	slow := v.trigger(`{"jobName":"slow","input":{"message":"x"}}`, admin)
	v.waitStatus(slow, durably.StatusLeased)

	r, stopA1 := v.tryStream("/subscribe?runId="+slow, admin)
	if r.status != 200 {
		t.Fatalf("first stream: %d %s", r.status, r.body)
	}
	if r, _ = v.tryStream("/runs/subscribe", admin); r.status != 200 {
		t.Fatalf("second stream: %d %s", r.status, r.body)
	}
	r, _ = v.tryStream("/runs/subscribe", admin)
	wantJSONError(t, r, 429, "Too many open event streams for this client (limit 2)")
	if r, _ = v.tryStream("/runs/subscribe", other); r.status != 200 {
		t.Fatalf("another principal's stream: %d %s", r.status, r.body)
	}
	r, _ = v.tryStream("/runs/subscribe", viewer)
	wantJSONError(t, r, 429, "Too many open event streams (limit 3)")

	// A refused stream took no slot; a closed one gives its slot back, and
	// so does one that ends because its run ended.
	v.waitStreams(3, 5*time.Second)
	stopA1()
	v.waitStreams(2, 5*time.Second)
	if r, _ = v.tryStream("/subscribe?runId="+slow, admin); r.status != 200 {
		t.Fatalf("stream after a slot was freed: %d %s", r.status, r.body)
	}
	close(v.gate)
	v.waitStatus(slow, durably.StatusCompleted)
	v.waitStreams(2, 5*time.Second)
	if r, _ = v.tryStream("/runs/subscribe", viewer); r.status != 200 {
		t.Fatalf("stream after the run's stream ended: %d %s", r.status, r.body)
	}

	_, err := durablyhttp.New(v.e, durablyhttp.Options[user, testLabels]{MaxStreamsPerPrincipal: 1})
	if err == nil || !strings.Contains(err.Error(), "StreamPrincipal") {
		t.Fatalf("MaxStreamsPerPrincipal without StreamPrincipal: %v", err)
	}
}

// TestStreamsOutliveServerTimeouts: an http.Server with ReadTimeout and
// WriteTimeout (as a production server sets them) ends ordinary requests
// at that age, but not event streams, which clear both deadlines.
func TestStreamsOutliveServerTimeouts(t *testing.T) {
	_, open := openFlaky(t)
	v := newEnv(t, open, func(_ *durably.Config, o *durablyhttp.Options[user, testLabels]) {
		o.Heartbeat = 20 * time.Millisecond
	}).started()
	srv := httptest.NewUnstartedServer(v.srv.Config.Handler)
	srv.Config.ReadTimeout = 150 * time.Millisecond
	srv.Config.WriteTimeout = 150 * time.Millisecond
	srv.Start()
	defer srv.Close()

	req, _ := http.NewRequest("GET", srv.URL+"/api/durably/runs/subscribe", nil)
	for k, vs := range admin {
		req.Header[k] = vs
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	start := time.Now()
	heartbeats := 0
	for time.Since(start) < 5*srv.Config.ReadTimeout {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("stream ended after %v (%d heartbeats)", time.Since(start), heartbeats)
			}
			if l == ": ping" {
				heartbeats++
			}
		case <-time.After(time.Second):
			t.Fatal("no line for 1s")
		}
	}
	// And it still carries events.
	v.trigger(`{"jobName":"echo","input":{"message":"late"}}`, admin)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("stream ended")
			}
			if strings.Contains(l, `"run:trigger"`) {
				return
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no run:trigger on the stream")
		}
	}
}
