// Package durablyotel traces and measures a durably engine with
// OpenTelemetry. It implements durably.Observer: set Config.Observer to
// the value New returns, and the engine's triggers, executions and step
// attempts become spans, and its runs, steps, queue and outages metrics.
// The engine itself does not import OpenTelemetry: programs that do not use
// this package do not link it.
//
//	obs, err := durablyotel.New(durablyotel.Options{}) // the global providers
//	eng, err := durably.New(durably.Config{Store: st, Observer: obs,
//		Logger: slog.New(durablyotel.LogHandler(slog.NewJSONHandler(os.Stderr, nil)))})
//
// A trigger's span is a child of the span in the trigger's context (an HTTP
// request's, when the handler is wrapped by otelhttp), and its trace
// context is stored with the run; every execution of the run, in whichever
// process and however much later (after a crash, a durable sleep, a retry),
// starts its span with that stored context as parent, so that the whole
// life of a run is one trace. A step attempt's span is a child of its
// execution's. The names and attributes follow OpenTelemetry's messaging
// conventions where they apply; docs/observability.md lists them all.
package durablyotel

import (
	"context"
	"errors"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// scope is the instrumentation scope of the tracer and the meter.
const scope = "github.com/durably-go/durably/runtime/durablyotel"

// Options configures an Observer. The zero value uses OpenTelemetry's
// global providers and W3C trace context.
type Options struct {
	// TracerProvider makes the spans. Default otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider makes the metrics. Default otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// Propagator encodes the trigger's trace context into the run and
	// back. Default propagation.TraceContext{} (W3C traceparent and
	// tracestate); a composite with propagation.Baggage{} carries baggage
	// to the executions too.
	Propagator propagation.TextMapPropagator
	// SkipWaitingRuns leaves out the durably.runs.waiting gauge, whose
	// every collection counts the pending runs in the database (one query
	// per collection and store, over pending runs only).
	SkipWaitingRuns bool
}

// Observer is the durably.Observer of this package. It is safe for
// concurrent use and may watch several engines.
type Observer struct {
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	m          *instruments

	mu      sync.Mutex
	engines []*durably.Engine // attached, for the waiting-runs gauge
}

var _ durably.Observer = (*Observer)(nil)

// New makes an Observer; its error says which instrument could not be
// made.
func New(opts Options) (*Observer, error) {
	tp, mp, prop := opts.TracerProvider, opts.MeterProvider, opts.Propagator
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if prop == nil {
		prop = propagation.TraceContext{}
	}
	o := &Observer{tracer: tp.Tracer(scope), propagator: prop}
	m, err := newInstruments(mp.Meter(scope))
	if err != nil {
		return nil, err
	}
	o.m = m
	if !opts.SkipWaitingRuns {
		if err := m.observeWaiting(o.attached); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// Attach subscribes to the engine's events (the runs that end) and adds
// its store to those the waiting-runs gauge counts. New calls it.
func (o *Observer) Attach(e *durably.Engine) {
	o.mu.Lock()
	o.engines = append(o.engines, e)
	o.mu.Unlock()
	e.OnEvent(o.m.event)
}

func (o *Observer) attached() []*durably.Engine {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*durably.Engine(nil), o.engines...)
}

// Outage counts the outages of the database and measures how long they
// last.
func (o *Observer) Outage(info durably.OutageInfo) {
	o.m.outage(info)
}

// errorType is the error.type attribute of a failed operation: the
// engine's kind of error when it has one, else _OTHER. The values are few
// on purpose (error.type must not carry messages).
func errorType(err error) string {
	var conflict *store.ConflictError
	if errors.As(err, &conflict) { // a trigger's, before the engine words it
		return "conflict"
	}
	for _, k := range []struct {
		kind error
		name string
	}{
		{durably.ErrValidation, "validation"},
		{durably.ErrNotFound, "not_found"},
		{durably.ErrConflict, "conflict"},
		{durably.ErrUnavailable, "unavailable"},
		{durably.ErrCancelled, "cancelled"},
		{durably.ErrLeaseLost, "lease_lost"},
		{durably.ErrShutdown, "shutdown"},
		{durably.ErrDeadline, "timed_out"},
		{context.Canceled, "context_canceled"},
		{context.DeadlineExceeded, "context_deadline_exceeded"},
	} {
		if errors.Is(err, k.kind) {
			return k.name
		}
	}
	return "_OTHER"
}
