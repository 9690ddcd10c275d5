package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

var queryCases = []Case{
	{"R-135 S-045 D5 list runs by status, job and labels", func(t *testing.T, h *Harness) {
		e := h.Engine(nil)
		a := durably.MustRegister(e, EchoJob("a"))
		b := durably.MustRegister(e, EchoJob("b"))
		ctx := Ctx(t)
		var all []string
		for i := range 6 {
			j := a
			if i%2 == 1 {
				j = b
			}
			labels := map[string]string{"org": fmt.Sprint("o", i%3), "env": []string{"prod", "dev"}[i%2]}
			r := MustTrigger(t, j, Msg{fmt.Sprint(i)}, durably.WithLabels(labels))
			if err := PatchRun(ctx, e.Store(), r.ID, store.RunPatch{CreatedAt: ptr(time.Now().Add(time.Duration(i) * time.Second))}); err != nil {
				t.Fatal(err)
			}
			all = append(all, r.ID)
		}
		finish(t, e, all[0], store.StatusCompleted, time.Now())
		ids := func(f durably.RunFilter) []string {
			runs, err := e.ListRuns(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, r := range runs {
				out = append(out, r.ID)
			}
			return out
		}
		rev := func(idx ...int) []string {
			var out []string
			for _, i := range idx {
				out = append(out, all[i])
			}
			return out
		}
		cases := []struct {
			name string
			f    durably.RunFilter
			want []string
		}{
			{"all newest first", durably.RunFilter{}, rev(5, 4, 3, 2, 1, 0)},
			{"status", durably.RunFilter{Statuses: []durably.Status{durably.StatusCompleted}}, rev(0)},
			{"statuses", durably.RunFilter{Statuses: []durably.Status{durably.StatusCompleted, durably.StatusPending}}, rev(5, 4, 3, 2, 1, 0)},
			{"job", durably.RunFilter{JobNames: []string{"b"}}, rev(5, 3, 1)},
			{"one label", durably.RunFilter{Labels: map[string]string{"org": "o0"}}, rev(3, 0)},
			{"two labels", durably.RunFilter{Labels: map[string]string{"org": "o1", "env": "dev"}}, rev(1)},
			{"labels and job", durably.RunFilter{JobNames: []string{"a"}, Labels: map[string]string{"env": "prod"}}, rev(4, 2, 0)},
			{"labels and status", durably.RunFilter{Statuses: []durably.Status{durably.StatusPending}, Labels: map[string]string{"env": "prod"}}, rev(4, 2)},
			{"no match", durably.RunFilter{Labels: map[string]string{"org": "zz"}}, nil},
			{"limit", durably.RunFilter{Limit: 2}, rev(5, 4)},
			{"limit offset", durably.RunFilter{Limit: 2, Offset: 2}, rev(3, 2)},
			{"offset without limit (D5)", durably.RunFilter{Offset: 4}, rev(1, 0)},
			{"label offset without limit", durably.RunFilter{Offset: 1, Labels: map[string]string{"env": "prod"}}, rev(2, 0)},
		}
		for _, c := range cases {
			if got := ids(c.f); !slices.Equal(got, c.want) {
				t.Errorf("%s: got %v want %v", c.name, got, c.want)
			}
		}
		_, err := e.ListRuns(ctx, durably.RunFilter{Labels: map[string]string{"bad key": "x"}})
		WantPrefix(t, err, durably.ErrValidation, `Invalid label key "bad key"`)
		_, err = e.ListRuns(ctx, durably.RunFilter{Statuses: []durably.Status{"running"}})
		WantKind(t, err, durably.ErrValidation, "Invalid status: running. Must be one of: pending, leased, completed, failed, cancelled")
		// A job handle only sees its own runs.
		if runs, err := b.ListRuns(ctx, durably.RunFilter{JobNames: []string{"a"}}); err != nil || len(runs) != 3 {
			t.Fatalf("handle list: %d %v", len(runs), err)
		}
		if r, err := b.GetRun(ctx, all[0]); r != nil || err != nil {
			t.Fatalf("handle of b returned a run of a: %v %v", r, err)
		}
	}},
}
