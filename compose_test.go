package durably_test

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/sqlitestore"
)

// endings is an Observer that records how each run's executions ended.
type endings struct {
	mu  sync.Mutex
	got map[string][]durably.Ending
}

func (o *endings) Attach(*durably.Engine) {}
func (o *endings) StartTrigger(ctx context.Context, _ durably.TriggerInfo) (context.Context, string) {
	return ctx, ""
}
func (o *endings) EndTrigger(context.Context, durably.TriggerInfo, []durably.TriggerResult, error) {}
func (o *endings) StartExecution(ctx context.Context, _ durably.ExecutionInfo) context.Context {
	return ctx
}
func (o *endings) EndExecution(_ context.Context, x durably.ExecutionInfo, end durably.ExecutionEnd) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got[x.Run.JobName] = append(o.got[x.Run.JobName], end.Outcome)
}
func (o *endings) StartStep(ctx context.Context, _ durably.StepInfo) context.Context { return ctx }
func (o *endings) EndStep(context.Context, durably.StepInfo, durably.StepEnd)        {}
func (o *endings) Outage(durably.OutageInfo)                                         {}

func (o *endings) of(job string) []durably.Ending {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.got[job])
}

// TestWaitsAreSuspensionsToTheObserver: an execution handed back to wait
// for its children or for a signal ends as a sleep's does, suspended, and
// the next one completes.
func TestWaitsAreSuspensionsToTheObserver(t *testing.T) {
	st, err := sqlitestore.Open(filepath.Join(t.TempDir(), "obs.db"), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	obs := &endings{got: map[string][]durably.Ending{}}
	e, err := durably.New(durably.Config{Store: st, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	sig := durably.Signal[int]{Name: "go"}
	child := durably.MustRegister(e, &durably.Job[int, int]{Name: "child", Signals: []durably.SignalDecl{sig},
		Run: func(ctx context.Context, s *durably.StepContext, n int) (int, error) {
			return durably.WaitForSignal(s, "wait", sig)
		}})
	parent := durably.MustRegister(e, &durably.Job[int, int]{Name: "parent",
		Run: func(ctx context.Context, s *durably.StepContext, n int) (int, error) {
			kid, err := child.StartChild(s, "spawn", n)
			if err != nil {
				return 0, err
			}
			return durably.AwaitChild(s, "await", kid)
		}})
	res, err := parent.Trigger(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ProcessUntilIdle(ctx, "", 0); err != nil {
		t.Fatal(err)
	}
	kids, err := e.GetChildren(ctx, res.Run.ID)
	if err != nil || len(kids) != 1 {
		t.Fatal(kids, err)
	}
	if err := durably.SendSignal(ctx, e, kids[0].ID, sig, 7); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ProcessUntilIdle(ctx, "", 0); err != nil {
		t.Fatal(err)
	}
	run, err := e.WaitForRun(ctx, res.Run.ID, durably.WithTimeout(10*time.Second))
	if err != nil || string(run.Output) != "7" {
		t.Fatalf("parent %+v %v", run, err)
	}
	want := []durably.Ending{durably.EndSuspended, durably.EndCompleted}
	for _, job := range []string{"parent", "child"} {
		if got := obs.of(job); !slices.Equal(got, want) {
			t.Fatalf("%s's executions ended %v, want %v", job, got, want)
		}
	}
}
