package durably

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/durably-go/durably/store"
)

// StepContext is a job's handle on its run during one execution: it runs
// steps (RunStep), reports progress, and logs. It is the Go form of the
// original's step context.
type StepContext struct {
	e      *Engine
	run    *Run
	lease  store.Lease
	ctx    context.Context
	exec   stepRecorder
	logger *slog.Logger
	retry  *RetryPolicy // the job's, for steps without their own
	// stepTimeout is the job's StepTimeout, for steps without their own.
	stepTimeout time.Duration
	// signals are the job's declared signals by name (Job.Signals).
	signals map[string]SignalDecl

	mu          sync.Mutex
	index       int    // position of the next step in the run (D6)
	currentStep string // name of the step whose function is running
}

// stepRecorder is all that a StepContext asks of its run's execution
// (execution.go), which owns the run's record: the steps completed before,
// the completed step held back from the database, and the fenced writes.
// The execution, for its part, sees the StepContext only as the value it
// hands the job.
type stepRecorder interface {
	// replay returns the recorded output of the run's completed step name.
	replay(name string) (out []byte, ok bool)
	// hold takes a completed step to record, held back until the next
	// step, the finish, or a moment later.
	hold(rec *store.Step)
	// flush records the held-back step now; an error ends the run.
	flush() error
	// save records a step at once, fenced; false means the write was
	// refused (see refused).
	save(rec *store.Step) (bool, error)
	// refused ends the run after a refused step write and returns
	// the error the job should return.
	refused(name string, index int) error
	// attempts is the number of failed attempts of step name recorded
	// so far.
	attempts(name string) int
	// suspend hands the run back to wait until until, recording the
	// held-back step and steps first, with the run's retry count set to
	// attempt. ok says whether the run was handed back;
	// err is what the job should return either way.
	suspend(until time.Time, steps []*store.Step, attempt int, attempts []store.Attempt) (ok bool, err error)
	// withAttempt returns the run's attempt history with the current
	// execution's unsuccessful end, at step ("" for the body), appended.
	withAttempt(step string, err error) []store.Attempt
	// ended says whether the body returned or was abandoned.
	ended() bool
	// recordedStep returns the run's completed step name, as replay does
	// its output.
	recordedStep(name string) (*store.Step, bool)
	// await hands the run back, as suspend does, to wait until until or
	// for what w names.
	await(until time.Time, steps []*store.Step, w *store.Wait) (ok bool, err error)
	// runDeadline is when the run times out (Job.Timeout); zero for none.
	runDeadline() time.Time
	// receive records rec with the payload of the oldest signal named
	// signal kept for the run, if there is one (S-063); the receipt has
	// no signal otherwise. A refused write ends the run as save's does.
	receive(signal string, rec *store.Step) (store.Receipt, error)
}

func newStepContext(e *Engine, run *Run, lease store.Lease, ctx context.Context, exec stepRecorder) *StepContext {
	s := &StepContext{e: e, run: run, lease: lease, ctx: ctx, exec: exec}
	s.logger = slog.New(&stepLogHandler{s: s})
	return s
}

// RunID is the id of the executing run.
func (s *StepContext) RunID() string { return s.run.ID }

// JobName is the name of the run's job.
func (s *StepContext) JobName() string { return s.run.JobName }

// Labels returns a copy of the run's labels.
func (s *StepContext) Labels() map[string]string { return maps.Clone(s.run.Labels) }

// Context is the run's context: cancelled when the run is cancelled, its
// lease is lost, or the engine stops (D9). context.Cause tells which.
func (s *StepContext) Context() context.Context { return s.ctx }

// Err returns nil while the run may go on, else ErrCancelled or
// ErrLeaseLost (throwIfAborted, R-086).
func (s *StepContext) Err() error {
	if s.ctx.Err() == nil {
		return nil
	}
	return s.abortError()
}

// abortError is the error a step returns once the run's context ended.
func (s *StepContext) abortError() error {
	cause := context.Cause(s.ctx)
	switch {
	case errors.Is(cause, ErrCancelled):
		return cancelledError(s.run.ID)
	case errors.Is(cause, ErrShutdown):
		return cause
	case errors.Is(cause, ErrSuspended), errors.Is(cause, ErrDeadline):
		return cause // the suspension's own error, with the wake time; the run's timeout
	default:
		return leaseLostError(s.run.ID)
	}
}

// Logger returns a logger whose records (info and above) are stored with
// the run and emitted as log:write events, attributed to the running step
// (D10, R-091).
func (s *StepContext) Logger() *slog.Logger { return s.logger }

// Progress reports the run's progress: current, and optionally total and a
// message (a zero total and an empty message are left out). It is
// fire-and-forget and may be called inside or outside a step.
func (s *StepContext) Progress(current, total int, message string) {
	p := Progress{Current: current}
	if total != 0 {
		p.Total = &total
	}
	if message != "" {
		p.Message = &message
	}
	s.ReportProgress(p)
}

// ReportProgress is Progress with every field under the caller's control,
// for a total of 0 or an empty message.
func (s *StepContext) ReportProgress(p Progress) {
	if p.Message != nil {
		if msg := storedMessage(*p.Message); msg != *p.Message {
			p.Message = &msg
		}
	}
	if s.exec.ended() {
		return // an abandoned body's: the run is over
	}
	// A step held back is recorded first, so that its step:complete comes
	// before this progress, as the job's code ordered them.
	if err := s.exec.flush(); err != nil {
		return // the run is over; its context says why
	}
	now := s.e.now()
	if err := s.e.store.SetProgress(s.ctx, s.lease, &p, now); err != nil {
		s.e.logger.WarnContext(s.ctx, "durably: progress not recorded", "runId", s.run.ID, "err", err)
	}
	s.e.emit(Event{Type: EventRunProgress, RunID: s.run.ID, JobName: s.run.JobName, Progress: &p, Labels: s.run.Labels})
}

// stepNameKey carries the running step's name in its context, so that a
// log call with that context is attributed exactly.
type stepNameKey struct{}

// RunStep runs one durable step of a job (R-080 … R-089). The first time a
// run reaches the step, fn runs and its result is recorded; when the run
// executes again (after a crash, a lost lease, a deploy), the recorded
// result is returned and fn does not run. Steps are identified by name, so
// reordering or adding steps between deploys is safe and renaming one runs
// it again. The result must survive a JSON round trip. A run's
// steps are sequential: call RunStep from one goroutine at a time. A name
// is at most MaxStepNameBytes and a result MaxJSONBytes (docs/limits.md):
// past them the step fails for good.
//
// RunStep returns fn's result before its record commits; the record is
// written before the next step starts, before progress or a log goes out,
// within 1 ms, or with the run's finish. Code between steps that acts
// outside the database on a result belongs in a step of its own.
//
// fn's context ends when the run is cancelled or its lease is lost; fn
// should return then. An error from fn fails the step and, when the job
// returns it, the run. After cancellation RunStep returns an ErrCancelled
// error, after lease loss an ErrLeaseLost error: the job should return it.
//
// A step with a retry policy (WithStepRetry, else the job's Retry) that
// fails with attempts left is recorded as a failed attempt and the run is
// handed back until the next attempt's time: RunStep then returns an
// ErrSuspended error, which the job should return. An error
// marked with Permanent is never retried.
func RunStep[T any](s *StepContext, name string, fn func(ctx context.Context) (T, error), opts ...StepOption) (T, error) {
	var result T
	var fresh bool
	bounds := stepBounds{policy: s.retry, timeout: s.stepTimeout}
	if len(opts) > 0 {
		var o stepOptions
		for _, opt := range opts {
			opt.applyStep(&o)
		}
		if o.retry != nil {
			if err := o.retry.validate(); err != nil {
				return result, Permanent(fmt.Errorf("durably: step %q: WithStepRetry: %w", name, err))
			}
			bounds.policy = o.retry
		}
		if o.timeout != nil {
			if *o.timeout < 0 {
				return result, Permanent(fmt.Errorf("durably: step %q: WithStepTimeout must not be negative, got %v", name, *o.timeout))
			}
			bounds.timeout = *o.timeout
		}
	}
	raw, err := s.step(name, bounds, func(ctx context.Context) (json.RawMessage, error) {
		v, err := fn(ctx)
		if err != nil {
			return nil, err
		}
		result, fresh = v, true
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("step %q: encode result: %w", name, err)
		}
		if err := checkJSON("result", b); err != nil {
			// Running it again would make the same result.
			return nil, Permanent(fmt.Errorf("step %q: %s", name, errorMessage(err)))
		}
		return b, nil
	})
	if err != nil {
		var zero T
		return zero, err
	}
	if fresh {
		return result, nil
	}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &result); err != nil {
			var zero T
			return zero, fmt.Errorf("step %q: decode recorded result: %w", name, err)
		}
	}
	return result, nil
}

// stepBounds is how a step's attempts are retried and bounded in time.
type stepBounds struct {
	policy  *RetryPolicy
	timeout time.Duration // 0: unbounded
}

// step is RunStep on JSON.
func (s *StepContext) step(name string, bounds stepBounds, fn func(ctx context.Context) (json.RawMessage, error)) (json.RawMessage, error) {
	// (1) An ended run starts no step.
	if s.ctx.Err() != nil {
		return nil, s.abortError()
	}
	// The previous step is recorded before this one may act on the world.
	if err := s.exec.flush(); err != nil {
		return nil, err
	}
	// (3) Replay by name: no call, no event.
	if out, ok := s.exec.replay(name); ok {
		s.mu.Lock()
		s.index++
		s.mu.Unlock()
		return out, nil
	}
	// A name is checked when it would be stored: a step recorded before
	// the limit existed still replays.
	if err := checkStepName(name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	index := s.index
	s.currentStep = name
	s.mu.Unlock()
	attempt := s.exec.attempts(name) + 1

	// (4) Run it.
	startedAt := s.e.now()
	s.e.emit(Event{Type: EventStepStart, RunID: s.run.ID, JobName: s.run.JobName, StepName: name, StepIndex: index, Labels: s.run.Labels})
	fnCtx := s.observeStep(stepAttempt{name, index, attempt})
	out, fnErr := s.call(fnCtx, name, bounds.timeout, fn)
	s.mu.Lock()
	s.currentStep = ""
	s.mu.Unlock()
	if s.ctx.Err() != nil { // (6) aborted while fn ran
		fnErr = s.abortError()
	}
	s.stepReturned(fnCtx, stepAttempt{name, index, attempt}, fnErr)
	if fnErr != nil {
		return nil, s.failStep(name, index, attempt, startedAt, fnErr, bounds.policy)
	}

	// (7) Hold the record back; the execution writes it.
	rec := &store.Step{
		ID: s.e.newID(), RunID: s.run.ID, Name: name, Index: index, Status: store.StepCompleted,
		Output: out, StartedAt: startedAt, CompletedAt: s.e.now(), Attempt: attempt,
	}
	s.mu.Lock()
	s.index++
	s.mu.Unlock()
	s.exec.hold(rec)
	return out, nil
}

// failStep is the error path of R-082, and of R-076 when the step is
// retried.
func (s *StepContext) failStep(name string, index, attempt int, startedAt time.Time, fnErr error, policy *RetryPolicy) error {
	if errors.Is(fnErr, ErrLeaseLost) || errors.Is(fnErr, ErrShutdown) {
		return fnErr // the lease is not ours to write with
	}
	if s.ctx.Err() != nil && errors.Is(fnErr, ErrDeadline) {
		return fnErr // the run's timeout: its finish records the failure
	}
	if err := s.exec.flush(); err != nil { // steps are recorded in order
		return err
	}
	status := store.StepFailed
	if errors.Is(fnErr, ErrCancelled) {
		status = store.StepCancelled
	}
	msg := errorMessage(fnErr)
	rec := &store.Step{
		ID: s.e.newID(), RunID: s.run.ID, Name: name, Index: index, Status: status,
		Error: msg, StartedAt: startedAt, CompletedAt: s.e.now(), Attempt: attempt,
	}
	if status == store.StepFailed && !IsPermanent(fnErr) && policy.retries(attempt) {
		// The failed attempt is recorded with the hand-back, in one
		// fenced write: the run waits without a slot or a lease.
		until := store.Truncate(rec.CompletedAt.Add(policy.delay(attempt, jitterSource)))
		ok, err := s.exec.suspend(until, []*store.Step{rec}, s.run.Attempt+1, s.exec.withAttempt(name, fnErr))
		if ok {
			s.e.emit(Event{Type: EventStepFail, RunID: s.run.ID, JobName: s.run.JobName, StepName: name, StepIndex: index, Error: msg, Labels: s.run.Labels})
		}
		return err
	}
	// The run's context may be over; the write is fenced, so it is safe to
	// attempt it regardless.
	ok, err := s.exec.save(rec)
	if err != nil {
		return errors.Join(fnErr, fmt.Errorf("durably: record failed step %q of run %s: %w", name, s.run.ID, err))
	}
	if !ok {
		return s.exec.refused(name, index)
	}
	s.e.emit(Event{Type: EventStepFail, RunID: s.run.ID, JobName: s.run.JobName, StepName: name, StepIndex: index, Error: msg, Labels: s.run.Labels})
	if status == store.StepFailed {
		return &stepFailure{step: name, err: fnErr} // spent: the job's policy does not retry it again
	}
	return fnErr
}

// stepLogHandler persists a step context's log records and emits them as
// log:write events.
type stepLogHandler struct {
	s      *StepContext
	attrs  []groupedAttr // from With, each under the groups open at the time
	groups []string      // from WithGroup: where the record's own attributes go
}

type groupedAttr struct {
	groups []string
	attr   slog.Attr
}

func (h *stepLogHandler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= slog.LevelInfo // debug is not persisted (D10)
}

func (h *stepLogHandler) Handle(ctx context.Context, r slog.Record) error {
	s := h.s
	level := "info"
	switch {
	case r.Level >= slog.LevelError:
		level = "error"
	case r.Level >= slog.LevelWarn:
		level = "warn"
	}
	if s.exec.ended() {
		return nil // an abandoned body's: the run is over
	}
	if err := s.exec.flush(); err != nil { // keep step:complete before this log, as in the code
		return nil
	}
	stepName, _ := ctx.Value(stepNameKey{}).(string)
	if stepName == "" {
		s.mu.Lock()
		stepName = s.currentStep
		s.mu.Unlock()
	}
	data := h.data(r)
	now := s.e.now()
	msg := storedMessage(r.Message)
	rec := &store.Log{ID: s.e.newID(), RunID: s.run.ID, StepName: stepName, Level: level, Message: msg, Data: data, CreatedAt: now}
	if err := s.e.store.AppendLogs(ctx, []*store.Log{rec}); err != nil {
		s.e.logger.WarnContext(s.ctx, "durably: log not recorded", "runId", s.run.ID, "err", err)
	}
	s.e.emit(Event{Type: EventLogWrite, RunID: s.run.ID, JobName: s.run.JobName, Labels: s.run.Labels,
		StepName: stepName, Level: level, Message: msg, Data: data})
	return nil
}

// data renders the record's attributes as a JSON object, or nil without any.
func (h *stepLogHandler) data(r slog.Record) json.RawMessage {
	if len(h.attrs) == 0 && r.NumAttrs() == 0 {
		return nil
	}
	root := map[string]any{}
	for _, a := range h.attrs {
		putAttr(groupMap(root, a.groups), a.attr)
	}
	if r.NumAttrs() > 0 {
		cur := groupMap(root, h.groups)
		r.Attrs(func(a slog.Attr) bool {
			putAttr(cur, a)
			return true
		})
	}
	b, err := json.Marshal(root)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": "log data not encodable: " + err.Error()})
	} else if err := checkJSON("log data", b); err != nil {
		b, _ = json.Marshal(map[string]string{"error": errorMessage(err) + "; dropped"})
	}
	return b
}

// groupMap returns the object at path under root, creating what is missing
// and keeping what earlier attributes put there.
func groupMap(root map[string]any, path []string) map[string]any {
	cur := root
	for _, g := range path {
		next, ok := cur[g].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[g] = next
		}
		cur = next
	}
	return cur
}

func putAttr(m map[string]any, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		sub := m // an unnamed group is inlined (slog.Handler's rules)
		if a.Key != "" {
			sub = groupMap(m, []string{a.Key})
		}
		for _, ga := range v.Group() {
			putAttr(sub, ga)
		}
		return
	}
	if a.Key == "" {
		return
	}
	switch v.Kind() {
	case slog.KindTime:
		m[a.Key] = store.FormatTime(v.Time())
	case slog.KindDuration:
		m[a.Key] = v.Duration().String()
	default:
		if err, ok := v.Any().(error); ok {
			m[a.Key] = err.Error()
		} else {
			m[a.Key] = v.Any()
		}
	}
}

func (h *stepLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = slices.Clip(h.attrs)
	for _, a := range attrs {
		c.attrs = append(c.attrs, groupedAttr{groups: h.groups, attr: a})
	}
	return &c
}

func (h *stepLogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.groups = append(slices.Clip(h.groups), name) // h.groups is never appended to in place
	return &c
}

// abandonAfter is how long a step function or a job body that ignores its
// context's end past a timeout is waited for before it is abandoned.
const abandonAfter = time.Second

// call runs a step's function in the step's context (derived from parent:
// the run's, or the observer's for the step), bounded by timeout
// when it is positive: the function's context then ends at the deadline
// with a stepTimedOut cause, and the attempt fails with it whatever the
// function returns; a function that has not returned abandonAfter later is
// left to itself on its goroutine (its result is dropped), so that a hung
// step frees its run, its slot and its lease.
func (s *StepContext) call(parent context.Context, name string, timeout time.Duration, fn func(ctx context.Context) (json.RawMessage, error)) (json.RawMessage, error) {
	ctx := context.WithValue(parent, stepNameKey{}, name)
	if timeout <= 0 {
		return fn(ctx)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, stepTimedOut(name, timeout))
	defer cancel()
	out, err, returned := awaitBounded(ctx, func() (json.RawMessage, error) { return fn(ctx) })
	if cause := context.Cause(ctx); s.ctx.Err() == nil && errors.Is(cause, ErrDeadline) {
		return nil, cause
	}
	if !returned {
		return nil, s.abortError() // the run ended meanwhile; its fn is abandoned
	}
	return out, err
}

// awaitBounded calls f on a goroutine of its own and waits for it to
// return, or, once ctx has ended, for abandonAfter more at most; returned
// is false when f was abandoned. A panic of f is raised again on the
// caller's goroutine, as if f had run there (the job's recover turns it
// into the run's failure); an abandoned f's panic is dropped.
func awaitBounded[T any](ctx context.Context, f func() (T, error)) (v T, err error, returned bool) {
	type result struct {
		v        T
		err      error
		panicked bool
		panicVal any
	}
	done := make(chan result, 1)
	go func() {
		var r result
		defer func() {
			if p := recover(); p != nil {
				r.panicked, r.panicVal = true, p
			}
			done <- r
		}()
		r.v, r.err = f()
	}()
	take := func(r result) (T, error, bool) {
		if r.panicked {
			panic(r.panicVal)
		}
		return r.v, r.err, true
	}
	select {
	case r := <-done:
		return take(r)
	case <-ctx.Done():
	}
	grace := time.NewTimer(abandonAfter)
	defer grace.Stop()
	select {
	case r := <-done:
		return take(r)
	case <-grace.C:
		return v, err, false
	}
}
