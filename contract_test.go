package durably_test

import (
	"go/scanner"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const contractDoc = "docs/contract.md"

var (
	// citation matches a contract number as comments and test names cite
	// it: R-050, H-047, S-036, D6.
	citation = regexp.MustCompile(`\b(?:[RHS]-\d{3}|D\d{1,2})\b`)
	// definition matches where docs/contract.md defines a number: in bold.
	definition = regexp.MustCompile(`\*\*((?:[RHS]-\d{3}|D\d{1,2}))\*\*`)
	// mdLink matches a Markdown link's target.
	mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)
)

// TestContractCitations: every contract number cited in a comment or a
// string (test and case names) of a .go file is defined, once, in
// docs/contract.md, so a citation resolves inside the repository.
func TestContractCitations(t *testing.T) {
	doc, err := os.ReadFile(contractDoc)
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]int{}
	for _, m := range definition.FindAllStringSubmatch(string(doc), -1) {
		defined[m[1]]++
	}
	for n, count := range defined {
		if count > 1 {
			t.Errorf("%s defines %s %d times", contractDoc, n, count)
		}
	}
	cited := map[string][]string{} // number → positions citing it
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || (strings.HasPrefix(d.Name(), ".") && path != ".")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		for n, pos := range citations(t, path) {
			cited[n] = append(cited[n], pos...)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(cited) == 0 {
		t.Fatal("no citations found: the walk is broken")
	}
	var missing []string
	for n, where := range cited {
		if defined[n] == 0 {
			missing = append(missing, n+" (cited at "+strings.Join(where[:min(3, len(where))], ", ")+")")
		}
	}
	slices.Sort(missing)
	for _, m := range missing {
		t.Errorf("%s does not define %s", contractDoc, m)
	}
	t.Logf("%d numbers cited, %d defined", len(cited), len(defined))
}

// citations returns the contract numbers cited in a Go file's comments and
// string literals, with where.
func citations(t *testing.T, path string) map[string][]string {
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	file := fset.AddFile(path, -1, len(src))
	var s scanner.Scanner
	s.Init(file, src, nil, scanner.ScanComments)
	out := map[string][]string{}
	for {
		pos, tok, lit := s.Scan()
		if tok == token.EOF {
			return out
		}
		if tok != token.COMMENT && tok != token.STRING {
			continue
		}
		for _, n := range citation.FindAllString(lit, -1) {
			out[n] = append(out[n], fset.Position(pos).String())
		}
	}
}
