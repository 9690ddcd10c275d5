package gen

import (
	"encoding/json"
	"fmt"
	"go/token"
	"math"
	"math/big"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/typed"
	"github.com/durably-go/durably/store"
)

// check finds what the schema cannot: invalid names, types in the wrong
// place, contradictory bounds, an output outside the module.
func check(file string, d *Declaration, pos map[string][2]int) Problems {
	c := &checker{file: file, pos: pos}
	switch name := d.Package.Name; {
	case token.IsKeyword(name):
		c.add("/package/name", "%q is a Go keyword; choose another package name", name)
	case isPredeclared(name) || slices.Contains(reservedPackageNames, name):
		c.add("/package/name", "%q cannot name the generated package (the generated client imports it next to its own imports); choose another name", name)
	}
	c.output("/package/output", d.Package.Output)
	if d.Package.TypeScript != "" {
		c.output("/package/typescript", d.Package.TypeScript)
	}
	c.fields("/labels", d.Labels, "label", func(ptr string, f Field) {
		if !store.ValidLabelKey(f.Name) {
			c.add(ptr, "label key %q %s", f.Name, store.LabelKeyRule)
		}
		if f.Type.Type != "string" && f.Type.Type != "enum" {
			c.add(ptr+"/type", "a label is a string or an enum, not %s; declare it in context or in the input instead", f.Type.Type)
		}
		if f.Type.Tenant && !f.Type.Required {
			// A tenant label left out would put the run in the scope of
			// runs without a tenant, shared by every caller that forgets it.
			c.add(ptr+"/tenant", "a tenant label must be required: add required: true, or drop tenant")
		}
	})
	c.fields("/context", d.Context, "context field", nil)
	names := map[string]int{}
	ids := map[string]*int{}
	schedules := map[string]string{} // name: the pointer of its first declaration
	for i, j := range d.Jobs {
		ptr := "/jobs/" + strconv.Itoa(i)
		if prev, dup := names[j.Name]; dup {
			c.add(ptr+"/name", "duplicate job name %q (also jobs[%d]); rename one of them", j.Name, prev)
		}
		names[j.Name] = i
		if j.Name == "useRuns" || j.Name == "useRunActions" {
			c.add(ptr+"/name", "%q is reserved by the React client of the protocol; choose another job name", j.Name)
		}
		switch id := JobID(j); {
		case !exported(id):
			c.add(ptr+"/name", "job name %q gives no exported Go identifier; set id", j.Name)
		case ids[id] != nil:
			c.add(jobPtr(i, j), "jobs[%d] (%q) has the Go identifier %s too; set id on one of them", *ids[id], d.Jobs[*ids[id]].Name, id)
		default:
			ids[id] = &i
		}
		if j.Input != nil {
			c.typ(ptr+"/input", *j.Input)
		}
		if j.Output != nil {
			c.typ(ptr+"/output", *j.Output)
		}
		if j.Retry != nil {
			c.retry(ptr+"/retry", *j.Retry)
		}
		for _, t := range []struct{ key, value string }{{"timeout", j.Timeout}, {"stepTimeout", j.StepTimeout}} {
			if d, ok := c.duration(ptr+"/"+t.key, t.key, t.value); ok && t.value != "" && d == 0 {
				c.add(ptr+"/"+t.key, "%s %q: write a positive Go duration (30s, 2m, 1h30m), or leave %s out for no bound", t.key, t.value, t.key)
			}
		}
		c.fields(ptr+"/signals", j.Signals, "signal", func(sp string, f Field) {
			if err := durably.CheckSignalName(f.Name); err != nil {
				c.add(sp, "%s", err)
			}
		})
		for k, sc := range j.Schedules {
			sp := ptr + "/schedules/" + strconv.Itoa(k)
			if prev, dup := schedules[sc.Name]; dup {
				c.add(sp+"/name", "duplicate schedule name %q (also %s): an engine's schedules have unique names; rename one of them", sc.Name, dotted(prev))
			} else {
				schedules[sc.Name] = sp
			}
			c.schedule(sp, d, j, sc)
		}
	}
	return c.problems
}

// schedule checks a declared schedule as durably.AddSchedule will, so that
// the generated Register does not fail on it: the spec and the zone with
// the engine's parser, the input against the job's input, the labels
// against the declared labels.
func (c *checker) schedule(ptr string, d *Declaration, j Job, sc Schedule) {
	if err := durably.ValidateScheduleSpec(sc.Cron, sc.TimeZone); err != nil {
		at := ptr + "/cron"
		if strings.HasPrefix(err.Error(), "time zone") {
			at = ptr + "/timeZone"
		}
		c.add(at, "%v", err)
	}
	switch sc.CatchUp {
	case "", "none":
	default:
		if dur, err := time.ParseDuration(sc.CatchUp); err != nil || dur <= 0 {
			c.add(ptr+"/catchUp", "catchUp %q: write a positive Go duration (90m, 1h30m), or none to never fire a missed tick", sc.CatchUp)
		}
	}
	if j.Input == nil && sc.Input != nil {
		c.add(ptr+"/input", "job %q has no input; leave the schedule's input out", j.Name)
	} else if j.Input != nil {
		at := ptr + "/input"
		if sc.Input == nil {
			at = ptr
		}
		if err := validateAgainst(jobSchema(j.Input), sc.Input); err != nil {
			c.add(at, "the input does not match job %q's input: %v", j.Name, err)
		}
	}
	if err := durably.CheckLabelKeys(sc.Labels); err != nil {
		c.add(ptr+"/labels", "%v", err)
		return
	}
	labels := map[string]any{}
	for k, v := range sc.Labels {
		labels[k] = v
	}
	at := ptr + "/labels"
	if sc.Labels == nil {
		at = ptr
	}
	if err := validateAgainst(labelsSchema(d.Labels), labels); err != nil {
		c.add(at, "the labels do not match the declared labels: %v", err)
	}
}

// retry checks a declared retry policy as durably.RetryPolicy's validate
// does at Register, so that the generated Register does not fail on it.
// The schema has checked maxAttempts, backoff, jitter and the shape of the
// durations already.
func (c *checker) retry(ptr string, r Retry) {
	initial, ok := c.duration(ptr+"/initial", "initial", r.Initial)
	max, okMax := c.duration(ptr+"/max", "max", r.Max)
	if !ok || !okMax {
		return
	}
	effective, which := initial, ""
	if r.Initial == "" || initial == 0 {
		effective, which = durably.DefaultRetryInitial, ", the default"
	}
	if max > 0 && max < effective {
		c.add(ptr+"/max", "max (%s) is less than initial (%s%s): raise max, lower initial, or leave max out for no cap", max, effective, which)
	}
}

// duration parses a non-negative Go duration (a retry policy's waits, a
// job's timeouts); "" is zero.
func (c *checker) duration(ptr, name, s string) (time.Duration, bool) {
	if s == "" {
		return 0, true
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		c.add(ptr, "%s %q: write a non-negative Go duration (500ms, 1s, 1m30s) of at most %s", name, s, time.Duration(math.MaxInt64))
		return 0, false
	}
	return d, true
}

// validateAgainst validates a YAML value (JSON-shaped) against a schema
// the generator writes. A schema that does not compile (a bad pattern,
// reported on its own) validates nothing.
func validateAgainst(schema string, v any) error {
	s, err := typed.CompileSchema([]byte(schema))
	if err != nil {
		return nil
	}
	doc, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.ValidateJSON(doc)
}

// exported reports whether id is an exported Go identifier.
func exported(id string) bool { return id != "" && token.IsIdentifier(id) && token.IsExported(id) }

// validOutputElem is one element of an output directory: a valid import
// path element the go command does not ignore.
var validOutputElem = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._~+-]*$`)

// output checks that the output directory is a relative path below the
// declaration (so inside its module) that can be imported.
func (c *checker) output(ptr, o string) {
	switch {
	case strings.Contains(o, `\`):
		c.add(ptr, "output %q: write the directory with forward slashes", o)
		return
	case path.IsAbs(o) || filepath.IsAbs(o) || filepath.VolumeName(o) != "":
		c.add(ptr, "output %q is absolute; it must be a relative path below this file's directory, inside the module", o)
		return
	}
	clean := path.Clean(o)
	if clean == "." {
		return
	}
	for _, e := range strings.Split(clean, "/") {
		switch {
		case e == "..":
			c.add(ptr, "output %q leaves this file's directory; it must be a relative path below it, inside the module", o)
			return
		case e == "testdata" || e == "vendor" || !validOutputElem.MatchString(e):
			c.add(ptr, "output %q: the directory %q cannot be an importable Go package (use letters, digits and . _ ~ + -, not testdata or vendor)", o, e)
			return
		}
	}
}

type checker struct {
	file     string
	pos      map[string][2]int
	problems Problems
}

func (c *checker) add(ptr, format string, args ...any) {
	line, col := lookup(c.pos, ptr)
	c.problems = append(c.problems, Problem{File: c.file, Line: line, Col: col, Path: dotted(ptr), Msg: fmt.Sprintf(format, args...)})
}

// fields checks the names of a mapping of fields and each field's type.
func (c *checker) fields(ptr string, fs Fields, kind string, each func(ptr string, f Field)) {
	for _, f := range fs {
		fp := ptr + "/" + esc(f.Name)
		switch gn := GoName(f.Name); {
		case !exported(gn):
			c.add(fp, "%s %q gives no exported Go identifier: it must start with a letter that has an upper case and hold letters or digits", kind, f.Name)
		case !validJSONName(f.Name):
			c.add(fp, "%s %q cannot be a JSON member name in a Go struct tag: use letters, digits, spaces and !#$%%&()*+-./:;<=>?@[]^_{|}~ only", kind, f.Name)
		}
		c.typ(fp, f.Type)
		if each != nil {
			each(fp, f)
		}
	}
}

// validJSONName reports whether encoding/json takes name from a struct tag
// (otherwise it silently uses the Go field name).
func validJSONName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", r):
		case !unicode.IsLetter(r) && !unicode.IsDigit(r):
			return false
		}
	}
	return true
}

// typ checks that a type's keywords fit its kind and its bounds make sense.
func (c *checker) typ(ptr string, t Type) {
	only := func(kw string, set bool, kinds ...string) {
		if !set {
			return
		}
		if slices.Contains(kinds, t.Type) {
			return
		}
		c.add(ptr+"/"+kw, "%s applies to %s, not %s; remove it or change the type", kw, strings.Join(kinds, " and "), t.Type)
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
		c.add(ptr+"/minLength", "minLength %d exceeds maxLength %d; no string could be valid", *t.MinLength, *t.MaxLength)
	}
	if t.Minimum != nil && t.Maximum != nil && t.Minimum.Rat().Cmp(t.Maximum.Rat()) > 0 {
		c.add(ptr+"/minimum", "minimum %s exceeds maximum %s; no number could be valid", t.Minimum, t.Maximum)
	}
	if t.MinItems != nil && t.MaxItems != nil && *t.MinItems > *t.MaxItems {
		c.add(ptr+"/minItems", "minItems %d exceeds maxItems %d; no array could be valid", *t.MinItems, *t.MaxItems)
	}
	for _, b := range []struct {
		kw string
		v  *Number
	}{{"minimum", t.Minimum}, {"maximum", t.Maximum}} {
		if b.v != nil {
			c.bound(ptr+"/"+b.kw, b.kw, t.Type, b.v.Rat())
		}
	}
	if t.Pattern != "" {
		if _, err := regexp.Compile(t.Pattern); err != nil {
			c.add(ptr+"/pattern", "pattern does not compile as a Go regular expression: %v", err)
		}
	}
	switch t.Type {
	case "enum":
		if len(t.Values) == 0 {
			c.add(ptr, "an enum needs values: list them under values")
		}
		seen := map[string]bool{}
		for i, v := range t.Values {
			vp := ptr + "/values/" + strconv.Itoa(i)
			switch {
			case v == "":
				c.add(vp, "an enum value must not be empty; remove it")
			case seen[v]:
				c.add(vp, "duplicate enum value %q; remove one", v)
			case EnumValueName(v) == "":
				c.add(vp, "enum value %q has no letter or digit to make its Go name from; use a value with one", v)
			}
			seen[v] = true
		}
	case "array":
		if t.Items == nil {
			c.add(ptr, "an array needs items: declare their type under items")
		} else {
			c.typ(ptr+"/items", *t.Items)
		}
	case "object":
		c.fields(ptr+"/properties", t.Properties, "property", nil)
	}
}

// Ranges of the Go types of integers and numbers (int is 64 bits on every
// platform the module supports).
var (
	minInt64   = new(big.Rat).SetInt64(math.MinInt64)
	maxInt64   = new(big.Rat).SetInt64(math.MaxInt64)
	maxFloat64 = new(big.Rat).SetFloat64(math.MaxFloat64)
)

// bound checks a minimum or maximum against the Go type of its field: a
// whole number an int holds for an integer, a number a float64 holds for
// a number.
func (c *checker) bound(ptr, kw, kind string, v *big.Rat) {
	switch kind {
	case "integer":
		switch {
		case !v.IsInt():
			c.add(ptr, "an integer's %s must be a whole number; round it or make the type number", kw)
		case v.Cmp(minInt64) < 0 || v.Cmp(maxInt64) > 0:
			c.add(ptr, "%s %s is beyond what an integer holds (a Go int, from %d to %d); use a bound in that range", kw, v.RatString(), int64(math.MinInt64), int64(math.MaxInt64))
		}
	case "number":
		if new(big.Rat).Abs(v).Cmp(maxFloat64) > 0 {
			c.add(ptr, "%s is beyond what a number holds (a Go float64)", kw)
		}
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
// exported Go name (OrganizationID, ImportCSV, DelayMs); "" when it starts
// with a digit or has no letter or digit.
func GoName(s string) string {
	name := words(s)
	if name != "" && unicode.IsDigit([]rune(name)[0]) {
		return ""
	}
	return name
}

// EnumValueName is the suffix of an enum value's Go name (the enum type's
// name comes first, so it may start with a digit): "v1.2" gives V12,
// "2xl" 2xl.
func EnumValueName(s string) string { return words(s) }

// words joins the words of s, each capitalised.
func words(s string) string {
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
	return b.String()
}
