package typed_test

import (
	"context"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablytest"
	"github.com/durably-go/durably/runtime/typed"
)

// TestTriggerOptionsSchedule: RunAt, Delay and Priority of the typed
// options (and of Options through WithLabels, as generated code passes
// them) reach the run.
func TestTriggerOptionsSchedule(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	env := durablytest.New(t, durably.Config{})
	env.Clock.Set(now)
	e := env.Engine
	j, err := durably.RegisterTyped[int, int, durably.MapLabels](e, &durably.Job[int, int]{Name: "j",
		Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) { return in, nil }})
	if err != nil {
		t.Fatal(err)
	}
	three := 3
	cases := []struct {
		name     string
		opts     typed.TriggerOptions[durably.MapLabels]
		runAt    time.Time
		priority int
	}{
		{"none", typed.TriggerOptions[durably.MapLabels]{}, time.Time{}, 0},
		{"run-at", typed.TriggerOptions[durably.MapLabels]{RunAt: now.Add(time.Hour)}, now.Add(time.Hour), 0},
		{"delay and priority", typed.TriggerOptions[durably.MapLabels]{Delay: time.Minute, Priority: &three}, now.Add(time.Minute), 3},
		{"through WithLabels", typed.WithLabels(durably.MapLabels{}, typed.Options{Delay: time.Second, Priority: &three}), now.Add(time.Second), 3},
	}
	for _, c := range cases {
		res, err := j.Trigger(ctx, 1, typed.Apply(c.opts)...)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if run := res.Run; !run.RunAt.Equal(c.runAt) || run.Priority != c.priority {
			t.Errorf("%s: run at %v priority %d, want %v %d", c.name, run.RunAt, run.Priority, c.runAt, c.priority)
		}
	}
}
