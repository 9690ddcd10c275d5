package gen

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyDirections: a generated client links no server code (it
// imports the generated package for its types, which does not import the
// HTTP handler), and the handler reaches storage only through the engine
// (issue 13: one typed layer, shared without the client importing the
// server).
func TestDependencyDirections(t *testing.T) {
	list := func(format string, pkgs ...string) []string {
		t.Helper()
		out, err := exec.Command("go", append([]string{"list", "-f", format}, pkgs...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		return strings.Fields(string(out))
	}
	const handler = "github.com/durably-go/durably/runtime/durablyhttp"
	for _, client := range []string{"../examples/tenants/tenantjobs/client", "../internal/reference/client", "../runtime/durablyclient"} {
		for _, dep := range list(`{{join .Deps "\n"}}`, client) {
			if dep == handler {
				t.Errorf("%s links the HTTP handler", client)
			}
		}
	}
	for _, imp := range list(`{{join .Imports "\n"}}`, "../runtime/durablyhttp") {
		if imp == "github.com/durably-go/durably/runtime/store" {
			t.Error("runtime/durablyhttp imports runtime/store instead of going through the engine")
		}
	}
}
