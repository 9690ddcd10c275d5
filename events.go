package durably

import (
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/durably-go/durably/runtime/store"
)

// EventType names an event (runtime.md §18).
type EventType string

// The event types. Domain events: trigger, coalesced, complete, fail,
// cancel, delete; the rest are operational.
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
	EventStepStart       EventType = "step:start"
	EventStepComplete    EventType = "step:complete"
	EventStepFail        EventType = "step:fail"
	EventStepCancel      EventType = "step:cancel"
	EventLogWrite        EventType = "log:write"
	EventWorkerError     EventType = "worker:error"
)

// IsDomain reports whether the type is a domain event.
func (t EventType) IsDomain() bool {
	switch t {
	case EventRunTrigger, EventRunCoalesced, EventRunComplete, EventRunFail, EventRunCancel, EventRunDelete:
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
// fields are set depends on Type, as in the table of runtime.md §18; the JSON
// form carries exactly those fields.
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
}

// MarshalJSON writes the event as the protocol sends it on a per-run stream
// (H-047, H-048): type, the type's fields, timestamp and sequence.
func (e Event) MarshalJSON() ([]byte, error) {
	return e.AppendJSON(make([]byte, 0, 256)), nil
}

// AppendJSON appends the event's JSON to b. It is MarshalJSON without the
// allocation, for streams that encode many events.
func (e Event) AppendJSON(b []byte) []byte {
	w := jsonWriter{b: append(b, '{')}
	w.str("type", string(e.Type))
	switch e.Type {
	case EventWorkerError:
		w.str("error", e.Error)
		w.str("context", e.Context)
		if e.RunID != "" {
			w.str("runId", e.RunID)
		}
	default:
		w.str("runId", e.RunID)
		w.str("jobName", e.JobName)
		switch e.Type {
		case EventRunTrigger:
			w.raw("input", e.Input)
		case EventRunCoalesced:
			w.raw("skippedInput", e.SkippedInput)
			w.labels("skippedLabels", e.SkippedLabels)
		case EventRunLeased:
			w.raw("input", e.Input)
			w.str("leaseOwner", e.LeaseOwner)
			w.str("leaseExpiresAt", store.FormatTime(e.LeaseExpiresAt))
		case EventRunLeaseRenewed:
			w.str("leaseOwner", e.LeaseOwner)
			w.str("leaseExpiresAt", store.FormatTime(e.LeaseExpiresAt))
		case EventRunProgress:
			w.progress("progress", e.Progress)
		case EventRunComplete:
			w.raw("output", e.Output)
			w.int("duration", e.Duration.Milliseconds())
		case EventRunFail:
			w.str("error", e.Error)
			w.str("failedStepName", e.FailedStepName)
		case EventStepStart, EventStepCancel:
			w.str("stepName", e.StepName)
			w.int("stepIndex", int64(e.StepIndex))
		case EventStepComplete:
			w.str("stepName", e.StepName)
			w.int("stepIndex", int64(e.StepIndex))
			w.raw("output", e.Output)
			w.int("duration", e.Duration.Milliseconds())
		case EventStepFail:
			w.str("stepName", e.StepName)
			w.int("stepIndex", int64(e.StepIndex))
			w.str("error", e.Error)
		case EventLogWrite:
			w.nullableStr("stepName", e.StepName)
			w.str("level", e.Level)
			w.str("message", e.Message)
			w.raw("data", e.Data)
		}
		w.labels("labels", e.Labels)
	}
	w.str("timestamp", store.FormatTime(e.Timestamp))
	w.int("sequence", e.Sequence)
	return append(w.b, '}')
}

// jsonWriter appends object members; the first member gets no comma.
type jsonWriter struct {
	b    []byte
	more bool
}

func (w *jsonWriter) key(k string) {
	if w.more {
		w.b = append(w.b, ',')
	}
	w.more = true
	w.b = append(w.b, '"')
	w.b = append(w.b, k...)
	w.b = append(w.b, '"', ':')
}

func (w *jsonWriter) str(k, v string) {
	w.key(k)
	w.b = appendJSONString(w.b, v)
}

func (w *jsonWriter) nullableStr(k, v string) {
	if v == "" {
		w.key(k)
		w.b = append(w.b, "null"...)
		return
	}
	w.str(k, v)
}

func (w *jsonWriter) int(k string, v int64) {
	w.key(k)
	w.b = strconv.AppendInt(w.b, v, 10)
}

func (w *jsonWriter) raw(k string, v json.RawMessage) {
	w.key(k)
	if len(v) == 0 {
		w.b = append(w.b, "null"...)
		return
	}
	w.b = append(w.b, v...)
}

func (w *jsonWriter) labels(k string, m map[string]string) {
	w.key(k)
	w.b = appendLabels(w.b, m)
}

func (w *jsonWriter) progress(k string, p *store.Progress) {
	w.key(k)
	w.b = appendProgress(w.b, p)
}

func appendLabels(b []byte, m map[string]string) []byte {
	b = append(b, '{')
	for i, k := range store.SortedKeys(m) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, m[k])
	}
	return append(b, '}')
}

func appendProgress(b []byte, p *store.Progress) []byte {
	if p == nil {
		return append(b, "null"...)
	}
	b = append(b, `{"current":`...)
	b = strconv.AppendInt(b, int64(p.Current), 10)
	if p.Total != nil {
		b = append(b, `,"total":`...)
		b = strconv.AppendInt(b, int64(*p.Total), 10)
	}
	if p.Message != nil {
		b = append(b, `,"message":`...)
		b = appendJSONString(b, *p.Message)
	}
	return append(b, '}')
}

// appendJSONString quotes s as encoding/json does (including its HTML-safe
// escaping, harmless for the protocol, H-052) without its reflection.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
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
// is reported and does not stop the others or the run (runtime.md §18).
func (b *bus) emit(e Event, now time.Time) {
	e.Sequence = b.seq.Add(1)
	e.Timestamp = now
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
