package gen

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// corpus reads the committed seed corpus of FuzzLoad: name → declaration.
func corpus(t testing.TB) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob("testdata/fuzz/FuzzLoad/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	m := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitN(string(b), "\n", 3)
		if len(lines) < 2 || lines[0] != "go test fuzz v1" {
			t.Fatalf("%s: not a fuzz corpus file", f)
		}
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		m[filepath.Base(f)] = []byte(s)
	}
	return m
}

// TestIssueCases: every declaration of the issue that asked for a total
// generator (the seed corpus of FuzzLoad) either generates code that
// type-checks or is refused with the problem named here.
func TestIssueCases(t *testing.T) {
	want := map[string]string{ // "" compiles; otherwise a part of the refusal
		"no_labels":                   "",
		"empty_labels":                "",
		"null_sections":               "",
		"label_and_context_enum_plan": `d.yaml:5:3: context.plan: the Go identifier Plan of the enum type of context field "plan" in package billing is also the enum type of label "plan" (labels.plan, 3:3); rename one of them`,
		"lines_and_linesItem":         `d.yaml:13:9: jobs[0].input.properties.linesItem: the Go identifier InvoiceInputLinesItem of the type of property "linesItem" in package billing is also the type of the items of property "lines" (jobs[0].input.properties.lines.items, 9:11); rename one of them`,
		"label_config":                `d.yaml:3:3: labels.config: the Go identifier Config of the enum type of label "config" in package billing is also the generated function Config`,
		"label_handlers":              `labels.handlers: the Go identifier Handlers of the enum type of label "handlers" in package billing is also the generated type Handlers`,
		"label_jobs":                  `labels.jobs: the Go identifier Jobs of the enum type of label "jobs" in package billing is also the generated type Jobs`,
		"label_labels":                `labels.labels: the Go identifier Labels of the enum type of label "labels" in package billing is also the generated type Labels`,
		"label_authContext":           `labels.authContext: the Go identifier AuthContext of the enum type of label "authContext" in package billing is also the generated type AuthContext`,
		"context_enum_config":         `context.config: the Go identifier Config of the enum type of context field "config" in package billing is also the generated function Config`,
		"context_array_object":        "",
		"job_without_input":           "",
		"job_input_null":              "",
		"job_input_empty_object":      `d.yaml:4:5: jobs[0].input: missing "type"`,
		"client_false":                "",
		"output_absolute":             `d.yaml:1:26: package.output: output "/tmp/billing" is absolute; it must be a relative path below this file's directory, inside the module`,
		"output_escapes":              `d.yaml:1:26: package.output: output "../outside" leaves this file's directory`,
		"required_labels":             "",
		"labels_id_type":              "",
		"yaml_syntax":                 "d.yaml:1:26: YAML: did not find expected ',' or '}'",
		"yaml_tab":                    "d.yaml:2:1: YAML: found character that cannot start any token",
		"reserved_job":                `d.yaml:3:5: jobs[0].name: "useRuns" is reserved by the React client of the protocol`,
		"enum_values_mixed":           `labels.size.values[7]: the Go identifier SizePro of the value "pro" of enum Size in package billing is also the value "Pro" of enum Size (labels.size.values[6], 3:77)`,
		"keyword_names":               "",
		"description_specials":        "",
		"alias_bomb":                  "the declaration is too large or too deeply nested",
		"null_context_field":          `d.yaml:3:2: context.A0000: context field "A0000" has no type`,
		"two_documents":               "d.yaml:5:1: a second YAML document: a declaration is one document",
		"aliases":                     "",
		"infinite_minimum":            `d.yaml:4:36: jobs[0].input.minimum: .inf is not a finite number`,
		"tenant_label":                "",
		"tenant_optional":             `d.yaml:3:23: labels.org.tenant: a tenant label must be required`,
		"schedules":                   "",
		"schedule_mismatch":           `d.yaml:6:44: jobs[0].schedules[0].input: the input does not match job "send-receipt"'s input: (root): must be >= 1`,
		"retry":                       "",
		"retry_max_under_default":     `d.yaml:4:29: jobs[0].retry.max: max (500ms) is less than initial (1s, the default)`,
		"retry_without_attempts":      `d.yaml:4:5: jobs[0].retry: missing "maxAttempts"; add it; a retry policy is a mapping such as {maxAttempts: 3`,
		"retry_negative_initial":      `d.yaml:4:29: jobs[0].retry.initial: does not match pattern`,
		"priority_out_of_range":       `d.yaml:4:5: jobs[0].priority: must be <= `,
		"merge_keys":                  "",
		"yaml_directive":              "",
		"null_property":               `d.yaml:4:40: jobs[0].input.properties.x: property "x" has no type`,
		"exact_bound":                 "",
		"max_running_zero":            `d.yaml:4:5: jobs[0].maxRunning: must be >= 1 but found 0; write a whole number from 1`,
	}
	tc := newTypeChecker(t)
	got := corpus(t)
	for name := range want {
		if got[name] == nil {
			t.Errorf("the corpus lacks %s", name)
		}
	}
	for name, src := range got {
		t.Run(name, func(t *testing.T) {
			w, ok := want[name]
			if !ok {
				t.Fatalf("no expectation for corpus file %s", name)
			}
			d, err := Parse("d.yaml", src)
			if w == "" {
				if err != nil {
					t.Fatalf("refused:\n%v\n%s", err, src)
				}
				files, err := Generate(d, "d.yaml", "example.com/m")
				if err != nil {
					t.Fatal(err)
				}
				if err := tc.check(files, strings.TrimSuffix("example.com/m/"+cleanOutput(d.Package.Output), "/.")); err != nil {
					t.Fatalf("does not type-check: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Fatalf("problems\n%v\nlack %q", err, w)
			}
		})
	}
}

var fuzzChecker struct {
	once sync.Once
	tc   *typeChecker
}

// FuzzLoad: any input is either refused with problems that each have a
// line, a column and a message, or generates code that type-checks.
func FuzzLoad(f *testing.F) {
	for _, src := range corpus(f) {
		f.Add(src)
	}
	exports, err := exportData()
	if err != nil {
		f.Fatal(err)
	}
	if b, err := json.Marshal(exports); err == nil && os.Getenv(exportDataEnv) == "" {
		os.Setenv(exportDataEnv, string(b)) // for the fuzz workers this process starts
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		d, err := Parse("d.yaml", src)
		if err != nil {
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("not a refusal with problems: %v", err)
			}
			for _, p := range ps {
				if p.Line <= 0 || p.Col <= 0 || p.Msg == "" {
					t.Fatalf("problem without a place or a message: %q", p.String())
				}
			}
			return
		}
		files, err := Generate(d, "d.yaml", "example.com/m")
		if err != nil {
			t.Fatalf("accepted by Parse, refused by Generate: %v", err)
		}
		fuzzChecker.once.Do(func() { fuzzChecker.tc = newTypeChecker(t) })
		if err := fuzzChecker.tc.check(files, strings.TrimSuffix("example.com/m/"+cleanOutput(d.Package.Output), "/.")); err != nil {
			t.Fatalf("generated code does not type-check: %v", err)
		}
	})
}
