package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// newRand is a random source whose seed the test logs, so that a failure
// can be replayed.
func newRand(t *testing.T) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	return rand.New(rand.NewPCG(seed, seed>>1))
}

// IncompressibleText is exactly n bytes of random UTF-8 mixing one- to
// four-byte characters, none of which JSON escapes: random, so that no
// store can compress it (PostgreSQL compresses long index entries) and a
// string at its limit is as wide as it can be, and as long in JSON as it
// is.
func IncompressibleText(rng *rand.Rand, n int) string {
	b := make([]byte, 0, n)
	for len(b) < n {
		var r rune
		switch w := 1 + rng.IntN(min(4, n-len(b))); w {
		case 1:
			r = rune(0x20 + rng.IntN(0x7f-0x20))
			if strings.ContainsRune(`"\<>&`, r) {
				r = 'x'
			}
		case 2:
			r = rune(0x80 + rng.IntN(0x800-0x80))
		case 3:
			r = rune(0x800 + rng.IntN(0x10000-0x800))
			if r >= 0xd800 && r <= 0xdfff || r == '\u2028' || r == '\u2029' {
				r = 'ë' + rune(rng.IntN(8)) // two bytes: one more follows
			}
		default:
			r = rune(0x10000 + rng.IntN(0x110000-0x10000))
		}
		b = utf8.AppendRune(b, r)
	}
	return string(b)
}

// keyText is exactly n bytes of random label-key characters.
func keyText(rng *rand.Rand, n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

// limitField is a string a trigger stores, with its limit.
type limitField struct {
	name   string // as validation errors name it
	max    int
	text   func(rng *rand.Rand, n int) string
	set    func(req *durably.TriggerRequest, s string)
	stored func(r *durably.Run) string
}

var triggerLimitFields = []limitField{
	{"idempotencyKey", durably.MaxKeyBytes, IncompressibleText,
		func(req *durably.TriggerRequest, s string) { req.IdempotencyKey = s },
		func(r *durably.Run) string { return r.IdempotencyKey }},
	{"concurrencyKey", durably.MaxKeyBytes, IncompressibleText,
		func(req *durably.TriggerRequest, s string) { req.ConcurrencyKey = s },
		func(r *durably.Run) string { return r.ConcurrencyKey }},
	{"labels.env", durably.MaxLabelValueBytes, IncompressibleText,
		func(req *durably.TriggerRequest, s string) { req.Labels = map[string]string{"env": s} },
		func(r *durably.Run) string { return r.Labels["env"] }},
	{"label key", durably.MaxLabelKeyBytes, keyText,
		func(req *durably.TriggerRequest, s string) { req.Labels = map[string]string{s: "v"} },
		func(r *durably.Run) string {
			for k := range r.Labels {
				return k
			}
			return ""
		}},
}

// triggerPath triggers one run of the echo job by one of the engine's
// trigger paths, with the options of req.
type triggerPath struct {
	name    string
	trigger func(ctx context.Context, e *durably.Engine, j *durably.JobHandle[Msg, Msg], req durably.TriggerRequest) (*durably.Run, error)
}

// options is req's options, as a Go caller passes them.
func options(req durably.TriggerRequest) []durably.Option {
	return []durably.Option{durably.WithIdempotencyKey(req.IdempotencyKey), durably.WithConcurrencyKey(req.ConcurrencyKey),
		durably.WithLabels(req.Labels)}
}

var triggerPaths = []triggerPath{
	{"Trigger", func(ctx context.Context, _ *durably.Engine, j *durably.JobHandle[Msg, Msg], req durably.TriggerRequest) (*durably.Run, error) {
		res, err := j.Trigger(ctx, Msg{"m"}, options(req)...)
		if err != nil {
			return nil, err
		}
		return res.Run, nil
	}},
	{"TriggerRaw", func(ctx context.Context, e *durably.Engine, j *durably.JobHandle[Msg, Msg], req durably.TriggerRequest) (*durably.Run, error) {
		req.JobName, req.Input = j.Name(), json.RawMessage(`{"message":"m"}`)
		res, err := e.TriggerRaw(ctx, req)
		if err != nil {
			return nil, err
		}
		return res.Run, nil
	}},
	{"BatchTrigger", func(ctx context.Context, _ *durably.Engine, j *durably.JobHandle[Msg, Msg], req durably.TriggerRequest) (*durably.Run, error) {
		res, err := j.BatchTrigger(ctx, []durably.BatchItem[Msg]{{Input: Msg{"m"}}, {Input: Msg{"m"}, Options: options(req)}})
		if err != nil {
			return nil, err
		}
		return res[1].Run, nil
	}},
	{"BatchTriggerRaw", func(ctx context.Context, e *durably.Engine, j *durably.JobHandle[Msg, Msg], req durably.TriggerRequest) (*durably.Run, error) {
		req.JobName, req.Input = j.Name(), json.RawMessage(`{"message":"m"}`)
		res, err := e.BatchTriggerRaw(ctx, []durably.TriggerRequest{{JobName: j.Name(), Input: req.Input}, req})
		if err != nil {
			return nil, err
		}
		return res[1].Run, nil
	}},
}

// countRuns is the number of runs in the store.
func countRuns(t *testing.T, e *durably.Engine) int {
	t.Helper()
	runs, err := e.ListRuns(Ctx(t), durably.RunFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return len(runs)
}

// checkLimit triggers with f set to s by path: a run that stores s when s
// fits f's limit, else a validation error naming f and no run written.
func checkLimit(t *testing.T, e *durably.Engine, j *durably.JobHandle[Msg, Msg], f limitField, path triggerPath, s string) {
	t.Helper()
	var req durably.TriggerRequest
	f.set(&req, s)
	what := fmt.Sprintf("%s with a %s of %d bytes (limit %d)", path.name, f.name, len(s), f.max)
	checkTrigger(t, e, j, path, req, what, f.name, len(s) <= f.max, func(r *durably.Run) bool { return f.stored(r) == s })
}

// checkTrigger triggers req by path. When fits, the run must be created and
// read back as stored says; else the trigger must be a validation error
// naming field and write nothing.
func checkTrigger(t *testing.T, e *durably.Engine, j *durably.JobHandle[Msg, Msg], path triggerPath, req durably.TriggerRequest,
	what, field string, fits bool, stored func(*durably.Run) bool) {
	t.Helper()
	before := countRuns(t, e)
	run, err := path.trigger(Ctx(t), e, j, req)
	if !fits {
		if !errors.Is(err, durably.ErrValidation) || !strings.Contains(err.Error(), field) {
			t.Fatalf("%s: %v; want a validation error naming %s", what, err, field)
		}
		if n := countRuns(t, e); n != before {
			t.Fatalf("%s: %d runs written by a refused trigger", what, n-before)
		}
		return
	}
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	got, err := e.GetRun(Ctx(t), run.ID)
	if err != nil || got == nil || !stored(got) {
		t.Fatalf("%s: read back %v (%v), want it stored as given", what, got, err)
	}
}

var limitCases = []Case{
	{"R-208 keys and labels at their limit are stored by every trigger path; one byte more is refused, naming the field", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		j := durably.MustRegister(e, EchoJob("limits"))
		rng := newRand(t)
		for _, f := range triggerLimitFields {
			for _, path := range triggerPaths {
				// The limit, one byte past it, and random lengths around it
				// (a property over lengths and characters of every width).
				lengths := []int{f.max, f.max + 1}
				for range 6 {
					lengths = append(lengths, f.max-8+rng.IntN(17))
				}
				for _, n := range lengths {
					checkLimit(t, e, j, f, path, f.text(rng, n))
				}
			}
		}
	}},
	{"R-208 tenant labels must make a key scope of at most MaxKeyScopeBytes, JSON escapes counted", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) { c.TenantLabels = []string{"org", "team"} })
		j := durably.MustRegister(e, EchoJob("scope"))
		rng := newRand(t)
		for _, over := range []int{0, 1, 6} {
			for _, path := range triggerPaths {
				labels := scopeLabels(t, rng, durably.MaxKeyScopeBytes+over)
				what := fmt.Sprintf("%s with tenant labels making a key scope of %d bytes", path.name, durably.MaxKeyScopeBytes+over)
				checkTrigger(t, e, j, path, durably.TriggerRequest{Labels: labels}, what, "labels.org, labels.team", over == 0,
					func(r *durably.Run) bool {
						return r.Labels["org"] == labels["org"] && r.Labels["team"] == labels["team"]
					})
			}
		}
	}},
	{"R-208 a job name is at most MaxJobNameBytes: refused at registration, and as a list filter", jobNameLimit},
	{"R-208 a step name is at most MaxStepNameBytes: a longer one fails the step without running it, naming it", stepNameLimit},
	{"R-208 a step recorded under a name past the limit before the limit existed still replays", longStepReplays},
	{"R-208 a worker id is at most MaxWorkerIDBytes, refused by New and ProcessOne", workerIDLimit},
	{"R-208 a schedule name is at most MaxScheduleNameBytes; its ticks' keys fit", scheduleNameLimit},
	{"R-208 the longest job name, tenant labels, keys, labels, step name and worker id together fit every index", maximalRun},
	{"R-208 error, log and progress messages are stored valid and cut at MaxMessageBytes", messageLimits},
	{"R-208 run ids and filters longer than anything stored find nothing or are refused, never a store error", lookupLimits},
}

// scopeLabels returns "org" and "team" labels whose key scope (D11) is
// exactly n bytes, "team" carrying characters JSON escapes ('<' is six
// bytes).
func scopeLabels(t *testing.T, rng *rand.Rand, n int) map[string]string {
	t.Helper()
	labels := map[string]string{"org": IncompressibleText(rng, durably.MaxLabelValueBytes), "team": ""}
	rest := n - scopeLen(labels)
	// team: k escaped '<' (6 bytes each) and rest-6k plain bytes, within
	// the value's own limit.
	k := max(0, (rest-durably.MaxLabelValueBytes+4)/5)
	if rest-6*k < 0 {
		t.Fatalf("cannot make a key scope of %d bytes", n)
	}
	labels["team"] = strings.Repeat("<", k) + IncompressibleText(rng, rest-6*k)
	if got := scopeLen(labels); got != n || len(labels["team"]) > durably.MaxLabelValueBytes {
		t.Fatalf("key scope of %d bytes with a team of %d, want %d", got, len(labels["team"]), n)
	}
	return labels
}

// scopeLen is the length of the key scope the engine makes of the org and
// team labels: their [key, value] pairs as JSON (D11).
func scopeLen(labels map[string]string) int {
	b, err := json.Marshal([][2]string{{"org", labels["org"]}, {"team", labels["team"]}})
	if err != nil {
		panic(err)
	}
	return len(b)
}

// nameInput is the input of a job whose one step, or durable sleep, has
// the name it is given.
type nameInput struct {
	Name  string `json:"name"`
	Sleep bool   `json:"sleep,omitempty"`
}

func stepNameLimit(t *testing.T, h *Harness) {
	e := h.Engine(func(c *durably.Config) { c.PreserveSteps = true })
	var calls Counter
	j := durably.MustRegister(e, &durably.Job[nameInput, string]{Name: "named", Run: func(ctx context.Context, s *durably.StepContext, in nameInput) (string, error) {
		if in.Sleep {
			return "slept", durably.Sleep(s, in.Name, 0)
		}
		return durably.RunStep(s, in.Name, func(ctx context.Context) (string, error) {
			calls.Inc(in.Name)
			return "ran", nil
		})
	}})
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	rng := newRand(t)
	for _, sleep := range []bool{false, true} {
		for _, n := range []int{durably.MaxStepNameBytes, durably.MaxStepNameBytes + 1} {
			in := nameInput{Name: "step-" + IncompressibleText(rng, n-5), Sleep: sleep}
			out, err := j.TriggerAndWait(Ctx(t), in)
			if n > durably.MaxStepNameBytes {
				if err == nil || !strings.Contains(err.Error(), `step name "step-`) || calls.Get(in.Name) != 0 {
					t.Fatalf("sleep %v: a step name of %d bytes: %v, %d calls; want the run failed naming the step, the step not run", sleep, n, err, calls.Get(in.Name))
				}
				continue
			}
			if err != nil {
				t.Fatalf("sleep %v: a step name of %d bytes: %v", sleep, n, err)
			}
			steps, err := e.GetSteps(Ctx(t), out.RunID)
			if err != nil || len(steps) != 1 || steps[0].Name != in.Name {
				t.Fatalf("sleep %v: steps %v (%v); want the one step, its name stored", sleep, steps, err)
			}
		}
	}
}

func longStepReplays(t *testing.T, h *Harness) {
	e := h.Engine(nil)
	var calls Counter
	j := durably.MustRegister(e, &durably.Job[nameInput, string]{Name: "old", Run: func(ctx context.Context, s *durably.StepContext, in nameInput) (string, error) {
		return durably.RunStep(s, in.Name, func(ctx context.Context) (string, error) {
			calls.Inc(in.Name)
			return "ran again", nil
		})
	}})
	// The run's first execution recorded the step, as an engine without
	// the limit did; the store holds it.
	name := "step-" + IncompressibleText(newRand(t), durably.MaxStepNameBytes)
	res := mustTriggerRes(t, j, nameInput{Name: name})
	runs, err := h.Store.Claim(Ctx(t), store.ClaimRequest{WorkerID: "old-engine", Now: time.Now(), Lease: time.Minute, Limit: 1})
	if err != nil || len(runs) != 1 {
		t.Fatalf("claim: %v %v", runs, err)
	}
	lease := store.Lease{RunID: res.Run.ID, Generation: runs[0].LeaseGeneration}
	now := store.Truncate(time.Now())
	if ok, err := h.Store.SaveStep(Ctx(t), lease, &store.Step{ID: "step-1", RunID: res.Run.ID, Name: name, Status: store.StepCompleted,
		Output: []byte(`"recorded"`), StartedAt: now, CompletedAt: now, Attempt: 1}); !ok || err != nil {
		t.Fatalf("save step: %v %v", ok, err)
	}
	if ok, err := h.Store.ReleaseLease(Ctx(t), lease, now); !ok || err != nil {
		t.Fatalf("release: %v %v", ok, err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	run, err := e.WaitForRun(Ctx(t), res.Run.ID)
	if run == nil {
		t.Fatalf("wait: %v", err)
	}
	if string(run.Output) != `"recorded"` || calls.Get(name) != 0 {
		t.Fatalf("run %s, output %s, error %.100q (%v), %d calls; want the recorded step replayed", run.Status, run.Output, run.Error, err, calls.Get(name))
	}
}

func jobNameLimit(t *testing.T, h *Harness) {
	e := h.Engine(nil)
	rng := newRand(t)
	name := IncompressibleText(rng, durably.MaxJobNameBytes)
	j, err := durably.Register(e, EchoJob(name))
	if err != nil {
		t.Fatalf("a job name of %d bytes: %v", len(name), err)
	}
	res := mustTriggerRes(t, j, Msg{"m"})
	if runs, err := e.ListRuns(Ctx(t), durably.RunFilter{JobNames: []string{name}}); err != nil || len(runs) != 1 || runs[0].ID != res.Run.ID {
		t.Fatalf("runs of the job listed by its name: %v (%v)", runs, err)
	}
	for _, long := range []string{IncompressibleText(rng, durably.MaxJobNameBytes+1), IncompressibleText(rng, 100_000)} {
		if _, err := durably.Register(e, EchoJob(long)); !errors.Is(err, durably.ErrValidation) || !strings.Contains(err.Error(), "job name") {
			t.Fatalf("Register with a name of %d bytes: %v; want a validation error naming the job name", len(long), err)
		}
		if e.HasJob(long) {
			t.Fatalf("a job of %d bytes registered", len(long))
		}
		// No run can have such a job name; a list asking for one is bad
		// input, as a job name no store can hold is.
		if _, err := e.ListRuns(Ctx(t), durably.RunFilter{JobNames: []string{long}}); !errors.Is(err, durably.ErrValidation) || !strings.Contains(err.Error(), "jobName") {
			t.Fatalf("ListRuns by a job name of %d bytes: %v; want a validation error naming jobName", len(long), err)
		}
	}
}

func workerIDLimit(t *testing.T, h *Harness) {
	rng := newRand(t)
	if _, err := durably.New(durably.Config{Store: h.Store, WorkerID: IncompressibleText(rng, durably.MaxWorkerIDBytes+1)}); !errors.Is(err, durably.ErrValidation) || !strings.Contains(err.Error(), "WorkerID") {
		t.Fatalf("New with a worker id of %d bytes: %v; want a validation error naming WorkerID", durably.MaxWorkerIDBytes+1, err)
	}
	id := IncompressibleText(rng, durably.MaxWorkerIDBytes)
	e := h.Engine(func(c *durably.Config) { c.WorkerID = id })
	owners := make(chan string, 2)
	j := durably.MustRegister(e, &durably.Job[Msg, Msg]{Name: "owned", Run: func(ctx context.Context, s *durably.StepContext, in Msg) (Msg, error) {
		run, err := e.GetRun(ctx, s.RunID())
		if err != nil {
			return Msg{}, err
		}
		owners <- run.LeaseOwner
		return in, nil
	}})
	mustTriggerRes(t, j, Msg{"a"})
	if _, err := e.ProcessOne(Ctx(t), IncompressibleText(rng, durably.MaxWorkerIDBytes+1)); !errors.Is(err, durably.ErrValidation) || !strings.Contains(err.Error(), "workerID") {
		t.Fatalf("ProcessOne with a worker id of %d bytes: %v; want a validation error naming workerID", durably.MaxWorkerIDBytes+1, err)
	}
	if runs, _ := e.ListRuns(Ctx(t), durably.RunFilter{Statuses: []durably.Status{durably.StatusPending}}); len(runs) != 1 {
		t.Fatalf("%d pending runs after a refused ProcessOne, want the run untouched", len(runs))
	}
	other := IncompressibleText(rng, durably.MaxWorkerIDBytes)
	if ok, err := e.ProcessOne(Ctx(t), other); !ok || err != nil {
		t.Fatalf("ProcessOne with a worker id of %d bytes: %v %v", len(other), ok, err)
	}
	mustTriggerRes(t, j, Msg{"b"})
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{other, id} {
		if got := <-owners; got != want {
			t.Fatalf("lease owner %q, want the worker id %q", got, want)
		}
	}
}

func scheduleNameLimit(t *testing.T, h *Harness) {
	now := time.Date(2026, 5, 4, 10, 0, 30, 0, time.UTC)
	e := h.Engine(func(c *durably.Config) { c.Now = func() time.Time { return now } })
	j := durably.MustRegister(e, EchoJob("scheduled"))
	rng := newRand(t)
	long := IncompressibleText(rng, durably.MaxScheduleNameBytes+1)
	err := durably.AddSchedule(j, durably.Schedule[Msg]{Name: long, Cron: "* * * * *", Input: Msg{"m"}})
	if !errors.Is(err, durably.ErrValidation) || !strings.Contains(err.Error(), "schedule name") {
		t.Fatalf("AddSchedule with a name of %d bytes: %v; want a validation error naming the schedule name", len(long), err)
	}
	err = durably.AddSchedule(j, durably.Schedule[Msg]{Name: "labelled", Cron: "* * * * *", Input: Msg{"m"},
		Labels: map[string]string{"env": IncompressibleText(rng, durably.MaxLabelValueBytes+1)}})
	if !errors.Is(err, durably.ErrValidation) || !strings.Contains(err.Error(), "labels.env") {
		t.Fatalf("AddSchedule with a label of %d bytes: %v; want a validation error naming labels.env", durably.MaxLabelValueBytes+1, err)
	}
	name := IncompressibleText(rng, durably.MaxScheduleNameBytes)
	if err := durably.AddSchedule(j, durably.Schedule[Msg]{Name: name, Cron: "* * * * *", Input: Msg{"m"}, CatchUp: time.Hour}); err != nil {
		t.Fatalf("AddSchedule with a name of %d bytes: %v", len(name), err)
	}
	if err := e.FireDueSchedules(Ctx(t)); err != nil {
		t.Fatal(err)
	}
	runs, err := e.ListRuns(Ctx(t), durably.RunFilter{})
	want := "schedule:" + name + ":2026-05-04T10:00:00Z"
	if err != nil || len(runs) != 1 || runs[0].IdempotencyKey != want {
		t.Fatalf("runs after the tick: %v (%v); want one, keyed %q", runs, err, want)
	}
}

// maximalRun triggers and runs a run with every indexed string at its
// limit, of random characters that no store can compress: the widest
// entries of every index. A store that passes holds anything the engine
// accepts.
func maximalRun(t *testing.T, h *Harness) {
	rng := newRand(t)
	tenants := []string{keyText(rng, durably.MaxLabelKeyBytes), keyText(rng, durably.MaxLabelKeyBytes), keyText(rng, durably.MaxLabelKeyBytes)}
	e := h.Engine(func(c *durably.Config) {
		c.TenantLabels = tenants
		c.PreserveSteps = true
		c.WorkerID = IncompressibleText(rng, durably.MaxWorkerIDBytes)
	})
	stepName := IncompressibleText(rng, durably.MaxStepNameBytes)
	j := durably.MustRegister(e, &durably.Job[Msg, Msg]{Name: IncompressibleText(rng, durably.MaxJobNameBytes),
		Run: func(ctx context.Context, s *durably.StepContext, in Msg) (Msg, error) {
			return durably.RunStep(s, stepName, func(ctx context.Context) (Msg, error) {
				s.Logger().Info("in the longest step")
				return in, nil
			})
		}})
	labels := maximalLabels(t, rng, tenants)
	idem, conc := IncompressibleText(rng, durably.MaxKeyBytes), IncompressibleText(rng, durably.MaxKeyBytes)
	opts := []durably.Option{durably.WithLabels(labels), durably.WithIdempotencyKey(idem), durably.WithConcurrencyKey(conc)}
	first := mustTriggerRes(t, j, Msg{"m"}, opts...)
	if again := mustTriggerRes(t, j, Msg{"m"}, opts...); again.Disposition != durably.Idempotent || again.Run.ID != first.Run.ID {
		t.Fatalf("the same trigger again: %s %s, want the first run", again.Run.ID, again.Disposition)
	}
	coalesced := mustTriggerRes(t, j, Msg{"m"}, durably.WithLabels(labels), durably.WithConcurrencyKey(conc), durably.WithCoalesceSkip())
	if coalesced.Disposition != durably.Coalesced || coalesced.Run.ID != first.Run.ID {
		t.Fatalf("coalesced onto the pending run: %s %s, want the first run", coalesced.Run.ID, coalesced.Disposition)
	}
	filter := map[string]string{tenants[0]: labels[tenants[0]]}
	if runs, err := e.ListRuns(Ctx(t), durably.RunFilter{JobNames: []string{j.Name()}, Labels: filter}); err != nil || len(runs) != 1 {
		t.Fatalf("listed by its job name and a label: %d runs (%v)", len(runs), err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.WaitForRun(Ctx(t), first.Run.ID); err != nil {
		t.Fatal(err)
	}
	steps, err := e.GetSteps(Ctx(t), first.Run.ID)
	if err != nil || len(steps) != 1 || steps[0].Name != stepName {
		t.Fatalf("steps %v (%v), want the one with the longest name", steps, err)
	}
	logs, err := e.GetLogs(Ctx(t), first.Run.ID)
	if err != nil || len(logs) != 1 || logs[0].StepName != stepName {
		t.Fatalf("logs %v (%v), want one attributed to the longest step", logs, err)
	}
}

// maximalLabels is labels at their limits: the tenant labels make a key
// scope of exactly MaxKeyScopeBytes of random characters, and other labels
// have the longest keys and values.
func maximalLabels(t *testing.T, rng *rand.Rand, tenants []string) map[string]string {
	t.Helper()
	labels := map[string]string{}
	for range 8 {
		labels[keyText(rng, durably.MaxLabelKeyBytes)] = IncompressibleText(rng, durably.MaxLabelValueBytes)
	}
	pairs := make([][2]string, len(tenants))
	for i, k := range tenants {
		pairs[i] = [2]string{k, ""}
	}
	b, _ := json.Marshal(pairs)
	rest := durably.MaxKeyScopeBytes - len(b)
	for i, k := range tenants {
		n := min(rest, durably.MaxLabelValueBytes)
		labels[k], rest = IncompressibleText(rng, n), rest-n
		pairs[i][1] = labels[k]
	}
	if b, _ := json.Marshal(pairs); rest != 0 || len(b) != durably.MaxKeyScopeBytes {
		t.Fatalf("tenant labels make a key scope of %d bytes, want %d", len(b), durably.MaxKeyScopeBytes)
	}
	return labels
}

func messageLimits(t *testing.T, h *Harness) {
	e := h.Engine(func(c *durably.Config) { c.PreserveSteps = true })
	j := durably.MustRegister(e, &durably.Job[string, int]{Name: "loud", Run: func(ctx context.Context, s *durably.StepContext, msg string) (int, error) {
		s.Logger().Info(msg)
		s.Progress(1, 2, msg)
		return durably.RunStep(s, "fail", func(ctx context.Context) (int, error) { return 0, errors.New(msg) })
	}})
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	huge := "a\x00b\xffc" + strings.Repeat("é", durably.MaxMessageBytes)
	for _, c := range []struct {
		msg, want string // want: the stored message, or its beginning when cut
		cut       bool
	}{
		{"a\x00b\xffc", "a\uFFFDb\uFFFDc", false},
		{huge, "a\uFFFDb\uFFFDc" + strings.Repeat("é", 1000), true},
	} {
		res := mustTriggerRes(t, j, c.msg)
		run, err := e.WaitForRun(Ctx(t), res.Run.ID)
		if run == nil {
			t.Fatalf("wait: %v", err)
		}
		steps, _ := e.GetSteps(Ctx(t), run.ID)
		logs, _ := e.GetLogs(Ctx(t), run.ID)
		if len(steps) != 1 || len(logs) != 1 || run.Progress == nil || run.Progress.Message == nil {
			t.Fatalf("run %s: %d steps, %d logs, progress %v; want each stored", run.Status, len(steps), len(logs), run.Progress)
		}
		for what, got := range map[string]string{"run error": run.Error, "step error": steps[0].Error,
			"log message": logs[0].Message, "progress message": *run.Progress.Message} {
			ok := got == c.want
			if c.cut {
				ok = strings.HasPrefix(got, c.want) && strings.Contains(got, "cut") && len(got) <= durably.MaxMessageBytes &&
					len(got) > durably.MaxMessageBytes-100
			}
			if !ok || !utf8.ValidString(got) || strings.ContainsRune(got, 0) {
				t.Errorf("%s of %d bytes stored as %d bytes %.40q…; want it valid, %s", what, len(c.msg), len(got), got,
					map[bool]string{false: "NUL and bad bytes replaced", true: "cut and marked"}[c.cut])
			}
		}
	}
}

func jsonLimits(t *testing.T, h *Harness) {
	e := h.Engine(nil)
	// A string input or output of n characters is n+2 bytes of JSON.
	j := durably.MustRegister(e, &durably.Job[string, string]{Name: "big", Run: func(ctx context.Context, s *durably.StepContext, in string) (string, error) {
		if in == "step" {
			return durably.RunStep(s, "big-result", func(ctx context.Context) (string, error) {
				return strings.Repeat("r", durably.MaxJSONBytes-1), nil
			})
		}
		return strings.Repeat("o", durably.MaxJSONBytes-1), nil
	}})
	// The runs of large inputs wait far in the future: the worker started
	// below leaves them alone (running one would rewrite a large row).
	later := durably.WithDelay(24 * time.Hour)
	at := strings.Repeat("i", durably.MaxJSONBytes-2)
	res := mustTriggerRes(t, j, at, later)
	if run, err := e.GetRun(Ctx(t), res.Run.ID); err != nil || len(run.Input) != durably.MaxJSONBytes {
		t.Fatalf("an input of %d bytes read back as %d (%v)", durably.MaxJSONBytes, len(run.Input), err)
	}
	// Refused triggers are labelled, so that finding none of them reads
	// none of the large inputs stored.
	refused := map[string]string{"try": "refused"} // as long as "allowed"
	if _, err := j.Trigger(Ctx(t), at+"i", durably.WithLabels(refused)); !errors.Is(err, durably.ErrValidation) || !strings.Contains(err.Error(), "input") {
		t.Fatalf("an input of %d bytes: %v; want a validation error naming input", durably.MaxJSONBytes+1, err)
	}
	raw := json.RawMessage(`"` + at + `i"`)
	if _, err := e.TriggerRaw(Ctx(t), durably.TriggerRequest{JobName: "big", Input: raw, Labels: refused}); !errors.Is(err, durably.ErrValidation) {
		t.Fatalf("a raw input of %d bytes: %v; want a validation error", len(raw), err)
	}
	checkBatchLimit(t, e, j, refused)
	if runs, err := e.ListRuns(Ctx(t), durably.RunFilter{Labels: refused}); err != nil || len(runs) != 0 {
		t.Fatalf("%d runs written by refused triggers (%v)", len(runs), err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{"output": "Invalid output: output must be at most", "step": `step "big-result": result must be at most`} {
		if _, err := j.TriggerAndWait(Ctx(t), in); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("a job making a %s of %d bytes: %v; want the run failed with %q", in, durably.MaxJSONBytes+1, err, want)
		}
	}
}

// checkBatchLimit triggers a batch of exactly MaxBatchBytes, then one of a
// byte more, labelled refused, which must be refused.
func checkBatchLimit(t *testing.T, e *durably.Engine, j *durably.JobHandle[string, string], refused map[string]string) {
	t.Helper()
	const items = 5 // each input within MaxJSONBytes
	accepted := map[string]string{"try": "allowed"}
	if len(accepted["try"]) != len(refused["try"]) {
		t.Fatal("the two batches must differ only by their last byte")
	}
	inputs := make([]string, items)
	rest := durably.MaxBatchBytes - items*(len(j.Name())+len("try")+len(accepted["try"])) // of JSON, two quotes per input
	for i := range inputs {
		n := rest / (items - i)
		inputs[i], rest = strings.Repeat("b", n-2), rest-n
	}
	batch := func(labels map[string]string) []durably.BatchItem[string] {
		out := make([]durably.BatchItem[string], len(inputs))
		for i, in := range inputs {
			out[i] = durably.BatchItem[string]{Input: in, Options: []durably.Option{durably.WithDelay(24 * time.Hour), durably.WithLabels(labels)}}
		}
		return out
	}
	if _, err := j.BatchTrigger(Ctx(t), batch(accepted)); err != nil {
		t.Fatalf("a batch of %d bytes: %v", durably.MaxBatchBytes, err)
	}
	inputs[items-1] += "b"
	if _, err := j.BatchTrigger(Ctx(t), batch(refused)); !errors.Is(err, durably.ErrValidation) || !strings.Contains(err.Error(), "batch") {
		t.Fatalf("a batch of %d bytes: %v; want a validation error", durably.MaxBatchBytes+1, err)
	}
}

func lookupLimits(t *testing.T, h *Harness) {
	e := h.Engine(nil)
	j := durably.MustRegister(e, EchoJob("found"))
	mustTriggerRes(t, j, Msg{"m"}, durably.WithLabels(map[string]string{"env": "prod"}))
	rng := newRand(t)
	for _, n := range []int{3000, 100_000} {
		id := IncompressibleText(rng, n)
		if run, err := e.GetRun(Ctx(t), id); run != nil || err != nil {
			t.Fatalf("GetRun of %d bytes: %v %v; want no run", n, run, err)
		}
		if steps, err := e.GetSteps(Ctx(t), id); len(steps) != 0 || err != nil {
			t.Fatalf("GetSteps of %d bytes: %v %v; want none", n, steps, err)
		}
		if logs, err := e.GetLogs(Ctx(t), id); len(logs) != 0 || err != nil {
			t.Fatalf("GetLogs of %d bytes: %v %v; want none", n, logs, err)
		}
		for op, err := range map[string]error{"Cancel": e.Cancel(Ctx(t), id), "DeleteRun": e.DeleteRun(Ctx(t), id),
			"Retrigger": retrigger(e, id), "WaitForRun": waitErr(e.WaitForRun(Ctx(t), id))} {
			if !errors.Is(err, durably.ErrNotFound) {
				t.Fatalf("%s of %d bytes: %v; want not found", op, n, err)
			}
		}
	}
	for field, f := range map[string]durably.RunFilter{
		"labels.env": {Labels: map[string]string{"env": IncompressibleText(rng, durably.MaxLabelValueBytes+1)}},
		"label key":  {Labels: map[string]string{keyText(rng, durably.MaxLabelKeyBytes+1): "prod"}},
		"jobName":    {JobNames: []string{"found", IncompressibleText(rng, durably.MaxJobNameBytes+1)}},
	} {
		if _, err := e.ListRuns(Ctx(t), f); !errors.Is(err, durably.ErrValidation) || !strings.Contains(err.Error(), field) {
			t.Fatalf("ListRuns with a %s past its limit: %v; want a validation error naming it", field, err)
		}
	}
	if runs, err := e.ListRuns(Ctx(t), durably.RunFilter{Labels: map[string]string{"env": "prod"}}); err != nil || len(runs) != 1 {
		t.Fatalf("ListRuns by env=prod: %d runs (%v)", len(runs), err)
	}
}

func waitErr(_ *durably.Run, err error) error { return err }
