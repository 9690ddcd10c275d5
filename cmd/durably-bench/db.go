package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/runtime/pgstore"
	"github.com/durably-go/durably/runtime/sqlitestore"
	"github.com/durably-go/durably/store"
)

// benchDB is one repetition's fresh database.
type benchDB struct {
	kind   string // "sqlite" or "postgres"
	target string // file path, or DSN with search_path set
	sync   string
	lanes  int // PostgreSQL: pgstore.Options.WriteLanes (0: its default)
	stores []store.Store
	drop   func()
	otel   bool // -otel: engines get an observer (otelObserver)
}

// benchSchema is the PostgreSQL schema of this process's repetitions: its
// own, so that two benchmarks on one database (two builds compared, another
// user's run) never drop each other's tables. Each repetition drops it at
// its end; the next one makes it afresh.
func benchSchema() string { return "durably_bench_" + strconv.Itoa(os.Getpid()) }

func freshDB(ctx context.Context, c *config, rep int) (*benchDB, error) {
	if strings.HasPrefix(c.db, "postgres://") || strings.HasPrefix(c.db, "postgresql://") {
		schema := benchSchema()
		// The schema's name is made by this program, never user input.
		drop := "DROP SCHEMA IF EXISTS " + schema + " CASCADE"
		if err := pgExec(ctx, c.db, drop+"; CREATE SCHEMA "+schema); err != nil {
			return nil, err
		}
		dsn := pgtest.WithSearchPath(c.db, schema)
		return &benchDB{kind: "postgres", target: dsn, lanes: c.lanes, otel: c.otel, drop: func() {
			if err := pgExec(context.Background(), c.db, drop); err != nil {
				fmt.Fprintf(os.Stderr, "durably-bench: schema %s left behind: %v\n", schema, err)
			}
		}}, nil
	}
	path := strings.TrimPrefix(c.db, "sqlite:")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(path + suffix); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
	}
	return &benchDB{kind: "sqlite", target: path, sync: c.sync, otel: c.otel, drop: func() {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			_ = os.Remove(path + suffix)
		}
	}}, nil
}

// pgExec runs sql on its own connection to dsn.
func pgExec(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// open opens a store on the database; it is closed with the database.
func (d *benchDB) open(ctx context.Context) (store.Store, error) {
	var st store.Store
	var err error
	if d.kind == "postgres" {
		st, err = pgstore.Open(ctx, d.target, pgstore.Options{WriteLanes: d.lanes})
	} else {
		st, err = sqlitestore.Open(d.target, sqlitestore.Options{Synchronous: d.sync})
	}
	if err != nil {
		return nil, err
	}
	d.stores = append(d.stores, st)
	return st, nil
}

// openTarget opens a store on -db as a worker process of a workload gets
// it (the database its parent made fresh).
func openTarget(ctx context.Context, c *config) (store.Store, error) {
	d := &benchDB{kind: "sqlite", target: c.db, sync: c.sync}
	if isPostgres(c.db) {
		d.kind = "postgres"
	}
	return d.open(ctx)
}

// engine opens a store and a migrated engine on it.
func (d *benchDB) engine(ctx context.Context, cfg durably.Config) (*durably.Engine, error) {
	st, err := d.open(ctx)
	if err != nil {
		return nil, err
	}
	cfg.Store = st
	if d.otel {
		if cfg.Observer, err = otelObserver(); err != nil {
			return nil, err
		}
	}
	e, err := durably.New(cfg)
	if err != nil {
		return nil, err
	}
	return e, e.Migrate(ctx)
}

func (d *benchDB) close() {
	for _, st := range d.stores {
		_ = st.Close()
	}
	d.drop()
}

// readStatusKB reads a field of /proc/self/status in kB.
func readStatusKB(field string) (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			fields := strings.Fields(rest)
			if len(fields) > 0 {
				return strconv.ParseInt(fields[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("%s not in /proc/self/status", field)
}

// rssSampler records the peak resident set size while it runs.
type rssSampler struct {
	quit chan struct{}
	done chan int64
}

func startRSS() *rssSampler {
	// Reset the high-water mark so that VmHWM covers only what follows.
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	s := &rssSampler{quit: make(chan struct{}), done: make(chan int64, 1)}
	go func() {
		var peak int64
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := readStatusKB("VmRSS"); err == nil && v > peak {
				peak = v
			}
			select {
			case <-t.C:
			case <-s.quit:
				if v, err := readStatusKB("VmHWM"); err == nil && v > peak {
					peak = v
				}
				s.done <- peak
				return
			}
		}
	}()
	return s
}

// stop returns the peak RSS in MB.
func (s *rssSampler) stop() float64 {
	close(s.quit)
	return float64(<-s.done) / 1024
}

// commitCount measures what a workload cost in commits: the store's own
// count of write transactions and of the writes they carried, and on
// PostgreSQL the server's count of WAL flushes (pg_stat_wal.wal_sync,
// server-wide: the machine must be otherwise idle).
type commitCount struct {
	store    store.Store
	st       interface{ WriteStats() store.WriteStats }
	before   store.WriteStats
	pg       *pgx.Conn
	walSyncs int64
}

func startCommitCount(ctx context.Context, st store.Store, db *benchDB) *commitCount {
	c := &commitCount{store: st}
	if ws, ok := st.(interface{ WriteStats() store.WriteStats }); ok {
		c.st, c.before = ws, ws.WriteStats()
	}
	if db.kind == "postgres" {
		if conn, err := pgx.Connect(ctx, db.target); err == nil {
			c.pg = conn
			c.walSyncs = c.readWALSyncs(ctx)
		}
	}
	return c
}

// readWALSyncs reads pg_stat_wal, a statistics view that sqlc's schema
// does not hold; hence the literal query.
func (c *commitCount) readWALSyncs(ctx context.Context) int64 {
	var n int64
	if err := c.pg.QueryRow(ctx, "SELECT wal_sync FROM pg_stat_wal").Scan(&n); err != nil {
		return -1
	}
	return n
}

func (c *commitCount) stop(ctx context.Context, runs int, r *result) {
	if c.st != nil {
		after := c.st.WriteStats()
		commits, writes := after.Commits-c.before.Commits, after.Writes-c.before.Writes
		r.Metrics["commits_per_run"], r.Units["commits_per_run"] = float64(commits)/float64(runs), ""
		if commits > 0 {
			r.Metrics["writes_per_commit"], r.Units["writes_per_commit"] = float64(writes)/float64(commits), ""
		}
	}
	if c.pg != nil {
		// Backends report their statistics when idle for a while or when
		// they exit: close the store's connections, then read until the
		// count settles.
		_ = c.store.Close()
		after := c.readWALSyncs(ctx)
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
			n := c.readWALSyncs(ctx)
			if n == after {
				break
			}
			after = n
		}
		if after >= 0 && c.walSyncs >= 0 {
			r.Metrics["wal_syncs_per_run"], r.Units["wal_syncs_per_run"] = float64(after-c.walSyncs)/float64(runs), ""
		}
		_ = c.pg.Close(ctx)
	}
}
