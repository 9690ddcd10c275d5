// Command orders runs one job, charge an order and email its receipt, on
// the embedded SQLite store, declared two ways: in Go (plain.go) and in
// durably.yaml, generated into ./orderjobs (generated.go). The README
// shows both.
//
//	go run ./examples/orders              # the job declared in Go
//	go run ./examples/orders -generated   # the job generated from durably.yaml
package main

//go:generate go run github.com/durably-go/durably/cmd/durably-gen -q -config durably.yaml

import (
	"context"
	"flag"
	"fmt"
	"os"
)

func main() {
	db := flag.String("db", "orders.db", "SQLite database file")
	generated := flag.Bool("generated", false, "run the job generated from durably.yaml")
	flag.Parse()
	var receipt any
	var err error
	if *generated {
		receipt, err = runGenerated(context.Background(), *db)
	} else {
		receipt, err = runPlain(context.Background(), *db)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "orders:", err)
		os.Exit(1)
	}
	fmt.Printf("completed: %+v\n", receipt)
}

// chargeCard and emailReceipt stand for the side effects of the job's
// steps.
func chargeCard(ctx context.Context, orderID string, amount int) (string, error) {
	return fmt.Sprintf("ch-%s-%d", orderID, amount), ctx.Err()
}

func emailReceipt(ctx context.Context, orderID, charge string) error { return ctx.Err() }
