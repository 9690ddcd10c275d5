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

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/examples/tenants/tenantjobs"
	"github.com/durably-go/durably/runtime/durablyhttp"
)

// tenantsHandler is the tenants fixture's handler: its generated jobs and
// its header authentication and hooks.
func tenantsHandler(e *durably.Engine) (*durablyhttp.Handler[tenantjobs.AuthContext, tenantjobs.Labels], error) {
	if _, err := tenantjobs.Register(e, tenantjobs.Handlers{
		Echo: func(ctx context.Context, s *durably.StepContext, in tenantjobs.EchoInput) (tenantjobs.EchoOutput, error) {
			return durably.RunStep(s, "echo", func(ctx context.Context) (tenantjobs.EchoOutput, error) {
				return tenantjobs.EchoOutput(in), nil // echo: the output is the input
			})
		},
		Steps: func(ctx context.Context, s *durably.StepContext, in tenantjobs.StepsInput) (tenantjobs.StepsOutput, error) {
			return tenantjobs.StepsOutput{}, nil
		},
		Fail: func(ctx context.Context, s *durably.StepContext, in tenantjobs.FailInput) (tenantjobs.FailOutput, error) {
			return tenantjobs.FailOutput{}, nil
		},
		Slow: func(ctx context.Context, s *durably.StepContext, in tenantjobs.SlowInput) (tenantjobs.SlowOutput, error) {
			return tenantjobs.SlowOutput{}, nil
		},
	}); err != nil {
		return nil, err
	}
	return durablyhttp.New(e, durablyhttp.Options[tenantjobs.AuthContext, tenantjobs.Labels]{
		Jobs: tenantjobs.JobSchemas(),
		Auth: &durablyhttp.AuthConfig[tenantjobs.AuthContext, tenantjobs.Labels]{
			Authenticate: func(r *http.Request) (tenantjobs.AuthContext, error) {
				c := tenantjobs.AuthContext{UserID: r.Header.Get("X-User-Id"), OrgID: r.Header.Get("X-Org-Id")}
				if err := c.Role.UnmarshalText([]byte(r.Header.Get("X-Role"))); err != nil || c.UserID == "" || c.OrgID == "" {
					return c, durablyhttp.Reject(401, "Unauthorized")
				}
				return c, nil
			},
			OnTrigger: func(ctx context.Context, c tenantjobs.AuthContext, req *durablyhttp.TriggerRequest[tenantjobs.Labels]) error {
				if req.Labels == nil {
					req.Labels = &tenantjobs.Labels{OrganizationID: c.OrgID, Env: tenantjobs.EnvProduction}
				}
				return nil
			},
			ScopeRuns: func(ctx context.Context, c tenantjobs.AuthContext, f durablyhttp.RunsFilter[tenantjobs.Labels]) (durablyhttp.RunsFilter[tenantjobs.Labels], error) {
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

// serveTenants serves the tenants example's handler on an engine with cfg
// on loopback; base is its URL.
func serveTenants(ctx context.Context, db *benchDB, cfg durably.Config) (e *durably.Engine, h *durablyhttp.Handler[tenantjobs.AuthContext, tenantjobs.Labels], base string, stop func(), err error) {
	if e, err = db.engine(ctx, tenantjobs.Config(cfg)); err != nil {
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

// wlHTTP: the tenants handler on loopback; n POST /trigger with 16 in
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

// wlMulti: 4 processes with 4 slots each drain n pending 3-step runs from
// one PostgreSQL database: runs/s, and a check that no step ran twice.
func wlMulti(ctx context.Context, c *config, db *benchDB, r *result) error {
	if db.kind != "postgres" {
		return errors.New("multi needs PostgreSQL")
	}
	const procs = 4
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
	var cmds []*exec.Cmd
	var starts []io.WriteCloser
	for i := range procs {
		cmd := exec.Command(self, "-multi-child", "-db", db.target, "-slots", "4")
		cmd.Stdout = os.Stderr
		cmd.Stderr = os.Stderr
		cmd.Env = append(os.Environ(), "DURABLY_MULTI_LOG="+filepath.Join(dir, fmt.Sprintf("steps-%d.log", i)))
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
	t0 := time.Now()
	for _, in := range starts {
		_ = in.Close() // go
	}
	p := &progress{what: "multi", total: c.n}
	for {
		done, err := countStatus(ctx, e, durably.StatusCompleted)
		if err != nil {
			return err
		}
		p.report(done)
		if done == c.n {
			break
		}
		if time.Since(t0) > 10*time.Minute {
			return errors.New("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(t0)
	for _, cmd := range cmds {
		_ = cmd.Process.Signal(os.Interrupt)
	}
	for _, cmd := range cmds {
		_ = cmd.Wait()
	}
	seen := map[string]bool{}
	perProc := make([]int, procs)
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
	}
	if len(seen) != 3*c.n {
		return fmt.Errorf("%d step executions, want %d", len(seen), 3*c.n)
	}
	r.Metrics["runs_per_s"], r.Units["runs_per_s"] = float64(c.n)/elapsed.Seconds(), "/s"
	r.Metrics["steps_per_s"], r.Units["steps_per_s"] = float64(3*c.n)/elapsed.Seconds(), "/s"
	r.Metrics["duplicate_steps"], r.Units["duplicate_steps"] = 0, ""
	fmt.Fprintf(os.Stderr, "multi: steps per process %v\n", perProc)
	return nil
}

// multiChild is one worker process of wlMulti: it waits for its stdin to
// close, then works until interrupted, logging every step it executes.
func multiChild(c *config) error {
	ctx := context.Background()
	st, err := (&benchDB{kind: "postgres", target: c.db}).open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	f, err := os.Create(os.Getenv("DURABLY_MULTI_LOG"))
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	var mu sync.Mutex
	e, err := durably.New(durably.Config{Store: st, MaxConcurrentRuns: c.slots})
	if err != nil {
		return err
	}
	e.OnEvent(func(ev durably.Event) {
		if ev.Type == durably.EventStepStart && !ev.Remote() {
			mu.Lock()
			fmt.Fprintf(w, "%s/%s\n", ev.RunID, ev.StepName)
			mu.Unlock()
		}
	})
	durably.MustRegister(e, stepsJob)
	if err := e.Migrate(ctx); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // the start signal
	if err := e.Start(); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signalNotify(sig)
	<-sig
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = e.Stop(stopCtx)
	mu.Lock()
	defer mu.Unlock()
	if ferr := w.Flush(); ferr != nil {
		return ferr
	}
	return err
}
