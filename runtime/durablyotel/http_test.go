package durablyotel_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyhttp"
)

// A trigger over HTTP is traced in the request's span: here a middleware
// standing for otelhttp's continues the caller's trace from its
// traceparent header, and the trigger's span is a child of its span.
func TestHTTPTriggerJoinsTheRequestsTrace(t *testing.T) {
	bothStores(t, func(t *testing.T, spec string) {
		tel := newTelemetry(t)
		e := tel.engine(t, openStore(t, spec), nil)
		durably.MustRegister(e, &durably.Job[string, string]{
			Name: "otel-http",
			Run:  func(ctx context.Context, s *durably.StepContext, in string) (string, error) { return in, nil },
		})
		h, err := durablyhttp.New(e, durablyhttp.Options[struct{}, durably.MapLabels]{})
		if err != nil {
			t.Fatal(err)
		}
		w3c := propagation.TraceContext{}
		var server trace.SpanContext
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := w3c.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
			ctx, sp := tel.tp.Tracer("test").Start(ctx, "POST /trigger", trace.WithSpanKind(trace.SpanKindServer))
			defer sp.End()
			server = sp.SpanContext()
			h.ServeHTTP(w, r.WithContext(ctx))
		}))
		defer srv.Close()

		callerCtx, caller := tel.requestSpan(t)
		req, err := http.NewRequestWithContext(callerCtx, http.MethodPost, srv.URL+"/trigger", strings.NewReader(`{"jobName":"otel-http","input":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		w3c.Inject(callerCtx, propagation.HeaderCarrier(req.Header))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			RunID string `json:"runId"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /trigger: %d %v", resp.StatusCode, err)
		}
		trig := named(tel.finished(), "trigger otel-http")
		if len(trig) != 1 {
			t.Fatalf("%d trigger spans, want 1", len(trig))
		}
		if trig[0].TraceID != caller.SpanContext().TraceID().String() || trig[0].Parent != server.SpanID().String() {
			t.Fatalf("trigger span %+v: want a child of the server's span %s in the caller's trace %s", trig[0], server.SpanID(), caller.SpanContext().TraceID())
		}
		wantAttrs(t, trig[0], map[string]string{"durably.run.id": body.RunID})
	})
}
