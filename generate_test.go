package durably_test

import (
	"os/exec"
	"testing"
)

// TestSQLCOutputIsCurrent fails when `sqlc generate` would change the
// committed query code: regenerate with
//
//	go tool -modfile=tools/go.mod sqlc generate
//
// sqlc is pinned in tools/go.mod, a module of its own, so that users of
// durably do not inherit its dependencies. Its first build takes a minute.
func TestSQLCOutputIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds sqlc; skipped in -short mode")
	}
	out, err := exec.Command("go", "tool", "-modfile=tools/go.mod", "sqlc", "diff").CombinedOutput()
	if err != nil {
		t.Fatalf("sqlc output differs from the committed code (run `go tool -modfile=tools/go.mod sqlc generate`): %v\n%s", err, out)
	}
}
