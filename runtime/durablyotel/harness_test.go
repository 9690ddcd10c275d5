package durablyotel_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/runtime/durablyotel"
	"github.com/durably-go/durably/runtime/pgstore"
	"github.com/durably-go/durably/runtime/sqlitestore"
	"github.com/durably-go/durably/store"
)

// The tests' harness: both stores, an observer exporting to the SDK's
// in-memory exporters, and worker processes that are this test binary
// re-executed (as childproc_test.go at the module's root does).

// childEnv names the child test a re-executed binary runs; storeEnv
// carries its store (see openStore), spansEnv the file it writes its spans
// to.
const (
	childEnv = "DURABLYOTEL_TEST_CHILD"
	storeEnv = "DURABLYOTEL_TEST_STORE"
	spansEnv = "DURABLYOTEL_TEST_SPANS"
)

// bothStores runs body in parallel subtests on a fresh SQLite file and a
// fresh PostgreSQL schema, given as a store spec; it skips in a child.
func bothStores(t *testing.T, body func(t *testing.T, spec string)) {
	t.Helper()
	if os.Getenv(childEnv) != "" {
		t.Skip("in a child process")
	}
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			spec := "sqlite:" + filepath.Join(t.TempDir(), "otel.db")
			if kind == "postgres" {
				spec = pgtest.Schema(t)
			}
			body(t, spec)
		})
	}
}

// openStore opens the store a spec names; it is closed when t ends.
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

// telemetry is an observer's in-memory destinations.
type telemetry struct {
	spans  *tracetest.InMemoryExporter
	reader *sdkmetric.ManualReader
	tp     *sdktrace.TracerProvider
	obs    *durablyotel.Observer
}

func newTelemetry(t testing.TB) *telemetry {
	t.Helper()
	tel := &telemetry{spans: tracetest.NewInMemoryExporter(), reader: sdkmetric.NewManualReader()}
	tel.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(tel.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	obs, err := durablyotel.New(durablyotel.Options{TracerProvider: tel.tp, MeterProvider: mp})
	if err != nil {
		t.Fatal(err)
	}
	tel.obs = obs
	return tel
}

// engine makes a migrated engine on st observed by tel, with fast polling;
// it is stopped when t ends.
func (tel *telemetry) engine(t testing.TB, st store.Store, edit func(*durably.Config)) *durably.Engine {
	t.Helper()
	cfg := durably.Config{Store: st, PollingInterval: 20 * time.Millisecond, Observer: tel.obs}
	if edit != nil {
		edit(&cfg)
	}
	e, err := durably.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Stop(ctx)
	})
	return e
}

// span is a finished span as the tests compare it, and as a child process
// hands its spans to the parent.
type span struct {
	Name    string            `json:"name"`
	Kind    string            `json:"kind"`
	TraceID string            `json:"traceId"`
	SpanID  string            `json:"spanId"`
	Parent  string            `json:"parent"` // the parent's span id, "" for a root
	Remote  bool              `json:"remote"` // the parent is in another process (or stored)
	Status  string            `json:"status"`
	Desc    string            `json:"desc"`
	Attrs   map[string]string `json:"attrs"`
	Events  []string          `json:"events"`
}

func spansOf(stubs tracetest.SpanStubs) []span {
	out := make([]span, len(stubs))
	for i, s := range stubs {
		out[i] = span{Name: s.Name, Kind: s.SpanKind.String(), TraceID: s.SpanContext.TraceID().String(),
			SpanID: s.SpanContext.SpanID().String(), Remote: s.Parent.IsRemote(), Status: s.Status.Code.String(),
			Desc: s.Status.Description, Attrs: map[string]string{}}
		if s.Parent.IsValid() {
			out[i].Parent = s.Parent.SpanID().String()
		}
		for _, a := range s.Attributes {
			out[i].Attrs[string(a.Key)] = a.Value.String()
		}
		for _, ev := range s.Events {
			out[i].Events = append(out[i].Events, ev.Name)
		}
	}
	return out
}

// finished returns the spans ended so far.
func (tel *telemetry) finished() []span { return spansOf(tel.spans.GetSpans()) }

// named returns the spans called name, in the order they ended.
func named(spans []span, name string) []span {
	var out []span
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// writeSpans writes spans as JSON, for the parent of a child process.
func writeSpans(t testing.TB, path string, spans []span) {
	t.Helper()
	b, err := json.Marshal(spans)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readSpans(t testing.TB, path string) []span {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var spans []span
	if err := json.Unmarshal(b, &spans); err != nil {
		t.Fatal(err)
	}
	return spans
}

// wantAttrs fails unless s has each attribute with its value.
func wantAttrs(t *testing.T, s span, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got, ok := s.Attrs[k]; !ok || got != v {
			t.Errorf("span %q: %s = %q (set: %v), want %q; attributes %v", s.Name, k, got, ok, v, s.Attrs)
		}
	}
}

// collect reads the metrics recorded so far.
func (tel *telemetry) collect(t testing.TB) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	return rm
}

// point is one data point of a metric: its attributes and its value (a
// sum's or a gauge's value, a histogram's count of measurements).
type point struct {
	attrs attribute.Set
	value int64
}

// points returns the data points of the metric called name.
func points(rm metricdata.ResourceMetrics, name string) []point {
	var out []point
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out = append(out, point{p.Attributes, p.Value})
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out = append(out, point{p.Attributes, p.Value})
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out = append(out, point{p.Attributes, int64(p.Count)})
				}
			}
		}
	}
	return out
}

// total sums the points of metric name whose attributes include match.
func total(rm metricdata.ResourceMetrics, name string, match ...attribute.KeyValue) int64 {
	var n int64
	for _, p := range points(rm, name) {
		ok := true
		for _, kv := range match {
			if v, has := p.attrs.Value(kv.Key); !has || v != kv.Value {
				ok = false
			}
		}
		if ok {
			n += p.value
		}
	}
	return n
}

// waitFor polls cond until it holds, failing the test after limit.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// finishedRun waits until run id is terminal and returns it.
func finishedRun(t testing.TB, e *durably.Engine, id string) *durably.Run {
	t.Helper()
	var run *durably.Run
	waitFor(t, 20*time.Second, "run "+id+" to end", func() bool {
		var err error
		run, err = e.GetRun(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return run.Status.Terminal()
	})
	return run
}

// runToEnd starts e, triggers job with ctx (and its span, if any) and
// returns the run once it has ended.
func runToEnd(t testing.TB, ctx context.Context, e *durably.Engine, job *durably.JobHandle[string, string]) *durably.Run {
	t.Helper()
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	res, err := job.Trigger(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	return finishedRun(t, e, res.Run.ID)
}

// requestSpan starts a span standing for the caller's request.
func (tel *telemetry) requestSpan(t testing.TB) (context.Context, trace.Span) {
	t.Helper()
	ctx, s := tel.tp.Tracer("test").Start(context.Background(), "request")
	t.Cleanup(func() { s.End() })
	return ctx, s
}

// child is a worker process: this test binary re-executed to run one
// child test.
type child struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	waited chan error
}

// startChild starts child test name on the store spec with extra
// environment; it is killed, if still alive, when t ends.
func startChild(t *testing.T, name, spec string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.v")
	cmd.Env = append(os.Environ(), append([]string{childEnv + "=" + name, storeEnv + "=" + spec}, env...)...)
	c := &child{cmd: cmd, out: &syncBuffer{}, waited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = c.out, c.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.waited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.waited
	})
	return c
}

// waitExit waits for the child to exit by itself, failing the test unless
// it exits successfully within limit.
func (c *child) waitExit(t *testing.T, limit time.Duration) {
	t.Helper()
	select {
	case err := <-c.waited:
		c.waited <- err // for the cleanup
		if err != nil {
			t.Fatalf("child failed: %v\n%s", err, c.out)
		}
	case <-time.After(limit):
		t.Fatalf("child still running after %v\n%s", limit, c.out)
	}
}

// childOnly skips a child test unless this process was started to run it.
func childOnly(t *testing.T) {
	t.Helper()
	if os.Getenv(childEnv) != t.Name() {
		t.Skip("the child process of another test")
	}
}

// syncBuffer is a child's output, written by its process's pipe and read
// by the test.
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
