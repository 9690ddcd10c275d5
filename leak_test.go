package durably_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine outlives its tests: an
// engine's worker, lease keeper, group-commit writer or event stream that
// Stop, Close or a cancelled context did not end. The ignored functions
// are the database drivers' own background goroutines, which live as long
// as the process's driver state, not as long as a store.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "TestCrashChild" {
		os.Exit(m.Run()) // a crash child is killed, not checked
	}
	goleak.VerifyTestMain(m)
}
