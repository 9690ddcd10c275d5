package main

import (
	"context"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/examples/orders/orderjobs"
	"github.com/durably-go/durably/runtime/sqlitestore"
)

// processGenerated is processOrder's body over the generated types.
func processGenerated(ctx context.Context, s *durably.StepContext, o orderjobs.ProcessOrderInput) (orderjobs.ProcessOrderOutput, error) {
	r, err := processOrder.Run(ctx, s, Order{ID: o.ID, Amount: o.Amount})
	return orderjobs.ProcessOrderOutput{Charge: r.Charge}, err
}

// runGenerated runs an order through the job generated from durably.yaml.
func runGenerated(ctx context.Context, path string) (orderjobs.ProcessOrderOutput, error) {
	st, err := sqlitestore.Open(path, sqlitestore.Options{})
	if err != nil {
		return orderjobs.ProcessOrderOutput{}, err
	}
	defer st.Close()
	eng, err := durably.New(durably.Config{Store: st})
	if err != nil {
		return orderjobs.ProcessOrderOutput{}, err
	}
	jobs, err := orderjobs.Register(eng, orderjobs.Handlers{ProcessOrder: processGenerated})
	if err != nil {
		return orderjobs.ProcessOrderOutput{}, err
	}
	if err := eng.Init(ctx); err != nil {
		return orderjobs.ProcessOrderOutput{}, err
	}
	defer eng.Stop(ctx)
	in := orderjobs.ProcessOrderInput{ID: "o-2", Amount: 1200} // a zero Amount is refused: minimum 1
	out, err := jobs.ProcessOrder.TriggerAndWait(ctx, in, orderjobs.TriggerOptions{IdempotencyKey: "order:o-2"})
	return out.Output, err
}
