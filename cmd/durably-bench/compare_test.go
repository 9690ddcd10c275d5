package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeReps writes a -json output file of one metric's repetitions, with a
// summary line and a line of another kind that readReps must pass over.
func writeReps(t *testing.T, name string, metric string, vals ...float64) string {
	t.Helper()
	var b bytes.Buffer
	for i, v := range vals {
		printJSON(&b, result{Type: "rep", Workload: "process", Rep: i + 1, Metrics: map[string]float64{metric: v, "only_here": 1}, Units: map[string]string{metric: "/s"}})
	}
	printJSON(&b, summary{Type: "summary", Workload: "process"})
	b.WriteString("not json\n")
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCompareGuard(t *testing.T) {
	tests := []struct {
		name          string
		before, after []float64
		guard         string
		wantErr       string // "" for none
	}{
		{"same speed", []float64{100, 100, 100}, []float64{100, 100, 100}, "runs_per_s>=0.85", ""},
		{"20 % slower", []float64{100, 110, 90}, []float64{80, 88, 72}, "runs_per_s>=0.85", "= 0.800"},
		{"14 % slower passes", []float64{100, 100, 100}, []float64{86, 86, 86}, "runs_per_s>=0.85", ""},
		// Pairs, not medians: the machine slowed down from round 3 on,
		// between the two runs of that round (medians: 100 → 57).
		{"a slowdown of the machine weighs on both builds", []float64{100, 100, 100, 60, 60}, []float64{95, 95, 57, 57, 57}, "runs_per_s>=0.9", ""},
		{"one bad pair of five does not fail", []float64{100, 100, 100, 100, 100}, []float64{100, 40, 100, 100, 100}, "runs_per_s>=0.85", ""},
		{"a latency bound", []float64{1, 1, 1}, []float64{1.3, 1.3, 1.3}, "runs_per_s<=1.15", "want <= 1.15"},
		{"a metric neither has", []float64{1}, []float64{1}, "p50_ms>=0.85", "neither build reported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &config{before: writeReps(t, "before", "runs_per_s", tt.before...), after: writeReps(t, "after", "runs_per_s", tt.after...),
				beforeName: "b", afterName: "a", guard: tt.guard}
			var out bytes.Buffer
			err := compareMain(&out, c)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("compareMain: %v, want an error with %q", err, tt.wantErr)
			}
			if !strings.Contains(out.String(), "| runs_per_s /s |") || !strings.Contains(out.String(), "| only_here  |") {
				t.Errorf("table without its rows:\n%s", out.String())
			}
		})
	}
}

func TestParseGuardRefusesNonsense(t *testing.T) {
	for _, s := range []string{"", "runs_per_s", "runs_per_s>0.85", ">=0.85", "runs_per_s>=x", "runs_per_s>=-1", "runs_per_s>=0"} {
		if _, err := parseGuard(s); err == nil {
			t.Errorf("parseGuard(%q): no error", s)
		}
	}
	g, err := parseGuard("runs_per_s>=0.85")
	if err != nil || g != (compareGuard{metric: "runs_per_s", atLeast: true, bound: 0.85}) {
		t.Errorf("parseGuard = %+v, %v", g, err)
	}
}

func TestCompareTableShowsPairsAndMedians(t *testing.T) {
	rows, err := compareFiles(writeReps(t, "b", "runs_per_s", 100, 200, 300), writeReps(t, "a", "runs_per_s", 150, 200, 150))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	printComparison(&out, rows, "before (x)", "after (y)")
	// Medians 200 → 150; pairs 1.5, 1.0, 0.5.
	want := "| runs_per_s /s | 200 [100..300] | 150 [150..200] | 0.750 | 1.000 [0.500..1.500] | 3 |"
	if !strings.Contains(out.String(), want) {
		t.Errorf("table:\n%s\nwant the row\n%s", out.String(), want)
	}
	if _, err := compareFiles(writeReps(t, "b", "x"), writeReps(t, "a", "x", 1)); err == nil {
		t.Error("a file without repetitions: no error")
	}
}
