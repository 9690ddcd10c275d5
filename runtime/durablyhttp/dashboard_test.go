package durablyhttp_test

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/store"
)

// The dashboard's pages and assets pass the hooks like every request, its
// API is the handler's, and its actions refuse other origins. What the
// pages do in a browser is e2e's TestDashboard.

func TestDashboardPagesH104(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open)
		for _, c := range []struct{ path, base string }{
			{"/dashboard/", "./"}, {"/dashboard/jobs", "./"}, {"/dashboard/runs/01ABC", "../"}, {"/dashboard/runs/some%2Fid", "../"},
		} {
			v.hook.take()
			r := v.request("GET", c.path, "", viewer)
			if r.status != 200 || r.header.Get("Content-Type") != "text/html; charset=utf-8" || !strings.Contains(r.body, `<base href="`+c.base+`">`) ||
				!strings.Contains(r.body, "<title>tests</title>") {
				t.Fatalf("GET %s: %d %s\n%s", c.path, r.status, r.header.Get("Content-Type"), r.body)
			}
			if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") ||
				strings.Contains(csp, "unsafe") {
				t.Fatalf("GET %s: Content-Security-Policy %q", c.path, csp)
			}
			if got := v.hook.take(); got != "authenticate,onRequest" {
				t.Fatalf("GET %s ran hooks %s", c.path, got)
			}
		}
		// Every file the page names is served, as what it is.
		page := v.request("GET", "/dashboard/", "", admin)
		refs := regexp.MustCompile(`(?:href|src)="(assets/[^"]+)"`).FindAllStringSubmatch(page.body, -1)
		if len(refs) != 3 {
			t.Fatalf("the page names %d assets: %v", len(refs), refs)
		}
		types := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
		for _, ref := range refs {
			r := v.request("GET", "/dashboard/"+ref[1], "", admin)
			ext := ref[1][strings.LastIndex(ref[1], "."):]
			if r.status != 200 || r.header.Get("Content-Type") != types[ext] || r.header.Get("ETag") == "" || len(r.body) < 100 {
				t.Fatalf("GET %s: %d %q etag %q, %d bytes", ref[1], r.status, r.header.Get("Content-Type"), r.header.Get("ETag"), len(r.body))
			}
			again := v.request("GET", "/dashboard/"+ref[1], "", http.Header{"If-None-Match": {r.header.Get("ETag")}, "X-User-Id": admin["X-User-Id"],
				"X-Org-Id": admin["X-Org-Id"], "X-Role": admin["X-Role"]})
			if again.status != http.StatusNotModified {
				t.Fatalf("GET %s with its ETag: %d", ref[1], again.status)
			}
		}
		// Unauthenticated: the hook's rejection, for pages and assets alike.
		v.request("GET", "/dashboard/", "", nil).want(t, 401, "Unauthorized")
		v.request("GET", "/dashboard/assets/app.js", "", nil).want(t, 401, "Unauthorized")
		v.request("GET", "/dashboard/api/runs", "", nil).want(t, 401, "Unauthorized")
		// No other paths, and no other methods on pages.
		for _, c := range []struct{ method, path string }{
			{"GET", "/dashboard/nope"}, {"GET", "/dashboard/runs/"}, {"GET", "/dashboard/runs/a/b"}, {"GET", "/dashboard/assets/nope.js"},
			{"POST", "/dashboard/"}, {"GET", "/dashboard/index.html"}, {"GET", "/dashboard/api/nope"},
		} {
			v.request(c.method, c.path, "", admin).want(t, 404, "Not Found")
		}
	})
}

func TestDashboardAPIIsTheHandlersH104(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open)
		if err := v.e.Start(); err != nil {
			t.Fatal(err)
		}
		mine := v.trigger(`{"jobName":"slow","input":{"message":"a"}}`, admin)
		theirs := v.trigger(`{"jobName":"echo","input":{"message":"b"}}`, other)
		v.waitStatus(mine, durably.StatusLeased)
		v.waitStatus(theirs, durably.StatusCompleted)
		// The same hooks: another organization's run is refused, lists are
		// scoped, a viewer may not cancel.
		v.request("GET", "/dashboard/api/run?runId="+theirs, "", admin).want(t, 403, "Forbidden")
		runs := listOf(t, v.request("GET", "/dashboard/api/runs?label.organizationId=org-b", "", admin))
		if len(runs) != 1 || runs[0].ID != mine {
			t.Fatalf("the dashboard's list: %v", runs)
		}
		v.request("POST", "/dashboard/api/cancel?runId="+mine, "", viewer).want(t, 403, "Forbidden")

		// Actions from another origin are refused before any hook: a page
		// elsewhere cannot use the user's cookie.
		crossSite := http.Header{"Sec-Fetch-Site": {"cross-site"}}
		otherOrigin := http.Header{"Origin": {"https://evil.example"}}
		for _, h := range []http.Header{crossSite, otherOrigin} {
			for k, vs := range admin {
				h[k] = vs
			}
			v.hook.take()
			v.request("POST", "/dashboard/api/cancel?runId="+mine, "", h).want(t, 403, `{"error":"Forbidden: a cross-origin request to the dashboard"}`)
			v.request("POST", "/dashboard/api/trigger", `{"jobName":"echo","input":{"message":"x"}}`, h).want(t, 403, "")
			if got := v.hook.take(); got != "" {
				t.Fatalf("a cross-origin action ran hooks: %s", got)
			}
			// Reads stay open to them: no state changes.
			v.request("GET", "/dashboard/api/runs", "", h).want(t, 200, "")
		}
		if run := v.waitStatus(mine, durably.StatusLeased); run == nil {
			t.Fatal("unreachable")
		}
		sameOrigin := http.Header{"Sec-Fetch-Site": {"same-origin"}}
		for k, vs := range admin {
			sameOrigin[k] = vs
		}
		v.request("POST", "/dashboard/api/cancel?runId="+mine, "", sameOrigin).want(t, 200, `{"success":true}`)
		v.waitStatus(mine, durably.StatusCancelled)
	})
}

// TestDashboardMountsH104: behind http.StripPrefix, under a BasePath, and at
// the mount path without its slash (a redirect to it, which the pages'
// relative links need).
func TestDashboardMountsH104(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open)
		dash := v.h.Dashboard(durablyhttp.DashboardOptions{BasePath: "/ops/dash"})
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/ops/dash/runs/X", nil)
		req.Header = admin.Clone()
		dash.ServeHTTP(rec, req)
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), `<base href="../">`) || !strings.Contains(rec.Body.String(), "<title>durably</title>") {
			t.Fatalf("under a BasePath: %d %s", rec.Code, rec.Body.String())
		}
		rec = httptest.NewRecorder()
		req = httptest.NewRequest("GET", "/ops/dash/api/runs", nil)
		req.Header = admin.Clone()
		dash.ServeHTTP(rec, req)
		if rec.Code != 200 || !strings.HasPrefix(rec.Body.String(), "[") {
			t.Fatalf("the API under a BasePath: %d %s", rec.Code, rec.Body.String())
		}
		rec = httptest.NewRecorder()
		req = httptest.NewRequest("GET", "/ops/dash?x=1", nil)
		req.Header = admin.Clone()
		http.StripPrefix("/ops/dash", v.h.Dashboard(durablyhttp.DashboardOptions{})).ServeHTTP(rec, req)
		if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != "dash/" {
			t.Fatalf("the mount path without its slash: %d %q", rec.Code, rec.Header().Get("Location"))
		}
	})
}
