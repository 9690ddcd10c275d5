package durably_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/faultproxy"
	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/runtime/pgstore"
	"github.com/durably-go/durably/runtime/sqlitestore"
	"github.com/durably-go/durably/store"
)

// outageStore is a store with a way to take its database away and bring it
// back: a fault proxy between pgx and PostgreSQL, or injected SQLite errors.
type outageStore struct {
	st      store.Store
	down    func()
	up      func()
	closeFn func()
}

func openOutageStore(t *testing.T, kind string, logger *slog.Logger) outageStore {
	t.Helper()
	switch kind {
	case "sqlite-busy", "sqlite-full":
		st, err := sqlitestore.Open(filepath.Join(t.TempDir(), "outage.db"), sqlitestore.Options{Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		fault := sqlitestore.FaultBusy
		if kind == "sqlite-full" {
			fault = sqlitestore.FaultDiskFull
		}
		return outageStore{st: st,
			down:    func() { st.InjectFault(fault) },
			up:      func() { st.InjectFault(sqlitestore.NoFault) },
			closeFn: func() { st.Close() }}
	case "postgres", "postgres-blackhole":
		u, err := url.Parse(pgtest.Schema(t))
		if err != nil {
			t.Fatal(err)
		}
		proxy, err := faultproxy.Start(u.Host)
		if err != nil {
			t.Fatal(err)
		}
		u.Host = proxy.Addr()
		st, err := pgstore.Open(context.Background(), u.String(), pgstore.Options{Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		if kind == "postgres-blackhole" {
			// A network partition: nothing passes, nothing fails; TCP
			// delivers what was held back once it heals.
			return outageStore{st: st, down: proxy.Blackhole, up: func() {
				if err := proxy.Restore(); err != nil {
					t.Error(err)
				}
			}, closeFn: func() { proxy.Close(); st.Close() }}
		}
		return outageStore{st: st,
			// A restart as the clients see it: open connections reset,
			// new ones refused.
			down: func() {
				if err := proxy.Refuse(); err != nil {
					t.Error(err)
				}
				proxy.Reset()
			},
			up: func() {
				if err := proxy.Restore(); err != nil {
					t.Error(err)
				}
			},
			closeFn: func() { st.Close(); proxy.Close() }}
	}
	t.Fatalf("unknown store kind %q", kind)
	return outageStore{}
}

// TestOutageRunsResume takes the database away for 3 s while runs are in
// the middle of their steps, then brings it back: every run completes with
// every step executed exactly once, each run moves on within 2 s of the
// database's return, without restarting anything, and the outage is
// logged once when it starts and once when it ends.
func TestOutageRunsResume(t *testing.T) {
	for _, kind := range []string{"sqlite-busy", "sqlite-full", "postgres", "postgres-blackhole"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			outage(t, kind)
		})
	}
}

func outage(t *testing.T, kind string) {
	const (
		runs  = 4
		steps = 8
	)
	logs := &syncBuffer{}
	logger := newTextLogger(logs)
	db := openOutageStore(t, kind, logger)
	defer db.closeFn()

	var mu sync.Mutex
	executed := map[string]int{}       // run/step → executions
	lastStep := map[string]time.Time{} // run → last step completion seen
	e, err := durably.New(durably.Config{Store: db.st, Logger: logger, MaxConcurrentRuns: runs, LeaseDuration: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	job := durably.MustRegister(e, &durably.Job[int, int]{
		Name: "outage",
		Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			for i := range steps {
				if _, err := durably.RunStep(s, fmt.Sprintf("step-%d", i), func(ctx context.Context) (int, error) {
					mu.Lock()
					executed[fmt.Sprintf("%s/%d", s.RunID(), i)]++
					mu.Unlock()
					time.Sleep(150 * time.Millisecond)
					return i, nil
				}); err != nil {
					return 0, err
				}
			}
			return in, nil
		},
	})
	e.OnEvent(func(ev durably.Event) {
		if ev.Type == durably.EventStepComplete {
			mu.Lock()
			lastStep[ev.RunID] = time.Now()
			mu.Unlock()
		}
	})
	ctx := context.Background()
	if err := e.Init(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Stop(ctx)
	var ids []string
	for i := range runs {
		res, err := job.Trigger(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.Run.ID)
	}
	// Wait until every run is mid-flight: a step of each recorded.
	waitFor(t, 10*time.Second, "every run to record a step", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(lastStep) == runs
	})

	db.down()
	time.Sleep(3 * time.Second) // the outage itself: nothing to poll for
	// A partition fails calls too, once the store finds the server out of
	// reach (pgstore's liveness check), rather than making them hang.
	start := time.Now()
	if _, err := job.Trigger(ctx, 99); !errors.Is(err, durably.ErrUnavailable) {
		t.Errorf("trigger during the outage: %v, want ErrUnavailable", err)
	}
	t.Logf("%s: a trigger during the outage failed after %v", kind, time.Since(start).Round(time.Millisecond))
	back := time.Now()
	db.up()

	// Every run moves on (records a step or completes) within 2 s.
	waitFor(t, 10*time.Second, "every run to move after the outage", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			if !lastStep[id].After(back) {
				return false
			}
		}
		return true
	})
	mu.Lock()
	var slowest time.Duration
	for _, id := range ids {
		slowest = max(slowest, lastStep[id].Sub(back))
	}
	mu.Unlock()
	for _, id := range ids {
		run, err := e.WaitForRun(ctx, id, durably.WithTimeout(20*time.Second))
		if err != nil || run.Status != durably.StatusCompleted {
			t.Fatalf("run %s after the outage: %+v, %v\n%s", id, run, err, logs)
		}
	}
	t.Logf("%s: first step after the database came back within %v (slowest run)", kind, slowest.Round(time.Millisecond))
	if slowest > 2*time.Second {
		t.Errorf("a run moved %v after the database came back, want within 2s", slowest)
	}
	mu.Lock()
	for _, id := range ids {
		for i := range steps {
			if n := executed[fmt.Sprintf("%s/%d", id, i)]; n != 1 {
				t.Errorf("run %s step %d executed %d times, want once", id, i, n)
			}
		}
	}
	mu.Unlock()
	out := logs.String()
	if n := strings.Count(out, "database unavailable"); n != 1 {
		t.Errorf("outage start logged %d times, want once:\n%s", n, out)
	}
	if n := strings.Count(out, "database reachable again"); n != 1 {
		t.Errorf("outage end logged %d times, want once:\n%s", n, out)
	}
	if strings.Contains(out, "lease not released") || strings.Contains(out, "claim failed") {
		t.Errorf("failures the engine should have retried were logged:\n%s", out)
	}
}

func newTextLogger(b *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
