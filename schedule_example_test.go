package durably_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/durably-go/durably"
)

// A schedule triggers a job at each tick of a cron spec, in a time zone,
// with a fixed input. Started engines fire ticks by themselves; here a
// fixed clock and FireDueSchedules make the example deterministic. Every
// tick's run carries the key "schedule:<name>:<tick>", so any number of
// processes firing it make one run.
func ExampleAddSchedule() {
	clock := time.Date(2026, 3, 28, 2, 0, 30, 0, time.UTC) // 03:00:30 in Paris
	e, cleanup := openEngine(durably.Config{Now: func() time.Time { return clock }})
	defer cleanup()
	cards := durably.MustRegister(e, makeCard)
	err := durably.AddSchedule(cards, durably.Schedule[Greeting]{
		Name:     "nightly-card",
		Cron:     "0 3 * * *", // 03:00 every day
		TimeZone: "Europe/Paris",
		Input:    Greeting{Name: "night shift"},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	// Twice, as two processes would: one run.
	for range 2 {
		if err := e.FireDueSchedules(ctx); err != nil {
			log.Fatal(err)
		}
	}
	runs, err := cards.ListRuns(ctx, durably.RunFilter{})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range runs {
		fmt.Println(r.IdempotencyKey, r.Input.Name)
	}
	for _, s := range e.Schedules() {
		// Summer time has begun by the next tick: 03:00 is 01:00 UTC.
		fmt.Println(s.Name, "next", s.Next.Format(time.RFC3339))
	}
	// Output:
	// schedule:nightly-card:2026-03-28T02:00:00Z night shift
	// nightly-card next 2026-03-29T01:00:00Z
}
