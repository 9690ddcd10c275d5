package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably/internal/pgtest"
)

// childEnv makes the test binary act as the tenants command, so that the
// test starts the program without a separate `go build`, which compiled
// every dependency a second time (without -race) from a fresh clone.
const childEnv = "DURABLY_TENANTS_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main() // parses os.Args as the command would
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestTenantsProcess starts the fixture as a process, drives it over real
// HTTP as docs/contract.md ("The tenants fixture") describes, and stops it with SIGTERM; on SQLite and on
// PostgreSQL.
func TestTenantsProcess(t *testing.T) {
	bin := os.Args[0]
	t.Setenv(childEnv, "1") // inherited by the processes drive starts
	t.Run("sqlite", func(t *testing.T) { drive(t, bin, filepath.Join(t.TempDir(), "tenants.db")) })
	t.Run("postgres", func(t *testing.T) { drive(t, bin, pgtest.Schema(t)) })
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type caller struct {
	t    *testing.T
	base string
}

func (c caller) do(method, path, body string, user ...string) (int, string) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if len(user) == 3 {
		req.Header.Set("X-User-Id", user[0])
		req.Header.Set("X-Org-Id", user[1])
		req.Header.Set("X-Role", user[2])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func drive(t *testing.T, bin, db string) {
	var logs syncBuffer
	f := startFixture(t, bin, db, &logs, &logs)
	c := f.c
	admin := []string{"alice", "org-a", "admin"}
	viewer := []string{"victor", "org-a", "viewer"}
	other := []string{"bob", "org-b", "admin"}

	// Authentication.
	for _, h := range [][]string{{"", "org-a", "admin"}, {"alice", "", "admin"}, {"alice", "org-a", "root"}} {
		if code, body := c.do("GET", "/api/durably/runs", "", h...); code != 401 || body != "Unauthorized" {
			t.Fatalf("headers %v: %d %s", h, code, body)
		}
	}
	// Triggers: labels stamped from the context, schema after the hook.
	code, body := c.do("POST", "/api/durably/trigger", `{"jobName":"steps","input":{"count":3,"delayMs":5}}`, admin...)
	if code != 200 {
		t.Fatalf("trigger: %d %s", code, body)
	}
	var tr struct{ RunID string }
	_ = json.Unmarshal([]byte(body), &tr)
	for _, c2 := range []struct {
		body string
		user []string
		code int
	}{
		{`{"jobName":"steps","input":{"count":3,"delayMs":5}}`, viewer, 403},
		{`{"jobName":"echo","input":{"message":"x"},"labels":{"organizationId":"org-b","env":"production"}}`, admin, 403},
		{`{"jobName":"echo","input":{"message":"x"},"labels":{"organizationId":"org-a","env":"qa"}}`, admin, 400},
		{`{"jobName":"echo","input":{"message":""}}`, admin, 400},
		{`{"jobName":"steps","input":{"count":1001,"delayMs":0}}`, admin, 400},
		{`{"jobName":"steps","input":{"count":1,"delayMs":0,"extra":true}}`, admin, 400},
		{`{"jobName":"fail","input":{}}`, admin, 400},
		{`{"jobName":"slow","input":{"ms":"1"}}`, admin, 400},
		// The server decides who may set a priority: a member may not.
		{`{"jobName":"echo","input":{"message":"urgent"},"priority":-5}`, []string{"mia", "org-a", "member"}, 403},
		{`{"jobName":"echo","input":{"message":"urgent"},"priority":-5}`, admin, 200},
	} {
		if code, body := c.do("POST", "/api/durably/trigger", c2.body, c2.user...); code != c2.code {
			t.Fatalf("%s as %v: %d %s, want %d", c2.body, c2.user, code, body, c2.code)
		}
	}
	// The run's events over SSE, to completion.
	req, _ := http.NewRequest("GET", c.base+"/api/durably/subscribe?runId="+tr.RunID, nil)
	req.Header.Set("X-User-Id", "alice")
	req.Header.Set("X-Org-Id", "org-a")
	req.Header.Set("X-Role", "admin")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var ev struct{ Type string }
			_ = json.Unmarshal([]byte(data), &ev)
			types = append(types, ev.Type)
		}
	}
	res.Body.Close()
	if len(types) == 0 || types[len(types)-1] != "run:complete" {
		t.Fatalf("events %v", types)
	}
	code, body = c.do("GET", "/api/durably/run?runId="+tr.RunID, "", admin...)
	if code != 200 || !strings.Contains(body, `"output":{"sum":6}`) || !strings.Contains(body, `"organizationId":"org-a"`) {
		t.Fatalf("run: %d %s", code, body)
	}
	// Tenancy: org B sees nothing of org A.
	if code, body := c.do("GET", "/api/durably/run?runId="+tr.RunID, "", other...); code != 403 || body != "Forbidden" {
		t.Fatalf("other org read: %d %s", code, body)
	}
	if code, body := c.do("GET", "/api/durably/runs", "", other...); code != 200 || body != "[]" {
		t.Fatalf("other org list: %d %s", code, body)
	}
	// Cancel a slow run; a viewer may not.
	_, body = c.do("POST", "/api/durably/trigger", `{"jobName":"slow","input":{"ms":600000}}`, admin...)
	_ = json.Unmarshal([]byte(body), &tr)
	if code, _ := c.do("POST", "/api/durably/cancel?runId="+tr.RunID, "", viewer...); code != 403 {
		t.Fatalf("viewer cancel: %d", code)
	}
	if code, body := c.do("POST", "/api/durably/cancel?runId="+tr.RunID, "", admin...); code != 200 || body != `{"success":true}` {
		t.Fatalf("cancel: %d %s", code, body)
	}
	// A failing job fails with its message.
	_, body = c.do("POST", "/api/durably/trigger", `{"jobName":"fail","input":{"failAt":2}}`, admin...)
	_ = json.Unmarshal([]byte(body), &tr)
	for i := 0; ; i++ {
		_, body = c.do("GET", "/api/durably/run?runId="+tr.RunID, "", admin...)
		if strings.Contains(body, `"status":"failed"`) {
			break
		}
		if i > 1000 {
			t.Fatalf("fail job: %s", body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(body, `"error":"boom at step 2"`) {
		t.Fatalf("fail job: %s", body)
	}

	// SIGTERM with a run in flight: exit 0, the run resumable.
	c.do("POST", "/api/durably/trigger", `{"jobName":"slow","input":{"ms":600000}}`, admin...)
	time.Sleep(100 * time.Millisecond)
	f.terminate(t, &logs)
	if !strings.Contains(logs.String(), "shutting down") {
		t.Fatalf("logs:\n%s", logs.String())
	}
}
