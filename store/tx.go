package store

import (
	"context"
	"time"
)

// Tx is a database transaction of the caller's, in which a trigger writes
// its runs so that they commit, or roll back, with the caller's own writes
// (TxEnqueuer, R-250). It only carries the driver's transaction: make it
// with the store package's constructor (pgstore.Tx for a pgx.Tx,
// sqlitestore.Tx for a *sql.Tx), or NewTx for a store of your own. The
// zero Tx carries nothing and is refused.
type Tx struct{ value any }

// NewTx wraps a driver's transaction. A store's EnqueueTx checks its type
// and refuses one it cannot use, naming the type it wants.
func NewTx(tx any) Tx { return Tx{value: tx} }

// Value returns the driver's transaction, nil for the zero Tx.
func (t Tx) Value() any { return t.value }

// TxEnqueuer is implemented by stores that can enqueue runs inside a
// transaction of the caller's (the transactional trigger, R-250 … R-256):
// both of this module's stores do. It is an interface of its own, like
// PendingCounter, so that a store outside this module need not.
type TxEnqueuer interface {
	// EnqueueTx is Enqueue written with the statements of tx, the
	// caller's open transaction on the store's database: the runs exist
	// if and only if tx commits, and nothing is written elsewhere. The
	// items are all or nothing inside tx: an error undoes this call's
	// writes (a savepoint) and leaves the rest of tx as it was, usable.
	// Idempotency keys, coalescing and conflicts are resolved as Enqueue
	// resolves them, against what tx sees. Claim is ignored: a run
	// inserted in a transaction the engine cannot see commit is never
	// leased by the insert (S-070). Any worker wake-up the store sends
	// must be part of tx, delivered only if it commits (PostgreSQL's
	// NOTIFY is).
	EnqueueTx(ctx context.Context, tx Tx, runs []NewRun) ([]Enqueued, error)
	// CommittedRuns returns those of ids that name a run visible outside
	// any transaction, in no particular order: the engine asks it about
	// the runs EnqueueTx created to learn that their transaction
	// committed (S-071).
	CommittedRuns(ctx context.Context, ids []string) ([]string, error)
}

// Resumer is implemented by stores that can resume a failed or cancelled
// run from its completed steps (R-260 … R-266): both of this module's
// stores do; an interface of its own so that a store outside this module
// need not.
type Resumer interface {
	// ResumeRun makes a failed or cancelled run pending again, claimable
	// at once, in one transaction (S-072): its completed steps, logs,
	// labels, keys, priority, progress, step counters, lease generation
	// and attempt history are kept; its failed and cancelled step rows
	// are deleted (their errors stay in Attempts); Attempt and Crashes
	// restart at 0; its error, output, completion, start, lease and RunAt
	// are cleared. It returns the run as it is afterwards and its status
	// before. A nil run means no such run; any other previous status
	// means nothing was changed (and the run is returned as it is). A
	// pending run of the same job, key scope and concurrency key makes it
	// fail with *ConflictError, changing nothing.
	ResumeRun(ctx context.Context, id string, now time.Time) (run *Run, previous Status, err error)
}
