package store

import (
	"context"
	"time"
)

// PendingCounter is implemented by stores that count the runs waiting to be
// claimed, for metrics (runtime/durablyotel's durably.runs.waiting). Both
// of this module's stores implement it; it is an interface of its own so
// that a store outside this module need not.
type PendingCounter interface {
	// CountPending returns, per job that has pending runs (ordered by
	// job name), how many of them are due at now (claimable: the
	// backlog) and how many wait for a later time (a delay, a durable
	// sleep, a retry's wait). It reads pending runs only.
	CountPending(ctx context.Context, now time.Time) ([]PendingCount, error)
}

// PendingCount is one job's pending runs.
type PendingCount struct {
	JobName string
	Due     int // claimable at the time asked
	Later   int // waiting for a later time
}
