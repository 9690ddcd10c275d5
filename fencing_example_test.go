package durably_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sync"

	"github.com/durably-go/durably"
)

// ledger stands for a system outside the database that a step changes,
// say a payment provider. It keeps the highest lease generation it has
// accepted per run and refuses older ones: the fencing-token pattern.
type ledger struct {
	mu      sync.Mutex
	highest map[string]int64 // run ID → highest generation accepted
	entries map[string]string
}

var errStaleFence = errors.New("ledger: stale fence, a newer execution of this run exists")

// Pay records a payment once per key, fenced by f.
func (l *ledger) Pay(f durably.Fence, key, what string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f.Generation < l.highest[f.RunID] {
		return errStaleFence
	}
	l.highest[f.RunID] = f.Generation
	if _, done := l.entries[key]; !done { // the same execution may repeat a step
		l.entries[key] = what
	}
	return nil
}

// A step that changes something outside the database passes its Fence
// along, so that a worker that lost its lease (and does not know it yet)
// cannot complete the side effect after another worker took the run over.
func ExampleStepContext_Fence() {
	e, cleanup := openEngine(durably.Config{})
	defer cleanup()
	l := &ledger{highest: map[string]int64{}, entries: map[string]string{}}
	pay := durably.MustRegister(e, &durably.Job[Greeting, Card]{
		Name: "pay",
		Run: func(ctx context.Context, s *durably.StepContext, in Greeting) (Card, error) {
			return durably.RunStep(s, "charge", func(ctx context.Context) (Card, error) {
				key := s.RunID() + "/charge"
				if err := l.Pay(s.Fence(), key, "5 EUR from "+in.Name); err != nil {
					return Card{}, err
				}
				return Card{Text: "charged " + in.Name}, nil
			})
		},
	})
	if err := e.Start(); err != nil {
		log.Fatal(err)
	}
	out, err := pay.TriggerAndWait(context.Background(), Greeting{Name: "ada"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out.Output.Text, l.entries[out.RunID+"/charge"])

	// A worker that held an older lease of the run comes back late.
	stale := durably.Fence{RunID: out.RunID, Generation: l.highest[out.RunID] - 1}
	fmt.Println(l.Pay(stale, out.RunID+"/charge", "5 EUR again"))
	// Output:
	// charged ada 5 EUR from ada
	// ledger: stale fence, a newer execution of this run exists
}
