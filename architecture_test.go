package durably_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// goNames are the names the module's Go code declares, generated code and
// tests included: every package name, top-level name, method, struct
// field and interface method, bare and qualified (Type.method,
// pkg.Name, pkg.Type.method).
type goNames struct {
	names   map[string]bool
	aliases map[string]string // a type alias's name and its target type's
}

func declaredGoNames(t *testing.T) goNames {
	t.Helper()
	g := goNames{names: map[string]bool{}, aliases: map[string]string{}}
	fset := token.NewFileSet()
	for _, file := range repoFiles(t, ".go") {
		f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		pkg := f.Name.Name
		g.names[pkg] = true
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil {
					g.add(pkg, "", d.Name.Name)
				} else {
					g.add(pkg, typeName(d.Recv.List[0].Type), d.Name.Name)
				}
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					g.addSpec(pkg, spec)
				}
			}
		}
	}
	return g
}

// add records name, a member of typ when typ is not "".
func (g goNames) add(pkg, typ, name string) {
	g.names[name] = true
	if typ == "" {
		g.names[pkg+"."+name] = true
		return
	}
	g.names[typ+"."+name] = true
	g.names[pkg+"."+typ+"."+name] = true
	g.names[pkg+"."+name] = true // pgstore.Claim: the method of the package's store
}

func (g goNames) addSpec(pkg string, spec ast.Spec) {
	switch s := spec.(type) {
	case *ast.ValueSpec:
		for _, n := range s.Names {
			g.add(pkg, "", n.Name)
		}
	case *ast.TypeSpec:
		g.add(pkg, "", s.Name.Name)
		if s.Assign.IsValid() {
			g.aliases[s.Name.Name] = typeName(s.Type)
		}
		var fields *ast.FieldList
		switch x := s.Type.(type) {
		case *ast.StructType:
			fields = x.Fields
		case *ast.InterfaceType:
			fields = x.Methods
		}
		if fields == nil {
			return
		}
		for _, fl := range fields.List {
			for _, n := range fl.Names {
				g.add(pkg, s.Name.Name, n.Name)
			}
			if len(fl.Names) == 0 { // embedded: its name is its type's
				g.add(pkg, s.Name.Name, typeName(fl.Type))
			}
		}
	}
}

// has reports whether name (A, A.b or a.B.c) is declared, looking through
// a type alias for its target's members.
func (g goNames) has(name string) bool {
	if g.names[name] {
		return true
	}
	typ, member, ok := strings.Cut(name, ".")
	if target := g.aliases[typ]; ok && target != "" {
		return g.names[target+"."+member]
	}
	return false
}

// typeName is the name of a receiver's or field's type, without pointer,
// package or type arguments.
func typeName(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.StarExpr:
		return typeName(x.X)
	case *ast.IndexExpr:
		return typeName(x.X)
	case *ast.IndexListExpr:
		return typeName(x.X)
	case *ast.SelectorExpr:
		return x.Sel.Name
	case *ast.Ident:
		return x.Name
	}
	return ""
}

var (
	codeSpan = regexp.MustCompile("`([^`\n]+)`")
	// goName matches what reads as a Go name: an identifier, dotted or not
	// (StepContext, execution.flush, pgstore.Options.WriteLanes), with
	// its call's parentheses or its type parameters (Store.Migrate(ctx),
	// TypedJob[I, O, L]) left off.
	goName = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?:\(\w*\)|\[[\w, ]*\])?$`)
	// repoPath matches what reads as a path of the repository.
	repoPath = regexp.MustCompile(`^[\w.-]+(?:/[\w.-]*)*$`)
)

// notGo are the code spans of ARCHITECTURE.md that read like Go names but
// are not this module's: SQL and its types, columns and values; the
// standard library's and dependencies' names; a hypothetical store.
var notGo = map[string]bool{
	// SQL: statements, types, columns, indexes' predicates, values.
	"BEGIN": true, "COMMIT": true, "NOTIFY": true, "jsonb": true, "text": true, "bigint": true,
	"timestamptz": true, "fillfactor": true, "pending": true, "leased": true, "ready": true,
	"run_at": true, "attempt": true, "priority": true, "key_scope": true, "lease_generation": true,
	"caps": true, "pg_stat_activity": true, "pragma_database_list": true,
	// The standard library's and pgx's names.
	"http.Server.Shutdown": true, "slog.Handler": true, "Hijack": true, "RegisterOnShutdown": true,
	"ShouldPing": true, "pgx.Tx": true,
	// A member of the wire.
	"parentRunId": true,
	// Words: the wire's, the workload's, River's package.
	"jobName": true, "chaos": true, "rivertest": true, "main": true,
	// A key of durably.yaml; the pattern of a migration's file name.
	"package.typescript": true, "NNNN_name.sql": true,
}

// TestArchitectureNames keeps ARCHITECTURE.md true to the code: every
// Go name it puts in a code span (a type, function, method, field or
// package) is declared in the module, every path names a file or
// directory of the repository, and every index a migration creates; so
// that renaming StepContext.flush to execution.flush fails here until the
// document follows.
func TestArchitectureNames(t *testing.T) {
	doc := readFile(t, "ARCHITECTURE.md")
	g := declaredGoNames(t)
	var sql strings.Builder
	for _, f := range repoFiles(t, ".sql") {
		sql.WriteString(readFile(t, f))
	}
	sqlWords := map[string]bool{}
	for _, w := range regexp.MustCompile(`\w+`).FindAllString(sql.String(), -1) {
		sqlWords[w] = true
	}
	var paths []string // the repository's files and directories
	for _, f := range repoFiles(t, "") {
		for p := f; p != "." && p != "/" && !slices.Contains(paths, p); p = path.Dir(p) {
			paths = append(paths, p)
		}
	}
	checked := 0
	for _, m := range codeSpan.FindAllStringSubmatch(doc, -1) {
		span := m[1]
		switch {
		case notGo[span] || strings.Contains(span, "mysql"): // the store "Adding a store" imagines
		case strings.HasPrefix(span, "idx_durably_") || strings.HasPrefix(span, "durably_"):
			checked++
			if !strings.Contains(sql.String(), span) {
				t.Errorf("ARCHITECTURE.md names %s, which no migration or query mentions", span)
			}
		case strings.Contains(span, "/") || strings.HasSuffix(span, ".go") || strings.HasSuffix(span, ".mjs") ||
			strings.HasSuffix(span, ".sql") || strings.HasSuffix(span, ".yaml") || strings.HasSuffix(span, ".json"):
			if !repoPath.MatchString(span) || strings.HasPrefix(span, "/") {
				continue // a route, a wildcard, an npm package
			}
			checked++
			// A path from the root, or from a directory the text is
			// about (internal/pgdb of runtime/pgstore, worker.go).
			p := strings.TrimSuffix(span, "/")
			if !slices.ContainsFunc(paths, func(q string) bool { return q == p || strings.HasSuffix(q, "/"+p) }) {
				t.Errorf("ARCHITECTURE.md names the path %s, which does not exist", span)
			}
		default:
			n := goName.FindStringSubmatch(span)
			if n == nil || len(n[1]) == 1 { // not a name, or a type parameter (C, L)
				continue
			}
			checked++
			// Or a directory of the root (docs, gen, e2e), or a table,
			// column or function of the SQL (parent_run_id, wakes).
			if !g.has(n[1]) && !slices.Contains(paths, span) && !sqlWords[n[1]] {
				t.Errorf("ARCHITECTURE.md names %s, which the module does not declare", span)
			}
		}
	}
	if checked < 200 {
		t.Fatalf("checked %d names: the document's code spans are no longer read as intended", checked)
	}
}
