package durably_test

import (
	"context"
	"strings"
	"testing"

	"github.com/durably-go/durably"
)

// traceStamper is an observer that stamps every trigger with a fixed trace
// context and observes nothing else.
type traceStamper struct{ tc string }

func (traceStamper) Attach(*durably.Engine) {}
func (o traceStamper) StartTrigger(ctx context.Context, _ durably.TriggerInfo) (context.Context, string) {
	return ctx, o.tc
}
func (traceStamper) EndTrigger(context.Context, durably.TriggerInfo, []durably.TriggerResult, error) {
}
func (traceStamper) StartExecution(ctx context.Context, _ durably.ExecutionInfo) context.Context {
	return ctx
}
func (traceStamper) EndExecution(context.Context, durably.ExecutionInfo, durably.ExecutionEnd) {}
func (traceStamper) StartStep(ctx context.Context, _ durably.StepInfo) context.Context         { return ctx }
func (traceStamper) EndStep(context.Context, durably.StepInfo, durably.StepEnd)                {}
func (traceStamper) Outage(durably.OutageInfo)                                                 {}

// TestTraceContextAStoreCannotHoldIsDropped: an observer's trace context
// past MaxTraceContextBytes, or holding a NUL, is not stored, and the
// trigger succeeds without it (PostgreSQL refused the NUL with a 500).
func TestTraceContextAStoreCannotHoldIsDropped(t *testing.T) {
	for _, tc := range []struct {
		name, tc, want string
	}{
		{"fits", `{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}`, `{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}`},
		{"at the limit", strings.Repeat("x", durably.MaxTraceContextBytes), strings.Repeat("x", durably.MaxTraceContextBytes)},
		{"past the limit", strings.Repeat("x", durably.MaxTraceContextBytes+1), ""},
		{"a NUL", "a\x00b", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bothStores(t, "trace.db", func(t *testing.T, spec string) {
				e, h := parentEngine(t, spec, durably.Config{Observer: traceStamper{tc.tc}}, &durably.Job[fleetInput, string]{Name: "j",
					Run: func(ctx context.Context, s *durably.StepContext, in fleetInput) (string, error) { return "", nil }})
				r, err := h.Trigger(context.Background(), fleetInput{})
				if err != nil {
					t.Fatal(err)
				}
				got, err := e.GetRun(context.Background(), r.Run.ID)
				if err != nil {
					t.Fatal(err)
				}
				if got.TraceContext != tc.want {
					t.Fatalf("stored trace context of %d bytes, want %d", len(got.TraceContext), len(tc.want))
				}
			})
		})
	}
}
