package gen

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

// TestSchemasAsReflected: the schemas the generator writes mean what the
// reflection of the generated types (invopop/jsonschema, which generated
// code used before) produced for the same declarations, recorded in
// testdata/reflected/schemas.json; since then, the input of a job without
// one also takes {} (what the React client sends to such a job).
func TestSchemasAsReflected(t *testing.T) {
	b, err := os.ReadFile("testdata/reflected/schemas.json")
	if err != nil {
		t.Fatal(err)
	}
	var recorded map[string]map[string]any
	if err := json.Unmarshal(b, &recorded); err != nil {
		t.Fatal(err)
	}
	for decl, want := range recorded {
		d, err := Load("../" + decl)
		if decl[:9] == "testdata/" {
			d, err = Load(decl)
		}
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{"labels": labelsSchema(d.Labels)}
		for _, j := range d.Jobs {
			got[j.Name+".input"] = inputSchema(j.Input)
			got[j.Name+".output"] = jobSchema(j.Output)
		}
		for name, w := range want {
			var g any
			if err := json.Unmarshal([]byte(got[name]), &g); err != nil {
				t.Fatalf("%s %s: %v", decl, name, err)
			}
			if !reflect.DeepEqual(g, w) {
				wb, _ := json.Marshal(w)
				t.Errorf("%s %s:\n got %s\nwant %s", decl, name, got[name], wb)
			}
		}
	}
}
