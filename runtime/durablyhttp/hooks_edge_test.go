package durablyhttp_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/store"
)

// hookServer serves a handler with MapLabels on the store open makes, with
// auth and the given hooks; every request is user "org-a".
func hookServer(t *testing.T, open func() store.Store, auth durablyhttp.AuthConfig[string, durably.MapLabels]) string {
	t.Helper()
	e, err := durably.New(durably.Config{Store: open()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	auth.Authenticate = func(r *http.Request) (string, error) { return "org-a", nil }
	h, err := durablyhttp.New(e, durablyhttp.Options[string, durably.MapLabels]{Auth: &auth})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v (the handler panicked?)", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestScopeRunsGetsAMapItCanSet: with MapLabels, a listing without any
// label.* parameter hands ScopeRuns an empty map, not a nil one, so that
// the natural hook, which sets the tenant's label, does not panic (and the
// client get no answer at all).
func TestScopeRunsGetsAMapItCanSet(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		url := hookServer(t, open, durablyhttp.AuthConfig[string, durably.MapLabels]{
			ScopeRuns: func(ctx context.Context, org string, f durablyhttp.RunsFilter[durably.MapLabels]) (durablyhttp.RunsFilter[durably.MapLabels], error) {
				f.Labels["organizationId"] = org
				return f, nil
			},
		})
		for _, p := range []string{"/runs?label.env=production", "/runs"} {
			if status, body := get(t, url+p); status != http.StatusOK {
				t.Errorf("GET %s: %d %s", p, status, body)
			}
		}
	})
}

// TestRejectionWithoutAStatusIs500: a hook's Rejection without a valid
// status is answered 500 (and logged) instead of panicking net/http.
func TestRejectionWithoutAStatusIs500(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		url := hookServer(t, open, durablyhttp.AuthConfig[string, durably.MapLabels]{
			ScopeRuns: func(ctx context.Context, org string, f durablyhttp.RunsFilter[durably.MapLabels]) (durablyhttp.RunsFilter[durably.MapLabels], error) {
				return f, &durablyhttp.Rejection{Body: "Forbidden"}
			},
		})
		if status, body := get(t, url+"/runs"); status != http.StatusInternalServerError || body != "Forbidden" {
			t.Fatalf("got %d %q, want 500 \"Forbidden\"", status, body)
		}
	})
}
