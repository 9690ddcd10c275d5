package durably

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/durably-go/durably/store"
)

// What the waits for an event (children, signals) share: their deadline,
// kept as a step of its own, and the record of a wait's outcome.

// waitForever is the wake time of a wait without a timeout: the latest time
// every store keeps. The run wakes on its event, never at this time.
var waitForever = time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC)

// deadlineSuffix names the step that keeps a wait's deadline: a wait named
// "approval" with a timeout keeps it in the step "approval/deadline",
// recorded with the first hand-back, so that the deadline holds across
// executions in any process.
const deadlineSuffix = "/deadline"

// waitStart is where a wait stands when the run reaches it.
type waitStart struct {
	// done is the wait's recorded outcome, when an earlier execution
	// recorded it.
	done *store.Step
	// deadline is when the wait gives up; zero without a timeout.
	deadline time.Time
	// deadlineStep is the step that keeps a new deadline, to record with
	// the first hand-back; nil when there is none to record.
	deadlineStep *store.Step
}

// startWait replays what earlier executions recorded of the wait name: its
// deadline (then timeout is ignored: the first one holds) and its outcome.
// A new deadline is now + timeout, kept in a step recorded only if the
// run is handed back to wait. The step indexes are taken in record order.
func (s *StepContext) startWait(name string, timeout time.Duration) (waitStart, error) {
	var w waitStart
	if s.ctx.Err() != nil {
		return w, s.abortError()
	}
	if err := checkStepName(name); err != nil {
		return w, err
	}
	if timeout < 0 {
		return w, Permanent(validationErrorf("durably: wait %q: the timeout must not be negative, got %s", name, timeout))
	}
	deadlineName := name + deadlineSuffix
	if err := checkStepName(deadlineName); timeout > 0 && err != nil {
		return w, err
	}
	if out, ok := s.exec.replay(deadlineName); ok {
		s.mu.Lock()
		s.index++
		s.mu.Unlock()
		t, err := decodeWakeTime(out)
		if err != nil {
			return w, fmt.Errorf("durably: wait %q: recorded deadline: %w", name, err)
		}
		w.deadline = t
	}
	if st, ok := s.exec.recordedStep(name); ok {
		s.mu.Lock()
		s.index++
		s.mu.Unlock()
		w.done = st
		return w, nil
	}
	// The step before is recorded first, so that its step:complete comes
	// before this wait's events.
	if err := s.exec.flush(); err != nil {
		return w, err
	}
	if w.deadline.IsZero() && timeout > 0 {
		now := s.e.now()
		w.deadline = store.Truncate(now.Add(timeout))
		if !store.InRange(w.deadline) {
			return w, Permanent(validationErrorf("durably: wait %q: the deadline must be between years 1 and 9999, got %s", name, w.deadline.Format(time.RFC3339)))
		}
		out, err := json.Marshal(store.FormatTime(w.deadline))
		if err != nil {
			return w, err
		}
		w.deadlineStep = &store.Step{ID: s.e.newID(), RunID: s.run.ID, Name: deadlineName, Status: store.StepCompleted,
			Output: out, StartedAt: now, CompletedAt: now, Attempt: 1}
	}
	return w, nil
}

// decodeWakeTime reads a wake time recorded as a step's output.
func decodeWakeTime(out json.RawMessage) (time.Time, error) {
	var at string
	if err := json.Unmarshal(out, &at); err != nil {
		return time.Time{}, err
	}
	return store.ParseTime(at)
}

// timedOut reports whether the wait's deadline has passed.
func (w *waitStart) timedOut(now time.Time) bool {
	return !w.deadline.IsZero() && !now.Before(w.deadline)
}

// suspendWait hands the run back to wait for wait until the wait's
// deadline (or for ever), and no later than the run's own (Job.Timeout),
// recording the new deadline's step with it. It returns the error the job
// should return: ErrSuspended, or why the run could not be handed back.
func (s *StepContext) suspendWait(w *waitStart, wait *store.Wait) error {
	until := waitForever
	if !w.deadline.IsZero() {
		until = w.deadline
	}
	if d := s.exec.runDeadline(); !d.IsZero() && d.Before(until) {
		until = d
	}
	var steps []*store.Step
	if st := w.deadlineStep; st != nil {
		s.mu.Lock()
		st.Index = s.index
		s.index++
		s.mu.Unlock()
		s.e.emit(Event{Type: EventStepStart, RunID: s.run.ID, JobName: s.run.JobName, StepName: st.Name, StepIndex: st.Index, Labels: s.run.Labels})
		steps = append(steps, st)
	}
	_, err := s.exec.await(until, steps, wait)
	return err
}

// recordWait holds a wait's outcome as its completed step, as RunStep holds
// a step's result: it is written before the next step, with the finish,
// or a moment later.
func (s *StepContext) recordWait(name string, out json.RawMessage, errMsg string) {
	now := s.e.now()
	s.mu.Lock()
	index := s.index
	s.index++
	s.mu.Unlock()
	s.e.emit(Event{Type: EventStepStart, RunID: s.run.ID, JobName: s.run.JobName, StepName: name, StepIndex: index, Labels: s.run.Labels})
	s.exec.hold(&store.Step{ID: s.e.newID(), RunID: s.run.ID, Name: name, Index: index, Status: store.StepCompleted,
		Output: out, Error: errMsg, StartedAt: now, CompletedAt: now, Attempt: 1})
}

// waitTimedOut is the error of a wait whose deadline passed first; it is
// permanent, since the wait's outcome is recorded and replays the same.
func waitTimedOut(name string, deadline time.Time) error {
	return Permanent(newError(ErrTimeout, "Wait %q timed out at %s", name, deadline.UTC().Format(time.RFC3339Nano)))
}
