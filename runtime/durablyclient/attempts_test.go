package durablyclient_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyclient"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/runtime/durablytest"
	"github.com/durably-go/durably/store"
)

// TestCrashesAndAttemptsOverHTTP: a run's crash count and attempt history
// travel as the additive members crashes and attempts and read
// back into the engine's record.
func TestCrashesAndAttemptsOverHTTP(t *testing.T) {
	ctx := context.Background()
	env := durablytest.New(t, durably.Config{LeaseDuration: 10 * time.Second})
	e := env.Engine
	j := durably.MustRegister(e, &durably.Job[int, int]{Name: "j",
		Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) { return in, nil }})
	res, err := j.Trigger(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	// A worker that claims the run and dies.
	if runs, err := e.Store().Claim(ctx, store.ClaimRequest{WorkerID: "ghost", Now: env.Clock.Now(), Lease: 10 * time.Second, Limit: 1}); err != nil || len(runs) != 1 {
		t.Fatalf("claim: %v %v", runs, err)
	}
	env.Clock.Advance(11 * time.Second)
	env.ProcessDue()

	h, err := durablyhttp.New(e, durablyhttp.Options[struct{}, durably.MapLabels]{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	run, err := durablyclient.New[durably.MapLabels](srv.URL).GetRun(ctx, res.Run.ID)
	if err != nil || run == nil {
		t.Fatalf("get run: %v %v", run, err)
	}
	if run.Status != durably.StatusCompleted || run.Crashes != 1 || len(run.Attempts) != 1 {
		t.Fatalf("run %s with %d crashes and attempts %+v, want completed after 1 crash", run.Status, run.Crashes, run.Attempts)
	}
	a := run.Attempts[0]
	if a.Number != 1 || a.Outcome != durably.AttemptCrashed || a.Worker != "ghost" || !strings.Contains(a.Error, "ghost") || a.At.IsZero() {
		t.Fatalf("attempt %+v", a)
	}
}
