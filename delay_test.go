package durably_test

import (
	"context"
	"testing"
	"time"

	"github.com/durably-go/durably"
)

// TestRegisterRefusesNegativeLimits: a negative limit or timeout is a
// definition error naming the job and the field, not "none".
func TestRegisterRefusesNegativeLimits(t *testing.T) {
	e, cleanup := openEngine(durably.Config{})
	defer cleanup()
	run := func(ctx context.Context, s *durably.StepContext, in int) (int, error) { return in, nil }
	for _, c := range []struct {
		job  *durably.Job[int, int]
		want string
	}{
		{&durably.Job[int, int]{Name: "neg", MaxRunning: -1}, `durably: job "neg": MaxRunning must not be negative, got -1`},
		{&durably.Job[int, int]{Name: "neg-tenant", MaxRunningPerTenant: -2}, `durably: job "neg-tenant": MaxRunningPerTenant must not be negative, got -2`},
		{&durably.Job[int, int]{Name: "neg-timeout", Timeout: -time.Second}, `durably: job "neg-timeout": Timeout must not be negative, got -1s`},
		{&durably.Job[int, int]{Name: "neg-step", StepTimeout: -time.Millisecond}, `durably: job "neg-step": StepTimeout must not be negative, got -1ms`},
		{&durably.Job[int, int]{Name: "none"}, ""},
		{&durably.Job[int, int]{Name: "all", MaxRunning: 3, MaxRunningPerTenant: 1, Timeout: time.Hour, StepTimeout: time.Minute}, ""},
	} {
		c.job.Run = run
		_, err := durably.Register(e, c.job)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.job.Name, err)
		case c.want != "" && (err == nil || err.Error() != c.want):
			t.Errorf("%s: %v, want %q", c.job.Name, err, c.want)
		}
	}
}
