package durablyhttp_test

import (
	"encoding/json"
	"testing"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/store"
)

// TestTenantScopedKeysD11 shows, through HTTP, that with TenantLabels a key
// one tenant uses neither reveals nor blocks another tenant's run: org-b
// sending org-a's idempotency key gets a run of its own, a shared
// concurrency key answers no 409 across tenants, and coalescing stays
// within a tenant. Without scoping, org-b would get org-a's run id back
// (and then 403 on it), a 409, or org-a's pending run.
func TestTenantScopedKeysD11(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open, func(c *durably.Config, _ *durablyhttp.Options[user, testLabels]) {
			c.TenantLabels = []string{"organizationId"}
		})
		type answer struct {
			RunID       string `json:"runId"`
			Disposition string `json:"disposition"`
		}
		post := func(t *testing.T, body string, who map[string][]string) answer {
			t.Helper()
			r := v.do("POST", "/trigger", body, who)
			r.want(t, 200, "")
			var a answer
			if err := json.Unmarshal([]byte(r.body), &a); err != nil {
				t.Fatalf("trigger answer %s: %v", r.body, err)
			}
			return a
		}

		// Idempotency keys, in both orders.
		for _, c := range []struct {
			name          string
			first, second map[string][]string
		}{{"org-a first", admin, other}, {"org-b first", other, admin}} {
			t.Run(c.name, func(t *testing.T) {
				body := `{"jobName":"echo","input":{"message":"m"},"idempotencyKey":"invoice-` + c.name + `"}`
				first, second := post(t, body, c.first), post(t, body, c.second)
				if first.Disposition != "created" || second.Disposition != "created" || first.RunID == second.RunID {
					t.Fatalf("same key in two tenants: %+v then %+v; want two created runs", first, second)
				}
				// Each may read the run it was given, and a repeat finds it.
				for _, x := range []struct {
					who map[string][]string
					id  string
				}{{c.first, first.RunID}, {c.second, second.RunID}} {
					v.do("GET", "/run?runId="+x.id, "", x.who).want(t, 200, "")
					if again := post(t, body, x.who); again.RunID != x.id || again.Disposition != "idempotent" {
						t.Fatalf("repeat: %+v, want idempotent %s", again, x.id)
					}
				}
			})
		}

		// A concurrency key: one pending run per tenant, no 409 across.
		keyed := `{"jobName":"slow","input":{"message":"m"},"concurrencyKey":"nightly"}`
		a := post(t, keyed, admin)
		b := post(t, keyed, other)
		if a.Disposition != "created" || b.Disposition != "created" || a.RunID == b.RunID {
			t.Fatalf("shared concurrency key: %+v, %+v", a, b)
		}
		v.do("POST", "/trigger", keyed, admin).want(t, 409, "")

		// Coalescing stays within the tenant.
		coalesce := `{"jobName":"slow","input":{"message":"m"},"concurrencyKey":"nightly","coalesce":"skip"}`
		if got := post(t, coalesce, other); got.RunID != b.RunID || got.Disposition != "coalesced" {
			t.Fatalf("org-b coalesced onto %+v, want its own run %s", got, b.RunID)
		}
		if got := post(t, coalesce, admin); got.RunID != a.RunID || got.Disposition != "coalesced" {
			t.Fatalf("org-a coalesced onto %+v, want its own run %s", got, a.RunID)
		}

		// And the two keyed runs execute side by side.
		if err := v.e.Start(); err != nil {
			t.Fatal(err)
		}
		v.waitStatus(a.RunID, durably.StatusLeased)
		v.waitStatus(b.RunID, durably.StatusLeased)
		close(v.gate)
		v.waitStatus(a.RunID, durably.StatusCompleted)
		v.waitStatus(b.RunID, durably.StatusCompleted)
	})
}
