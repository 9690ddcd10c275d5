// Package e2e holds the browser tests: a page using the unmodified
// @coji/durably-react hooks, served by Vite, and the dashboard served by
// the Go handler itself, both driven by playwright-core in Debian's
// chromium against the Go tenants server.
package e2e

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/durably-go/durably/internal/pgtest"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "copy the dashboard's screenshots (SQLite run) to docs/images")

// TestTypeScript runs typecheck.mjs: tsc --strict on the page, on what the
// React client infers from the module durably-gen writes for the tenants
// fixture, and on probes that must not compile (a wrong input type, a
// missing required field, an unknown job). It needs `npm ci` in this
// directory; without it it is skipped, except under CI=true.
func TestTypeScript(t *testing.T) {
	if _, err := os.Stat("node_modules/.bin/tsc"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("the TypeScript check needs e2e/node_modules (run npm ci in e2e)")
		}
		t.Skip("the TypeScript check needs e2e/node_modules (run npm ci in e2e)")
	}
	out, err := exec.Command("node", "typecheck.mjs").CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("typecheck.mjs: %v", err)
	}
}

// TestBrowser runs run.mjs: the React hooks end to end.
func TestBrowser(t *testing.T) {
	chromium := browserPrerequisites(t)
	cmd := exec.Command("node", "run.mjs")
	cmd.Env = append(os.Environ(), "TENANTS_BIN="+tenantsBinary(t), "CHROMIUM="+chromium)
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("browser test failed: %v (screenshots in e2e/test-results)", err)
	}
}

// TestDashboard runs dashboard.mjs against the tenants server on each
// store: tenant isolation, live updates, allowed and refused actions, the
// jobs page, keyboard, phone and dark, and no request to another origin.
// The stores run one after the other: each starts a server and a browser.
func TestDashboard(t *testing.T) {
	chromium := browserPrerequisites(t)
	bin := tenantsBinary(t)
	for _, store := range []string{"sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "tenants.db")
			if store == "postgres" {
				db = pgtest.Schema(t)
			}
			cmd := exec.Command("node", "dashboard.mjs")
			cmd.Env = append(os.Environ(), "TENANTS_BIN="+bin, "CHROMIUM="+chromium, "DB="+db, "STORE="+store)
			if *updateScreenshots && store == "sqlite" {
				cmd.Env = append(cmd.Env, "SCREENSHOTS="+filepath.Join("..", "docs", "images"))
			}
			out, err := cmd.CombinedOutput()
			t.Logf("%s", out)
			if err != nil {
				t.Fatalf("dashboard test failed on %s: %v (screenshots in e2e/test-results/dashboard-%s)", store, err, store)
			}
		})
	}
}

// browserPrerequisites returns the Chromium to drive. The tests need
// `npm ci` in this directory and /usr/bin/chromium (.ci/run installs
// both); without them they are skipped, except under CI=true, where that
// is a failure.
func browserPrerequisites(t *testing.T) string {
	t.Helper()
	missing := ""
	if _, err := os.Stat("node_modules/playwright-core"); err != nil {
		missing = "e2e/node_modules (run npm ci in e2e)"
	}
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		missing = chromium + " (apt-get install chromium)"
	}
	if _, err := exec.LookPath("node"); err != nil {
		missing = "node"
	}
	if missing != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the browser test needs %s", missing)
		}
		t.Skipf("the browser test needs %s", missing)
	}
	return chromium
}

var (
	buildOnce sync.Once
	built     string
	buildErr  string
)

// tenantsBinary builds the tenants server once for the package's tests.
func tenantsBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "durably-e2e-")
		if err != nil {
			buildErr = err.Error()
			return
		}
		bin := filepath.Join(dir, "tenants")
		if out, err := exec.Command("go", "build", "-o", bin, "../examples/tenants").CombinedOutput(); err != nil {
			buildErr = err.Error() + "\n" + string(out)
			return
		}
		built = bin
	})
	if buildErr != "" {
		t.Fatalf("build tenants: %s", buildErr)
	}
	return built
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built != "" {
		os.RemoveAll(filepath.Dir(built))
	}
	os.Exit(code)
}
