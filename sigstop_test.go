package durably_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
	"github.com/jackc/pgx/v5"
)

// TestFrozenWorkerIsFenced freezes a worker process (SIGSTOP) in the middle
// of a step for longer than its lease, lets another process take the run
// over, and thaws the first one while the second executes that same step.
// The thawed process finishes its step, but nothing it writes is accepted:
// the step's record is the second process's, the run completes once with
// the right output, and every step has one record.
func TestFrozenWorkerIsFenced(t *testing.T) {
	bothStores(t, "frozen.db", frozenWorker)
}

// effectLines reads the side-effect file as [what, run, step, pid] fields.
func effectLines(t *testing.T, path string) [][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if f := strings.Fields(line); len(f) == 4 {
			out = append(out, f)
		}
	}
	return out
}

// inFlight returns the step pid has started and not ended, or "".
func inFlight(lines [][]string, pid string) string {
	open := ""
	for _, f := range lines {
		if f[3] != pid {
			continue
		}
		switch {
		case f[0] == "start":
			open = f[2]
		case f[0] == "end" && f[2] == open:
			open = ""
		}
	}
	return open
}

func frozenWorker(t *testing.T, storeSpec string) {
	effects := filepath.Join(t.TempDir(), "effects.log")
	e, job := parentEngine(t, storeSpec, durably.Config{}, crashJob(nil, 0))
	ctx := context.Background()
	res, err := job.Trigger(ctx, crashInput{N: 1})
	if err != nil {
		t.Fatal(err)
	}
	runID := res.Run.ID

	worker := func(spec string) *child {
		return startChild(t, "TestCrashChild", spec, append(crashEnv(effects, time.Second), crashStepEnv+"=400ms")...)
	}

	// A's connections are named, so that the test can tell whether A is
	// frozen inside a write transaction (see writeIdle).
	aSpec := tagConnections(t, storeSpec, "durably-frozen-a")
	a := worker(aSpec)
	aPid := fmt.Sprint(a.pid())
	// Freeze A inside step 2 or later.
	var step string
	var stoppedAt time.Time
	writing := 0 // freezes undone because A was writing
	waitFor(t, 20*time.Second, "the first worker to be inside a step", func() bool {
		lines := effectLines(t, effects)
		if s := inFlight(lines, aPid); s == "" || s == "1" {
			return false
		}
		if err := a.freeze(); err != nil {
			t.Fatal(err)
		}
		stoppedAt = time.Now()
		if step = inFlight(effectLines(t, effects), aPid); step == "" {
			_ = a.thaw() // it ended the step just before: try the next one
			return false
		}
		if !writeIdle(t, aSpec, "durably-frozen-a") {
			// Frozen while writing (the previous step's record, a
			// renewal): A would hold the database's write lock or the
			// run's row lock and B could never take the run over. Thaw
			// it and freeze it again a moment later, still in the step.
			writing++
			_ = a.thaw()
			return false
		}
		return true
	})
	// Its lease runs out while it is frozen.
	waitFor(t, 10*time.Second, "the frozen worker's lease to expire", func() bool {
		run, err := e.GetRun(ctx, runID)
		return err == nil && run.LeaseExpiresAt.Before(time.Now())
	})

	b := worker(storeSpec)
	bPid := fmt.Sprint(b.pid())
	waitFor(t, 20*time.Second, "the second worker to start the frozen step", func() bool {
		return inFlight(effectLines(t, effects), bPid) == step
	})
	if err := a.thaw(); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		name string
		c    *child
	}{{"second", b}, {"thawed", a}} {
		if err, exited := w.c.waitTimeout(30 * time.Second); !exited {
			t.Fatalf("%s worker did not finish\nA:\n%s\nB:\n%s", w.name, a.out, b.out)
		} else if err != nil {
			t.Fatalf("%s worker: %v\nA:\n%s\nB:\n%s", w.name, err, a.out, b.out)
		}
	}

	// The thawed worker did finish its step after losing the lease...
	thawedEnds := 0
	for _, f := range effectLines(t, effects) {
		if f[0] == "end" && f[2] == step && f[3] == aPid {
			thawedEnds++
		}
	}
	if thawedEnds != 1 {
		t.Fatalf("the thawed worker ended step %s %d times, want once (the test did not exercise a late write)", step, thawedEnds)
	}
	// ...but its record is not the one kept.
	run, err := e.GetRun(ctx, runID)
	if err != nil || run.Status != durably.StatusCompleted || string(run.Output) != "15" {
		t.Fatalf("run: %+v %v", run, err)
	}
	steps, err := e.GetSteps(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	records := map[string]int{}
	for _, s := range steps {
		if s.Status != store.StepCompleted {
			continue
		}
		records[s.Name]++
		if s.Name == "step-"+step && s.StartedAt.Before(stoppedAt) {
			t.Errorf("step %s's record started at %v, before the first worker was frozen: the stale lease holder's write was accepted", step, s.StartedAt)
		}
	}
	for i := 1; i <= crashSteps; i++ {
		if n := records[fmt.Sprintf("step-%d", i)]; n != 1 {
			t.Errorf("step-%d has %d completed records, want 1", i, n)
		}
	}
	t.Logf("worker %s frozen in step %s (after %d freezes undone as it was writing); worker %s took the run over; the thawed worker's late step was refused", aPid, step, writing, bPid)
}

// tagConnections returns spec with PostgreSQL connections named app (a
// SQLite spec is returned as it is: its locks are the file's).
func tagConnections(t *testing.T, spec, app string) string {
	t.Helper()
	if strings.HasPrefix(spec, "sqlite:") {
		return spec
	}
	u, err := url.Parse(spec)
	if err != nil || u.Scheme == "" {
		return spec + " application_name=" + app // a key=value DSN
	}
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	return u.String()
}

// writeIdle reports whether no write of a (frozen) process holds locks
// another process's writes would wait for: for SQLite, whether the write
// lock can be taken at once; for PostgreSQL, whether no connection named
// app (but the probe's own) is inside a transaction or a statement. The SQL is written here
// because it probes the databases' own locking, which no store method
// exposes.
func writeIdle(t *testing.T, spec, app string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if path, ok := strings.CutPrefix(spec, "sqlite:"); ok {
		conn, done := sqliteConn(ctx, t, path+"?_pragma=busy_timeout(0)")
		defer done()
		if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			return false // SQLITE_BUSY: the frozen process holds the write lock
		}
		if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
		return true
	}
	conn, err := pgx.Connect(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var busy int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state <> 'idle' AND pid <> pg_backend_pid()", app).Scan(&busy); err != nil {
		t.Fatal(err)
	}
	return busy == 0
}

// sqliteConn opens one connection of its own to a SQLite database; done
// closes it.
func sqliteConn(ctx context.Context, t *testing.T, dsn string) (conn *sql.Conn, done func()) {
	t.Helper()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	if conn, err = db.Conn(ctx); err != nil {
		db.Close()
		t.Fatal(err)
	}
	return conn, func() { conn.Close(); db.Close() }
}

// TestWriteIdleSeesAnOpenWrite: the frozen-worker test's probe tells a
// process inside a write transaction from one outside it, on both stores;
// without it the test could freeze its worker while that worker holds the
// lock the other worker needs, and time out.
func TestWriteIdleSeesAnOpenWrite(t *testing.T) {
	bothStores(t, "probe.db", func(t *testing.T, storeSpec string) {
		const app = "durably-probe-writer"
		spec := tagConnections(t, storeSpec, app)
		openStore(t, spec) // the database as a store leaves it (SQLite in WAL mode)
		ctx := context.Background()
		var begin, rollback func()
		if path, ok := strings.CutPrefix(spec, "sqlite:"); ok {
			conn, done := sqliteConn(ctx, t, path)
			defer done()
			// The statements a store's write transaction starts and ends with.
			begin = func() { _, _ = conn.ExecContext(ctx, "BEGIN IMMEDIATE") }
			rollback = func() { _, _ = conn.ExecContext(ctx, "ROLLBACK") }
		} else {
			conn, err := pgx.Connect(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			begin = func() { _, _ = conn.Exec(ctx, "BEGIN; SELECT 1") }
			rollback = func() { _, _ = conn.Exec(ctx, "ROLLBACK") }
		}
		if !writeIdle(t, spec, app) {
			t.Fatal("no write open, but the probe saw one")
		}
		begin()
		if writeIdle(t, spec, app) {
			t.Fatal("a write transaction is open, but the probe did not see it")
		}
		rollback()
		if !writeIdle(t, spec, app) {
			t.Fatal("the write ended, but the probe still sees it")
		}
	})
}
