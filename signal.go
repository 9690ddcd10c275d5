package durably

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/durably-go/durably/store"
)

// Signals (issue 22): a named message with a typed payload, sent to a run
// from outside it (Engine.Signal, POST /signal) and received by a step of
// the run that waits for it, durably and holding no slot (R-240 … R-245).

// SignalRecord is a signal kept for a run until a step of it receives one
// (Engine.GetSignals).
type SignalRecord = store.Signal

// SignalDecl is a signal a job declares (Job.Signals): a Signal[P].
type SignalDecl interface {
	// SignalName is the signal's name.
	SignalName() string
	// parsePayload validates a payload and returns its canonical JSON,
	// the one kept and delivered.
	parsePayload(raw json.RawMessage) (json.RawMessage, error)
}

// Signal declares a signal of a job, whose payload is a P: its name, and
// optionally a JSON Schema of its payload (generated code sets it). List
// it in Job.Signals; a run of the job receives it with WaitForSignal, and
// it is sent with SendSignal or Engine.Signal.
type Signal[P any] struct {
	// Name is the signal's name, unique in its job: at most
	// MaxSignalNameBytes of UTF-8.
	Name string
	// Schema, if set, validates the payload's JSON before it is kept.
	Schema JSONValidator
}

// SignalName is the signal's name.
func (sig Signal[P]) SignalName() string { return sig.Name }

// parsePayload decodes raw strictly into a P, validated against the
// schema, and returns its canonical JSON: a payload is checked as an input
// is, its errors naming the field.
func (sig Signal[P]) parsePayload(raw json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("null")
	}
	if sig.Schema != nil {
		if err := sig.Schema.ValidateJSON(raw); err != nil {
			return nil, validationErrorf("Invalid payload: %s", err.Error())
		}
	}
	var p P
	if err := decodeStrict(raw, &p); err != nil {
		return nil, validationErrorf("Invalid payload: %s", err.Error())
	}
	return sig.encode(p)
}

// encode validates a typed payload and returns its JSON.
func (sig Signal[P]) encode(p P) (json.RawMessage, error) {
	out, err := json.Marshal(p)
	if err != nil {
		return nil, validationErrorf("Invalid payload: %s", err.Error())
	}
	if err := checkJSON("payload", out); err != nil {
		return nil, err
	}
	if sig.Schema != nil {
		if err := sig.Schema.ValidateJSON(out); err != nil {
			return nil, validationErrorf("Invalid payload: %s", err.Error())
		}
	}
	return out, nil
}

// CheckSignalName reports whether name may name a signal: not empty,
// valid UTF-8 without NUL, at most MaxSignalNameBytes. Register applies it
// to Job.Signals, durably-gen to the signals durably.yaml declares.
func CheckSignalName(name string) error {
	if name == "" {
		return validationErrorf("a signal needs a name")
	}
	return checkText(fmt.Sprintf("signal name %q", abbrev(name)), name, MaxSignalNameBytes)
}

// signalsOf checks a job's declared signals (names unique, storable) and
// returns them by name.
func signalsOf(job string, decls []SignalDecl) (map[string]SignalDecl, error) {
	if len(decls) == 0 {
		return nil, nil
	}
	out := make(map[string]SignalDecl, len(decls))
	for i, d := range decls {
		if d == nil {
			return nil, fmt.Errorf("durably: job %q: Signals[%d] is nil", job, i)
		}
		name := d.SignalName()
		if err := CheckSignalName(name); err != nil {
			return nil, fmt.Errorf("durably: job %q: Signals[%d]: %w", job, i, err)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("durably: job %q: signal %q is declared twice", job, name)
		}
		out[name] = d
	}
	return out, nil
}

// Signal sends the signal name with a JSON payload to the run runID
// the payload is validated against the signal the run's job
// declares (a validation error naming the field, 400), and kept for the
// run until a step of it receives it with WaitForSignal, each signal by
// one step, once, oldest first. A run waiting for it is claimable at
// once. A run that does not exist is ErrNotFound (404), one that ended a
// conflict (409: a run that ends discards its undelivered signals,
// R-243); a signal its job does not declare, or a payload that does not
// fit, a validation error (400). The run's job must be registered with
// this engine, whose declaration checks the payload.
func (e *Engine) Signal(ctx context.Context, runID, name string, payload json.RawMessage) error {
	if !storable(runID) {
		return notFoundf("Run not found: %s", runID)
	}
	run, err := e.store.GetRun(ctx, runID)
	if err != nil {
		return fmt.Errorf("durably: signal: %w", err)
	}
	if run == nil {
		return notFoundf("Run not found: %s", runID)
	}
	job := e.job(run.JobName)
	if job == nil {
		return notFoundf("Job not found: %s", run.JobName)
	}
	decl, ok := job.signals[name]
	if !ok {
		return validationErrorf("name: job %q declares no signal %q", run.JobName, name)
	}
	canonical, err := decl.parsePayload(payload)
	if err != nil {
		return err
	}
	if err := checkJSON("payload", canonical); err != nil {
		return err
	}
	if run.Status.Terminal() {
		return conflictf("Cannot signal %s run: %s", run.Status, runID)
	}
	return e.sendSignal(ctx, run, name, canonical)
}

// sendSignal keeps a validated signal for run, or says why it could not.
func (e *Engine) sendSignal(ctx context.Context, run *Run, name string, payload json.RawMessage) error {
	sent, err := e.store.SendSignal(ctx, &store.Signal{ID: e.newID(), RunID: run.ID, Name: name, Payload: payload, CreatedAt: e.now()})
	if err != nil {
		return fmt.Errorf("durably: signal: %w", err)
	}
	if !sent {
		// It ended (or was deleted) since it was read.
		now, err := e.store.GetRun(ctx, run.ID)
		if err != nil {
			return fmt.Errorf("durably: signal: %w", err)
		}
		if now == nil {
			return notFoundf("Run not found: %s", run.ID)
		}
		return conflictf("Cannot signal %s run: %s", now.Status, run.ID)
	}
	e.worker.wake() // the run may be claimable now
	return nil
}

// SendSignal sends sig with a typed payload to the run runID: Engine.Signal
// for Go callers.
func SendSignal[P any](ctx context.Context, e *Engine, runID string, sig Signal[P], payload P) error {
	raw, err := sig.encode(payload)
	if err != nil {
		return err
	}
	return e.Signal(ctx, runID, sig.Name, raw)
}

// GetSignals returns the signals kept for a run, oldest first: those sent
// to it that no step received yet. A run that ended has none.
func (e *Engine) GetSignals(ctx context.Context, runID string) ([]*SignalRecord, error) {
	if !storable(runID) {
		return nil, nil
	}
	sigs, err := e.store.GetSignals(ctx, runID)
	if err != nil {
		return nil, fmt.Errorf("durably: get signals: %w", err)
	}
	return sigs, nil
}

// WaitForSignal waits, as a step named name, for the signal sig sent to
// the executing run, and returns its payload. A signal sent before
// the run reached the wait was kept for it; otherwise the run is handed
// back to wait, holding no slot and no lease, and is claimable again, in
// any process, once the signal is sent or the wait's timeout (WithTimeout)
// passed: the call then returns an ErrSuspended error, which the job must
// return. Each signal is delivered to one wait, once, oldest first; the
// step records its payload, so a run executed again replays it. A timeout
// is an ErrTimeout error, permanent since it replays the same. The run's
// job must declare sig (Job.Signals).
func WaitForSignal[P any](s *StepContext, name string, sig Signal[P], opts ...Option) (P, error) {
	var p P
	raw, err := s.waitForSignal(name, sig.Name, collectOptions(opts).wait.timeout)
	if err != nil {
		return p, err
	}
	if len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, &p); err != nil {
			return p, fmt.Errorf("durably: wait %q: decode the payload of signal %q: %w", name, sig.Name, err)
		}
	}
	return p, nil
}

// waitForSignal is WaitForSignal on JSON: the payload received.
func (s *StepContext) waitForSignal(name, signal string, timeout time.Duration) (json.RawMessage, error) {
	if _, ok := s.signals[signal]; !ok {
		return nil, Permanent(validationErrorf("durably: wait %q: job %q declares no signal %q (Job.Signals)", name, s.run.JobName, signal))
	}
	w, err := s.startWait(name, timeout)
	if err != nil {
		return nil, err
	}
	if w.done != nil {
		if w.done.Error != "" {
			return nil, Permanent(newError(ErrTimeout, "%s", w.done.Error))
		}
		return w.done.Output, nil
	}
	now := s.e.now()
	s.mu.Lock()
	index := s.index
	s.mu.Unlock()
	rec := &store.Step{ID: s.e.newID(), RunID: s.run.ID, Name: name, Index: index, Status: store.StepCompleted,
		StartedAt: now, CompletedAt: now, Attempt: 1}
	got, err := s.exec.receive(signal, rec)
	if err != nil {
		return nil, err
	}
	if got.Signal != nil {
		s.mu.Lock()
		s.index++
		s.mu.Unlock()
		return got.Signal.Payload, nil
	}
	if w.timedOut(s.e.now()) {
		terr := waitTimedOut(name, w.deadline)
		s.recordWait(name, nil, errorMessage(terr))
		return nil, terr
	}
	return nil, s.suspendWait(&w, &store.Wait{Signal: signal, SeenWakes: got.Wakes})
}
