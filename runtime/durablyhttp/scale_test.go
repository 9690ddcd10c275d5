package durablyhttp_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// TestListReadsAtScale measures the dashboard's reads (docs/dashboard.md,
// "How fast, with many runs") over 100,000 runs, 90,000 of one
// organization, through the tenants-like hooks, and checks that a page
// after a deep cursor is the page at that offset. It takes a while, so it
// runs only with DURABLY_TEST_SCALE=1:
//
//	DURABLY_TEST_SCALE=1 go test -run TestListReadsAtScale -v ./runtime/durablyhttp/
func TestListReadsAtScale(t *testing.T) {
	if os.Getenv("DURABLY_TEST_SCALE") != "1" {
		t.Skip("set DURABLY_TEST_SCALE=1 to measure the list reads over 100,000 runs")
	}
	// One store at a time, not forEachStore's parallel pair: the figures
	// are timings.
	t.Run("sqlite", func(t *testing.T) { measureListReads(t, openSQLite(t)) })
	t.Run("postgres", func(t *testing.T) { measureListReads(t, openPostgres(t)) })
}

func measureListReads(t *testing.T, open func() store.Store) {
	v := newEnv(t, open)
	job := durably.MustRegister(v.e, &durably.Job[int, int]{Name: "n",
		Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) { return in, nil }})
	for b := range 200 {
		items := make([]durably.BatchItem[int], 500)
		for i := range items {
			org := "org-a"
			if i%10 == 0 {
				org = fmt.Sprint("org-", i%7)
			}
			items[i] = durably.BatchItem[int]{Input: b*500 + i, Options: []durably.Option{
				durably.WithLabels(map[string]string{"organizationId": org, "env": "production"})}}
		}
		if _, err := job.BatchTrigger(context.Background(), items); err != nil {
			t.Fatal(err)
		}
	}
	best := func(what, path string) response {
		var r response
		fastest := time.Hour
		for range 5 {
			start := time.Now()
			r = v.do("GET", path, "", admin)
			fastest = min(fastest, time.Since(start))
		}
		t.Logf("%-48s %v", what, fastest)
		return r
	}
	first := listOf(t, best("first page (limit=51)", "/runs?limit=51"))
	deep := listOf(t, v.do("GET", "/runs?limit=1&offset=79999", "", admin))[0]
	cursor := "&after=" + url.QueryEscape(deep.CreatedAt+","+deep.ID)
	byCursor := listOf(t, best("a page after a cursor 80,000 runs deep", "/runs?limit=51"+cursor))
	byOffset := listOf(t, best("the same page by offset=80000", "/runs?limit=51&offset=80000"))
	best("counts of the organization (90,000 runs)", "/runs/counts")
	best("failed runs of the organization (none)", "/runs?limit=51&status=failed")
	if len(first) != 51 || !slices.Equal(ids(byCursor), ids(byOffset)) {
		t.Fatalf("the page after the cursor differs from the page at its offset:\n%v\n%v", ids(byCursor), ids(byOffset))
	}
}
