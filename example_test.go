package durably_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/sqlitestore"
)

// Greeting and Card are a job's input and output: any JSON-encodable types.
type Greeting struct {
	Name string `json:"name"`
}

type Card struct {
	Text string `json:"text"`
}

// makeCard is a job of two steps. Each step's result is recorded when the
// step completes; a run that is resumed after a crash replays completed
// steps from the record instead of executing them again.
var makeCard = &durably.Job[Greeting, Card]{
	Name: "make-card",
	Run: func(ctx context.Context, s *durably.StepContext, in Greeting) (Card, error) {
		upper, err := durably.RunStep(s, "shout", func(ctx context.Context) (string, error) {
			return strings.ToUpper(in.Name), nil
		})
		if err != nil {
			return Card{}, err
		}
		return durably.RunStep(s, "write", func(ctx context.Context) (Card, error) {
			return Card{Text: "Hello, " + upper + "!"}, nil
		})
	},
}

// openEngine opens an engine with cfg on a SQLite file in a fresh
// directory, as an application would on its own path.
func openEngine(cfg durably.Config) (e *durably.Engine, cleanup func()) {
	dir, err := os.MkdirTemp("", "durably-example-")
	if err != nil {
		log.Fatal(err)
	}
	st, err := sqlitestore.Open(filepath.Join(dir, "app.db"), sqlitestore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	cfg.Store = st
	e, err = durably.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	if err := e.Migrate(context.Background()); err != nil {
		log.Fatal(err)
	}
	return e, func() {
		_ = e.Stop(context.Background())
		_ = st.Close()
		_ = os.RemoveAll(dir)
	}
}

// The whole life of a run: register a job, start the worker, trigger the
// job and wait for its output.
func Example() {
	// Steps are deleted when a run finishes, unless preserved.
	e, cleanup := openEngine(durably.Config{PreserveSteps: true})
	defer cleanup()
	cards := durably.MustRegister(e, makeCard)
	if err := e.Start(); err != nil {
		log.Fatal(err)
	}
	out, err := cards.TriggerAndWait(context.Background(), Greeting{Name: "ada"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out.Output.Text)

	steps, err := e.GetSteps(context.Background(), out.RunID)
	if err != nil {
		log.Fatal(err)
	}
	for _, st := range steps {
		fmt.Println(st.Index, st.Name, st.Status)
	}
	// Output:
	// Hello, ADA!
	// 0 shout completed
	// 1 write completed
}

// An idempotency key makes a trigger safe to repeat: the second call finds
// the first run instead of creating another (R-033).
func ExampleWithIdempotencyKey() {
	e, cleanup := openEngine(durably.Config{})
	defer cleanup()
	cards := durably.MustRegister(e, makeCard)
	ctx := context.Background()
	first, err := cards.Trigger(ctx, Greeting{Name: "ada"}, durably.WithIdempotencyKey("order-17"))
	if err != nil {
		log.Fatal(err)
	}
	again, err := cards.Trigger(ctx, Greeting{Name: "ada"}, durably.WithIdempotencyKey("order-17"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(first.Disposition, again.Disposition, first.Run.ID == again.Run.ID)
	// Output: created idempotent true
}

// A concurrency key with coalescing keeps at most one pending run per key:
// a burst of triggers for one document becomes one run (R-038).
func ExampleWithCoalesceSkip() {
	e, cleanup := openEngine(durably.Config{})
	defer cleanup()
	cards := durably.MustRegister(e, makeCard)
	ctx := context.Background()
	for _, name := range []string{"ada", "grace", "edsger"} {
		res, err := cards.Trigger(ctx, Greeting{Name: name},
			durably.WithConcurrencyKey("doc-1"), durably.WithCoalesceSkip())
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(name, res.Disposition)
	}
	// Output:
	// ada created
	// grace coalesced
	// edsger coalesced
}

// Labels tag a run for good (multi-tenancy); lists filter on them.
func ExampleWithLabels() {
	e, cleanup := openEngine(durably.Config{})
	defer cleanup()
	cards := durably.MustRegister(e, makeCard)
	ctx := context.Background()
	for i, org := range []string{"acme", "globex", "acme"} {
		_, err := cards.Trigger(ctx, Greeting{Name: fmt.Sprint("user", i)},
			durably.WithLabels(map[string]string{"organizationId": org}))
		if err != nil {
			log.Fatal(err)
		}
	}
	runs, err := cards.ListRuns(ctx, durably.RunFilter{Labels: map[string]string{"organizationId": "acme"}})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range runs { // newest first
		fmt.Println(r.Input.Name, r.Labels["organizationId"])
	}
	// Output:
	// user2 acme
	// user0 acme
}

// Without a long-running worker (a serverless function, a cron job),
// ProcessUntilIdle executes what is pending and returns.
func ExampleEngine_ProcessUntilIdle() {
	e, cleanup := openEngine(durably.Config{})
	defer cleanup()
	cards := durably.MustRegister(e, makeCard)
	ctx := context.Background()
	for _, name := range []string{"ada", "grace"} {
		if _, err := cards.Trigger(ctx, Greeting{Name: name}); err != nil {
			log.Fatal(err)
		}
	}
	n, err := e.ProcessUntilIdle(ctx, "", 0)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("processed", n)
	// Output: processed 2
}

// SubscribeRun streams one run's events: what already happened first, then
// live events, closing after the run's last event.
func ExampleEngine_SubscribeRun() {
	e, cleanup := openEngine(durably.Config{})
	defer cleanup()
	cards := durably.MustRegister(e, makeCard)
	ctx := context.Background()
	res, err := cards.Trigger(ctx, Greeting{Name: "ada"})
	if err != nil {
		log.Fatal(err)
	}
	events, err := e.SubscribeRun(ctx, res.Run.ID)
	if err != nil {
		log.Fatal(err)
	}
	if err := e.Start(); err != nil {
		log.Fatal(err)
	}
	for ev := range events {
		if ev.StepName != "" {
			fmt.Println(ev.Type, ev.StepName)
		} else {
			fmt.Println(ev.Type)
		}
	}
	// Output:
	// run:leased
	// step:start shout
	// step:complete shout
	// step:start write
	// step:complete write
	// run:complete
}
