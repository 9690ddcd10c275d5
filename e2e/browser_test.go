// Package e2e holds the browser test: a page using the unmodified
// @coji/durably-react hooks, served by Vite, driven by playwright-core in
// Debian's chromium, against the Go tenants server.
package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

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

// TestBrowser runs run.mjs. It needs `npm ci` in this directory and
// /usr/bin/chromium (.ci/run installs both); without them it is skipped,
// except under CI=true, where that is a failure.
func TestBrowser(t *testing.T) {
	missing := ""
	if _, err := os.Stat("node_modules/@coji/durably-react"); err != nil {
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
	bin := filepath.Join(t.TempDir(), "tenants")
	if out, err := exec.Command("go", "build", "-o", bin, "../examples/tenants").CombinedOutput(); err != nil {
		t.Fatalf("build tenants: %v\n%s", err, out)
	}
	cmd := exec.Command("node", "run.mjs")
	cmd.Env = append(os.Environ(), "TENANTS_BIN="+bin, "CHROMIUM="+chromium)
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("browser test failed: %v (screenshots in e2e/test-results)", err)
	}
}
