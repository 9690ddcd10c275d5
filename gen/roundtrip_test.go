package gen

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedValuesRoundTrip: for random declarations (the generator of
// TestRandomDeclarations, clean ones), random Go values of every generated
// input and output type — zero values, nil lists and nil pointers among
// them — encode, validate against the schema the package embeds, decode
// and encode again to the same JSON. Values are drawn within what the
// schema says and the Go type cannot hold (lengths, bounds, patterns, item
// counts, an enum's value); a zero value may break only those, never by
// being null. The program runs in a module of the generated packages
// (testdata/roundtrip holds its drawing code).
func TestGeneratedValuesRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module; skipped in -short mode")
	}
	seed, r := seeded(t, 7)
	var sample [][]File
	var decls []*Declaration
	for tries := 0; len(sample) < 12 && tries < 500; tries++ {
		d, err := Parse("d.yaml", randDecl{r: r, clean: true, reuse: &reusable{}}.declaration())
		if err != nil {
			continue
		}
		files, err := Generate(d, "d.yaml", "example.com/m")
		if err != nil {
			t.Fatal(err)
		}
		sample = append(sample, files[:1]) // the package; the client adds no type
		decls = append(decls, d)
	}
	if len(sample) < 12 {
		t.Fatalf("only %d of 500 clean declarations accepted", len(sample))
	}
	dir, pkgs := sampleModule(t, sample)
	helper, err := os.ReadFile(filepath.Join("testdata", "roundtrip", "roundtrip.go.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var main strings.Builder
	main.WriteString("package main\n\nimport (\n\t\"fmt\"\n\t\"math/rand/v2\"\n\t\"os\"\n\n")
	for i, p := range pkgs {
		fmt.Fprintf(&main, "\tp%d %q\n", i, p)
	}
	fmt.Fprintf(&main, ")\n\nfunc main() {\n\tr := rand.New(rand.NewPCG(%d, 1))\n\tvar err error\n", seed)
	for i, d := range decls {
		for k, j := range d.Jobs {
			for _, side := range []string{"Input", "Output"} {
				fmt.Fprintf(&main, "\tif err == nil {\n\t\terr = check[p%d.%s%s](r, %q, p%d.JobSchemas()[%d].%s, 300)\n\t}\n",
					i, JobID(j), side, fmt.Sprintf("declaration %d, job %q, %s", i, j.Name, strings.ToLower(side)), i, k, side)
			}
		}
	}
	main.WriteString("\tfmt.Printf(\"%+v\\n\", counts)\n\tif err != nil {\n\t\tfmt.Println(err)\n\t\tos.Exit(1)\n\t}\n}\n")
	for name, content := range map[string]string{"main.go": main.String(), "roundtrip.go": string(helper)} {
		p := filepath.Join(dir, "cmd", "roundtrip", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "run", "./cmd/roundtrip")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off")
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("round trip: %v", err)
	}
	var values, zeros, skipped, nilLists, nilPointers, optionalPointers int
	if _, err := fmt.Sscanf(strings.TrimSpace(string(out)), "{values:%d zeros:%d skipped:%d nilLists:%d nilPointers:%d optionalPointers:%d}",
		&values, &zeros, &skipped, &nilLists, &nilPointers, &optionalPointers); err != nil {
		t.Fatalf("round trip printed %q: %v", out, err)
	}
	// Some seeds draw no optional field held as a pointer: no nil pointer
	// can be drawn then.
	if values < 1000 || nilLists == 0 || optionalPointers > 0 && nilPointers == 0 || skipped > values/2 {
		t.Fatalf("the drawing is off balance: %d values, %d skipped, %d nil lists, %d nil pointers", values, skipped, nilLists, nilPointers)
	}
}
