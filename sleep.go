package durably

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/durably-go/durably/store"
)

// Sleep is a durable sleep of d, a named step of the run: the first
// time the run reaches it, the wake time (now + d on Config.Now's clock) is
// recorded as the step's output and the run is handed back until then,
// holding no worker slot and no lease; Sleep returns an ErrSuspended error,
// which the job must return. The run is claimed again at the wake time, by
// this process or any other, and resumes: completed steps replay, and the
// finished sleep returns nil at once. A sleep of d <= 0 records its
// step and returns nil without handing the run back.
func Sleep(s *StepContext, name string, d time.Duration) error {
	return s.sleep(name, func(now time.Time) time.Time { return now.Add(d) })
}

// SleepUntil is Sleep until the wake time t. A t in the past records the
// step and returns nil at once.
func SleepUntil(s *StepContext, name string, t time.Time) error {
	return s.sleep(name, func(time.Time) time.Time { return t })
}

func (s *StepContext) sleep(name string, wake func(now time.Time) time.Time) error {
	if s.ctx.Err() != nil {
		return s.abortError()
	}
	if out, ok := s.exec.replay(name); ok {
		s.mu.Lock()
		s.index++
		s.mu.Unlock()
		until, err := decodeWakeTime(out)
		if err != nil {
			return fmt.Errorf("durably: sleep %q: recorded wake time: %w", name, err)
		}
		if !s.e.now().Before(until) {
			return nil
		}
		// Claimed before the wake time (another process's clock runs
		// ahead): wait the rest.
		_, err = s.exec.suspend(until, nil, s.run.Attempt, nil)
		return err
	}
	if err := checkStepName(name); err != nil {
		return err // as RunStep's
	}
	// The previous step is recorded first, so that its step:complete
	// comes before this one's step:start.
	if err := s.exec.flush(); err != nil {
		return err
	}
	now := s.e.now()
	until := store.Truncate(wake(now))
	if !store.InRange(until) {
		// Stored as text, a later year would sort before every time and
		// wake the run at once, and then fail to be read back.
		return validationErrorf("durably: sleep %q: the wake time must be between years 1 and 9999, got %s", name, until.Format(time.RFC3339))
	}
	s.mu.Lock()
	index := s.index
	s.index++
	s.mu.Unlock()
	out, err := json.Marshal(store.FormatTime(until))
	if err != nil {
		return fmt.Errorf("durably: sleep %q: %w", name, err)
	}
	rec := &store.Step{ID: s.e.newID(), RunID: s.run.ID, Name: name, Index: index, Status: store.StepCompleted,
		Output: out, StartedAt: now, CompletedAt: now, Attempt: 1}
	if !now.Before(until) {
		// Nothing to wait for: an ordinary step.
		s.e.emit(Event{Type: EventStepStart, RunID: s.run.ID, JobName: s.run.JobName, StepName: name, StepIndex: index, Labels: s.run.Labels})
		s.exec.hold(rec)
		return nil
	}
	// The step is recorded with the hand-back, in one fenced write;
	// step:complete follows it, and nothing more is emitted until the run is
	// leased again at the wake time.
	s.e.emit(Event{Type: EventStepStart, RunID: s.run.ID, JobName: s.run.JobName, StepName: name, StepIndex: index, Labels: s.run.Labels})
	_, err = s.exec.suspend(until, []*store.Step{rec}, s.run.Attempt, nil)
	return err
}
