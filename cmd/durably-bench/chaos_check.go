package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/chaos"
)

// chaosTally is what the runs' records say at the end.
type chaosTally struct {
	dead                      map[int]bool
	poisonExec, hangExec      map[string]int // executions of the poison and hang steps, per run
	lost, keyedFailed         int            // runs that must complete and did not
	unfinished                int
	poison, poisonWrong       int
	hangWrong                 int
	hangCompleted, hangFailed int
	timedOut                  int // hang steps' attempts ended by StepTimeout
	maxCrashes                int // of the runs that must complete
	first                     string
}

func (t *chaosTally) note(format string, args ...any) {
	if t.first == "" {
		t.first = fmt.Sprintf(format, args...)
	}
}

// verdict checks every run the workload acknowledged, the effect log and
// the idempotency keys, sets the metrics, and fails on a broken guarantee.
func (w *chaosWorkload) verdict(ctx context.Context, fleet *chaosFleet, resumes map[string]time.Duration, r *result) error {
	dead, kills, poisonExits := fleet.deaths()
	effects := filepath.Join(w.dir, "effects.log")
	rep, err := chaos.Analyze(effects, dead)
	if err != nil {
		return err
	}
	t := &chaosTally{dead: dead}
	if t.poisonExec, err = chaos.Count(effects, "poison"); err != nil {
		return err
	}
	if t.hangExec, err = chaos.Count(effects, "hang"); err != nil {
		return err
	}
	for key := range w.idemIDs { // every key once more, every run ended
		w.retrigger(ctx, key)
	}
	for id, kind := range w.runs {
		run, err := w.e.GetRun(ctx, id)
		if err != nil {
			return err
		}
		t.check(id, run, kind)
	}
	keyedMin := w.mix.keyed + len(w.idemIDs)
	w.report(r, t, rep, resumes, kills, poisonExits)
	orders, err := checkOrders(ctx, w.e, w.rolledBack)
	if err != nil {
		return err
	}
	set := func(name string, v float64) { r.Metrics[name], r.Units[name] = v, "" }
	set("orders", float64(orders.orders))
	set("orders_rolled_back", float64(len(w.rolledBack)))
	set("orders_lost", float64(orders.lost))
	set("order_runs_orphaned", float64(orders.orphans))
	set("rolled_back_runs_present", float64(orders.rolledBackPresent))
	var broken []string
	for _, b := range []struct {
		bad  bool
		what string
	}{
		{t.lost > 0 || t.unfinished > 0, "runs lost or unfinished: " + t.first},
		{t.poisonWrong > 0 || t.hangWrong > 0, "poison or hanging runs ended wrong: " + t.first},
		{w.idem.wrong > 0, "an idempotency key made a second run: " + w.idem.first},
		{w.keyed.created+len(w.idemIDs) < keyedMin, "too few keyed runs acknowledged"},
		{rep.RerunsAfterRecord > 0 || rep.RerunsWithoutKill > 0 || rep.CompletedTwice > 0, "effect log: " + rep.First},
		{orders.err() != nil, fmt.Sprint(orders.err())},
	} {
		if b.bad {
			broken = append(broken, b.what)
		}
	}
	if len(broken) > 0 {
		return fmt.Errorf("guarantee broken: %s; %s", strings.Join(broken, "; "), formatMetrics(r.Metrics, r.Units))
	}
	return nil
}

// report sets the workload's metrics.
func (w *chaosWorkload) report(r *result, t *chaosTally, rep chaos.Report, resumes map[string]time.Duration, kills, poisonExits int) {
	set := func(name string, v float64, unit string) { r.Metrics[name], r.Units[name] = v, unit }
	set("kills", float64(kills), "")
	set("poison_exits", float64(poisonExits), "")
	set("runs", float64(len(w.runs)), "")
	set("keyed_runs", float64(w.keyed.created+len(w.idemIDs)), "")
	set("keyed_runs_min", float64(w.mix.keyed+len(w.idemIDs)), "")
	set("keyed_triggers_coalesced", float64(w.keyed.coalesced), "")
	set("idempotent_retriggers", float64(w.idem.retriggers), "")
	set("idempotent_retriggers_wrong", float64(w.idem.wrong), "")
	set("runs_lost", float64(t.lost), "")
	set("keyed_runs_failed", float64(t.keyedFailed), "")
	set("runs_unfinished", float64(t.unfinished), "")
	set("poison_runs", float64(t.poison), "")
	set("poison_runs_wrong", float64(t.poisonWrong), "")
	set("hang_runs_completed", float64(t.hangCompleted), "")
	set("hang_runs_failed", float64(t.hangFailed), "")
	set("hang_runs_wrong", float64(t.hangWrong), "")
	set("hang_steps_timed_out", float64(t.timedOut), "")
	set("crash_budget", float64(chaosCrashBudget(w.c.kills, w.mix.poison)), "")
	set("max_crashes_of_other_runs", float64(t.maxCrashes), "")
	set("steps_rerun_after_record", float64(rep.RerunsAfterRecord), "")
	set("steps_rerun_before_record", float64(rep.Reruns-rep.RerunsAfterRecord), "")
	set("steps_rerun_without_kill", float64(rep.RerunsWithoutKill), "")
	set("runs_completed_twice", float64(rep.CompletedTwice), "")
	set("outage_s", chaosOutage.Seconds(), "s")
	for name, d := range resumes {
		set("resume_after_"+name+"_s", d.Seconds(), "s")
	}
}

// check holds run against what its kind promises.
func (t *chaosTally) check(id string, run *durably.Run, kind chaosKind) {
	switch {
	case run == nil:
		t.lost++
		t.note("acknowledged run %s is gone", id)
		return
	case !run.Status.Terminal():
		t.unfinished++
		t.note("run %s still %s", id, run.Status)
		return
	}
	switch kind {
	case kindPoison:
		t.poison++
		if why := t.poisonFault(run); why != "" {
			t.poisonWrong++
			t.note("poison run %s: %s", id, why)
		}
	case kindHang, kindLateHang:
		if why := t.hangFault(run, kind); why != "" {
			t.hangWrong++
			t.note("hanging run %s: %s", id, why)
		}
	default:
		t.maxCrashes = max(t.maxCrashes, run.Crashes)
		if run.Status != durably.StatusCompleted {
			t.lost++
			if kind == kindKeyed || kind == kindIdem {
				t.keyedFailed++
			}
			t.note("run %s (kind %d) %s: %s", id, kind, run.Status, run.Error)
		}
	}
}

// poisonFault says how a poison run's end differs from failing after
// exactly chaosPoisonLimit crashes, each in a worker that died, its poison
// step run at most that often; "" if it does not.
func (t *chaosTally) poisonFault(run *durably.Run) string {
	crashed := 0
	for _, a := range run.Attempts {
		if a.Outcome != durably.AttemptCrashed {
			return fmt.Sprintf("attempt %d %s, only crashes expected", a.Number, a.Outcome)
		}
		crashed++
		pid, err := strconv.Atoi(strings.TrimPrefix(a.Worker, "chaos-"))
		if err != nil || !t.dead[pid] {
			return fmt.Sprintf("attempt %d crashed in %q, a worker that did not die", a.Number, a.Worker)
		}
	}
	want := fmt.Sprintf("Run crashed or was abandoned %d times", chaosPoisonLimit)
	switch {
	case run.Status != durably.StatusFailed || !strings.HasPrefix(run.Error, want):
		return fmt.Sprintf("%s with %q, want failed with %q", run.Status, run.Error, want)
	case run.Crashes != chaosPoisonLimit || crashed != chaosPoisonLimit:
		return fmt.Sprintf("%d crashes, %d in its history, want %d", run.Crashes, crashed, chaosPoisonLimit)
	case t.poisonExec[run.ID] > chaosPoisonLimit:
		return fmt.Sprintf("its poison step ran %d times, its job allows %d", t.poisonExec[run.ID], chaosPoisonLimit)
	}
	return ""
}

// hangFault says how a hanging run's end differs from its policy: failed
// once chaosHangAttempts attempts of its hang step timed out, completed
// otherwise; "" if it does not. A late one, which no worker's death
// interrupts, must have timed out exactly as often as its input asks.
func (t *chaosTally) hangFault(run *durably.Run, kind chaosKind) string {
	var in chaosInput
	if err := json.Unmarshal(run.Input, &in); err != nil {
		return "input: " + err.Error()
	}
	timedOut := 0
	for _, a := range run.Attempts {
		if a.Outcome == durably.AttemptTimedOut && a.Step == "hang" {
			timedOut++
		}
	}
	t.timedOut += timedOut
	hung := t.hangExec[run.ID]
	switch {
	case hung > in.Hangs || timedOut > hung || (kind == kindLateHang && timedOut != in.Hangs):
		return fmt.Sprintf("%d hangs, %d attempts timed out, its input asks %d hangs", hung, timedOut, in.Hangs)
	case run.Status == durably.StatusFailed && timedOut == chaosHangAttempts && strings.Contains(run.Error, "timed out"):
		t.hangFailed++
	case run.Status == durably.StatusCompleted && timedOut < chaosHangAttempts:
		t.hangCompleted++
	default:
		return fmt.Sprintf("%s (%q) after %d timed-out attempts of %d allowed", run.Status, run.Error, timedOut, chaosHangAttempts)
	}
	return ""
}
