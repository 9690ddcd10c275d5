package durably_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/durably-go/durably"
)

// A run fans out to children of another job in one step and gathers their
// outputs in another (R-230 … R-233): while the children run, it is handed
// back, holding no slot, and the end of its last child makes it claimable.
// ProcessUntilIdle runs everything in turn; a started worker does the same
// in parallel.
func ExampleTypedJob_StartChildren() {
	e, cleanup := openEngine(durably.Config{})
	defer cleanup()
	square := durably.MustRegister(e, &durably.Job[int, int]{Name: "square",
		Run: func(ctx context.Context, s *durably.StepContext, n int) (int, error) { return n * n, nil }})
	sum := durably.MustRegister(e, &durably.Job[[]int, int]{Name: "sum-of-squares",
		Run: func(ctx context.Context, s *durably.StepContext, ns []int) (int, error) {
			items := make([]durably.BatchItem[int], len(ns))
			for i, n := range ns {
				items[i].Input = n
			}
			kids, err := square.StartChildren(s, "square", items)
			if err != nil {
				return 0, err
			}
			outs, err := durably.AwaitChildren(s, "gather", kids)
			if err != nil {
				return 0, err // ErrSuspended while the children run
			}
			total := 0
			for _, o := range outs {
				if o.Err != nil {
					return 0, o.Err
				}
				total += o.Output
			}
			return total, nil
		}})
	ctx := context.Background()
	res, err := sum.Trigger(ctx, []int{1, 2, 3})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := e.ProcessUntilIdle(ctx, "", 0); err != nil {
		log.Fatal(err)
	}
	run, _ := e.GetRun(ctx, res.Run.ID)
	kids, _ := e.GetChildren(ctx, res.Run.ID)
	fmt.Println(run.Status, string(run.Output), "from", len(kids), "children")
	// Output:
	// completed 14 from 3 children
}

// A run waits for a signal sent from outside, with a typed payload; the
// signal may come before or after the run reaches its wait (R-240 …
// R-243).
func ExampleWaitForSignal() {
	e, cleanup := openEngine(durably.Config{})
	defer cleanup()
	type Approval struct {
		By string `json:"by"`
	}
	approve := durably.Signal[Approval]{Name: "approve"}
	expense := durably.MustRegister(e, &durably.Job[int, string]{Name: "expense", Signals: []durably.SignalDecl{approve},
		Run: func(ctx context.Context, s *durably.StepContext, amount int) (string, error) {
			a, err := durably.WaitForSignal(s, "approval", approve, durably.WithTimeout(72*time.Hour))
			if errors.Is(err, durably.ErrTimeout) {
				return "no answer", nil
			}
			if err != nil {
				return "", err // ErrSuspended while it waits
			}
			return fmt.Sprintf("%d approved by %s", amount, a.By), nil
		}})
	ctx := context.Background()
	res, err := expense.Trigger(ctx, 120)
	if err != nil {
		log.Fatal(err)
	}
	_, _ = e.ProcessUntilIdle(ctx, "", 0)
	run, _ := e.GetRun(ctx, res.Run.ID)
	fmt.Println(run.Status, "waiting for", run.WaitingFor)
	if err := durably.SendSignal(ctx, e, res.Run.ID, approve, Approval{By: "rita"}); err != nil {
		log.Fatal(err)
	}
	_, _ = e.ProcessUntilIdle(ctx, "", 0)
	run, _ = e.GetRun(ctx, res.Run.ID)
	fmt.Println(run.Status, string(run.Output))
	// Output:
	// pending waiting for signal:approve
	// completed "120 approved by rita"
}
