package durably

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/durably-go/durably/store"
)

// Child runs (issue 22): a step triggers runs of any job as children of the
// executing run, and a later wait gathers their outcomes while the run holds
// no slot and no lease (R-230 … R-236).

// Child is a run a step started as a child of the executing run
// (StartChild, StartChildren), whose job's output is O. Await it with
// AwaitChild or AwaitChildren.
type Child[O any] struct {
	runID string
}

// RunID is the child's run id.
func (c Child[O]) RunID() string { return c.runID }

// Raw is the child with its output left as JSON, so that children of
// different jobs can be awaited together (AwaitChildren).
func (c Child[O]) Raw() Child[json.RawMessage] { return Child[json.RawMessage](c) }

// ChildOutcome is how an awaited child ended (AwaitChildren).
type ChildOutcome[O any] struct {
	RunID   string
	JobName string
	// Status is completed, failed or cancelled; pending or leased when the
	// wait timed out first, "" when the child no longer exists (deleted
	// or purged).
	Status Status
	// Output is the child's output when it completed.
	Output O
	// Err is nil when the child completed, a *ChildError otherwise (a
	// timeout's error for a child still running when the wait timed out).
	Err error
}

// ErrChildFailed is the kind of a ChildError: an awaited child failed, was
// cancelled, or no longer exists.
var ErrChildFailed = errors.New("child run did not complete")

// ChildError is how an awaited child that did not complete reaches its
// parent: errors.As finds it in what AwaitChild returns, and
// errors.Is(err, ErrChildFailed) holds.
type ChildError struct {
	RunID   string
	JobName string
	// Status is failed or cancelled; "" for a child that no longer exists.
	Status Status
	// Message is the child's error (a failure), or says what happened.
	Message string
}

func (e *ChildError) Error() string {
	switch e.Status {
	case StatusFailed:
		return fmt.Sprintf("child run %s of job %q failed: %s", e.RunID, e.JobName, e.Message)
	case StatusCancelled:
		return fmt.Sprintf("child run %s of job %q was cancelled", e.RunID, e.JobName)
	}
	return fmt.Sprintf("child run %s: %s", e.RunID, e.Message)
}

// Unwrap makes errors.Is(err, ErrChildFailed) hold.
func (e *ChildError) Unwrap() error { return ErrChildFailed }

// StartChild triggers a run of this job as a child of the run s executes
// a step named name, whose recorded result is the child's id, so
// that a run executed again (after a crash, a lost lease, a deploy) never
// starts the child twice. The child inherits the run's labels, and must
// keep its tenant labels (Config.TenantLabels), so that its keys stay in
// the run's scope; WithLabels adds or changes the others. opts
// are the trigger's options but WithIdempotencyKey (the engine keys each
// child by its parent and step) and WithCoalesceSkip, which are refused.
// Await the child with AwaitChild; a cancel of the run cancels it.
func (h *TypedJob[I, O, L]) StartChild(s *StepContext, name string, input I, opts ...Option) (Child[O], error) {
	ids, err := startChildren(s, name, h.job.Name, []childItem{{encode: func() (json.RawMessage, error) { return h.job.encodeInput(input) }, opts: opts}}, oneChild)
	if err != nil {
		return Child[O]{}, err
	}
	return Child[O]{runID: ids[0]}, nil
}

// StartChildren triggers a run of this job per item as children of the run
// s executes, all or nothing in one transaction, as one step named name
// (StartChild says the rest). The children come in item order.
func (h *TypedJob[I, O, L]) StartChildren(s *StepContext, name string, items []BatchItem[I]) ([]Child[O], error) {
	its := make([]childItem, len(items))
	for i, it := range items {
		its[i] = childItem{encode: func() (json.RawMessage, error) { return h.job.encodeInput(it.Input) }, opts: it.Options}
	}
	ids, err := startChildren(s, name, h.job.Name, its, childBatch)
	if err != nil {
		return nil, err
	}
	out := make([]Child[O], len(ids))
	for i, id := range ids {
		out[i] = Child[O]{runID: id}
	}
	return out, nil
}

// childItem is one child to start: its input, encoded when the step runs,
// and its trigger options.
type childItem struct {
	encode func() (json.RawMessage, error)
	opts   []Option
}

// childStart is how a step starts its children: one (StartChild), or a
// batch (StartChildren), all or nothing, whose errors name the item.
type childStart int

const (
	oneChild childStart = iota
	childBatch
)

// triggerChildren triggers a step's children, as a batch or alone.
func (e *Engine) triggerChildren(ctx context.Context, parsed []parsedTrigger, how childStart) ([]TriggerResult, error) {
	if how == childBatch {
		return e.triggerBatch(ctx, parsed)
	}
	r, err := e.triggerOne(ctx, parsed[0])
	if err != nil {
		return nil, err
	}
	return []TriggerResult{*r}, nil
}

// startChildren is StartChild and StartChildren on JSON: a step whose
// result is the children's ids.
func startChildren(s *StepContext, name, job string, items []childItem, how childStart) ([]string, error) {
	var fresh []string
	raw, err := s.step(name, stepBounds{policy: s.retry, timeout: s.stepTimeout}, func(ctx context.Context) (json.RawMessage, error) {
		parsed := make([]parsedTrigger, len(items))
		for i, it := range items {
			p, err := s.childTrigger(name, job, i, it)
			if err != nil {
				if how == childBatch {
					err = indexError(err, i)
				}
				return nil, permanentIfInvalid(err)
			}
			parsed[i] = p
		}
		res, err := s.e.triggerChildren(ctx, parsed, how)
		if err != nil {
			return nil, permanentIfInvalid(err)
		}
		fresh = make([]string, len(res))
		for i, r := range res {
			fresh[i] = r.Run.ID
		}
		return json.Marshal(fresh)
	})
	if err != nil {
		return nil, err
	}
	if fresh != nil {
		return fresh, nil
	}
	var ids []string
	if err := json.Unmarshal(raw, &ids); err != nil || len(ids) != len(items) {
		return nil, fmt.Errorf("durably: step %q: recorded children %s do not match %d items: %v", name, raw, len(items), err)
	}
	return ids, nil
}

// childTrigger makes the trigger of the child at index i of step name: the
// parent's labels under the item's, the parent's tenant labels kept, and
// an idempotency key of the parent's id, the step and the index.
func (s *StepContext) childTrigger(step, job string, i int, it childItem) (parsedTrigger, error) {
	input, err := it.encode()
	if err != nil {
		return parsedTrigger{}, err
	}
	o := collectOptions(it.opts).trigger
	switch {
	case o.idempotencyKey != "":
		return parsedTrigger{}, validationErrorf("durably: a child's idempotency key is the engine's (its parent's id and step): WithIdempotencyKey is refused")
	case o.coalesce != "":
		return parsedTrigger{}, validationErrorf("durably: a child cannot be coalesced onto another run: WithCoalesceSkip is refused")
	}
	labels := maps.Clone(s.run.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	for k, v := range o.labels {
		if slices.Contains(s.e.cfg.TenantLabels, k) && v != s.run.Labels[k] {
			return parsedTrigger{}, validationErrorf("labels: %q is a tenant label: a child keeps its parent's (%q), got %q", k, s.run.Labels[k], v)
		}
		labels[k] = v
	}
	o.labels, o.idempotencyKey, o.parentRunID = labels, childKey(s.run.ID, step, i), s.run.ID
	return parsedTrigger{job: job, input: input, opts: o}, nil
}

// childKey is the idempotency key of the child at index i of a parent's
// step: the same for every execution of the step, and unique per parent
// and step. The step's name is hashed, so that any name fits MaxKeyBytes.
func childKey(parentID, step string, i int) string {
	h := sha256.Sum256([]byte(step))
	return "child:" + parentID + ":" + hex.EncodeToString(h[:12]) + ":" + strconv.Itoa(i)
}

// permanentIfInvalid marks validation errors permanent: triggering the same
// children again would be refused the same way.
func permanentIfInvalid(err error) error {
	if errors.Is(err, ErrValidation) {
		return Permanent(err)
	}
	return err
}

// AwaitChild waits, as a step named name, for child to end and returns its
// output: the run is handed back to wait, holding no slot and no
// lease, and is claimable again, in any process, once the child ended or
// the wait's timeout (WithTimeout) passed. While it waits the call returns
// an ErrSuspended error, which the job must return. A child that failed or
// was cancelled is a *ChildError; a timeout an ErrTimeout error.
// Both are permanent: the outcome is recorded and replays the same.
func AwaitChild[O any](s *StepContext, name string, child Child[O], opts ...Option) (O, error) {
	var zero O
	outs, err := AwaitChildren(s, name, []Child[O]{child}, opts...)
	if err != nil {
		return zero, err
	}
	if outs[0].Err != nil {
		return zero, Permanent(outs[0].Err)
	}
	return outs[0].Output, nil
}

// AwaitChildren waits, as a step named name, until every child ended, or
// the wait's timeout (WithTimeout) passed, and returns their outcomes in
// order: each completed child's output, each other's *ChildError.
// The returned error is the wait's own: an ErrTimeout error (the outcomes
// then say which children still run), ErrSuspended while it waits (the
// job must return it), or why the run cannot go on.
func AwaitChildren[O any](s *StepContext, name string, children []Child[O], opts ...Option) ([]ChildOutcome[O], error) {
	ids := make([]string, len(children))
	for i, c := range children {
		ids[i] = c.runID
	}
	rec, err := s.awaitChildren(name, ids, collectOptions(opts).wait.timeout)
	if rec == nil {
		return nil, err
	}
	outs := make([]ChildOutcome[O], len(rec.Children))
	for i, c := range rec.Children {
		outs[i] = ChildOutcome[O]{RunID: c.RunID, JobName: c.JobName, Status: c.Status}
		switch c.Status {
		case StatusCompleted:
			if len(c.Output) > 0 && string(c.Output) != "null" {
				if derr := json.Unmarshal(c.Output, &outs[i].Output); derr != nil {
					outs[i].Err = fmt.Errorf("durably: decode output of child run %s: %w", c.RunID, derr)
				}
			}
		case StatusPending, StatusLeased:
			outs[i].Err = err // still running: the wait's timeout
		default:
			outs[i].Err = &ChildError{RunID: c.RunID, JobName: c.JobName, Status: c.Status, Message: c.Error}
		}
	}
	return outs, err
}

// childrenRecord is a children wait's outcome, recorded as its step's
// output.
type childrenRecord struct {
	Children []childRecord `json:"children"`
	TimedOut bool          `json:"timedOut,omitempty"`
}

// childRecord is one awaited child as the wait found it.
type childRecord struct {
	RunID   string          `json:"runId"`
	JobName string          `json:"jobName,omitempty"`
	Status  Status          `json:"status"`
	Output  json.RawMessage `json:"output,omitempty"`
	Error   string          `json:"error,omitempty"`
}

// awaitChildren is AwaitChildren on JSON. It returns the record of the
// wait's outcome, with a timeout's error; or nil and why it has none (the
// run was handed back to wait, or cannot go on).
func (s *StepContext) awaitChildren(name string, ids []string, timeout time.Duration) (*childrenRecord, error) {
	w, err := s.startWait(name, timeout)
	if err != nil {
		return nil, err
	}
	if w.done != nil {
		var rec childrenRecord
		if err := json.Unmarshal(w.done.Output, &rec); err != nil {
			return nil, fmt.Errorf("durably: wait %q: recorded outcome: %w", name, err)
		}
		return &rec, timeoutOf(name, &rec, w.deadline)
	}
	seen := s.run.Wakes // before the children are read (S-060)
	rec, active, err := s.lookAtChildren(ids)
	if err != nil {
		return nil, err
	}
	if active > 0 && !w.timedOut(s.e.now()) {
		return nil, s.suspendWait(&w, &store.Wait{Children: active, SeenWakes: seen})
	}
	rec.TimedOut = active > 0
	out, err := json.Marshal(rec)
	if err == nil {
		err = checkJSON("the children's outcomes", out)
	}
	if err != nil {
		return nil, Permanent(fmt.Errorf("durably: wait %q: %s", name, errorMessage(err)))
	}
	s.recordWait(name, out, "")
	return rec, timeoutOf(name, rec, w.deadline)
}

// lookAtChildren reads the run's children and returns the outcomes of
// those in ids, in order, and how many of them are still active. An id
// that is not a child of the run is refused.
func (s *StepContext) lookAtChildren(ids []string) (*childrenRecord, int, error) {
	children, err := s.e.store.GetChildren(context.WithoutCancel(s.ctx), s.run.ID)
	if err != nil {
		return nil, 0, fmt.Errorf("durably: read the children of run %s: %w", s.run.ID, err)
	}
	byID := make(map[string]*Run, len(children))
	for _, c := range children {
		byID[c.ID] = c
	}
	rec := &childrenRecord{Children: make([]childRecord, len(ids))}
	active := 0
	for i, id := range ids {
		c, ok := byID[id]
		switch {
		case !ok && id == "":
			return nil, 0, Permanent(validationErrorf("durably: await: child %d is the zero Child, not one StartChild returned", i))
		case !ok:
			// Deleted or purged since it ended, or never a child of
			// this run.
			rec.Children[i] = childRecord{RunID: id, Error: "Run not found: " + id + " is not a child of run " + s.run.ID}
			continue
		}
		rec.Children[i] = childRecord{RunID: id, JobName: c.JobName, Status: c.Status, Output: c.Output, Error: c.Error}
		if c.Status.Active() {
			active++
			rec.Children[i].Output, rec.Children[i].Error = nil, ""
		}
	}
	return rec, active, nil
}

// timeoutOf is the error of a recorded children wait: its timeout's, or nil.
func timeoutOf(name string, rec *childrenRecord, deadline time.Time) error {
	if !rec.TimedOut {
		return nil
	}
	return waitTimedOut(name, deadline)
}

// GetChildren returns the runs a step of runID started as its children,
// oldest first.
func (e *Engine) GetChildren(ctx context.Context, runID string) ([]*Run, error) {
	if !storable(runID) {
		return nil, nil // as GetRun
	}
	kids, err := e.store.GetChildren(ctx, runID)
	if err != nil {
		return nil, fmt.Errorf("durably: get children: %w", err)
	}
	return kids, nil
}

// orphaned cancels a child run whose parent was cancelled before the child
// was created (its trigger raced the parent's cancel, which cancelled the
// children it saw, R-234), instead of executing it, and reports whether it
// did. Only a child that completed no step is checked: the race happens at
// the child's creation.
func (x *execution) orphaned() bool {
	run, e := x.run, x.e
	if run.ParentRunID == "" || run.CompletedStepCount > 0 {
		return false
	}
	parent, err := e.store.GetRun(context.WithoutCancel(x.ctx), run.ParentRunID)
	if err != nil || parent == nil || parent.Status != StatusCancelled {
		return false
	}
	if err := e.Cancel(context.WithoutCancel(x.ctx), run.ID); err != nil {
		e.logger.WarnContext(x.ctx, "durably: the child of a cancelled run not cancelled; it runs", "runId", run.ID, "parentRunId", parent.ID, "err", err)
		return false
	}
	return true
}
