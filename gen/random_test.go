package gen

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/durably-go/durably/runtime/typed"
	"github.com/durably-go/durably/store"
)

var (
	randomCount = flag.Int("gen.count", 400, "random declarations TestRandomDeclarations generates")
	randomSeed  = flag.Uint64("gen.seed", 0, "seed of TestRandomDeclarations (0: from the clock)")
)

// Pools of names and values chosen to collide: after conversion to Go
// (user_id, userId), with the generator's own identifiers (config, labels,
// authContext), with Go keywords and predeclared identifiers (type,
// string), between sections (a label enum and a context enum "plan"), and
// between an array's items and a sibling (lines, linesItem).
var (
	fieldNames = []string{"name", "count", "lines", "linesItem", "user_id", "userId", "id", "type", "string", "plan",
		"config", "labels", "authContext", "handler", "jobs", "register", "toMap", "fromMap", "JSONSchemaExtend",
		"v", "item", "x y", "a.b", "with-dash", "région", "名前", "a,b", "it's", "9lives", "", "l", "opts", "value", "len", "nil"}
	labelNames = []string{"tenantId", "region", "id", "type", "plan", "config", "labels", "authContext", "team", "env",
		"toMap", "tenant_id", "Region", "a.b", "with-dash", "x", "string", "opts", "l", "bad key", "handlerOptions", "job", "promise", "durably"}
	jobNames = []string{"a", "import-csv", "importCsv", "send", "config", "labels", "ping", "runs", "and-wait-a",
		"useRuns", "9x", "tenant", "plan", "handler", "x", "x-job", "with-region", "list-runs-by-region", "名前"}
	enumValues = []string{"a", "A", "b", "free", "pro", "Pro", "v1.2", "v12", "1.0", "2xl", "x-y", "x y", "x_y", "é", "É",
		"日本", "with space", "", "-", "trial", "enterprise", "%d", `quo"te`, "back\\slash", "tab\there", "über", "camelCase", "CamelCase"}
	descriptions = []string{"", "plain", "with `backticks`", "quotes \" and '", "a\nnewline", "percent %s %d", "unicode ✓ λ",
		"*/ end of comment", "line one\n\nline two", "nul \x00 byte", "bom \ufeff here", "trailing backslash \\"}
	patterns = []string{"^[a-z]+$", `\.csv$`, "^x", "(", "[[:alpha:]]", `^\d{3}$`}
)

// Every identifier the generator declares itself, as a declared name
// would spell it, joins the pools.
func init() {
	for _, n := range slices.Concat(fixedPackageNames, fixedClientNames, clientMethods, labelsMethods) {
		fieldNames = append(fieldNames, lowerFirst(n))
		labelNames = append(labelNames, lowerFirst(n))
		jobNames = append(jobNames, lowerFirst(n))
	}
}

// randDecl builds random declarations as YAML nodes.
type randDecl struct {
	r *rand.Rand
	// clean declarations draw only names and values that are valid on
	// their own, so that collisions are what refuses them, if anything.
	clean bool
	// reuse holds the types and property mappings drawn so far, which
	// later ones reuse through YAML aliases and merge keys; nil draws none.
	reuse *reusable
}

// reusable are the nodes a declaration may refer back to.
type reusable struct {
	types, labels, properties []*yaml.Node
	anchors                   int
}

// alias refers to n, anchoring it if it is not yet.
func (u *reusable) alias(n *yaml.Node) *yaml.Node {
	if n.Anchor == "" {
		u.anchors++
		n.Anchor = "a" + strconv.Itoa(u.anchors)
	}
	return &yaml.Node{Kind: yaml.AliasNode, Value: n.Anchor, Alias: n}
}

func (g randDecl) pick(xs []string) string {
	for {
		x := xs[g.r.IntN(len(xs))]
		if !g.clean || cleanValue(x) {
			return x
		}
	}
}

// cleanValue reports whether x is valid where it is drawn.
func cleanValue(x string) bool {
	switch x {
	case "(", ".inf", "0x10", "1.5", "string", "func", "context", "Bad", "../x", "/abs", "a b", "testdata/x", "useRuns", "9x", "lower", "date", "null", "any", "", "-":
		return false
	}
	return true
}

// pickName draws a name; a clean declaration's names give Go identifiers
// and JSON names.
func (g randDecl) pickName(xs []string) string {
	for {
		x := g.pick(xs)
		if !g.clean || exported(GoName(x)) && validJSONName(x) && store.ValidLabelKey(x) {
			return x
		}
	}
}

func (g randDecl) chance(p float64) bool {
	if g.clean && p < 0.05 {
		return false // the rare mistakes
	}
	return g.r.Float64() < p
}

func scalar(v string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Value: v, Tag: "!!str", Style: yaml.DoubleQuotedStyle}
}
func plain(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: v} }
func mapping(kv ...*yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.MappingNode, Content: kv}
}
func seq(items ...*yaml.Node) *yaml.Node { return &yaml.Node{Kind: yaml.SequenceNode, Content: items} }

func (g randDecl) typ(depth int, label bool) *yaml.Node {
	if g.reuse == nil {
		return g.newType(depth, label)
	}
	pool := &g.reuse.types
	if label {
		pool = &g.reuse.labels
	}
	if len(*pool) > 0 && g.r.Float64() < 0.1 {
		return g.reuse.alias((*pool)[g.r.IntN(len(*pool))])
	}
	n := g.newType(depth, label)
	*pool = append(*pool, n)
	return n
}

func (g randDecl) newType(depth int, label bool) *yaml.Node {
	kinds := []string{"string", "integer", "number", "boolean", "enum", "array", "object"}
	if label {
		kinds = []string{"string", "enum", "string", "enum", "integer"}
		if g.clean {
			kinds = kinds[:4]
		}
	}
	if depth > 2 {
		kinds = kinds[:5]
	}
	kind := g.pick(kinds)
	if g.chance(0.01) {
		kind = g.pick([]string{"date", "null", "any"})
	}
	m := mapping(plain("type"), plain(kind))
	add := func(k string, v *yaml.Node) { m.Content = append(m.Content, plain(k), v) }
	if g.chance(0.2) {
		add("description", scalar(g.pick(descriptions)))
	}
	// tenant: true belongs on required labels; elsewhere it is refused.
	tenant := label && g.chance(0.2) || !label && !g.clean && g.chance(0.01)
	required := g.chance(0.3) && g.chance(0.6) || tenant && g.clean
	if required || g.chance(0.1) {
		add("required", plain(strconv.FormatBool(required)))
	}
	if tenant {
		add("tenant", plain("true"))
	}
	wrong := g.chance(0.03) // a keyword on a type it does not apply to
	switch {
	case kind == "string" || wrong:
		if g.chance(0.3) {
			add("minLength", plain(strconv.Itoa(g.r.IntN(4))))
		}
		if g.chance(0.3) {
			add("maxLength", plain(strconv.Itoa(g.r.IntN(100))))
		}
		if g.chance(0.2) {
			add("pattern", scalar(g.pick(patterns)))
		}
	}
	switch kind {
	case "integer", "number":
		for _, kw := range []string{"minimum", "maximum"} {
			if g.chance(0.3) && !(g.clean && kw == "maximum" && len(m.Content) > 2 && m.Content[len(m.Content)-2].Value == "minimum") {
				add(kw, plain(g.pick([]string{"0", "1", "-5", "1.5", "100", "1e3", ".inf", "0x10"})))
			}
		}
	case "enum":
		if !g.chance(0.03) {
			vals := seq()
			seen := map[string]bool{}
			for range 1 + g.r.IntN(4) {
				v := g.pick(enumValues)
				if g.clean && seen[v] {
					continue
				}
				seen[v] = true
				vals.Content = append(vals.Content, scalar(v))
			}
			add("values", vals)
		}
	case "array":
		if !g.chance(0.03) {
			add("items", g.typ(depth+1, false))
		}
		if g.chance(0.2) {
			add("minItems", plain(strconv.Itoa(g.r.IntN(3))))
		}
		if g.chance(0.2) {
			add("maxItems", plain(strconv.Itoa(g.r.IntN(5))))
		}
	case "object":
		switch {
		case g.chance(0.1):
		case g.chance(0.1):
			add("properties", mapping())
		default:
			add("properties", g.fields(fieldNames, depth+1, false, 4))
		}
	}
	return m
}

func (g randDecl) fields(names []string, depth int, label bool, max int) *yaml.Node {
	m := mapping()
	seen := map[string]bool{}
	for range g.r.IntN(max + 1) {
		n := g.pickName(names)
		if seen[n] {
			continue
		}
		seen[n] = true
		if !g.clean && g.r.Float64() < 0.03 { // a field without a type is refused
			m.Content = append(m.Content, scalar(n), plain("null"))
			continue
		}
		m.Content = append(m.Content, scalar(n), g.typ(depth, label))
	}
	if g.reuse != nil && !label {
		// Properties may merge earlier ones (<<: *a), which the merge
		// overrides where it sets a name itself.
		if ps := g.reuse.properties; len(ps) > 0 && g.r.Float64() < 0.15 {
			merge := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!merge", Value: "<<"}
			m.Content = append([]*yaml.Node{merge, g.reuse.alias(ps[g.r.IntN(len(ps))])}, m.Content...)
		}
		g.reuse.properties = append(g.reuse.properties, m)
	}
	return m
}

func (g randDecl) declaration() []byte {
	pkg := mapping(plain("name"), plain(g.pick([]string{"p", "jobs", "app", "p", "jobs", "app", "p2", "string", "func", "context", "Bad"})),
		plain("output"), scalar(g.pick([]string{"./out", "out/sub", "./out", "gen", ".", "../x", "/abs", "a b", "testdata/x"})))
	if g.chance(0.3) {
		pkg.Content = append(pkg.Content, plain("client"), plain(strconv.FormatBool(g.chance(0.5))))
	}
	root := mapping(plain("package"), pkg)
	for _, sec := range []struct {
		key   string
		names []string
		label bool
	}{{"labels", labelNames, true}, {"context", fieldNames, false}} {
		switch {
		case g.chance(0.2): // absent
		case g.chance(0.1):
			root.Content = append(root.Content, plain(sec.key), mapping())
		case g.chance(0.05):
			root.Content = append(root.Content, plain(sec.key), plain("null"))
		default:
			root.Content = append(root.Content, plain(sec.key), g.fields(sec.names, 1, sec.label, 3))
		}
	}
	jobs := seq()
	seenJobs := map[string]bool{}
	for range 1 + g.r.IntN(3) {
		name := g.pickName(jobNames)
		if g.clean && seenJobs[name] {
			continue
		}
		seenJobs[name] = true
		j := mapping(plain("name"), scalar(name))
		if g.chance(0.1) {
			j.Content = append(j.Content, plain("id"), scalar(g.pick([]string{"Custom", "Config", "Labels", "A", "lower"})))
		}
		if g.chance(0.2) {
			j.Content = append(j.Content, plain("description"), scalar(g.pick(descriptions)))
		}
		switch {
		case g.chance(0.15): // no input
		case g.chance(0.05):
			j.Content = append(j.Content, plain("input"), plain("null"))
		default:
			j.Content = append(j.Content, plain("input"), g.typ(1, false))
		}
		if g.chance(0.7) {
			j.Content = append(j.Content, plain("output"), g.typ(1, false))
		}
		if g.chance(0.25) {
			j.Content = append(j.Content, plain("schedules"), g.schedules(j))
		}
		g.runner(j)
		jobs.Content = append(jobs.Content, j)
	}
	root.Content = append(root.Content, plain("jobs"), jobs)
	out, err := yaml.Marshal(root)
	if err != nil {
		panic(err)
	}
	return out
}

// schedules draws a job's schedules: specs, zones and catch-up bounds
// valid and not, and inputs and labels that match the declaration only by
// chance (a job without input and an input "x" of an unconstrained string
// do).
func (g randDecl) schedules(job *yaml.Node) *yaml.Node {
	hasInput := false
	for i := 0; i+1 < len(job.Content); i += 2 {
		if job.Content[i].Value == "input" && job.Content[i+1].Kind == yaml.MappingNode {
			hasInput = true
		}
	}
	crons := []string{"0 3 * * *", "@daily", "@every 90s", "*/15 * * * 1-5", "61 * * * *", "TZ=UTC @daily", "@every 1ms", "x"}
	zones := []string{"UTC", "Europe/Paris", "America/New_York", "Local", "Mars/Olympus", ""}
	catchUps := []string{"none", "1h", "90m", "soon", "-5m", "0s"}
	if g.clean {
		crons, zones, catchUps = crons[:4], zones[:3], catchUps[:3]
	}
	list := seq()
	for range 1 + g.r.IntN(2) {
		sc := mapping(plain("name"), scalar(g.pick([]string{"nightly", "hourly", "nightly", "a b", "schedule:x"})), plain("cron"), scalar(g.pick(crons)))
		add := func(k string, v *yaml.Node) { sc.Content = append(sc.Content, plain(k), v) }
		if g.chance(0.5) {
			add("timeZone", scalar(g.pick(zones)))
		}
		if g.chance(0.4) {
			add("catchUp", scalar(g.pick(catchUps)))
		}
		if hasInput || !g.clean && g.chance(0.2) {
			switch g.r.IntN(4) {
			case 0:
				add("input", scalar("x"))
			case 1:
				add("input", plain("1"))
			case 2:
				add("input", mapping())
			default: // left out
			}
		}
		if g.chance(0.5) {
			labels := mapping()
			for range g.r.IntN(3) {
				labels.Content = append(labels.Content, scalar(g.pickName(labelNames)), scalar(g.pick(enumValues)))
			}
			add("labels", labels)
		}
		list.Content = append(list.Content, sc)
	}
	return list
}

// runner draws a job's retry policy, priority and limit: valid and not,
// every member of the policy and the edges of each rule (max against the
// default initial of 1s, jitter's bounds, the 32-bit range of priority).
func (g randDecl) runner(job *yaml.Node) {
	add := func(k string, v *yaml.Node) { job.Content = append(job.Content, plain(k), v) }
	attempts := []string{"1", "3", "10", "0", "-1", "2.5", "many"}
	backoffs := []string{"exponential", "fixed", "linear", "Fixed", ""}
	// Durations ordered so that a clean policy's max is never under its
	// initial: clean initials are at most 2s, clean maxima at least 2s.
	initials := []string{"0s", "1s", "500ms", "2s", "-1s", "soon", "0", "3000000h"}
	maxima := []string{"2s", "1m", "1h30m", "0s", "800ms", "1.5s", "-5m", "10"}
	jitters := []string{"0", "0.1", "0.5", "1", "1.5", "-0.2", ".nan", "lots"}
	priorities := []string{"0", "1", "-5", "100", "2147483647", "-2147483648", "2147483648", "1.5", "high"}
	limits := []string{"1", "2", "50", "0", "-1", "1.5"}
	timeouts := []string{"30s", "1h30m", "250ms", "0s", "-1s", "forever", "0"}
	if g.clean {
		attempts, backoffs, initials, maxima, jitters = attempts[:3], backoffs[:2], initials[:4], maxima[:4], jitters[:4]
		priorities, limits, timeouts = priorities[:6], limits[:3], timeouts[:3]
	}
	if g.chance(0.3) {
		switch {
		case g.chance(0.03):
			add("retry", plain(g.pick(attempts))) // not a mapping
		default:
			r := mapping()
			member := func(k string, v *yaml.Node) { r.Content = append(r.Content, plain(k), v) }
			if !g.chance(0.03) {
				member("maxAttempts", plain(g.pick(attempts)))
			}
			if g.chance(0.5) {
				member("backoff", scalar(g.pick(backoffs)))
			}
			if g.chance(0.5) {
				member("initial", plain(g.pick(initials)))
			}
			if g.chance(0.5) {
				member("max", plain(g.pick(maxima)))
			}
			if g.chance(0.4) {
				member("jitter", plain(g.pick(jitters)))
			}
			if g.chance(0.02) {
				member("delay", plain("1s")) // not a member
			}
			add("retry", r)
		}
	}
	if g.chance(0.3) {
		add("priority", plain(g.pick(priorities)))
	}
	if g.chance(0.25) {
		add("maxRunning", plain(g.pick(limits)))
	}
	if g.chance(0.2) {
		add("maxRunningPerTenant", plain(g.pick(limits)))
	}
	for _, k := range []string{"timeout", "stepTimeout"} {
		if g.chance(0.2) {
			add(k, plain(g.pick(timeouts)))
		}
	}
}

// exportData maps import paths to the compiler's export data of the
// packages generated code imports, computed once per test binary with
// `go list -export`.
var exportData = sync.OnceValues(func() (map[string]string, error) {
	// Fuzz workers inherit the map from the coordinator (FuzzLoad sets
	// it) rather than each running go list again.
	if env := os.Getenv(exportDataEnv); env != "" {
		var m map[string]string
		return m, json.Unmarshal([]byte(env), &m)
	}
	cmd := exec.Command("go", "list", "-export", "-deps", "-f", "{{.ImportPath}}\t{{.Export}}",
		"context", "fmt", "iter", "time", "github.com/invopop/jsonschema", "github.com/durably-go/durably",
		"github.com/durably-go/durably/runtime/durablyhttp", "github.com/durably-go/durably/runtime/typed",
		"github.com/durably-go/durably/runtime/durablyclient")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("go list -export: %w\n%s", err, ee.Stderr)
		}
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if path, file, ok := strings.Cut(line, "\t"); ok && file != "" {
			m[path] = file
		}
	}
	return m, nil
})

const exportDataEnv = "DURABLY_GEN_TEST_EXPORT_DATA"

// typeChecker type-checks generated packages in-process against the
// export data of their imports.
type typeChecker struct {
	fset *token.FileSet
	imp  types.Importer
}

func newTypeChecker(t *testing.T) *typeChecker {
	t.Helper()
	exports, err := exportData()
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		f, ok := exports[path]
		if !ok {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(f)
	})
	return &typeChecker{fset: fset, imp: imp}
}

type importerFunc func(path string) (*types.Package, error)

func (f importerFunc) Import(path string) (*types.Package, error) { return f(path) }

// check type-checks the generated files: the package, then its client
// importing it.
func (tc *typeChecker) check(files []File, pkgPath string) error {
	var pkg *types.Package
	for _, f := range files {
		af, err := parser.ParseFile(tc.fset, f.Path, f.Content, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		imp := importerFunc(func(path string) (*types.Package, error) {
			if path == pkgPath && pkg != nil {
				return pkg, nil
			}
			return tc.imp.Import(path)
		})
		var errs []error
		conf := types.Config{Importer: imp, Error: func(err error) { errs = append(errs, err) }}
		path := pkgPath
		if strings.HasSuffix(f.Path, "client_gen.go") {
			path += "/client"
		}
		p, _ := conf.Check(path, tc.fset, []*ast.File{af}, nil)
		if len(errs) > 0 {
			return fmt.Errorf("%s: %w", f.Path, errors.Join(errs...))
		}
		if pkg == nil {
			pkg = p
		}
	}
	return nil
}

// seeded is the seed of a random test (-gen.seed, or the clock's) and a
// source drawn from it on stream, logged so that a failure can be rerun.
func seeded(t *testing.T, stream uint64) (uint64, *rand.Rand) {
	seed := *randomSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -gen.seed=%d)", seed, seed)
	return seed, rand.New(rand.NewPCG(seed, stream))
}

// runnerPath matches the path of a problem in a job's retry, priority or
// maxRunning.
var runnerPath = regexp.MustCompile(`^jobs\[\d+\]\.(retry|priority|maxRunning|maxRunningPerTenant|timeout|stepTimeout)\b`)

// TestRandomDeclarations is the generator's totality proof: for every
// random declaration, either a refusal whose every problem has a line and a
// column and that writes nothing, or output that type-checks and whose
// schemas compile. A sample of the accepted ones is vetted, built and run
// (their init compiles every schema) in a module of its own.
func TestRandomDeclarations(t *testing.T) {
	_, r := seeded(t, 0)
	tc := newTypeChecker(t)
	var refused, compiled int
	// runnerDrawn counts the declarations drawn with a retry, priority
	// or maxRunning; runnerRefused those refused with a problem in one;
	// runnerCompiled the accepted ones that declare one.
	var runnerDrawn, runnerRefused, runnerCompiled int
	var sample [][]File
	writeDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(writeDir, "go.mod"), []byte("module example.com/m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range *randomCount {
		g := randDecl{r: r, clean: i%2 == 0, reuse: &reusable{}}
		src := g.declaration()
		runner := regexp.MustCompile(`(?m)^\s+(retry|priority|maxRunning|maxRunningPerTenant|timeout|stepTimeout):`).Match(src)
		if runner {
			runnerDrawn++
		}
		d, err := Parse("d.yaml", src)
		if err != nil {
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("declaration %d: not a refusal with problems: %v\n%s", i, err, src)
			}
			inRunner := false
			for _, p := range ps {
				if p.Line <= 0 || p.Col <= 0 || p.Msg == "" || strings.Contains(p.Msg, "(H-") {
					t.Fatalf("declaration %d: problem without a place or a message: %q\n%s", i, p.String(), src)
				}
				inRunner = inRunner || runnerPath.MatchString(p.Path)
			}
			if inRunner {
				runnerRefused++
			}
			if _, again := Parse("d.yaml", src); again.Error() != err.Error() {
				t.Fatalf("declaration %d: problems differ from run to run:\n%v\n---\n%v", i, err, again)
			}
			if i%10 == 0 { // a refusal writes nothing
				decl := filepath.Join(writeDir, "d.yaml")
				if err := os.WriteFile(decl, src, 0o644); err != nil {
					t.Fatal(err)
				}
				if _, _, err := Write(decl); err == nil {
					t.Fatalf("declaration %d: Parse refused it, Write did not", i)
				}
				if entries, _ := os.ReadDir(writeDir); len(entries) != 2 {
					t.Fatalf("declaration %d: a refusal wrote files: %v", i, entries)
				}
			}
			refused++
			continue
		}
		files, err := Generate(d, "d.yaml", "example.com/m")
		if err != nil {
			t.Fatalf("declaration %d: accepted by Parse, refused by Generate: %v\n%s", i, err, src)
		}
		pkgPath := "example.com/m/" + cleanOutput(d.Package.Output)
		if err := tc.check(files, strings.TrimSuffix(pkgPath, "/.")); err != nil {
			t.Fatalf("declaration %d: generated code does not type-check: %v\n%s", i, err, src)
		}
		if err := declaredNamesKept(d, files[0].Content); err != nil {
			t.Fatalf("declaration %d: %v\n%s", i, err, src)
		}
		if err := schemasCompile(d); err != nil {
			t.Fatalf("declaration %d: %v\n%s", i, err, src)
		}
		compiled++
		if runner {
			runnerCompiled++
		}
		if len(sample) < 8 {
			sample = append(sample, files)
		}
	}
	t.Logf("%d declarations: %d refused, %d generated code that type-checks", *randomCount, refused, compiled)
	t.Logf("%d declare a retry, priority or maxRunning: %d refused for one of them, %d generated code", runnerDrawn, runnerRefused, runnerCompiled)
	if refused < *randomCount/10 || compiled < *randomCount/10 {
		t.Fatalf("the generator of declarations is off balance: %d refused, %d compiled", refused, compiled)
	}
	if *randomCount >= 100 && (runnerRefused < *randomCount/50 || runnerCompiled < *randomCount/50) {
		t.Fatalf("retry, priority and maxRunning are off balance: %d refused for them, %d compiled", runnerRefused, runnerCompiled)
	}
	if testing.Short() {
		return
	}
	vetSample(t, sample)
}

// declaredNamesKept checks that every declared field name reaches the
// generated code as the JSON name of a struct field: none is dropped or
// merged on the way.
func declaredNamesKept(d *Declaration, src []byte) error {
	af, err := parser.ParseFile(token.NewFileSet(), "x.go", src, 0)
	if err != nil {
		return err
	}
	tags := map[string]bool{}
	ast.Inspect(af, func(n ast.Node) bool {
		if f, ok := n.(*ast.Field); ok && f.Tag != nil {
			tag, err := strconv.Unquote(f.Tag.Value)
			if err == nil {
				name, _, _ := strings.Cut(reflect.StructTag(tag).Get("json"), ",")
				tags[name] = true
			}
		}
		return true
	})
	var walk func(fs Fields) error
	walkType := func(t *Type) error {
		for ; t != nil; t = t.Items {
			if err := walk(t.Properties); err != nil {
				return err
			}
		}
		return nil
	}
	walk = func(fs Fields) error {
		for _, f := range fs {
			if !tags[f.Name] {
				return fmt.Errorf("the field %q is not a JSON name in the generated code", f.Name)
			}
			if err := walkType(&f.Type); err != nil {
				return err
			}
		}
		return nil
	}
	for _, fs := range []Fields{d.Labels, d.Context} {
		if err := walk(fs); err != nil {
			return err
		}
	}
	for _, j := range d.Jobs {
		if err := walkType(j.Input); err != nil {
			return err
		}
		if err := walkType(j.Output); err != nil {
			return err
		}
	}
	return nil
}

// schemasCompile compiles the schemas the generated package embeds.
func schemasCompile(d *Declaration) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("a generated schema does not compile: %v", r)
		}
	}()
	typed.MustSchema(labelsSchema(d.Labels))
	for _, j := range d.Jobs {
		typed.MustSchema(inputSchema(j.Input))
		typed.MustSchema(jobSchema(j.Output))
	}
	return nil
}

// vetSample writes generated packages into a module that requires this
// checkout, then runs go vet and a program that imports them all.
func vetSample(t *testing.T, sample [][]File) {
	t.Helper()
	dir, pkgs := sampleModule(t, sample)
	var imports strings.Builder
	for _, p := range pkgs {
		fmt.Fprintf(&imports, "\t_ %q\n", p)
	}
	if err := os.MkdirAll(filepath.Join(dir, "cmd", "all"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cmd", "all", "main.go"), []byte("package main\n\nimport (\n"+imports.String()+")\n\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"vet", "./..."}, {"run", "./cmd/all"}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s on %d generated packages: %v\n%s", strings.Join(args, " "), len(sample), err, out)
		}
	}
}

// sampleModule writes generated packages into a module example.com/m that
// requires this checkout, sample i in directory si, and returns the
// module's directory and the import paths of the packages (and clients).
func sampleModule(t *testing.T, sample [][]File) (string, []string) {
	t.Helper()
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, content []byte) {
		t.Helper()
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", []byte("module example.com/m\n\ngo 1.26\n\nrequire github.com/durably-go/durably v0.0.0\n\nreplace github.com/durably-go/durably => "+repo+"\n"))
	sum, err := os.ReadFile(filepath.Join(repo, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	write("go.sum", sum)
	var pkgs []string
	for i, files := range sample {
		for _, f := range files {
			// Each sample lives in its own directory; the client's import
			// of its package follows.
			content := bytes.ReplaceAll(f.Content, []byte(`"example.com/m/`), []byte(`"example.com/m/s`+strconv.Itoa(i)+`/`))
			content = bytes.ReplaceAll(content, []byte(`"example.com/m"`), []byte(`"example.com/m/s`+strconv.Itoa(i)+`"`))
			write("s"+strconv.Itoa(i)+"/"+f.Path, content)
			pkgs = append(pkgs, strings.TrimSuffix("example.com/m/s"+strconv.Itoa(i)+"/"+filepath.ToSlash(filepath.Dir(f.Path)), "/."))
		}
	}
	return dir, pkgs
}
