package sqlitestore_test

import (
	"context"

	"github.com/durably-go/durably/internal/callertx"
	"github.com/durably-go/durably/runtime/sqlitestore"
	"github.com/durably-go/durably/runtime/storetest"
)

// callerTxStore is the store as the contract suite gets it: with the
// caller's transactions of the transactional trigger's cases, begun on the
// store's DB (storetest.CallerTxs).
type callerTxStore struct{ *sqlitestore.Store }

func (s callerTxStore) BeginCallerTx(ctx context.Context) (storetest.CallerTx, error) {
	tx, err := callertx.Begin(ctx, s.Store)
	if err != nil {
		return nil, err // not a typed nil
	}
	return tx, nil
}
