package gen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	invopop "github.com/invopop/jsonschema"
	"github.com/santhosh-tekuri/jsonschema/v5"
	"gopkg.in/yaml.v3"
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
	r := &invopop.Reflector{Anonymous: false, AllowAdditionalProperties: false, RequiredFromJSONSchemaTags: false}
	s := r.Reflect(&Declaration{})
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

// Parse checks a declaration: YAML syntax, then the JSON Schema (unknown
// keys, types, required members), then what a schema cannot say (unique
// names, valid Go identifiers, sensible bounds). Every problem is reported
// with its line, column and path.
func Parse(file string, data []byte) (*Declaration, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, Problems{yamlProblem(file, err)}
	}
	if len(doc.Content) == 0 {
		return nil, Problems{{File: file, Msg: "empty declaration"}}
	}
	root := doc.Content[0]
	pos := map[string][2]int{}
	value, err := toValue(root, "", pos)
	if err != nil {
		return nil, Problems{{File: file, Msg: err.Error()}}
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
		return nil, schemaProblems(file, ve, pos)
	}
	var d Declaration
	if err := root.Decode(&d); err != nil {
		return nil, Problems{{File: file, Msg: err.Error()}}
	}
	if ps := check(file, &d, pos); len(ps) > 0 {
		return nil, ps
	}
	return &d, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func yamlProblem(file string, err error) Problem {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{File: file, Line: line, Col: 1, Msg: "YAML: " + m[2]}
	}
	return Problem{File: file, Msg: "YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
}

// toValue converts YAML to the JSON value the schema validates, recording
// the position of every value under its JSON pointer.
func toValue(n *yaml.Node, ptr string, pos map[string][2]int) (any, error) {
	pos[ptr] = [2]int{n.Line, n.Column}
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			child := ptr + "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(k.Value)
			val, err := toValue(v, child, pos)
			if err != nil {
				return nil, err
			}
			if _, dup := m[k.Value]; dup {
				return nil, fmt.Errorf("line %d:%d: duplicate key %q", k.Line, k.Column, k.Value)
			}
			m[k.Value] = val
			pos[child] = [2]int{k.Line, k.Column} // point at the key, where the reader looks
		}
		return m, nil
	case yaml.SequenceNode:
		s := make([]any, len(n.Content))
		for i, c := range n.Content {
			v, err := toValue(c, ptr+"/"+strconv.Itoa(i), pos)
			if err != nil {
				return nil, err
			}
			s[i] = v
		}
		return s, nil
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!int", "!!float":
			return json.Number(n.Value), nil
		case "!!bool":
			return n.Value == "true", nil
		case "!!null":
			return nil, nil
		}
		return n.Value, nil
	case yaml.AliasNode:
		return toValue(n.Alias, ptr, pos)
	}
	return nil, fmt.Errorf("line %d: unsupported YAML node", n.Line)
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
		ptr := e.InstanceLocation
		msg := e.Message
		if rest, ok := strings.CutPrefix(msg, "additionalProperties "); ok {
			key := strings.Trim(strings.SplitN(rest, " ", 2)[0], "'")
			ptr += "/" + key
			msg = "unknown key " + strconv.Quote(key)
		} else if rest, ok := strings.CutPrefix(msg, "missing properties: "); ok {
			msg = "missing " + strings.ReplaceAll(rest, "'", "\"")
		}
		p := pos[ptr]
		ps = append(ps, Problem{File: file, Line: p[0], Col: p[1], Path: dotted(ptr), Msg: msg})
	}
	walk(ve)
	slices.SortFunc(ps, func(a, b Problem) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return strings.Compare(a.Msg, b.Msg)
	})
	return slices.CompactFunc(ps, func(a, b Problem) bool { return a.String() == b.String() })
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
