package durablyhttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/store"
)

func TestRoutingH001H003(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open)
		for _, c := range []struct{ method, path string }{
			{"HEAD", "/runs"}, {"OPTIONS", "/runs"}, {"PUT", "/trigger"}, {"GET", "/trigger"},
			{"POST", "/run"}, {"GET", "/runs/"}, {"GET", "/nope"}, {"GET", "/RUNS"},
		} {
			r := v.do(c.method, c.path, "", admin)
			if r.status != 404 || (c.method != "HEAD" && r.body != "Not Found") || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
				t.Errorf("%s %s: %d %q %s", c.method, c.path, r.status, r.body, r.header.Get("Content-Type"))
			}
		}
		// Authentication runs before routing (H-003, H-060).
		v.do("GET", "/nope", "", nil).want(t, 401, "Unauthorized")
		// The route is what follows the base path: a path that does not
		// start with it is no route, wherever the base path occurs in it.
		dash := v.h.Dashboard(durablyhttp.DashboardOptions{BasePath: "/ops/dash"})
		for _, c := range []struct {
			h    http.Handler
			path string
		}{
			{v.h, "/runs"}, {v.h, "/runs/api/durably"}, {v.h, "/x/api/durably/runs"}, {v.h, "/api/durablyruns"},
			{dash, "/api/runs"}, {dash, "/api/runs/ops/dash"}, {dash, "/x/ops/dash/api/runs"},
		} {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", c.path, nil)
			req.Header = admin.Clone()
			c.h.ServeHTTP(rec, req)
			if rec.Code != 404 || rec.Body.String() != "Not Found" {
				t.Errorf("GET %s outside the base path: %d %q", c.path, rec.Code, rec.Body.String())
			}
		}
	})
}

func TestAuthOrderH060H061(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open)
		v.do("GET", "/runs", "", nil).want(t, 401, "Unauthorized")
		if got := v.hook.take(); got != "authenticate" {
			t.Fatalf("a rejected authentication ran %s", got)
		}
		// Validation (400/404) comes before the route's hook …
		v.do("POST", "/trigger", `{"jobName":"nope"}`, admin).want(t, 404, `{"error":"Job not found: nope"}`)
		v.do("GET", "/run", "", admin).want(t, 400, `{"error":"runId query parameter is required"}`)
		v.do("GET", "/run?runId=missing", "", admin).want(t, 404, `{"error":"Run not found"}`)
		v.do("GET", "/runs?status=running", "", admin).want(t, 400, "")
		if got := v.hook.take(); got != "authenticate,onRequest,authenticate,onRequest,authenticate,onRequest,authenticate,onRequest" {
			t.Fatalf("hooks ran before validation passed: %s", got)
		}
		// … and the operation after it.
		id := v.trigger(`{"jobName":"echo","input":{"message":"hi"}}`, admin)
		v.do("GET", "/run?runId="+id, "", admin).want(t, 200, "")
		v.do("GET", "/runs", "", admin).want(t, 200, "")
		if got := v.hook.take(); got != "authenticate,onRequest,onTrigger,authenticate,onRequest,onRunAccess:read,authenticate,onRequest,scopeRuns" {
			t.Fatalf("hook order %s", got)
		}
		_, err := durablyhttp.New(v.e, durablyhttp.Options[user, testLabels]{Auth: &durablyhttp.AuthConfig[user, testLabels]{}})
		if err == nil || err.Error() != "createDurablyHandler: auth.authenticate is required when auth is provided" {
			t.Fatalf("Auth without Authenticate: %v", err)
		}
	})
}

func TestHookErrorsH013H065(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		secret := errors.New("password=hunter2")
		var hookErr error
		v := newEnv(t, open, func(_ *durably.Config, o *durablyhttp.Options[user, testLabels]) {
			inner := o.Auth.OnRunAccess
			o.Auth.OnRunAccess = func(ctx context.Context, u user, run *durablyhttp.Run[testLabels], op durablyhttp.Operation) error {
				if hookErr != nil {
					return hookErr
				}
				return inner(ctx, u, run, op)
			}
		})
		id := v.trigger(`{"jobName":"echo","input":{"message":"hi"}}`, admin)
		cases := []struct {
			err    error
			status int
			body   string
		}{
			{&durablyhttp.Rejection{Status: 418, Body: `{"custom":true}`, ContentType: "application/json"}, 418, `{"custom":true}`},
			{durablyhttp.Reject(404, "Not Found"), 404, "Not Found"},
			{&durably.Error{Kind: durably.ErrConflict, Msg: "busy"}, 409, `{"error":"busy"}`},
			{secret, 500, `{"error":"Internal Server Error"}`},
		}
		for _, c := range cases {
			hookErr = c.err
			v.do("GET", "/run?runId="+id, "", admin).want(t, c.status, c.body)
		}
		// On the subscribe route too, where the original answered 500 (H-046).
		hookErr = &durably.Error{Kind: durably.ErrConflict, Msg: "busy"}
		v.do("GET", "/subscribe?runId="+id, "", admin).want(t, 409, `{"error":"busy"}`)
	})
}

func TestTriggerH022H035(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open)
		cases := []struct {
			name, body string
			status     int
			want       string
		}{
			{"malformed JSON is 400 (D2)", `{"jobName":`, 400, `{"error":"Invalid JSON body: unexpected end of JSON input"}`},
			{"null body", `null`, 400, `{"error":"Invalid JSON body: expected an object"}`},
			{"array body", `[]`, 400, `{"error":"Invalid JSON body: expected an object"}`},
			{"string body", `"x"`, 400, `{"error":"Invalid JSON body: expected an object"}`},
			{"missing jobName", `{"input":{}}`, 400, `{"error":"jobName is required"}`},
			{"empty jobName", `{"jobName":"","input":{}}`, 400, `{"error":"jobName is required"}`},
			{"non-string jobName", `{"jobName":5}`, 400, `{"error":"jobName must be a string"}`},
			{"unknown job", `{"jobName":"nope","input":{}}`, 404, `{"error":"Job not found: nope"}`},
			{"invalid input", `{"jobName":"echo","input":{"message":""}}`, 400, `{"error":"Invalid input: message: required"}`},
			{"unknown input field", `{"jobName":"echo","input":{"message":"a","x":1}}`, 400, `{"error":"Invalid input: unknown field \"x\""}`},
			{"wrong input type", `{"jobName":"echo","input":{"message":1}}`, 400, `{"error":"Invalid input: message: expected string, got number"}`},
			{"bad labels type", `{"jobName":"echo","input":{"message":"a"},"labels":{"organizationId":1}}`, 400, `{"error":"labels must be an object of strings"}`},
			{"label schema after the hook", `{"jobName":"echo","input":{"message":"a"},"labels":{"organizationId":"org-a","env":"dev"}}`, 400, `{"error":"labels: Invalid input: env: must be one of production, staging"}`},
			{"unknown label key", `{"jobName":"echo","input":{"message":"a"},"labels":{"organizationId":"org-a","bad key":"x"}}`, 400, `{"error":"labels: unknown label \"bad key\""}`},
			{"non-string idempotencyKey", `{"jobName":"echo","input":{"message":"a"},"idempotencyKey":7}`, 400, `{"error":"idempotencyKey must be a string"}`},
			{"bad coalesce", `{"jobName":"echo","input":{"message":"a"},"coalesce":"merge","concurrencyKey":"k"}`, 400, `{"error":"Invalid coalesce value: 'merge'. Valid values: 'skip'"}`},
			{"coalesce without key", `{"jobName":"echo","input":{"message":"a"},"coalesce":"skip"}`, 400, `{"error":"coalesce requires concurrencyKey"}`},
			{"non-string runAt (R-207)", `{"jobName":"echo","input":{"message":"a"},"runAt":5}`, 400, `{"error":"runAt must be an RFC 3339 time string"}`},
			{"runAt not RFC 3339", `{"jobName":"echo","input":{"message":"a"},"runAt":"tomorrow"}`, 400, `{"error":"runAt must be an RFC 3339 time string, got \"tomorrow\""}`},
			{"empty runAt", `{"jobName":"echo","input":{"message":"a"},"runAt":""}`, 400, `{"error":"runAt must be an RFC 3339 time string"}`},
			{"negative delayMs", `{"jobName":"echo","input":{"message":"a"},"delayMs":-1}`, 400, `{"error":"delayMs must be a non-negative integer of at most 9223372036854"}`},
			{"fractional delayMs", `{"jobName":"echo","input":{"message":"a"},"delayMs":1.5}`, 400, `{"error":"delayMs must be a non-negative integer of at most 9223372036854"}`},
			{"string delayMs", `{"jobName":"echo","input":{"message":"a"},"delayMs":"10"}`, 400, `{"error":"delayMs must be a non-negative integer of at most 9223372036854"}`},
			{"delayMs beyond a duration", `{"jobName":"echo","input":{"message":"a"},"delayMs":9223372036855}`, 400, `{"error":"delayMs must be a non-negative integer of at most 9223372036854"}`},
			{"string priority", `{"jobName":"echo","input":{"message":"a"},"priority":"high"}`, 400, `{"error":"priority must be an integer between -2147483648 and 2147483647"}`},
			{"priority beyond 32 bits", `{"jobName":"echo","input":{"message":"a"},"priority":2147483648}`, 400, `{"error":"priority must be an integer between -2147483648 and 2147483647"}`},
			{"hook before validation: foreign org is 403", `{"jobName":"echo","input":{"message":""},"labels":{"organizationId":"org-b","env":"nope"}}`, 403, "Forbidden"},
		}
		for _, c := range cases {
			r := v.do("POST", "/trigger", c.body, admin)
			if r.status != c.status || (c.want != "" && r.body != c.want) {
				t.Errorf("%s: got %d %s, want %d %s", c.name, r.status, r.body, c.status, c.want)
			}
		}
		if runs, _ := v.e.ListRuns(context.Background(), durably.RunFilter{}); len(runs) != 0 {
			t.Fatalf("bad triggers wrote %d runs", len(runs))
		}
		// Success: the labels were stamped by the hook (D8).
		r := v.do("POST", "/trigger", `{"jobName":"echo","input":{"message":"a"},"concurrencyKey":"k"}`, admin)
		if r.status != 200 || !regexp.MustCompile(`^\{"runId":"[0-9A-Z]{26}","disposition":"created"\}$`).MatchString(r.body) || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("trigger: %d %s %v", r.status, r.body, r.header)
		}
		var first struct{ RunID string }
		_ = json.Unmarshal([]byte(r.body), &first)
		run, _ := v.e.GetRun(context.Background(), first.RunID)
		if run.Labels["organizationId"] != "org-a" || run.Labels["env"] != "production" {
			t.Fatalf("labels %v", run.Labels)
		}
		v.do("POST", "/trigger", `{"jobName":"echo","input":{"message":"b"},"concurrencyKey":"k"}`, admin).
			want(t, 409, `{"error":"A pending run already exists for concurrency key \"k\" in job \"echo\". Use coalesce: 'skip' to return the existing run instead."}`)
		v.do("POST", "/trigger", `{"jobName":"echo","input":{"message":"b"},"concurrencyKey":"k","coalesce":"skip"}`, admin).
			want(t, 200, `{"runId":"`+first.RunID+`","disposition":"coalesced"}`)
		v.do("POST", "/trigger", `{"jobName":"echo","input":{"message":"b"}}`, viewer).want(t, 403, "Forbidden")
		// Bodies over the limit are refused.
		big := `{"jobName":"echo","input":{"message":"` + strings.Repeat("x", 2<<20) + `"}}`
		v.do("POST", "/trigger", big, admin).want(t, 413, `{"error":"request body too large (limit 1048576 bytes)"}`)
	})
}

// clientRunKeys is H-020's key order.
// The original's keys come first, in its order; runAt, priority and attempt
// crashes and attempts are durably-go's additive members.
var clientRunKeys = []string{"id", "jobName", "input", "status", "currentStepIndex", "completedStepCount", "progress",
	"output", "error", "labels", "startedAt", "completedAt", "createdAt", "isTerminal", "isActive", "runAt", "priority", "attempt",
	"crashes", "attempts", "parentRunId", "waitingFor"}

func keysOf(t *testing.T, obj string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(obj))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", obj)
	}
	var keys []string
	for dec.More() {
		k, _ := dec.Token()
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func TestRunShapesH020H021H041H042(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open, func(c *durably.Config, _ *durablyhttp.Options[user, testLabels]) { c.PreserveSteps = true })
		id := v.trigger(`{"jobName":"steps","input":{"count":2,"delayMs":0},"idempotencyKey":"secret-key"}`, admin)
		r := v.do("GET", "/run?runId="+id, "", admin)
		r.want(t, 200, "")
		if got := keysOf(t, r.body); strings.Join(got, ",") != strings.Join(clientRunKeys, ",") {
			t.Fatalf("ClientRun keys %v", got)
		}
		for _, hidden := range []string{"idempotencyKey", "secret-key", "leaseOwner", "leaseGeneration", "updatedAt", "heartbeatAt"} {
			if strings.Contains(r.body, hidden) {
				t.Fatalf("ClientRun shows %s: %s", hidden, r.body)
			}
		}
		if !strings.Contains(r.body, `"status":"pending"`) || !strings.Contains(r.body, `"isTerminal":false,"isActive":true,"runAt":null,"priority":0,"attempt":0,"crashes":0,"attempts":[]`) ||
			!strings.Contains(r.body, `"progress":null,"output":null,"error":null`) || !strings.Contains(r.body, `"startedAt":null`) {
			t.Fatalf("pending run: %s", r.body)
		}
		if err := v.e.Start(); err != nil {
			t.Fatal(err)
		}
		v.waitStatus(id, durably.StatusCompleted)
		r = v.do("GET", "/run?runId="+id, "", admin)
		if !strings.Contains(r.body, `"output":{"sum":3}`) || !strings.Contains(r.body, `"isTerminal":true,"isActive":false`) ||
			!strings.Contains(r.body, `"progress":{"current":2,"total":2,"message":"step 2"}`) ||
			!regexp.MustCompile(`"completedAt":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"`).MatchString(r.body) {
			t.Fatalf("completed run: %s", r.body)
		}
		r = v.do("GET", "/steps?runId="+id, "", admin)
		var steps []map[string]any
		if err := json.Unmarshal([]byte(r.body), &steps); err != nil || len(steps) != 2 {
			t.Fatalf("steps %s", r.body)
		}
		// H-021's keys, then the additive attempt (issue 14, R-076).
		want := []string{"id", "runId", "name", "index", "status", "output", "error", "startedAt", "completedAt", "attempt"}
		first := r.body[1 : strings.Index(r.body, "}")+1]
		if got := keysOf(t, first); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("Step keys %v", got)
		}
		if steps[0]["name"] != "step-1" || steps[1]["index"] != float64(1) || steps[1]["output"] != float64(2) || steps[1]["attempt"] != float64(1) {
			t.Fatalf("steps %s", r.body)
		}
	})
}

func TestListRunsH036H040(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open)
		var ids []string
		for i := range 5 {
			job := "echo"
			if i%2 == 1 {
				job = "steps"
			}
			input := `{"message":"m"}`
			if job == "steps" {
				input = `{"count":1,"delayMs":0}`
			}
			ids = append(ids, v.trigger(fmt.Sprintf(`{"jobName":%q,"input":%s,"labels":{"organizationId":"org-a","env":%q}}`, job, input, []string{"production", "staging"}[i%2]), admin))
		}
		v.trigger(`{"jobName":"echo","input":{"message":"b"},"labels":{"organizationId":"org-b","env":"production"}}`, other)
		list := func(q string) []string {
			r := v.do("GET", "/runs"+q, "", admin)
			if r.status != 200 || r.body[0] != '[' {
				t.Fatalf("GET /runs%s: %d %s", q, r.status, r.body)
			}
			var runs []struct{ ID string }
			_ = json.Unmarshal([]byte(r.body), &runs)
			var out []string
			for _, run := range runs {
				out = append(out, run.ID)
			}
			return out
		}
		rev := func(idx ...int) string {
			var out []string
			for _, i := range idx {
				out = append(out, ids[i])
			}
			return fmt.Sprint(out)
		}
		cases := []struct{ q, want string }{
			{"", rev(4, 3, 2, 1, 0)}, // scoped to org-a: org-b's run never shows
			{"?jobName=steps", rev(3, 1)},
			{"?jobName=steps&jobName=echo", rev(4, 3, 2, 1, 0)},
			{"?jobName=", "[]"},
			{"?status=pending&status=completed", rev(4, 3, 2, 1, 0)},
			{"?status=completed", "[]"},
			{"?label.env=staging", rev(3, 1)},
			{"?label.env=production&label.env=staging", rev(3, 1)}, // last value wins
			{"?label.organizationId=org-b", rev(4, 3, 2, 1, 0)},    // scoping overrides
			{"?limit=2", rev(4, 3)},
			{"?limit=2&offset=2", rev(2, 1)},
			{"?offset=3", rev(1, 0)}, // D5
			{"?limit=0", "[]"},
			{"?limit=&offset=", rev(4, 3, 2, 1, 0)},
		}
		for _, c := range cases {
			if got := fmt.Sprint(list(c.q)); got != c.want && !(c.want == "[]" && got == "[]") {
				t.Errorf("GET /runs%s = %s, want %s", c.q, got, c.want)
			}
		}
		bad := []struct{ q, want string }{
			{"?status=", `{"error":"Invalid status: empty value. Must be one of: pending, leased, completed, failed, cancelled"}`},
			{"?status=pending&status=running", `{"error":"Invalid status: running. Must be one of: pending, leased, completed, failed, cancelled"}`},
			{"?limit=-1", `{"error":"Invalid limit: must be a non-negative integer"}`},
			{"?limit=abc", `{"error":"Invalid limit: must be a non-negative integer"}`},
			{"?limit=10abc", `{"error":"Invalid limit: must be a non-negative integer"}`},
			{"?offset=-5", `{"error":"Invalid offset: must be a non-negative integer"}`},
			{"?label.bad%20key=x", `{"error":"Invalid label key \"bad key\": must contain only alphanumeric characters, dashes, underscores, dots, and slashes"}`},
		}
		for _, c := range bad {
			v.do("GET", "/runs"+c.q, "", admin).want(t, 400, c.want)
		}
	})
}

// TestRunOperationsH012H014H043H045 also pins what useRunActions of the
// React client relies on (H-077): a retrigger answers with the new runId,
// cancel and delete with {"success":true}, a missing run with 404.
func TestRunOperationsH012H014H043H045(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open)
		id := v.trigger(`{"jobName":"echo","input":{"message":"a"},"concurrencyKey":"k"}`, admin)
		for _, c := range []struct{ method, path string }{{"POST", "/retrigger"}, {"POST", "/cancel"}, {"DELETE", "/run"}, {"GET", "/steps"}, {"GET", "/subscribe"}} {
			v.do(c.method, c.path, "", admin).want(t, 400, `{"error":"runId query parameter is required"}`)
			v.do(c.method, c.path+"?runId=", "", admin).want(t, 400, `{"error":"runId query parameter is required"}`)
			v.do(c.method, c.path+"?runId=nope", "", admin).want(t, 404, `{"error":"Run not found"}`)
		}
		v.do("POST", "/retrigger?runId="+id, "", admin).want(t, 409, `{"error":"Cannot retrigger pending run: `+id+`"}`)
		v.do("DELETE", "/run?runId="+id, "", admin).want(t, 409, `{"error":"Cannot delete pending run: `+id+`"}`)
		v.do("POST", "/cancel?runId="+id, "", viewer).want(t, 403, "Forbidden")
		v.do("POST", "/cancel?runId="+id, "", admin).want(t, 200, `{"success":true}`)
		v.do("POST", "/cancel?runId="+id, "", admin).want(t, 409, `{"error":"Cannot cancel already cancelled run: `+id+`"}`)
		r := v.do("POST", "/retrigger?runId="+id, "ignored body", admin)
		var re struct {
			Success bool
			RunID   string
		}
		if err := json.Unmarshal([]byte(r.body), &re); err != nil || r.status != 200 || !re.Success || re.RunID == "" || re.RunID == id {
			t.Fatalf("retrigger: %d %s", r.status, r.body)
		}
		v.do("POST", "/retrigger?runId="+id, "", admin).want(t, 409, "") // the new run holds the key
		v.do("DELETE", "/run?runId="+id, "", viewer).want(t, 403, "Forbidden")
		v.do("DELETE", "/run?runId="+id, "", admin).want(t, 200, `{"success":true}`)
		v.do("GET", "/run?runId="+id, "", admin).want(t, 404, `{"error":"Run not found"}`)
	})
}

// TestTenantIsolationH062H064: a user of org B can never reach a run of org
// A, whatever route, query parameter or label it tries; OnTrigger stamps
// the tenant (H-062), OnRunAccess hides foreign runs (H-063), ScopeRuns and
// ScopeRunsSubscribe force the tenant filter (H-064).
func TestTenantIsolationH062H064(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open)
		id := v.trigger(`{"jobName":"echo","input":{"message":"secret of org a"}}`, admin)
		for _, c := range []struct{ method, path string }{
			{"GET", "/run?runId=" + id}, {"GET", "/steps?runId=" + id}, {"POST", "/retrigger?runId=" + id},
			{"POST", "/cancel?runId=" + id}, {"DELETE", "/run?runId=" + id}, {"GET", "/subscribe?runId=" + id},
			{"GET", "/run?runId=" + id + "&label.organizationId=org-b"},
		} {
			v.do(c.method, c.path, "", other).want(t, 403, "Forbidden")
		}
		for _, q := range []string{"", "?label.organizationId=org-a", "?label.organizationId=org-a&label.organizationId=org-a", "?jobName=echo&status=pending"} {
			r := v.do("GET", "/runs"+q, "", other)
			if r.status != 200 || strings.Contains(r.body, id) || strings.Contains(r.body, "secret") {
				t.Fatalf("org b listed org a's run with %q: %s", q, r.body)
			}
		}
		v.do("POST", "/trigger", `{"jobName":"echo","input":{"message":"x"},"labels":{"organizationId":"org-a","env":"production"}}`, other).want(t, 403, "Forbidden")
		// The run is untouched.
		if run, _ := v.e.GetRun(context.Background(), id); run == nil || run.Status != durably.StatusPending {
			t.Fatalf("run %v", run)
		}
		// Org B's list stream never sees org A's events.
		s := v.open("/runs/subscribe?label.organizationId=org-a", other)
		v.trigger(`{"jobName":"echo","input":{"message":"again"}}`, admin)
		mine := v.trigger(`{"jobName":"echo","input":{"message":"b"}}`, other)
		if got := s.next(); !strings.Contains(got, mine) {
			t.Fatalf("org b's stream delivered %s before its own run", got)
		}
	})
}

// TestTriggerScheduleR207: the additive members runAt, delayMs and priority
// of the trigger body reach the run, and GET /run shows runAt and priority.
func TestTriggerScheduleR207(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open)
		at := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
		cases := []struct {
			name, members string
			runAt         func(created time.Time) time.Time
			priority      int
		}{
			{"runAt", `"runAt":"` + at.Format(time.RFC3339Nano) + `"`, func(time.Time) time.Time { return at }, 0},
			{"runAt with an offset", `"runAt":"` + at.In(time.FixedZone("x", 9*3600)).Format(time.RFC3339Nano) + `"`, func(time.Time) time.Time { return at }, 0},
			{"delayMs", `"delayMs":60000`, func(c time.Time) time.Time { return c.Add(time.Minute) }, 0},
			{"priority", `"priority":-7`, func(time.Time) time.Time { return time.Time{} }, -7},
			{"nulls are absent", `"runAt":null,"delayMs":null,"priority":null`, func(time.Time) time.Time { return time.Time{} }, 0},
		}
		for _, c := range cases {
			id := v.trigger(`{"jobName":"echo","input":{"message":"a"},`+c.members+`}`, admin)
			run, err := v.e.GetRun(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if want := c.runAt(run.CreatedAt); !run.RunAt.Equal(want) || run.Priority != c.priority {
				t.Errorf("%s: run has runAt %v priority %d, want %v %d", c.name, run.RunAt, run.Priority, want, c.priority)
			}
			body := v.do("GET", "/run?runId="+id, "", admin).body
			wantAt := "null"
			if !run.RunAt.IsZero() {
				wantAt = `"` + run.RunAt.Format("2006-01-02T15:04:05.000Z") + `"`
			}
			if want := fmt.Sprintf(`"runAt":%s,"priority":%d,"attempt":0,"crashes":0,"attempts":[],"parentRunId":null,"waitingFor":null}`, wantAt, c.priority); !strings.HasSuffix(body, want) {
				t.Errorf("%s: GET /run %s, want it to end with %s", c.name, body, want)
			}
		}
	})
}
