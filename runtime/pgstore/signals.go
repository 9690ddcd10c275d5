package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/durably-go/durably/internal/storekit"
	"github.com/durably-go/durably/runtime/pgstore/internal/pgdb"
	"github.com/durably-go/durably/store"
)

// Child runs and signals (issue 22): the reads of a run's children and
// signals, and the two writes of a signal, its sending and its delivery.

// GetChildren reads a run's children, oldest first.
func (s *Store) GetChildren(ctx context.Context, parentID string) ([]*store.Run, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.q.GetChildren(ctx, parentID)
	if err != nil {
		return nil, s.failed(ctx, fmt.Errorf("pgstore: get children: %w", err))
	}
	return decodeRuns(rows)
}

// GetSignals reads the signals kept for an active run, oldest first.
func (s *Store) GetSignals(ctx context.Context, runID string) ([]*store.Signal, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.q.GetSignals(ctx, runID)
	if err != nil {
		return nil, s.failed(ctx, fmt.Errorf("pgstore: get signals: %w", err))
	}
	return storekit.DecodeAll(rows, decodeSignal)
}

func decodeSignal(r pgdb.DurablySignal) (*store.Signal, error) {
	raw := storekit.RawSignal{ID: r.ID, RunID: r.RunID, Name: r.Name, Payload: r.Payload, CreatedAt: fromTS(r.CreatedAt)}
	return raw.Decode(), nil
}

// SendSignal keeps sig for its run if the run is active, counting the event
// and waking the run if it waits for it, in one transaction of its own
// (S-062), on the run's lane. A run it wakes is announced to idle workers
// of other processes (D4).
func (s *Store) SendSignal(ctx context.Context, sig *store.Signal) (bool, error) {
	var sent bool
	err := s.do(ctx, sig.RunID, &op{kind: opFunc, fn: func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) error {
		var woken bool
		var err error
		sent, woken, err = storekit.SendSignal(ctx, txOps{tx, q}, sig)
		if err == nil && woken {
			err = q.Notify(ctx, pgdb.NotifyParams{Channel: s.channel, Payload: "w:" + s.instance})
		}
		return err
	}})
	if err != nil {
		return false, err
	}
	return sent, nil
}

// ReceiveSignal delivers the run's oldest signal named name to rec, fenced
// (S-063), in a transaction of its own: the run's row is locked first, so
// that a signal sent meanwhile is either read here or counted in the wakes
// returned; the signal's removal, the step and the run's counters commit
// together.
func (s *Store) ReceiveSignal(ctx context.Context, lease store.Lease, name string, rec *store.Step) (store.Receipt, bool, error) {
	var got store.Receipt
	var ok bool
	err := s.do(ctx, lease.RunID, &op{kind: opFunc, fn: func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) error {
		got, ok = store.Receipt{}, false
		wakes, err := q.LeasedWakes(ctx, pgdb.LeasedWakesParams{ID: lease.RunID, Generation: lease.Generation})
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // refused: the lease is gone
		}
		if err != nil {
			return fmt.Errorf("pgstore: receive signal: %w", err)
		}
		row, err := q.TakeSignal(ctx, pgdb.TakeSignalParams{RunID: lease.RunID, Name: name})
		if errors.Is(err, pgx.ErrNoRows) {
			got, ok = store.Receipt{Wakes: wakes}, true
			return nil
		}
		if err != nil {
			return fmt.Errorf("pgstore: receive signal: %w", err)
		}
		sig, err := decodeSignal(row)
		if err != nil {
			return err
		}
		step := *rec
		step.Output = sig.Payload
		saved, err := q.SaveStep(ctx, oneStepParams(stepsParams([]*op{{lease: lease, step: &step}}, nil)))
		if err != nil {
			return fmt.Errorf("pgstore: receive signal: save step: %w", err)
		}
		if len(saved) != 1 {
			return errRollback // refused: the signal stays
		}
		got, ok = store.Receipt{Signal: sig, Wakes: wakes}, true
		return nil
	}})
	if err != nil {
		return store.Receipt{}, false, err
	}
	return got, ok, nil
}
