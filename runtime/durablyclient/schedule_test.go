package durablyclient_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyclient"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/runtime/durablytest"
)

// TestTriggerScheduleOptions: RunAt, Delay and Priority travel as runAt,
// delayMs and priority, and the run read back carries runAt,
// priority and attempt.
func TestTriggerScheduleOptions(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	env := durablytest.New(t, durably.Config{})
	env.Clock.Set(now)
	e := env.Engine
	durably.MustRegister(e, &durably.Job[int, int]{Name: "j",
		Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) { return in, nil }})
	h, err := durablyhttp.New(e, durablyhttp.Options[struct{}, durably.MapLabels]{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c := durablyclient.New[durably.MapLabels](srv.URL)
	five := 5
	cases := []struct {
		name     string
		opts     durablyclient.TriggerOptions[durably.MapLabels]
		runAt    time.Time
		priority int
	}{
		{"none", durablyclient.TriggerOptions[durably.MapLabels]{}, time.Time{}, 0},
		{"run-at", durablyclient.TriggerOptions[durably.MapLabels]{RunAt: now.Add(time.Hour).In(time.FixedZone("x", 3600))}, now.Add(time.Hour), 0},
		{"delay and priority", durablyclient.TriggerOptions[durably.MapLabels]{Delay: 90 * time.Second, Priority: &five}, now.Add(90 * time.Second), 5},
		// delayMs is whole milliseconds: a delay between two is rounded up,
		// never down to an earlier start (or to 0, at once).
		{"sub-millisecond delay", durablyclient.TriggerOptions[durably.MapLabels]{Delay: 1500 * time.Microsecond}, now.Add(2 * time.Millisecond), 0},
		{"delay under a millisecond", durablyclient.TriggerOptions[durably.MapLabels]{Delay: time.Microsecond}, now.Add(time.Millisecond), 0},
	}
	for _, tc := range cases {
		res, err := c.Trigger(ctx, "j", 1, tc.opts)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		run, err := c.GetRun(ctx, res.RunID)
		if err != nil || run == nil {
			t.Fatalf("%s: get run: %v %v", tc.name, run, err)
		}
		if !run.RunAt.Equal(tc.runAt) || run.Priority != tc.priority || run.Attempt != 0 {
			t.Errorf("%s: run at %v priority %d attempt %d, want %v %d 0", tc.name, run.RunAt, run.Priority, run.Attempt, tc.runAt, tc.priority)
		}
	}
}
