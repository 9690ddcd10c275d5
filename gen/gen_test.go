package gen

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestCommittedOutputIsCurrent fails when regenerating a committed
// declaration would change, add or remove a file (what -check reports).
func TestCommittedOutputIsCurrent(t *testing.T) {
	for _, decl := range []string{"../durably.yaml", "../examples/tenants/durably.yaml", "../examples/orders/durably.yaml", "../cmd/durably-bench/durably.yaml"} {
		t.Run(decl, func(t *testing.T) {
			stale, err := Stale(decl)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range stale {
				t.Errorf("%s is not what %s generates; run `go run ./cmd/durably-gen %s`", f, decl, strings.TrimPrefix(decl, "../"))
			}
		})
	}
}

// TestSchemaFileIsCurrent keeps durably.schema.json, which editors read,
// equal to the schema of the Declaration types.
func TestSchemaFileIsCurrent(t *testing.T) {
	on, err := os.ReadFile("../durably.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(on, Schema()) {
		t.Fatal("durably.schema.json is stale; run `go run ./cmd/durably-gen -schema > durably.schema.json`")
	}
}

// TestSchemaAgreesOnShapes: what an editor checks with durably.schema.json
// agrees with the generator on the shapes of sections: a label is a string
// or an enum, the auth context takes any type, input and output may be
// left out.
func TestSchemaAgreesOnShapes(t *testing.T) {
	schema, err := declarationSchema()
	if err != nil {
		t.Fatal(err)
	}
	const pkg = `"package": {"name": "p", "output": "./p"}, `
	for _, c := range []struct {
		doc   string
		valid bool
	}{
		{pkg + `"jobs": [{"name": "a"}]`, true},
		{pkg + `"labels": {"n": {"type": "integer"}}, "jobs": [{"name": "a"}]`, false},
		{pkg + `"labels": {"n": {"type": "array", "items": {"type": "string"}}}, "jobs": [{"name": "a"}]`, false},
		{pkg + `"labels": {"n": {"type": "enum", "values": ["x"]}, "m": {"type": "string"}}, "jobs": [{"name": "a"}]`, true},
		{pkg + `"context": {"scopes": {"type": "array", "items": {"type": "string"}}, "org": {"type": "object", "properties": {"id": {"type": "string"}}}}, "jobs": [{"name": "a"}]`, true},
		{pkg + `"jobs": [{"name": "a", "input": {}}]`, false},
		{pkg + `"jobs": [{"name": "a", "retry": {"maxAttempts": 3, "backoff": "fixed", "initial": "1m30s", "max": "2h", "jitter": 0.5}, "priority": -3, "maxRunning": 2}]`, true},
		{pkg + `"jobs": [{"name": "a", "retry": {"maxAttempts": 1, "initial": "0", "max": ".5h", "jitter": 1}, "priority": 2147483647}]`, true},
		{pkg + `"jobs": [{"name": "a", "retry": {"backoff": "fixed"}}]`, false},
		{pkg + `"jobs": [{"name": "a", "retry": {"maxAttempts": 0}}]`, false},
		{pkg + `"jobs": [{"name": "a", "retry": {"maxAttempts": 2, "backoff": "linear"}}]`, false},
		{pkg + `"jobs": [{"name": "a", "retry": {"maxAttempts": 2, "initial": "-1s"}}]`, false},
		{pkg + `"jobs": [{"name": "a", "retry": {"maxAttempts": 2, "max": "1 minute"}}]`, false},
		{pkg + `"jobs": [{"name": "a", "retry": {"maxAttempts": 2, "jitter": -0.1}}]`, false},
		{pkg + `"jobs": [{"name": "a", "retry": {"maxAttempts": 2, "delay": "1s"}}]`, false},
		{pkg + `"jobs": [{"name": "a", "priority": 2147483648}]`, false},
		{pkg + `"jobs": [{"name": "a", "priority": "high"}]`, false},
		{pkg + `"jobs": [{"name": "a", "maxRunning": 0}]`, false},
		{pkg + `"jobs": [{"name": "a", "maxRunningPerTenant": 3, "timeout": "1h", "stepTimeout": "30s"}]`, true},
		{pkg + `"jobs": [{"name": "a", "maxRunningPerTenant": 0}]`, false},
		{pkg + `"jobs": [{"name": "a", "timeout": "an hour"}]`, false},
		{pkg + `"jobs": [{"name": "a", "stepTimeout": "-5s"}]`, false},
	} {
		var v any
		if err := json.Unmarshal([]byte("{"+c.doc+"}"), &v); err != nil {
			t.Fatal(err)
		}
		if err := schema.Validate(v); (err == nil) != c.valid {
			t.Errorf("%s: valid %v, want %v (%v)", c.doc, err == nil, c.valid, err)
		}
		_, err := Parse("d.yaml", []byte("{"+c.doc+"}"))
		if (err == nil) != c.valid {
			t.Errorf("%s: the generator accepts %v, the schema %v (%v)", c.doc, err == nil, c.valid, err)
		}
	}
}

// TestYAMLErrorColumns: YAML syntax errors point at their line and column,
// which the YAML library does not say.
func TestYAMLErrorColumns(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"package:\n  name: p\n   output: x\n", "d.yaml:3:10: YAML: mapping values are not allowed in this context"},
		{"package: {name: p}\njobs:\n  - name: a\n\tinput: {}\n", "d.yaml:4:1: YAML: found a tab character that violates indentation"},
		{"jobs:\n  - name: 'a\n", "d.yaml:2:11: YAML: found unexpected end of stream"}, // the opening quote
		{"a: b: c\n", "d.yaml:1:5: YAML: mapping values are not allowed in this context"},
	} {
		_, err := Parse("d.yaml", []byte(c.src))
		if err == nil || err.Error() != c.want {
			t.Errorf("%q: %v, want %s", c.src, err, c.want)
		}
	}
}

// TestGolden compares the output for testdata/golden/*.yaml with the golden
// files next to them (-update rewrites them).
func TestGolden(t *testing.T) {
	decls, _ := filepath.Glob("testdata/golden/*.yaml")
	if len(decls) == 0 {
		t.Fatal("no golden declarations")
	}
	for _, decl := range decls {
		d, err := Load(decl)
		if err != nil {
			t.Fatal(err)
		}
		files, err := Generate(d, filepath.Base(decl), "example.com/app")
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			golden := strings.TrimSuffix(decl, ".yaml") + "." + strings.ReplaceAll(filepath.ToSlash(f.Path), "/", "_") + ".golden"
			if *update {
				if err := os.WriteFile(golden, f.Content, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./gen -update)", err)
			}
			if !bytes.Equal(want, f.Content) {
				t.Errorf("%s differs from %s:\n%s", f.Path, golden, f.Content)
			}
		}
	}
}

func TestProblems(t *testing.T) {
	const good = "package: {name: p, output: ./p}\njobs:\n  - name: a\n    input: {type: string}\n"
	// pj starts a declaration whose first job, a, takes members next.
	const pj = "package: {name: p, output: ./p}\njobs:\n  - name: a\n"
	cases := []struct {
		name, yaml string
		want       []string // each must appear, in order
	}{
		{"YAML syntax", "package: [\n", []string{"d.yaml:1:10: YAML: did not find expected node content"}},
		{"unknown top-level key", good + "extra: 1\n", []string{"d.yaml:5:1: extra: unknown key \"extra\""}},
		{"unknown type key", "package: {name: p, output: ./p}\njobs:\n  - name: a\n    input: {type: string, minLenght: 3}\n",
			[]string{"d.yaml:4:27: jobs[0].input.minLenght: unknown key \"minLenght\""}},
		{"missing jobs", "package: {name: p, output: ./p}\n", []string{"d.yaml:1:1: missing \"jobs\""}},
		{"unsupported type", "package: {name: p, output: ./p}\njobs:\n  - name: a\n    input: {type: date}\n",
			[]string{"d.yaml:4:13: jobs[0].input.type: value must be one of"}},
		{"wrong value type", "package: {name: p, output: ./p}\njobs:\n  - name: a\n    input: {type: string, minLength: three}\n",
			[]string{"d.yaml:4:27: jobs[0].input.minLength: expected integer, but got string"}},
		{"duplicate job", good + "  - name: a\n    input: {type: string}\n", []string{"d.yaml:5:5: jobs[1].name: duplicate job name \"a\" (also jobs[0])"}},
		{"bad package name", "package: {name: Bad, output: ./p}\njobs:\n  - name: a\n    input: {type: string}\n",
			[]string{"d.yaml:1:11: package.name: does not match pattern"}},
		{"keyword package", "package: {name: func, output: ./p}\njobs:\n  - name: a\n    input: {type: string}\n",
			[]string{"package.name: \"func\" is a Go keyword"}},
		{"invalid identifier", "package: {name: p, output: ./p}\njobs:\n  - name: 9lives\n    input: {type: string}\n",
			[]string{"d.yaml:3:5: jobs[0].name: job name \"9lives\" gives no exported Go identifier; set id"}},
		{"id collision", "package: {name: p, output: ./p}\njobs:\n  - name: import-csv\n    input: {type: string}\n  - name: importCsv\n    input: {type: string}\n",
			[]string{"d.yaml:5:5: jobs[1].name: jobs[0] (\"import-csv\") has the Go identifier ImportCSV too; set id on one of them"}},
		{"keyword on wrong type", "package: {name: p, output: ./p}\njobs:\n  - name: a\n    input: {type: integer, minLength: 1}\n",
			[]string{"jobs[0].input.minLength: minLength applies to string, not integer"}},
		{"bounds", "package: {name: p, output: ./p}\njobs:\n  - name: a\n    input: {type: integer, minimum: 5, maximum: 1}\n",
			[]string{"jobs[0].input.minimum: minimum 5 exceeds maximum 1"}},
		{"enum without values", "package: {name: p, output: ./p}\njobs:\n  - name: a\n    input: {type: enum}\n",
			[]string{"jobs[0].input: an enum needs values"}},
		{"array without items", "package: {name: p, output: ./p}\njobs:\n  - name: a\n    input: {type: array}\n",
			[]string{"jobs[0].input: an array needs items"}},
		{"label of wrong type", "package: {name: p, output: ./p}\nlabels:\n  n: {type: integer}\njobs:\n  - name: a\n    input: {type: string}\n",
			[]string{"d.yaml:3:7: labels.n.type: a label is a string or an enum"}},
		{"bad label key", "package: {name: p, output: ./p}\nlabels:\n  \"bad key\": {type: string}\njobs:\n  - name: a\n    input: {type: string}\n",
			[]string{"labels.bad key: label key \"bad key\" must contain only"}},
		{"fields colliding in Go", "package: {name: p, output: ./p}\njobs:\n  - name: a\n    input:\n      type: object\n      properties:\n        user_id: {type: string}\n        userId: {type: string}\n",
			[]string{"d.yaml:8:9: jobs[0].input.properties.userId: the Go identifier UserID of the field of property \"userId\" in struct AInput is also the field of property \"user_id\" (jobs[0].input.properties.user_id, 7:9); rename one of them"}},
		{"bad pattern", "package: {name: p, output: ./p}\njobs:\n  - name: a\n    input: {type: string, pattern: \"(\"}\n",
			[]string{"jobs[0].input.pattern: pattern does not compile"}},
		{"reserved job name", "package: {name: p, output: ./p}\njobs:\n  - name: useRuns\n    input: {type: string}\n",
			[]string{"\"useRuns\" is reserved by the React client of the protocol; choose another job name"}},
		{"tenant label not required", "package: {name: p, output: ./p}\nlabels:\n  org: {type: string, tenant: true}\njobs:\n  - name: a\n",
			[]string{"d.yaml:3:23: labels.org.tenant: a tenant label must be required"}},
		{"tenant on a property", "package: {name: p, output: ./p}\njobs:\n  - name: a\n    input: {type: string, tenant: true}\n",
			[]string{"d.yaml:4:27: jobs[0].input.tenant: unknown key \"tenant\""}},
		{"tenant on a context field", "package: {name: p, output: ./p}\ncontext:\n  org: {type: string, tenant: true}\njobs:\n  - name: a\n",
			[]string{"d.yaml:3:23: context.org.tenant: unknown key \"tenant\""}},
		{"tenant label of another type", "package: {name: p, output: ./p}\nlabels:\n  org: {type: integer, required: true, tenant: true}\njobs:\n  - name: a\n",
			[]string{"d.yaml:3:9: labels.org.type: a label is a string or an enum"}},
		{"schedule without cron", "package: {name: p, output: ./p}\njobs:\n  - name: a\n    schedules:\n      - {name: s}\n",
			[]string{"d.yaml:5:9: jobs[0].schedules[0]: missing \"cron\""}},
		{"schedule bad cron", "package: {name: p, output: ./p}\njobs:\n  - name: a\n    schedules:\n      - {name: s, cron: \"61 * * * *\"}\n",
			[]string{"d.yaml:5:19: jobs[0].schedules[0].cron: cron \"61 * * * *\": "}},
		{"schedule zone in spec", "package: {name: p, output: ./p}\njobs:\n  - name: a\n    schedules:\n      - {name: s, cron: \"TZ=UTC 0 * * * *\"}\n",
			[]string{"jobs[0].schedules[0].cron: cron \"TZ=UTC 0 * * * *\": the time zone goes in TimeZone"}},
		{"schedule bad zone", "package: {name: p, output: ./p}\njobs:\n  - name: a\n    schedules:\n      - {name: s, cron: \"@daily\", timeZone: Mars/Olympus}\n",
			[]string{"d.yaml:5:35: jobs[0].schedules[0].timeZone: time zone \"Mars/Olympus\""}},
		{"schedule local zone", "package: {name: p, output: ./p}\njobs:\n  - name: a\n    schedules:\n      - {name: s, cron: \"@daily\", timeZone: Local}\n",
			[]string{"jobs[0].schedules[0].timeZone: time zone \"Local\": name the zone"}},
		{"duplicate schedule", "package: {name: p, output: ./p}\njobs:\n  - name: a\n    schedules:\n      - {name: s, cron: \"@daily\"}\n  - name: b\n    schedules:\n      - {name: s, cron: \"@hourly\"}\n",
			[]string{"d.yaml:8:10: jobs[1].schedules[0].name: duplicate schedule name \"s\" (also jobs[0].schedules[0])"}},
		{"schedule catchUp", "package: {name: p, output: ./p}\njobs:\n  - name: a\n    schedules:\n      - {name: s, cron: \"@daily\", catchUp: soon}\n      - {name: t, cron: \"@daily\", catchUp: -1h}\n",
			[]string{"d.yaml:5:35: jobs[0].schedules[0].catchUp: catchUp \"soon\": write a positive Go duration", "d.yaml:6:35: jobs[0].schedules[1].catchUp: catchUp \"-1h\""}},
		{"schedule input of a job without input", "package: {name: p, output: ./p}\njobs:\n  - name: a\n    schedules:\n      - {name: s, cron: \"@daily\", input: 1}\n",
			[]string{"d.yaml:5:35: jobs[0].schedules[0].input: job \"a\" has no input; leave the schedule's input out"}},
		{"schedule input mismatch", "package: {name: p, output: ./p}\njobs:\n  - name: a\n    input:\n      type: object\n      properties:\n        n: {type: integer, minimum: 1, required: true}\n    schedules:\n      - name: s\n        cron: \"@daily\"\n        input: {n: 0, extra: x}\n      - {name: t, cron: \"@daily\"}\n",
			[]string{"d.yaml:11:9: jobs[0].schedules[0].input: the input does not match job \"a\"'s input: extra: unknown field; n: must be >= 1", "d.yaml:12:9: jobs[0].schedules[1]: the input does not match job \"a\"'s input: (root): expected object"}},
		{"schedule labels", "package: {name: p, output: ./p}\nlabels:\n  org: {type: string, required: true}\n  env: {type: enum, values: [prod]}\njobs:\n  - name: a\n    schedules:\n      - {name: s, cron: \"@daily\", labels: {env: dev}}\n      - {name: t, cron: \"@daily\"}\n      - {name: u, cron: \"@daily\", labels: {org: x, \"bad key\": y}}\n",
			[]string{"d.yaml:8:35: jobs[0].schedules[0].labels: the labels do not match the declared labels: env: value must be \"prod\"; org: required", "d.yaml:9:9: jobs[0].schedules[1]: the labels do not match the declared labels: org: required", "jobs[0].schedules[2].labels: Invalid label key \"bad key\""}},
		{"schedule label value not a string", "package: {name: p, output: ./p}\nlabels:\n  org: {type: string}\njobs:\n  - name: a\n    schedules:\n      - {name: s, cron: \"@daily\", labels: {org: 1}}\n",
			[]string{"d.yaml:7:44: jobs[0].schedules[0].labels.org: expected string"}},
		{"signal names", pj + "    signals:\n      9lives: {type: string}\n      " + strings.Repeat("a", 257) + ": {type: string}\n      ok: {type: integer, minLength: 1}\n",
			[]string{"d.yaml:5:7: jobs[0].signals.9lives: signal \"9lives\" gives no exported Go identifier",
				"jobs[0].signals." + strings.Repeat("a", 257) + ": signal name \"" + strings.Repeat("a", 32) + "…\"",
				"must be at most 256 bytes, got 257",
				"d.yaml:7:27: jobs[0].signals.ok.minLength: minLength applies to string, not integer"}},
		{"signal payload types colliding in Go", pj + "    signals:\n      a-b: {type: object, properties: {x: {type: string}}}\n      a_b: {type: object, properties: {y: {type: string}}}\n",
			[]string{"d.yaml:6:7: jobs[0].signals.a_b: the Go identifier AABPayload of the payload of signal \"a_b\" of job \"a\" in package p is also"}},
		{"retry without maxAttempts", pj + "    retry: {backoff: fixed}\n",
			[]string{"d.yaml:4:5: jobs[0].retry: missing \"maxAttempts\"; add it; a retry policy is a mapping such as {maxAttempts: 3"}},
		{"retry not a mapping", pj + "    retry: 3\n",
			[]string{"d.yaml:4:5: jobs[0].retry: expected object, but got number; a retry policy is a mapping such as {maxAttempts: 3"}},
		{"retry unknown key", pj + "    retry: {maxAttempts: 2, maxAttempt: 3}\n",
			[]string{"d.yaml:4:29: jobs[0].retry.maxAttempt: unknown key \"maxAttempt\""}},
		{"maxAttempts zero", pj + "    retry: {maxAttempts: 0}\n",
			[]string{"d.yaml:4:13: jobs[0].retry.maxAttempts: must be >= 1 but found 0; maxAttempts counts every attempt, the first included: write a whole number from 1 (no retry)"}},
		{"maxAttempts not whole", pj + "    retry: {maxAttempts: 2.5}\n",
			[]string{"d.yaml:4:13: jobs[0].retry.maxAttempts: expected integer, but got number; maxAttempts counts every attempt"}},
		{"backoff", pj + "    retry: {maxAttempts: 2, backoff: linear}\n",
			[]string{"d.yaml:4:29: jobs[0].retry.backoff: value must be one of \"exponential\", \"fixed\"; write exponential (the wait doubles"}},
		{"durations", pj + "    retry: {maxAttempts: 2, initial: -1s, max: soon}\n",
			[]string{"d.yaml:4:29: jobs[0].retry.initial: does not match pattern", "; write a non-negative Go duration such as 500ms, 1s or 1m30s",
				"d.yaml:4:43: jobs[0].retry.max: does not match pattern"}},
		{"duration as a number", pj + "    retry: {maxAttempts: 2, initial: 0}\n",
			[]string{"d.yaml:4:29: jobs[0].retry.initial: expected string, but got number; write a non-negative Go duration"}},
		{"duration overflow", pj + "    retry: {maxAttempts: 2, max: 3000000h}\n",
			[]string{"d.yaml:4:29: jobs[0].retry.max: max \"3000000h\": write a non-negative Go duration (500ms, 1s, 1m30s) of at most 2562047h47m16.854775807s"}},
		{"max under initial", pj + "    retry: {maxAttempts: 2, initial: 2s, max: 1500ms}\n  - name: b\n    retry: {maxAttempts: 2, max: 500ms}\n",
			[]string{"d.yaml:4:42: jobs[0].retry.max: max (1.5s) is less than initial (2s): raise max, lower initial, or leave max out for no cap",
				"d.yaml:6:29: jobs[1].retry.max: max (500ms) is less than initial (1s, the default)"}},
		{"jitter", pj + "    retry: {maxAttempts: 2, jitter: 1.5}\n",
			[]string{"d.yaml:4:29: jobs[0].retry.jitter: must be <= 1 but found 1.5; write a fraction from 0 (no jitter) to 1"}},
		{"priority", pj + "    priority: high\n  - name: b\n    priority: 2147483648\n  - name: c\n    priority: 1.5\n",
			[]string{"d.yaml:4:5: jobs[0].priority: expected integer, but got string; write a whole number from -2147483648 to 2147483647",
				"d.yaml:6:5: jobs[1].priority: must be <= ", "d.yaml:8:5: jobs[2].priority: expected integer"}},
		{"property without a type", pj + "    input:\n      type: object\n      properties: { invoiceId: , amount: {type: number} }\n",
			[]string{`d.yaml:6:21: jobs[0].input.properties.invoiceId: property "invoiceId" has no type: write one after the colon`}},
		{"label and context field without a type", "package: {name: p, output: ./p}\nlabels:\n  org:\ncontext:\n  userId:\njobs:\n  - name: a\n",
			[]string{`d.yaml:3:3: labels.org: label "org" has no type`, `d.yaml:5:3: context.userId: context field "userId" has no type`}},
		{"items property without a type", pj + "    input: {type: array, items: {type: object, properties: {x: null}}}\n",
			[]string{`d.yaml:4:61: jobs[0].input.items.properties.x: property "x" has no type`}},
		{"cron that never fires", pj + "    schedules:\n      - {name: s, cron: \"0 0 31 2 *\"}\n",
			[]string{`d.yaml:5:19: jobs[0].schedules[0].cron: cron "0 0 31 2 *" never fires`}},
		{"integer bound beyond int64", pj + "    input: {type: integer, maximum: 1e20, minimum: -9223372036854775809}\n",
			[]string{"jobs[0].input.maximum: maximum 100000000000000000000 is beyond what an integer holds", "jobs[0].input.minimum: minimum -9223372036854775809 is beyond"}},
		{"exact bounds compared", pj + "    input: {type: integer, minimum: 9007199254740993, maximum: 9007199254740992}\n",
			[]string{"minimum 9007199254740993 exceeds maximum 9007199254740992"}},
		{"schedule input at an exact bound", pj + "    input: {type: integer, maximum: 9007199254740993}\n    schedules:\n      - {name: s, cron: \"@daily\", input: 9007199254740994}\n",
			[]string{"must be <= 9007199254740993 but found 9007199254740994"}},
		{"required as a list", pj + "    input:\n      type: object\n      required: [a]\n      properties: {a: {type: string}}\n",
			[]string{"d.yaml:6:7: jobs[0].input.required: expected boolean, but got array; required is a boolean on each property: write required: true under every property"}},
		{"numeric enum values", pj + "    input: {type: enum, values: [1, 2]}\n",
			[]string{"jobs[0].input.values[0]: expected string, but got number; enum values are strings: quote each one"}},
		{"enum keyword", pj + "    input: {type: string, enum: [a, b]}\n",
			[]string{`jobs[0].input.enum: unknown key "enum": write type: enum and list the values under values`}},
		{"nullable type list", pj + "    input: {type: [string, \"null\"]}\n",
			[]string{"jobs[0].input.type: expected string, but got array; type is one of string"}},
		{"merge of a scalar", "package: {name: p, output: ./p}\nx: &x 1\njobs:\n  - name: a\n    input: {<<: *x, type: string}\n",
			[]string{"d.yaml:5:17: << merges a mapping into this one"}},
		{"YAML directive of another version", "%YAML 2.0\n---\n" + pj, []string{"d.yaml:1:1: %YAML 2.0: a declaration is YAML 1.2 or 1.1"}},
		{"maxRunning", pj + "    maxRunning: 0\n  - name: b\n    maxRunning: -2\n",
			[]string{"d.yaml:4:5: jobs[0].maxRunning: must be >= 1 but found 0; write a whole number from 1 to 2147483647, or leave maxRunning out for no limit",
				"d.yaml:6:5: jobs[1].maxRunning: must be >= 1"}},
		{"maxRunningPerTenant", pj + "    maxRunningPerTenant: 0\n",
			[]string{"d.yaml:4:5: jobs[0].maxRunningPerTenant: must be >= 1 but found 0; write a whole number from 1 to 2147483647, or leave maxRunningPerTenant out for no limit"}},
		{"timeout not a duration", pj + "    timeout: an hour\n",
			[]string{"d.yaml:4:5: jobs[0].timeout:", "write a positive Go duration such as 30s, 2m or 1h30m"}},
		{"stepTimeout of zero", pj + "    stepTimeout: 0s\n",
			[]string{`d.yaml:4:5: jobs[0].stepTimeout: stepTimeout "0s": write a positive Go duration (30s, 2m, 1h30m), or leave stepTimeout out for no bound`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "d.yaml")
			if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/app\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(c.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, err := Write(path)
			if err == nil {
				t.Fatal("a bad declaration generated code")
			}
			got := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")
			rest := got
			for _, w := range c.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("problems\n%s\nlack %q", got, w)
				}
				rest = rest[i+len(w):]
			}
			if _, err := os.Stat(filepath.Join(dir, "p")); !os.IsNotExist(err) {
				t.Fatal("a bad declaration wrote files")
			}
		})
	}
}

func TestGoName(t *testing.T) {
	for in, want := range map[string]string{
		"organizationId": "OrganizationID", "import-csv": "ImportCSV", "delay_ms": "DelayMs", "url": "URL",
		"HTTPServer": "HTTPServer", "userID": "UserID", "a": "A", "9x": "", "fooBarBaz": "FooBarBaz", "api_key": "APIKey",
	} {
		if got := GoName(in); got != want {
			t.Errorf("GoName(%q) = %q, want %q", in, got, want)
		}
	}
}
