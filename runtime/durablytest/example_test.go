package durablytest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablytest"
)

// In a test these examples take the *testing.T of the test function;
// exampleT stands in for it so that the examples run and check their
// output.
type exampleT struct {
	testing.TB
	dir      string
	cleanups []func()
}

func newExampleT() *exampleT { return &exampleT{} }

func (t *exampleT) Helper()                  {}
func (t *exampleT) Context() context.Context { return context.Background() }
func (t *exampleT) Cleanup(f func())         { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
func (t *exampleT) Errorf(format string, args ...any) { fmt.Printf(format+"\n", args...) }
func (t *exampleT) TempDir() string {
	dir, err := os.MkdirTemp("", "durablytest-example-")
	if err != nil {
		panic(err)
	}
	t.dir = dir
	return dir
}

// finish runs the cleanups, as the testing package does when a test ends.
func (t *exampleT) finish() {
	for _, f := range slices.Backward(t.cleanups) {
		f()
	}
	if t.dir != "" {
		_ = os.RemoveAll(t.dir)
	}
}

type Signup struct {
	Email string `json:"email"`
}

type Welcome struct {
	Subject string `json:"subject"`
}

// signupJob welcomes a new user, and triggers a reminder mail labelled
// with the user's address.
func signupJob(reminders *durably.JobHandle[Signup, string]) *durably.Job[Signup, Welcome] {
	return &durably.Job[Signup, Welcome]{
		Name: "signup",
		Run: func(ctx context.Context, s *durably.StepContext, in Signup) (Welcome, error) {
			if !strings.Contains(in.Email, "@") {
				return Welcome{}, fmt.Errorf("email %q: no @", in.Email)
			}
			_, err := durably.RunStep(s, "schedule-reminder", func(ctx context.Context) (string, error) {
				res, err := reminders.Trigger(ctx, in, durably.WithLabels(map[string]string{"user": in.Email}))
				if err != nil {
					return "", err
				}
				return res.Run.ID, nil
			})
			return Welcome{Subject: "Welcome, " + in.Email}, err
		},
	}
}

var reminderJob = &durably.Job[Signup, string]{
	Name: "reminder",
	Run: func(ctx context.Context, s *durably.StepContext, in Signup) (string, error) {
		return "reminded " + in.Email, nil
	},
}

// New gives a test an engine of its own on a temporary SQLite file, with
// a fake clock; the test's cleanup stops it and closes the store.
func ExampleNew() {
	t := newExampleT() // in a test: the test's t
	defer t.finish()

	env := durablytest.New(t, durably.Config{})
	reminders := durably.MustRegister(env.Engine, reminderJob)
	fmt.Println(env.Clock.Now().Format(time.RFC3339), reminders.Name())
	// Output: 2026-01-01T00:00:00Z reminder
}

// TriggerAndRun runs a job to its end on the test's goroutine, with the
// runs it triggers, and returns its typed output or the run's error.
func ExampleTriggerAndRun() {
	t := newExampleT()
	defer t.finish()
	env := durablytest.New(t, durably.Config{})
	reminders := durably.MustRegister(env.Engine, reminderJob)
	signups := durably.MustRegister(env.Engine, signupJob(reminders))

	out, err := durablytest.TriggerAndRun(t, signups, Signup{Email: "ada@example.com"})
	fmt.Println(out.Output.Subject, err)

	_, err = durablytest.TriggerAndRun(t, signups, Signup{Email: "nobody"})
	fmt.Println(errors.Is(err, durably.ErrRunFailed), err)
	// Output:
	// Welcome, ada@example.com <nil>
	// true email "nobody": no @
}

// RequireTriggered finds the one run of a job triggered with an input
// (and labels, a status, keys); on failure it lists the job's runs and
// what differs in each.
func ExampleRequireTriggered() {
	t := newExampleT()
	defer t.finish()
	env := durablytest.New(t, durably.Config{})
	reminders := durably.MustRegister(env.Engine, reminderJob)
	signups := durably.MustRegister(env.Engine, signupJob(reminders))
	if _, err := durablytest.TriggerAndRun(t, signups, Signup{Email: "ada@example.com"}); err != nil {
		t.Fatalf("%v", err)
	}

	run := durablytest.RequireTriggered(t, reminders, Signup{Email: "ada@example.com"},
		durablytest.Labels(map[string]string{"user": "ada@example.com"}),
		durablytest.Status(durably.StatusCompleted))
	fmt.Println(run.Input.Email, run.Output)
	// Output: ada@example.com reminded ada@example.com
}

// RequireNotTriggered checks that no run of a job has an input; with
// AnyInput, that the job has no run (meeting the other criteria) at all.
func ExampleRequireNotTriggered() {
	t := newExampleT()
	defer t.finish()
	env := durablytest.New(t, durably.Config{})
	reminders := durably.MustRegister(env.Engine, reminderJob)
	signups := durably.MustRegister(env.Engine, signupJob(reminders))
	_, err := durablytest.TriggerAndRun(t, signups, Signup{Email: "nobody"})
	fmt.Println(err)

	durablytest.RequireNotTriggered(t, reminders, Signup{}, durablytest.AnyInput())
	fmt.Println("no reminder")
	// Output:
	// email "nobody": no @
	// no reminder
}

// Result reads the outcome of a run triggered some other way, here the
// reminder a signup triggered.
func ExampleResult() {
	t := newExampleT()
	defer t.finish()
	env := durablytest.New(t, durably.Config{})
	reminders := durably.MustRegister(env.Engine, reminderJob)
	signups := durably.MustRegister(env.Engine, signupJob(reminders))
	if _, err := durablytest.TriggerAndRun(t, signups, Signup{Email: "ada@example.com"}); err != nil {
		t.Fatalf("%v", err)
	}

	run := durablytest.RequireTriggered(t, reminders, Signup{Email: "ada@example.com"})
	out, err := durablytest.Result(t, reminders, run.ID)
	fmt.Println(out.Output, err)
	// Output: reminded ada@example.com <nil>
}

// ProcessDue fires the schedules due on the fake clock and processes every
// run that is claimable, without moving the clock.
func ExampleEnv_ProcessDue() {
	t := newExampleT()
	defer t.finish()
	env := durablytest.New(t, durably.Config{})
	reminders := durably.MustRegister(env.Engine, reminderJob)
	if _, err := reminders.Trigger(t.Context(), Signup{Email: "ada@example.com"}); err != nil {
		t.Fatalf("%v", err)
	}

	fmt.Println(env.ProcessDue(), "processed")
	// Output: 1 processed
}

// Advance moves the fake clock as a running engine lives through the
// time: every schedule tick in between fires, and what became due runs.
func ExampleEnv_Advance() {
	t := newExampleT()
	defer t.finish()
	env := durablytest.New(t, durably.Config{})
	reminders := durably.MustRegister(env.Engine, reminderJob)
	err := durably.AddSchedule(reminders, durably.Schedule[Signup]{
		Name:     "morning",
		Cron:     "0 9 * * *",
		TimeZone: "Europe/Paris",
		Input:    Signup{Email: "team@example.com"},
		CatchUp:  -1, // no run for the tick before the test began
	})
	if err != nil {
		t.Fatalf("%v", err)
	}

	fmt.Println(env.Advance(72*time.Hour), "runs in three days")
	run := durablytest.RequireTriggered(t, reminders, Signup{Email: "team@example.com"},
		durablytest.IdempotencyKey("schedule:morning:2026-01-02T08:00:00Z"))
	fmt.Println(run.Status, run.CreatedAt.Format(time.RFC3339))
	// Output:
	// 3 runs in three days
	// completed 2026-01-02T08:00:00Z
}

// AdvanceTo moves the clock to a given time, with the same work on the
// way as Advance.
func ExampleEnv_AdvanceTo() {
	t := newExampleT()
	defer t.finish()
	env := durablytest.New(t, durably.Config{})
	reminders := durably.MustRegister(env.Engine, reminderJob)
	if err := durably.AddSchedule(reminders, durably.Schedule[Signup]{
		Name: "monthly", Cron: "@monthly", Input: Signup{Email: "billing@example.com"}, CatchUp: -1,
	}); err != nil {
		t.Fatalf("%v", err)
	}

	fmt.Println(env.AdvanceTo(time.Date(2026, 4, 15, 0, 0, 0, 0, time.UTC)), "runs by mid-April")
	fmt.Println(env.Engine.Schedules()[0].Next.Format(time.DateOnly))
	// Output:
	// 3 runs by mid-April
	// 2026-05-01
}

// A Clock alone is a Config.Now for an engine you build yourself (on
// PostgreSQL, say); TriggerAndRun and the Require helpers work on any
// engine.
func ExampleClock() {
	clock := durablytest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	cfg := durably.Config{Now: clock.Now} // and Store: your store
	_ = cfg
	clock.Advance(90 * time.Minute)
	fmt.Println(clock.Now().Format(time.Kitchen))
	// Output: 1:30AM
}

// A run that sleeps, waits for a retry or was triggered for later is not
// finished after TriggerAndRun (ErrNotFinished says until when); Advance
// wakes it at each of its times, as a running engine would.
func ExampleEnv_Advance_sleep() {
	t := newExampleT()
	defer t.finish()
	env := durablytest.New(t, durably.Config{})
	trial := durably.MustRegister(env.Engine, &durably.Job[Signup, string]{
		Name: "trial",
		Run: func(ctx context.Context, s *durably.StepContext, in Signup) (string, error) {
			if err := durably.Sleep(s, "trial-period", 14*24*time.Hour); err != nil {
				return "", err // the run is handed back until the wake time
			}
			return "trial over for " + in.Email, nil
		},
	})

	out, err := durablytest.TriggerAndRun(t, trial, Signup{Email: "ada@example.com"})
	fmt.Println(errors.Is(err, durablytest.ErrNotFinished))
	env.Advance(15 * 24 * time.Hour)
	out, err = durablytest.Result(t, trial, out.RunID)
	fmt.Println(out.Output, err)
	// Output:
	// true
	// trial over for ada@example.com <nil>
}
