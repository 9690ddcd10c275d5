package main

import (
	"context"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/sqlitestore"
)

type Order struct {
	ID     string `json:"id"`
	Amount int    `json:"amount"`
}

type Receipt struct {
	Charge string `json:"charge"`
}

var processOrder = &durably.Job[Order, Receipt]{
	Name: "process-order",
	Run: func(ctx context.Context, s *durably.StepContext, o Order) (Receipt, error) {
		charge, err := durably.RunStep(s, "charge-card", func(ctx context.Context) (string, error) {
			return chargeCard(ctx, o.ID, o.Amount) // recorded once done: never charged twice
		})
		if err != nil {
			return Receipt{}, err
		}
		_, err = durably.RunStep(s, "email-receipt", func(ctx context.Context) (bool, error) {
			return true, emailReceipt(ctx, o.ID, charge)
		})
		return Receipt{Charge: charge}, err
	},
}

// runPlain runs an order through the job declared in Go.
func runPlain(ctx context.Context, path string) (Receipt, error) {
	st, err := sqlitestore.Open(path, sqlitestore.Options{}) // one file, no server
	if err != nil {
		return Receipt{}, err
	}
	defer st.Close()
	eng, err := durably.New(durably.Config{Store: st})
	if err != nil {
		return Receipt{}, err
	}
	job := durably.MustRegister(eng, processOrder)
	if err := eng.Init(ctx); err != nil { // migrates, then starts the worker
		return Receipt{}, err
	}
	defer eng.Stop(ctx)
	out, err := job.TriggerAndWait(ctx, Order{ID: "o-1", Amount: 1200}, durably.WithIdempotencyKey("order:o-1"))
	return out.Output, err
}
