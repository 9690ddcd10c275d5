package durablyhttp_test

import (
	"os"
	"regexp"
	"testing"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/store"
)

// TestReadmeRoutes: every route the README names (GET /steps?runId=…,
// POST /trigger, …) is one the handler serves: none answers the protocol's
// plain "Not Found" of an unknown route.
func TestReadmeRoutes(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	routes := regexp.MustCompile("`(GET|POST|DELETE) (/[^` ?]*)").FindAllStringSubmatch(string(readme), -1)
	if len(routes) < 2 {
		t.Fatalf("README names %d routes", len(routes))
	}
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open, func(_ *durably.Config, o *durablyhttp.Options[user, testLabels]) {
			o.Jobs = []durably.JobSchema{} // GET /jobs is served when the jobs are given
		})
		for _, r := range routes {
			res := v.do(r[1], r[2], "", admin)
			if res.status == 404 && res.body == "Not Found" {
				t.Errorf("README names %s %s, which the handler does not serve", r[1], r[2])
			}
		}
	})
}
