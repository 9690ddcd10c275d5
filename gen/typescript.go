package gen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// TypeScriptName is the name of the TypeScript module the generator writes
// in package.typescript's directory.
const TypeScriptName = "durably_gen.ts"

// tsReserved are the names the TypeScript module declares or uses besides
// the declaration's types: a Go type of the same name would clash with
// them there, so the Go package reserves them too when the module is
// asked for.
var tsReserved = []string{"Durably", "Job", "Promise"}

// tsEmitter writes the TypeScript module: the same named types as the Go
// package (Labels, AuthContext, each job's Input and Output, their nested
// objects and enums), as TypeScript, and the Durably type that
// createDurably<Durably>() of @coji/durably-react reads the jobs from.
type tsEmitter struct {
	out   bytes.Buffer
	decls []*bytes.Buffer
	named map[*yaml.Node]string // as the Go emitter's: one type per alias
	done  map[string]bool
}

// typescriptFile renders the module for the declaration in g.
func (g *emitter) typescriptFile() []byte {
	d := g.d
	ts := &tsEmitter{named: map[*yaml.Node]string{}, done: map[string]bool{}}
	dir := cleanOutput(d.Package.TypeScript)
	up := 0
	if dir != "." {
		up = strings.Count(dir, "/") + 1
	}
	ts.p("%s %s from %s. DO NOT EDIT.", Header, Version, comment(strings.Repeat("../", up)+g.decl))
	ts.p("")
	ts.p("// The jobs, labels and auth context declared in %s, as TypeScript", comment(g.decl))
	ts.p("// types: createDurably<Durably>({ api }) from @coji/durably-react types every")
	ts.p("// job's trigger input and output and refuses job names not declared.")
	ts.p("")
	// Label and context types are named at the top, as in the Go package.
	ts.object("Labels", "", "The labels every run carries.", d.Labels, func(f Field) bool { return f.Type.Required })
	ts.object("AuthContext", "", "What the server's Authenticate hook returns.", d.Context, func(Field) bool { return true })
	type job struct{ key, id, desc string }
	var jobs []job
	for _, j := range d.Jobs {
		id := JobID(j)
		ts.jobType(id+"Input", j.Input, "The input of job "+tsString(j.Name)+".", "{ [key: string]: never }")
		ts.jobType(id+"Output", j.Output, "The output of job "+tsString(j.Name)+".", "null")
		jobs = append(jobs, job{tsKey(j.Name), id, j.Description})
	}
	ts.p("/**")
	ts.p(" * The declared jobs, as createDurably<Durably>({ api }) of @coji/durably-react")
	ts.p(" * reads them: each job's trigger takes its input type and resolves to its")
	ts.p(" * output type (a type only: the server runs the jobs).")
	ts.p(" */")
	ts.p("export type Durably = {")
	ts.p("  readonly jobs: {")
	for _, j := range jobs {
		if j.desc != "" {
			ts.p("    /** %s */", jsdoc(j.desc))
		}
		ts.p("    %s: Job<%sInput, %sOutput>", j.key, j.id, j.id)
	}
	ts.p("  }")
	ts.p("}")
	ts.p("")
	ts.p("/**")
	ts.p(" * A job as @coji/durably-react infers its types: the input from the last")
	ts.p(" * signature of trigger, the output from a trigger that takes any input (it")
	ts.p(" * checks that one against a function of unknown input, which a signature")
	ts.p(" * of the input type alone does not satisfy under strictFunctionTypes).")
	ts.p(" */")
	ts.p("export type Job<TInput, TOutput> = {")
	ts.p("  trigger(input: unknown): Promise<{ id: string; output?: TOutput }>")
	ts.p("  trigger(input: TInput): Promise<{ id: string; output?: TOutput }>")
	ts.p("}")
	for _, b := range ts.decls {
		ts.out.WriteString("\n")
		ts.out.Write(b.Bytes())
	}
	return ts.out.Bytes()
}

func (ts *tsEmitter) p(format string, args ...any) {
	fmt.Fprintf(&ts.out, format, args...)
	ts.out.WriteByte('\n')
}

// declare writes one exported type into a buffer of its own, placed
// before the types its body declares (as in the Go package).
func (ts *tsEmitter) declare(name, doc string, body func() string) {
	if ts.done[name] {
		return
	}
	ts.done[name] = true
	b := &bytes.Buffer{}
	ts.decls = append(ts.decls, b)
	if doc != "" {
		fmt.Fprintf(b, "/** %s */\n", jsdoc(doc))
	}
	fmt.Fprintf(b, "export type %s = %s\n", name, body())
}

// is a body that is already known.
func is(s string) func() string { return func() string { return s } }

// reuse is the name already given to t's node, or records name as t's.
func (ts *tsEmitter) reuse(t Type, name string) (string, bool) {
	if t.node == nil {
		return "", false
	}
	if prev, ok := ts.named[t.node]; ok {
		return prev, true
	}
	ts.named[t.node] = name
	return "", false
}

// object declares an object type of fields; their nested types are named
// under parent.
func (ts *tsEmitter) object(name, parent, doc string, fs Fields, required func(Field) bool) {
	ts.declare(name, doc, func() string { return ts.body(parent, fs, required) })
}

// body is the literal of an object type; an object of no fields takes
// none (an index signature of never), which {} would not say.
func (ts *tsEmitter) body(parent string, fs Fields, required func(Field) bool) string {
	if len(fs) == 0 {
		return "{ [key: string]: never }"
	}
	var b strings.Builder
	b.WriteString("{\n")
	for _, f := range fs {
		if f.Type.Description != "" {
			fmt.Fprintf(&b, "  /** %s */\n", jsdoc(f.Type.Description))
		}
		opt := "?"
		if required(f) {
			opt = ""
		}
		fmt.Fprintf(&b, "  %s%s: %s\n", tsKey(f.Name), opt, ts.typ(parent, f))
	}
	b.WriteString("}")
	return b.String()
}

// jobType declares a job's input or output type; none is the type of a job
// declared without one.
func (ts *tsEmitter) jobType(name string, t *Type, doc, none string) {
	if t == nil {
		ts.declare(name, doc, is(none))
		return
	}
	if t.Description != "" {
		doc += " " + t.Description
	}
	if t.Type == "object" || t.Type == "enum" {
		if prev, ok := ts.reuse(*t, name); ok {
			ts.declare(name, doc, is(prev))
			return
		}
	}
	switch t.Type {
	case "object":
		ts.object(name, name, doc, t.Properties, func(f Field) bool { return f.Type.Required })
	case "enum":
		ts.declare(name, doc, is(union(t.Values)))
	default:
		ts.declare(name, doc, func() string { return ts.typ(name, Field{Type: *t}) })
	}
}

// typ is the TypeScript type of a field under parent, declaring the named
// types it needs with the Go package's names.
func (ts *tsEmitter) typ(parent string, f Field) string {
	t := f.Type
	switch t.Type {
	case "string":
		return "string"
	case "integer", "number":
		return "number"
	case "boolean":
		return "boolean"
	case "enum":
		name := parent + GoName(f.Name)
		if prev, ok := ts.reuse(t, name); ok {
			return prev
		}
		ts.declare(name, t.Description, is(union(t.Values)))
		return name
	case "array":
		if t.Items == nil {
			return "unknown[]"
		}
		items := Field{Name: f.Name + "Item", Type: *t.Items}
		return ts.typ(parent, items) + "[]"
	case "object":
		name := parent + GoName(f.Name)
		if prev, ok := ts.reuse(t, name); ok {
			return prev
		}
		ts.object(name, name, t.Description, t.Properties, func(f Field) bool { return f.Type.Required })
		return name
	}
	return "unknown"
}

// union is an enum's values as a union of string literals.
func union(values []string) string {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = tsString(v)
	}
	return strings.Join(quoted, " | ")
}

// tsString is s as a string literal: JSON's are TypeScript's.
func tsString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		panic(err) // a string always encodes
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// tsIdentifier matches the names a property may have unquoted.
var tsIdentifier = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]*$`)

// tsKey is a property name, quoted unless it is a plain identifier.
func tsKey(name string) string {
	if tsIdentifier.MatchString(name) {
		return name
	}
	return tsString(name)
}

// jsdoc makes s safe on one line of a /** */ comment.
func jsdoc(s string) string { return strings.ReplaceAll(comment(s), "*/", "*\\/") }

// typescriptPath is where the module goes, relative to the declaration.
func (d *Declaration) typescriptPath() string {
	return path.Join(cleanOutput(d.Package.TypeScript), TypeScriptName)
}
