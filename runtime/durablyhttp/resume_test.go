package durablyhttp_test

import (
	"strings"
	"testing"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// TestResumeH120: POST /resume checks its runId as H-014 does, asks
// OnRunAccess for "resume" (viewers and other organizations are refused),
// answers {"success":true,"runId"} naming the same run, 409 for a run that
// is not failed or cancelled, and list streams hear run:resume.
func TestResumeH120(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open)
		id := v.trigger(`{"jobName":"echo","input":{"message":"a"}}`, admin)
		v.do("POST", "/resume", "", admin).want(t, 400, `{"error":"runId query parameter is required"}`)
		v.do("POST", "/resume?runId=", "", admin).want(t, 400, `{"error":"runId query parameter is required"}`)
		v.do("POST", "/resume?runId=nope", "", admin).want(t, 404, `{"error":"Run not found"}`)
		v.do("GET", "/resume?runId="+id, "", admin).want(t, 404, "Not Found")
		v.do("POST", "/resume?runId="+id, "", admin).want(t, 409, `{"error":"Cannot resume pending run: `+id+`"}`)
		v.do("POST", "/cancel?runId="+id, "", admin).want(t, 200, `{"success":true}`)
		v.hook.take()
		v.do("POST", "/resume?runId="+id, "", viewer).want(t, 403, "Forbidden")
		v.do("POST", "/resume?runId="+id, "", other).want(t, 403, "Forbidden")
		if got := v.hook.take(); !strings.Contains(got, "onRunAccess:resume") {
			t.Fatalf("hooks of a resume: %s", got)
		}
		s := v.open("/runs/subscribe", admin)
		v.do("POST", "/resume?runId="+id, "ignored body", admin).want(t, 200, `{"success":true,"runId":"`+id+`"}`)
		if got := s.next(); !strings.Contains(got, `"type":"run:resume"`) || !strings.Contains(got, id) {
			t.Fatalf("the list stream delivered %s, want run:resume of %s", got, id)
		}
		v.do("POST", "/resume?runId="+id, "", admin).want(t, 409, `{"error":"Cannot resume pending run: `+id+`"}`)
		if err := v.e.Start(); err != nil {
			t.Fatal(err)
		}
		if run := v.waitStatus(id, durably.StatusCompleted); string(run.Output) != `{"message":"a"}` {
			t.Fatalf("resumed run %+v", run)
		}
	})
}
