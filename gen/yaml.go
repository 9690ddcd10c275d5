package gen

import (
	"bytes"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// yamlDirectiveLine is a %YAML directive: the YAML library reads 1.1
// documents and refuses a 1.2 directive, though a declaration reads the same
// under both (the schema has the last word on every value).
var yamlDirectiveLine = regexp.MustCompile(`(?m)^%YAML[ \t]+([^ \t\r\n#]*)[^\r\n]*`)

// yamlDirective accepts a %YAML 1.1 or 1.2 directive by turning it into a
// comment of the same length, so that lines and columns do not move; any
// other version is refused at the directive.
func yamlDirective(file string, data []byte) ([]byte, *Problem) {
	loc := yamlDirectiveLine.FindSubmatchIndex(data)
	if loc == nil {
		return data, nil
	}
	// Only a directive before the document counts: a line starting with
	// %YAML inside a block scalar is text.
	before := data[:loc[0]]
	for _, line := range bytes.Split(before, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' && t[0] != '%' {
			return data, nil
		}
	}
	version := string(data[loc[2]:loc[3]])
	if version != "1.1" && version != "1.2" {
		line := bytes.Count(before, []byte("\n")) + 1
		return nil, &Problem{File: file, Line: line, Col: 1, Msg: fmt.Sprintf("%%YAML %s: a declaration is YAML 1.2 or 1.1; write %%YAML 1.2 or leave the directive out", version)}
	}
	out := bytes.Clone(data)
	out[loc[0]] = '#'
	return out, nil
}

// expandMerges resolves YAML merge keys (<<: *defaults) in place: the
// merged mapping's members join the mapping where the key stood, unless the
// mapping sets them itself; of a list of merged mappings, the first that
// sets a key wins (YAML's merge rule). Aliases stay aliases: an object
// reused through one is one Go type.
func (c *converter) expandMerges(n *yaml.Node, done map[*yaml.Node]bool, depth int) {
	if n == nil || done[n] || depth > 100 {
		return
	}
	done[n] = true
	for _, child := range n.Content {
		c.expandMerges(child, done, depth+1)
	}
	if n.Kind == yaml.AliasNode {
		c.expandMerges(n.Alias, done, depth+1)
	}
	if n.Kind != yaml.MappingNode {
		return
	}
	explicit := map[string]bool{}
	merges := false
	for i := 0; i+1 < len(n.Content); i += 2 {
		if isMergeKey(n.Content[i]) {
			merges = true
		} else {
			explicit[n.Content[i].Value] = true
		}
	}
	if !merges {
		return
	}
	var content []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !isMergeKey(k) {
			content = append(content, k, v)
			continue
		}
		sources := []*yaml.Node{v}
		if resolve(v).Kind == yaml.SequenceNode {
			sources = resolve(v).Content
		}
		for _, src := range sources {
			m := resolve(src)
			if m.Kind != yaml.MappingNode {
				c.fail(src, "", "<< merges a mapping into this one: write an alias of a mapping (<<: *defaults) or a list of them (<<: [*a, *b])")
				continue
			}
			c.expandMerges(m, done, depth+1)
			for j := 0; j+1 < len(m.Content); j += 2 {
				if key := m.Content[j].Value; !explicit[key] {
					explicit[key] = true
					content = append(content, m.Content[j], m.Content[j+1])
				}
			}
		}
	}
	n.Content = content
}

func isMergeKey(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Tag == "!!merge"
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for depth := 0; n.Kind == yaml.AliasNode && n.Alias != nil && depth < 100; depth++ {
		n = n.Alias
	}
	return n
}

// member is the value of key in mapping n, or nil.
func memberOf(n *yaml.Node, key string) *yaml.Node {
	if n == nil {
		return nil
	}
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// emptyFields refuses a label, a context field or a property written with
// nothing after its colon: unlike `input:` (a job without input), a named
// field without a type is a slip, and leaving it out of the types would
// make a client that sends it fail with "unknown field".
func (c *converter) emptyFields(root *yaml.Node) {
	var typ func(n *yaml.Node, ptr string, depth int)
	fields := func(n *yaml.Node, ptr, kind string, depth int) {
		if n == nil || resolve(n).Kind != yaml.MappingNode {
			return
		}
		n = resolve(n)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			fp := ptr + "/" + esc(k.Value)
			if isNull(v) {
				c.fail(k, fp, "%s %q has no type: write one after the colon (%s: {type: string}), or remove the line", kind, k.Value, k.Value)
				continue
			}
			typ(v, fp, depth+1)
		}
	}
	typ = func(n *yaml.Node, ptr string, depth int) {
		if n == nil || depth > 100 {
			return
		}
		fields(memberOf(n, "properties"), ptr+"/properties", "property", depth)
		if items := memberOf(n, "items"); items != nil {
			typ(items, ptr+"/items", depth+1)
		}
	}
	fields(memberOf(root, "labels"), "/labels", "label", 0)
	fields(memberOf(root, "context"), "/context", "context field", 0)
	if jobs := memberOf(root, "jobs"); jobs != nil && resolve(jobs).Kind == yaml.SequenceNode {
		for i, j := range resolve(jobs).Content {
			for _, k := range []string{"input", "output"} {
				typ(memberOf(j, k), "/jobs/"+strconv.Itoa(i)+"/"+k, 0)
			}
		}
	}
}

// jsonNumberText is JSON's grammar of numbers.
var jsonNumberText = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$`)

// numberText is a YAML number as exact JSON text: integers in any of
// YAML's notations (0x1F, 1_000) in decimal, whatever their size; other
// numbers as written when JSON can write them so, else as the nearest
// float64. Infinities and NaN are refused.
func numberText(n *yaml.Node) (string, error) {
	if n.Tag == "!!int" {
		var z big.Int
		if _, ok := z.SetString(strings.ReplaceAll(n.Value, "_", ""), 0); ok {
			return z.String(), nil
		}
	}
	var f float64
	if err := n.Decode(&f); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return "", fmt.Errorf("%s is not a finite number", n.Value)
	}
	if jsonNumberText.MatchString(n.Value) {
		return n.Value, nil
	}
	return strconv.FormatFloat(f, 'g', -1, 64), nil
}
