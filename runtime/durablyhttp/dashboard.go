package durablyhttp

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/durably-go/durably"
)

// DashboardOptions configure the dashboard (Handler.Dashboard).
type DashboardOptions struct {
	// BasePath is the prefix of the request path before the dashboard's
	// own, as Options.BasePath: a path that does not start with it is no
	// page. Empty when the router strips the mount path.
	BasePath string
	// Title names the dashboard in its header and its pages' titles.
	// Default "durably".
	Title string
}

// Dashboard returns the dashboard: pages where a person sees the runs (what
// is running, what failed and why), follows them live and acts on them, and
// sees and triggers the jobs. Mount it like the handler, e.g.
//
//	mux.Handle("/dashboard/", http.StripPrefix("/dashboard", h.Dashboard(durablyhttp.DashboardOptions{})))
//
// Its pages are / (the runs), /runs/{id} (one run) and /jobs. They are
// static, embedded in the binary (no build step, no request to another
// origin: the page's Content-Security-Policy allows none), and read and act
// through the handler itself, which the dashboard serves under /api/: every
// request, pages included, passes Authenticate and OnRequest, and every
// read and action the same hooks as the API (ScopeRuns, OnRunAccess,
// OnTrigger), so a user sees and touches only what the API would let them.
// Authenticate sees the browser's requests: page loads, fetches and event
// streams (EventSource), which carry cookies but no custom headers, so a
// dashboard for people typically authenticates by a session cookie.
// Actions (POST, DELETE) from another origin are refused
// (http.CrossOriginProtection), so that a cookie cannot be used by another
// site's page.
func (h *Handler[C, L]) Dashboard(opts DashboardOptions) http.Handler {
	if opts.Title == "" {
		opts.Title = "durably"
	}
	return &dashboard[C, L]{h: h, opts: opts, api: http.NewCrossOriginProtection()}
}

//go:embed dashboard
var dashboardFiles embed.FS

// dashboardPage is the one HTML document of every page: the script routes
// by the URL.
var dashboardPage = template.Must(template.ParseFS(dashboardFiles, "dashboard/index.html"))

// dashboardAssets are the embedded files the pages load, with the ETag of
// their content.
var dashboardAssets = loadAssets()

type asset struct {
	body []byte
	etag string
}

func loadAssets() map[string]asset {
	assets := map[string]asset{}
	err := fs.WalkDir(dashboardFiles, "dashboard/assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := dashboardFiles.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		assets[strings.TrimPrefix(p, "dashboard")] = asset{body: body, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil { // the files are embedded: only a broken build gets here
		panic(err)
	}
	return assets
}

// dashboardCSP allows the page its own origin and nothing else: no
// script, style, font, image or connection elsewhere, no inline script,
// no framing by another site.
const dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"

type dashboard[C any, L durably.Labels[L]] struct {
	h    *Handler[C, L]
	opts DashboardOptions
	api  *http.CrossOriginProtection
}

func (d *dashboard[C, L]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Routed by the escaped path: its slashes are the browser's, which the
	// pages' relative <base> counts.
	p, ok := strings.CutPrefix(r.URL.EscapedPath(), d.opts.BasePath)
	if !ok {
		notFound(w)
		return
	}
	if rest, ok := strings.CutPrefix(p, "/api/"); ok {
		if err := d.api.Check(r); err != nil {
			writeError(w, http.StatusForbidden, "Forbidden: a cross-origin request to the dashboard")
			return
		}
		d.h.serve(w, r, "/"+rest)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		notFound(w)
		return
	}
	if p == "" {
		// The mount path without its trailing slash, which the pages'
		// relative links need: the router stripped it all, so the
		// redirect names the last segment of the request's own path.
		u, err := url.ParseRequestURI(r.RequestURI)
		if err != nil || u.Path == "" || strings.HasSuffix(u.Path, "/") {
			notFound(w)
			return
		}
		// Not http.Redirect: it would resolve the relative target against
		// the stripped path.
		w.Header().Set("Location", path.Base(u.EscapedPath())+"/")
		w.WriteHeader(http.StatusMovedPermanently)
		return
	}
	a, isAsset := dashboardAssets[p]
	if !isAsset && !isDashboardPage(p) {
		notFound(w)
		return
	}
	if _, ok := d.h.admit(w, r); !ok {
		return
	}
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "same-origin")
	if isAsset {
		hdr.Set("Cache-Control", "no-cache") // revalidated by ETag
		hdr.Set("ETag", a.etag)
		http.ServeContent(w, r, p, time.Time{}, bytes.NewReader(a.body))
		return
	}
	d.page(w, p)
}

// isDashboardPage reports whether p is one of the pages: the runs (/),
// a run (/runs/{id}) or the jobs (/jobs).
func isDashboardPage(p string) bool {
	if p == "/" || p == "/jobs" {
		return true
	}
	id, ok := strings.CutPrefix(p, "/runs/")
	return ok && id != "" && !strings.Contains(id, "/")
}

// page writes the HTML document. Its <base> is relative, "./" or "../" as
// deep as the page is, so that the document's links and requests resolve
// under wherever the dashboard is mounted without knowing where.
func (d *dashboard[C, L]) page(w http.ResponseWriter, p string) {
	base := "./"
	if depth := strings.Count(p, "/") - 1; depth > 0 {
		base = strings.Repeat("../", depth)
	}
	var b bytes.Buffer
	if err := dashboardPage.Execute(&b, struct{ Title, Base string }{d.opts.Title, base}); err != nil {
		d.h.opts.Logger.Error("durably dashboard: page", "err", err)
		writeError(w, http.StatusInternalServerError, "Internal Server Error")
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Content-Security-Policy", dashboardCSP)
	hdr.Set("Cache-Control", "no-store")
	_, _ = w.Write(b.Bytes())
}
