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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/runtime/pgstore"
	"github.com/durably-go/durably/store"
)

// forEachStore runs fn as a subtest on SQLite and on PostgreSQL.
func forEachStore(t *testing.T, fn func(t *testing.T, open func() store.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, openSQLite(t))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		fn(t, openPostgres(t))
	})
}

// openPostgres opens PostgreSQL stores in a fresh schema of the test's.
func openPostgres(t *testing.T) func() store.Store {
	dsn := pgtest.Schema(t)
	return func() store.Store {
		st, err := pgstore.Open(context.Background(), dsn, pgstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
}

// user is the test's authentication context, from headers as in the
// tenants fixture.
type user struct {
	ID, Org, Role string
}

// testLabels is a typed labels struct, as generated code would make.
type testLabels struct {
	OrganizationID string
	Env            string
}

func (l testLabels) ToMap() map[string]string {
	m := map[string]string{}
	if l.OrganizationID != "" {
		m["organizationId"] = l.OrganizationID
	}
	if l.Env != "" {
		m["env"] = l.Env
	}
	return m
}

func (testLabels) FromMap(m map[string]string) (testLabels, error) {
	var l testLabels
	for k, v := range m {
		switch k {
		case "organizationId":
			l.OrganizationID = v
		case "env":
			l.Env = v
		default:
			return l, fmt.Errorf("unknown label %q", k)
		}
	}
	return l, nil
}

// labelSchema is the fixture's: organizationId 1–64 chars, env an enum,
// both required.
var labelSchema = durably.LabelSchemaFunc(func(m map[string]string) (map[string]string, error) {
	if n := len(m["organizationId"]); n < 1 || n > 64 {
		return nil, errors.New("Invalid input: organizationId: must be 1 to 64 characters")
	}
	if e := m["env"]; e != "production" && e != "staging" {
		return nil, errors.New("Invalid input: env: must be one of production, staging")
	}
	for k := range m {
		if k != "organizationId" && k != "env" {
			return nil, fmt.Errorf("Invalid input: unknown label %q", k)
		}
	}
	return m, nil
})

// hookLog records which hooks ran, in order.
type hookLog struct {
	mu    sync.Mutex
	calls []string
}

func (h *hookLog) add(s string) {
	h.mu.Lock()
	h.calls = append(h.calls, s)
	h.mu.Unlock()
}

func (h *hookLog) take() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := strings.Join(h.calls, ",")
	h.calls = nil
	return s
}

type msg struct {
	Message string `json:"message"`
}

type stepsIn struct {
	Count   int `json:"count"`
	DelayMs int `json:"delayMs"`
}

type env struct {
	t    *testing.T
	e    *durably.Engine
	h    *durablyhttp.Handler[user, testLabels]
	srv  *httptest.Server
	hook *hookLog
	gate chan struct{} // the "slow" job waits on it
}

type envOption func(*durably.Config, *durablyhttp.Options[user, testLabels])

// newEnv serves a tenants-like handler at /api/durably on a test server.
func newEnv(t *testing.T, open func() store.Store, opts ...envOption) *env {
	v := &env{t: t, hook: &hookLog{}, gate: make(chan struct{})}
	cfg := durably.Config{Store: open(), PollingInterval: 20 * time.Millisecond, MaxConcurrentRuns: 4, Labels: labelSchema}
	auth := &durablyhttp.AuthConfig[user, testLabels]{
		Authenticate: func(r *http.Request) (user, error) {
			v.hook.add("authenticate")
			u := user{ID: r.Header.Get("X-User-Id"), Org: r.Header.Get("X-Org-Id"), Role: r.Header.Get("X-Role")}
			if u.ID == "" || u.Org == "" || (u.Role != "admin" && u.Role != "member" && u.Role != "viewer") {
				return user{}, durablyhttp.Reject(401, "Unauthorized")
			}
			return u, nil
		},
		OnTrigger: func(ctx context.Context, u user, req *durablyhttp.TriggerRequest[testLabels]) error {
			v.hook.add("onTrigger")
			if u.Role == "viewer" {
				return durablyhttp.Reject(403, "Forbidden")
			}
			if req.Labels == nil {
				req.Labels = &testLabels{OrganizationID: u.Org, Env: "production"} // D8
			}
			if req.Labels.OrganizationID != u.Org {
				return durablyhttp.Reject(403, "Forbidden")
			}
			return nil
		},
		OnRunAccess: func(ctx context.Context, u user, run *durablyhttp.Run[testLabels], op durablyhttp.Operation) error {
			v.hook.add("onRunAccess:" + string(op))
			if run.Labels.OrganizationID != u.Org {
				return durablyhttp.Reject(403, "Forbidden")
			}
			if u.Role == "viewer" && (op == durablyhttp.OpRetrigger || op == durablyhttp.OpResume || op == durablyhttp.OpCancel || op == durablyhttp.OpDelete) {
				return durablyhttp.Reject(403, "Forbidden")
			}
			return nil
		},
		ScopeRuns: func(ctx context.Context, u user, f durablyhttp.RunsFilter[testLabels]) (durablyhttp.RunsFilter[testLabels], error) {
			v.hook.add("scopeRuns")
			f.Labels.OrganizationID = u.Org
			return f, nil
		},
	}
	hopts := durablyhttp.Options[user, testLabels]{
		Auth:      auth,
		OnRequest: func(r *http.Request) error { v.hook.add("onRequest"); return nil },
		BasePath:  "/api/durably",
		Heartbeat: -1,
	}
	for _, o := range opts {
		o(&cfg, &hopts)
	}
	e, err := durably.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	durably.MustRegister(e, &durably.Job[msg, msg]{Name: "echo",
		Run: func(ctx context.Context, s *durably.StepContext, in msg) (msg, error) {
			return durably.RunStep(s, "echo", func(ctx context.Context) (msg, error) { return in, nil })
		},
		ValidateInput: func(in *msg) error {
			if in.Message == "" {
				return errors.New("message: required")
			}
			return nil
		},
	})
	durably.MustRegister(e, &durably.Job[stepsIn, map[string]int]{Name: "steps",
		Run: func(ctx context.Context, s *durably.StepContext, in stepsIn) (map[string]int, error) {
			sum := 0
			for i := 1; i <= in.Count; i++ {
				n, err := durably.RunStep(s, fmt.Sprintf("step-%d", i), func(ctx context.Context) (int, error) {
					s.Logger().Info(fmt.Sprintf("step %d", i))
					return i, nil
				})
				if err != nil {
					return nil, err
				}
				s.Progress(i, in.Count, fmt.Sprintf("step %d", i))
				sum += n
			}
			return map[string]int{"sum": sum}, nil
		}})
	durably.MustRegister(e, &durably.Job[msg, msg]{Name: "slow",
		Run: func(ctx context.Context, s *durably.StepContext, in msg) (msg, error) {
			return durably.RunStep(s, "wait", func(ctx context.Context) (msg, error) {
				select {
				case <-v.gate:
					return in, nil
				case <-ctx.Done():
					return msg{}, context.Cause(ctx)
				}
			})
		}})
	if err := e.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	h, err := durablyhttp.New(e, hopts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/durably/", h)
	mux.Handle("/dashboard/", http.StripPrefix("/dashboard", h.Dashboard(durablyhttp.DashboardOptions{Title: "tests"})))
	v.e, v.h = e, h
	v.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		h.Close()
		v.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Stop(ctx)
	})
	return v
}

var (
	admin  = http.Header{"X-User-Id": {"u1"}, "X-Org-Id": {"org-a"}, "X-Role": {"admin"}}
	viewer = http.Header{"X-User-Id": {"u2"}, "X-Org-Id": {"org-a"}, "X-Role": {"viewer"}}
	other  = http.Header{"X-User-Id": {"u3"}, "X-Org-Id": {"org-b"}, "X-Role": {"admin"}}
)

type response struct {
	status int
	header http.Header
	body   string
}

func (v *env) do(method, path, body string, hdr http.Header) response {
	v.t.Helper()
	return v.request(method, "/api/durably"+path, body, hdr)
}

// request sends a request to the test server's path (the API's or the
// dashboard's).
func (v *env) request(method, path, body string, hdr http.Header) response {
	v.t.Helper()
	req, err := http.NewRequest(method, v.srv.URL+path, strings.NewReader(body))
	if err != nil {
		v.t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		v.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return response{res.StatusCode, res.Header, string(b)}
}

// want checks status and exact body.
func (r response) want(t *testing.T, status int, body string) {
	t.Helper()
	if r.status != status || (body != "" && r.body != body) {
		t.Fatalf("got %d %s\nwant %d %s", r.status, r.body, status, body)
	}
	// H-010, H-011: the handler's own JSON answers say so.
	if strings.HasPrefix(r.body, "{") || strings.HasPrefix(r.body, "[") {
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%d %s with Content-Type %q", r.status, r.body, ct)
		}
	}
}

// trigger posts a trigger and returns the run id.
func (v *env) trigger(body string, hdr http.Header) string {
	v.t.Helper()
	r := v.do("POST", "/trigger", body, hdr)
	if r.status != 200 {
		v.t.Fatalf("trigger %s: %d %s", body, r.status, r.body)
	}
	var out struct{ RunID string }
	if err := json.Unmarshal([]byte(r.body), &out); err != nil || out.RunID == "" {
		v.t.Fatalf("trigger response %s", r.body)
	}
	return out.RunID
}

func (v *env) waitStatus(id string, status durably.Status) *durably.Run {
	v.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		run, err := v.e.GetRun(context.Background(), id)
		if err == nil && run != nil && run.Status == status {
			return run
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("run %s never became %s (is %v)", id, status, run)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stream reads SSE messages of a GET until it ends or n messages arrived.
type stream struct {
	t      *testing.T
	res    *http.Response
	cancel context.CancelFunc
	lines  chan string
}

func (v *env) open(path string, hdr http.Header) *stream {
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
	s := &stream{t: v.t, res: res, cancel: cancel, lines: make(chan string, 1000)}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	v.t.Cleanup(s.close)
	return s
}

func (s *stream) close() {
	s.cancel()
	s.res.Body.Close()
}

// next returns the next data message, or "" when the stream ended.
func (s *stream) next() string {
	s.t.Helper()
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				return ""
			}
			if data, found := strings.CutPrefix(line, "data: "); found {
				return data
			}
		case <-time.After(15 * time.Second):
			s.t.Fatal("no SSE message within 15s")
		}
	}
}

// typeOf returns an SSE message's type.
func typeOf(data string) string {
	var m struct{ Type string }
	_ = json.Unmarshal([]byte(data), &m)
	return m.Type
}
