package gen

import (
	"fmt"
	"go/token"
	"slices"
	"strings"
)

// The generator's own identifiers: the names the generated package and its
// client declare whatever the declaration says. A declared name that
// becomes one of them is refused, naming both.
var (
	fixedPackageNames = []string{
		"Labels", "LabelOption", "NewLabels", "TriggerLabels", "LabelSchema", "LabelsJSONSchema", "Config",
		"AuthContext", "Handlers", "Jobs", "Register", "RegisterOption", "WithoutSchedules", "JobSchemas", "TriggerOptions", "RunFilter",
	}
	fixedClientNames = []string{"Client", "New", "TriggerOptions", "ListOptions"}
	// clientMethods are the methods a generated Client has from the
	// runtime client it embeds, and the embedded field itself.
	clientMethods = []string{"Client", "Trigger", "GetRun", "ListRuns", "Subscribe", "SubscribeRuns", "Steps",
		"Cancel", "Retrigger", "Resume", "Delete", "Jobs", "Wait", "Signal", "Signals", "Children"}
	labelsMethods = []string{"ToMap", "FromMap", "JSONSchemaExtend"}
	structMethods = []string{"JSONSchemaExtend"}
	// reservedPackageNames cannot name the generated package: the client
	// imports it under its name next to these, and a predeclared name
	// would shadow the types the client uses.
	reservedPackageNames = []string{"context", "iter", "time", "durably", "durablyclient", "main", "init"}
)

// origin is where an identifier comes from: a member of the declaration
// (ptr, a JSON pointer) or the generator itself (ptr empty).
type origin struct {
	ptr  string
	what string // "the input type of job \"a\"", "the field of property \"x\""
	job  string // the Go identifier of the job the name derives from, if any
	jobN int    // 1 + the index of that job
}

// scope is a Go namespace the generated code declares names in: a
// package's top level, or the fields and methods of one struct.
type scope struct {
	desc string
	ids  map[string]origin
}

func newScope(desc string, fixed []string, fixedWhat string) *scope {
	s := &scope{desc: desc, ids: map[string]origin{}}
	for _, n := range fixed {
		what := fixedWhat
		if what == "the generated" {
			what = "the generated type"
			if slices.Contains(fixedFuncs, n) {
				what = "the generated function"
			}
		}
		s.ids[n] = origin{what: what}
	}
	return s
}

// fixedFuncs are the functions among the generator's own identifiers.
var fixedFuncs = []string{"NewLabels", "LabelSchema", "LabelsJSONSchema", "Config", "Register", "WithoutSchedules", "JobSchemas", "NewHandler", "New"}

// namer collects the identifiers the generated code declares and refuses
// each collision with both of its sources.
type namer struct {
	file     string
	pos      map[string][2]int
	problems Problems
	reported map[[2]string]bool // pairs of sources already reported
}

func (n *namer) at(ptr string) (int, int) { return lookup(n.pos, ptr) }

func (n *namer) describe(id string, o origin) string {
	if o.ptr == "" {
		return fmt.Sprintf("%s %s", o.what, id)
	}
	line, col := n.at(o.ptr)
	return fmt.Sprintf("%s (%s, %d:%d)", o.what, dotted(o.ptr), line, col)
}

// declare records id in s; a collision is a problem at the declaration's
// side of it. It reports whether id was free.
func (n *namer) declare(s *scope, id string, o origin) bool {
	prev, taken := s.ids[id]
	if !taken {
		s.ids[id] = o
		return true
	}
	if o.job != "" && o.job == prev.job && o.jobN != prev.jobN {
		return false // two jobs with one Go identifier: check says so once
	}
	at, other := o, prev
	if o.ptr == "" {
		at, other = prev, o
	}
	// One collision of two sources is enough to say: a job's name gives
	// many identifiers, and all of them collide at once.
	pair := [2]string{at.ptr + "\x00" + at.what, other.ptr}
	if at.ptr != "" && other.ptr != "" {
		pair = [2]string{at.ptr, other.ptr}
	}
	if n.reported == nil {
		n.reported = map[[2]string]bool{}
	}
	if n.reported[pair] {
		return false
	}
	n.reported[pair] = true
	line, col := n.at(at.ptr)
	n.problems = append(n.problems, Problem{
		File: n.file, Line: line, Col: col, Path: dotted(at.ptr),
		Msg: fmt.Sprintf("the Go identifier %s of %s in %s is also %s; rename one of them", id, at.what, s.desc, n.describe(id, other)),
	})
	return false
}

// param is a parameter name for a Go name: lowerFirst, unless that is a
// keyword, a predeclared identifier or taken, when it is prefixed.
func param(goName string, taken map[string]bool) string {
	p := lowerFirst(goName)
	if token.IsKeyword(p) || predeclared[p] || taken[p] {
		p = "label" + goName
	}
	for taken[p] {
		p += "_"
	}
	taken[p] = true
	return p
}

// predeclared are Go's predeclared identifiers, which a parameter must not
// shadow.
var predeclared = func() map[string]bool {
	m := map[string]bool{}
	for _, n := range strings.Fields(`any bool byte comparable complex64 complex128 error float32 float64
		int int8 int16 int32 int64 rune string uint uint8 uint16 uint32 uint64 uintptr
		true false iota nil append cap clear close complex copy delete imag len make max min new panic print println real recover`) {
		m[n] = true
	}
	return m
}()

func isPredeclared(s string) bool { return predeclared[s] }

func sortProblems(ps Problems) Problems {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		if a.File != b.File {
			return strings.Compare(a.File, b.File)
		}
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		if a.Col != b.Col {
			return a.Col - b.Col
		}
		if a.Path != b.Path {
			return strings.Compare(a.Path, b.Path)
		}
		return strings.Compare(a.Msg, b.Msg)
	})
	return slices.CompactFunc(ps, func(a, b Problem) bool { return a.String() == b.String() })
}
