package durablyhttp_test

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/runtime/durablytest"
	"github.com/durably-go/durably/store"
)

// The additive reads of issue 21 (the dashboard's): a creation window and a
// cursor on GET /runs, GET /runs/counts, GET /logs, and the jobs' settings
// on GET /jobs.

type wireRun struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	CreatedAt string `json:"createdAt"`
}

func listOf(t *testing.T, r response) []wireRun {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	var runs []wireRun
	if err := json.Unmarshal([]byte(r.body), &runs); err != nil {
		t.Fatal(err)
	}
	return runs
}

func ids(runs []wireRun) []string {
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = r.ID
	}
	return out
}

func TestRunsWindowAndCursorH100(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		epoch := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
		clk := durablytest.NewClock(epoch)
		var scoped []durablyhttp.RunsFilter[testLabels]
		var mu sync.Mutex
		v := newEnv(t, open, func(c *durably.Config, o *durablyhttp.Options[user, testLabels]) {
			c.Now = clk.Now
			inner := o.Auth.ScopeRuns
			o.Auth.ScopeRuns = func(ctx context.Context, u user, f durablyhttp.RunsFilter[testLabels]) (durablyhttp.RunsFilter[testLabels], error) {
				mu.Lock()
				scoped = append(scoped, f)
				mu.Unlock()
				return inner(ctx, u, f)
			}
		})
		// Five runs of org-a a second apart, newest last, and one of org-b
		// between them.
		var orgA []string
		for i := range 5 {
			clk.Set(epoch.Add(time.Duration(i) * time.Second))
			orgA = append(orgA, v.trigger(`{"jobName":"echo","input":{"message":"a"}}`, admin))
			if i == 2 {
				v.trigger(`{"jobName":"echo","input":{"message":"b"}}`, other)
			}
		}
		slices.Reverse(orgA) // newest first, as lists are

		// Pages after a cursor cover the organization's runs once, in order.
		var paged []string
		query := "/runs?limit=2"
		for range 10 {
			page := listOf(t, v.do("GET", query, "", admin))
			if len(page) == 0 {
				break
			}
			paged = append(paged, ids(page)...)
			last := page[len(page)-1]
			query = "/runs?limit=2&after=" + url.QueryEscape(last.CreatedAt+","+last.ID)
		}
		if !slices.Equal(paged, orgA) {
			t.Fatalf("pages gave %v, want %v", paged, orgA)
		}
		// The window: from inclusive, to exclusive.
		at := func(s int) string {
			return url.QueryEscape(epoch.Add(time.Duration(s) * time.Second).Format(time.RFC3339Nano))
		}
		if got := ids(listOf(t, v.do("GET", "/runs?createdFrom="+at(1)+"&createdTo="+at(3), "", admin))); !slices.Equal(got, orgA[2:4]) {
			t.Fatalf("window [1s, 3s): %v, want %v", got, orgA[2:4])
		}
		// The hook saw the window and the cursor, and may narrow them.
		mu.Lock()
		last := scoped[len(scoped)-1]
		sawCursor := slices.ContainsFunc(scoped, func(f durablyhttp.RunsFilter[testLabels]) bool { return f.After != nil })
		mu.Unlock()
		if !last.CreatedFrom.Equal(epoch.Add(time.Second)) || !last.CreatedTo.Equal(epoch.Add(3*time.Second)) || !sawCursor {
			t.Fatalf("ScopeRuns saw from %v to %v, a cursor: %v", last.CreatedFrom, last.CreatedTo, sawCursor)
		}

		for _, c := range []struct{ query, want string }{
			// Syntax first, by the handler; then the engine's range and
			// storability checks. Counts ignore the cursor's value.
			{"createdFrom=yesterday", `{"error":"Invalid createdFrom: must be an RFC 3339 time, got \"yesterday\""}`},
			{"createdTo=2026-04-01", `{"error":"Invalid createdTo: must be an RFC 3339 time, got \"2026-04-01\""}`},
			{"after=" + orgA[0], `{"error":"Invalid after: must be the createdAt and id of a run, as \u003ccreatedAt\u003e,\u003cid\u003e, got \"` + orgA[0] + `\""}`},
			{"after=2026-04-01T09:00:00.000Z,", `{"error":"Invalid after: must be the createdAt and id of a run, as \u003ccreatedAt\u003e,\u003cid\u003e, got \"2026-04-01T09:00:00.000Z,\""}`},
			{"createdFrom=" + url.QueryEscape("9999-12-31T23:59:59.9999Z"), `{"error":"createdFrom must be between years 1 and 9999, got 10000-01-01T00:00:00Z"}`},
		} {
			v.do("GET", "/runs?"+c.query, "", admin).want(t, 400, c.want)
			v.do("GET", "/runs/counts?"+c.query, "", admin).want(t, 400, c.want)
		}
		unstorable := "after=" + url.QueryEscape("2026-04-01T09:00:00Z,a\x00b")
		v.do("GET", "/runs?"+unstorable, "", admin).want(t, 400, `{"error":"after must be valid UTF-8 without NUL characters"}`)
		v.do("GET", "/runs/counts?"+unstorable, "", admin).want(t, 200, `{"pending":5,"leased":0,"completed":0,"failed":0,"cancelled":0}`)
	})
}

func TestRunCountsH101(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open)
		if err := v.e.Start(); err != nil {
			t.Fatal(err)
		}
		done := v.trigger(`{"jobName":"echo","input":{"message":"a"}}`, admin)
		slow := v.trigger(`{"jobName":"slow","input":{"message":"a"}}`, admin)
		b1 := v.trigger(`{"jobName":"echo","input":{"message":"b"}}`, other)
		b2 := v.trigger(`{"jobName":"echo","input":{"message":"b"}}`, other)
		v.waitStatus(b1, durably.StatusCompleted)
		v.waitStatus(b2, durably.StatusCompleted)
		v.waitStatus(done, durably.StatusCompleted)
		v.waitStatus(slow, durably.StatusLeased)
		v.hook.take()
		want := `{"pending":0,"leased":1,"completed":1,"failed":0,"cancelled":0}`
		v.do("GET", "/runs/counts", "", admin).want(t, 200, want)
		if got := v.hook.take(); got != "authenticate,onRequest,scopeRuns" {
			t.Fatalf("hooks of GET /runs/counts: %s", got)
		}
		// A guessed label of another organization is replaced by the hook;
		// status, cursor and limit do not narrow the counts.
		v.do("GET", "/runs/counts?label.organizationId=org-b&status=failed&limit=1&after=2026-01-01T00:00:00Z,x", "", admin).want(t, 200, want)
		v.do("GET", "/runs/counts?jobName=slow", "", admin).want(t, 200, `{"pending":0,"leased":1,"completed":0,"failed":0,"cancelled":0}`)
		v.do("GET", "/runs/counts", "", other).want(t, 200, `{"pending":0,"leased":0,"completed":2,"failed":0,"cancelled":0}`)
		v.do("GET", "/runs/counts?status=running", "", admin).want(t, 400, `{"error":"Invalid status: running. Must be one of: pending, leased, completed, failed, cancelled"}`)
		v.do("GET", "/runs/counts?label.bad%20key=x", "", admin).want(t, 400, "")
		v.do("GET", "/runs/counts", "", nil).want(t, 401, "Unauthorized")
		close(v.gate)
	})
}

func TestLogsRouteH102(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open, func(c *durably.Config, _ *durablyhttp.Options[user, testLabels]) { c.PreserveSteps = true })
		if err := v.e.Start(); err != nil {
			t.Fatal(err)
		}
		id := v.trigger(`{"jobName":"steps","input":{"count":3}}`, admin)
		v.waitStatus(id, durably.StatusCompleted)
		v.hook.take()
		res := v.do("GET", "/logs?runId="+id, "", viewer)
		res.want(t, 200, "")
		if got := v.hook.take(); got != "authenticate,onRequest,onRunAccess:steps" {
			t.Fatalf("hooks of GET /logs: %s", got)
		}
		var logs []struct {
			ID, RunID, Level, Message, CreatedAt string
			StepName                             *string
			Data                                 json.RawMessage
		}
		if err := json.Unmarshal([]byte(res.body), &logs); err != nil || len(logs) != 3 {
			t.Fatalf("GET /logs: %s (%v)", res.body, err)
		}
		for i, l := range logs {
			if l.RunID != id || l.Level != "info" || l.Message != "step "+string(rune('1'+i)) || l.StepName == nil ||
				*l.StepName != "step-"+string(rune('1'+i)) || l.CreatedAt == "" || l.ID == "" {
				t.Fatalf("log %d: %+v", i, l)
			}
		}
		v.do("GET", "/logs?runId="+id, "", other).want(t, 403, "Forbidden")
		v.do("GET", "/logs?runId=missing", "", admin).want(t, 404, `{"error":"Run not found"}`)
		v.do("GET", "/logs", "", admin).want(t, 400, `{"error":"runId query parameter is required"}`)
	})
}

func TestJobsListSettingsH103(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open, func(_ *durably.Config, o *durablyhttp.Options[user, testLabels]) {
			o.Jobs = []durably.JobSchema{{Name: "echo"}, {Name: "limited"}, {Name: "unregistered"}}
		})
		durably.MustRegister(v.e, &durably.Job[msg, msg]{Name: "limited", Priority: -2, MaxRunning: 3, MaxRunningPerTenant: 1,
			Timeout: time.Hour, StepTimeout: 1500 * time.Millisecond,
			Retry: &durably.RetryPolicy{MaxAttempts: 5, Max: time.Minute, Jitter: 0.25},
			Run:   func(ctx context.Context, s *durably.StepContext, in msg) (msg, error) { return in, nil }})
		v.do("GET", "/jobs", "", admin).want(t, 200, `[{"name":"echo","input":null,"output":null,"priority":0},`+
			`{"name":"limited","input":null,"output":null,"priority":-2,"maxRunning":3,"maxRunningPerTenant":1,"timeoutMs":3600000,"stepTimeoutMs":1500,`+
			`"retry":{"maxAttempts":5,"backoff":"exponential","initialMs":1000,"maxMs":60000,"jitter":0.25}},`+
			`{"name":"unregistered","input":null,"output":null,"priority":0}]`)
		if _, ok := v.e.JobSettings("nope"); ok {
			t.Fatal("JobSettings of an unknown job")
		}
	})
}
