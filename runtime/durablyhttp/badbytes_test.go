package durablyhttp_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/durably-go/durably/store"
)

// TestTextNoStoreCanHoldIsBadInput: a NUL character or bytes that are not
// UTF-8 in a run id, a label filter, a key or a label value are bad input,
// answered with a 4xx naming the field and changing nothing. PostgreSQL
// refuses them in text and jsonb, which made each of these a 500.
func TestTextNoStoreCanHoldIsBadInput(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open)
		for _, c := range []struct {
			method, path, body string
			status             int
			field              string // in the error message
		}{
			{"GET", "/run?runId=%00", "", http.StatusNotFound, "Run not found"},
			{"GET", "/run?runId=%FF", "", http.StatusNotFound, "Run not found"},
			{"GET", "/steps?runId=%00", "", http.StatusNotFound, "Run not found"},
			{"GET", "/runs?label.env=%00", "", http.StatusBadRequest, "labels.env"},
			{"GET", "/runs?label.env=%FF", "", http.StatusBadRequest, "labels.env"},
			{"GET", "/runs?jobName=%00", "", http.StatusBadRequest, "jobName"},
			{"POST", "/trigger", `{"jobName":"echo","input":{"message":"a"},"idempotencyKey":"a\u0000b"}`, http.StatusBadRequest, "idempotencyKey"},
			{"POST", "/trigger", `{"jobName":"echo","input":{"message":"a"},"concurrencyKey":"a\u0000b"}`, http.StatusBadRequest, "concurrencyKey"},
			{"POST", "/trigger", `{"jobName":"echo","input":{"message":"a"},"labels":{"organizationId":"org-a","env":"a\u0000b"}}`, http.StatusBadRequest, "env"},
		} {
			r := v.do(c.method, c.path, c.body, admin)
			if r.status != c.status || !strings.Contains(r.body, c.field) {
				t.Errorf("%s %s %s: %d %s; want %d naming %s", c.method, c.path, c.body, r.status, r.body, c.status, c.field)
			}
		}
		runs, err := v.e.ListRuns(t.Context(), store.RunFilter{})
		if err != nil || len(runs) != 0 {
			t.Fatalf("%d runs written by bad input (%v)", len(runs), err)
		}
	})
}
