package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/durably-go/durably/internal/storekit"
	"github.com/durably-go/durably/runtime/sqlitestore/internal/sqlitedb"
	"github.com/durably-go/durably/store"
)

// Child runs and signals (issue 22): the reads of a run's children and
// signals, and the two writes of a signal, its sending and its delivery.

// GetChildren reads a run's children, oldest first.
func (s *Store) GetChildren(ctx context.Context, parentID string) ([]*store.Run, error) {
	_, rq := s.queries()
	rows, err := rq.GetChildren(ctx, nullString(parentID))
	if err != nil {
		return nil, classify(fmt.Errorf("sqlitestore: get children: %w", err))
	}
	return decodeRuns(rows)
}

// GetSignals reads the signals kept for an active run, oldest first.
func (s *Store) GetSignals(ctx context.Context, runID string) ([]*store.Signal, error) {
	_, rq := s.queries()
	rows, err := rq.GetSignals(ctx, runID)
	if err != nil {
		return nil, classify(fmt.Errorf("sqlitestore: get signals: %w", err))
	}
	return storekit.DecodeAll(rows, decodeSignal)
}

func decodeSignal(r sqlitedb.DurablySignal) (*store.Signal, error) {
	raw := storekit.RawSignal{ID: r.ID, RunID: r.RunID, Name: r.Name, Payload: r.Payload}
	if err := storekit.ParseTimes(storekit.TimeText{Dst: &raw.CreatedAt, Src: r.CreatedAt}); err != nil {
		return nil, fmt.Errorf("sqlitestore: signal %s: %w", r.ID, err)
	}
	return raw.Decode(), nil
}

// SendSignal keeps sig for its run if the run is active, counting the event
// and waking the run if it waits for it, in one transaction (S-062).
func (s *Store) SendSignal(ctx context.Context, sig *store.Signal) (bool, error) {
	var sent bool
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx, q *sqlitedb.Queries) (err error) {
		sent, _, err = storekit.SendSignal(ctx, txOps{tx, q}, sig)
		return err
	})
	if err != nil {
		return false, err
	}
	return sent, nil
}

// ReceiveSignal delivers the run's oldest signal named name to rec, fenced
// (S-063): the signal's removal, the step and the run's counters are one
// transaction; a refused step undoes the removal.
func (s *Store) ReceiveSignal(ctx context.Context, lease store.Lease, name string, rec *store.Step) (store.Receipt, bool, error) {
	var got store.Receipt
	var ok bool
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx, q *sqlitedb.Queries) error {
		got, ok = store.Receipt{}, false
		wakes, err := q.LeasedWakes(ctx, sqlitedb.LeasedWakesParams{ID: lease.RunID, Generation: lease.Generation})
		if errors.Is(err, sql.ErrNoRows) {
			return nil // refused: the lease is gone
		}
		if err != nil {
			return fmt.Errorf("sqlitestore: receive signal: %w", err)
		}
		rollback, release, err := txOps{tx, q}.Savepoint(ctx)
		if err != nil {
			return err
		}
		row, err := q.TakeSignal(ctx, sqlitedb.TakeSignalParams{RunID: lease.RunID, Name: name})
		if errors.Is(err, sql.ErrNoRows) {
			got, ok = store.Receipt{Wakes: wakes}, true
			return release(ctx)
		}
		if err != nil {
			return errors.Join(fmt.Errorf("sqlitestore: receive signal: %w", err), rollback(ctx))
		}
		sig, err := decodeSignal(row)
		if err != nil {
			return errors.Join(err, rollback(ctx))
		}
		step := *rec
		step.Output = sig.Payload
		n, err := insertStep(ctx, q, lease, &step)
		if err == nil && n == 1 {
			_, err = q.AdvanceStepCounters(ctx, sqlitedb.AdvanceStepCountersParams{
				NextIndex: int64(step.Index + 1), Now: store.FormatTime(step.CompletedAt), ID: lease.RunID, Generation: lease.Generation})
		}
		if err != nil || n == 0 {
			return errors.Join(err, rollback(ctx))
		}
		got, ok = store.Receipt{Signal: sig, Wakes: wakes}, true
		return release(ctx)
	})
	if err != nil {
		return store.Receipt{}, false, err
	}
	return got, ok, nil
}
