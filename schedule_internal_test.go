package durably

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durably-go/durably/runtime/sqlitestore"
)

func mustParseTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v.UTC()
}

// TestScheduleTicks checks next and prev of the tick sources, including a
// yearly spec (prev's widest window), the epoch alignment of @every and
// both daylight-saving changes.
func TestScheduleTicks(t *testing.T) {
	for _, c := range []struct {
		name, spec, zone string
		at               string
		prev, next       string
	}{
		{"minutely", "* * * * *", "", "2026-05-04T10:00:30Z", "2026-05-04T10:00:00Z", "2026-05-04T10:01:00Z"},
		{"on a tick", "*/5 * * * *", "", "2026-05-04T10:05:00Z", "2026-05-04T10:05:00Z", "2026-05-04T10:10:00Z"},
		{"hourly descriptor", "@hourly", "", "2026-05-04T10:59:59Z", "2026-05-04T10:00:00Z", "2026-05-04T11:00:00Z"},
		{"yearly", "0 0 1 1 *", "", "2026-12-31T23:00:00Z", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"yearly in a zone", "@yearly", "Asia/Tokyo", "2026-06-01T00:00:00Z", "2025-12-31T15:00:00Z", "2026-12-31T15:00:00Z"},
		{"every minute of the first of the month", "* * 1 * *", "", "2026-05-15T00:00:00Z", "2026-05-01T23:59:00Z", "2026-06-01T00:00:00Z"},
		{"every 90s, on the epoch's multiples", "@every 90s", "Europe/Paris", "1970-01-01T00:04:00Z", "1970-01-01T00:03:00Z", "1970-01-01T00:04:30Z"},
		{"every day, whenever asked", "@every 24h", "", "2026-05-04T10:00:00Z", "2026-05-04T00:00:00Z", "2026-05-05T00:00:00Z"},
		{"Paris winter", "0 3 * * *", "Europe/Paris", "2026-03-28T12:00:00Z", "2026-03-28T02:00:00Z", "2026-03-29T01:00:00Z"},
		{"spring forward: 02:30 does not exist on 29 March", "30 2 * * *", "Europe/Paris", "2026-03-29T12:00:00Z", "2026-03-28T01:30:00Z", "2026-03-30T00:30:00Z"},
		{"fall back: 02:30 happens twice on 25 October, fires at the first", "30 2 * * *", "Europe/Paris", "2026-10-25T01:00:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"},
		{"fall back: hourly fires at both 02:00s", "0 * * * *", "Europe/Paris", "2026-10-25T00:30:00Z", "2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ticks, err := parseSchedule(c.spec, c.zone)
			if err != nil {
				t.Fatal(err)
			}
			at := mustParseTime(t, c.at)
			if got, want := ticks.prev(at), mustParseTime(t, c.prev); !got.Equal(want) {
				t.Errorf("prev(%s) = %s, want %s", c.at, got, want)
			}
			if got, want := ticks.next(at), mustParseTime(t, c.next); !got.Equal(want) {
				t.Errorf("next(%s) = %s, want %s", c.at, got, want)
			}
		})
	}
}

type schedInput struct {
	N int `json:"n"`
}

func scheduleTestEngine(t *testing.T, cfg Config) (*Engine, *JobHandle[schedInput, int]) {
	t.Helper()
	st, err := sqlitestore.Open(filepath.Join(t.TempDir(), "s.db"), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg.Store = st
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := MustRegister(e, &Job[schedInput, int]{
		Name: "sched",
		Run:  func(ctx context.Context, s *StepContext, in schedInput) (int, error) { return in.N, nil },
		ValidateInput: func(in *schedInput) error {
			if in.N < 0 {
				return fmt.Errorf("n: must not be negative")
			}
			return nil
		},
	})
	return e, h
}

// TestAddScheduleErrors: every refusal is a validation error that names
// the schedule and the offending part, and leaves nothing registered.
func TestAddScheduleErrors(t *testing.T) {
	e, h := scheduleTestEngine(t, Config{Labels: LabelSchemaFunc(func(l map[string]string) (map[string]string, error) {
		if l["env"] == "" {
			return nil, fmt.Errorf("env: required")
		}
		return l, nil
	})})
	ok := Schedule[schedInput]{Name: "nightly", Cron: "0 3 * * *", Labels: map[string]string{"env": "prod"}}
	if err := AddSchedule(h, ok); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		edit func(*Schedule[schedInput])
		want string
	}{
		{"no name", func(s *Schedule[schedInput]) { s.Name = "" }, "a schedule needs a name"},
		{"taken name", func(s *Schedule[schedInput]) { s.Name = "nightly" }, `schedule "nightly" is already registered`},
		{"bad spec", func(s *Schedule[schedInput]) { s.Cron = "61 * * * *" }, `schedule "x": cron "61 * * * *": `},
		{"seconds field", func(s *Schedule[schedInput]) { s.Cron = "0 0 3 * * *" }, `schedule "x": cron "0 0 3 * * *": `},
		{"empty spec", func(s *Schedule[schedInput]) { s.Cron = "" }, `schedule "x": cron "": `},
		{"never fires", func(s *Schedule[schedInput]) { s.Cron = "0 0 31 2 *" }, `schedule "x": cron "0 0 31 2 *" never fires`},
		{"never fires in April", func(s *Schedule[schedInput]) { s.Cron = "0 12 31 4 *" }, `schedule "x": cron "0 12 31 4 *" never fires`},
		{"zone in the spec", func(s *Schedule[schedInput]) { s.Cron = "CRON_TZ=Europe/Paris 0 3 * * *" }, `schedule "x": cron "CRON_TZ=Europe/Paris 0 3 * * *": the time zone goes in TimeZone`},
		{"unknown zone", func(s *Schedule[schedInput]) { s.TimeZone = "Europe/Atlantis" }, `schedule "x": time zone "Europe/Atlantis": `},
		{"invalid input", func(s *Schedule[schedInput]) { s.Input.N = -1 }, `schedule "x": Invalid input: n: must not be negative`},
		{"labels refused by the schema", func(s *Schedule[schedInput]) { s.Labels = nil }, `schedule "x": labels: env: required`},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := ok
			s.Name = "x"
			c.edit(&s)
			err := AddSchedule(h, s)
			if err == nil || !errors.Is(err, ErrValidation) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("AddSchedule = %v, want a validation error containing %q", err, c.want)
			}
		})
	}
	if got := e.Schedules(); len(got) != 1 || got[0].Name != "nightly" {
		t.Fatalf("Schedules() = %+v, want only nightly", got)
	}
}

// TestSchedulerStopsWithEngine: Start starts the scheduler goroutine and
// Stop ends it and waits for it, also after a restart.
func TestSchedulerStopsWithEngine(t *testing.T) {
	e, h := scheduleTestEngine(t, Config{PollingInterval: 10 * time.Millisecond})
	if err := AddSchedule(h, Schedule[schedInput]{Name: "s", Cron: "@every 1h"}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Init(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		done := e.sched.done
		if err := e.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		default:
			t.Fatal("the scheduler goroutine outlived Stop")
		}
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestScheduleListenerMayReadSchedules: the trigger of a tick emits
// run:trigger synchronously; a listener that reads Schedules then must not
// deadlock on the scheduler's lock.
func TestScheduleListenerMayReadSchedules(t *testing.T) {
	now := mustParseTime(t, "2026-05-04T10:00:30Z")
	e, h := scheduleTestEngine(t, Config{Now: func() time.Time { return now }})
	if err := e.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := AddSchedule(h, Schedule[schedInput]{Name: "m", Cron: "* * * * *"}); err != nil {
		t.Fatal(err)
	}
	seen := make(chan []ScheduleInfo, 1)
	e.OnEvent(func(ev Event) {
		if ev.Type == EventRunTrigger {
			seen <- e.Schedules()
		}
	})
	done := make(chan error, 1)
	go func() { done <- e.FireDueSchedules(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("FireDueSchedules deadlocked with a listener reading Schedules")
	}
	if s := <-seen; len(s) != 1 || s[0].Name != "m" {
		t.Fatalf("listener saw %+v", s)
	}
	if s := e.Schedules(); !s[0].LastFired.Equal(mustParseTime(t, "2026-05-04T10:00:00Z")) {
		t.Fatalf("LastFired = %s, want 10:00", s[0].LastFired)
	}
}

// TestValidateScheduleSpec: the check tools run before any engine exists
// accepts what AddSchedule accepts and names the part at fault.
func TestValidateScheduleSpec(t *testing.T) {
	for _, c := range []struct{ spec, zone, want string }{
		{"0 3 * * *", "Europe/Paris", ""},
		{"@every 15m", "", ""},
		{"@daily", "America/New_York", ""},
		{"0 3 * *", "", `cron "0 3 * *": `},
		{"@every 1.5x", "", `cron "@every 1.5x": `},
		{"TZ=UTC 0 3 * * *", "", `cron "TZ=UTC 0 3 * * *": the time zone goes in TimeZone`},
		{"0 3 * * *", "Mars/Olympus", `time zone "Mars/Olympus": `},
		{"0 3 * * *", "Local", `time zone "Local": name the zone`},
	} {
		err := ValidateScheduleSpec(c.spec, c.zone)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("ValidateScheduleSpec(%q, %q) = %v, want nil", c.spec, c.zone, err)
		case c.want != "" && (err == nil || !errors.Is(err, ErrValidation) || !strings.HasPrefix(err.Error(), c.want)):
			t.Errorf("ValidateScheduleSpec(%q, %q) = %v, want a validation error starting %q", c.spec, c.zone, err, c.want)
		}
	}
}

// TestRestartAfterPurgeDoesNotRefireTheTick: with RetainRuns set and
// CatchUp at its default, a process that starts after the latest tick's run
// was purged does not fire that tick again (a monthly report ran again on
// every deploy after its run was purged).
func TestRestartAfterPurgeDoesNotRefireTheTick(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	st, err := sqlitestore.Open(filepath.Join(t.TempDir(), "s.db"), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	var runs atomic.Int32
	boot := func() *Engine {
		e, err := New(Config{Store: st, Now: clock, RetainRuns: 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		h := MustRegister(e, &Job[schedInput, int]{Name: "report", Run: func(ctx context.Context, s *StepContext, in schedInput) (int, error) {
			runs.Add(1)
			return 0, nil
		}})
		if err := AddSchedule(h, Schedule[schedInput]{Name: "monthly", Cron: "@monthly"}); err != nil {
			t.Fatal(err)
		}
		return e
	}
	first := boot()
	if err := first.FireDueSchedules(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := first.ProcessUntilIdle(ctx, "", 0); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(72 * time.Hour) // the run is now older than RetainRuns
	mu.Unlock()
	if _, err := first.ProcessUntilIdle(ctx, "", 0); err != nil { // idle maintenance purges it
		t.Fatal(err)
	}
	if got, err := first.ListRuns(ctx, RunFilter{}); err != nil || len(got) != 0 {
		t.Fatalf("%d runs left after the purge (%v): the test needs the tick's run purged", len(got), err)
	}
	restarted := boot() // a deploy
	if err := restarted.FireDueSchedules(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := restarted.ProcessUntilIdle(ctx, "", 0); err != nil {
		t.Fatal(err)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("the 2026-01-01 tick of a monthly schedule ran %d times, want once", n)
	}
}

// TestEveryTakesWholeSecondsOnly: "@every" periods below a second, not
// whole, zero or negative are refused; robfig/cron made each of them one
// second, a run every second from a typo.
func TestEveryTakesWholeSecondsOnly(t *testing.T) {
	for _, c := range []struct {
		spec string
		ok   bool
	}{
		{"@every -1h", false}, {"@every 0s", false}, {"@every 1ms", false}, {"@every 1500ms", false}, {"@every x", false},
		{"@every 1s", true}, {"@every 90s", true}, {"@every 1h30m", true},
	} {
		_, err := parseSchedule(c.spec, "")
		if (err == nil) != c.ok {
			t.Errorf("%q: err %v, want accepted %v", c.spec, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrValidation) {
			t.Errorf("%q: %v is not a validation error", c.spec, err)
		}
	}
}

// TestTimesPastYear9999AreRefused: a run-at or a sleep's wake time past
// year 9999 is refused. Stored as text it sorted before every time: the
// run was leased at once, failed to be read back, and every later claim
// failed with it, an ordinary run beside it included.
func TestTimesPastYear9999AreRefused(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e, h := scheduleTestEngine(t, Config{Now: func() time.Time { return now }})
	ctx := context.Background()
	if err := e.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	far := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := h.Trigger(ctx, schedInput{N: 1}, WithRunAt(far)); !errors.Is(err, ErrValidation) || !strings.Contains(err.Error(), "runAt") {
		t.Fatalf("trigger with a run-at in year 10000: %v, want a validation error naming runAt", err)
	}
	sleeper := MustRegister(e, &Job[schedInput, int]{Name: "sleeper", Run: func(ctx context.Context, s *StepContext, in schedInput) (int, error) {
		return 0, SleepUntil(s, "forever", far)
	}})
	slept, err := sleeper.Trigger(ctx, schedInput{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := h.Trigger(ctx, schedInput{N: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ProcessUntilIdle(ctx, "", 0); err != nil {
		t.Fatal(err)
	}
	if r, err := e.GetRun(ctx, slept.Run.ID); err != nil || r.Status != StatusFailed || !strings.Contains(r.Error, "9999") {
		t.Fatalf("the run sleeping until year 10000: %+v, %v; want failed naming the bound", r, err)
	}
	if r, err := e.GetRun(ctx, other.Run.ID); err != nil || r.Status != StatusCompleted {
		t.Fatalf("the ordinary run beside it: %+v, %v; want completed", r, err)
	}
}
