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

// docSection returns the text of a Markdown file of the repository under
// a "## " heading.
func docSection(t *testing.T, file, heading string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", file))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## "+heading+"\n")
	if i < 0 {
		t.Fatalf("%s has no section %q", file, heading)
	}
	s = s[i+len(heading)+5:]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	return s
}

// declarationGuide is the guide to durably.yaml and the generated code.
const declarationGuide = "docs/declaration.md"

// TestDocDeclarations: every declaration the README and the guides show
// is valid and generates code: each YAML block, given a package when it
// shows none, unless it says it is a part (an indented fragment, or a
// first line "# …").
func TestDocDeclarations(t *testing.T) {
	docs, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, doc := range append(docs, "../README.md") {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile("(?ms)^```yaml\n(.*?)^```").FindAllStringSubmatch(string(b), -1) {
			src := m[1]
			if strings.HasPrefix(src, " ") || strings.HasPrefix(src, "# …") {
				continue
			}
			if !regexp.MustCompile(`(?m)^package:`).MatchString(src) {
				src = "package: {name: example, output: ./example}\n" + src
			}
			checked++
			d, err := Parse(doc, []byte(src))
			if err != nil {
				t.Errorf("%s: a declaration it shows does not parse: %v\n%s", doc, err, m[1])
				continue
			}
			if _, err := Generate(d, "durably.yaml", "example.com/app"); err != nil {
				t.Errorf("%s: a declaration it shows does not generate: %v\n%s", doc, err, m[1])
			}
		}
	}
	if checked < 3 {
		t.Fatalf("checked %d declarations", checked)
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

// TestTour: every identifier the declaration guide's "Generated code
// tour" names exists in the generated tenants package or its client.
func TestTour(t *testing.T) {
	sec := docSection(t, declarationGuide, "Generated code tour")
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
