package typed

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestMustSchema: a generated schema document validates with field-level
// messages, constraints on nested items included.
func TestMustSchema(t *testing.T) {
	s := MustSchema(`{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"rows":{"items":{"items":{"type":"string","minLength":1,"pattern":"^[A-Z]$"},"type":"array"},"type":"array"}},"additionalProperties":false,"type":"object","required":["rows"]}`)
	for _, c := range []struct{ doc, bad string }{
		{`{"rows": [["A", "B"], ["C"]]}`, ""},
		{`{"rows": [["A"], [""]]}`, "rows[1][0]"},
		{`{"rows": [["ab"]]}`, "rows[0][0]"},
		{`{}`, "rows: required"},
		{`{"rows": [], "x": 1}`, "x"},
	} {
		err := s.ValidateJSON(json.RawMessage(c.doc))
		switch {
		case c.bad == "" && err != nil:
			t.Errorf("%s: %v", c.doc, err)
		case c.bad != "" && (err == nil || !strings.Contains(err.Error(), c.bad)):
			t.Errorf("%s: %v, want a problem at %s", c.doc, err, c.bad)
		}
	}
	defer func() {
		if recover() == nil {
			t.Fatal("MustSchema accepted a document that does not compile")
		}
	}()
	MustSchema(`{"type": 1}`)
}

// TestNoInput: a job without input encodes its input as null.
func TestNoInput(t *testing.T) {
	if b, _ := json.Marshal(NoInput{}); string(b) != "null" {
		t.Fatalf("NoInput encodes as %s", b)
	}
	if b, _ := json.Marshal(NoOutput{}); string(b) != "null" {
		t.Fatalf("NoOutput encodes as %s", b)
	}
}

// TestUnknownMembersNamedOneByOne: several unknown members are named each
// on its own, in order, whatever order the validator lists them in (it
// lists them in map order: the message used to vary from run to run and
// to name "a'," as a field).
func TestUnknownMembersNamedOneByOne(t *testing.T) {
	s := MustSchema(`{"$schema":"https://json-schema.org/draft/2020-12/schema","properties":{"n":{"type":"integer"},"o":{"properties":{"k":{"type":"string"}},"additionalProperties":false,"type":"object"}},"additionalProperties":false,"type":"object"}`)
	const want = "c: unknown field; d: unknown field; e: unknown field; o.x: unknown field; o.y: unknown field"
	for range 20 {
		err := s.ValidateJSON(json.RawMessage(`{"n": 1, "e": 1, "c": 2, "d": 3, "o": {"y": 1, "x": 2}}`))
		if err == nil || err.Error() != want {
			t.Fatalf("%v, want %s", err, want)
		}
	}
}

// TestBoundsKeepTheirText: a bound is compared exactly and named in the
// message as the schema writes it, not as the nearest float64.
func TestBoundsKeepTheirText(t *testing.T) {
	s := MustSchema(`{"type":"object","properties":{"n":{"type":"integer","minimum":-9007199254740993,"maximum":9007199254740993},"x":{"type":"number","maximum":0.1}}}`)
	for _, c := range []struct{ doc, want string }{
		{`{"n": 9007199254740993}`, ""},
		{`{"n": -9007199254740993}`, ""},
		{`{"n": 9007199254740994}`, "n: must be <= 9007199254740993 but found 9007199254740994"},
		{`{"n": -9007199254740994}`, "n: must be >= -9007199254740993 but found -9007199254740994"},
		{`{"x": 0.10000000000000001}`, "x: must be <= 0.1 but found 0.10000000000000001"},
	} {
		err := s.ValidateJSON(json.RawMessage(c.doc))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.doc, err)
		case c.want != "" && (err == nil || err.Error() != c.want):
			t.Errorf("%s: %v, want %q", c.doc, err, c.want)
		}
	}
}

// TestListIsNeverNull: a nil List, at any depth, is [] on the wire.
func TestListIsNeverNull(t *testing.T) {
	type out struct {
		Rows   List[List[string]] `json:"rows"`
		Names  List[string]       `json:"names"`
		Absent List[int]          `json:"absent,omitempty"`
	}
	b, err := json.Marshal(out{Rows: List[List[string]]{nil, {"a"}}})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"rows":[[],["a"]],"names":[]}` {
		t.Fatalf("encoded %s", b)
	}
}
