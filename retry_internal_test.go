package durably

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	var b backoff
	for i, base := range []time.Duration{50, 100, 200, 400, 800, 1000, 1000, 1000} {
		base *= time.Millisecond
		d := b.next()
		if d < base*3/4 || d > base*5/4 {
			t.Fatalf("attempt %d waits %v, want %v ± 25%%", i+1, d, base)
		}
	}
	b.reset()
	if d := b.next(); d > retryMin*5/4 {
		t.Fatalf("after reset: %v, want about %v", d, retryMin)
	}
}

func TestOutageLogsStartAndEndOnce(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	var o outage
	err := errors.New("connection refused")
	o.ok(logger) // no outage: nothing to say
	for range 50 {
		o.failed(logger, "claim", err)
	}
	o.ok(logger)
	o.ok(logger)
	o.failed(logger, "record step", err) // a second outage
	o.ok(logger)
	out := buf.String()
	for msg, want := range map[string]int{"database unavailable": 2, "database reachable again": 2, "still unavailable": 0} {
		if n := strings.Count(out, msg); n != want {
			t.Errorf("%q logged %d times, want %d:\n%s", msg, n, want, out)
		}
	}
}
