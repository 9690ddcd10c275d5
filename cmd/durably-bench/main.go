// Command durably-bench measures durably-go on the workloads its peers'
// harnesses implement (see BENCHMARKS.md), each repetition on a fresh
// database, with the defaults a user gets (durable commits).
//
//	durably-bench -db <sqlite path | postgres DSN> -workload <name> [-n N] [-slots K] [-reps R] [-json]
//
// Workloads: enqueue, enqueue-batch, enqueue-tx, process, latency, list, http, sse, multi,
// retry, scheduled, scaleout (worker processes of one slot over runs of
// seconds: the speed-up of N processes against one), fanout (a parent run
// fanning out to -n children and gathering them), signal (a signal's round
// trip to a waiting run), and chaos (worker processes killed, poisoned and
// hung, database faults; it checks what durably promises and prints what
// the faults cost instead of a speed).
package main

//go:generate go run github.com/durably-go/durably/cmd/durably-gen -q -config durably.yaml

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
)

type config struct {
	db         string
	workload   string
	n          int
	slots      int
	procs      int // multi: worker processes
	reps       int
	json       bool
	sync       string // SQLite synchronous pragma; FULL unless asked otherwise
	lanes      int    // PostgreSQL write lanes; 0: the store's default
	profile    string
	trace      string // latency: a runtime/trace of the timed part
	breakdown  bool   // latency: time each hand-off and store call
	memprofile string // sse: heap profile of the server once every client has received everything
	child      bool   // internal: a worker process of the multi workload
	sseN       int    // internal: run as the client process of the sse workload
	rate       int    // sse: runs triggered per second (0: as fast as they go); scheduled: runs due per second
	clients    int    // sse: concurrent /runs/subscribe clients
	summarize  string
	kills      int           // chaos: SIGKILLs of worker processes
	chaosChild bool          // internal: a worker process of the chaos workload
	otel       bool          // engines observed by runtime/durablyotel (spans and metrics, exported nowhere)
	runMin     time.Duration // scaleout: the shortest run
	runMax     time.Duration // scaleout: the longest run
	seed       uint64        // scaleout: the seed of the runs' durations
	scaleChild bool          // internal: a worker process of the scaleout workload
	// -before and -after: compare two builds' -json outputs (compare.go).
	before, after         string
	beforeName, afterName string
	guard                 string
}

// result is one repetition's measurements.
type result struct {
	Type     string             `json:"type"`
	Workload string             `json:"workload"`
	Store    string             `json:"store"`
	Params   map[string]any     `json:"params"`
	Rep      int                `json:"rep"`
	Metrics  map[string]float64 `json:"metrics"`
	Units    map[string]string  `json:"units"`
	// Histogram is the latency workload's distribution of samples.
	Histogram []bucket `json:"histogram,omitempty"`
}

// summary is the median, min and max of every metric over the repetitions.
type summary struct {
	Type     string                        `json:"type"`
	Workload string                        `json:"workload"`
	Store    string                        `json:"store"`
	Params   map[string]any                `json:"params"`
	Reps     int                           `json:"reps"`
	Stats    map[string]map[string]float64 `json:"stats"`
	Units    map[string]string             `json:"units"`
	// Histogram adds up the repetitions' histograms (latency).
	Histogram []bucket `json:"histogram,omitempty"`
}

var workloads = map[string]func(ctx context.Context, c *config, db *benchDB, r *result) error{
	"enqueue":       wlEnqueue,
	"enqueue-batch": wlEnqueue,
	"enqueue-tx":    wlEnqueueTx,
	"process":       wlProcess,
	"latency":       wlLatency,
	"list":          wlList,
	"http":          wlHTTP,
	"sse":           wlSSE,
	"multi":         wlMulti,
	"chaos":         wlChaos,
	"retry":         wlRetry,
	"scheduled":     wlScheduled,
	"scaleout":      wlScaleout,
	"fanout":        wlFanout,
	"signal":        wlSignal,
}

func defaultN(workload string) int {
	switch workload {
	case "latency":
		// Enough samples for a p99 of 20 and a p99.9 of 2.
		return 2000
	case "list":
		return 100_000
	case "multi":
		return 10_000
	case "sse":
		return 1000
	case "chaos":
		return 300
	case "scaleout":
		// About 80 s of work: at 4 processes the longest run (3 s) is a
		// small part of the 20 s it should take.
		return 40
	case "fanout":
		return 100
	case "signal":
		return 1000
	}
	return 5000
}

// parseFlags reads the command line.
func parseFlags() *config {
	var c config
	flag.StringVar(&c.db, "db", "durably-bench.db", "SQLite file path, or a postgres:// DSN")
	flag.StringVar(&c.workload, "workload", "process", "enqueue | enqueue-batch | enqueue-tx | process | latency | list | http | sse | multi | chaos | retry | scheduled | scaleout | fanout | signal")
	flag.IntVar(&c.n, "n", 0, "runs (0: the workload's default)")
	flag.IntVar(&c.slots, "slots", 8, "worker slots (MaxConcurrentRuns); multi: per process, default 4")
	flag.IntVar(&c.procs, "procs", 4, "multi: worker processes; scaleout: the most worker processes (measured at 1, 2, 4, … and this)")
	flag.IntVar(&c.reps, "reps", 3, "repetitions, each on a fresh database")
	flag.BoolVar(&c.json, "json", false, "print one JSON object per repetition and a summary")
	flag.IntVar(&c.lanes, "pg-write-lanes", 0, "PostgreSQL: group-commit write lanes (pgstore.Options.WriteLanes; 0: the store's default)")
	flag.StringVar(&c.sync, "sqlite-synchronous", "FULL", "SQLite synchronous pragma (FULL is the durable default; NORMAL is not durable on power loss)")
	flag.StringVar(&c.profile, "cpuprofile", "", "write a CPU profile of the timed part to this file")
	flag.StringVar(&c.trace, "trace", "", "latency: write a runtime/trace of the timed part to this file (go tool trace)")
	flag.BoolVar(&c.breakdown, "breakdown", false, "latency: also time each hand-off of a run (stage_*) and each store call (call_*)")
	flag.StringVar(&c.memprofile, "memprofile", "", "sse: write a heap profile of the server, its streams still open, to this file")
	flag.BoolVar(&c.child, "multi-child", false, "internal: run as a worker process of the multi workload")
	flag.IntVar(&c.rate, "rate", 200, "sse: runs triggered per second, steadily (0: all at once, as fast as the worker goes); scheduled: runs falling due per second (0: 1000)")
	flag.StringVar(&c.summarize, "summarize", "", "print the summaries of a JSON-lines file (from -json) as a markdown table, and exit")
	flag.IntVar(&c.clients, "clients", 1000, "sse: concurrent /runs/subscribe clients")
	flag.IntVar(&c.sseN, "sse-clients", 0, "internal: run as the client process of the sse workload")
	flag.IntVar(&c.kills, "kills", 20, "chaos: worker processes killed with SIGKILL")
	flag.BoolVar(&c.chaosChild, "chaos-child", false, "internal: run as a worker process of the chaos workload")
	flag.DurationVar(&c.runMin, "run-min", time.Second, "scaleout: the shortest run")
	flag.DurationVar(&c.runMax, "run-max", 3*time.Second, "scaleout: the longest run")
	flag.Uint64Var(&c.seed, "seed", 1, "scaleout: the seed of the runs' durations")
	flag.BoolVar(&c.scaleChild, "scaleout-child", false, "internal: run as a worker process of the scaleout workload")
	flag.StringVar(&c.before, "before", "", "compare: the -json output of the build before (with -after: print a before → after table and exit)")
	flag.StringVar(&c.after, "after", "", "compare: the -json output of the build after, its repetitions run alternately with -before's")
	flag.StringVar(&c.beforeName, "before-name", "before", "compare: the name of the build before in the table")
	flag.StringVar(&c.afterName, "after-name", "after", "compare: the name of the build after in the table")
	flag.StringVar(&c.guard, "guard", "", "compare: fail unless the median of a metric's paired ratios after ÷ before holds a bound, e.g. runs_per_s>=0.85")
	flag.BoolVar(&c.otel, "otel", false, "observe the engines with runtime/durablyotel: every span sampled, spans and metrics recorded and dropped")
	flag.Parse()
	slotsSet := false
	flag.Visit(func(f *flag.Flag) { slotsSet = slotsSet || f.Name == "slots" })
	if c.workload == "multi" && !slotsSet && !c.child {
		c.slots = 4
	}
	if c.procs < 1 {
		fatalf("-procs %d, want at least 1", c.procs)
	}
	return &c
}

// runRole runs what the command line asks if it is not a workload (a
// comparison, a summary, one of a workload's own processes) and reports
// whether it did.
func runRole(c *config) bool {
	role := func(what string, err error) bool {
		if err != nil {
			fmt.Fprintf(os.Stderr, "durably-bench %s: %v\n", what, err)
			os.Exit(1)
		}
		return true
	}
	switch {
	case c.before != "" || c.after != "":
		if c.before == "" || c.after == "" {
			fatalf("-before and -after go together")
		}
		return role("compare", compareMain(os.Stdout, c))
	case c.summarize != "":
		return role("summarize", summarizeFile(os.Stdout, c.summarize))
	case c.sseN > 0:
		return role("sse clients", sseClients(c.sseN, c.n, c.db))
	case c.chaosChild:
		return role("chaos child", chaosChild(c))
	case c.scaleChild:
		return role("scaleout worker", scaleoutChild(c))
	case c.child:
		return role("child", multiChild(c))
	}
	return false
}

func main() {
	c := parseFlags()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if runRole(c) {
		return
	}
	fn, ok := workloads[c.workload]
	if !ok {
		fatalf("unknown -workload %q", c.workload)
	}
	if c.n <= 0 {
		c.n = defaultN(c.workload)
	}
	ctx := context.Background()
	var results []result
	for rep := 1; rep <= c.reps; rep++ {
		db, err := freshDB(ctx, c, rep)
		if err != nil {
			fatalf("rep %d: %v", rep, err)
		}
		r := result{Type: "rep", Workload: c.workload, Store: db.kind, Rep: rep, Params: c.params(), Metrics: map[string]float64{}, Units: map[string]string{}}
		err = fn(ctx, c, db, &r)
		db.close()
		if err != nil {
			fatalf("%s rep %d on %s: %v", c.workload, rep, db.kind, err)
		}
		results = append(results, r)
		if c.json {
			printJSON(os.Stdout, r)
		} else {
			fmt.Fprintf(os.Stderr, "rep %d: %s\n", rep, formatMetrics(r.Metrics, r.Units))
		}
	}
	s := summarize(results)
	if c.json {
		printJSON(os.Stdout, s)
		return
	}
	printTable(os.Stdout, s)
}

func (c *config) params() map[string]any {
	p := map[string]any{"n": c.n}
	switch c.workload {
	case "process", "latency", "multi", "http", "sse", "retry", "scheduled", "fanout", "signal":
		p["slots"] = c.slots
	}
	if c.workload == "scheduled" {
		p["rate"] = c.rate
	}
	if c.workload == "multi" {
		p["procs"] = c.procs
	}
	if c.workload == "scaleout" {
		p["procs"], p["run_min"], p["run_max"], p["seed"] = c.procs, c.runMin.String(), c.runMax.String(), c.seed
	}
	if c.workload == "sse" {
		p["clients"], p["rate"] = c.clients, c.rate
	}
	if c.workload == "chaos" {
		p["slots"], p["kills"] = c.slots, c.kills
	}
	if c.otel {
		p["otel"] = true
	}
	if !strings.HasPrefix(c.db, "postgres") {
		p["synchronous"] = c.sync
	} else if c.lanes != 0 {
		p["write_lanes"] = c.lanes
	}
	return p
}

func summarize(rs []result) summary {
	s := summary{Type: "summary", Workload: rs[0].Workload, Store: rs[0].Store, Params: rs[0].Params, Reps: len(rs),
		Stats: map[string]map[string]float64{}, Units: rs[0].Units, Histogram: mergeHistograms(rs)}
	for name := range rs[0].Metrics {
		var vals []float64
		for _, r := range rs {
			vals = append(vals, r.Metrics[name])
		}
		sort.Float64s(vals)
		s.Stats[name] = map[string]float64{"median": median(vals), "min": vals[0], "max": vals[len(vals)-1]}
	}
	return s
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// percentile of sorted values, nearest rank.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func printJSON(w io.Writer, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintln(w, string(b))
}

func formatMetrics(m map[string]float64, units map[string]string) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%s%s", k, fmtNum(m[k]), units[k]))
	}
	return strings.Join(parts, " ")
}

func printTable(w io.Writer, s summary) {
	fmt.Fprintf(w, "durably-bench %s on %s %v, %d reps (median [min..max])\n", s.Workload, s.Store, s.Params, s.Reps)
	var keys []string
	for k := range s.Stats {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		st := s.Stats[k]
		fmt.Fprintf(w, "  %-22s %12s %-5s [%s..%s]\n", k, fmtNum(st["median"]), s.Units[k], fmtNum(st["min"]), fmtNum(st["max"]))
	}
	printHistogram(w, s.Histogram)
}

// summarizeFile prints every summary line of a -json output file as one
// markdown table row per metric.
func summarizeFile(w io.Writer, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "| store | workload | params | metric | median [min..max] | reps |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for line := range strings.Lines(string(b)) {
		var s summary
		if json.Unmarshal([]byte(line), &s) != nil || s.Type != "summary" {
			continue
		}
		var params []string
		for _, k := range slices.Sorted(maps.Keys(s.Params)) {
			if k != "n" {
				params = append(params, fmt.Sprintf("%s=%v", k, s.Params[k]))
			}
		}
		params = append([]string{fmt.Sprintf("n=%v", s.Params["n"])}, params...)
		for _, k := range slices.Sorted(maps.Keys(s.Stats)) {
			st := s.Stats[k]
			fmt.Fprintf(w, "| %s | %s | %s | %s %s | %s [%s..%s] | %d |\n", s.Store, s.Workload, strings.Join(params, " "), k, s.Units[k],
				fmtNum(st["median"]), fmtNum(st["min"]), fmtNum(st["max"]), s.Reps)
		}
	}
	return nil
}

func fmtNum(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "durably-bench: "+format+"\n", args...)
	os.Exit(1)
}

// progress prints a progress line on stderr for long workloads.
type progress struct {
	what  string
	total int
	last  time.Time
}

func (p *progress) report(done int) {
	if time.Since(p.last) < time.Second && done < p.total {
		return
	}
	p.last = time.Now()
	fmt.Fprintf(os.Stderr, "\r%s: %d/%d", p.what, done, p.total)
	if done >= p.total {
		fmt.Fprintln(os.Stderr)
	}
}
