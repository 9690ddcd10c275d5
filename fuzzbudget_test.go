package durably_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestMakeFuzzCoversEveryTarget holds `make fuzz` (which CI runs) to two
// rules. Every fuzz target in the repository is in its list, so a new one is
// not silently left out of CI. And every budget is a count of executions:
// with a duration, go1.26's coordinator can report the deadline itself as a
// failure with no failing input (golang/go#75804), which failed a CI run of
// FuzzDecodeTransport; a count has no deadline to race.
func TestMakeFuzzCoversEveryTarget(t *testing.T) {
	makefile, err := os.ReadFile("Makefile")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]string{} // "pkg:Target" -> budget
	entry := regexp.MustCompile(`(\.[\w./-]*):(Fuzz\w+):(\S+)`)
	for _, line := range bytes.Split(makefile, []byte("\n")) {
		if !bytes.HasPrefix(line, []byte("FUZZ ")) && !bytes.HasPrefix(line, []byte("            ")) {
			continue
		}
		for _, m := range entry.FindAllSubmatch(line, -1) {
			listed[string(m[1])+":"+string(m[2])] = string(m[3])
		}
	}
	if len(listed) == 0 {
		t.Fatal("found no package:FuzzTarget:budget entries in the Makefile's FUZZ list")
	}
	for target, budget := range listed {
		if !regexp.MustCompile(`^[1-9][0-9]*x$`).MatchString(budget) {
			t.Errorf("make fuzz: %s has budget %q; want a count such as 40000x, not a duration", target, budget)
		}
	}

	declared := regexp.MustCompile(`(?m)^func (Fuzz\w+)\(\w+ \*testing\.F\)`)
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		pkg := "./" + filepath.ToSlash(filepath.Dir(path))
		if pkg == "./." {
			pkg = "."
		}
		for _, m := range declared.FindAllSubmatch(src, -1) {
			if _, ok := listed[pkg+":"+string(m[1])]; !ok {
				t.Errorf("%s declares %s, which the Makefile's FUZZ list does not run; add %s:%s:<count>x", path, m[1], pkg, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
