package durablyhttp_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/runtime/pgstore"
	"github.com/durably-go/durably/store"
)

const workerChildEnv = "DURABLY_HTTP_WORKER_CHILD"

// TestWorkerChild is the other process of TestCrossProcessEventsH049: an engine
// with a worker and no HTTP, until its parent kills it. It obeys commands
// read from stdin, one per line, so that the parent orders the two
// processes without sleeping:
//
//	await-watcher  answer "publishing" once this store sees another process watching
//	open-gate      let the "gated" run go on
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
	gate := make(chan struct{})
	durably.MustRegister(v.e, gatedSteps(gate))
	if err := v.e.Start(); err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("worker ready\n")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "await-watcher":
			deadline := time.Now().Add(30 * time.Second)
			for !st.Publishing() {
				if time.Now().After(deadline) {
					t.Fatal("no other process watches events")
				}
				time.Sleep(10 * time.Millisecond)
			}
			os.Stdout.WriteString("publishing\n")
		case "open-gate":
			close(gate)
		}
	}
	select {} // until killed
}

// gatedSteps is the "steps" job held at its first step until gate closes:
// the parent subscribes to the run while it cannot finish.
func gatedSteps(gate <-chan struct{}) *durably.Job[stepsIn, int] {
	return &durably.Job[stepsIn, int]{Name: "gated", Run: func(ctx context.Context, s *durably.StepContext, in stepsIn) (int, error) {
		if _, err := durably.RunStep(s, "gate", func(ctx context.Context) (bool, error) {
			select {
			case <-gate:
				return true, nil
			case <-ctx.Done():
				return false, context.Cause(ctx)
			}
		}); err != nil {
			return 0, err
		}
		sum := 0
		for i := 1; i <= in.Count; i++ {
			n, err := durably.RunStep(s, fmt.Sprintf("step-%d", i), func(ctx context.Context) (int, error) {
				s.Logger().Info(fmt.Sprintf("step %d", i))
				return i, nil
			})
			if err != nil {
				return 0, err
			}
			s.Progress(i, in.Count, fmt.Sprintf("step %d", i))
			sum += n
		}
		return sum, nil
	}}
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

	durably.MustRegister(v.e, gatedSteps(nil)) // B validates the trigger; A runs it

	// Server A: another process with the worker.
	cmd := exec.Command(os.Args[0], "-test.run=^TestWorkerChild$", "-test.v")
	cmd.Env = append(os.Environ(), workerChildEnv+"="+dsn)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	await := func(want string) {
		t.Helper()
		timeout := time.After(60 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("worker process ended before %q", want)
				}
				if l == want {
					return
				}
			case <-timeout:
				t.Fatalf("worker process did not say %q", want)
			}
		}
	}
	command := func(c string) {
		t.Helper()
		if _, err := io.WriteString(stdin, c+"\n"); err != nil {
			t.Fatalf("worker process command %s: %v", c, err)
		}
	}
	await("worker ready")

	// B watches (its list stream); A publishes from the moment it knows,
	// which it has to before the run is leased, or the list stream below
	// misses run:leased.
	list := v.open("/runs/subscribe", admin)
	command("await-watcher")
	await("publishing")
	id := v.trigger(`{"jobName":"gated","input":{"count":3}}`, admin)
	for deadline := time.Now().Add(30 * time.Second); ; {
		if run, err := v.e.GetRun(context.Background(), id); err == nil && run != nil && run.Status == durably.StatusLeased {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server A did not lease the run")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The run waits at its gate. The stream's first message, the snapshot,
	// shows that B is subscribed before A records any step: the run
	// cannot finish before B listens (it once did, and the stream held
	// run:complete alone).
	s := v.open("/subscribe?runId="+id, admin)
	if first := typeOf(s.next()); first != "run:leased" {
		t.Fatalf("snapshot of the gated run: %s", first)
	}
	command("open-gate")
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
	for len(listed) < 50 { // the run sends about 17 list messages
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
