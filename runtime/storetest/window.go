package storetest

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// Lists in a creation window, pages after a cursor and counts per status
// (issue 21, the dashboard's reads, S-045), checked against a
// model of the filter over random runs and random filters.

// windowRun is what the model knows of a stored run.
type windowRun struct {
	id      string
	job     string
	status  store.Status
	labels  map[string]string
	created time.Time
}

// before reports whether a comes before b in a list newest first.
func (a windowRun) before(b windowRun) bool {
	if c := a.created.Compare(b.created); c != 0 {
		return c > 0
	}
	return a.id > b.id
}

// matches applies the filter as documented on store.RunFilter.
func (a windowRun) matches(f store.RunFilter, counting bool) bool {
	if !counting && len(f.Statuses) > 0 && !slices.Contains(f.Statuses, a.status) {
		return false
	}
	if len(f.JobNames) > 0 && !slices.Contains(f.JobNames, a.job) {
		return false
	}
	for k, v := range f.Labels {
		if got, ok := a.labels[k]; !ok || got != v {
			return false
		}
	}
	if !f.CreatedFrom.IsZero() && a.created.Before(ceilMs(f.CreatedFrom)) {
		return false
	}
	if !f.CreatedTo.IsZero() && !a.created.Before(ceilMs(f.CreatedTo)) {
		return false
	}
	if c := f.After; c != nil && !counting && !(windowRun{id: c.ID, created: c.CreatedAt}).before(a) {
		return false
	}
	return true
}

// ceilMs rounds up to the stored precision: a bound between two
// milliseconds selects as the next one does.
func ceilMs(t time.Time) time.Time {
	if d := store.Truncate(t); d.Before(t) {
		return d.Add(time.Millisecond)
	}
	return store.Truncate(t)
}

// windowFixture triggers n runs of jobs "a" and "b" at random times on a
// fake clock, many in the same millisecond, with random labels, and gives
// some of them a terminal status. It returns the engine and the model.
func windowFixture(t *testing.T, h *Harness, rng *rand.Rand, n int) (*durably.Engine, []windowRun) {
	e, clock := fakeEngine(h, h.Store, nil)
	jobs := map[string]*durably.JobHandle[Msg, Msg]{"a": durably.MustRegister(e, EchoJob("a")), "b": durably.MustRegister(e, EchoJob("b"))}
	ctx := Ctx(t)
	var model []windowRun
	for i := range n {
		// 40 distinct milliseconds (and a few microseconds within them,
		// which the store drops) for n runs: ties on creation time are
		// common, so the ID decides the order.
		clock.Set(delayEpoch.Add(time.Duration(rng.IntN(40))*time.Millisecond + time.Duration(rng.IntN(1000))*time.Microsecond))
		labels := map[string]string{"org": []string{"o1", "o2"}[rng.IntN(2)]}
		if rng.IntN(3) > 0 {
			labels["env"] = []string{"prod", "dev"}[rng.IntN(2)]
		}
		job := []string{"a", "b"}[rng.IntN(2)]
		r := MustTrigger(t, jobs[job], Msg{fmt.Sprint(i)}, durably.WithLabels(labels))
		status := []store.Status{store.StatusPending, store.StatusPending, store.StatusCompleted, store.StatusFailed, store.StatusCancelled}[rng.IntN(5)]
		if status != store.StatusPending {
			if err := PatchRun(ctx, e.Store(), r.ID, store.RunPatch{Status: &status, CompletedAt: ptr(clock.Now())}); err != nil {
				t.Fatal(err)
			}
		}
		model = append(model, windowRun{id: r.ID, job: job, status: status, labels: labels, created: r.CreatedAt})
	}
	slices.SortFunc(model, func(a, b windowRun) int {
		if a.before(b) {
			return -1
		}
		return 1
	})
	return e, model
}

// randomWindowFilter draws a filter over the fixture's runs: bounds at,
// next to or between the runs' creation times (sub-millisecond too),
// cursors at runs or between them, and the other filters at random.
func randomWindowFilter(rng *rand.Rand, model []windowRun) store.RunFilter {
	at := func() time.Time {
		base := model[rng.IntN(len(model))].created
		return base.Add([]time.Duration{0, 0, -time.Millisecond, time.Millisecond, 500 * time.Microsecond, -1500 * time.Microsecond}[rng.IntN(6)])
	}
	var f store.RunFilter
	if rng.IntN(2) == 0 {
		f.CreatedFrom = at()
	}
	if rng.IntN(2) == 0 {
		f.CreatedTo = at()
	}
	if rng.IntN(2) == 0 {
		c := model[rng.IntN(len(model))]
		f.After = &store.RunCursor{CreatedAt: c.created, ID: c.id}
		if rng.IntN(4) == 0 { // a place between runs: the same time, another ID
			f.After.ID = c.id[:len(c.id)-1] + "0"
		}
	}
	switch rng.IntN(4) {
	case 0:
		f.Labels = map[string]string{"org": "o1"}
	case 1:
		f.Labels = map[string]string{"org": "o2", "env": "prod"}
	case 2:
		f.Labels = map[string]string{"env": "dev"}
	}
	if rng.IntN(3) == 0 {
		f.JobNames = []string{"b"}
	}
	if rng.IntN(3) == 0 {
		f.Statuses = []store.Status{store.StatusPending, store.StatusFailed}
	}
	f.Limit = []int{0, 1, 3, 10}[rng.IntN(4)]
	return f
}

func describeFilter(f store.RunFilter) string {
	after := "none"
	if f.After != nil {
		after = store.FormatTime(f.After.CreatedAt) + "/" + f.After.ID
	}
	return fmt.Sprintf("from %s to %s after %s labels %v jobs %v statuses %v limit %d",
		store.FormatTime(f.CreatedFrom), store.FormatTime(f.CreatedTo), after, f.Labels, f.JobNames, f.Statuses, f.Limit)
}

var windowCases = []Case{
	{"R-137 R-138 S-045 a creation window, a cursor and status counts select as the model does over random runs and filters", func(t *testing.T, h *Harness) {
		seed := time.Now().UnixNano()
		t.Logf("seed %d", seed)
		rng := rand.New(rand.NewPCG(uint64(seed), 21))
		e, model := windowFixture(t, h, rng, 60)
		ctx := Ctx(t)
		for range 300 {
			f := randomWindowFilter(rng, model)
			var want []string
			counts := map[store.Status]int{}
			for _, r := range model {
				if r.matches(f, false) && (f.Limit <= 0 || len(want) < f.Limit) {
					want = append(want, r.id)
				}
				if r.matches(f, true) {
					counts[r.status]++
				}
			}
			runs, err := e.ListRuns(ctx, f)
			if err != nil {
				t.Fatalf("%s: %v", describeFilter(f), err)
			}
			got := make([]string, len(runs))
			for i, r := range runs {
				got[i] = r.ID
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%s:\n got %v\nwant %v", describeFilter(f), got, want)
			}
			gotCounts, err := e.CountRuns(ctx, f)
			if err != nil {
				t.Fatalf("count %s: %v", describeFilter(f), err)
			}
			if !maps.Equal(gotCounts, counts) {
				t.Fatalf("count %s:\n got %v\nwant %v", describeFilter(f), gotCounts, counts)
			}
		}
	}},
	{"R-137 S-045 pages after a cursor cover a list once, in order, for every filter", func(t *testing.T, h *Harness) {
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 45))
		e, model := windowFixture(t, h, rng, 40)
		ctx := Ctx(t)
		for _, labels := range []map[string]string{nil, {"org": "o1"}, {"org": "o2", "env": "prod"}} {
			var want []string
			for _, r := range model {
				if r.matches(store.RunFilter{Labels: labels}, false) {
					want = append(want, r.id)
				}
			}
			var got []string
			var after *store.RunCursor
			for page := 0; ; page++ {
				runs, err := e.ListRuns(ctx, store.RunFilter{Labels: labels, Limit: 3, After: after})
				if err != nil {
					t.Fatal(err)
				}
				if len(runs) == 0 || page > len(model) {
					break
				}
				for _, r := range runs {
					got = append(got, r.ID)
				}
				last := runs[len(runs)-1]
				after = &store.RunCursor{CreatedAt: last.CreatedAt, ID: last.ID}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("labels %v: pages gave\n%v\nwant\n%v", labels, got, want)
			}
		}
	}},
	{"R-137 bad windows and cursors are validation errors naming the field", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		ctx := Ctx(t)
		far := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
		for _, c := range []struct {
			f    store.RunFilter
			want string
		}{
			{store.RunFilter{CreatedFrom: far}, "createdFrom must be between years 1 and 9999"},
			{store.RunFilter{CreatedTo: far}, "createdTo must be between years 1 and 9999"},
			{store.RunFilter{After: &store.RunCursor{CreatedAt: far, ID: "x"}}, "after must be a time between years 1 and 9999"},
			{store.RunFilter{After: &store.RunCursor{CreatedAt: delayEpoch, ID: "a\x00b"}}, "after must be valid UTF-8 without NUL characters"},
		} {
			_, err := e.ListRuns(ctx, c.f)
			WantPrefix(t, err, durably.ErrValidation, c.want)
			if c.f.After == nil {
				_, err = e.CountRuns(ctx, c.f)
				WantPrefix(t, err, durably.ErrValidation, c.want)
			}
		}
		// Counting ignores the cursor, as documented: a bad one is no error.
		counts, err := e.CountRuns(ctx, store.RunFilter{After: &store.RunCursor{CreatedAt: far, ID: "x"}})
		if err != nil || len(counts) != 0 {
			t.Fatalf("counts of an empty store with an ignored cursor: %v, %v", counts, err)
		}
	}},
}
