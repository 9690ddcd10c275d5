package gen

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// installSteps are the commands of the declaration guide's install
// section, in order: the go commands of its sh blocks and the go:generate
// line.
func installSteps(t *testing.T) (commands [][]string, generateLine string) {
	t.Helper()
	sec := docSection(t, declarationGuide, "Installing durably-gen")
	for _, m := range regexp.MustCompile("(?s)```(sh|go)\n(.*?)```").FindAllStringSubmatch(sec, -1) {
		for _, line := range strings.Split(strings.TrimSpace(m[2]), "\n") {
			switch {
			case m[1] == "go" && strings.HasPrefix(line, "//go:generate "):
				generateLine = line
			case m[1] == "sh" && strings.HasPrefix(line, "go "):
				commands = append(commands, strings.Fields(line))
			}
		}
	}
	if len(commands) == 0 || generateLine == "" {
		t.Fatalf("the install subsection lacks commands or the go:generate line:\n%s", sec)
	}
	return commands, generateLine
}

// userModule makes a module outside this repository and follows the
// declaration guide's install steps in it, from a checkout: the recipe's
// -replace names this checkout's directory where the guide writes
// ../durably; the
// release command (@latest, which needs the published module) is only
// checked to be there. The commands run with GOPROXY=off against the
// module cache, but for go mod tidy: it wants the test dependencies of
// dependencies (testify, for invopop/jsonschema's tests), which nothing
// else downloads, so a fresh machine's cache lacks them; tidy asks the
// configured proxy, as it would for a user.
func userModule(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a module; skipped in -short mode")
	}
	commands, generateLine := installSteps(t)
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/app\n\ngo 1.26\n")
	sum, err := os.ReadFile(filepath.Join(repo, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	write("go.sum", string(sum))
	write("durably.yaml", `package: {name: jobs, output: ./jobs}
labels:
  organizationId: {type: string, minLength: 1, required: true}
  env: {type: enum, values: [production, staging], required: true}
  team: {type: string}
context:
  userId: {type: string}
jobs:
  - name: resize
    input:
      type: object
      properties:
        width: {type: integer, minimum: 1, required: true}
        url: {type: string, required: true}
    output:
      type: object
      properties:
        bytes: {type: integer, required: true}
  - name: ping
`)
	write("generate.go", "package app\n\n"+generateLine+"\n")
	write("cmd/app/main.go", `package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"example.com/app/jobs"
	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/sqlitestore"
)

func main() {
	st, err := sqlitestore.Open(filepath.Join(os.TempDir(), "app.db"), sqlitestore.Options{})
	if err != nil {
		panic(err)
	}
	e, _ := durably.New(jobs.Config(durably.Config{Store: st}))
	j, err := jobs.Register(e, jobs.Handlers{
		Resize: func(ctx context.Context, s *durably.StepContext, in jobs.ResizeInput) (jobs.ResizeOutput, error) {
			return jobs.ResizeOutput{Bytes: in.Width * 3}, nil
		},
		Ping: func(ctx context.Context, s *durably.StepContext, _ jobs.PingInput) (jobs.PingOutput, error) {
			return jobs.PingOutput{}, nil
		},
	})
	if err != nil {
		panic(err)
	}
	labels := jobs.NewLabels("acme", jobs.EnvProduction, jobs.WithTeam("blue"))
	fmt.Println(j.Resize.Name(), labels.Labels().ToMap())
}
`)
	release := false
	for _, c := range commands {
		if strings.HasSuffix(c[len(c)-1], "@latest") {
			release = true
			continue
		}
		args := slices.Clone(c[1:])
		for i, a := range args {
			args[i] = strings.Replace(a, "github.com/durably-go/durably=../durably", "github.com/durably-go/durably="+repo, 1)
		}
		run(t, dir, c[0], args...)
	}
	if !release {
		t.Fatal("the install subsection lacks the release command (go get -tool …@latest)")
	}
	if mod, _ := os.ReadFile(filepath.Join(dir, "go.mod")); !strings.Contains(string(mod), "github.com/durably-go/durably => "+repo) {
		t.Fatalf("the guide's recipe did not replace the module by the checkout:\n%s", mod)
	}
	return dir
}

func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	out, err := command(dir, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func command(dir, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if !slices.Equal(args, []string{"mod", "tidy"}) {
		cmd.Env = append(cmd.Env, "GOPROXY=off")
	}
	return cmd
}

// TestUserModuleGoGenerate: the declaration guide's install steps in a
// fresh module
// (go get -tool, //go:generate go tool durably-gen, go generate, go build),
// then go vet and go mod tidy, and the program runs.
func TestUserModuleGoGenerate(t *testing.T) {
	dir := userModule(t)
	for _, f := range []string{"jobs/durably_gen.go", "jobs/client/client_gen.go"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), "// Code generated by durably-gen") || !strings.Contains(string(b), "DO NOT EDIT.") {
			t.Fatalf("%s lacks the generated-code header", f)
		}
	}
	run(t, dir, "go", "vet", "./...")
	run(t, dir, "go", "mod", "tidy")
	if mod, _ := os.ReadFile(filepath.Join(dir, "go.mod")); !strings.Contains(string(mod), "tool github.com/durably-go/durably/cmd/durably-gen") {
		t.Fatalf("go mod tidy dropped the tool:\n%s", mod)
	}
	run(t, dir, "go", "build", "./...")
	if out := run(t, dir, "go", "run", "./cmd/app"); !strings.Contains(out, "resize map[env:production organizationId:acme team:blue]") {
		t.Fatalf("app printed %q", out)
	}
	// The generated code carries its schemas as data: the program links no
	// reflection-based schema code.
	if deps := run(t, dir, "go", "list", "-deps", "./cmd/app"); strings.Contains(deps, "github.com/invopop/jsonschema") {
		t.Fatal("the program links github.com/invopop/jsonschema")
	}
	if out := run(t, dir, "go", "tool", "durably-gen", "-check"); out != "" {
		t.Fatalf("-check on fresh output printed %q", out)
	}

	// Wrong code does not compile, and the compiler names the culprit.
	cases := []struct {
		name, body, want string
	}{
		{"wrong label key", `_ = jobs.Labels{Organization: "acme"}`, "unknown field Organization"},
		{"wrong enum value", `_ = jobs.Labels{Env: "prod"}`, `cannot use "prod" (untyped string constant) as jobs.Env value`},
		{"undeclared enum value", `_ = jobs.Labels{Env: jobs.EnvProd}`, "undefined: jobs.EnvProd"},
		{"wrong input field type", `_ = jobs.ResizeInput{Width: "wide"}`, `cannot use "wide" (untyped string constant) as int value in struct literal`},
		{"wrong input field", `_ = jobs.ResizeInput{Height: 3}`, "unknown field Height"},
		{"forgotten required label", `_ = jobs.NewLabels("acme")`, "not enough arguments in call to jobs.NewLabels"},
		{"labels by literal", `var j *jobs.ResizeJob; _, _, _ = j.Trigger(nil, jobs.ResizeInput{}, jobs.Labels{OrganizationID: "acme"}, jobs.TriggerOptions{})`,
			"cannot use jobs.Labels{…} (value of struct type jobs.Labels) as jobs.TriggerLabels value"},
		{"trigger without labels", `var j *jobs.ResizeJob; _, _, _ = j.Trigger(nil, jobs.ResizeInput{}, jobs.TriggerOptions{})`, "not enough arguments in call to j.Trigger"},
		{"input to a job without input", `var j *jobs.PingJob; _, _, _ = j.Trigger(nil, jobs.ResizeInput{}, jobs.NewLabels("acme", jobs.EnvStaging), jobs.TriggerOptions{})`,
			"too many arguments in call to j.Trigger"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pkg := filepath.Join(dir, "bad", strings.ReplaceAll(c.name, " ", ""))
			if err := os.MkdirAll(pkg, 0o755); err != nil {
				t.Fatal(err)
			}
			src := "package main\n\nimport \"example.com/app/jobs\"\n\nfunc main() {\n\t" + c.body + "\n}\n"
			if err := os.WriteFile(filepath.Join(pkg, "main.go"), []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := command(dir, "go", "build", "./bad/"+filepath.Base(pkg)).CombinedOutput()
			if err == nil {
				t.Fatalf("%s compiled", c.body)
			}
			if !strings.Contains(string(out), c.want) {
				t.Fatalf("compiler output lacks %q:\n%s", c.want, out)
			}
		})
	}
}
