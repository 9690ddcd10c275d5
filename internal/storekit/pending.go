package storekit

import "github.com/durably-go/durably/store"

// PendingCounts converts the rows of a store's CountPending query (a job,
// its due runs, all its pending runs) into store.PendingCount.
func PendingCounts[R any](rows []R, fields func(R) (job string, due, pending int64)) []store.PendingCount {
	out := make([]store.PendingCount, len(rows))
	for i, r := range rows {
		job, due, pending := fields(r)
		out[i] = store.PendingCount{JobName: job, Due: int(due), Later: int(pending - due)}
	}
	return out
}
