package main

import (
	"context"
	"os"
	"os/signal"
	"time"

	"github.com/durably-go/durably"
)

func signalNotify(ch chan os.Signal) { signal.Notify(ch, os.Interrupt) }

// stopOnInterrupt waits for SIGINT, which a workload sends its worker
// processes when it is done with them, and stops e as a deployment would,
// within 10 s.
func stopOnInterrupt(e *durably.Engine) error {
	sig := make(chan os.Signal, 1)
	signalNotify(sig)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.Stop(ctx)
}
