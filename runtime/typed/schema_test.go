package typed

import (
	"encoding/json"
	"strings"
	"testing"

	invopop "github.com/invopop/jsonschema"
)

// grid is what durably-gen emits for an array of arrays of strings with
// constraints on the innermost items, which struct tags cannot carry.
type grid struct {
	Rows [][]string `json:"rows"`
}

func (grid) JSONSchemaExtend(s *invopop.Schema) {
	if p, ok := s.Properties.Get("rows"); ok {
		Constraints{MinLength: Uint(1), Pattern: "^[A-Z]$"}.ApplyItems(p, 2)
	}
}

// counts is a named array type with constraints on its items.
type counts []int

func (counts) JSONSchemaExtend(s *invopop.Schema) {
	Constraints{Minimum: Float(0)}.ApplyItems(s, 1)
}

// TestItemConstraints: constraints on the items of arrays, at any depth,
// reach the schema and its validation.
func TestItemConstraints(t *testing.T) {
	for _, c := range []struct {
		s        *Schema
		doc, bad string // bad: "" when the document is valid
	}{
		{SchemaFor[grid](), `{"rows": [["A", "B"], ["C"]]}`, ""},
		{SchemaFor[grid](), `{"rows": [["A"], [""]]}`, "rows[1][0]"},
		{SchemaFor[grid](), `{"rows": [["ab"]]}`, "rows[0][0]"},
		{SchemaFor[counts](), `[0, 3]`, ""},
		{SchemaFor[counts](), `[1, -1]`, "[1]"},
	} {
		err := c.s.ValidateJSON(json.RawMessage(c.doc))
		switch {
		case c.bad == "" && err != nil:
			t.Errorf("%s: %v", c.doc, err)
		case c.bad != "" && (err == nil || !strings.Contains(err.Error(), c.bad)):
			t.Errorf("%s: %v, want a problem at %s", c.doc, err, c.bad)
		}
	}
}

// TestNoInput: a job without input takes null (a missing input is null
// too) and nothing else.
func TestNoInput(t *testing.T) {
	s := SchemaFor[NoInput]()
	if err := s.ValidateJSON(json.RawMessage(`null`)); err != nil {
		t.Fatal(err)
	}
	for _, doc := range []string{`{}`, `1`, `""`} {
		if s.ValidateJSON(json.RawMessage(doc)) == nil {
			t.Errorf("NoInput accepts %s", doc)
		}
	}
	if b, _ := json.Marshal(NoInput{}); string(b) != "null" {
		t.Fatalf("NoInput encodes as %s", b)
	}
}
