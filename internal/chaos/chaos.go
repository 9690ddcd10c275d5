// Package chaos records the side effects of steps executed by worker
// processes that are killed at random moments, and tells from that record
// what a crash cost: steps executed again, and whether any of them ran
// again after its record was committed (which durably promises never
// happens). The crash tests and the chaos workload of durably-bench share it.
package chaos

import (
	"bufio"
	"fmt"
	"os"
	"sync"
)

// EffectLog is an append-only file of step executions. Every line is synced
// before the step goes on, so a SIGKILL loses no line the process wrote.
// Lines are "start RUN STEP PID", "end RUN STEP PID" and "complete RUN 0 PID".
type EffectLog struct {
	mu sync.Mutex
	f  *os.File
}

// Open opens (creating) the log at path for appending.
func Open(path string) (*EffectLog, error) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("chaos: open effect log: %w", err)
	}
	return &EffectLog{f: f}, nil
}

// Write appends one line and syncs it. A nil log writes nothing.
func (l *EffectLog) Write(what, runID string, step int) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.f, "%s %s %d %d\n", what, runID, step, os.Getpid())
	_ = l.f.Sync()
}

// Close closes the file.
func (l *EffectLog) Close() error { return l.f.Close() }

// Report is what the log says about a series of crashes.
type Report struct {
	// Starts is the number of step executions.
	Starts int
	// Reruns counts executions of a step that had run before (its
	// executor was killed before the record was committed).
	Reruns int
	// RerunsAfterRecord counts executions of a step after a later step of
	// its run had started: a step is recorded before the next one starts,
	// so these are steps run again after their record was committed.
	RerunsAfterRecord int
	// RerunsWithoutKill counts executions repeated although the process
	// that ran the step before was not killed.
	RerunsWithoutKill int
	// CompletedTwice counts runs whose completion two processes reported.
	CompletedTwice int
	// First describes the first violation found, for error messages.
	First string
}

// Analyze reads the log at path; killed holds the pids of the processes that
// were killed.
func Analyze(path string, killed map[int]bool) (Report, error) {
	var r Report
	f, err := os.Open(path)
	if err != nil {
		return r, fmt.Errorf("chaos: read effect log: %w", err)
	}
	defer f.Close()
	type key struct {
		run  string
		step int
	}
	recorded := map[key]bool{}
	starts := map[key][]int{}
	completes := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var what, run string
		var step, pid int
		if _, err := fmt.Sscanf(sc.Text(), "%s %s %d %d", &what, &run, &step, &pid); err != nil {
			return r, fmt.Errorf("chaos: bad effect line %q: %w", sc.Text(), err)
		}
		switch what {
		case "complete":
			if completes[run]++; completes[run] == 2 {
				r.CompletedTwice++
			}
			continue
		case "start":
		default:
			continue
		}
		r.Starts++
		k := key{run, step}
		if recorded[k] {
			r.RerunsAfterRecord++
			r.note("step %d of run %s started again in pid %d after it was recorded", step, run, pid)
		}
		if prev := starts[k]; len(prev) > 0 {
			r.Reruns++
			if last := prev[len(prev)-1]; !killed[last] {
				r.RerunsWithoutKill++
				r.note("step %d of run %s ran again in pid %d although pid %d, which ran it, was not killed", step, run, pid, last)
			}
		}
		starts[k] = append(starts[k], pid)
		for s := 1; s < step; s++ {
			recorded[key{run, s}] = true
		}
	}
	return r, sc.Err()
}

func (r *Report) note(format string, args ...any) {
	if r.First == "" {
		r.First = fmt.Sprintf(format, args...)
	}
}

// Count reads the log at path and returns, per run, how many lines of the
// kind what it holds: a job may log lines of its own kinds (the chaos
// workload's "poison" and "hang"), which Analyze passes over.
func Count(path, what string) (map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("chaos: read effect log: %w", err)
	}
	defer f.Close()
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kind, run string
		if _, err := fmt.Sscanf(sc.Text(), "%s %s", &kind, &run); err != nil {
			return nil, fmt.Errorf("chaos: bad effect line %q: %w", sc.Text(), err)
		}
		if kind == what {
			counts[run]++
		}
	}
	return counts, sc.Err()
}
