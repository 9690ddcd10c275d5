package durably

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule is a periodic trigger of a job: at each tick of Cron, read in
// TimeZone, the job is triggered with Input and Labels. Register it with
// AddSchedule.
//
// Each tick triggers the job with the idempotency key
// "schedule:<Name>:<tick in RFC 3339, UTC>" in the global key scope
// (WithGlobalKeys), so the store's unique index on idempotency keys makes
// every engine that fires the same tick, in this process or any other on
// the same database, get the same run: exactly one run per tick.
//
// Missed ticks (issue 14, no burst): a scheduler fires only the latest tick
// that is due, never a backlog. A tick that comes due while the engine runs
// fires, late if the database was away or the process paused, unless a
// newer tick is due by then, which fires instead. When an engine starts
// (or a schedule is added to a running engine), the latest tick before
// that moment, missed while nothing ran here, fires at once if it is at
// most CatchUp old; if another process already fired it, that is its run.
type Schedule[I any] struct {
	// Name identifies the schedule in its ticks' idempotency keys; unique
	// per engine, at most MaxScheduleNameBytes of UTF-8. Renaming a schedule makes its next tick a new key, so a
	// tick already run under the old name runs again if it is caught up.
	Name string
	// Cron is a standard five-field spec (minute hour day-of-month month
	// day-of-week, e.g. "0 3 * * *"; with both days restricted, a tick
	// needs either, a step like "*/2" counting as restricted), or a
	// descriptor: @yearly, @annually, @monthly, @weekly, @daily,
	// @midnight, @hourly, or "@every <duration>"
	// (a whole number of seconds, at least 1s), whose ticks are the
	// multiples of the duration since the Unix epoch, so that every
	// process computes the same ticks whenever it started. A TZ= or
	// CRON_TZ= prefix is refused: the zone is TimeZone.
	Cron string
	// TimeZone is the IANA zone the spec is read in, e.g. "Europe/Paris",
	// from the system's zone database (import time/tzdata where there is
	// none). Default UTC; "Local" is refused. Across a daylight-saving change a wall-clock time that
	// does not exist is skipped; one that happens twice fires once, at its
	// first instant, unless the spec runs every hour ("0 * * * *" fires
	// both 02:00s, an hour apart).
	TimeZone string
	// Input is the input of every run, validated at registration as a
	// trigger's is.
	Input I
	// Labels are the labels of every run, validated at registration by
	// Config.Labels as a trigger's are.
	Labels map[string]string
	// CatchUp bounds the age of a missed tick that still fires when an
	// engine starts. Zero means no bound: the latest missed tick always
	// fires, however old (a schedule added for the first time fires its
	// latest past tick at once). A negative value never fires a missed
	// tick: the first tick is the next one. With Config.RetainRuns set, the
	// bound is at most RetainRuns (zero included): a tick whose run may
	// have been purged is not fired again.
	CatchUp time.Duration
}

// ScheduleInfo describes a registered schedule, as Engine.Schedules
// returns it.
type ScheduleInfo struct {
	Name     string `json:"name"`
	JobName  string `json:"jobName"`
	Cron     string `json:"cron"`
	TimeZone string `json:"timeZone"`
	// Next is the next tick after the engine's clock now; zero if the spec
	// has none within five years.
	Next time.Time `json:"next,omitzero"`
	// LastFired is the latest tick this engine triggered (or found already
	// triggered by another process); zero if none yet in this process.
	LastFired time.Time `json:"lastFired,omitzero"`
}

// scheduleSpecParser reads the five standard fields and the descriptors;
// seconds and the optional fields of robfig/cron's other parsers are left
// out. One difference from Vixie cron remains, robfig/cron's: when both
// day-of-month and day-of-week are restricted, a tick needs either, and a
// step like "*/2" counts as restricted ("0 0 */2 * 1" fires on odd days and
// on Mondays, where Vixie cron fires on odd days that are Mondays).
var scheduleSpecParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// tickSource computes a schedule's ticks in its zone.
type tickSource interface {
	// next is the first tick strictly after t, zero if none.
	next(t time.Time) time.Time
	// prev is the latest tick at or before t, zero if none.
	prev(t time.Time) time.Time
}

// cronTicks are the ticks of a cron spec in a zone.
type cronTicks struct {
	spec cron.Schedule
	loc  *time.Location
	// everyHour: the spec's hour field matches all hours, so a wall-clock
	// hour that happens twice is two ticks.
	everyHour bool
}

func (c cronTicks) next(t time.Time) time.Time {
	n := c.spec.Next(t.In(c.loc))
	for !n.IsZero() && c.repeated(n) {
		n = c.spec.Next(n)
	}
	if n.IsZero() {
		return n
	}
	return n.UTC()
}

// repeated reports whether n is the second instant of a wall-clock time
// that happens twice because the zone's clocks went back. robfig/cron
// fires both; like cron(8), a spec that names its hours fires only the
// first, so that "30 2 * * *" runs once on the night of the change.
func (c cronTicks) repeated(n time.Time) bool {
	if c.everyHour {
		return false
	}
	local := n.In(c.loc)
	_, offset := local.Zone()
	// Zones change offset by at most a few hours; one that went back
	// within the last 3 hours had a larger offset then.
	_, before := n.Add(-3 * time.Hour).In(c.loc).Zone()
	if before <= offset {
		return false
	}
	earlier := n.Add(-time.Duration(before-offset) * time.Second).In(c.loc)
	const wall = "2006-01-02T15:04:05"
	return earlier.Format(wall) == local.Format(wall)
}

// prev looks back over growing windows, so that a minutely spec costs a
// step or two and a yearly one still finds its tick; robfig/cron has no
// Prev. Ticks are whole seconds, hence the second's truncation.
func (c cronTicks) prev(t time.Time) time.Time {
	t = t.Truncate(time.Second)
	for _, back := range []time.Duration{time.Minute, time.Hour, 25 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour, 5 * 366 * 24 * time.Hour} {
		tick := c.next(t.Add(-back))
		if tick.IsZero() || tick.After(t) {
			continue
		}
		for {
			n := c.next(tick)
			if n.IsZero() || n.After(t) {
				return tick
			}
			tick = n
		}
	}
	return time.Time{}
}

// everyTicks are the multiples of a period since the Unix epoch.
type everyTicks struct{ period time.Duration }

func (e everyTicks) prev(t time.Time) time.Time {
	p := int64(e.period / time.Second)
	s := t.Unix()
	s -= ((s % p) + p) % p
	return time.Unix(s, 0).UTC()
}

func (e everyTicks) next(t time.Time) time.Time { return e.prev(t).Add(e.period) }

// ValidateScheduleSpec checks a cron spec and a time zone as AddSchedule
// does, for tools that check declarations before any engine exists (the
// generator, on durably.yaml's schedules). The error names the part at
// fault ("cron ..." or "time zone ...").
func ValidateScheduleSpec(spec, timeZone string) error {
	_, err := parseSchedule(spec, timeZone)
	return err
}

// parseSchedule reads a spec and a zone.
func parseSchedule(spec, zone string) (tickSource, error) {
	trimmed := strings.TrimSpace(spec)
	if strings.HasPrefix(trimmed, "TZ=") || strings.HasPrefix(trimmed, "CRON_TZ=") {
		return nil, validationErrorf("cron %q: the time zone goes in TimeZone, not in the spec", spec)
	}
	if zone == "" {
		zone = "UTC"
	}
	if zone == "Local" {
		// Processes in different zones would compute different ticks, and
		// so different keys: two runs for one intended tick.
		return nil, validationErrorf("time zone %q: name the zone (e.g. \"Europe/Paris\"); the machine's local zone may differ between processes", zone)
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return nil, validationErrorf("time zone %q: %v", zone, err)
	}
	if rest, ok := strings.CutPrefix(trimmed, "@every "); ok {
		// robfig/cron rounds a period below a second, or not whole, up to
		// a second, and takes a negative one as one second too: a typo
		// would run every second.
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		if err != nil || d < time.Second || d%time.Second != 0 {
			return nil, validationErrorf("cron %q: @every takes a whole number of seconds, at least 1s", spec)
		}
	}
	parsed, err := scheduleSpecParser.Parse(trimmed)
	if err != nil {
		return nil, validationErrorf("cron %q: %v", spec, err)
	}
	if every, ok := parsed.(cron.ConstantDelaySchedule); ok {
		// robfig/cron counts @every from whenever the process started;
		// aligning on the epoch gives every process the same ticks, which
		// the per-tick key needs.
		return everyTicks{period: every.Delay}, nil
	}
	const allHours = 1<<24 - 1
	fields, ok := parsed.(*cron.SpecSchedule)
	ticks := cronTicks{spec: parsed, loc: loc, everyHour: ok && fields.Hour&allHours == allHours}
	// robfig/cron looks five years ahead for a tick and gives up: a spec
	// without one (31 February) would be a schedule that never runs.
	if ticks.next(time.Now()).IsZero() {
		return nil, validationErrorf("cron %q never fires: no date matches its day-of-month, month and day-of-week fields within five years (is the day past the month's end?)", spec)
	}
	return ticks, nil
}

// tickKey is the idempotency key of a tick: the tick's time is fixed-width
// at the end, so no two (name, tick) pairs share a key.
func tickKey(name string, tick time.Time) string {
	return "schedule:" + name + ":" + tick.UTC().Format(time.RFC3339)
}

// scheduleEntry is a registered schedule with its types erased.
type scheduleEntry struct {
	name     string
	job      string
	spec     string
	zone     string
	ticks    tickSource
	input    json.RawMessage
	labels   map[string]string
	catchUp  time.Duration
	seen     bool      // the scheduler has applied the catch-up rule
	handled  time.Time // latest tick fired or skipped on purpose
	lastFire time.Time // latest tick fired
}

// scheduler fires the engine's schedules (issue 14 item 3). Its goroutine
// runs between Start and Stop; FireDueSchedules does its work on demand.
type scheduler struct {
	fireMu    sync.Mutex // serialises firing
	mu        sync.Mutex // guards the fields below and the entries' state
	schedules []*scheduleEntry
	running   bool
	stop      context.CancelFunc
	done      chan struct{}
	wake      chan struct{} // a schedule was added
}

// AddSchedule registers a periodic trigger of h's job. The spec, the zone,
// the input and the labels are checked now; an error names the schedule.
// Schedules may be added while the engine runs. Ticks fire only while the
// engine is started (Start or Init), or when FireDueSchedules is called.
func AddSchedule[I, O any, L Labels[L]](h *TypedJob[I, O, L], s Schedule[I]) error {
	e := h.e
	if s.Name == "" {
		return validationErrorf("durably: a schedule needs a name")
	}
	if err := checkText("schedule name", s.Name, MaxScheduleNameBytes); err != nil {
		return fmt.Errorf("durably: schedule %q: %w", abbrev(s.Name), err)
	}
	ticks, err := parseSchedule(s.Cron, s.TimeZone)
	if err != nil {
		return fmt.Errorf("durably: schedule %q: %w", s.Name, err)
	}
	input, err := h.job.encodeInput(s.Input)
	if err != nil {
		return fmt.Errorf("durably: schedule %q: %w", s.Name, err)
	}
	labels, _, err := e.validateTriggerOptions(triggerOptions{labels: maps.Clone(s.Labels), globalKeys: true})
	if err != nil {
		return fmt.Errorf("durably: schedule %q: %w", s.Name, err)
	}
	zone := s.TimeZone
	if zone == "" {
		zone = "UTC"
	}
	catchUp := s.CatchUp
	if r := e.cfg.RetainRuns; r > 0 && (catchUp == 0 || catchUp > r) {
		// A tick's run ends after the tick, so it is still kept while the
		// tick is at most RetainRuns old: its idempotency key then stops
		// a second run, and an older tick must not fire at all.
		catchUp = r
	}
	entry := &scheduleEntry{name: s.Name, job: h.job.Name, spec: s.Cron, zone: zone, ticks: ticks,
		input: input, labels: labels, catchUp: catchUp}
	sc := &e.sched
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for _, x := range sc.schedules {
		if x.name == s.Name {
			return validationErrorf("durably: schedule %q is already registered", s.Name)
		}
	}
	sc.schedules = append(sc.schedules, entry)
	if sc.wake != nil {
		signal(sc.wake)
	}
	return nil
}

// Schedules lists the registered schedules by name, with their next tick
// on the engine's clock.
func (e *Engine) Schedules() []ScheduleInfo {
	sc := &e.sched
	sc.mu.Lock()
	defer sc.mu.Unlock()
	now := e.cfg.Now()
	out := make([]ScheduleInfo, 0, len(sc.schedules))
	for _, s := range sc.schedules {
		out = append(out, ScheduleInfo{Name: s.name, JobName: s.job, Cron: s.spec, TimeZone: s.zone,
			Next: s.ticks.next(now), LastFired: s.lastFire})
	}
	slices.SortFunc(out, func(a, b ScheduleInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// FireDueSchedules fires, now on the engine's clock (Config.Now), the ticks
// that are due, with the policy of Schedule; the error joins those of the
// ticks that could not fire, which stay due.
// The engine's scheduler does this by itself while the engine runs; call
// it to drive schedules from a fake clock in tests, or from an external
// timer when no engine stays up between ticks (then CatchUp's rule applies
// to each schedule's first call).
func (e *Engine) FireDueSchedules(ctx context.Context) error {
	_, err := e.fireDue(ctx)
	return err
}

// fireDue fires what is due and returns the next tick of any schedule
// (zero if none). The triggers run without sc.mu held, so that an event
// listener may call Schedules; fireMu keeps two callers from interleaving.
func (e *Engine) fireDue(ctx context.Context) (time.Time, error) {
	sc := &e.sched
	sc.fireMu.Lock()
	defer sc.fireMu.Unlock()
	now := e.cfg.Now()
	type dueTick struct {
		s    *scheduleEntry
		tick time.Time
	}
	var due []dueTick
	var next time.Time
	sc.mu.Lock()
	for _, s := range sc.schedules {
		tick := s.ticks.prev(now)
		if !s.seen {
			s.seen = true
			if s.handled.IsZero() && !tick.IsZero() &&
				(s.catchUp < 0 || (s.catchUp > 0 && now.Sub(tick) > s.catchUp)) {
				s.handled = tick // missed before we ran, and too old to catch up
			}
		}
		if !tick.IsZero() && tick.After(s.handled) {
			due = append(due, dueTick{s, tick})
		}
		if n := s.ticks.next(now); !n.IsZero() && (next.IsZero() || n.Before(next)) {
			next = n
		}
	}
	sc.mu.Unlock()
	var errs []error
	for _, d := range due {
		fired, err := e.fireTick(ctx, d.s, d.tick)
		if err != nil {
			errs = append(errs, err)
			next = now // due again at once: the caller retries after its backoff
			continue
		}
		sc.mu.Lock()
		d.s.handled = d.tick
		if fired {
			d.s.lastFire = d.tick
		}
		sc.mu.Unlock()
	}
	return next, errors.Join(errs...)
}

// fireTick triggers the run of one tick and reports whether it has one. A
// validation error (the label schema changed, the job's schema no longer
// takes the input) cannot heal by retrying, so that tick is skipped
// (false, nil); any other error leaves it due.
func (e *Engine) fireTick(ctx context.Context, s *scheduleEntry, tick time.Time) (bool, error) {
	res, err := e.triggerOne(ctx, parsedTrigger{job: s.job, input: s.input, opts: triggerOptions{
		idempotencyKey: tickKey(s.name, tick),
		labels:         maps.Clone(s.labels),
		globalKeys:     true,
	}})
	if err != nil {
		if errors.Is(err, ErrValidation) || errors.Is(err, ErrNotFound) {
			e.logger.Error("durably: scheduled tick skipped", "schedule", s.name, "tick", tick, "err", err)
			return false, nil
		}
		return false, fmt.Errorf("durably: schedule %q: tick %s: %w", s.name, tick.Format(time.RFC3339), err)
	}
	e.logger.Debug("durably: scheduled tick", "schedule", s.name, "tick", tick, "runId", res.Run.ID,
		"disposition", res.Disposition)
	return true, nil
}

// startScheduler starts the scheduler goroutine; a no-op if it runs.
func (e *Engine) startScheduler() {
	sc := &e.sched
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.running {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	sc.running, sc.stop, sc.done = true, cancel, make(chan struct{})
	if sc.wake == nil {
		sc.wake = make(chan struct{}, 1)
	}
	// Each start re-applies the catch-up rule: ticks due while stopped
	// were missed.
	for _, s := range sc.schedules {
		s.seen = false
		s.handled = time.Time{}
	}
	go e.runScheduler(ctx, sc.done)
}

// stopScheduler ends the scheduler goroutine and waits for it; a trigger
// in flight is cancelled.
func (e *Engine) stopScheduler() {
	sc := &e.sched
	sc.mu.Lock()
	if !sc.running {
		sc.mu.Unlock()
		return
	}
	sc.running = false
	stop, done := sc.stop, sc.done
	sc.mu.Unlock()
	stop()
	<-done
}

// schedulerMaxSleep bounds one sleep, so that a wall clock that jumps (or
// a test clock that runs fast) is noticed within this long.
const schedulerMaxSleep = time.Minute

func (e *Engine) runScheduler(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	timer := time.NewTimer(schedulerMaxSleep)
	defer timer.Stop()
	failures := 0
	for {
		next, err := e.fireDue(ctx)
		if ctx.Err() != nil {
			return
		}
		var d time.Duration
		switch {
		case err != nil:
			// The database is away or refused: try again soon, then less
			// often, logging once per failure streak.
			if failures == 0 {
				e.logger.Warn("durably: scheduled tick not fired yet; retrying", "err", err)
			}
			failures++
			d = min(e.cfg.PollingInterval*time.Duration(failures), 10*e.cfg.PollingInterval)
		case next.IsZero():
			d = schedulerMaxSleep
		default:
			d = min(max(next.Sub(e.cfg.Now()), 0), schedulerMaxSleep)
		}
		if err == nil && failures > 0 {
			e.logger.Info("durably: scheduled ticks fire again", "attempts", failures+1)
			failures = 0
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return
		case <-e.sched.wake:
			// Go 1.23 timers: Reset after Stop never sees a stale tick.
			timer.Stop()
		case <-timer.C:
		}
	}
}
