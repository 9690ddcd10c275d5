package storekit_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably/internal/storekit"
	"github.com/durably-go/durably/store"
)

func TestDroppedWrites(t *testing.T) {
	unavailable := fmt.Errorf("commit group: conn closed: %w", store.ErrUnavailable)
	other := errors.New("progress: value too long")
	type drop struct {
		at  time.Duration
		err error
	}
	tests := []struct {
		name  string
		drops []drop
		lines int
	}{
		{"an outage is logged once per interval", []drop{{0, unavailable}, {time.Second, unavailable}, {5 * time.Second, unavailable}, {11 * time.Second, unavailable}}, 2},
		{"other failures are logged every time", []drop{{0, other}, {time.Millisecond, other}, {2 * time.Millisecond, unavailable}, {3 * time.Millisecond, other}}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			start := time.Unix(1_000_000, 0)
			var now time.Time
			d := &storekit.DroppedWrites{Logger: slog.New(slog.NewTextHandler(&buf, nil)), Now: func() time.Time { return now }}
			for _, drop := range tt.drops {
				now = start.Add(drop.at)
				d.Report(drop.err)
			}
			if got := strings.Count(buf.String(), "\n"); got != tt.lines {
				t.Fatalf("%d log lines, want %d:\n%s", got, tt.lines, buf.String())
			}
		})
	}
}
