package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/durably-go/durably"
)

// crashes makes a history of n crashes in the workers of pids.
func crashes(pids ...int) []durably.Attempt {
	var as []durably.Attempt
	for i, pid := range pids {
		as = append(as, durably.Attempt{Number: i + 1, Outcome: durably.AttemptCrashed, Worker: chaosWorkerID(pid), Error: "lease expired"})
	}
	return as
}

func timeouts(n int) []durably.Attempt {
	var as []durably.Attempt
	for i := range n {
		as = append(as, durably.Attempt{Number: i + 1, Outcome: durably.AttemptTimedOut, Step: "hang", Error: `Step "hang" timed out after 200ms`})
	}
	return as
}

var crashedOut = fmt.Sprintf("Run crashed or was abandoned %d times (its job allows %d): lease expired", chaosPoisonLimit, chaosPoisonLimit)

func TestChaosPoisonRuns(t *testing.T) {
	tests := []struct {
		name  string
		run   durably.Run
		execs int
		want  string // in the fault; "" for none
	}{
		{"failed after exactly its limit", durably.Run{Status: durably.StatusFailed, Error: crashedOut, Crashes: 3, Attempts: crashes(1, 2, 3)}, 3, ""},
		{"one crash by a kill before the step ran", durably.Run{Status: durably.StatusFailed, Error: crashedOut, Crashes: 3, Attempts: crashes(1, 2, 3)}, 2, ""},
		{"completed", durably.Run{Status: durably.StatusCompleted, Crashes: 3, Attempts: crashes(1, 2, 3)}, 3, "want failed"},
		{"failed too early", durably.Run{Status: durably.StatusFailed, Error: "Run crashed or was abandoned 2 times", Crashes: 2, Attempts: crashes(1, 2)}, 2, "want failed"},
		{"crash counted in a live worker", durably.Run{Status: durably.StatusFailed, Error: crashedOut, Crashes: 3, Attempts: crashes(1, 2, 99)}, 3, "did not die"},
		{"history short of its crashes", durably.Run{Status: durably.StatusFailed, Error: crashedOut, Crashes: 3, Attempts: crashes(1, 2)}, 3, "2 in its history"},
		{"a failure that is no crash", durably.Run{Status: durably.StatusFailed, Error: crashedOut, Crashes: 3, Attempts: append(crashes(1, 2, 3), timeouts(1)...)}, 3, "only crashes"},
		{"executed past its limit", durably.Run{Status: durably.StatusFailed, Error: crashedOut, Crashes: 3, Attempts: crashes(1, 2, 3)}, 4, "ran 4 times"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run.ID = "r"
			tally := &chaosTally{dead: map[int]bool{1: true, 2: true, 3: true}, poisonExec: map[string]int{"r": tt.execs}}
			tally.check("r", &tt.run, kindPoison)
			if got := tally.first; tt.want == "" && (got != "" || tally.poisonWrong != 0) || tt.want != "" && !strings.Contains(got, tt.want) {
				t.Fatalf("fault %q (%d wrong), want %q", got, tally.poisonWrong, tt.want)
			}
		})
	}
}

func TestChaosHangingRuns(t *testing.T) {
	timedOut := `Step "hang" timed out after 200ms`
	tests := []struct {
		name  string
		kind  chaosKind
		hangs int // the input's
		hung  int // executions that hung
		run   durably.Run
		want  string
	}{
		{"hung once, then completed", kindLateHang, 1, 1, durably.Run{Status: durably.StatusCompleted, Attempts: timeouts(1)}, ""},
		{"hung on every attempt, then failed", kindLateHang, 2, 2, durably.Run{Status: durably.StatusFailed, Error: timedOut, Attempts: timeouts(2)}, ""},
		{"a hang cut short by a crash", kindHang, 2, 2, durably.Run{Status: durably.StatusCompleted, Crashes: 1, Attempts: append(crashes(1), timeouts(1)...)}, ""},
		{"a late one whose hang did not time out", kindLateHang, 1, 1, durably.Run{Status: durably.StatusCompleted}, "0 attempts timed out"},
		{"failed with attempts left", kindLateHang, 1, 1, durably.Run{Status: durably.StatusFailed, Error: timedOut, Attempts: timeouts(1)}, "after 1 timed-out attempts"},
		{"completed past its attempts", kindLateHang, 2, 2, durably.Run{Status: durably.StatusCompleted, Attempts: timeouts(2)}, "after 2 timed-out attempts"},
		{"hung more often than asked", kindHang, 1, 2, durably.Run{Status: durably.StatusCompleted, Attempts: timeouts(1)}, "2 hangs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run.ID = "r"
			tt.run.Input = []byte(fmt.Sprintf(`{"i":1,"hangs":%d}`, tt.hangs))
			tally := &chaosTally{dead: map[int]bool{1: true}, hangExec: map[string]int{"r": tt.hung}}
			tally.check("r", &tt.run, tt.kind)
			if got := tally.first; tt.want == "" && (got != "" || tally.hangWrong != 0) || tt.want != "" && !strings.Contains(got, tt.want) {
				t.Fatalf("fault %q (%d wrong), want %q", got, tally.hangWrong, tt.want)
			}
		})
	}
}

func TestChaosRunsThatMustComplete(t *testing.T) {
	for _, tt := range []struct {
		name                          string
		run                           *durably.Run
		kind                          chaosKind
		lost, keyedFailed, unfinished int
	}{
		{"completed", &durably.Run{Status: durably.StatusCompleted, Crashes: 4}, kindKeyed, 0, 0, 0},
		{"gone", nil, kindPlain, 1, 0, 0},
		{"still pending", &durably.Run{Status: durably.StatusPending}, kindPlain, 0, 0, 1},
		{"failed", &durably.Run{Status: durably.StatusFailed, Error: "Run crashed or was abandoned 17 times"}, kindPlain, 1, 0, 0},
		{"keyed, failed", &durably.Run{Status: durably.StatusFailed, Error: "Lease expired; pending run already exists"}, kindKeyed, 1, 1, 0},
		{"idempotency-keyed, cancelled", &durably.Run{Status: durably.StatusCancelled}, kindIdem, 1, 1, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tally := &chaosTally{}
			tally.check("r", tt.run, tt.kind)
			if tally.lost != tt.lost || tally.keyedFailed != tt.keyedFailed || tally.unfinished != tt.unfinished {
				t.Fatalf("lost %d, keyed failed %d, unfinished %d; want %d, %d, %d (%s)",
					tally.lost, tally.keyedFailed, tally.unfinished, tt.lost, tt.keyedFailed, tt.unfinished, tally.first)
			}
			if tt.run != nil && tt.run.Status == durably.StatusCompleted && tally.maxCrashes != tt.run.Crashes {
				t.Errorf("max crashes %d, want %d", tally.maxCrashes, tt.run.Crashes)
			}
		})
	}
}
