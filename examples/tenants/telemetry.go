package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"

	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyotel"
)

// telemetry is the fixture's OpenTelemetry (-otel-stdout): spans of the
// HTTP requests, triggers, executions and steps, written to a writer as
// JSON, and log lines that carry the ids of the span they were logged in.
// Its zero value is off.
type telemetry struct {
	tp       *sdktrace.TracerProvider
	observer durably.Observer // nil when off
}

// newTelemetry turns tracing on, with spans exported to w.
func newTelemetry(w io.Writer) (*telemetry, error) {
	exp, err := stdouttrace.New(stdouttrace.WithWriter(w))
	if err != nil {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
	obs, err := durablyotel.New(durablyotel.Options{TracerProvider: tp})
	if err != nil {
		return nil, err
	}
	return &telemetry{tp: tp, observer: obs}, nil
}

// logger adds trace and span ids to logger's records when tracing is on.
func (t *telemetry) logger(logger *slog.Logger) *slog.Logger {
	if t.tp == nil {
		return logger
	}
	return slog.New(durablyotel.LogHandler(logger.Handler()))
}

// traced serves each request in a server span that continues the caller's
// trace (a W3C traceparent header), as otelhttp's handler would, so that a
// trigger's span is a child of its request's.
func (t *telemetry) traced(h http.Handler) http.Handler {
	if t.tp == nil {
		return h
	}
	tracer, w3c := t.tp.Tracer("tenants"), propagation.TraceContext{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := w3c.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, r.Method+" "+r.URL.Path, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// shutdown writes out the spans not yet exported.
func (t *telemetry) shutdown(ctx context.Context) error {
	if t.tp == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}
