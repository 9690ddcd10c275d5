package storetest

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably"
)

// fakeClock is a Config.Now shared by several engines, moved by the test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// scheduledKeys lists the idempotency keys of a job's runs, sorted, and
// fails if two runs share one.
func scheduledKeys(t *testing.T, e *durably.Engine, job string) []string {
	t.Helper()
	runs, err := e.ListRuns(Ctx(t), durably.RunFilter{JobNames: []string{job}})
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(runs))
	for _, r := range runs {
		keys = append(keys, r.IdempotencyKey)
	}
	slices.Sort(keys)
	if c := slices.Compact(slices.Clone(keys)); len(c) != len(keys) {
		t.Fatalf("two runs share a tick: %q", keys)
	}
	return keys
}

// fireAll calls FireDueSchedules on every engine at once.
func fireAll(t *testing.T, engines []*durably.Engine) {
	t.Helper()
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, len(engines))
	for i, e := range engines {
		wg.Go(func() {
			<-start
			errs[i] = e.FireDueSchedules(Ctx(t))
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("engine %d: FireDueSchedules: %v", i, err)
		}
	}
}

func addSchedule(t *testing.T, e *durably.Engine, job *durably.Job[Msg, Msg], s durably.Schedule[Msg]) {
	t.Helper()
	if s.Input.Message == "" {
		s.Input = Msg{"tick"}
	}
	if err := durably.AddSchedule(durably.MustRegister(e, job), s); err != nil {
		t.Fatalf("AddSchedule: %v", err)
	}
}

var scheduleCases = []Case{
	{"issue14 schedule: four processes firing the same ticks at once make one run per tick", func(t *testing.T, h *Harness) {
		clock := newFakeClock(mustTime(t, "2026-05-04T10:00:30Z"))
		job := EchoJob("cron-race")
		var engines []*durably.Engine
		for range 4 {
			// One store per engine, as separate processes on one database;
			// tenant-scoped keys, so that only the global scope of the
			// tick keys makes the engines agree.
			e := h.EngineOn(h.OpenStore(), func(c *durably.Config) {
				c.Now = clock.Now
				c.TenantLabels = []string{"org"}
			})
			addSchedule(t, e, job, durably.Schedule[Msg]{Name: "race", Cron: "* * * * *",
				Labels: map[string]string{"org": "acme"}})
			engines = append(engines, e)
		}
		var want []string
		for i := range 5 {
			tick := mustTime(t, "2026-05-04T10:00:00Z").Add(time.Duration(i) * time.Minute)
			clock.Set(tick.Add(time.Duration(i) * time.Second)) // a little late, differently each time
			fireAll(t, engines)
			fireAll(t, engines) // again within the same minute: nothing new
			want = append(want, "schedule:race:"+tick.Format(time.RFC3339))
			if got := scheduledKeys(t, engines[0], "cron-race"); !slices.Equal(got, want) {
				t.Fatalf("after tick %s: runs %q, want %q", tick, got, want)
			}
		}
		runs, err := engines[0].ListRuns(Ctx(t), durably.RunFilter{JobNames: []string{"cron-race"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range runs {
			if r.KeyScope != "" || r.Labels["org"] != "acme" {
				t.Fatalf("run %s: key scope %q, labels %v; want the global scope with the schedule's labels", r.ID, r.KeyScope, r.Labels)
			}
		}
		for i, e := range engines {
			if s := e.Schedules(); len(s) != 1 || !s[0].Next.Equal(mustTime(t, "2026-05-04T10:05:00Z")) || s[0].JobName != "cron-race" {
				t.Fatalf("engine %d: Schedules() = %+v", i, s)
			}
		}
	}},
	{"issue14 schedule: started engines on several stores fire each tick once, and the runs complete", func(t *testing.T, h *Harness) {
		job := EchoJob("cron-live")
		var engines []*durably.Engine
		for range 4 {
			e := h.EngineOn(h.OpenStore(), nil)
			addSchedule(t, e, job, durably.Schedule[Msg]{Name: "live", Cron: "@every 2s", CatchUp: -1})
			engines = append(engines, e)
		}
		for _, e := range engines {
			if err := e.Start(); err != nil {
				t.Fatal(err)
			}
		}
		// Two-second ticks leave room for a loaded machine: a tick is only
		// superseded if every scheduler wakes a whole period late.
		Eventually(t, "two ticks", func() bool { return len(scheduledKeys(t, engines[0], "cron-live")) >= 2 })
		for _, e := range engines {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := e.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			cancel()
		}
		keys := scheduledKeys(t, engines[0], "cron-live")
		// Consecutive ticks: none lost between the first and the last.
		first, err := time.Parse(time.RFC3339, keys[0][len("schedule:live:"):])
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range keys {
			if want := "schedule:live:" + first.Add(time.Duration(i)*2*time.Second).Format(time.RFC3339); k != want {
				t.Fatalf("tick %d is %s, want %s (all: %q)", i, k, want, keys)
			}
		}
		if err := engines[0].Start(); err != nil {
			t.Fatal(err)
		}
		Eventually(t, "the scheduled runs complete", func() bool {
			runs, err := engines[0].ListRuns(Ctx(t), durably.RunFilter{JobNames: []string{"cron-live"}, Statuses: []durably.Status{durably.StatusCompleted}})
			return err == nil && len(runs) >= len(keys)
		})
	}},
	{"issue14 schedule: ticks missed while nothing ran fire at most once, the latest, within CatchUp", func(t *testing.T, h *Harness) {
		for _, c := range []struct {
			name    string
			catchUp time.Duration
			start   string   // the engine's first look, minutes after the last tick ran
			want    []string // ticks fired at start
		}{
			{"no bound: the latest missed tick only", 0, "2026-05-04T10:05:30Z", []string{"2026-05-04T10:05:00Z"}},
			{"within the bound", time.Minute, "2026-05-04T10:05:30Z", []string{"2026-05-04T10:05:00Z"}},
			{"beyond the bound", 10 * time.Second, "2026-05-04T10:05:30Z", nil},
			{"never", -1, "2026-05-04T10:05:30Z", nil},
		} {
			t.Run(c.name, func(t *testing.T) {
				clock := newFakeClock(mustTime(t, c.start))
				name := "missed-" + c.name
				job := EchoJob(name)
				// A restart: a new engine (a new process) on the same store.
				e := h.EngineOn(h.OpenStore(), func(cfg *durably.Config) { cfg.Now = clock.Now })
				addSchedule(t, e, job, durably.Schedule[Msg]{Name: name, Cron: "* * * * *", CatchUp: c.catchUp})
				if err := e.FireDueSchedules(Ctx(t)); err != nil {
					t.Fatal(err)
				}
				var want []string
				for _, tick := range c.want {
					want = append(want, "schedule:"+name+":"+tick)
				}
				if got := scheduledKeys(t, e, name); !slices.Equal(got, want) {
					t.Fatalf("at start: runs %q, want %q", got, want)
				}
				// Running, the engine misses ten minutes (a pause, an
				// outage): only the latest of those ticks fires.
				clock.Set(mustTime(t, "2026-05-04T10:15:59Z"))
				if err := e.FireDueSchedules(Ctx(t)); err != nil {
					t.Fatal(err)
				}
				want = append(want, "schedule:"+name+":2026-05-04T10:15:00Z")
				if got := scheduledKeys(t, e, name); !slices.Equal(got, want) {
					t.Fatalf("after a pause: runs %q, want %q", got, want)
				}
			})
		}
	}},
	{"issue14 schedule: 03:00 Europe/Paris fires at 02:00 UTC in winter and 01:00 UTC after the DST change", func(t *testing.T, h *Harness) {
		clock := newFakeClock(mustTime(t, "2026-03-27T12:00:00Z"))
		e := h.Engine(func(c *durably.Config) { c.Now = clock.Now })
		addSchedule(t, e, EchoJob("cron-tz"), durably.Schedule[Msg]{Name: "tz", Cron: "0 3 * * *", TimeZone: "Europe/Paris", CatchUp: -1})
		if err := e.FireDueSchedules(Ctx(t)); err != nil {
			t.Fatal(err)
		}
		if s := e.Schedules(); !s[0].Next.Equal(mustTime(t, "2026-03-28T02:00:00Z")) || s[0].TimeZone != "Europe/Paris" {
			t.Fatalf("Schedules() = %+v, want next 2026-03-28T02:00:00Z", s)
		}
		var want []string
		for _, now := range []string{"2026-03-28T01:59:59Z", "2026-03-28T02:00:00Z", "2026-03-29T00:59:59Z", "2026-03-29T01:00:00Z"} {
			clock.Set(mustTime(t, now))
			if err := e.FireDueSchedules(Ctx(t)); err != nil {
				t.Fatal(err)
			}
		}
		want = []string{"schedule:tz:2026-03-28T02:00:00Z", "schedule:tz:2026-03-29T01:00:00Z"}
		if got := scheduledKeys(t, e, "cron-tz"); !slices.Equal(got, want) {
			t.Fatalf("runs %q, want %q", got, want)
		}
	}},
}
