package durably_test

import (
	"os"
	"os/exec"
	"testing"
)

// sqlcCheckEnv turns the drift check on. Building sqlc from a fresh clone
// takes minutes (it was most of this package's 224 s), so the README's test
// command leaves it out; .ci/run and `make check-generated` set it, so CI
// still fails on drift.
const sqlcCheckEnv = "DURABLY_TEST_SQLC"

// TestSQLCOutputIsCurrent fails when `sqlc generate` would change the
// committed query code: regenerate with
//
//	go tool -modfile=tools/go.mod sqlc generate
//
// sqlc is pinned in tools/go.mod, a module of its own, so that users of
// durably do not inherit its dependencies. It runs when DURABLY_TEST_SQLC=1.
func TestSQLCOutputIsCurrent(t *testing.T) {
	if os.Getenv(sqlcCheckEnv) != "1" {
		t.Skip("builds sqlc; runs with " + sqlcCheckEnv + "=1 (set by .ci/run and `make check-generated`)")
	}
	out, err := exec.Command("go", "tool", "-modfile=tools/go.mod", "sqlc", "diff").CombinedOutput()
	if err != nil {
		t.Fatalf("sqlc output differs from the committed code (run `go tool -modfile=tools/go.mod sqlc generate`): %v\n%s", err, out)
	}
}
