package docs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablytest"
)

// The jobs of docs/testing.md's test: a signup that welcomes the user and
// triggers a reminder, and a trial that ends after a durable sleep of 14
// days.

type Signup struct {
	Email string `json:"email"`
}

var reminderJob = &durably.Job[Signup, string]{
	Name: "reminder",
	Run: func(ctx context.Context, s *durably.StepContext, in Signup) (string, error) {
		return durably.RunStep(s, "remind", func(ctx context.Context) (string, error) { return "reminded " + in.Email, nil })
	},
}

func signupJob(reminders *durably.JobHandle[Signup, string]) *durably.Job[Signup, string] {
	return &durably.Job[Signup, string]{
		Name: "signup",
		Run: func(ctx context.Context, s *durably.StepContext, in Signup) (string, error) {
			_, err := durably.RunStep(s, "schedule-reminder", func(ctx context.Context) (string, error) {
				res, err := reminders.Trigger(ctx, in, durably.WithLabels(map[string]string{"user": in.Email}))
				if err != nil {
					return "", err
				}
				return res.Run.ID, nil
			})
			return "welcomed " + in.Email, err
		},
	}
}

var trialJob = &durably.Job[Signup, string]{
	Name: "trial",
	Run: func(ctx context.Context, s *durably.StepContext, in Signup) (string, error) {
		if err := durably.Sleep(s, "trial-period", 14*24*time.Hour); err != nil {
			return "", err
		}
		return "trial over for " + in.Email, nil
	},
}

// TestSignup is the test docs/testing.md shows, with its checks.
func TestSignup(t *testing.T) {
	env := durablytest.New(t, durably.Config{}) // temporary SQLite, migrated, fake clock; closed by t.Cleanup
	reminders := durably.MustRegister(env.Engine, reminderJob)
	signups := durably.MustRegister(env.Engine, signupJob(reminders))
	trial := durably.MustRegister(env.Engine, trialJob)
	in := Signup{Email: "ada@example.com"}

	out, err := durablytest.TriggerAndRun(t, signups, in)
	// out.Output is the typed output; err is the run's error (durably.ErrRunFailed, ...)
	if err != nil || out.Output != "welcomed ada@example.com" {
		t.Fatalf("signup: %+v, %v", out, err)
	}

	run := durablytest.RequireTriggered(t, reminders, in,
		durablytest.Labels(map[string]string{"user": "ada@example.com"}))
	durablytest.RequireNotTriggered(t, reminders, Signup{Email: "bob@example.com"})
	if run.Status != durably.StatusCompleted {
		t.Fatalf("the reminder is %s: TriggerAndRun processes what the run triggers", run.Status)
	}

	_ = durably.AddSchedule(reminders, durably.Schedule[Signup]{Name: "daily", Cron: "@daily", Input: in})
	env.Advance(72 * time.Hour) // fires each tick on the way and processes what is due
	// The signup's, the latest past tick's (a new schedule fires it at
	// once) and one per day.
	if runs, err := reminders.ListRuns(context.Background(), durably.RunFilter{}); err != nil || len(runs) != 5 {
		t.Fatalf("%d reminders after 3 days of a daily schedule and one signup, want 5, %v", len(runs), err)
	}

	out, err = durablytest.TriggerAndRun(t, trial, in) // sleeps 14 days: errors.Is(err, durablytest.ErrNotFinished)
	if !errors.Is(err, durablytest.ErrNotFinished) {
		t.Fatalf("a trial that sleeps: %v", err)
	}
	env.Advance(15 * 24 * time.Hour) // wakes it at its wake time (sleeps, retries, delayed runs alike)
	out, err = durablytest.Result(t, trial, out.RunID)
	if err != nil || out.Output != "trial over for ada@example.com" {
		t.Fatalf("the trial after 15 days: %+v, %v", out, err)
	}
}
