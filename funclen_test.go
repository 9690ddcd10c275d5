package durably_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// maxFuncLines is the house's bound on a hand-written function, from its
// func keyword to its closing brace.
const maxFuncLines = 80

// longFuncsOwnedElsewhere are functions over the bound that another change
// is reworking ("file Type.method": why); the test fails once one of them
// fits, so that the list only shrinks. Empty: keep it so.
var longFuncsOwnedElsewhere = map[string]string{}

// TestFunctionLength holds the house rule that no hand-written function of
// the engine (the module root), the store seam (store/), runtime/ or
// internal/ is longer than maxFuncLines: generated files and tests are
// left out; the generator (gen/) and the commands (cmd/) are not in these
// trees.
func TestFunctionLength(t *testing.T) {
	long := map[string]int{}
	fset := token.NewFileSet()
	for _, root := range []string{".", "store", "runtime", "internal"} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != root && (root == "." || d.Name() == "testdata" || d.Name() == "node_modules") {
					return filepath.SkipDir // the root's packages below it are walked as roots of their own
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
			if err != nil {
				return err
			}
			if ast.IsGenerated(f) {
				return nil
			}
			for _, decl := range f.Decls {
				fn, ok := decl.(*ast.FuncDecl)
				if !ok || fn.Body == nil {
					continue
				}
				if n := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1; n > maxFuncLines {
					long[filepath.ToSlash(path)+" "+funcName(fn)] = n
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for name, n := range long {
		if _, ok := longFuncsOwnedElsewhere[name]; !ok {
			t.Errorf("%s is %d lines, over %d: split it by meaning (one step per function)", name, n, maxFuncLines)
		}
	}
	for name, why := range longFuncsOwnedElsewhere {
		if _, ok := long[name]; !ok {
			t.Errorf("%s is no longer over %d lines (or no longer exists): take it off longFuncsOwnedElsewhere (%s)", name, maxFuncLines, why)
		}
	}
}

// funcName is a function's name, a method's prefixed with its receiver's
// type: Engine.triggerParsed.
func funcName(fn *ast.FuncDecl) string {
	if fn.Recv == nil || len(fn.Recv.List) == 0 {
		return fn.Name.Name
	}
	t := fn.Recv.List[0].Type
	for {
		switch x := t.(type) {
		case *ast.StarExpr:
			t = x.X
			continue
		case *ast.IndexExpr:
			t = x.X
			continue
		case *ast.IndexListExpr:
			t = x.X
			continue
		case *ast.Ident:
			return x.Name + "." + fn.Name.Name
		}
		return fmt.Sprintf("%T.%s", t, fn.Name.Name)
	}
}
