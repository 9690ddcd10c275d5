package durably_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/durably-go/durably"

// goList runs go list with format over pkgs and returns its words.
func goList(t *testing.T, format string, pkgs ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list", "-f", format}, pkgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

// TestLayering holds the module's layers (ARCHITECTURE.md, "Packages"):
// the engine stands on the store seam and nothing of runtime/, which plugs
// into it; a generated client links no server code; the HTTP handler
// reaches storage only through the engine; the commands depend on no
// example (issue 23: an example changes for its readers, not for a tool).
func TestLayering(t *testing.T) {
	// The engine's own imports: the seam, two small helpers of its own,
	// the standard library and its one scheduling dependency.
	allowed := []string{module + "/store", module + "/internal/ulid", module + "/internal/jsonappend", "github.com/robfig/cron/v3"}
	for _, imp := range goList(t, `{{join .Imports "\n"}}`, ".") {
		if strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") && !slices.Contains(allowed, imp) {
			t.Errorf("the engine (module root) imports %s; it may import only %v and the standard library", imp, allowed)
		}
	}
	const handler = module + "/runtime/durablyhttp"
	for _, client := range []string{"./examples/tenants/tenantjobs/client", "./internal/reference/client", "./runtime/durablyclient"} {
		if slices.Contains(goList(t, `{{join .Deps "\n"}}`, client), handler) {
			t.Errorf("%s links the HTTP handler", client)
		}
	}
	for _, dep := range goList(t, `{{join .Deps "\n"}}`, "./cmd/...") {
		if strings.HasPrefix(dep, module+"/examples/") {
			t.Errorf("a command depends on the example package %s", dep)
		}
	}
	if slices.Contains(goList(t, `{{join .Imports "\n"}}`, "./runtime/durablyhttp"), module+"/store") {
		t.Error("runtime/durablyhttp imports store instead of going through the engine")
	}
}
