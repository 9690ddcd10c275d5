package durablyhttp_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

type approval struct {
	By     string `json:"by"`
	Amount int    `json:"amount"`
}

var approve = durably.Signal[approval]{Name: "approve"}

// composeJobs registers on v's engine a job that waits for the signal
// approve and returns its payload, and one that runs an echo child and
// returns its output.
func composeJobs(v *env) {
	durably.MustRegister(v.e, &durably.Job[msg, approval]{Name: "approval", Signals: []durably.SignalDecl{approve},
		Run: func(ctx context.Context, s *durably.StepContext, _ msg) (approval, error) {
			return durably.WaitForSignal(s, "wait", approve)
		}})
	echo := durably.MustRegister(v.e, &durably.Job[msg, msg]{Name: "echo-child",
		Run: func(ctx context.Context, s *durably.StepContext, in msg) (msg, error) { return in, nil }})
	durably.MustRegister(v.e, &durably.Job[msg, msg]{Name: "parent",
		Run: func(ctx context.Context, s *durably.StepContext, in msg) (msg, error) {
			kid, err := echo.StartChild(s, "child", msg{Message: in.Message + "!"})
			if err != nil {
				return msg{}, err
			}
			return durably.AwaitChild(s, "await", kid)
		}})
}

// TestSignalRouteR244 sends signals over POST /signal: guarded by
// OnRunAccess with the operation signal, validated against the job's
// declaration (400 naming the member or field), refused for missing (404)
// and ended (409) runs, and kept until the run receives it.
func TestSignalRouteR244(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open)
		composeJobs(v)
		id := v.trigger(`{"jobName":"approval","input":{"message":"m"}}`, admin)
		for _, c := range []struct {
			name, path, body string
			hdr              map[string][]string
			status           int
			want             string
		}{
			{"no run id", "/signal", `{"name":"approve","payload":{}}`, admin, 400, `{"error":"runId query parameter is required"}`},
			{"unknown run", "/signal?runId=nope", `{"name":"approve","payload":{}}`, admin, 404, `{"error":"Run not found"}`},
			{"another tenant's run", "/signal?runId=" + id, `{"name":"approve","payload":{}}`, other, 403, "Forbidden"},
			{"not an object", "/signal?runId=" + id, `[1]`, admin, 400, `{"error":"Invalid JSON body: expected an object with name and payload"}`},
			{"no name", "/signal?runId=" + id, `{"payload":{}}`, admin, 400, `{"error":"name is required"}`},
			{"name not a string", "/signal?runId=" + id, `{"name":1}`, admin, 400, `{"error":"name must be a string"}`},
			{"undeclared", "/signal?runId=" + id, `{"name":"reject","payload":{}}`, admin, 400, `{"error":"name: job \"approval\" declares no signal \"reject\""}`},
			{"payload field", "/signal?runId=" + id, `{"name":"approve","payload":{"by":"x","amount":"1"}}`, admin, 400, `{"error":"Invalid payload: amount: expected integer, got string"}`},
		} {
			v.hook.take()
			r := v.do("POST", c.path, c.body, c.hdr)
			if r.status != c.status || r.body != c.want {
				t.Fatalf("%s: %d %s, want %d %s", c.name, r.status, r.body, c.status, c.want)
			}
		}
		v.do("GET", "/signals?runId="+id, "", admin).want(t, 200, "[]")
		v.hook.take()
		v.do("POST", "/signal?runId="+id, `{"name":"approve","payload":{"by":"ann","amount":3}}`, admin).want(t, 200, `{"success":true}`)
		if got := v.hook.take(); got != "authenticate,onRequest,onRunAccess:signal" {
			t.Fatalf("hooks %s", got)
		}
		r := v.do("GET", "/signals?runId="+id, "", admin)
		var sigs []map[string]any
		if err := json.Unmarshal([]byte(r.body), &sigs); err != nil || len(sigs) != 1 || sigs[0]["name"] != "approve" ||
			sigs[0]["runId"] != id || !strings.Contains(r.body, `"payload":{"by":"ann","amount":3}`) {
			t.Fatalf("GET /signals %s", r.body)
		}
		if err := v.e.Start(); err != nil {
			t.Fatal(err)
		}
		run := v.waitStatus(id, durably.StatusCompleted)
		if string(run.Output) != `{"by":"ann","amount":3}` {
			t.Fatalf("run %+v", run)
		}
		v.do("GET", "/signals?runId="+id, "", admin).want(t, 200, "[]")
		v.do("POST", "/signal?runId="+id, `{"name":"approve","payload":{}}`, admin).want(t, 409, `{"error":"Cannot signal completed run: `+id+`"}`)
	})
}

// TestChildrenOnTheWireR236 shows a child's parent on its run and a
// parent's children at GET /children.
func TestChildrenOnTheWireR236(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open)
		composeJobs(v)
		if err := v.e.Start(); err != nil {
			t.Fatal(err)
		}
		id := v.trigger(`{"jobName":"parent","input":{"message":"hi"}}`, admin)
		if run := v.waitStatus(id, durably.StatusCompleted); string(run.Output) != `{"message":"hi!"}` {
			t.Fatalf("parent %+v", run)
		}
		v.hook.take()
		r := v.do("GET", "/children?runId="+id, "", admin)
		r.want(t, 200, "")
		if got := v.hook.take(); got != "authenticate,onRequest,onRunAccess:read" {
			t.Fatalf("hooks %s", got)
		}
		var kids []map[string]any
		if err := json.Unmarshal([]byte(r.body), &kids); err != nil || len(kids) != 1 || kids[0]["parentRunId"] != id ||
			kids[0]["jobName"] != "echo-child" || kids[0]["status"] != "completed" {
			t.Fatalf("GET /children %s", r.body)
		}
		kid := kids[0]["id"].(string)
		if body := v.do("GET", "/run?runId="+kid, "", admin).body; !strings.HasSuffix(body, `"parentRunId":"`+id+`","waitingFor":null}`) {
			t.Fatalf("child's run %s", body)
		}
		v.do("GET", "/children?runId="+kid, "", admin).want(t, 200, "[]")
		v.do("GET", "/children?runId="+id, "", other).want(t, 403, "Forbidden")
	})
}
