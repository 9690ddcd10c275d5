package gen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	invopop "github.com/invopop/jsonschema"
	orderedmap "github.com/pb33f/ordered-map/v2"
	"github.com/santhosh-tekuri/jsonschema/v5"
	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a declaration, where it is.
type Problem struct {
	File string
	Line int
	Col  int
	Path string // dotted path of the offending field, e.g. jobs[0].input.properties.count.minimum
	Msg  string
}

func (p Problem) String() string {
	// One problem, one line, whatever a message quotes.
	p.Msg = strings.Join(strings.Fields(p.Msg), " ")
	loc := p.File
	if p.Line > 0 {
		loc += fmt.Sprintf(":%d:%d", p.Line, p.Col)
	}
	if p.Path != "" {
		return fmt.Sprintf("%s: %s: %s", loc, p.Path, p.Msg)
	}
	return fmt.Sprintf("%s: %s", loc, p.Msg)
}

// Problems is every problem found in a declaration.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Schema returns the JSON Schema of durably.yaml, reflected from the
// Declaration types.
func Schema() []byte {
	r := &invopop.Reflector{Anonymous: false, AllowAdditionalProperties: false, RequiredFromJSONSchemaTags: false,
		// A Number is a JSON number, with the bounds of its field's tags.
		Mapper: func(t reflect.Type) *invopop.Schema {
			if t == reflect.TypeFor[Number]() {
				return &invopop.Schema{Type: "number"}
			}
			return nil
		}}
	s := r.Reflect(&Declaration{})
	// Labels are Fields whose types are strings or enums: the schema says
	// so too, so that an editor flags a label of another type.
	s.Definitions["LabelFields"] = &invopop.Schema{
		Type:                 "object",
		AdditionalProperties: &invopop.Schema{Ref: "#/$defs/Label"},
	}
	// A label is a Type of type string or enum, and only a label may be
	// a tenant's: Type's members (additional ones are refused) plus tenant.
	label := *s.Definitions["Type"]
	label.Description = "A label: a string or an enum."
	label.Properties = orderedmap.New[string, *invopop.Schema]()
	for p := s.Definitions["Type"].Properties.Oldest(); p != nil; p = p.Next() {
		label.Properties.Set(p.Key, p.Value)
	}
	label.Properties.Set("type", &invopop.Schema{Type: "string", Enum: []any{"string", "enum"}})
	label.Properties.Set("tenant", &invopop.Schema{Type: "boolean",
		Description: "The label identifies a tenant: idempotency and concurrency keys are scoped by its value (durably.Config.TenantLabels). Only on a required string or enum label."})
	s.Definitions["Label"] = &label
	if labels, ok := s.Definitions["Declaration"].Properties.Get("labels"); ok {
		labels.Ref = "#/$defs/LabelFields"
	}
	for _, k := range []string{"initial", "max"} {
		if p, ok := s.Definitions["Retry"].Properties.Get(k); ok {
			p.Pattern = goDuration
		}
	}
	for _, k := range []string{"timeout", "stepTimeout"} {
		if p, ok := s.Definitions["Job"].Properties.Get(k); ok {
			p.Pattern = goDuration
		}
	}
	s.ID = "https://github.com/durably-go/durably/durably.schema.json"
	s.Title = "durably-gen declaration (durably.yaml)"
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

var (
	schemaOnce     sync.Once
	compiledSchema *jsonschema.Schema
	schemaErr      error
)

func declarationSchema() (*jsonschema.Schema, error) {
	schemaOnce.Do(func() {
		c := jsonschema.NewCompiler()
		c.Draft = jsonschema.Draft2020
		if schemaErr = c.AddResource("durably.schema.json", bytes.NewReader(Schema())); schemaErr != nil {
			return
		}
		compiledSchema, schemaErr = c.Compile("durably.schema.json")
	})
	return compiledSchema, schemaErr
}

// Load reads and checks a declaration file.
func Load(path string) (*Declaration, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// maxNodes bounds the YAML nodes a declaration may expand to, aliases
// included, so that a few lines of anchors cannot make it enormous.
const maxNodes = 100000

// Parse checks a declaration: YAML syntax, then the JSON Schema (unknown
// keys, types, required members), then what a schema cannot say (unique
// names, valid Go identifiers, sensible bounds), then the Go identifiers
// the declaration would generate. Every problem is reported with its line,
// column and path, in the order of the file.
func Parse(file string, data []byte) (*Declaration, error) {
	data, p := yamlDirective(file, data)
	if p != nil {
		return nil, Problems{*p}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, Problems{yamlProblem(file, data, err)}
	}
	// A second document would be ignored: refuse it rather than lose it.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var first, second yaml.Node
	if dec.Decode(&first) == nil && dec.Decode(&second) == nil {
		line, col := second.Line, second.Column
		if len(second.Content) > 0 {
			line, col = second.Content[0].Line, second.Content[0].Column
		}
		return nil, Problems{{File: file, Line: line, Col: col, Msg: "a second YAML document: a declaration is one document (remove the ---)"}}
	}
	if len(doc.Content) == 0 {
		return nil, Problems{{File: file, Line: 1, Col: 1, Msg: "empty declaration: it needs package and jobs"}}
	}
	root := doc.Content[0]
	conv := &converter{file: file, pos: map[string][2]int{}}
	conv.expandMerges(root, map[*yaml.Node]bool{}, 0)
	if len(conv.problems) > 0 {
		return nil, sortProblems(conv.problems)
	}
	conv.emptyFields(root)
	value := conv.value(root, "", 0)
	if len(conv.problems) > 0 {
		return nil, sortProblems(conv.problems)
	}
	schema, err := declarationSchema()
	if err != nil {
		return nil, fmt.Errorf("gen: the declaration schema does not compile: %w", err)
	}
	if err := schema.Validate(value); err != nil {
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			return nil, err
		}
		return nil, schemaProblems(file, ve, conv.pos)
	}
	var d Declaration
	if err := root.Decode(&d); err != nil {
		return nil, decodeProblems(file, err, conv.pos)
	}
	d.file, d.pos = file, conv.pos
	ps := check(file, &d, conv.pos)
	ps = append(ps, checkNames(&d, filepath.Base(file))...)
	if len(ps) > 0 {
		return nil, sortProblems(ps)
	}
	return &d, nil
}

var labelType = regexp.MustCompile(`^/labels/[^/]+/type$`)

// goDuration is a non-negative Go duration, as time.ParseDuration reads
// it (without a sign): durably.schema.json's pattern of retry durations.
const goDuration = `^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`

// hints say how to fix what the schema refuses at a member whose rule the
// validator's message alone does not explain.
var hints = []struct {
	at  *regexp.Regexp
	fix string
	not *regexp.Regexp // a member at, but not this one (a property named like the keyword)
}{
	{regexp.MustCompile(`^/jobs/\d+/retry$`), "a retry policy is a mapping such as {maxAttempts: 3, backoff: exponential, initial: 1s, max: 1m, jitter: 0.1}", nil},
	{regexp.MustCompile(`^/jobs/\d+/retry/maxAttempts$`), "maxAttempts counts every attempt, the first included: write a whole number from 1 (no retry) to 2147483647", nil},
	{regexp.MustCompile(`^/jobs/\d+/retry/backoff$`), "write exponential (the wait doubles after each attempt, up to max) or fixed (initial every time)", nil},
	{regexp.MustCompile(`^/jobs/\d+/retry/(initial|max)$`), "write a non-negative Go duration such as 500ms, 1s or 1m30s (quoted or not)", nil},
	{regexp.MustCompile(`^/jobs/\d+/retry/jitter$`), "write a fraction from 0 (no jitter) to 1 (a wait may shrink to nothing)", nil},
	{regexp.MustCompile(`^/jobs/\d+/priority$`), "write a whole number from -2147483648 to 2147483647 (the range of an HTTP trigger's priority); a smaller number runs first", nil},
	{regexp.MustCompile(`^/jobs/\d+/maxRunning$`), "write a whole number from 1 to 2147483647, or leave maxRunning out for no limit", nil},
	{regexp.MustCompile(`^/jobs/\d+/maxRunningPerTenant$`), "write a whole number from 1 to 2147483647, or leave maxRunningPerTenant out for no limit", nil},
	{regexp.MustCompile(`^/jobs/\d+/(timeout|stepTimeout)$`), "write a positive Go duration such as 30s, 2m or 1h30m (quoted or not), or leave it out for no bound", nil},
	// JSON Schema habits: what to write here instead.
	{regexp.MustCompile(`/required$`), "required is a boolean on each property: write required: true under every property that must be present, not a list on the object", regexp.MustCompile(`/properties/required$`)},
	{regexp.MustCompile(`/values/\d+$`), "enum values are strings: quote each one (values: [\"1\", \"2\"])", nil},
	{regexp.MustCompile(`/values$`), "list the enum's values as strings: values: [a, b]", regexp.MustCompile(`/properties/values$`)},
	{regexp.MustCompile(`^/(jobs|context)/.*/type$`), "type is one of string, integer, number, boolean, enum, array, object; an optional field is one without required: true, not a type list with null", regexp.MustCompile(`/properties/type$`)},
}

// keyHints say what to write instead of a key the format does not have,
// for keys JSON Schema users reach for.
var keyHints = map[string]string{
	"enum":                 "write type: enum and list the values under values",
	"additionalProperties": "objects never take other members than their properties",
	"nullable":             "a field without required: true may be left out; there is no null",
	"default":              "there are no defaults: leave the field optional and fill it in the handler",
	"$ref":                 "reuse a type with a YAML anchor (&name) and alias (*name)",
	"format":               "there are no formats: use pattern",
	"exclusiveMinimum":     "use minimum (inclusive)",
	"exclusiveMaximum":     "use maximum (inclusive)",
}

var yamlLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// yamlProblem places a YAML syntax error. The parser names the line (not
// always) but not the column, so both are found again: the shortest prefix
// of the file that fails with the same message ends where the parser
// stopped.
func yamlProblem(file string, data []byte, err error) Problem {
	m := yamlLine.FindStringSubmatch(err.Error())
	if m == nil {
		return Problem{File: file, Line: 1, Col: 1, Msg: "YAML: " + err.Error()}
	}
	msg := "YAML: " + m[2]
	line, col := 0, 0
	line, col = errorPosition(data, err.Error())
	if line == 0 {
		line, _ = strconv.Atoi(m[1])
		col = 1
	}
	if line == 0 {
		line = 1
	}
	return Problem{File: file, Line: line, Col: col, Msg: msg}
}

// errorPosition finds the line and column after which data fails to parse
// with msg, or 0, 0: the end of the shortest failing prefix, found by
// bisection (a parser stops at its first error, so longer prefixes fail
// alike).
func errorPosition(data []byte, msg string) (int, int) {
	fails := func(n int) bool {
		var node yaml.Node
		err := yaml.Unmarshal(data[:n], &node)
		return err != nil && err.Error() == msg
	}
	if !fails(len(data)) {
		return 0, 0
	}
	lo, hi := 0, len(data) // fails(hi); the answer is in (lo, hi]
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	at := hi - 1 // the last byte the failing prefix needs
	lineStart := bytes.LastIndexByte(data[:at], '\n') + 1
	return bytes.Count(data[:lineStart], []byte("\n")) + 1, utf8.RuneCount(data[lineStart:at]) + 1
}

// decodeProblems places the errors of decoding the checked tree into the
// Declaration (rare: the schema has refused what does not fit).
func decodeProblems(file string, err error, pos map[string][2]int) Problems {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	var ps Problems
	for _, m := range msgs {
		p := Problem{File: file, Line: 1, Col: 1, Msg: strings.TrimPrefix(m, "yaml: ")}
		if sm := yamlLine.FindStringSubmatch("yaml: " + strings.TrimPrefix(m, "yaml: ")); sm != nil && sm[1] != "" {
			p.Line, _ = strconv.Atoi(sm[1])
			p.Msg = sm[2]
			p.Col = 0
			for _, lc := range pos {
				if lc[0] == p.Line && (p.Col == 0 || lc[1] < p.Col) {
					p.Col = lc[1]
				}
			}
			if p.Col == 0 {
				p.Col = 1
			}
		}
		ps = append(ps, p)
	}
	return sortProblems(ps)
}

// converter turns YAML into the JSON value the schema validates, recording
// the position of every value under its JSON pointer.
type converter struct {
	file     string
	pos      map[string][2]int
	nodes    int
	problems Problems
}

func (c *converter) fail(n *yaml.Node, ptr, format string, args ...any) {
	c.problems = append(c.problems, Problem{File: c.file, Line: n.Line, Col: n.Column, Path: dotted(ptr), Msg: fmt.Sprintf(format, args...)})
}

// value converts n. A mapping member whose value is null counts as absent:
// `input:` with nothing after it is a job without input.
func (c *converter) value(n *yaml.Node, ptr string, depth int) any {
	c.nodes++
	if c.nodes > maxNodes || depth > 100 {
		if c.nodes == maxNodes+1 || depth == 101 {
			c.fail(n, ptr, "the declaration is too large or too deeply nested (aliases included)")
		}
		return nil
	}
	if _, ok := c.pos[ptr]; !ok {
		c.pos[ptr] = [2]int{n.Line, n.Column}
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			child := ptr + "/" + esc(k.Value)
			if seen[k.Value] {
				c.fail(k, child, "duplicate key %q", k.Value)
				continue
			}
			seen[k.Value] = true
			c.pos[child] = [2]int{k.Line, k.Column} // point at the key, where the reader looks
			val := c.value(v, child, depth+1)
			if isNull(v) {
				continue
			}
			m[k.Value] = val
		}
		return m
	case yaml.SequenceNode:
		s := make([]any, len(n.Content))
		for i, e := range n.Content {
			s[i] = c.value(e, ptr+"/"+strconv.Itoa(i), depth+1)
		}
		return s
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!int", "!!float":
			text, err := numberText(n)
			if err != nil {
				c.fail(n, ptr, "%v", err)
				return nil
			}
			return json.Number(text)
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				c.fail(n, ptr, "%s is not a boolean", n.Value)
			}
			return b
		case "!!null":
			return nil
		}
		return n.Value
	case yaml.AliasNode:
		return c.value(n.Alias, ptr, depth+1)
	case yaml.DocumentNode:
		if len(n.Content) > 0 {
			return c.value(n.Content[0], ptr, depth+1)
		}
	}
	return nil
}

func isNull(n *yaml.Node) bool {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// schemaProblems reports the leaves of a validation error at their
// positions.
func schemaProblems(file string, ve *jsonschema.ValidationError, pos map[string][2]int) Problems {
	var ps Problems
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		// The validator writes the instance location percent-encoded.
		ptr := e.InstanceLocation
		if un, err := url.PathUnescape(ptr); err == nil {
			ptr = un
		}
		msg := e.Message
		if rest, ok := strings.CutPrefix(msg, "additionalProperties "); ok {
			// "additionalProperties 'a', 'b' not allowed": one problem a key,
			// at the key.
			rest = strings.TrimSuffix(rest, " not allowed")
			for _, key := range strings.Split(rest, ", ") {
				key = strings.TrimSuffix(strings.TrimPrefix(key, "'"), "'")
				kp := ptr + "/" + esc(key)
				line, col := lookup(pos, kp)
				msg := "unknown key " + strconv.Quote(key) + "; check its spelling and place (durably.schema.json lists the keys)"
				if h, ok := keyHints[key]; ok {
					msg = "unknown key " + strconv.Quote(key) + ": " + h
				}
				ps = append(ps, Problem{File: file, Line: line, Col: col, Path: dotted(kp), Msg: msg})
			}
			return
		} else if rest, ok := strings.CutPrefix(msg, "missing properties: "); ok {
			msg = "missing " + strings.ReplaceAll(rest, "'", "\"") + "; add it"
			if strings.Contains(rest, ",") {
				msg += " (each of them)"
			}
		}
		if labelType.MatchString(ptr) && strings.HasPrefix(msg, "value must be one of") {
			msg = "a label is a string or an enum; declare other types in context or in the input"
		}
		for _, h := range hints {
			if h.at.MatchString(ptr) && (h.not == nil || !h.not.MatchString(ptr)) {
				msg += "; " + h.fix
				break
			}
		}
		line, col := lookup(pos, ptr)
		ps = append(ps, Problem{File: file, Line: line, Col: col, Path: dotted(ptr), Msg: msg})
	}
	walk(ve)
	return sortProblems(ps)
}

// dotted turns /jobs/0/input into jobs[0].input.
func dotted(ptr string) string {
	var b strings.Builder
	for _, seg := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		if seg == "" {
			continue
		}
		if _, err := strconv.Atoi(seg); err == nil {
			b.WriteString("[" + seg + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strings.NewReplacer("~1", "/", "~0", "~").Replace(seg))
	}
	return b.String()
}

// lookup is the position of ptr, or of its nearest ancestor that has one
// (a member that is absent, or a location the validator normalised).
func lookup(pos map[string][2]int, ptr string) (int, int) {
	p, ok := pos[ptr]
	for at := ptr; !ok && at != ""; {
		at = at[:strings.LastIndex(at, "/")]
		p, ok = pos[at]
	}
	if !ok || p[0] == 0 {
		return 1, 1
	}
	return p[0], p[1]
}
