package durably_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/sqlitestore"
)

// orgLabels is a labels type like the generated ones: one known key.
type orgLabels struct{ Org string }

func (l orgLabels) ToMap() map[string]string {
	if l.Org == "" {
		return map[string]string{}
	}
	return map[string]string{"org": l.Org}
}

func (orgLabels) FromMap(m map[string]string) (orgLabels, error) {
	var l orgLabels
	for k, v := range m {
		if k != "org" {
			return orgLabels{}, fmt.Errorf("unknown label %q", k)
		}
		l.Org = v
	}
	return l, nil
}

// TestDecodeRun: the one decoder of typed runs, which the engine's handles,
// generated packages and the client share.
func TestDecodeRun(t *testing.T) {
	cases := []struct {
		name string
		run  *durably.Run
		want *durably.TypedRun[Greeting, Card, orgLabels]
		err  string
	}{
		{name: "nil run", run: nil, want: nil},
		{
			name: "completed",
			run:  &durably.Run{ID: "r1", Input: json.RawMessage(`{"name":"a"}`), Output: json.RawMessage(`{"text":"hi a"}`), Labels: map[string]string{"org": "acme"}},
			want: &durably.TypedRun[Greeting, Card, orgLabels]{Input: Greeting{Name: "a"}, Output: Card{Text: "hi a"}, Labels: orgLabels{Org: "acme"}},
		},
		{
			name: "null input and output are zero",
			run:  &durably.Run{ID: "r2", Input: json.RawMessage(`null`), Output: json.RawMessage(`null`)},
			want: &durably.TypedRun[Greeting, Card, orgLabels]{},
		},
		{name: "bad input", run: &durably.Run{ID: "r3", Input: json.RawMessage(`{"name":1}`)}, err: "durably: decode input of run r3"},
		{name: "bad output", run: &durably.Run{ID: "r4", Output: json.RawMessage(`[1]`)}, err: "durably: decode output of run r4"},
		{name: "undeclared label", run: &durably.Run{ID: "r5", Labels: map[string]string{"team": "x"}}, err: `durably: labels of run r5: unknown label "team"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := durably.DecodeRun[Greeting, Card, orgLabels](c.run)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.want == nil {
				if got != nil {
					t.Fatalf("got %+v for a nil run", got)
				}
				return
			}
			if got.Run != c.run || got.Input != c.want.Input || got.Output != c.want.Output || got.Labels != c.want.Labels {
				t.Fatalf("got %+v (run %p), want %+v (run %p)", got, got.Run, c.want, c.run)
			}
		})
	}
}

// TestRegisterTyped: a handle typed by its labels reads its runs' labels
// into them, and registering the same job through both kinds of handle
// is one job.
func TestRegisterTyped(t *testing.T) {
	st, err := sqlitestore.Open(filepath.Join(t.TempDir(), "t.db"), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e, err := durably.New(durably.Config{Store: st, PollingInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Init(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Stop(ctx)
	job := &durably.Job[Greeting, Card]{Name: "greet", Run: func(ctx context.Context, s *durably.StepContext, in Greeting) (Card, error) {
		return Card{Text: "hi " + in.Name}, nil
	}}
	typed, err := durably.RegisterTyped[Greeting, Card, orgLabels](e, job)
	if err != nil {
		t.Fatal(err)
	}
	again, err := durably.RegisterTyped[Greeting, Card, orgLabels](e, job)
	if err != nil || again != typed {
		t.Fatalf("registering again: %p, %v; want the same handle %p", again, err, typed)
	}
	untyped, err := durably.Register(e, job)
	if err != nil {
		t.Fatalf("the same job with map labels: %v", err)
	}
	other := &durably.Job[Greeting, Card]{Name: "greet", Run: job.Run}
	if _, err := durably.RegisterTyped[Greeting, Card, orgLabels](e, other); err == nil {
		t.Fatal("another job under the same name was registered")
	}
	out, err := typed.TriggerAndWait(ctx, Greeting{Name: "a"}, durably.WithLabels(map[string]string{"org": "acme"}), durably.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	run, err := typed.GetRun(ctx, out.RunID)
	if err != nil {
		t.Fatal(err)
	}
	if run.Labels != (orgLabels{Org: "acme"}) || run.Output != (Card{Text: "hi a"}) || run.Input.Name != "a" {
		t.Fatalf("typed run %+v", run)
	}
	runs, err := typed.ListRuns(ctx, durably.RunFilter{Labels: orgLabels{Org: "acme"}.ToMap()})
	if err != nil || len(runs) != 1 || runs[0].ID != out.RunID {
		t.Fatalf("ListRuns: %v, %v", runs, err)
	}
	m, err := untyped.GetRun(ctx, out.RunID)
	if err != nil || m.Labels["org"] != "acme" {
		t.Fatalf("map-labelled run %+v, %v", m, err)
	}
	if _, err := untyped.Trigger(ctx, Greeting{Name: "b"}, durably.WithLabels(map[string]string{"team": "x"})); err != nil {
		t.Fatal(err)
	}
	if _, err := typed.ListRuns(ctx, durably.RunFilter{}); err == nil || !strings.Contains(err.Error(), `unknown label "team"`) {
		t.Fatalf("a run with an undeclared label decoded: %v", err)
	}
}

// TestCheckLabelKeys: the HTTP handler's filters are refused for the keys
// a trigger would be.
func TestCheckLabelKeys(t *testing.T) {
	for _, c := range []struct {
		labels map[string]string
		bad    bool
	}{
		{map[string]string{"org": "a", "a.b/c-d_e": "x"}, false},
		{map[string]string{"ok": "a", "b ad": "x"}, true},
		{nil, false},
	} {
		err := durably.CheckLabelKeys(c.labels)
		if (err != nil) != c.bad || (c.bad && !errors.Is(err, durably.ErrValidation)) {
			t.Errorf("%v: %v", c.labels, err)
		}
	}
}
