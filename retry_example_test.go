package durably_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sync"
	"time"

	"github.com/durably-go/durably"
)

// movableClock is a Config.Now that the examples move by hand, so that a
// retry's backoff or a sleep passes at once and deterministically.
type movableClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *movableClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *movableClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// A step with its own retry policy: it fails twice, and each failure hands
// the run back until its next attempt (no worker slot is held meanwhile).
// The step history keeps every attempt.
func ExampleWithStepRetry() {
	clock := &movableClock{t: time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)}
	e, cleanup := openEngine(durably.Config{Now: clock.Now, PreserveSteps: true})
	defer cleanup()
	calls := 0
	job := durably.MustRegister(e, &durably.Job[string, string]{
		Name: "fetch",
		Run: func(ctx context.Context, s *durably.StepContext, url string) (string, error) {
			return durably.RunStep(s, "get", func(ctx context.Context) (string, error) {
				if calls++; calls < 3 {
					return "", fmt.Errorf("503 from %s", url)
				}
				return "200 OK", nil
			}, durably.WithStepRetry(durably.RetryPolicy{MaxAttempts: 5, Backoff: durably.BackoffExponential, Initial: time.Second}))
		},
	})
	ctx := context.Background()
	res, err := job.Trigger(ctx, "https://example.com")
	if err != nil {
		log.Fatal(err)
	}
	for range 3 {
		if _, err := e.ProcessUntilIdle(ctx, "", 0); err != nil {
			log.Fatal(err)
		}
		run, _ := job.GetRun(ctx, res.Run.ID)
		if run.Status == durably.StatusPending {
			fmt.Println("retry", run.Attempt, "at", run.RunAt.Format(time.TimeOnly))
		} else {
			fmt.Println(run.Status, run.Output)
		}
		clock.Advance(time.Minute)
	}
	steps, _ := e.GetSteps(ctx, res.Run.ID)
	for _, st := range steps {
		fmt.Println(st.Name, st.Attempt, st.Status, st.Error)
	}
	// Output:
	// retry 1 at 10:00:01
	// retry 2 at 10:01:02
	// completed 200 OK
	// get 1 failed 503 from https://example.com
	// get 2 failed 503 from https://example.com
	// get 3 completed
}

// Permanent fails a step at once, whatever the retry policy says.
func ExamplePermanent() {
	e, cleanup := openEngine(durably.Config{})
	defer cleanup()
	job := durably.MustRegister(e, &durably.Job[string, string]{
		Name:  "charge",
		Retry: &durably.RetryPolicy{MaxAttempts: 10},
		Run: func(ctx context.Context, s *durably.StepContext, card string) (string, error) {
			return durably.RunStep(s, "charge", func(ctx context.Context) (string, error) {
				return "", durably.Permanent(errors.New("card declined"))
			})
		},
	})
	ctx := context.Background()
	res, err := job.Trigger(ctx, "4242")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := e.ProcessUntilIdle(ctx, "", 0); err != nil {
		log.Fatal(err)
	}
	run, _ := job.GetRun(ctx, res.Run.ID)
	fmt.Println(run.Status, run.Error, "after", run.Attempt, "retries")
	// Output:
	// failed card declined after 0 retries
}

// A durable sleep hands the run back until its wake time: no slot, no
// lease, and a restart meanwhile loses nothing. At the wake time the run
// resumes after the sleep; the steps before it are not run again.
func ExampleSleep() {
	clock := &movableClock{t: time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)}
	e, cleanup := openEngine(durably.Config{Now: clock.Now})
	defer cleanup()
	job := durably.MustRegister(e, &durably.Job[string, string]{
		Name: "follow-up",
		Run: func(ctx context.Context, s *durably.StepContext, user string) (string, error) {
			if _, err := durably.RunStep(s, "welcome", func(ctx context.Context) (string, error) {
				fmt.Println("welcome mail to", user)
				return "sent", nil
			}); err != nil {
				return "", err
			}
			if err := durably.Sleep(s, "wait a day", 24*time.Hour); err != nil {
				return "", err // ErrSuspended: return it
			}
			return durably.RunStep(s, "tips", func(ctx context.Context) (string, error) {
				fmt.Println("tips mail to", user)
				return "sent", nil
			})
		},
	})
	ctx := context.Background()
	res, err := job.Trigger(ctx, "ada")
	if err != nil {
		log.Fatal(err)
	}
	for _, wait := range []time.Duration{0, time.Hour, 23 * time.Hour} {
		clock.Advance(wait)
		if _, err := e.ProcessUntilIdle(ctx, "", 0); err != nil {
			log.Fatal(err)
		}
		run, _ := job.GetRun(ctx, res.Run.ID)
		fmt.Println(clock.Now().Format(time.DateTime), run.Status)
	}
	// Output:
	// welcome mail to ada
	// 2026-05-04 10:00:00 pending
	// 2026-05-04 11:00:00 pending
	// tips mail to ada
	// 2026-05-05 10:00:00 completed
}
