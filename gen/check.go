package gen

import (
	"fmt"
	"go/token"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"github.com/durably-go/durably/runtime/store"
)

// check finds what the schema cannot: duplicate and invalid names, types
// in the wrong place, contradictory bounds.
func check(file string, d *Declaration, pos map[string][2]int) Problems {
	c := &checker{file: file, pos: pos}
	if token.IsKeyword(d.Package.Name) {
		c.add("/package/name", "%q is a Go keyword", d.Package.Name)
	}
	c.fields("/labels", d.Labels, func(ptr string, f Field) {
		if !store.ValidLabelKey(f.Name) {
			c.add(ptr, "label key %q %s", f.Name, store.LabelKeyRule)
		}
		if f.Type.Type != "string" && f.Type.Type != "enum" {
			c.add(ptr+"/type", "a label is a string or an enum, not %s", f.Type.Type)
		}
	})
	c.fields("/context", d.Context, func(ptr string, f Field) {
		switch f.Type.Type {
		case "string", "enum", "integer", "number", "boolean":
		default:
			c.add(ptr+"/type", "a context field is a string, enum, integer, number or boolean, not %s", f.Type.Type)
		}
	})
	names := map[string]int{}
	ids := map[string]int{}
	for i, j := range d.Jobs {
		ptr := "/jobs/" + strconv.Itoa(i)
		prev, dupName := names[j.Name]
		if dupName {
			c.add(ptr+"/name", "duplicate job name %q (also jobs[%d])", j.Name, prev)
		}
		names[j.Name] = i
		if j.Name == "useRuns" || j.Name == "useRunActions" {
			c.add(ptr+"/name", "%q is reserved by the React client (H-078)", j.Name)
		}
		id := JobID(j)
		if id == "" || !token.IsIdentifier(id) || !token.IsExported(id) {
			c.add(ptr+"/name", "job name %q gives no exported Go identifier; set id", j.Name)
		} else if prev, dup := ids[id]; dup && !dupName {
			c.add(ptr+"/id", "Go identifier %s is used by jobs[%d] too", id, prev)
		}
		ids[id] = i
		if j.Input == nil {
			c.add(ptr, "missing input")
		} else {
			c.typ(ptr+"/input", *j.Input)
		}
		if j.Output != nil {
			c.typ(ptr+"/output", *j.Output)
		}
	}
	return c.problems
}

type checker struct {
	file     string
	pos      map[string][2]int
	problems Problems
}

func (c *checker) add(ptr, format string, args ...any) {
	// A problem about a key that is absent (a derived id, say) is shown
	// where its nearest present ancestor is.
	p, ok := c.pos[ptr]
	for at := ptr; !ok && at != ""; {
		at = at[:strings.LastIndex(at, "/")]
		p, ok = c.pos[at]
	}
	c.problems = append(c.problems, Problem{File: c.file, Line: p[0], Col: p[1], Path: dotted(ptr), Msg: fmt.Sprintf(format, args...)})
}

// fields checks the names of a mapping of fields and each field's type.
func (c *checker) fields(ptr string, fs Fields, each func(ptr string, f Field)) {
	goNames := map[string]string{}
	for _, f := range fs {
		fp := ptr + "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(f.Name)
		gn := GoName(f.Name)
		switch {
		case gn == "" || !token.IsIdentifier(gn):
			c.add(fp, "%q gives no Go identifier", f.Name)
		case goNames[gn] != "":
			c.add(fp, "%q and %q both become the Go field %s", goNames[gn], f.Name, gn)
		}
		goNames[gn] = f.Name
		c.typ(fp, f.Type)
		if each != nil {
			each(fp, f)
		}
	}
}

// typ checks that a type's keywords fit its kind and its bounds make sense.
func (c *checker) typ(ptr string, t Type) {
	only := func(kw string, set bool, kinds ...string) {
		if !set {
			return
		}
		for _, k := range kinds {
			if t.Type == k {
				return
			}
		}
		c.add(ptr+"/"+kw, "%s applies to %s, not %s", kw, strings.Join(kinds, " and "), t.Type)
	}
	only("minLength", t.MinLength != nil, "string")
	only("maxLength", t.MaxLength != nil, "string")
	only("pattern", t.Pattern != "", "string")
	only("minimum", t.Minimum != nil, "integer", "number")
	only("maximum", t.Maximum != nil, "integer", "number")
	only("values", t.Values != nil, "enum")
	only("items", t.Items != nil, "array")
	only("minItems", t.MinItems != nil, "array")
	only("maxItems", t.MaxItems != nil, "array")
	only("properties", t.Properties != nil, "object")
	if t.MinLength != nil && t.MaxLength != nil && *t.MinLength > *t.MaxLength {
		c.add(ptr+"/minLength", "minLength %d exceeds maxLength %d", *t.MinLength, *t.MaxLength)
	}
	if t.Minimum != nil && t.Maximum != nil && *t.Minimum > *t.Maximum {
		c.add(ptr+"/minimum", "minimum %v exceeds maximum %v", *t.Minimum, *t.Maximum)
	}
	if t.MinItems != nil && t.MaxItems != nil && *t.MinItems > *t.MaxItems {
		c.add(ptr+"/minItems", "minItems %d exceeds maxItems %d", *t.MinItems, *t.MaxItems)
	}
	if t.Type == "integer" {
		for kw, v := range map[string]*float64{"minimum": t.Minimum, "maximum": t.Maximum} {
			if v != nil && *v != float64(int64(*v)) {
				c.add(ptr+"/"+kw, "an integer's %s must be a whole number", kw)
			}
		}
	}
	if t.Pattern != "" {
		if _, err := regexp.Compile(t.Pattern); err != nil {
			c.add(ptr+"/pattern", "pattern does not compile: %v", err)
		}
	}
	switch t.Type {
	case "enum":
		if len(t.Values) == 0 {
			c.add(ptr, "an enum needs values")
		}
		seen := map[string]bool{}
		goNames := map[string]bool{}
		for i, v := range t.Values {
			vp := ptr + "/values/" + strconv.Itoa(i)
			if v == "" {
				c.add(vp, "an enum value must not be empty")
			}
			if seen[v] {
				c.add(vp, "duplicate enum value %q", v)
			}
			seen[v] = true
			gn := GoName(v)
			if gn == "" || !token.IsIdentifier("X"+gn) {
				c.add(vp, "enum value %q gives no Go identifier", v)
			} else if goNames[gn] {
				c.add(vp, "enum values collide as Go identifiers (%s)", gn)
			}
			goNames[gn] = true
		}
	case "array":
		if t.Items == nil {
			c.add(ptr, "an array needs items")
		} else {
			c.typ(ptr+"/items", *t.Items)
		}
	case "object":
		c.fields(ptr+"/properties", t.Properties, nil)
	}
}

// JobID is the Go identifier of a job: its id, or its name in CamelCase.
func JobID(j Job) string {
	if j.ID != "" {
		return j.ID
	}
	return GoName(j.Name)
}

// initialisms are written in capitals in Go names (Go's own convention).
var initialisms = map[string]string{"id": "ID", "url": "URL", "uri": "URI", "http": "HTTP", "https": "HTTPS",
	"api": "API", "json": "JSON", "sql": "SQL", "uuid": "UUID", "ip": "IP", "html": "HTML", "csv": "CSV", "xml": "XML"}

// GoName turns a JSON name (organizationId, import-csv, delay_ms) into an
// exported Go name (OrganizationID, ImportCSV, DelayMs).
func GoName(s string) string {
	var words []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			words = append(words, string(cur))
			cur = nil
		}
	}
	rs := []rune(s)
	for i, r := range rs {
		switch {
		case !unicode.IsLetter(r) && !unicode.IsDigit(r):
			flush()
		case unicode.IsUpper(r) && len(cur) > 0 && (unicode.IsLower(cur[len(cur)-1]) || (i+1 < len(rs) && unicode.IsLower(rs[i+1]))):
			flush()
			cur = append(cur, r)
		default:
			cur = append(cur, r)
		}
	}
	flush()
	var b strings.Builder
	for _, w := range words {
		if up, ok := initialisms[strings.ToLower(w)]; ok {
			b.WriteString(up)
			continue
		}
		rs := []rune(w)
		b.WriteRune(unicode.ToUpper(rs[0]))
		b.WriteString(string(rs[1:]))
	}
	name := b.String()
	if name != "" && unicode.IsDigit([]rune(name)[0]) {
		return ""
	}
	return name
}
