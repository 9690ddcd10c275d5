package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// finish drives a run to a terminal status by hand, completed at the given
// time.
func finish(t *testing.T, e *durably.Engine, id string, status store.Status, at time.Time) {
	t.Helper()
	if err := PatchRun(Ctx(t), e.Store(), id, store.RunPatch{Status: &status, CompletedAt: &at}); err != nil {
		t.Fatal(err)
	}
}

var retentionCases = []Case{
	{"R-103 S-040 delete removes a terminal run and everything of it", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) { c.PreserveSteps = true })
		rec := Record(t, e)
		var calls Counter
		j := durably.MustRegister(e, StepsJob("j", &calls))
		ctx := Ctx(t)
		WantKind(t, e.DeleteRun(ctx, "01NOPE0000000000000000000X"), durably.ErrNotFound, "Run not found: 01NOPE0000000000000000000X")
		r := MustTrigger(t, j, StepsInput{Count: 2}, durably.WithLabels(map[string]string{"org": "o"}))
		WantKind(t, e.DeleteRun(ctx, r.ID), durably.ErrConflict, "Cannot delete pending run: "+r.ID)
		if _, err := e.Store().Claim(ctx, claimReq("w", time.Now(), 1)); err != nil {
			t.Fatal(err)
		}
		WantKind(t, e.DeleteRun(ctx, r.ID), durably.ErrConflict, "Cannot delete leased run: "+r.ID)
		rewind(t, e.Store(), r.ID)
		if _, err := e.ProcessOne(ctx, ""); err != nil {
			t.Fatal(err)
		}
		if steps, _ := e.GetSteps(ctx, r.ID); len(steps) != 2 {
			t.Fatalf("%d steps before delete", len(steps))
		}
		if err := e.DeleteRun(ctx, r.ID); err != nil {
			t.Fatal(err)
		}
		if run, _ := e.GetRun(ctx, r.ID); run != nil {
			t.Fatal("run still there")
		}
		if steps, _ := e.GetSteps(ctx, r.ID); len(steps) != 0 {
			t.Fatal("steps still there")
		}
		if runs, _ := e.ListRuns(ctx, durably.RunFilter{Labels: map[string]string{"org": "o"}}); len(runs) != 0 {
			t.Fatal("label rows still match")
		}
		if evs := rec.Events(durably.EventRunDelete); len(evs) != 1 || evs[0].Labels["org"] != "o" {
			t.Fatalf("run:delete %+v", evs)
		}
	}},
	{"R-104 S-041 purge deletes old terminal runs, oldest first, up to the limit", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		rec := Record(t, e)
		j := durably.MustRegister(e, EchoJob("j"))
		base := time.Now().Add(-48 * time.Hour)
		var ids []string
		statuses := []store.Status{store.StatusCompleted, store.StatusFailed, store.StatusCancelled, store.StatusCompleted}
		for i, st := range statuses {
			r := MustTrigger(t, j, Msg{fmt.Sprint(i)})
			finish(t, e, r.ID, st, base.Add(time.Duration(i)*time.Hour))
			ids = append(ids, r.ID)
		}
		recent := MustTrigger(t, j, Msg{"recent"})
		finish(t, e, recent.ID, store.StatusCompleted, time.Now())
		active := MustTrigger(t, j, Msg{"active"})
		n, err := e.PurgeRuns(Ctx(t), time.Now().Add(-time.Hour), 3)
		if err != nil || n != 3 {
			t.Fatalf("purged %d %v", n, err)
		}
		for i, id := range ids {
			run, _ := e.GetRun(Ctx(t), id)
			if (i < 3) != (run == nil) {
				t.Fatalf("run %d (completed %v) present=%v", i, base.Add(time.Duration(i)*time.Hour), run != nil)
			}
		}
		n, _ = e.PurgeRuns(Ctx(t), time.Now().Add(-time.Hour), 0)
		if n != 1 || MustGet(t, e, recent.ID) == nil || MustGet(t, e, active.ID) == nil {
			t.Fatalf("second purge %d", n)
		}
		if len(rec.Events(durably.EventRunDelete)) != 0 {
			t.Fatal("purge emitted run:delete")
		}
	}},
	{"R-105 retainRuns purges during idle maintenance", func(t *testing.T, h *Harness) {
		e := h.Engine(func(c *durably.Config) { c.RetainRuns = time.Hour })
		j := durably.MustRegister(e, EchoJob("j"))
		old := MustTrigger(t, j, Msg{"old"})
		finish(t, e, old.ID, store.StatusCompleted, time.Now().Add(-2*time.Hour))
		young := MustTrigger(t, j, Msg{"young"})
		finish(t, e, young.ID, store.StatusCompleted, time.Now())
		// ProcessOne does no maintenance …
		if _, err := e.ProcessOne(Ctx(t), ""); err != nil {
			t.Fatal(err)
		}
		if run, _ := e.GetRun(Ctx(t), old.ID); run == nil {
			t.Fatal("ProcessOne purged")
		}
		// … an idle ProcessUntilIdle does.
		if _, err := e.ProcessUntilIdle(Ctx(t), "", 0); err != nil {
			t.Fatal(err)
		}
		if run, _ := e.GetRun(Ctx(t), old.ID); run != nil {
			t.Fatal("old run not purged")
		}
		if run, _ := e.GetRun(Ctx(t), young.ID); run == nil {
			t.Fatal("young run purged")
		}
		if _, err := durably.ParseRetention("30s"); err == nil || err.Error()[:len(`Invalid duration format: "30s"`)] != `Invalid duration format: "30s"` {
			t.Fatalf("ParseRetention(30s) = %v", err)
		}
		for in, want := range map[string]time.Duration{"0d": 0, "2d": 48 * time.Hour, "3h": 3 * time.Hour, "15m": 15 * time.Minute} {
			if got, err := durably.ParseRetention(in); err != nil || got != want {
				t.Fatalf("ParseRetention(%s) = %v %v", in, got, err)
			}
		}
	}},
}
