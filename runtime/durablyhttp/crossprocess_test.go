package durablyhttp_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/runtime/pgstore"
	"github.com/durably-go/durably/runtime/store"
)

const workerChildEnv = "DURABLY_HTTP_WORKER_CHILD"

// TestWorkerChild is the other process of TestCrossProcessEventsH049: an engine
// with a worker and no HTTP, until its parent kills it.
func TestWorkerChild(t *testing.T) {
	dsn := os.Getenv(workerChildEnv)
	if dsn == "" {
		t.Skip("child process of TestCrossProcessEventsH049")
	}
	st, err := pgstore.Open(context.Background(), dsn, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v := newEnv(t, func() store.Store { return st }, func(c *durably.Config, _ *durablyhttp.Options[user, testLabels]) {})
	if err := v.e.Start(); err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("worker ready\n")
	select {} // until killed
}

// TestCrossProcessEventsH049: a client subscribed on server B sees the events
// of a run that server A, another process, executes (D3).
func TestCrossProcessEventsH049(t *testing.T) {
	if os.Getenv(workerChildEnv) != "" {
		t.Skip("in the child")
	}
	dsn := pgtest.Schema(t)
	// Server B: HTTP, no worker.
	st, err := pgstore.Open(context.Background(), dsn, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	v := newEnv(t, func() store.Store { return st })

	// Server A: another process with the worker.
	cmd := exec.Command(os.Args[0], "-test.run=^TestWorkerChild$", "-test.v")
	cmd.Env = append(os.Environ(), workerChildEnv+"="+dsn)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	buf := make([]byte, 4096)
	deadline := time.Now().Add(60 * time.Second)
	var seen strings.Builder
	for !strings.Contains(seen.String(), "worker ready") {
		if time.Now().After(deadline) {
			t.Fatalf("worker process did not start: %s", seen.String())
		}
		n, err := out.Read(buf)
		if err != nil {
			t.Fatalf("worker process: %v: %s", err, seen.String())
		}
		seen.Write(buf[:n])
	}

	list := v.open("/runs/subscribe", admin)
	id := v.trigger(`{"jobName":"steps","input":{"count":3,"delayMs":0}}`, admin)
	s := v.open("/subscribe?runId="+id, admin)
	var types []string
	for data := s.next(); data != ""; data = s.next() {
		types = append(types, typeOf(data))
	}
	got := strings.Join(types, " ")
	for _, want := range []string{"step:complete", "run:progress", "log:write", "run:complete"} {
		if !strings.Contains(got, want) {
			t.Fatalf("server B's stream of a run executed by A lacks %s: %s", want, got)
		}
	}
	if run, _ := v.e.GetRun(context.Background(), id); run == nil || run.Status != durably.StatusCompleted || run.LeaseOwner != "" {
		t.Fatalf("run %+v", run)
	}
	// The list stream on B saw A's lease and completion too.
	var listed []string
	for len(listed) < 20 {
		data := list.next()
		listed = append(listed, typeOf(data))
		if typeOf(data) == "run:complete" {
			break
		}
	}
	if l := strings.Join(listed, " "); !strings.Contains(l, "run:leased") || !strings.Contains(l, "run:complete") {
		t.Fatalf("list stream on B: %s", l)
	}
}
