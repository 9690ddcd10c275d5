package durably

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/durably-go/durably/store"
)

// transportSamples are events as the engine publishes them (D3): every
// field of every kind, set.
func transportSamples() []Event {
	total, msg := 3, "step 2 <of> 3"
	ts := time.Date(2026, 11, 28, 12, 0, 0, 123_000_000, time.UTC)
	base := Event{Timestamp: ts, RunID: "01JRUN", JobName: "job", Labels: map[string]string{"organizationId": "org-a", "env": "prod"}}
	with := func(f func(*Event)) Event {
		e := base
		f(&e)
		return e
	}
	return []Event{
		with(func(e *Event) { e.Type, e.Input = EventRunTrigger, json.RawMessage(`{"n":1}`) }),
		with(func(e *Event) {
			e.Type, e.SkippedInput, e.SkippedLabels = EventRunCoalesced, json.RawMessage(`[1,"two"]`), map[string]string{"k": "v"}
		}),
		with(func(e *Event) {
			e.Type, e.Input, e.LeaseOwner, e.LeaseExpiresAt = EventRunLeased, json.RawMessage(`null`), "worker_01J", ts.Add(30*time.Second)
		}),
		with(func(e *Event) {
			e.Type, e.Progress = EventRunProgress, &store.Progress{Current: 2, Total: &total, Message: &msg}
		}),
		with(func(e *Event) {
			e.Type, e.Output, e.Duration = EventRunComplete, json.RawMessage(`{"sum":6}`), 1500*time.Millisecond
		}),
		with(func(e *Event) { e.Type, e.Error, e.FailedStepName = EventRunFail, "boom \"quoted\"\n", "step-2" }),
		with(func(e *Event) { e.Type, e.StepName, e.StepIndex = EventStepStart, "step-1", 1 }),
		with(func(e *Event) {
			e.Type, e.Level, e.Message, e.Data, e.StepName = EventLogWrite, "warn", "héllo", json.RawMessage(`{"a":[true,null]}`), "s"
		}),
		with(func(e *Event) { e.Type, e.Labels = EventRunDelete, nil }),
	}
}

func TestTransportRoundTrip(t *testing.T) {
	for _, ev := range transportSamples() {
		t.Run(string(ev.Type), func(t *testing.T) {
			b, err := ev.encodeTransport()
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeTransport(b)
			if err != nil {
				t.Fatalf("decode %s: %v", b, err)
			}
			if !got.Remote() {
				t.Fatal("a decoded event is not marked remote: it would be published again")
			}
			if !got.Timestamp.Equal(ev.Timestamp) || !got.LeaseExpiresAt.Equal(ev.LeaseExpiresAt) {
				t.Fatalf("times %v %v, want %v %v", got.Timestamp, got.LeaseExpiresAt, ev.Timestamp, ev.LeaseExpiresAt)
			}
			got.remote, got.Timestamp, got.LeaseExpiresAt = false, ev.Timestamp, ev.LeaseExpiresAt
			if !reflect.DeepEqual(got, ev) {
				t.Fatalf("round trip of %s:\n got %+v\nwant %+v", b, got, ev)
			}
		})
	}
}

func TestDecodeTransportRejectsMalformed(t *testing.T) {
	for _, in := range []string{
		``, ` `, `null`, `{}`, `[]`, `"run:trigger"`, `42`,
		`{"t":""}`,
		`{"r":"01JRUN"}`,
		`{"t":"run:trigger"`,
		`{"t":"run:trigger"} trailing`,
		`{"t":1}`,
		`{"t":"run:trigger","ts":"yesterday"}`,
		`{"t":"run:trigger","d":1.5}`,
		`{"t":"run:progress","p":{"current":"two"}}`,
		`{"t":"run:trigger","l":{"k":1}}`,
		`{"t":"run:trigger","in":{"unterminated":}`,
		"\xff\xfe",
	} {
		if ev, err := decodeTransport([]byte(in)); err == nil {
			t.Errorf("decodeTransport(%q) = %+v, want an error", in, ev)
		}
	}
}

// FuzzDecodeTransport feeds decodeTransport what another process, or a
// damaged row, could deliver: it never panics, refuses what is not an
// event, and what it accepts survives encodeTransport unchanged.
func FuzzDecodeTransport(f *testing.F) {
	for _, ev := range transportSamples() {
		b, err := ev.encodeTransport()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"t":"run:trigger","ts":"2026-11-28T12:00:00Z","in":{ "spaced" : [ 1 , 2 ] }}`))
	f.Add([]byte(`{"t":"x","l":null,"p":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := decodeTransport(b)
		if err != nil {
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		if ev.Type == "" || !ev.Remote() {
			t.Fatalf("accepted %q as %+v: no type, or not marked remote", b, ev)
		}
		// Raw members are compacted on the way out, so the first
		// re-encoding may differ from b; from there it is a fixed point.
		b2, err := ev.encodeTransport()
		if err != nil {
			t.Fatalf("re-encode of %q: %v", b, err)
		}
		ev2, err := decodeTransport(b2)
		if err != nil {
			t.Fatalf("decode of re-encoded %q: %v", b2, err)
		}
		b3, err := ev2.encodeTransport()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b2, b3) {
			t.Fatalf("not a fixed point:\n%s\n%s", b2, b3)
		}
		if ev2.Type != ev.Type || ev2.RunID != ev.RunID || !ev2.Timestamp.Equal(ev.Timestamp) || ev2.StepIndex != ev.StepIndex || ev2.Duration != ev.Duration {
			t.Fatalf("round trip changed the event:\n%+v\n%+v", ev, ev2)
		}
	})
}
