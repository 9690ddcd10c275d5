package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestScaleoutCounts(t *testing.T) {
	for procs, want := range map[int][]int{1: {1}, 2: {1, 2}, 4: {1, 2, 4}, 6: {1, 2, 4, 6}, 8: {1, 2, 4, 8}} {
		if got := scaleoutCounts(procs); !slices.Equal(got, want) {
			t.Errorf("scaleoutCounts(%d) = %v, want %v", procs, got, want)
		}
	}
}

func TestScaleoutBacklogIsSeededAndBounded(t *testing.T) {
	c := &config{n: 500, runMin: time.Second, runMax: 3 * time.Second, seed: 7}
	a, b := scaleoutBacklog(c), scaleoutBacklog(c)
	if !slices.Equal(a, b) {
		t.Fatal("the same seed drew two backlogs")
	}
	if slices.Min(a) < 1000 || slices.Max(a) > 3000 || slices.Min(a) > 1100 || slices.Max(a) < 2900 {
		t.Errorf("durations %d..%d ms, want spread over 1000..3000", slices.Min(a), slices.Max(a))
	}
	c.seed = 8
	if slices.Equal(a, scaleoutBacklog(c)) {
		t.Error("another seed drew the same backlog")
	}
}

func TestScaleoutReport(t *testing.T) {
	r := &result{Metrics: map[string]float64{}, Units: map[string]string{}}
	stats := []scaleoutStats{{Runs: []string{"a", "b"}, BusyMs: 1800}, {Runs: []string{"c"}, BusyMs: 1000}}
	if err := scaleoutReport(r, 2, stats, 2*time.Second, 3.6, 1.5, 3); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]float64{"wall_s_p2": 2, "speedup_p2": 1.8, "efficiency_p2": 0.9, "runs_per_proc_min_p2": 1, "runs_per_proc_max_p2": 2, "busy_share_min_p2": 0.5, "bound_s_p2": 1.5} {
		if got := r.Metrics[k]; got < want-1e-9 || got > want+1e-9 {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
	twice := []scaleoutStats{{Runs: []string{"a", "b"}}, {Runs: []string{"b"}}}
	if err := scaleoutReport(r, 2, twice, time.Second, 1, 1, 2); err == nil || !strings.Contains(err.Error(), "completed twice") {
		t.Errorf("a run completed by two processes: %v", err)
	}
	if err := scaleoutReport(r, 2, stats, time.Second, 1, 1, 4); err == nil || !strings.Contains(err.Error(), "want 4") {
		t.Errorf("a run missing: %v", err)
	}
}
