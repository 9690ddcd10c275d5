package durablyhttp_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/store"
)

// TestJobsListSchedules: GET /jobs gives each job its schedules with the
// next tick (issue 14), as an additive member absent for jobs without.
func TestJobsListSchedules(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		now := time.Date(2026, 5, 4, 10, 0, 30, 0, time.UTC)
		v := newEnv(t, open, func(c *durably.Config, o *durablyhttp.Options[user, testLabels]) {
			c.Now = func() time.Time { return now }
			o.Jobs = []durably.JobSchema{{Name: "echo"}, {Name: "hourly"}}
		})
		h := durably.MustRegister(v.e, &durably.Job[stepsIn, int]{Name: "hourly",
			Run: func(ctx context.Context, s *durably.StepContext, in stepsIn) (int, error) { return in.Count, nil }})
		res := v.do("GET", "/jobs", "", admin)
		res.want(t, 200, `[{"name":"echo","input":null,"output":null,"priority":0},{"name":"hourly","input":null,"output":null,"priority":0}]`)

		if err := durably.AddSchedule(h, durably.Schedule[stepsIn]{Name: "hourly-steps", Cron: "@hourly", TimeZone: "Asia/Tokyo",
			Input: stepsIn{Count: 1}, Labels: map[string]string{"organizationId": "org-a", "env": "production"}}); err != nil {
			t.Fatal(err)
		}
		res = v.do("GET", "/jobs", "", admin)
		var jobs []durably.JobSchema
		if err := json.Unmarshal([]byte(res.body), &jobs); err != nil || res.status != 200 {
			t.Fatalf("%d %s: %v", res.status, res.body, err)
		}
		want := durably.ScheduleInfo{Name: "hourly-steps", JobName: "hourly", Cron: "@hourly", TimeZone: "Asia/Tokyo",
			Next: time.Date(2026, 5, 4, 11, 0, 0, 0, time.UTC)}
		if len(jobs) != 2 || jobs[0].Schedules != nil || len(jobs[1].Schedules) != 1 || !sameSchedule(jobs[1].Schedules[0], want) {
			t.Fatalf("GET /jobs = %s, want steps with %+v", res.body, want)
		}
	})
}

func sameSchedule(a, b durably.ScheduleInfo) bool {
	return a.Name == b.Name && a.JobName == b.JobName && a.Cron == b.Cron && a.TimeZone == b.TimeZone &&
		a.Next.Equal(b.Next) && a.LastFired.Equal(b.LastFired)
}
