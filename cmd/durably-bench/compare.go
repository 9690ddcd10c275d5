package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Comparing two builds: bench/run.sh compare runs the same case with the
// previous commit's binary and this one, alternately, one repetition per
// call, appending each binary's JSON lines to a file of its own; -before
// and -after read those files back and print a before → after table of
// medians, and -guard fails the comparison when a ratio falls past a
// bound. Rep i of one file ran next to rep i of the other, so the ratio of
// each such pair is a measure that the machine's slow drifts do not move.

// compareRow is one metric of a comparison.
type compareRow struct {
	metric, unit  string
	before, after []float64 // in the files' order
}

// ratio is the median of after ÷ before over the medians.
func (r compareRow) ratio() float64 { return medianOf(r.after) / medianOf(r.before) }

// pairedRatios are after[i] ÷ before[i], sorted.
func (r compareRow) pairedRatios() []float64 {
	var rs []float64
	for i := range min(len(r.before), len(r.after)) {
		if r.before[i] != 0 {
			rs = append(rs, r.after[i]/r.before[i])
		}
	}
	sort.Float64s(rs)
	return rs
}

func medianOf(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	sort.Float64s(s)
	return median(s)
}

// readReps reads the repetitions of a -json output file: metric → values
// in order, and their units.
func readReps(path string) (map[string][]float64, map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	values, units := map[string][]float64{}, map[string]string{}
	for line := range strings.Lines(string(b)) {
		var r result
		if json.Unmarshal([]byte(line), &r) != nil || r.Type != "rep" {
			continue
		}
		for k, v := range r.Metrics {
			values[k] = append(values[k], v)
			if u := r.Units[k]; u != "" {
				units[k] = u
			}
		}
	}
	if len(values) == 0 {
		return nil, nil, fmt.Errorf("%s holds no repetition", path)
	}
	return values, units, nil
}

// compareFiles reads both files into rows, one per metric both have.
func compareFiles(beforePath, afterPath string) ([]compareRow, error) {
	before, _, err := readReps(beforePath)
	if err != nil {
		return nil, err
	}
	after, units, err := readReps(afterPath)
	if err != nil {
		return nil, err
	}
	var rows []compareRow
	for _, k := range slices.Sorted(maps.Keys(after)) {
		if b, ok := before[k]; ok {
			rows = append(rows, compareRow{metric: k, unit: units[k], before: b, after: after[k]})
		}
	}
	return rows, nil
}

func printComparison(w io.Writer, rows []compareRow, beforeName, afterName string) {
	fmt.Fprintf(w, "| metric | %s, median [min..max] | %s, median [min..max] | ratio of medians | paired ratios, median [min..max] | pairs |\n", beforeName, afterName)
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	spread := func(vs []float64) string {
		s := slices.Clone(vs)
		sort.Float64s(s)
		return fmt.Sprintf("%s [%s..%s]", fmtNum(median(s)), fmtNum(s[0]), fmtNum(s[len(s)-1]))
	}
	for _, r := range rows {
		pairs := r.pairedRatios()
		paired := "—"
		if len(pairs) > 0 {
			paired = fmt.Sprintf("%.3f [%.3f..%.3f]", median(pairs), pairs[0], pairs[len(pairs)-1])
		}
		fmt.Fprintf(w, "| %s %s | %s | %s | %.3f | %s | %d |\n", r.metric, r.unit, spread(r.before), spread(r.after), r.ratio(), paired, len(pairs))
	}
}

// compareGuard is a bound on a metric's ratio after ÷ before, written
// "runs_per_s>=0.85" (after at least 85 % of before) or "p50_ms<=1.15".
type compareGuard struct {
	metric  string
	atLeast bool
	bound   float64
}

func parseGuard(s string) (compareGuard, error) {
	for _, op := range []string{">=", "<="} {
		if metric, bound, ok := strings.Cut(s, op); ok {
			v, err := strconv.ParseFloat(bound, 64)
			if err != nil || metric == "" || v <= 0 {
				break
			}
			return compareGuard{metric: metric, atLeast: op == ">=", bound: v}, nil
		}
	}
	return compareGuard{}, fmt.Errorf("-guard %q: want METRIC>=RATIO or METRIC<=RATIO with a positive ratio, e.g. runs_per_s>=0.85", s)
}

// check holds the median of the metric's paired ratios to the bound: a
// pair is the two builds run one after the other, so the median of pairs
// is what the machine's drifts move least.
func (g compareGuard) check(rows []compareRow) error {
	for _, r := range rows {
		if r.metric != g.metric {
			continue
		}
		pairs := r.pairedRatios()
		if len(pairs) == 0 {
			return fmt.Errorf("guard %s: no pair of repetitions to compare", g.metric)
		}
		got := median(pairs)
		if (g.atLeast && got < g.bound) || (!g.atLeast && got > g.bound) {
			op := ">="
			if !g.atLeast {
				op = "<="
			}
			return fmt.Errorf("guard broken: %s after ÷ before = %.3f (median of %d paired ratios), want %s %.2f", g.metric, got, len(pairs), op, g.bound)
		}
		return nil
	}
	return fmt.Errorf("guard %s: neither build reported that metric", g.metric)
}

// compareMain is -before/-after: it prints the table and applies the
// guard, if any.
func compareMain(w io.Writer, c *config) error {
	rows, err := compareFiles(c.before, c.after)
	if err != nil {
		return err
	}
	printComparison(w, rows, c.beforeName, c.afterName)
	if c.guard == "" {
		return nil
	}
	g, err := parseGuard(c.guard)
	if err != nil {
		return err
	}
	return g.check(rows)
}
