package durably_test

import (
	"context"
	"fmt"
	"log"
	"sync"
	"time"

	"github.com/durably-go/durably"
)

// A delayed run waits, pending, until its time on the engine's clock, and
// is claimed from then on (R-200). A fixed clock and ProcessUntilIdle make
// the example deterministic; a started worker claims it within
// milliseconds of its time.
func ExampleWithDelay() {
	var mu sync.Mutex
	clock := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	e, cleanup := openEngine(durably.Config{Now: now})
	defer cleanup()
	cards := durably.MustRegister(e, makeCard)
	ctx := context.Background()
	res, err := cards.Trigger(ctx, Greeting{Name: "ada"}, durably.WithDelay(time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Run.Status, "until", res.Run.RunAt.Format(time.Kitchen))
	n, _ := e.ProcessUntilIdle(ctx, "", 0)
	fmt.Println("processed now:", n)

	mu.Lock()
	clock = clock.Add(time.Hour)
	mu.Unlock()
	n, _ = e.ProcessUntilIdle(ctx, "", 0)
	fmt.Println("processed an hour later:", n)
	// Output:
	// pending until 1:00PM
	// processed now: 0
	// processed an hour later: 1
}

// Runs are claimed by priority, a smaller number first, then oldest first
// (R-203): the job's Priority is the default, WithPriority overrides it.
func ExampleWithPriority() {
	e, cleanup := openEngine(durably.Config{})
	defer cleanup()
	job := *makeCard
	job.Priority = 10 // routine cards
	cards := durably.MustRegister(e, &job)
	ctx := context.Background()
	for _, t := range []struct {
		name string
		opts []durably.Option
	}{{"routine", nil}, {"vip", []durably.Option{durably.WithPriority(0)}}, {"bulk", []durably.Option{durably.WithPriority(20)}}} {
		if _, err := cards.Trigger(ctx, Greeting{Name: t.name}, t.opts...); err != nil {
			log.Fatal(err)
		}
	}
	e.OnEvent(func(ev durably.Event) {
		if ev.Type == durably.EventRunLeased {
			run, _ := cards.GetRun(ctx, ev.RunID)
			fmt.Println(run.Input.Name, run.Priority)
		}
	})
	if _, err := e.ProcessUntilIdle(ctx, "", 0); err != nil {
		log.Fatal(err)
	}
	// Output:
	// vip 0
	// routine 10
	// bulk 20
}

// Job.MaxRunning caps the runs of a job executing at once across every
// process sharing the database (R-204): here three slots, but at most one
// export at a time, while other jobs use the free slots.
func ExampleJob_MaxRunning() {
	e, cleanup := openEngine(durably.Config{MaxConcurrentRuns: 3})
	defer cleanup()
	var mu sync.Mutex
	running, most := 0, 0
	exports := durably.MustRegister(e, &durably.Job[int, int]{
		Name:       "export",
		MaxRunning: 1, // the export target takes one connection
		Run: func(ctx context.Context, s *durably.StepContext, n int) (int, error) {
			mu.Lock()
			running++
			most = max(most, running)
			mu.Unlock()
			defer func() { mu.Lock(); running--; mu.Unlock() }()
			return durably.RunStep(s, "export", func(ctx context.Context) (int, error) {
				time.Sleep(20 * time.Millisecond)
				return n, nil
			})
		},
	})
	if err := e.Start(); err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	var ids []string
	for i := range 4 {
		res, err := exports.Trigger(ctx, i)
		if err != nil {
			log.Fatal(err)
		}
		ids = append(ids, res.Run.ID)
	}
	for _, id := range ids {
		if _, err := exports.WaitForRun(ctx, id); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("exports at once, at most:", most)
	// Output: exports at once, at most: 1
}
