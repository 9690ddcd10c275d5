package durably

import (
	"encoding/json"
	"testing"
)

// TestJSONPathOfTypeErrors: the path decodeStrict names for a value the Go
// type cannot hold carries the indexes of the arrays on the way, at any
// depth, for literals, arrays and objects in the wrong place.
func TestJSONPathOfTypeErrors(t *testing.T) {
	type item struct {
		N    int              `json:"n"`
		Tags []string         `json:"tags"`
		Grid [][]int          `json:"grid"`
		Sub  *struct{ X int } `json:"sub"`
	}
	type doc struct {
		Items []item `json:"items"`
		Name  string `json:"name"`
	}
	for _, c := range []struct{ json, want string }{
		{`{"items": [{"n": 1}, {"n": "x"}]}`, `items[1].n: expected integer, got string`},
		{`{"items": [{"n": 1}, {"tags": ["a", 2]}]}`, `items[1].tags[1]: expected string, got number`},
		{`{"items": [{"grid": [[1], [2, 3, 1.5]]}]}`, `items[0].grid[1][2]: expected integer, got number 1.5`},
		{`{"items": [{}, {}, {"grid": [{}]}]}`, `items[2].grid[0]: expected array, got object`},
		{`{"items": [{"sub": {"X": 1}}, {"sub": []}]}`, `items[1].sub: expected object, got array`},
		{`{"name": {"a": [1]}, "items": []}`, `name: expected string, got object`},
		{`{"items": {"n": 1}}`, `items: expected array, got object`},
		{`[1]`, `(root): expected object, got array`},
	} {
		var v doc
		err := decodeStrict(json.RawMessage(c.json), &v)
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: %v, want %q", c.json, err, c.want)
		}
	}
	if err := decodeStrict(json.RawMessage(`{"items": [{"n": 1, "grid": [[2]]}]}`), new(doc)); err != nil {
		t.Fatal(err)
	}
}
