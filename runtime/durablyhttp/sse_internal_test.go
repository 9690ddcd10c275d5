package durablyhttp

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
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

// discardStream is a flushable ResponseWriter that keeps only a count, so
// that what a stream holds is the stream's own.
type discardStream struct {
	h http.Header
	n int
}

func (d *discardStream) Header() http.Header         { return d.h }
func (d *discardStream) WriteHeader(int)             {}
func (d *discardStream) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }
func (d *discardStream) Flush()                      {}

// sharedItems is what the hub hands its list streams: events encoded once.
func sharedItems(n int) []item {
	items := make([]item, n)
	for i := range items {
		e := &durably.Event{Type: durably.EventStepComplete, RunID: fmt.Sprintf("run-%d", i), JobName: "echo", StepName: "s"}
		data, _ := appendProjection(nil, e)
		items[i] = item{ev: e, data: data}
	}
	return items
}

// TestStreamHoldsNoBufferBetweenBursts: once a burst is written, a stream
// keeps no write buffer of its own; a thousand idle streams each kept one
// as large as their largest burst, most of the server's memory per client.
// The bytes written stay the frames of H-052.
func TestStreamHoldsNoBufferBetweenBursts(t *testing.T) {
	encode := func(b []byte, e *durably.Event) ([]byte, bool) { return append(b, e.RunID...), true }
	for _, tc := range []struct {
		name  string
		burst func(s *sse)
		want  string
	}{
		{"shared encodings", func(s *sse) {
			for _, it := range sharedItems(200) {
				s.handle(&it, time.Now())
			}
			s.flush()
		}, ""},
		{"own encodings", func(s *sse) {
			s.send(&item{ev: &durably.Event{RunID: "a"}})
			s.send(&item{ev: &durably.Event{RunID: "b"}})
			s.flush()
		}, "data: a\n\ndata: b\n\n"},
		{"heartbeat", func(s *sse) { s.heartbeat() }, ": ping\n\n"},
		{"nothing encodable", func(s *sse) {
			s.encode = func(b []byte, _ *durably.Event) ([]byte, bool) { return b, false }
			s.send(&item{ev: &durably.Event{RunID: "a"}})
			s.flush()
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			s := newSSE(rec, 0, 0, encode)
			tc.burst(s)
			if s.out != nil || s.outBuf != nil {
				t.Fatalf("after the burst the stream holds a buffer of %d bytes", cap(s.out))
			}
			if tc.want != "" && rec.Body.String() != tc.want {
				t.Fatalf("stream %q, want %q", rec.Body.String(), tc.want)
			}
		})
	}
}

// TestQueueSharesBatches: the streams of one filter queue the hub's batch
// itself, not a copy each that grows with the stream's backlog and stays.
func TestQueueSharesBatches(t *testing.T) {
	batch := sharedItems(3)
	var got [][]item
	for range 2 {
		q := newQueue(8)
		q.push(batch, true)
		q.push(batch, true)
		taken, overflowed := q.take(nil)
		if overflowed || len(taken) != 2 {
			t.Fatalf("took %d batches, overflowed %v; want 2, false", len(taken), overflowed)
		}
		got = append(got, taken...)
		if q.push(batch, true); q.n != len(batch) || q.overflowed {
			t.Fatalf("after a take the queue counts %d items, overflowed %v; want %d, false", q.n, q.overflowed, len(batch))
		}
	}
	for i, b := range got {
		if &b[0] != &batch[0] {
			t.Fatalf("queued batch %d is a copy of the hub's", i)
		}
	}
}

// BenchmarkListStreamEvent: a list stream's cost per fan-out, from the
// hub's push to the write: queue, throttle, frame, flush.
func BenchmarkListStreamEvent(b *testing.B) {
	for _, n := range []int{1, 16} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			batch := sharedItems(n)
			w := &discardStream{h: http.Header{}}
			s := newSSE(w, 0, 100*time.Millisecond, appendProjection)
			q := newQueue(1024)
			var batches [][]item
			b.ReportAllocs()
			for b.Loop() {
				q.push(batch, true)
				<-q.signal
				batches, _ = q.take(batches)
				now := time.Now()
				for _, bt := range batches {
					for i := range bt {
						s.handle(&bt[i], now)
					}
				}
				clear(batches)
				s.flush()
			}
			b.SetBytes(int64(w.n / b.N))
		})
	}
}

// TestFanoutWakesOnePhase: under load a fan-out queues events for every
// stream but wakes only the streams of its phase, so that a tick costs a
// quarter of the writes instead of a burst of all of them; the next ticks
// wake the others with what was queued, and after a quiet spell all wake
// at once.
func TestFanoutWakesOnePhase(t *testing.T) {
	hb := &hub{subs: map[*listSub]struct{}{}}
	var subs []*listSub
	for i := range 2 * fanoutPhases {
		sub := newListSub(nil, nil, 64)
		sub.phase = i % fanoutPhases
		hb.subs[sub] = struct{}{}
		subs = append(subs, sub)
	}
	woken := func() (phases []int) {
		for _, sub := range subs {
			select {
			case <-sub.q.signal:
				phases = append(phases, sub.phase)
			default:
			}
		}
		slices.Sort(phases)
		return phases
	}
	event := &durably.Event{Type: durably.EventRunTrigger, RunID: "r", JobName: "j"}
	var f fanout
	hb.pending = []*durably.Event{event}
	if !f.run(hb, 1) {
		t.Fatal("the fan-out had no events")
	}
	if got := woken(); !slices.Equal(got, []int{1, 1}) {
		t.Fatalf("woken phases %v, want [1 1]", got)
	}
	for _, sub := range subs {
		if sub.q.n != 1 {
			t.Fatalf("a stream of phase %d has %d events queued, want 1", sub.phase, sub.q.n)
		}
	}
	if f.run(hb, 2); !slices.Equal(woken(), []int{2, 2}) {
		t.Fatal("the next tick did not wake the next phase with what was queued")
	}
	hb.pending = []*durably.Event{event}
	if f.run(hb, -1); !slices.Equal(woken(), []int{0, 0, 1, 1, 2, 2, 3, 3}) {
		t.Fatal("a fan-out after a quiet spell did not wake every stream")
	}
}
