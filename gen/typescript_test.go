package gen

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRandomTypeScriptCompiles: the TypeScript modules of random
// declarations (clean ones, asking for the module) compile with tsc
// --strict, and the React client built on each (createDurably<Durably>)
// takes exactly the declared input type in the trigger of every job whose
// input is an object, whatever the names. It needs e2e's npm packages;
// without them it is skipped, except under CI=true.
func TestRandomTypeScriptCompiles(t *testing.T) {
	e2e, err := filepath.Abs(filepath.Join("..", "e2e"))
	if err != nil {
		t.Fatal(err)
	}
	tsc := filepath.Join(e2e, "node_modules", ".bin", "tsc")
	if _, err := os.Stat(tsc); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs e2e/node_modules (npm ci in e2e)")
		}
		t.Skip("needs e2e/node_modules (npm ci in e2e)")
	}
	_, r := seeded(t, 11)
	dir := t.TempDir()
	var files []string
	probes := 0
	// 80 declarations, and more while fewer than 10 object inputs were
	// drawn (some seeds draw few).
	for i, tries := 0, 0; (i < 80 || probes < 10) && tries < 2000; tries++ {
		src := strings.Replace(string(randDecl{r: r, clean: true, reuse: &reusable{}}.declaration()), "package:\n", "package:\n    typescript: web\n", 1)
		d, err := Parse("d.yaml", []byte(src))
		if err != nil {
			continue
		}
		gen, err := Generate(d, "d.yaml", "example.com/m")
		if err != nil {
			t.Fatal(err)
		}
		ts := gen[len(gen)-1]
		if !strings.HasSuffix(ts.Path, TypeScriptName) {
			t.Fatalf("no TypeScript module among %d files", len(gen))
		}
		name := fmt.Sprintf("m%d.ts", i)
		var check strings.Builder
		fmt.Fprintf(&check, "import { createDurably } from '@coji/durably-react'\nimport type * as M from './%s'\n\n", name)
		check.WriteString("type Equal<T, U> = [T] extends [U] ? ([U] extends [T] ? true : false) : false\nfunction assert<T extends true>(): T | void {}\n")
		check.WriteString("export const durably = createDurably<M.Durably>({ api: '/api' })\n")
		for _, j := range d.Jobs {
			if j.Input == nil || j.Input.Type != "object" {
				continue
			}
			key, _ := json.Marshal(j.Name)
			fmt.Fprintf(&check, "assert<Equal<Parameters<ReturnType<(typeof durably)[%s]['useJob']>['trigger']>[0], M.%sInput>>()\n", key, JobID(j))
			probes++
		}
		for n, content := range map[string][]byte{name: ts.Content, fmt.Sprintf("c%d.ts", i): []byte(check.String())} {
			if err := os.WriteFile(filepath.Join(dir, n), content, 0o644); err != nil {
				t.Fatal(err)
			}
			files = append(files, n)
		}
		i++
	}
	if probes < 10 {
		t.Fatalf("only %d inputs probed", probes)
	}
	config, _ := json.Marshal(map[string]any{
		"extends": filepath.Join(e2e, "tsconfig.json"),
		"compilerOptions": map[string]any{
			"paths": map[string][]string{"@coji/durably-react": {filepath.Join(e2e, "node_modules", "@coji", "durably-react")}},
		},
		"include": []string{},
		"files":   files,
	})
	if err := os.WriteFile(filepath.Join(dir, "tsconfig.json"), config, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tsc, "-p", filepath.Join(dir, "tsconfig.json")).CombinedOutput()
	if err != nil {
		var srcs strings.Builder
		for _, f := range files {
			b, _ := os.ReadFile(filepath.Join(dir, f))
			fmt.Fprintf(&srcs, "--- %s\n%s\n", f, b)
		}
		t.Fatalf("tsc: %v\n%s\n%s", err, out, srcs.String())
	}
	t.Logf("%d modules, %d trigger inputs typed exactly", len(files)/2, probes)
}
