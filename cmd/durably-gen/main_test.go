package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/durably-go/durably/gen"
)

// moduleWith makes a temporary module holding a declaration named name.
func moduleWith(t *testing.T, name, decl string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/app\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(decl), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

const good = "package: {name: billing, output: ./billing}\njobs:\n  - name: send\n    input: {type: string}\n"

func TestVersionAndHelp(t *testing.T) {
	if code, out, _ := runCLI("-version"); code != 0 || out != "durably-gen "+gen.Version+"\n" {
		t.Fatalf("-version: %d %q", code, out)
	}
	code, _, help := runCLI("-h")
	if code != 0 {
		t.Fatalf("-h exited %d", code)
	}
	for _, want := range []string{"generates a Go package from a durably.yaml", "durably-gen [flags] [durably.yaml]",
		"Example", "//go:generate go tool durably-gen", "go get -tool github.com/durably-go/durably/cmd/durably-gen", "-check", "-version"} {
		if !strings.Contains(help, want) {
			t.Errorf("-h lacks %q:\n%s", want, help)
		}
	}
	if code, _, _ := runCLI("-nosuchflag"); code != 2 {
		t.Fatalf("an unknown flag exited %d, want 2", code)
	}
	if code, _, _ := runCLI("a.yaml", "b.yaml"); code != 2 {
		t.Fatalf("two declarations exited %d, want 2", code)
	}
}

// TestDeclarationArgument: the argument names the declaration, whatever
// its name; -config still does.
func TestDeclarationArgument(t *testing.T) {
	path := moduleWith(t, "some.yaml", good)
	code, out, errs := runCLI(path)
	if code != 0 || !strings.Contains(out, filepath.Join("billing", "durably_gen.go")) {
		t.Fatalf("%d\n%s%s", code, out, errs)
	}
	if code, _, errs := runCLI("-q", "-config", path); code != 0 {
		t.Fatalf("-config: %d %s", code, errs)
	}
}

// TestCheck: -check exits 0 on current output and 1 naming every stale
// file, writing nothing.
func TestCheck(t *testing.T) {
	path := moduleWith(t, "durably.yaml", good)
	if code, _, errs := runCLI("-check", path); code != 1 || !strings.Contains(errs, "billing/durably_gen.go is not up to date") {
		t.Fatalf("-check before generating: %d %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(path), "billing")); !os.IsNotExist(err) {
		t.Fatal("-check wrote files")
	}
	if code, _, errs := runCLI("-q", path); code != 0 {
		t.Fatal(errs)
	}
	if code, out, errs := runCLI("-check", path); code != 0 || out != "" || errs != "" {
		t.Fatalf("-check on current output: %d %q %q", code, out, errs)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(good, "name: send", "name: send-mail", 1)+"    output: {type: boolean}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCLI("-check", path)
	if code != 1 || !strings.Contains(errs, "billing/durably_gen.go is not up to date") || !strings.Contains(errs, "billing/client/client_gen.go is not up to date") {
		t.Fatalf("-check on stale output: %d\n%s", code, errs)
	}
}

// TestProblemsAreStable: problems come one a line, placed, in the same
// order on every run, without spec numbers.
func TestProblemsAreStable(t *testing.T) {
	bad := `package: {name: billing, output: ../x}
labels:
  plan: {type: enum, values: [free, pro]}
  config: {type: enum, values: [a, b]}
context:
  plan: {type: enum, values: [trial, enterprise]}
  scopes: {type: array, items: {type: string}, minLength: 2}
jobs:
  - name: useRuns
    input: {type: integer, minimum: 1.5, maximum: 1}
  - name: b
    input:
      type: object
      properties:
        user_id: {type: string}
        userId: {type: string}
`
	path := moduleWith(t, "durably.yaml", bad)
	code, _, first := runCLI(path)
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(first), "\n")
	placed := regexp.MustCompile(`^` + regexp.QuoteMeta(path) + `:\d+:\d+: \S`)
	for _, l := range lines[:len(lines)-1] {
		if !placed.MatchString(l) {
			t.Errorf("problem without file:line:column: %q", l)
		}
	}
	if lines[len(lines)-1] != "durably-gen: nothing written" {
		t.Errorf("last line %q", lines[len(lines)-1])
	}
	if regexp.MustCompile(`\([A-Z]+-\d+\)`).MatchString(first) {
		t.Errorf("a spec number in a message:\n%s", first)
	}
	for range 20 {
		if _, _, again := runCLI(path); again != first {
			t.Fatalf("problems differ between runs:\n%s\n---\n%s", first, again)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(path), "billing")); !os.IsNotExist(err) {
		t.Fatal("a refused declaration wrote files")
	}
}
