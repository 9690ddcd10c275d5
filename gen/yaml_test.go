package gen

import (
	"regexp"
	"strings"
	"testing"
)

// TestYAMLAsPeopleWriteIt: a %YAML 1.2 directive, merge keys (of
// properties and of a retry policy) and aliases of types are read as YAML
// means them, and an object or enum reused through an alias is one Go
// type.
func TestYAMLAsPeopleWriteIt(t *testing.T) {
	src := `%YAML 1.2
---
package: {name: p, output: ./p}
jobs:
  - name: ship
    input:
      type: object
      properties:
        from: &address
          type: object
          required: true
          properties:
            street: &text {type: string, minLength: 1, required: true}
            city: *text
            kind: &kind {type: enum, values: [home, work], required: true}
        to: *address
        kinds: {type: array, items: *kind}
    output: *address
    retry: &retry {maxAttempts: 3, backoff: fixed}
  - name: audit
    input:
      type: object
      properties:
        <<: [{id: {type: string, required: true}}, {id: {type: integer}, at: {type: string}}]
        note: {type: string}
    retry: {<<: *retry, maxAttempts: 5}
`
	d, err := Parse("d.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	audit := d.Jobs[1]
	var names []string
	for _, f := range audit.Input.Properties {
		names = append(names, f.Name+":"+f.Type.Type)
	}
	if got := strings.Join(names, " "); got != "id:string at:string note:string" {
		t.Errorf("merged properties %s; want the first merged mapping's id, then at, then note", got)
	}
	if r := audit.Retry; r.MaxAttempts != 5 || r.Backoff != "fixed" {
		t.Errorf("merged retry %+v; want maxAttempts 5 over the merged 3, backoff fixed merged", r)
	}
	files, err := Generate(d, "d.yaml", "example.com/m")
	if err != nil {
		t.Fatal(err)
	}
	if err := newTypeChecker(t).check(files, "example.com/m/p"); err != nil {
		t.Fatal(err)
	}
	src2 := string(files[0].Content)
	for _, want := range []string{
		`(?m)^type ShipInputFrom struct \{`,
		"(?m)^\tTo\\s+ShipInputFrom\\s+`json:\"to\"`",
		"(?m)^\tKind\\s+ShipInputFromKind\\s+`json:\"kind\"`",
		"(?m)^\tKinds\\s+typed\\.List\\[ShipInputFromKind\\]\\s+`json:\"kinds,omitempty\"`",
		`(?m)^type ShipOutput = ShipInputFrom$`,
	} {
		if !regexp.MustCompile(want).MatchString(src2) {
			t.Errorf("generated code lacks %s", want)
		}
	}
	for _, once := range []string{"type ShipInputFrom struct", "type ShipInputFromKind struct"} {
		if n := strings.Count(src2, once); n != 1 {
			t.Errorf("%q %d times; an aliased type is one Go type", once, n)
		}
	}
	if strings.Contains(src2, "ShipInputTo") || strings.Contains(src2, "KindsItem") {
		t.Error("an alias generated a second type")
	}
}

// TestExactBoundsReachTheCode: a bound past float64's exact integers and a
// decimal one reach the schema as written, and a schedule's input equal to
// the integer bound is accepted and emitted exactly.
func TestExactBoundsReachTheCode(t *testing.T) {
	src := `package: {name: p, output: ./p}
jobs:
  - name: a
    input: {type: integer, minimum: 0x10, maximum: 9007199254740993}
    output: {type: number, minimum: 0.1, maximum: 1e300}
    schedules:
      - {name: s, cron: "@daily", input: 9007199254740993}
`
	d, err := Parse("d.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := inputSchema(d.Jobs[0].Input), `"minimum":16,"maximum":9007199254740993`; !strings.Contains(got, want) {
		t.Errorf("input schema %s lacks %s", got, want)
	}
	if got, want := jobSchema(d.Jobs[0].Output), `"minimum":0.1,"maximum":1e300`; !strings.Contains(got, want) {
		t.Errorf("output schema %s lacks %s", got, want)
	}
	files, err := Generate(d, "d.yaml", "example.com/m")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(files[0].Content), "typed.FromJSON[AInput](`9007199254740993`)") {
		t.Error("the schedule's input is not emitted exactly")
	}
}
