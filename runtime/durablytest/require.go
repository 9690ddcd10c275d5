package durablytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// Match narrows which runs RequireTriggered and RequireNotTriggered look
// for, beyond the job and the input.
type Match func(*criteria)

type criteria struct {
	anyInput       bool
	input          json.RawMessage // want, encoded; nil with AnyInput
	labels         map[string]string
	hasLabels      bool
	status         durably.Status
	idempotencyKey *string
	concurrencyKey *string
	runAt          *time.Time
	priority       *int
}

// Labels requires the run's labels to be exactly these (as stored, after
// Config.Labels normalised them).
func Labels(labels map[string]string) Match {
	return func(c *criteria) { c.labels, c.hasLabels = maps.Clone(labels), true }
}

// Status requires the run to be in this status.
func Status(s durably.Status) Match { return func(c *criteria) { c.status = s } }

// IdempotencyKey requires the run's idempotency key to be key.
func IdempotencyKey(key string) Match { return func(c *criteria) { c.idempotencyKey = &key } }

// ConcurrencyKey requires the run's concurrency key to be key.
func ConcurrencyKey(key string) Match { return func(c *criteria) { c.concurrencyKey = &key } }

// RunAt requires the run to have been triggered (or deferred, by a sleep
// or a retry) for t: its RunAt, at the store's millisecond precision. The
// zero time requires a run claimable from its trigger on.
func RunAt(t time.Time) Match {
	if !t.IsZero() {
		t = store.Truncate(t)
	}
	return func(c *criteria) { c.runAt = &t }
}

// Priority requires the run's priority to be p.
func Priority(p int) Match { return func(c *criteria) { c.priority = &p } }

// AnyInput ignores the input: any run of the job that meets the other
// criteria matches (pass the input type's zero value as want).
func AnyInput() Match { return func(c *criteria) { c.anyInput = true } }

// maxListed bounds the runs a failure message lists.
const maxListed = 20

// RequireTriggered asserts that exactly one run of h's job was triggered
// with input want (and the Match criteria), in any status, and returns it
// typed. Inputs are compared as JSON, the form in which the run stores
// its input: want matches a run whose input encodes to the same JSON
// value. If no run or several runs match, the test fails (Fatalf) with the
// job's runs, newest first, and what differs in each; count runs with
// h.ListRuns where several are expected.
func RequireTriggered[I, O any, L durably.Labels[L]](tb testing.TB, h *durably.TypedJob[I, O, L], want I, opts ...Match) *durably.TypedRun[I, O, L] {
	tb.Helper()
	c, runs, matched, ok := find(tb, h, want, opts)
	if !ok {
		return nil
	}
	switch len(matched) {
	case 1:
		typed, err := h.GetRun(tb.Context(), matched[0].ID)
		if err != nil || typed == nil {
			tb.Fatalf("durablytest.RequireTriggered: read run %s: %v", matched[0].ID, err)
			return nil
		}
		return typed
	case 0:
		tb.Fatalf("durablytest.RequireTriggered: no run of job %q matches %s\n%s",
			h.Name(), c.describe(), listRuns(tb, h, c, runs, fmt.Sprintf("its %d run(s)", len(runs))))
	default:
		tb.Fatalf("durablytest.RequireTriggered: %d runs of job %q match %s, want exactly one\n%s",
			len(matched), h.Name(), c.describe(), listRuns(tb, h, c, runs, fmt.Sprintf("its %d run(s)", len(runs))))
	}
	return nil
}

// RequireNotTriggered asserts that no run of h's job has input want (and
// the Match criteria; with AnyInput, that the job has no such run at
// all). It fails (Fatalf) listing the runs that match.
func RequireNotTriggered[I, O any, L durably.Labels[L]](tb testing.TB, h *durably.TypedJob[I, O, L], want I, opts ...Match) {
	tb.Helper()
	c, _, matched, ok := find(tb, h, want, opts)
	if ok && len(matched) > 0 {
		tb.Fatalf("durablytest.RequireNotTriggered: %d run(s) of job %q match %s\n%s",
			len(matched), h.Name(), c.describe(), listRuns(tb, h, c, matched, "the matching run(s)"))
	}
}

// find lists h's runs and those that match; ok is false once the test has
// been failed.
func find[I, O any, L durably.Labels[L]](tb testing.TB, h *durably.TypedJob[I, O, L], want I, opts []Match) (c *criteria, runs, matched []*durably.Run, ok bool) {
	tb.Helper()
	c = &criteria{}
	for _, o := range opts {
		if o != nil {
			o(c)
		}
	}
	if !c.anyInput {
		enc, err := json.Marshal(want)
		if err != nil {
			tb.Fatalf("durablytest: encode the wanted input: %v", err)
			return c, nil, nil, false
		}
		c.input = enc
	}
	// Untyped runs: the input is compared as stored, and a stored input
	// that no longer decodes into I is shown rather than failing the read.
	all, err := h.Engine().ListRuns(tb.Context(), durably.RunFilter{JobNames: []string{h.Name()}})
	if err != nil {
		tb.Fatalf("durablytest: list runs of job %q: %v", h.Name(), err)
		return c, nil, nil, false
	}
	for _, r := range all {
		if len(c.differences(r)) == 0 {
			matched = append(matched, r)
		}
	}
	return c, all, matched, true
}

// differences names the criteria run fails.
func (c *criteria) differences(run *durably.Run) []string {
	var d []string
	if c.input != nil && !sameJSON(c.input, run.Input) {
		d = append(d, "input")
	}
	if c.hasLabels && !maps.Equal(c.labels, run.Labels) {
		d = append(d, "labels")
	}
	if c.status != "" && run.Status != c.status {
		d = append(d, "status")
	}
	if c.idempotencyKey != nil && run.IdempotencyKey != *c.idempotencyKey {
		d = append(d, "idempotency key")
	}
	if c.concurrencyKey != nil && run.ConcurrencyKey != *c.concurrencyKey {
		d = append(d, "concurrency key")
	}
	if c.runAt != nil && !run.RunAt.Equal(*c.runAt) {
		d = append(d, "run at")
	}
	if c.priority != nil && run.Priority != *c.priority {
		d = append(d, "priority")
	}
	return d
}

// sameJSON reports whether two JSON documents are the same value: object
// members in any order, numbers compared as written.
func sameJSON(a, b json.RawMessage) bool {
	va, errA := decodeAny(a)
	vb, errB := decodeAny(b)
	if errA != nil || errB != nil {
		return bytes.Equal(bytes.TrimSpace(a), bytes.TrimSpace(b))
	}
	return reflect.DeepEqual(va, vb)
}

func decodeAny(doc json.RawMessage) (any, error) {
	if len(bytes.TrimSpace(doc)) == 0 {
		doc = json.RawMessage("null")
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

// describe states the criteria for a failure message.
func (c *criteria) describe() string {
	var parts []string
	if c.input != nil {
		parts = append(parts, "input "+string(c.input))
	} else {
		parts = append(parts, "any input")
	}
	if c.hasLabels {
		parts = append(parts, "labels "+formatLabels(c.labels))
	}
	if c.status != "" {
		parts = append(parts, "status "+string(c.status))
	}
	if c.idempotencyKey != nil {
		parts = append(parts, fmt.Sprintf("idempotency key %q", *c.idempotencyKey))
	}
	if c.concurrencyKey != nil {
		parts = append(parts, fmt.Sprintf("concurrency key %q", *c.concurrencyKey))
	}
	if c.runAt != nil {
		parts = append(parts, "run at "+formatRunAt(*c.runAt))
	}
	if c.priority != nil {
		parts = append(parts, fmt.Sprintf("priority %d", *c.priority))
	}
	return strings.Join(parts, ", ")
}

// listRuns describes runs for a failure message, newest first, each with
// what differs from the criteria; with no runs, it says which other jobs
// have runs, in case the test looks at the wrong job.
func listRuns[I, O any, L durably.Labels[L]](tb testing.TB, h *durably.TypedJob[I, O, L], c *criteria, runs []*durably.Run, heading string) string {
	tb.Helper()
	var b strings.Builder
	if len(runs) == 0 {
		fmt.Fprintf(&b, "  job %q has no runs", h.Name())
		others, err := h.Engine().ListRuns(tb.Context(), durably.RunFilter{})
		if err == nil && len(others) > 0 {
			count := map[string]int{}
			for _, r := range others {
				count[r.JobName]++
			}
			var jobs []string
			for _, name := range slices.Sorted(maps.Keys(count)) {
				jobs = append(jobs, fmt.Sprintf("%q (%d)", name, count[name]))
			}
			fmt.Fprintf(&b, "; other jobs have: %s", strings.Join(jobs, ", "))
		}
		return b.String()
	}
	b.WriteString("  " + heading + ", newest first:")
	for i, r := range runs {
		if i == maxListed {
			fmt.Fprintf(&b, "\n    … and %d more", len(runs)-maxListed)
			break
		}
		fmt.Fprintf(&b, "\n    %s %s input %s labels %s", r.ID, r.Status, compact(r.Input), formatLabels(r.Labels))
		if r.IdempotencyKey != "" {
			fmt.Fprintf(&b, " idempotency key %q", r.IdempotencyKey)
		}
		if r.ConcurrencyKey != "" {
			fmt.Fprintf(&b, " concurrency key %q", r.ConcurrencyKey)
		}
		if !r.RunAt.IsZero() || c.runAt != nil {
			fmt.Fprintf(&b, " run at %s", formatRunAt(r.RunAt))
		}
		if r.Priority != 0 || c.priority != nil {
			fmt.Fprintf(&b, " priority %d", r.Priority)
		}
		if r.Attempt != 0 {
			fmt.Fprintf(&b, " attempt %d", r.Attempt)
		}
		if d := c.differences(r); len(d) > 0 {
			fmt.Fprintf(&b, " (differs in %s)", strings.Join(d, ", "))
		}
	}
	return b.String()
}

func formatRunAt(t time.Time) string {
	if t.IsZero() {
		return "at once"
	}
	return t.Format(time.RFC3339Nano)
}

func compact(doc json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, doc); err != nil {
		return string(doc)
	}
	return b.String()
}

// formatLabels writes labels as {k=v, …} with sorted keys.
func formatLabels(labels map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, k+"="+labels[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
