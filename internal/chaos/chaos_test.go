package chaos_test

import (
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/durably-go/durably/internal/chaos"
)

func TestAnalyze(t *testing.T) {
	tests := []struct {
		name   string
		log    string
		killed map[int]bool
		want   chaos.Report
	}{
		{"clean run", "start r 1 10\nend r 1 10\nstart r 2 10\nend r 2 10\ncomplete r 0 10\n", nil,
			chaos.Report{Starts: 2}},
		{"step re-run after its executor was killed", "start r 1 10\nstart r 1 11\nstart r 2 11\n", map[int]bool{10: true},
			chaos.Report{Starts: 3, Reruns: 1}},
		{"step re-run although nobody was killed", "start r 1 10\nstart r 1 11\n", nil,
			chaos.Report{Starts: 2, Reruns: 1, RerunsWithoutKill: 1}},
		{"step re-run after a later step started", "start r 1 10\nstart r 2 10\nstart r 1 11\n", map[int]bool{10: true},
			chaos.Report{Starts: 3, Reruns: 1, RerunsAfterRecord: 1}},
		{"run completed by two processes", "complete r 0 10\ncomplete r 0 11\ncomplete q 0 11\n", nil,
			chaos.Report{CompletedTwice: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "effects.log")
			if err := os.WriteFile(path, []byte(tt.log), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := chaos.Analyze(path, tt.killed)
			if err != nil {
				t.Fatal(err)
			}
			got.First = ""
			if got != tt.want {
				t.Fatalf("Analyze = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestEffectLogWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "effects.log")
	l, err := chaos.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l.Write("start", "r", 1)
	l.Write("end", "r", 1)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var nilLog *chaos.EffectLog
	nilLog.Write("start", "r", 1) // a parent process's job writes nothing
	got, err := chaos.Analyze(path, nil)
	if err != nil || got.Starts != 1 {
		t.Fatalf("Analyze after two writes: %+v %v", got, err)
	}
}

func TestCount(t *testing.T) {
	path := filepath.Join(t.TempDir(), "effects.log")
	log := "start r 1 10\npoison r 2 10\nstart r 1 11\npoison r 2 11\npoison q 2 11\nhang r 1 12\n"
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	for what, want := range map[string]map[string]int{
		"poison":   {"r": 2, "q": 1},
		"hang":     {"r": 1},
		"complete": {},
	} {
		got, err := chaos.Count(path, what)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, want) {
			t.Errorf("Count(%q) = %v, want %v", what, got, want)
		}
	}
	if _, err := chaos.Count(filepath.Join(t.TempDir(), "missing"), "poison"); err == nil {
		t.Error("Count of a missing log: no error")
	}
}
