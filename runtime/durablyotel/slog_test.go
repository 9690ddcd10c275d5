package durablyotel_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/durably-go/durably/runtime/durablyotel"
)

func TestLogHandlerAddsTheActiveSpansIDs(t *testing.T) {
	tel := newTelemetry(t)
	spanCtx, sp := tel.requestSpan(t)
	traceID, spanID := sp.SpanContext().TraceID().String(), sp.SpanContext().SpanID().String()
	for _, c := range []struct {
		name string
		log  func(l *slog.Logger)
		// want is the record's attributes as JSON decodes them; ids are
		// filled in.
		want map[string]any
	}{
		{"a span", func(l *slog.Logger) { l.InfoContext(spanCtx, "m", "k", "v") },
			map[string]any{"k": "v", "trace_id": traceID, "span_id": spanID}},
		{"no span", func(l *slog.Logger) { l.InfoContext(context.Background(), "m", "k", "v") },
			map[string]any{"k": "v"}},
		{"no context", func(l *slog.Logger) { l.Info("m", "k", "v") },
			map[string]any{"k": "v"}},
		{"attributes kept", func(l *slog.Logger) { l.With("w", "x").InfoContext(spanCtx, "m") },
			map[string]any{"w": "x", "trace_id": traceID, "span_id": spanID}},
		{"groups kept", func(l *slog.Logger) { l.WithGroup("g").InfoContext(spanCtx, "m", "k", "v") },
			map[string]any{"g": map[string]any{"k": "v", "trace_id": traceID, "span_id": spanID}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			c.log(slog.New(durablyotel.LogHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{
				ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
					if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey || a.Key == slog.MessageKey) {
						return slog.Attr{}
					}
					return a
				},
			}))))
			var got map[string]any
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("%q: %v", buf.String(), err)
			}
			gb, _ := json.Marshal(got)
			wb, _ := json.Marshal(c.want)
			if !bytes.Equal(gb, wb) {
				t.Fatalf("logged %s, want %s", gb, wb)
			}
		})
	}
}

// The handler passes Enabled through: a level its handler drops is not
// logged.
func TestLogHandlerKeepsTheLevel(t *testing.T) {
	h := durablyotel.LogHandler(slog.NewJSONHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if h.Enabled(context.Background(), slog.LevelInfo) || !h.Enabled(context.Background(), slog.LevelWarn) {
		t.Fatal("Enabled differs from the wrapped handler's")
	}
}
