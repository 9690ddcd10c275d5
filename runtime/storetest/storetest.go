// Package storetest is the contract suite every durably store passes: each
// behaviour of the engine and each invariant of the store, checked on a real
// database. A store's tests call Run with a factory that makes a fresh,
// empty database per test, so the tests run in parallel.
//
// Test names carry the numbers of the behaviours they check, as defined in
// docs/contract.md (R-… engine, S-… storage, D… deliberate differences).
package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// Factory makes a fresh, empty database for one test and returns a function
// that opens a store on it. open may be called more than once, to get
// several stores (as several processes would) on the same database; every
// store it returns is closed when the test ends.
type Factory func(t *testing.T) (open func() store.Store)

// Case is one test of the suite.
type Case struct {
	Name string
	Run  func(t *testing.T, h *Harness)
}

// Run runs every case against stores made by factory, in parallel. Once
// every case is done, no goroutine may be left that was not there before:
// each engine, store, writer and stream a case starts must end with it
// (Stop, Close, a cancelled context). The cases run in parallel, so they
// are checked together, not one by one.
func Run(t *testing.T, factory Factory) {
	existing := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, existing) })
	for _, c := range Cases() {
		alone := slices.ContainsFunc(aloneCases, func(a Case) bool { return a.Name == c.Name })
		t.Run(c.Name, func(t *testing.T) {
			if !alone {
				t.Parallel() // paused until the cases that run alone are done
			}
			h := &Harness{t: t, open: factory(t)}
			h.Store = h.OpenStore()
			c.Run(t, h)
		})
	}
}

// Cases lists the suite.
func Cases() []Case {
	var all []Case
	all = append(all, triggerCases...)
	all = append(all, batchCases...)
	all = append(all, claimCases...)
	all = append(all, leaseCases...)
	all = append(all, stepCases...)
	all = append(all, cancelCases...)
	all = append(all, retriggerCases...)
	all = append(all, retentionCases...)
	all = append(all, waitCases...)
	all = append(all, processCases...)
	all = append(all, queryCases...)
	all = append(all, windowCases...)
	all = append(all, lifecycleCases...)
	all = append(all, tenantCases...)
	all = append(all, scheduleCases...)
	all = append(all, retryCases...)
	all = append(all, delayCases...)
	all = append(all, crashCases...)
	all = append(all, tenantLimitCases...)
	all = append(all, limitCases...)
	all = append(all, aloneCases...)
	all = append(all, pendingCases...)
	all = append(all, txTriggerCases...)
	all = append(all, resumeCases...)
	all = append(all, childCases...)
	all = append(all, childStoreCases...)
	all = append(all, signalCases...)
	all = append(all, signalStoreCases...)
	return all
}

// aloneCases run by themselves, before the other cases run in parallel:
// they move enough data (hundreds of megabytes) to upset the timing the
// others check.
var aloneCases = []Case{
	{"R-208 inputs, outputs and step results are at most MaxJSONBytes; a batch at most MaxBatchBytes", jsonLimits},
}

// Harness gives a case its database.
type Harness struct {
	t     *testing.T
	open  func() store.Store
	Store store.Store
}

// OpenStore opens another store on the case's database.
func (h *Harness) OpenStore() store.Store { return h.open() }

// Engine makes a migrated engine on the case's store (or on st, if given)
// with fast test defaults; cfg edits the configuration. The engine is
// stopped when the test ends.
func (h *Harness) Engine(cfg func(*durably.Config)) *durably.Engine {
	return h.EngineOn(h.Store, cfg)
}

// EngineOn is Engine on a given store.
func (h *Harness) EngineOn(st store.Store, cfg func(*durably.Config)) *durably.Engine {
	t := h.t
	c := durably.Config{Store: st, PollingInterval: 20 * time.Millisecond}
	if cfg != nil {
		cfg(&c)
	}
	e, err := durably.New(c)
	if err != nil {
		t.Fatalf("durably.New: %v", err)
	}
	if err := e.Migrate(context.Background()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return e
}

// Ctx is a context bounded by a generous deadline, so that a broken case
// fails instead of hanging.
func Ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Eventually polls cond until it holds or the deadline passes.
func Eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Recorder keeps the events an engine emits.
type Recorder struct {
	mu     sync.Mutex
	events []durably.Event
}

// Record starts recording the events e emits itself; events other
// processes published (D3) are left out.
func Record(t *testing.T, e *durably.Engine) *Recorder {
	r := &Recorder{}
	t.Cleanup(e.OnEvent(func(ev durably.Event) {
		if ev.Remote() {
			return
		}
		r.mu.Lock()
		r.events = append(r.events, ev)
		r.mu.Unlock()
	}))
	return r
}

// Events returns the recorded events of the given types (all if none).
func (r *Recorder) Events(types ...durably.EventType) []durably.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []durably.Event
	for _, ev := range r.events {
		if len(types) == 0 || slices.Contains(types, ev.Type) {
			out = append(out, ev)
		}
	}
	return out
}

// Types returns the types of the recorded events of one run, in order.
func (r *Recorder) Types(runID string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.events {
		if ev.RunID == runID {
			out = append(out, string(ev.Type))
		}
	}
	return out
}

// Counter counts calls by key, safely across goroutines.
type Counter struct {
	mu sync.Mutex
	m  map[string]int
}

// Inc adds one to key.
func (c *Counter) Inc(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[key]++
}

// Get returns key's count.
func (c *Counter) Get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[key]
}

// Msg is the input and output of the suite's echo job.
type Msg struct {
	Message string `json:"message"`
}

// EchoJob returns one step "echo" of its input.
func EchoJob(name string) *durably.Job[Msg, Msg] {
	return &durably.Job[Msg, Msg]{
		Name: name,
		Run: func(ctx context.Context, s *durably.StepContext, in Msg) (Msg, error) {
			return durably.RunStep(s, "echo", func(ctx context.Context) (Msg, error) { return in, nil })
		},
		ValidateInput: func(in *Msg) error {
			if in.Message == "" {
				return fmt.Errorf("message: required")
			}
			return nil
		},
	}
}

// StepsInput drives the suite's steps job.
type StepsInput struct {
	Count  int `json:"count"`
	FailAt int `json:"failAt,omitempty"`
}

// StepsJob runs steps step-1 … step-N, each returning its number and
// counted in calls; step FailAt fails with "boom at step N".
func StepsJob(name string, calls *Counter) *durably.Job[StepsInput, int] {
	return &durably.Job[StepsInput, int]{
		Name: name,
		Run: func(ctx context.Context, s *durably.StepContext, in StepsInput) (int, error) {
			sum := 0
			for i := 1; i <= in.Count; i++ {
				step := fmt.Sprintf("step-%d", i)
				v, err := durably.RunStep(s, step, func(ctx context.Context) (int, error) {
					calls.Inc(s.RunID() + "/" + step)
					if i == in.FailAt {
						return 0, fmt.Errorf("boom at step %d", i)
					}
					return i, nil
				})
				if err != nil {
					return 0, err
				}
				sum += v
			}
			return sum, nil
		},
	}
}

// Gate blocks steps until released, and reports when a step is waiting.
type Gate struct {
	entered chan string
	release chan struct{}
	once    sync.Once
}

// NewGate makes a closed gate.
func NewGate() *Gate {
	return &Gate{entered: make(chan string, 100), release: make(chan struct{})}
}

// Wait blocks until Open or ctx ends, first announcing who waits.
func (g *Gate) Wait(ctx context.Context, who string) error {
	g.entered <- who
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Entered waits until someone waits at the gate.
func (g *Gate) Entered(t *testing.T) string {
	t.Helper()
	select {
	case who := <-g.entered:
		return who
	case <-time.After(15 * time.Second):
		t.Fatal("nobody reached the gate")
		return ""
	}
}

// Open releases everyone.
func (g *Gate) Open() { g.once.Do(func() { close(g.release) }) }

// MustTrigger triggers or fails the test.
func MustTrigger[I, O any](t *testing.T, j *durably.JobHandle[I, O], in I, opts ...durably.Option) *durably.Run {
	t.Helper()
	res, err := j.Trigger(Ctx(t), in, opts...)
	if err != nil {
		t.Fatalf("trigger %s: %v", j.Name(), err)
	}
	return res.Run
}

// MustGet reads a run that must exist.
func MustGet(t *testing.T, e *durably.Engine, id string) *durably.Run {
	t.Helper()
	run, err := e.GetRun(Ctx(t), id)
	if err != nil || run == nil {
		t.Fatalf("get run %s: %v (run %v)", id, err, run)
	}
	return run
}

// WantKind checks that err is of the kind with exactly the message.
func WantKind(t *testing.T, err, kind error, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %v error %q, got nil", kind, msg)
	}
	if !errorsIs(err, kind) {
		t.Fatalf("want %v error, got %T %v", kind, err, err)
	}
	if msg != "" && err.Error() != msg {
		t.Fatalf("error message\n got: %s\nwant: %s", err.Error(), msg)
	}
}

// WantPrefix checks that err is of the kind and its message starts with prefix.
func WantPrefix(t *testing.T, err, kind error, prefix string) {
	t.Helper()
	if err == nil || !errorsIs(err, kind) || !strings.HasPrefix(err.Error(), prefix) {
		t.Fatalf("want %v error starting %q, got %v", kind, prefix, err)
	}
}

// CountRuns counts all runs in the store.
func CountRuns(t *testing.T, st store.Store) int {
	t.Helper()
	runs, err := st.ListRuns(Ctx(t), store.RunFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return len(runs)
}

func jsonEq(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return fmt.Sprint(x) == fmt.Sprint(y)
}

func ptr[T any](v T) *T { return &v }

// Box holds a value shared between a job's goroutine and the test.
type Box[T any] struct {
	mu sync.Mutex
	v  T
}

// Set stores v.
func (b *Box[T]) Set(v T) {
	b.mu.Lock()
	b.v = v
	b.mu.Unlock()
}

// Get returns the value.
func (b *Box[T]) Get() T {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.v
}

// Patcher is implemented by stores that let the suite fabricate states no
// engine would write, such as an expired lease or a run created in the past
// (S-047). It is not part of store.Store: production code never changes a
// run without fencing.
type Patcher interface {
	// PatchRun overwrites the fields the patch sets, without fencing.
	PatchRun(ctx context.Context, id string, patch store.RunPatch) error
}

// PatchRun patches a run through st, which must implement Patcher.
func PatchRun(ctx context.Context, st store.Store, id string, patch store.RunPatch) error {
	p, ok := st.(Patcher)
	if !ok {
		return fmt.Errorf("storetest: store %T does not implement storetest.Patcher, which the suite needs", st)
	}
	return p.PatchRun(ctx, id, patch)
}

// Migrator is implemented by stores that can build a database as an older
// version of the schema left it, so that the suite checks that their
// migrations carry data forward (S-015). Both of this module's stores
// implement it.
type Migrator interface {
	// MigrateTo applies the store's migrations up to version, then runs
	// seed (SQL both engines take) in the same transaction.
	MigrateTo(ctx context.Context, version int, seed string) error
}

// migrator returns h.Store as a Migrator, skipping the test for a store
// that has no older versions to migrate from.
func (h *Harness) migrator() Migrator {
	m, ok := h.Store.(Migrator)
	if !ok {
		h.t.Skipf("store %T does not implement storetest.Migrator", h.Store)
	}
	return m
}
