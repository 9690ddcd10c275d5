package gen

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readmeSection returns the README's text under a "## " heading.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## "+heading+"\n")
	if i < 0 {
		t.Fatalf("README has no section %q", heading)
	}
	s = s[i+len(heading)+5:]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	return s
}

// TestReadmeDeclaration: the declaration shown in the README is valid and
// generates code.
func TestReadmeDeclaration(t *testing.T) {
	sec := readmeSection(t, "Declaring jobs in durably.yaml")
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindStringSubmatch(sec)
	if m == nil {
		t.Fatal("no yaml block in the section")
	}
	d, err := Parse("README.md", []byte(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(d, "durably.yaml", "example.com/app"); err != nil {
		t.Fatal(err)
	}
}

// declared lists the top-level names of the Go files of a directory.
func declared(t *testing.T, dir string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				names[d.Name.Name] = true
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						names[s.Name.Name] = true
					case *ast.ValueSpec:
						for _, n := range s.Names {
							names[n.Name] = true
						}
					}
				}
			}
		}
	}
	return names
}

// TestReadmeTour: every identifier the "Generated code tour" names exists
// in the generated tenants package or its client.
func TestReadmeTour(t *testing.T) {
	sec := readmeSection(t, "Generated code tour")
	pkg := declared(t, "../examples/tenants/tenantjobs")
	client := declared(t, "../examples/tenants/tenantjobs/client")
	runtime := declared(t, "../runtime/durablyclient")
	for _, row := range regexp.MustCompile("(?m)^\\| (`[^|]+`) \\|").FindAllStringSubmatch(sec, -1) {
		for _, id := range regexp.MustCompile("`([A-Za-z]+)`").FindAllStringSubmatch(row[1], -1) {
			if !pkg[id[1]] {
				t.Errorf("the tour names %s, which package tenantjobs does not declare", id[1])
			}
		}
	}
	for _, m := range []string{"TriggerSteps", "TriggerAndWaitSteps", "WaitSteps", "GetStepsRun", "ListStepsRuns", "SubscribeSteps"} {
		if !client[m] {
			t.Errorf("the tour names client.%s, which is not generated", m)
		}
	}
	for _, m := range []string{"Cancel", "Retrigger", "Delete", "Steps", "Jobs", "WithRequestEditor", "WithPollInterval", "RunError"} {
		if !runtime[m] {
			t.Errorf("the tour names %s, which durablyclient lacks", m)
		}
	}
}
