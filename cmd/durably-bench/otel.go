package main

import (
	"context"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyotel"
)

// otelObserver is the observer of -otel: OpenTelemetry's SDK, every span
// sampled and batched to an exporter that drops it, every metric recorded
// by a reader nobody collects, so that a workload measures what tracing and
// metrics cost the engine, without a collector's.
func otelObserver() (durably.Observer, error) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(discardSpans{}))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	return durablyotel.New(durablyotel.Options{TracerProvider: tp, MeterProvider: mp, SkipWaitingRuns: true})
}

// discardSpans is a span exporter that drops what it is given.
type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpans) Shutdown(context.Context) error                             { return nil }
