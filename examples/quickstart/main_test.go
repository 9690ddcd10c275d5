package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// childEnv makes the test binary act as the quickstart command. The test
// runs the program in processes of its own, as the README does, without a
// separate `go build`: that build compiled every dependency a second time
// (without -race), which took the better part of a minute from a fresh
// clone and made this package the slowest of the suite.
const childEnv = "DURABLY_QUICKSTART_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main() // parses os.Args as the command would; exits 1 or 3 itself
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// quickstart is the command line of a quickstart process.
func quickstart(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	return cmd
}

// TestCrashAndResume runs the quickstart as the README does: a process that
// dies hard after step 1, then a fresh process that finishes the same run
// without running step 1 again, retrying its email step once.
func TestCrashAndResume(t *testing.T) {
	db := filepath.Join(t.TempDir(), "q.db")

	out, err := quickstart("-db", db, "-crash-after", "1").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("first run: want exit code 3, got %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "executing: reserving stock") || strings.Contains(string(out), "charging") {
		t.Fatalf("first run output:\n%s", out)
	}

	out, err = quickstart("-db", db).CombinedOutput()
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	s := string(out)
	if strings.Contains(s, "reserving stock") {
		t.Fatalf("step 1 ran again after the crash:\n%s", s)
	}
	for _, want := range []string{"resuming when its lease expires", "charging 4200 cents", "mail server busy", "waits for its retry", "sending the confirmation email …\n", "completed: {OrderID:order-1"} {
		if !strings.Contains(s, want) {
			t.Fatalf("second run output lacks %q:\n%s", want, s)
		}
	}
}
