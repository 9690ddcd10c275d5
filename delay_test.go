package durably_test

import (
	"context"
	"testing"

	"github.com/durably-go/durably"
)

// TestRegisterRefusesNegativeMaxRunning: a negative limit is a definition
// error naming the job, not "no limit".
func TestRegisterRefusesNegativeMaxRunning(t *testing.T) {
	e, cleanup := openEngine(durably.Config{})
	defer cleanup()
	run := func(ctx context.Context, s *durably.StepContext, in int) (int, error) { return in, nil }
	for _, c := range []struct {
		name string
		max  int
		want string
	}{
		{"neg", -1, `durably: job "neg": MaxRunning must not be negative, got -1`},
		{"none", 0, ""},
		{"three", 3, ""},
	} {
		_, err := durably.Register(e, &durably.Job[int, int]{Name: c.name, MaxRunning: c.max, Run: run})
		switch {
		case c.want == "" && err != nil:
			t.Errorf("MaxRunning %d: %v", c.max, err)
		case c.want != "" && (err == nil || err.Error() != c.want):
			t.Errorf("MaxRunning %d: %v, want %q", c.max, err, c.want)
		}
	}
}
