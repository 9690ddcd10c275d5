package ulid

import (
	"strings"
	"testing"
	"time"
)

func TestMonotonicWithinAMillisecond(t *testing.T) {
	var g Generator
	now := time.UnixMilli(1_700_000_000_000)
	prev := g.New(now)
	for i := 0; i < 10000; i++ {
		id := g.New(now)
		if id <= prev {
			t.Fatalf("id %d not increasing: %s after %s", i, id, prev)
		}
		prev = id
	}
}

func TestClockGoingBackwardsStillIncreases(t *testing.T) {
	var g Generator
	a := g.New(time.UnixMilli(2_000_000_000_000))
	b := g.New(time.UnixMilli(1_000_000_000_000))
	if b <= a {
		t.Fatalf("%s after %s", b, a)
	}
}

func TestEncodingOfTimestamp(t *testing.T) {
	// The first 10 characters encode the millisecond timestamp.
	cases := []struct {
		ms   int64
		want string
	}{
		{0, "0000000000"},
		{1, "0000000001"},
		{32, "0000000010"},
		{1_469_918_176_385, "01ARYZ6S41"}, // the example of the ULID specification
	}
	for _, c := range cases {
		var g Generator
		id := g.New(time.UnixMilli(c.ms))
		if len(id) != 26 {
			t.Fatalf("len(%q) = %d", id, len(id))
		}
		if !strings.HasPrefix(id, c.want) {
			t.Errorf("ms %d: id %s, want prefix %s", c.ms, id, c.want)
		}
	}
}
