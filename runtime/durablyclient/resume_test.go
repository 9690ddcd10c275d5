package durablyclient_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyclient"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/runtime/durablytest"
)

// TestResumeOverHTTP: Client.Resume resumes a failed run through POST
// /resume (H-120) and returns its id; the run goes on from its completed
// step; a refusal comes back as the engine's error kind.
func TestResumeOverHTTP(t *testing.T) {
	ctx := context.Background()
	env := durablytest.New(t, durably.Config{PreserveSteps: true})
	e := env.Engine
	var broken atomic.Bool
	broken.Store(true)
	var firstCalls atomic.Int32
	j := durably.MustRegister(e, &durably.Job[int, int]{Name: "j",
		Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			a, err := durably.RunStep(s, "first", func(ctx context.Context) (int, error) { firstCalls.Add(1); return in, nil })
			if err != nil {
				return 0, err
			}
			return durably.RunStep(s, "second", func(ctx context.Context) (int, error) {
				if broken.Load() {
					return 0, errors.New("broken")
				}
				return a + 1, nil
			})
		}})
	res, err := j.Trigger(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	env.ProcessDue()
	h, err := durablyhttp.New(e, durablyhttp.Options[struct{}, durably.MapLabels]{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c := durablyclient.New[durably.MapLabels](srv.URL)
	broken.Store(false)
	id, err := c.Resume(ctx, res.Run.ID)
	if err != nil || id != res.Run.ID {
		t.Fatalf("resume: %q %v", id, err)
	}
	if _, err := c.Resume(ctx, res.Run.ID); !errors.Is(err, durably.ErrConflict) {
		t.Fatalf("second resume: %v, want a conflict", err)
	}
	env.ProcessDue()
	run, err := c.GetRun(ctx, id)
	if err != nil || run.Status != durably.StatusCompleted || string(run.Output) != "2" || firstCalls.Load() != 1 {
		t.Fatalf("resumed run %+v %v; first step called %d times", run, err, firstCalls.Load())
	}
}
