// Command quickstart runs a three-step job on the embedded SQLite store and
// shows a run surviving a crash and a failing step being retried.
//
//	go run ./examples/quickstart                  # runs order-1 to completion
//	go run ./examples/quickstart -crash-after 1   # dies hard after step 1 is recorded
//	go run ./examples/quickstart                  # resumes: step 1 is not run again
//
// The order id is the run's idempotency key, so running the command again
// finds the same run instead of creating another. Delete quickstart.db (or
// pass another -order) to start over.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/sqlitestore"
)

// Order is the job's input.
type Order struct {
	ID     string `json:"id"`
	Amount int    `json:"amount"`
}

// Receipt is the job's output.
type Receipt struct {
	OrderID     string `json:"orderId"`
	Reservation string `json:"reservation"`
	Charge      string `json:"charge"`
	Emailed     bool   `json:"emailed"`
}

// processOrder is three durable steps. A step that completed is never run
// again for this run, whatever happens to the process. The email step's
// first attempt in a process fails, as a busy mail server would: its retry
// policy hands the run back and tries again half a second later.
func processOrder() *durably.Job[Order, Receipt] {
	var emailTries atomic.Int32
	return &durably.Job[Order, Receipt]{
		Name: "process-order",
		Run: func(ctx context.Context, s *durably.StepContext, o Order) (Receipt, error) {
			reservation, err := durably.RunStep(s, "reserve-stock", func(ctx context.Context) (string, error) {
				return work(ctx, "reserving stock", "rsv-"+o.ID)
			})
			if err != nil {
				return Receipt{}, err
			}
			s.Progress(1, 3, "stock reserved")

			charge, err := durably.RunStep(s, "charge-card", func(ctx context.Context) (string, error) {
				return work(ctx, fmt.Sprintf("charging %d cents", o.Amount), "ch-"+o.ID)
			})
			if err != nil {
				return Receipt{}, err
			}
			s.Progress(2, 3, "card charged")

			emailed, err := durably.RunStep(s, "send-email", func(ctx context.Context) (bool, error) {
				if emailTries.Add(1) == 1 {
					fmt.Println("    executing: sending the confirmation email … mail server busy")
					return false, errors.New("mail server busy")
				}
				_, err := work(ctx, "sending the confirmation email", "")
				return err == nil, err
			}, durably.WithStepRetry(durably.RetryPolicy{MaxAttempts: 3, Backoff: durably.BackoffFixed, Initial: 500 * time.Millisecond}))
			if err != nil {
				return Receipt{}, err
			}
			s.Progress(3, 3, "email sent")
			s.Logger().Info("order processed", "order", o.ID)
			return Receipt{OrderID: o.ID, Reservation: reservation, Charge: charge, Emailed: emailed}, nil
		},
	}
}

// work stands for a side effect: it takes a moment and says so.
func work(ctx context.Context, what, result string) (string, error) {
	fmt.Printf("    executing: %s …\n", what)
	select {
	case <-time.After(400 * time.Millisecond):
		return result, nil
	case <-ctx.Done():
		return "", context.Cause(ctx)
	}
}

func main() {
	db := flag.String("db", "quickstart.db", "SQLite database file")
	order := flag.String("order", "order-1", "order id (the run's idempotency key)")
	crashAfter := flag.Int("crash-after", 0, "exit hard right after step N is recorded (0: never)")
	flag.Parse()
	if err := run(*db, *order, *crashAfter); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(db, orderID string, crashAfter int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	st, err := sqlitestore.Open(db, sqlitestore.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	eng, err := durably.New(durably.Config{
		Store: st,
		// Short leases so that a run of a crashed process is taken over
		// within seconds (the default is 30s).
		LeaseDuration:      3 * time.Second,
		LeaseRenewInterval: time.Second,
		Logger:             slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	job, err := durably.Register(eng, processOrder())
	if err != nil {
		return err
	}
	unsubscribe := eng.OnEvent(func(ev durably.Event) {
		switch ev.Type {
		case durably.EventRunLeased:
			fmt.Printf("  run %s leased by %s\n", ev.RunID, ev.LeaseOwner)
		case durably.EventStepComplete:
			fmt.Printf("  step %d %q recorded\n", ev.StepIndex+1, ev.StepName)
			if ev.StepIndex+1 == crashAfter {
				fmt.Printf("  crashing hard after step %d (no cleanup, lease left behind)\n", crashAfter)
				os.Exit(3)
			}
		case durably.EventStepFail:
			fmt.Printf("  step %d %q failed (%s); the run waits for its retry without holding a worker\n", ev.StepIndex+1, ev.StepName, ev.Error)
		case durably.EventRunProgress:
			fmt.Printf("  progress %d/%d: %s\n", ev.Progress.Current, *ev.Progress.Total, *ev.Progress.Message)
		}
	})
	defer unsubscribe()

	if err := eng.Init(ctx); err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = eng.Stop(stopCtx)
	}()

	fmt.Printf("durably quickstart: database %s, order %s\n", db, orderID)
	res, err := job.Trigger(ctx, Order{ID: orderID, Amount: 4200}, durably.WithIdempotencyKey(orderID))
	if err != nil {
		return err
	}
	r := res.Run
	switch {
	case res.Disposition == durably.Created:
		fmt.Printf("  run %s created\n", r.ID)
	case r.Status == durably.StatusLeased && r.LeaseExpiresAt.After(time.Now()):
		fmt.Printf("  run %s found, leased by a process that is gone; resuming when its lease expires in %s\n",
			r.ID, time.Until(r.LeaseExpiresAt).Round(100*time.Millisecond))
	default:
		fmt.Printf("  run %s found (%s, %d of 3 steps recorded)\n", r.ID, r.Status, r.CompletedStepCount)
	}
	done, err := job.WaitForRun(ctx, r.ID, durably.WithPollInterval(200*time.Millisecond))
	if err != nil {
		return err
	}
	fmt.Printf("completed: %+v\n", done.Output)
	return nil
}
