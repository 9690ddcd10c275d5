package main

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCrashAndResume runs the quickstart as the README does: a process that
// dies hard after step 1, then a fresh process that finishes the same run
// without running step 1 again.
func TestCrashAndResume(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "quickstart")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	db := filepath.Join(dir, "q.db")

	out, err := exec.Command(bin, "-db", db, "-crash-after", "1").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("first run: want exit code 3, got %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "executing: reserving stock") || strings.Contains(string(out), "charging") {
		t.Fatalf("first run output:\n%s", out)
	}

	out, err = exec.Command(bin, "-db", db).CombinedOutput()
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	s := string(out)
	if strings.Contains(s, "reserving stock") {
		t.Fatalf("step 1 ran again after the crash:\n%s", s)
	}
	for _, want := range []string{"resuming when its lease expires", "charging 4200 cents", "sending the confirmation email", "completed: {OrderID:order-1"} {
		if !strings.Contains(s, want) {
			t.Fatalf("second run output lacks %q:\n%s", want, s)
		}
	}
}
