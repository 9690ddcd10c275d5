package durably_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
)

// TestScheduleFiresThroughOutage: a tick that comes due while the
// database is away is not lost: the running scheduler retries it and the
// tick's run appears once the database is back, without calling anything.
func TestScheduleFiresThroughOutage(t *testing.T) {
	for _, kind := range []string{"sqlite-busy", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			logs := &syncBuffer{}
			db := openOutageStore(t, kind, newTextLogger(logs))
			defer db.closeFn()
			// A clock that stands still a second after a tick: only the
			// scheduler's own retries can fire it.
			now := time.Date(2026, 5, 4, 10, 0, 1, 0, time.UTC)
			e, err := durably.New(durably.Config{Store: db.st, Logger: newTextLogger(logs),
				PollingInterval: 20 * time.Millisecond, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			h := durably.MustRegister(e, tickJob())
			if err := durably.AddSchedule(h, durably.Schedule[Greeting]{Name: "o", Cron: "* * * * *", Input: Greeting{Name: "x"}}); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if err := e.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			db.down()
			if err := e.Start(); err != nil {
				t.Fatal(err)
			}
			defer e.Stop(ctx)
			// Let the scheduler fail a few times.
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(logs.String(), "scheduled tick not fired yet") {
				if time.Now().After(deadline) {
					t.Fatalf("the scheduler never tried during the outage; logs:\n%s", logs)
				}
				time.Sleep(10 * time.Millisecond)
			}
			db.up()
			deadline = time.Now().Add(15 * time.Second)
			for {
				runs, err := e.ListRuns(ctx, durably.RunFilter{JobNames: []string{"tick"}})
				if err == nil && len(runs) == 1 && runs[0].IdempotencyKey == "schedule:o:2026-05-04T10:00:00Z" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no run for the tick after the outage: %v %v; logs:\n%s", runs, err, logs)
				}
				time.Sleep(20 * time.Millisecond)
			}
			// The outage is logged once when it starts and once when it ends.
			for !strings.Contains(logs.String(), "scheduled ticks fire again") {
				if time.Now().After(deadline) {
					t.Fatalf("the recovery was not logged; logs:\n%s", logs)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if n := strings.Count(logs.String(), "scheduled tick not fired yet"); n != 1 {
				t.Fatalf("the failure was logged %d times, want once; logs:\n%s", n, logs)
			}
		})
	}
}
