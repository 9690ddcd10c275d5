package durablyhttp

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/store"
)

// TestBurstKeepsHeldProgress: within one burst, a throttled progress is
// held while later events of the same burst are handled (H-053); the held
// one must still be that progress when it is finally sent, not whichever
// event the burst read last.
func TestBurstKeepsHeldProgress(t *testing.T) {
	rec := httptest.NewRecorder()
	s := newSSE(rec, 0, time.Hour, func(b []byte, e *durably.Event) ([]byte, bool) {
		b = append(b, string(e.Type)...)
		if e.Progress != nil {
			b = append(b, ' ', byte('0'+e.Progress.Current))
		}
		if e.StepName != "" {
			b = append(b, ' ')
			b = append(b, e.StepName...)
		}
		return b, true
	})
	progress := func(n int) durably.Event {
		return durably.Event{Type: durably.EventRunProgress, RunID: "r", Progress: &store.Progress{Current: n}}
	}
	events := make(chan durably.Event, 8)
	for _, e := range []durably.Event{
		progress(2), // held: progress 1 was sent just now
		{Type: durably.EventStepStart, RunID: "r", StepName: "b"},
		progress(3), // replaces the held 2
		{Type: durably.EventStepStart, RunID: "r", StepName: "c"},
		{Type: durably.EventRunComplete, RunID: "r"},
	} {
		events <- e
	}
	if over := s.takeBurst(progress(1), events); !over {
		t.Fatal("run:complete did not end the stream")
	}
	s.drainHeld()
	got := strings.ReplaceAll(strings.TrimSpace(rec.Body.String()), "\n\n", " | ")
	want := "data: run:progress 1 | data: step:start b | data: step:start c | data: run:progress 3 | data: run:complete"
	if got != want {
		t.Fatalf("stream\n got %s\nwant %s", got, want)
	}
}
