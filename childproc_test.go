package durably_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/runtime/pgstore"
	"github.com/durably-go/durably/runtime/sqlitestore"
	"github.com/durably-go/durably/store"
)

// The harness the fault tests share: both stores under test, worker
// processes that are this test binary re-executed to run one child test,
// and waits that poll the database with a deadline.

const (
	// childEnv names the child test a re-executed binary is to run; a
	// parent test skips itself when it is set, a child test unless it
	// names that child.
	childEnv = "DURABLY_TEST_CHILD"
	// childStoreEnv carries the store spec (see openStore) to the child.
	childStoreEnv = "DURABLY_TEST_CHILD_STORE"
	// childReady is the line a child prints once it is working, for
	// parents that must not act before (see child.ready).
	childReady = "DURABLY-CHILD-READY"
)

// inChild reports whether this process is a child worker.
func inChild() bool { return os.Getenv(childEnv) != "" }

// childOnly skips a child test unless this process was started to run it.
func childOnly(t *testing.T, parent string) {
	t.Helper()
	if os.Getenv(childEnv) != t.Name() {
		t.Skip("child process of " + parent)
	}
}

// bothStores runs body in parallel subtests "sqlite" (a fresh file named
// file) and "postgres" (a fresh schema), giving it the store spec; in a
// child process it skips, as the parent tests must not run there.
func bothStores(t *testing.T, file string, body func(t *testing.T, storeSpec string)) {
	t.Helper()
	if inChild() {
		t.Skip("in the child")
	}
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			body(t, newStoreSpec(t, kind, file))
		})
	}
}

// newStoreSpec returns a spec for openStore: "sqlite:" and a file in a
// fresh directory, or the DSN of a fresh PostgreSQL schema.
func newStoreSpec(t testing.TB, kind, file string) string {
	t.Helper()
	if kind == "sqlite" {
		return "sqlite:" + filepath.Join(t.TempDir(), file)
	}
	return pgtest.Schema(t)
}

// openStore opens the store a spec names and closes it when the test ends.
func openStore(t testing.TB, spec string) store.Store {
	t.Helper()
	var st store.Store
	var err error
	if path, ok := strings.CutPrefix(spec, "sqlite:"); ok {
		st, err = sqlitestore.Open(path, sqlitestore.Options{})
	} else {
		st, err = pgstore.Open(context.Background(), spec, pgstore.Options{})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// parentEngine opens the store at spec for the parent's own engine, which
// triggers and inspects runs (and executes none unless started), with job
// registered and the schema migrated.
func parentEngine[I, O any](t *testing.T, spec string, cfg durably.Config, job *durably.Job[I, O]) (*durably.Engine, *durably.JobHandle[I, O]) {
	t.Helper()
	cfg.Store = openStore(t, spec)
	e, err := durably.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := durably.MustRegister(e, job)
	if err := e.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e, h
}

// workUntilDone is a child's body: start e and let it work until no run is
// pending or leased (the parent may kill the process first).
func workUntilDone(t *testing.T, e *durably.Engine) {
	t.Helper()
	ctx := context.Background()
	if err := e.Init(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		runs, err := e.ListRuns(ctx, durably.RunFilter{Statuses: []durably.Status{durably.StatusPending, durably.StatusLeased}})
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = e.Stop(ctx)
}

// child is a worker process: this test binary re-executed to run one
// child test.
type child struct {
	cmd    *exec.Cmd
	out    *syncBuffer // stdout and stderr
	waited chan error  // its exit, once
	reaped sync.Once
	err    error
}

// startChild starts the child test name with the store spec and extra
// environment ("KEY=value"); it is killed, if still alive, when t ends.
func startChild(t *testing.T, name, storeSpec string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.v")
	cmd.Env = append(os.Environ(), append([]string{childEnv + "=" + name, childStoreEnv + "=" + storeSpec}, env...)...)
	c := &child{cmd: cmd, out: &syncBuffer{}, waited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = c.out, c.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.waited <- cmd.Wait() }()
	t.Cleanup(c.kill)
	return c
}

// pid is the child's process id as the effect log writes it.
func (c *child) pid() int { return c.cmd.Process.Pid }

// wait reaps the child and returns its exit error.
func (c *child) wait() error {
	c.reaped.Do(func() { c.err = <-c.waited })
	return c.err
}

// waitTimeout is wait with a limit; ok is false if the child still runs.
func (c *child) waitTimeout(limit time.Duration) (err error, ok bool) {
	select {
	case err := <-c.waited:
		c.reaped.Do(func() { c.err = err })
		return c.err, true
	case <-time.After(limit):
		return nil, false
	}
}

// kill SIGKILLs the child and reaps it; a no-op once it has exited.
func (c *child) kill() {
	_ = c.cmd.Process.Kill() // SIGKILL on Unix
	_ = c.wait()
}

// freeze and thaw stop and continue the child (SIGSTOP, SIGCONT).
func (c *child) freeze() error { return c.cmd.Process.Signal(syscall.SIGSTOP) }
func (c *child) thaw() error   { return c.cmd.Process.Signal(syscall.SIGCONT) }

// ready waits until the child prints childReady.
func (c *child) ready(t *testing.T, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !strings.Contains(c.out.String(), childReady+"\n") {
		if err, exited := c.waitTimeout(10 * time.Millisecond); exited {
			t.Fatalf("child exited before it was ready: %v\n%s", err, c.out)
		}
		if time.Now().After(deadline) {
			c.kill()
			t.Fatalf("child not ready within %v\n%s", limit, c.out)
		}
	}
}

// killLoop runs TestCrashChild workers one after another with env: each of
// the first kills is SIGKILLed after a random delay in [least, least+spread)
// unless it finished first; the next one is left to finish the work. It
// fails unless at least 3 were killed, and returns their pids.
func killLoop(t *testing.T, storeSpec string, env []string, kills int, least, spread time.Duration) map[int]bool {
	t.Helper()
	return killLoopOf(t, "TestCrashChild", storeSpec, env, kills, least, spread)
}

// killLoopOf is killLoop with the child test name.
func killLoopOf(t *testing.T, name, storeSpec string, env []string, kills int, least, spread time.Duration) map[int]bool {
	t.Helper()
	killed := map[int]bool{}
	for round := 0; ; round++ {
		c := startChild(t, name, storeSpec, env...)
		if round < kills {
			err, exited := c.waitTimeout(least + time.Duration(rand.Int64N(int64(spread))))
			if !exited {
				c.kill()
				killed[c.pid()] = true
				continue
			}
			if err != nil {
				t.Fatalf("child failed: %v\n%s", err, c.out)
			}
		} else if err := c.wait(); err != nil {
			t.Fatalf("child failed: %v\n%s", err, c.out)
		}
		break
	}
	if len(killed) < 3 {
		t.Fatalf("only %d children were killed before the work was done: the test did not exercise crashes", len(killed))
	}
	return killed
}

// waitFor polls cond every 10 ms until it holds, failing the test after
// limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runToCompletion starts e (stopped when the test ends), triggers job
// with in and fails the test unless the run completes within 10 s; logs
// are shown on failure.
func runToCompletion[I, O any](t *testing.T, e *durably.Engine, job *durably.JobHandle[I, O], in I, logs fmt.Stringer) *durably.Run {
	t.Helper()
	ctx := context.Background()
	if err := e.Init(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Stop(ctx) })
	res, err := job.Trigger(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	run, err := e.WaitForRun(ctx, res.Run.ID, durably.WithTimeout(10*time.Second))
	if err != nil || run.Status != durably.StatusCompleted {
		t.Fatalf("run: %+v %v\n%s", run, err, logs)
	}
	return run
}

// completedRun fails the test unless run i (id) completed with output
// want; it returns the run's step records.
func completedRun(t *testing.T, e *durably.Engine, i int, id string, want string) []*durably.StepRecord {
	t.Helper()
	ctx := context.Background()
	run, err := e.GetRun(ctx, id)
	if err != nil || run == nil || run.Status != durably.StatusCompleted {
		t.Fatalf("run %d: %+v %v", i, run, err)
	}
	if string(run.Output) != want {
		t.Fatalf("run %d output %s, want %s", i, run.Output, want)
	}
	steps, err := e.GetSteps(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return steps
}

// completedCount counts the distinct step names with a completed record.
func completedCount(steps []*durably.StepRecord) map[string]int {
	completed := map[string]int{}
	for _, s := range steps {
		if s.Status == store.StepCompleted {
			completed[s.Name]++
		}
	}
	return completed
}

// syncBuffer is a log or output sink that other goroutines share with the
// test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
