package durablytest_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/runtime/durablytest"
	"github.com/durably-go/durably/runtime/pgstore"
)

// TestHelpersOnPostgreSQL: the helpers that take a job handle, and the
// Clock as Config.Now, work on an engine the test builds on PostgreSQL.
func TestHelpersOnPostgreSQL(t *testing.T) {
	st, err := pgstore.Open(t.Context(), pgtest.Schema(t), pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clock := durablytest.NewClock(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))
	eng, err := durably.New(durably.Config{Store: st, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = eng.Stop(context.Background())
		st.Close()
	})
	if err := eng.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	orders, mails := jobs(t, eng)

	out, err := durablytest.TriggerAndRun(t, orders, Order{ID: "a", Items: 2})
	if err != nil || out.Output.Total != 20 {
		t.Fatalf("TriggerAndRun = %+v, %v", out, err)
	}
	run := durablytest.RequireTriggered(t, mails, Mail{To: "a@example.com"}, durablytest.Labels(map[string]string{"order": "a"}),
		durablytest.Status(durably.StatusCompleted))
	if !run.CreatedAt.Equal(clock.Now()) {
		t.Fatalf("run created at %s, want the fake clock's %s", run.CreatedAt, clock.Now())
	}
	durablytest.RequireNotTriggered(t, mails, Mail{To: "b@example.com"})
	if _, err := durablytest.TriggerAndRun(t, orders, Order{ID: "b"}); !errors.Is(err, durably.ErrRunFailed) {
		t.Fatalf("err = %v, want the failed run's", err)
	}
	msg := fatal(t, func(tb testing.TB) { durablytest.RequireTriggered(tb, mails, Mail{To: "b@example.com"}) })
	if !strings.Contains(msg, `completed input {"to":"a@example.com"} labels {order=a} (differs in input)`) {
		t.Fatalf("failure message:\n%s", msg)
	}
}
