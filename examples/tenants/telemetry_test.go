package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/durably-go/durably/internal/pgtest"
)

// With -otel-stdout the fixture writes its spans to stdout: a trigger over
// HTTP, with the caller's traceparent, is traced in the caller's trace
// from the request to the run's step; on SQLite and on PostgreSQL.
func TestTenantsProcessTracesToStdout(t *testing.T) {
	bin := os.Args[0]
	t.Setenv(childEnv, "1")
	t.Run("sqlite", func(t *testing.T) { traceToStdout(t, bin, filepath.Join(t.TempDir(), "tenants.db")) })
	t.Run("postgres", func(t *testing.T) { traceToStdout(t, bin, pgtest.Schema(t)) })
}

// stdoutSpan is what the test reads of a span stdouttrace wrote.
type stdoutSpan struct {
	Name        string
	SpanContext struct{ TraceID, SpanID string }
	Parent      struct{ TraceID, SpanID string }
}

func traceToStdout(t *testing.T, bin, db string) {
	var stdout, stderr syncBuffer
	f := startFixture(t, bin, db, &stdout, &stderr, "-otel-stdout")
	c := f.c

	const traceID, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, _ := http.NewRequest("POST", c.base+"/api/durably/trigger", strings.NewReader(`{"jobName":"echo","input":{"message":"hi"}}`))
	for k, v := range map[string]string{"X-User-Id": "alice", "X-Org-Id": "org-a", "X-Role": "admin",
		"traceparent": "00-" + traceID + "-" + callerSpan + "-01"} {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var tr struct{ RunID string }
	if err := json.Unmarshal(body, &tr); err != nil || res.StatusCode != 200 {
		t.Fatalf("trigger: %d %s", res.StatusCode, body)
	}
	for i := 0; ; i++ {
		if _, run := c.do("GET", "/api/durably/run?runId="+tr.RunID, "", "alice", "org-a", "admin"); strings.Contains(run, `"status":"completed"`) {
			break
		}
		if i > 1000 {
			t.Fatalf("the run did not complete\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The spans are written out at the latest when the process stops.
	f.terminate(t, &stderr)

	byName := map[string]stdoutSpan{}
	dec := json.NewDecoder(strings.NewReader(stdout.String()))
	for {
		var s stdoutSpan
		if err := dec.Decode(&s); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("stdout is not spans as JSON: %v\n%s", err, stdout.String())
		}
		byName[s.Name] = s
	}
	server, trigger := byName["POST /api/durably/trigger"], byName["trigger echo"]
	execution, step := byName["execute echo"], byName["step echo"]
	for _, c := range []struct {
		name   string
		s      stdoutSpan
		parent string
	}{
		{"server", server, callerSpan},
		{"trigger", trigger, server.SpanContext.SpanID},
		{"execution", execution, trigger.SpanContext.SpanID},
		{"step", step, execution.SpanContext.SpanID},
	} {
		if c.s.SpanContext.TraceID != traceID || c.s.Parent.SpanID != c.parent || c.parent == "" {
			t.Errorf("%s span %+v: want it in trace %s with parent %s", c.name, c.s, traceID, c.parent)
		}
	}
}

// fixture is the tenants command run as a process by a test.
type fixture struct {
	cmd    *exec.Cmd
	exited chan error
	c      caller
}

// startFixture starts the command (bin, this test binary acting as it) on
// db with extra flags, its output to stdout and stderr, and waits until it
// is healthy; it is killed, if still running, when the test ends.
func startFixture(t *testing.T, bin, db string, stdout, stderr *syncBuffer, flags ...string) *fixture {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(bin, append([]string{"-addr", addr, "-db", db, "-shutdown-timeout", "300ms"}, flags...)...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f := &fixture{cmd: cmd, exited: make(chan error, 1), c: caller{t, "http://" + addr}}
	go func() { f.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-f.exited
	})
	waitHealthy(t, f.c, stderr)
	return f
}

// waitHealthy waits until the fixture answers /healthz.
func waitHealthy(t *testing.T, c caller, logs fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(c.base + "/healthz")
		if res != nil {
			res.Body.Close()
		}
		if err == nil && res.StatusCode == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not healthy: %v\n%s", err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// terminate sends SIGTERM and fails the test unless the process exits
// successfully within 30 s.
func (f *fixture) terminate(t *testing.T, logs fmt.Stringer) {
	t.Helper()
	if err := f.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-f.exited:
		f.exited <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no exit after SIGTERM\n%s", logs)
	}
}
