package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/cmd/durably-bench/internal/benchjobs"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/runtime/pgstore"
	"github.com/durably-go/durably/store"
)

// tenantsHandler is a handler like the tenants fixture's: the echo job
// generated from this command's durably.yaml (the fixture's labels and
// auth context), header authentication and multi-tenant hooks.
func tenantsHandler(e *durably.Engine) (*durablyhttp.Handler[benchjobs.AuthContext, benchjobs.Labels], error) {
	if _, err := benchjobs.Register(e, benchjobs.Handlers{
		Echo: func(ctx context.Context, s *durably.StepContext, in benchjobs.EchoInput) (benchjobs.EchoOutput, error) {
			return durably.RunStep(s, "echo", func(ctx context.Context) (benchjobs.EchoOutput, error) {
				return benchjobs.EchoOutput(in), nil // echo: the output is the input
			})
		},
	}); err != nil {
		return nil, err
	}
	return durablyhttp.New(e, durablyhttp.Options[benchjobs.AuthContext, benchjobs.Labels]{
		Jobs: benchjobs.JobSchemas(),
		Auth: &durablyhttp.AuthConfig[benchjobs.AuthContext, benchjobs.Labels]{
			Authenticate: func(r *http.Request) (benchjobs.AuthContext, error) {
				c := benchjobs.AuthContext{UserID: r.Header.Get("X-User-Id"), OrgID: r.Header.Get("X-Org-Id")}
				if err := c.Role.UnmarshalText([]byte(r.Header.Get("X-Role"))); err != nil || c.UserID == "" || c.OrgID == "" {
					return c, durablyhttp.Reject(401, "Unauthorized")
				}
				return c, nil
			},
			OnTrigger: func(ctx context.Context, c benchjobs.AuthContext, req *durablyhttp.TriggerRequest[benchjobs.Labels]) error {
				if req.Labels == nil {
					req.Labels = &benchjobs.Labels{OrganizationID: c.OrgID, Env: benchjobs.EnvProduction}
				}
				return nil
			},
			ScopeRuns: func(ctx context.Context, c benchjobs.AuthContext, f durablyhttp.RunsFilter[benchjobs.Labels]) (durablyhttp.RunsFilter[benchjobs.Labels], error) {
				f.Labels.OrganizationID = c.OrgID
				return f, nil
			},
		},
		Heartbeat: -1,
	})
}

func serve(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/api/durably/", http.StripPrefix("/api/durably", h))
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String() + "/api/durably", func() { srv.Close() }, nil
}

func authed(req *http.Request, org string) {
	req.Header.Set("X-User-Id", "bench")
	req.Header.Set("X-Org-Id", org)
	req.Header.Set("X-Role", "admin")
}

// serveTenants serves tenantsHandler on an engine with cfg
// on loopback; base is its URL.
func serveTenants(ctx context.Context, db *benchDB, cfg durably.Config) (e *durably.Engine, h *durablyhttp.Handler[benchjobs.AuthContext, benchjobs.Labels], base string, stop func(), err error) {
	if e, err = db.engine(ctx, benchjobs.Config(cfg)); err != nil {
		return nil, nil, "", nil, err
	}
	if h, err = tenantsHandler(e); err != nil {
		return nil, nil, "", nil, err
	}
	if base, stop, err = serve(h); err != nil {
		return nil, nil, "", nil, err
	}
	return e, h, base, stop, nil
}

// wlHTTP: tenantsHandler on loopback; n POST /trigger with 16 in
// flight, the worker off: requests/s.
func wlHTTP(ctx context.Context, c *config, db *benchDB, r *result) error {
	e, _, base, stop, err := serveTenants(ctx, db, durably.Config{})
	if err != nil {
		return err
	}
	defer stop()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	const inflight = 16
	var next atomic.Int64
	var failures atomic.Int64
	var mu sync.Mutex
	var lat []float64
	stopProfile := startProfile(c)
	t0 := time.Now()
	var wg sync.WaitGroup
	for range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []float64
			for {
				i := next.Add(1) - 1
				if i >= int64(c.n) {
					break
				}
				body := fmt.Sprintf(`{"jobName":"echo","input":{"message":"m%d"}}`, i)
				req, _ := http.NewRequest("POST", base+"/trigger", strings.NewReader(body))
				authed(req, fmt.Sprintf("org-%02d", i%100))
				s := time.Now()
				res, err := client.Do(req)
				if err != nil {
					failures.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					failures.Add(1)
				}
				mine = append(mine, float64(time.Since(s))/float64(time.Millisecond))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	stopProfile()
	if f := failures.Load(); f > 0 {
		return fmt.Errorf("%d requests failed", f)
	}
	sort.Float64s(lat)
	r.Metrics["requests_per_s"], r.Units["requests_per_s"] = float64(c.n)/elapsed.Seconds(), "/s"
	r.Metrics["p50_ms"], r.Units["p50_ms"] = percentile(lat, 50), "ms"
	r.Metrics["p99_ms"], r.Units["p99_ms"] = percentile(lat, 99), "ms"
	if got, err := countStatus(ctx, e, durably.StatusPending); err != nil || got != c.n {
		return fmt.Errorf("%d pending runs, want %d (%v)", got, c.n, err)
	}
	return nil
}

// wlSSE: 1000 clients (another process) on GET /runs/subscribe while n
// 1-step runs complete: the delay from a run:complete's emission in the
// server to its receipt by each client, and the server's peak RSS.
func wlSSE(ctx context.Context, c *config, db *benchDB, r *result) error {
	clients := c.clients
	e, h, base, stop, err := serveTenants(ctx, db, durably.Config{MaxConcurrentRuns: c.slots})
	if err != nil {
		return err
	}
	defer stop()
	defer h.Close()
	var mu sync.Mutex
	emitted := map[string]int64{} // run id → wall-clock nanoseconds of run:complete
	var completed atomic.Int64
	allDone := make(chan struct{})
	e.OnEvent(func(ev durably.Event) {
		if ev.Type == durably.EventRunComplete {
			mu.Lock()
			emitted[ev.RunID] = time.Now().UnixNano()
			mu.Unlock()
			if completed.Add(1) == int64(c.n) {
				close(allDone)
			}
		}
	})

	self, err := os.Executable()
	if err != nil {
		return err
	}
	child := exec.Command(self, "-sse-clients", strconv.Itoa(clients), "-n", strconv.Itoa(c.n), "-db", base)
	child.Stderr = os.Stderr
	toChild, err := child.StdinPipe()
	if err != nil {
		return err
	}
	fromChild, err := child.StdoutPipe()
	if err != nil {
		return err
	}
	if err := child.Start(); err != nil {
		return err
	}
	defer child.Process.Kill()
	lines := bufio.NewScanner(fromChild)
	lines.Buffer(nil, 1<<20)
	expect := func(word string) (string, error) {
		for lines.Scan() {
			if rest, ok := strings.CutPrefix(lines.Text(), word); ok {
				return rest, nil
			}
		}
		return "", fmt.Errorf("client process ended before %q: %v", word, lines.Err())
	}
	if _, err := expect("connected"); err != nil {
		return err
	}
	rss := startRSS()
	stopProfile := startProfile(c)
	serverCPU0 := cpuSeconds(rusageSelf)
	clientCPU0 := cpuSeconds(rusageChildren) // the children ended so far: other reps'
	if err := e.Start(); err != nil {
		return err
	}
	start := time.Now()
	for i := 0; i < c.n; i++ {
		req := durably.TriggerRequest{JobName: "echo", Input: []byte(fmt.Sprintf(`{"message":"m%d"}`, i)),
			Labels: map[string]string{"organizationId": "org-00", "env": "production"}}
		if _, err := e.TriggerRaw(ctx, req); err != nil {
			return err
		}
		if c.rate > 0 {
			// A steady arrival rate, so that the delay measures delivery
			// under a known load rather than how far a backlog has grown.
			time.Sleep(time.Until(start.Add(time.Duration(i+1) * time.Second / time.Duration(c.rate))))
		}
	}
	select {
	case <-allDone:
	case <-time.After(5 * time.Minute):
		return errors.New("runs did not complete")
	}
	writeHeapProfile(c) // the streams are still open: clients leave once they have every run
	if _, err := expect("received"); err != nil {
		return err
	}
	stopProfile()
	peak := rss.stop()
	serverCPU := cpuSeconds(rusageSelf) - serverCPU0
	mu.Lock()
	b, _ := json.Marshal(emitted)
	first, last := int64(math.MaxInt64), int64(0)
	for _, t := range emitted {
		first, last = min(first, t), max(last, t)
	}
	mu.Unlock()
	r.Metrics["runs_per_s"], r.Units["runs_per_s"] = float64(c.n)/(float64(last-first)/1e9), "runs/s"
	if _, err := toChild.Write(append(b, '\n')); err != nil {
		return err
	}
	out, err := expect("delays ")
	if err != nil {
		return err
	}
	var d map[string]float64
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		return err
	}
	_ = child.Wait()
	_ = e.Stop(ctx)
	for k, v := range d {
		r.Metrics[k], r.Units[k] = v, "ms"
	}
	// Both processes share the machine's cores: what each took of them
	// while runs were delivered (the client's from its start to its exit).
	r.Metrics["server_cpu_s"], r.Units["server_cpu_s"] = serverCPU, "s"
	r.Metrics["client_cpu_s"], r.Units["client_cpu_s"] = cpuSeconds(rusageChildren)-clientCPU0, "s"
	r.Metrics["server_rss_mb"], r.Units["server_rss_mb"] = peak, "MB"
	return nil
}

// sseClients is the client process of wlSSE: it connects its clients,
// says "connected", counts run:complete messages until every client saw
// every run ("received"), reads the emission times from stdin and prints
// the delays.
func sseClients(clients, runs int, base string) error {
	type rec struct {
		id string
		at int64
	}
	host := strings.TrimPrefix(strings.TrimSuffix(base, "/api/durably"), "http://")
	var connected, received atomic.Int64
	recs := make([][]rec, clients)
	var wg sync.WaitGroup
	for k := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", host)
			if err != nil {
				fmt.Fprintln(os.Stderr, "sse client:", err)
				return
			}
			defer conn.Close()
			fmt.Fprintf(conn, "GET /api/durably/runs/subscribe?jobName=echo HTTP/1.1\r\nHost: x\r\nX-User-Id: bench\r\nX-Org-Id: org-00\r\nX-Role: admin\r\n\r\n")
			br := bufio.NewReaderSize(conn, 16<<10)
			if _, err := http.ReadResponse(br, nil); err != nil {
				return
			}
			connected.Add(1)
			mine := make([]rec, 0, runs)
			for len(mine) < runs {
				line, err := br.ReadSlice('\n')
				if err != nil {
					break
				}
				if !bytes.Contains(line, []byte(`"type":"run:complete"`)) {
					continue
				}
				at := time.Now().UnixNano()
				i := bytes.Index(line, []byte(`"runId":"`))
				mine = append(mine, rec{string(line[i+9 : i+9+26]), at})
				received.Add(1)
			}
			recs[k] = mine
		}()
	}
	for connected.Load() < int64(clients) {
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Println("connected")
	wg.Wait()
	fmt.Println("received", received.Load())
	var emitted map[string]int64
	if err := json.NewDecoder(os.Stdin).Decode(&emitted); err != nil {
		return err
	}
	var delays []float64
	for _, mine := range recs {
		for _, r := range mine {
			if t, ok := emitted[r.id]; ok {
				delays = append(delays, float64(r.at-t)/1e6)
			}
		}
	}
	if len(delays) == 0 {
		return errors.New("no deliveries")
	}
	// Where the delay comes from: until the first client has a run's
	// run:complete (the hub's wait for its next fan-out, and the first
	// write), and from then to each client (the fan-out to the others,
	// and the client process reading them).
	first := map[string]int64{}
	for _, mine := range recs {
		for _, r := range mine {
			if f, ok := first[r.id]; !ok || r.at < f {
				first[r.id] = r.at
			}
		}
	}
	var firsts, spreads []float64
	for id, f := range first {
		if t, ok := emitted[id]; ok {
			firsts = append(firsts, float64(f-t)/1e6)
		}
	}
	for _, mine := range recs {
		for _, r := range mine {
			spreads = append(spreads, float64(r.at-first[r.id])/1e6)
		}
	}
	sort.Float64s(delays)
	sort.Float64s(firsts)
	sort.Float64s(spreads)
	b, _ := json.Marshal(map[string]float64{
		"p50_ms": percentile(delays, 50), "p90_ms": percentile(delays, 90), "p99_ms": percentile(delays, 99), "max_ms": delays[len(delays)-1],
		"first_p50_ms": percentile(firsts, 50), "first_p99_ms": percentile(firsts, 99),
		"spread_p50_ms": percentile(spreads, 50), "spread_p99_ms": percentile(spreads, 99)})
	fmt.Println("delays " + string(b))
	return nil
}

// wlMulti: -procs processes (default 4) with -slots slots each (default 4)
// drain n pending 3-step runs from one PostgreSQL database: runs/s, what
// the claims and commits cost per run (summed over the processes), the CPU
// time of the workers and of the server, and a check that no step ran
// twice.
func wlMulti(ctx context.Context, c *config, db *benchDB, r *result) error {
	if db.kind != "postgres" {
		return errors.New("multi needs PostgreSQL")
	}
	procs := c.procs
	e, err := db.engine(ctx, durably.Config{})
	if err != nil {
		return err
	}
	j := durably.MustRegister(e, stepsJob)
	if err := insertPending(ctx, j, c.n, nil); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "durably-multi-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// The parent watches the queue through a connection of its own and a
	// cheap query: reading the runs through the engine (as it once did,
	// every completed run every 20 ms) cost the server and this process
	// more CPU than the workers on a 2-core machine.
	watch, err := pgx.Connect(ctx, db.target)
	if err != nil {
		return err
	}
	defer watch.Close(ctx)
	var cmds []*exec.Cmd
	var starts []io.WriteCloser
	for i := range procs {
		cmd := exec.Command(self, "-multi-child", "-db", db.target, "-slots", strconv.Itoa(c.slots))
		cmd.Stdout = os.Stderr
		cmd.Stderr = os.Stderr
		cmd.Env = append(os.Environ(),
			"DURABLY_MULTI_LOG="+filepath.Join(dir, fmt.Sprintf("steps-%d.log", i)),
			"DURABLY_MULTI_STATS="+filepath.Join(dir, fmt.Sprintf("stats-%d.json", i)))
		in, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		cmds, starts = append(cmds, cmd), append(starts, in)
	}
	time.Sleep(500 * time.Millisecond) // the children open their stores
	walBefore := readWALSyncs(ctx, watch)
	pgCPUBefore := postgresCPU()
	t0 := time.Now()
	for _, in := range starts {
		_ = in.Close() // go
	}
	for {
		left, err := unfinishedRuns(ctx, watch)
		if err != nil {
			return err
		}
		if !left {
			break
		}
		if time.Since(t0) > 10*time.Minute {
			return errors.New("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
	pgCPU := postgresCPU() - pgCPUBefore
	for _, cmd := range cmds {
		_ = cmd.Process.Signal(os.Interrupt)
	}
	var childCPU time.Duration
	for _, cmd := range cmds {
		_ = cmd.Wait()
		if cmd.ProcessState != nil {
			childCPU += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
	}
	// The children's connections are closed: the server has reported
	// their WAL syncs (see commitCount.stop).
	walSyncs := settledWALSyncs(ctx, watch) - walBefore
	seen := map[string]bool{}
	perProc := make([]int, procs)
	var total multiStats
	for i := range procs {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("steps-%d.log", i)))
		if err != nil {
			return err
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if line == "" {
				continue
			}
			if seen[line] {
				return fmt.Errorf("step %s executed twice", line)
			}
			seen[line] = true
			perProc[i]++
		}
		var st multiStats
		b, err = os.ReadFile(filepath.Join(dir, fmt.Sprintf("stats-%d.json", i)))
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &st); err != nil {
			return err
		}
		total.Claims += st.Claims
		total.EmptyClaims += st.EmptyClaims
		total.EmptyEarly += st.EmptyEarly
		total.Claimed += st.Claimed
		total.ClaimedFull += st.ClaimedFull
		total.Commits += st.Commits
		total.Writes += st.Writes
		total.LastComplete = max(total.LastComplete, st.LastComplete)
	}
	if len(seen) != 3*c.n {
		return fmt.Errorf("%d step executions, want %d", len(seen), 3*c.n)
	}
	// The clock stops at the last completion any worker saw, not at the
	// parent's next look.
	elapsed := time.Duration(total.LastComplete - t0.UnixNano())
	n := float64(c.n)
	r.Metrics["runs_per_s"], r.Units["runs_per_s"] = n/elapsed.Seconds(), "/s"
	r.Metrics["duplicate_steps"], r.Units["duplicate_steps"] = 0, ""
	r.Metrics["claims_per_run"], r.Units["claims_per_run"] = float64(total.Claims)/n, ""
	r.Metrics["empty_claims"], r.Units["empty_claims"] = float64(total.EmptyClaims), ""
	// Empty claims followed by a successful one in the same process: made
	// while the queue still held runs (wake-ups in vain, races lost to
	// other processes), unlike the idle ones at the end.
	r.Metrics["empty_claims_before_drained"], r.Units["empty_claims_before_drained"] = float64(total.EmptyEarly), ""
	if nonEmpty := total.Claims - total.EmptyClaims; nonEmpty > 0 {
		r.Metrics["runs_per_claim"], r.Units["runs_per_claim"] = float64(total.Claimed)/float64(nonEmpty), ""
		r.Metrics["short_claims"], r.Units["short_claims"] = float64(nonEmpty-total.ClaimedFull), ""
	}
	r.Metrics["commits_per_run"], r.Units["commits_per_run"] = float64(total.Commits)/n, ""
	if total.Commits > 0 {
		r.Metrics["writes_per_commit"], r.Units["writes_per_commit"] = float64(total.Writes)/float64(total.Commits), ""
	}
	if walSyncs >= 0 && walBefore >= 0 {
		r.Metrics["wal_syncs_per_run"], r.Units["wal_syncs_per_run"] = float64(walSyncs)/n, ""
	}
	// CPU per run, in µs: the workers' (until they exit) and the server's
	// (every postgres process of the machine, during the drain).
	r.Metrics["worker_cpu_us_per_run"], r.Units["worker_cpu_us_per_run"] = float64(childCPU.Microseconds())/n, "µs"
	if pgCPU >= 0 {
		r.Metrics["server_cpu_us_per_run"], r.Units["server_cpu_us_per_run"] = float64(pgCPU.Microseconds())/n, "µs"
	}
	fmt.Fprintf(os.Stderr, "multi: %d processes × %d slots, steps per process %v\n", procs, c.slots, perProc)
	return nil
}

// multiStats is what a worker process of wlMulti reports when it stops.
type multiStats struct {
	Claims       int64 `json:"claims"`
	EmptyClaims  int64 `json:"empty_claims"`
	EmptyEarly   int64 `json:"empty_early"` // empty claims while runs were still to come
	Claimed      int64 `json:"claimed"`
	ClaimedFull  int64 `json:"claimed_full"` // claims that leased all they asked for
	Commits      int64 `json:"commits"`
	Writes       int64 `json:"writes"`
	LastComplete int64 `json:"last_complete"` // Unix ns of its last run:complete
}

// unfinishedRuns reports whether any run is still pending or leased. A
// literal query: it reads the table's status index for the benchmark's
// stop condition, which no store operation offers.
func unfinishedRuns(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var left bool
	err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM durably_runs WHERE status IN ('pending', 'leased'))").Scan(&left)
	return left, err
}

// readWALSyncs reads pg_stat_wal (a statistics view sqlc's schema does not
// hold; hence the literal query), -1 if it cannot.
func readWALSyncs(ctx context.Context, conn *pgx.Conn) int64 {
	var n int64
	if err := conn.QueryRow(ctx, "SELECT wal_sync FROM pg_stat_wal").Scan(&n); err != nil {
		return -1
	}
	return n
}

// settledWALSyncs reads pg_stat_wal until it stops moving: backends report
// their statistics when they exit or idle.
func settledWALSyncs(ctx context.Context, conn *pgx.Conn) int64 {
	after := readWALSyncs(ctx, conn)
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		n := readWALSyncs(ctx, conn)
		if n == after {
			break
		}
		after = n
	}
	return after
}

// postgresCPU is the CPU time (user and system) of every process named
// postgres on this machine, from /proc; -1 if /proc cannot be read.
func postgresCPU() time.Duration {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return -1
	}
	var ticks int64
	for _, ent := range entries {
		if _, err := strconv.Atoi(ent.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid … utime stime: fields 14 and 15, counted
		// after the parenthesised command name, which may hold spaces.
		open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || end < open || !strings.HasPrefix(string(b[open+1:end]), "postgres") {
			continue
		}
		f := strings.Fields(string(b[end+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * (time.Second / 100) // USER_HZ is 100 on Linux
}

// countingStore counts the claims of a multi worker process: how many, how
// many came back empty, and the runs they leased.
type countingStore struct {
	*pgstore.Store
	mu                     sync.Mutex
	claims, empty, claimed int64
	// emptyEarly counts the empty claims followed by a claim that leased
	// something: the ones made while the queue still held runs (a wake-up
	// in vain, a race lost), not the idle ones at the end.
	emptyEarly, emptyRun int64
	claimedFull          int64 // claims that leased all they asked for
}

func (s *countingStore) Claim(ctx context.Context, req store.ClaimRequest) ([]*store.Run, error) {
	runs, err := s.Store.Claim(ctx, req)
	if err == nil {
		s.mu.Lock()
		s.claims++
		s.claimed += int64(len(runs))
		if len(runs) == req.Limit {
			s.claimedFull++
		}
		if len(runs) == 0 {
			s.empty++
			s.emptyRun++
		} else {
			s.emptyEarly += s.emptyRun
			s.emptyRun = 0
		}
		s.mu.Unlock()
	}
	return runs, err
}

// multiChild is one worker process of wlMulti: it waits for its stdin to
// close, then works until interrupted, logging every step it executes, and
// writes its counts when it stops.
func multiChild(c *config) error {
	ctx := context.Background()
	opened, err := (&benchDB{kind: "postgres", target: c.db}).open(ctx)
	if err != nil {
		return err
	}
	defer opened.Close()
	st := &countingStore{Store: opened.(*pgstore.Store)}
	f, err := os.Create(os.Getenv("DURABLY_MULTI_LOG"))
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	var mu sync.Mutex
	var lastComplete atomic.Int64
	e, err := durably.New(durably.Config{Store: st, MaxConcurrentRuns: c.slots})
	if err != nil {
		return err
	}
	e.OnEvent(func(ev durably.Event) {
		if ev.Remote() {
			return
		}
		switch ev.Type {
		case durably.EventStepStart:
			mu.Lock()
			fmt.Fprintf(w, "%s/%s\n", ev.RunID, ev.StepName)
			mu.Unlock()
		case durably.EventRunComplete:
			lastComplete.Store(time.Now().UnixNano())
		}
	})
	durably.MustRegister(e, stepsJob)
	if err := e.Migrate(ctx); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // the start signal
	before := st.WriteStats()
	if err := e.Start(); err != nil {
		return err
	}
	err = stopOnInterrupt(e)
	after := st.WriteStats()
	st.mu.Lock()
	b, _ := json.Marshal(multiStats{Claims: st.claims, EmptyClaims: st.empty, EmptyEarly: st.emptyEarly, Claimed: st.claimed, ClaimedFull: st.claimedFull,
		Commits: after.Commits - before.Commits, Writes: after.Writes - before.Writes, LastComplete: lastComplete.Load()})
	st.mu.Unlock()
	if werr := os.WriteFile(os.Getenv("DURABLY_MULTI_STATS"), b, 0o644); werr != nil {
		return werr
	}
	mu.Lock()
	defer mu.Unlock()
	if ferr := w.Flush(); ferr != nil {
		return ferr
	}
	return err
}
