package durably

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/durably-go/durably/internal/jsonappend"
	"github.com/durably-go/durably/store"
)

// EventType names an event (docs/contract.md, "Events").
type EventType string

// The event types. Domain events: trigger, coalesced, complete, fail,
// cancel, delete, and resume; the rest are operational.
const (
	EventRunTrigger      EventType = "run:trigger"
	EventRunCoalesced    EventType = "run:coalesced"
	EventRunLeased       EventType = "run:leased"
	EventRunLeaseRenewed EventType = "run:lease-renewed"
	EventRunProgress     EventType = "run:progress"
	EventRunComplete     EventType = "run:complete"
	EventRunFail         EventType = "run:fail"
	EventRunCancel       EventType = "run:cancel"
	EventRunDelete       EventType = "run:delete"
	// EventRunResume: a failed or cancelled run was made pending again by
	// Resume, to go on from its completed steps (R-264; not in the
	// original: additive).
	EventRunResume    EventType = "run:resume"
	EventStepStart    EventType = "step:start"
	EventStepComplete EventType = "step:complete"
	EventStepFail     EventType = "step:fail"
	EventStepCancel   EventType = "step:cancel"
	EventLogWrite     EventType = "log:write"
	EventWorkerError  EventType = "worker:error"
)

// IsDomain reports whether the type is a domain event.
func (t EventType) IsDomain() bool {
	switch t {
	case EventRunTrigger, EventRunCoalesced, EventRunComplete, EventRunFail, EventRunCancel, EventRunDelete, EventRunResume:
		return true
	}
	return false
}

// ClosesRun reports whether the event ends a run's stream.
func (t EventType) ClosesRun() bool {
	switch t {
	case EventRunComplete, EventRunFail, EventRunCancel, EventRunDelete:
		return true
	}
	return false
}

// Event is something that happened to a run, a step or the worker. Which
// fields are set depends on Type, as in the table of docs/contract.md
// ("Events"); the JSON form carries exactly those fields.
type Event struct {
	Type      EventType
	Timestamp time.Time
	// Sequence counts emissions per engine from 1; snapshot events of a
	// run stream carry 0.
	Sequence int64

	RunID   string
	JobName string
	Labels  map[string]string

	Input          json.RawMessage // run:trigger, run:leased
	Output         json.RawMessage // run:complete, step:complete
	Error          string          // run:fail, step:fail, worker:error
	FailedStepName string          // run:fail
	Duration       time.Duration   // run:complete, step:complete
	LeaseOwner     string          // run:leased, run:lease-renewed
	LeaseExpiresAt time.Time       // run:leased, run:lease-renewed
	Progress       *store.Progress // run:progress

	StepName  string // step:*, log:write ("" outside a step)
	StepIndex int    // step:*

	Level   string          // log:write: info, warn, error
	Message string          // log:write
	Data    json.RawMessage // log:write

	SkippedInput  json.RawMessage   // run:coalesced
	SkippedLabels map[string]string // run:coalesced

	Context string // worker:error: lease-renewal, run-completion, run-failure, idle-maintenance, wal-checkpoint

	// remote marks an event that another process emitted (D3): it is
	// delivered here but not published again.
	remote bool
}

// Remote reports whether the event was emitted by another process sharing
// the database and delivered here by the store (D3).
func (e Event) Remote() bool { return e.remote }

// transportEvent is an event as it travels between processes: every field,
// so that the receiving process can serve it in any form. Its fields are
// Event's, in Event's order, with short names: the two convert into each
// other, so that a field added to Event fails to compile here until it is
// given a name on the transport too. The sequence is the receiver's own
// (it numbers its emissions), and remote is set on receipt.
type transportEvent struct {
	Type      EventType `json:"t"`
	Timestamp time.Time `json:"ts"`
	Sequence  int64     `json:"-"`

	RunID   string            `json:"r,omitempty"`
	JobName string            `json:"j,omitempty"`
	Labels  map[string]string `json:"l,omitempty"`

	Input          json.RawMessage `json:"in,omitempty"`
	Output         json.RawMessage `json:"out,omitempty"`
	Error          string          `json:"err,omitempty"`
	FailedStepName string          `json:"fs,omitempty"`
	Duration       time.Duration   `json:"d,omitempty"`
	LeaseOwner     string          `json:"lo,omitempty"`
	LeaseExpiresAt time.Time       `json:"le,omitzero"`
	Progress       *store.Progress `json:"p,omitempty"`

	StepName  string `json:"sn,omitempty"`
	StepIndex int    `json:"si,omitempty"`

	Level   string          `json:"lv,omitempty"`
	Message string          `json:"m,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`

	SkippedInput  json.RawMessage   `json:"sk,omitempty"`
	SkippedLabels map[string]string `json:"skl,omitempty"`

	Context string `json:"c,omitempty"`

	remote bool
}

func (e Event) encodeTransport() ([]byte, error) {
	t := transportEvent(e)
	t.Sequence, t.remote = 0, false
	return json.Marshal(t)
}

// decodeTransport reads an event another process published. The bytes come
// from the database, so anything is possible: input that is not a JSON
// object with a type is an error, never a panic or an empty event.
func decodeTransport(b []byte) (Event, error) {
	var t transportEvent
	if err := json.Unmarshal(b, &t); err != nil {
		return Event{}, fmt.Errorf("durably: remote event: %w", err)
	}
	if t.Type == "" {
		return Event{}, errors.New("durably: remote event: no type (t)")
	}
	e := Event(t)
	e.remote = true
	return e, nil
}

// MarshalJSON writes the event as the protocol sends it on a per-run stream
// (H-047, H-048): type, the type's fields, timestamp and sequence.
func (e Event) MarshalJSON() ([]byte, error) {
	return e.AppendJSON(make([]byte, 0, 256)), nil
}

// AppendJSON appends the event's JSON to b. It is MarshalJSON without the
// allocation, for streams that encode many events.
func (e Event) AppendJSON(b []byte) []byte {
	w := jsonappend.Writer{B: append(b, '{')}
	w.Str("type", string(e.Type))
	switch e.Type {
	case EventWorkerError:
		w.Str("error", e.Error)
		w.Str("context", e.Context)
		if e.RunID != "" {
			w.Str("runId", e.RunID)
		}
	default:
		w.Str("runId", e.RunID)
		w.Str("jobName", e.JobName)
		switch e.Type {
		case EventRunTrigger:
			w.Raw("input", e.Input)
		case EventRunCoalesced:
			w.Raw("skippedInput", e.SkippedInput)
			w.Labels("skippedLabels", e.SkippedLabels)
		case EventRunLeased:
			w.Raw("input", e.Input)
			w.Str("leaseOwner", e.LeaseOwner)
			w.Str("leaseExpiresAt", store.FormatTime(e.LeaseExpiresAt))
		case EventRunLeaseRenewed:
			w.Str("leaseOwner", e.LeaseOwner)
			w.Str("leaseExpiresAt", store.FormatTime(e.LeaseExpiresAt))
		case EventRunProgress:
			w.Progress("progress", e.Progress)
		case EventRunComplete:
			w.Raw("output", e.Output)
			w.Int("duration", e.Duration.Milliseconds())
		case EventRunFail:
			w.Str("error", e.Error)
			w.Str("failedStepName", e.FailedStepName)
		case EventStepStart, EventStepCancel:
			w.Str("stepName", e.StepName)
			w.Int("stepIndex", int64(e.StepIndex))
		case EventStepComplete:
			w.Str("stepName", e.StepName)
			w.Int("stepIndex", int64(e.StepIndex))
			w.Raw("output", e.Output)
			w.Int("duration", e.Duration.Milliseconds())
		case EventStepFail:
			w.Str("stepName", e.StepName)
			w.Int("stepIndex", int64(e.StepIndex))
			w.Str("error", e.Error)
		case EventLogWrite:
			w.NullableStr("stepName", e.StepName)
			w.Str("level", e.Level)
			w.Str("message", e.Message)
			w.Raw("data", e.Data)
		}
		w.Labels("labels", e.Labels)
	}
	w.Str("timestamp", store.FormatTime(e.Timestamp))
	w.Int("sequence", e.Sequence)
	return append(w.B, '}')
}

// bus delivers events to listeners synchronously, in emission order.
type bus struct {
	seq       atomic.Int64
	mu        sync.Mutex
	listeners atomic.Pointer[[]*listener]
	onPanic   func(recovered any, e Event)
}

type listener struct{ fn func(Event) }

func (b *bus) subscribe(fn func(Event)) (unsubscribe func()) {
	l := &listener{fn: fn}
	b.mu.Lock()
	old := b.load()
	next := make([]*listener, 0, len(old)+1)
	next = append(append(next, old...), l)
	b.listeners.Store(&next)
	b.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			old := b.load()
			next := make([]*listener, 0, len(old))
			for _, x := range old {
				if x != l {
					next = append(next, x)
				}
			}
			b.listeners.Store(&next)
		})
	}
}

func (b *bus) load() []*listener {
	if p := b.listeners.Load(); p != nil {
		return *p
	}
	return nil
}

// emit stamps the event and calls every listener. A listener that panics
// is reported and does not stop the others or the run (docs/contract.md,
// "Events").
// A remote event keeps the time its process gave it.
func (b *bus) emit(e Event, now time.Time) {
	e.Sequence = b.seq.Add(1)
	if !e.remote {
		e.Timestamp = now
	}
	for _, l := range b.load() {
		b.call(l, e)
	}
}

func (b *bus) call(l *listener, e Event) {
	defer func() {
		if r := recover(); r != nil && b.onPanic != nil {
			b.onPanic(r, e)
		}
	}()
	l.fn(e)
}

// wireEvent is an event as the protocol carries it (H-047, H-051).
type wireEvent struct {
	Type           EventType         `json:"type"`
	Timestamp      string            `json:"timestamp"`
	Sequence       int64             `json:"sequence"`
	RunID          string            `json:"runId"`
	JobName        string            `json:"jobName"`
	Labels         map[string]string `json:"labels"`
	Input          json.RawMessage   `json:"input"`
	Output         json.RawMessage   `json:"output"`
	Error          string            `json:"error"`
	FailedStepName string            `json:"failedStepName"`
	Duration       int64             `json:"duration"`
	LeaseOwner     string            `json:"leaseOwner"`
	LeaseExpiresAt string            `json:"leaseExpiresAt"`
	Progress       *store.Progress   `json:"progress"`
	StepName       *string           `json:"stepName"`
	StepIndex      int               `json:"stepIndex"`
	Level          string            `json:"level"`
	Message        string            `json:"message"`
	Data           json.RawMessage   `json:"data"`
	SkippedInput   json.RawMessage   `json:"skippedInput"`
	SkippedLabels  map[string]string `json:"skippedLabels"`
	Context        string            `json:"context"`
}

// UnmarshalJSON reads an event in the protocol's form (a per-run stream's
// full event or a list stream's projection).
func (e *Event) UnmarshalJSON(b []byte) error {
	var w wireEvent
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*e = Event{Type: w.Type, Sequence: w.Sequence, RunID: w.RunID, JobName: w.JobName, Labels: w.Labels,
		Input: nullToNil(w.Input), Output: nullToNil(w.Output), Error: w.Error, FailedStepName: w.FailedStepName,
		Duration: time.Duration(w.Duration) * time.Millisecond, LeaseOwner: w.LeaseOwner, Progress: w.Progress,
		StepIndex: w.StepIndex, Level: w.Level, Message: w.Message, Data: nullToNil(w.Data),
		SkippedInput: nullToNil(w.SkippedInput), SkippedLabels: w.SkippedLabels, Context: w.Context}
	if w.StepName != nil {
		e.StepName = *w.StepName
	}
	var err error
	if w.Timestamp != "" {
		if e.Timestamp, err = store.ParseTime(w.Timestamp); err != nil {
			return err
		}
	}
	if w.LeaseExpiresAt != "" {
		if e.LeaseExpiresAt, err = store.ParseTime(w.LeaseExpiresAt); err != nil {
			return err
		}
	}
	return nil
}

func nullToNil(b json.RawMessage) json.RawMessage {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	return b
}
