package durably

import (
	"context"
	"fmt"

	"github.com/durably-go/durably/store"
)

// Tx is a database transaction of the caller's, for a trigger whose runs
// commit, or roll back, with the caller's own writes (TriggerTx, R-250):
// make it with pgstore.Tx (a pgx.Tx) or sqlitestore.Tx (a *sql.Tx on the
// store's database file).
type Tx = store.Tx

// TriggerRawTx is TriggerRaw written in tx, the caller's open transaction
// on the engine's database (R-250 … R-256): the run exists if and only if
// tx commits. Validation, labels, key scopes, idempotency and coalescing
// are those of TriggerRaw, resolved against what tx sees; the run is never
// started directly by this engine's worker, since the engine does
// not see the commit. Instead the engine watches for it: once the
// run is visible it emits run:trigger and wakes its worker, within
// milliseconds of the commit; on PostgreSQL the commit also wakes the
// workers of other processes. A rolled-back run never exists, runs or is
// announced.
//
// Inside tx, call only what writes with tx: a call that waits for the
// store's own writes (Trigger, TriggerAndWait, Cancel) may wait for tx to
// end, on SQLite always (one writer per database; docs/transactions.md).
func (e *Engine) TriggerRawTx(ctx context.Context, tx Tx, req TriggerRequest) (*TriggerResult, error) {
	p, err := e.parseRequest(req)
	if err != nil {
		return nil, err
	}
	return e.triggerTx(ctx, tx, p)
}

// BatchTriggerRawTx is BatchTriggerRaw written in tx (TriggerRawTx): the
// runs of one call are all or nothing inside tx, and a refused batch
// undoes its own writes only, leaving tx usable.
func (e *Engine) BatchTriggerRawTx(ctx context.Context, tx Tx, reqs []TriggerRequest) ([]TriggerResult, error) {
	parsed, err := e.parseRequests(reqs)
	if err != nil {
		return nil, err
	}
	return e.batchTriggerTx(ctx, tx, parsed)
}

// TriggerTx is Trigger written in tx, the caller's open transaction on the
// engine's database: the run exists if and only if tx commits
// (Engine.TriggerRawTx says what else differs).
func (h *TypedJob[I, O, L]) TriggerTx(ctx context.Context, tx Tx, input I, opts ...Option) (*TriggerResult, error) {
	raw, err := h.job.encodeInput(input)
	if err != nil {
		return nil, err
	}
	return h.e.triggerTx(ctx, tx, parsedTrigger{job: h.job.Name, input: raw, opts: collectOptions(opts).trigger})
}

// BatchTriggerTx is BatchTrigger written in tx (TriggerTx), all or nothing
// inside it.
func (h *TypedJob[I, O, L]) BatchTriggerTx(ctx context.Context, tx Tx, items []BatchItem[I]) ([]TriggerResult, error) {
	parsed, err := h.parseBatch(items)
	if err != nil {
		return nil, err
	}
	return h.e.batchTriggerTx(ctx, tx, parsed)
}

func (e *Engine) triggerTx(ctx context.Context, tx Tx, it parsedTrigger) (*TriggerResult, error) {
	nr, err := e.newRun(it, e.now())
	if err != nil {
		return nil, err
	}
	out, err := e.enqueueTx(ctx, tx, TriggerInfo{InTx: true}, []store.NewRun{nr})
	if err != nil {
		return nil, err
	}
	return &out[0], nil
}

func (e *Engine) batchTriggerTx(ctx context.Context, tx Tx, items []parsedTrigger) ([]TriggerResult, error) {
	if len(items) == 0 {
		return []TriggerResult{}, nil
	}
	runs, err := e.newBatch(items)
	if err != nil {
		return nil, err
	}
	return e.enqueueTx(ctx, tx, TriggerInfo{Batch: true, InTx: true}, runs)
}

// enqueueTx writes runs in tx and hands what the trigger announces to the
// commit watch.
func (e *Engine) enqueueTx(ctx context.Context, tx Tx, t TriggerInfo, runs []store.NewRun) ([]TriggerResult, error) {
	te, ok := e.store.(store.TxEnqueuer)
	if !ok {
		return nil, fmt.Errorf("durably: the store (%T) cannot write in a transaction of the caller's: it does not implement store.TxEnqueuer", e.store)
	}
	if tx.Value() == nil {
		return nil, validationErrorf("durably: a transactional trigger needs a transaction (the durably.Tx is empty)")
	}
	enqueued, err := e.enqueue(ctx, t, runs, func(ctx context.Context, runs []store.NewRun) ([]store.Enqueued, error) {
		return te.EnqueueTx(ctx, tx, runs)
	})
	if err != nil {
		return nil, triggerError(err)
	}
	out := make([]TriggerResult, len(enqueued))
	for i, en := range enqueued {
		out[i] = TriggerResult{Run: en.Run, Disposition: en.Disposition}
	}
	e.commits.await(te, runs, enqueued)
	return out, nil
}
