package durablyotel

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// The keys LogHandler adds.
const (
	TraceIDKey = "trace_id"
	SpanIDKey  = "span_id"
)

// LogHandler wraps h so that a record logged with a context that carries a
// span (a run's, a step's, a trigger's) has that span's trace and span ids
// as the attributes trace_id and span_id (hex, as in W3C trace context):
// log lines and traces then find each other. Give the engine a logger on
// it (Config.Logger): durably logs what it says about a run with the run's
// context. Records without a span pass through as they are.
func LogHandler(h slog.Handler) slog.Handler { return traceHandler{next: h} }

type traceHandler struct{ next slog.Handler }

func (t traceHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return t.next.Enabled(ctx, level)
}

func (t traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		// A copy of the record shares attribute storage with the caller's
		// (slog.Record): clone it before adding.
		r = r.Clone()
		r.AddAttrs(slog.String(TraceIDKey, sc.TraceID().String()), slog.String(SpanIDKey, sc.SpanID().String()))
	}
	return t.next.Handle(ctx, r)
}

func (t traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{next: t.next.WithAttrs(attrs)}
}

func (t traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{next: t.next.WithGroup(name)}
}
